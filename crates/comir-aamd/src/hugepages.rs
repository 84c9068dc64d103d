//! Zeroed buffers for the distance tables, backed by transparent huge pages where Linux offers
//! them (`/sys/kernel/mm/transparent_hugepage/enabled` = `madvise` or `always`).
//!
//! The tables of a 512² image take 8–34 MB per pyramid level and are read at random: with 4 KB
//! pages almost every lookup misses the TLB, and filling them costs one page fault per 4 KB.
//! Asking for 2 MB pages before the first write cuts both. It is only advice: where the kernel
//! declines, or on other systems, the buffer is an ordinary zeroed `Vec` and results are the same.

/// Buffers smaller than this are not worth advising (one huge page).
const HUGE_PAGE: usize = 2 << 20;

/// `len` zeroed values, advised for huge pages before anything is written (the allocation is
/// `calloc`'s, so large buffers are fresh pages nobody has touched yet).
pub(crate) fn zeroed<T: bytemuck::Zeroable>(len: usize) -> Vec<T> {
    let v = bytemuck::zeroed_vec(len);
    advise_huge(&v);
    v
}

#[cfg(target_os = "linux")]
fn advise_huge<T>(v: &[T]) {
    let bytes = std::mem::size_of_val(v);
    if bytes < HUGE_PAGE {
        return;
    }
    // madvise needs a page-aligned start: round the start up and the end down to 4 KB.
    let page = 4096usize;
    let start = v.as_ptr() as usize;
    let aligned = start.next_multiple_of(page);
    let end = (start + bytes) / page * page;
    if end <= aligned {
        return;
    }
    // SAFETY: the range lies inside `v`'s live allocation; MADV_HUGEPAGE only changes how the
    // kernel backs these pages, never their contents, and a failure (EINVAL where THP is off) is
    // harmless, so the result is deliberately ignored.
    unsafe {
        libc::madvise(
            aligned as *mut libc::c_void,
            end - aligned,
            libc::MADV_HUGEPAGE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge<T>(_v: &[T]) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_zeroed_whatever_their_size() {
        for len in [0, 1, 1000, (3 << 20) / 16 + 7] {
            let v: Vec<[f32; 4]> = zeroed(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|e| *e == [0.0; 4]));
        }
    }
}
