//! A global allocator that starts every large block on a cache line.
//!
//! The kernels read and write activations a row at a time in whole vectors. Rows of the usual
//! widths (multiples of 16 floats) start on a cache line exactly when their buffer does, but
//! the system allocator returns large blocks 16 bytes past one (glibc's `mmap`ed chunks), so
//! every 64-byte AVX-512 access, and every second 32-byte AVX2 one, straddled two lines. With
//! large blocks on a line, `comir represent` of an 834² image took 11–12 % less time on both
//! instruction sets (docs/benchmarks.md). Programs opt in once:
//!
//! ```
//! #[global_allocator]
//! static ALLOC: comir_cpu::CacheLineAlloc = comir_cpu::CacheLineAlloc;
//!
//! fn main() {
//!     let row = vec![0.0f32; 4096];
//!     assert_eq!(row.as_ptr() as usize % comir_cpu::CACHE_LINE, 0);
//! }
//! ```
//!
//! Small blocks keep the system's alignment: they are not vector rows, and padding them would
//! only waste memory.

use std::alloc::{GlobalAlloc, Layout, System};

/// Bytes per cache line on the CPUs comir's kernels target.
pub const CACHE_LINE: usize = 64;

/// Blocks of at least this many bytes start on a cache line.
pub const LARGE_BLOCK: usize = 4096;

/// The system allocator, with blocks of [`LARGE_BLOCK`] bytes or more aligned to
/// [`CACHE_LINE`]. See the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheLineAlloc;

/// The layout a block of `layout` is given: the same, or aligned to a cache line when large.
/// A function of the layout alone, so that a block is freed with the layout it was made with.
fn cache_line_layout(layout: Layout) -> Layout {
    if layout.size() >= LARGE_BLOCK && layout.align() < CACHE_LINE {
        // A power of two no smaller than the old alignment: never fails.
        layout.align_to(CACHE_LINE).unwrap_or(layout)
    } else {
        layout
    }
}

// SAFETY: every block is made and freed by `System` with the layout `cache_line_layout` gives
// for the caller's layout, which depends on nothing else; alignment only grows, so every
// block satisfies the caller's layout.
unsafe impl GlobalAlloc for CacheLineAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        System.alloc(cache_line_layout(layout))
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        System.alloc_zeroed(cache_line_layout(layout))
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, cache_line_layout(layout));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = cache_line_layout(layout);
        // SAFETY (of the layout): `new_size`, rounded up to the alignment, does not overflow
        // `isize` (the caller's contract).
        let new = cache_line_layout(Layout::from_size_align_unchecked(new_size, layout.align()));
        if new.align() == old.align() {
            // `System` keeps the alignment it is given.
            return System.realloc(ptr, old, new_size);
        }
        // Crossing `LARGE_BLOCK` changes the alignment: move the block.
        let moved = System.alloc(new);
        if !moved.is_null() {
            std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
            System.dealloc(ptr, old);
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Large blocks start on a cache line however they are made or grown; their contents
    /// survive every growth and shrink, across the large-block threshold both ways.
    #[test]
    fn large_blocks_start_on_a_cache_line_and_keep_their_contents() {
        let a = CacheLineAlloc;
        let sizes = [
            8,
            100,
            LARGE_BLOCK - 4,
            LARGE_BLOCK,
            3 * LARGE_BLOCK + 4,
            1 << 20,
            12,
        ];
        // SAFETY: every block is used within its size and freed with its current layout.
        unsafe {
            let mut layout = Layout::from_size_align(sizes[0], 4).expect("layout");
            let mut p = a.alloc(layout);
            assert!(!p.is_null());
            std::ptr::write_bytes(p, 7, layout.size());
            for &size in &sizes[1..] {
                let keep = layout.size().min(size);
                p = a.realloc(p, layout, size);
                assert!(!p.is_null());
                layout = Layout::from_size_align(size, 4).expect("layout");
                let kept = std::slice::from_raw_parts(p, keep);
                assert!(kept.iter().all(|&b| b == 7), "size {size}: contents lost");
                std::ptr::write_bytes(p, 7, size);
                if size >= LARGE_BLOCK {
                    assert_eq!(p as usize % CACHE_LINE, 0, "size {size}");
                }
            }
            a.dealloc(p, layout);
            let z = Layout::from_size_align(LARGE_BLOCK * 2, 8).expect("layout");
            let q = a.alloc_zeroed(z);
            assert_eq!(q as usize % CACHE_LINE, 0);
            assert!(std::slice::from_raw_parts(q, z.size())
                .iter()
                .all(|&b| b == 0));
            a.dealloc(q, z);
        }
    }

    /// Small blocks and blocks already aligned more strictly keep their layout.
    #[test]
    fn other_layouts_are_left_alone() {
        let small = Layout::from_size_align(LARGE_BLOCK - 1, 8).expect("layout");
        assert_eq!(cache_line_layout(small), small);
        let page = Layout::from_size_align(LARGE_BLOCK * 4, 4096).expect("layout");
        assert_eq!(cache_line_layout(page), page);
        let large = Layout::from_size_align(LARGE_BLOCK, 4).expect("layout");
        assert_eq!(cache_line_layout(large).align(), CACHE_LINE);
        assert_eq!(cache_line_layout(large).size(), LARGE_BLOCK);
    }
}
