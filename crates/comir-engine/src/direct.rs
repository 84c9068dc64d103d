//! Direct convolution micro-kernels, one set per vector instruction set (AVX-512 and AVX2 +
//! FMA), used instead of `gemm` matrix products where the CPU has those instructions: the
//! forward convolution, the input gradient (the same kernel on the output gradient with
//! flipped taps) and the weight gradient.
//!
//! Why: the dense layers have few output channels (12) and few input channels per tap, so
//! one `gemm` call per tap fills 12 of the 16 rows of gemm's micro-kernel, packs its operands
//! on every call and reads and writes the whole output band nine times. Here a tile of 6
//! output channels × a run of grid positions stays in vector registers while all input
//! channels and all taps are summed into it, and is written once: 16 positions in 12 of
//! AVX2's 16 registers, 64 positions in 24 of AVX-512's 32 (a shorter run, its last vector
//! masked, ends a band). The weight gradient is the same broadcast-and-multiply tile turned
//! around: on the band transposed to `[position][input channel]`, a tile of 6 output
//! channels × 16 (AVX2) or 64 (AVX-512) input channels of one tap sums over all positions
//! in registers, so no horizontal sums are needed however short the band. The input is the
//! same zero-padded band as the gemm path (see `conv.rs`), on which every tap is a constant
//! offset.
//!
//! Tested against the convolution and its gradients written out, as is the gemm path, which
//! remains the portable fallback (`conv::tests`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use comir_cpu::Isa;

static TIMING: AtomicBool = AtomicBool::new(false);
static KERNEL_NANOS: AtomicU64 = AtomicU64::new(0);

/// Starts (or stops) adding up the time spent in the convolution kernels, for benchmarks.
pub fn set_kernel_timing(on: bool) {
    TIMING.store(on, Ordering::Relaxed);
}

/// Time spent in the convolution kernels (forward, input gradient and weight gradient, summed
/// over all threads) since timing was switched on with [`set_kernel_timing`]; the band fills
/// (batch norm + ReLU), bias and copies around the kernels are not counted. A Winograd band
/// counts whole, its transforms included.
pub fn kernel_time() -> Duration {
    Duration::from_nanos(KERNEL_NANOS.load(Ordering::Relaxed))
}

/// Runs `f`, adding its duration to [`kernel_time`] when timing is on.
pub(crate) fn timed<R>(f: impl FnOnce() -> R) -> R {
    if !TIMING.load(Ordering::Relaxed) {
        return f();
    }
    let start = Instant::now();
    let r = f();
    let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    KERNEL_NANOS.fetch_add(nanos, Ordering::Relaxed);
    r
}

/// The vector width a direct kernel runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Simd {
    /// AVX2 + FMA, 8 lanes.
    Avx2,
    /// AVX-512F, 16 lanes.
    Avx512,
}

impl Simd {
    /// The direct kernels of an instruction set (`None` for the portable path).
    pub(crate) fn of(isa: Isa) -> Option<Simd> {
        match isa {
            Isa::Avx512 => Some(Simd::Avx512),
            Isa::Avx2 => Some(Simd::Avx2),
            _ => None,
        }
    }

    fn isa(self) -> Isa {
        match self {
            Simd::Avx2 => Isa::Avx2,
            Simd::Avx512 => Isa::Avx512,
        }
    }
}

/// Expands `$tap!(t)` for the taps `t` of a 3 × 3 kernel in order (the kernels' `tap!` skips
/// those past its `TAPS`): as a loop, the compiler kept it rolled.
#[cfg(target_arch = "x86_64")]
macro_rules! nine_taps {
    ($tap:ident) => {
        $tap!(0);
        $tap!(1);
        $tap!(2);
        $tap!(3);
        $tap!(4);
        $tap!(5);
        $tap!(6);
        $tap!(7);
        $tap!(8);
    };
}

/// Output channels per tile (one broadcast weight each).
pub(crate) const CO_BLOCK: usize = 6;
/// Grid positions are computed in multiples of this (two AVX2 vectors, one AVX-512 vector);
/// callers size outputs and the input band's slack by it.
pub(crate) const PX_BLOCK: usize = 16;

/// Rearranges `[cout][cin][taps]` weights into tiles `[cout / 6][cin][taps][6]`, the output
/// channels padded with zeros to a multiple of [`CO_BLOCK`].
pub(crate) fn pack_weights(cout: usize, cin: usize, taps: usize, weight: &[f32]) -> Vec<f32> {
    pack(cout, cin, taps, |co, ci, t| {
        weight[(co * cin + ci) * taps + t]
    })
}

/// Tiles `[outputs / 6][inputs][taps][6]` of `weight(output, input, tap)`, zero padded.
fn pack(
    outputs: usize,
    inputs: usize,
    taps: usize,
    weight: impl Fn(usize, usize, usize) -> f32,
) -> Vec<f32> {
    let mut packed = vec![0.0; outputs.div_ceil(CO_BLOCK) * inputs * taps * CO_BLOCK];
    for o in 0..outputs {
        let (b, j) = (o / CO_BLOCK, o % CO_BLOCK);
        for i in 0..inputs {
            for t in 0..taps {
                packed[((b * inputs + i) * taps + t) * CO_BLOCK + j] = weight(o, i, t);
            }
        }
    }
    packed
}

/// The operands of one band.
pub(crate) struct Band<'a> {
    /// Input channels.
    pub cin: usize,
    /// Padded input band, channel `ci` at `ci · plane`.
    pub input: &'a [f32],
    /// Channel stride of `input`.
    pub plane: usize,
    /// Offset of each tap on the padded grid.
    pub offsets: &'a [usize],
    /// Weights from [`pack_weights`].
    pub weights: &'a [f32],
    /// Grid positions to compute: a multiple of [`PX_BLOCK`] for AVX2, any count for AVX-512.
    pub positions: usize,
}

/// How a kernel tile's sums are stored: how many output channels, and what is done to each
/// sum first.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct Store<'a> {
    /// Output channels stored; the tile's zero-padded channels past them are dropped.
    pub channels: usize,
    /// Added to each channel's sums (`bias[co]`).
    pub bias: Option<&'a [f32]>,
    /// ReLU after the bias.
    pub relu: bool,
}

/// `out[co · stride + n] = Σ_ci Σ_t w[co][ci][t] · input[ci · plane + offsets[t] + n]` for
/// `n < positions` and every (padded) output channel `co`.
///
/// Panics if a read or write would leave its slice (the caller sizes the band's slack), or if
/// the CPU lacks `simd`'s instructions.
pub(crate) fn conv_band(simd: Simd, band: &Band, out: &mut [f32], stride: usize) {
    let blocks = check_band(simd, band);
    // AVX-512 ends a band with a masked vector; AVX2 computes whole tiles.
    assert!(
        simd == Simd::Avx512 || band.positions.is_multiple_of(PX_BLOCK),
        "positions must be whole tiles"
    );
    assert!(
        blocks == 0 || (blocks * CO_BLOCK - 1) * stride + band.positions <= out.len(),
        "direct conv: output too short"
    );
    let store = Store {
        channels: blocks * CO_BLOCK,
        bias: None,
        relu: false,
    };
    // SAFETY: every write is inside `out` (asserted above).
    unsafe { run(simd, band, blocks, out.as_mut_ptr(), stride, store) }
}

/// [`conv_band`] straight into a layer's output planes, with its bias and ReLU: `out[co ·
/// stride + n]` is `relu?(Σ_ci Σ_t w[co][ci][t] · input[ci · plane + offsets[t] + n] +
/// bias[co])` for exactly `n < positions` (AVX2's last tile too is stored under a mask) and
/// `co < store.channels`. The sums are those of [`conv_band`] and the bias and ReLU those of
/// `simd::add_bias`, so the numbers are the same as that copy's, without the pass over the
/// outputs it costs.
///
/// Panics if a read would leave the band (AVX2 reads whole tiles: the band's slack covers
/// `positions` rounded up to [`PX_BLOCK`]), if the bias is shorter than the channels or the
/// weights hold fewer, or if the CPU lacks `simd`'s instructions.
///
/// # Safety
/// `out` must be valid for writes at `co · stride + n` for those `co` and `n`, and nothing
/// else may read or write those elements meanwhile.
pub(crate) unsafe fn conv_band_into(
    simd: Simd,
    band: &Band,
    out: *mut f32,
    stride: usize,
    store: Store,
) {
    let blocks = check_band(simd, band);
    assert!(
        store.channels <= blocks * CO_BLOCK,
        "direct conv: more channels than weights"
    );
    assert!(
        store.bias.is_none_or(|b| b.len() >= store.channels),
        "direct conv: bias too short"
    );
    let blocks = store.channels.div_ceil(CO_BLOCK);
    // SAFETY: the caller's contract covers the writes.
    unsafe { run(simd, band, blocks, out, stride, store) }
}

/// Checks a band's reads and the instruction set; returns its blocks of output channels.
fn check_band(simd: Simd, band: &Band) -> usize {
    let taps = band.offsets.len();
    let blocks = band.weights.len() / (band.cin * taps * CO_BLOCK).max(1);
    assert_eq!(band.weights.len(), blocks * band.cin * taps * CO_BLOCK);
    // AVX2 loads whole tiles; the last AVX-512 vector is masked.
    let read = match simd {
        Simd::Avx2 => band.positions.next_multiple_of(PX_BLOCK),
        Simd::Avx512 => band.positions,
    };
    let max_off = band.offsets.iter().copied().max().unwrap_or(0);
    assert!(
        band.cin == 0 || (band.cin - 1) * band.plane + max_off + read <= band.input.len(),
        "direct conv: input band too short"
    );
    assert!(simd.isa().supported(), "direct conv: CPU lacks {simd:?}");
    blocks
}

/// Runs the kernel of `simd` and the band's taps.
///
/// # Safety
/// The reads are checked ([`check_band`]); `out` must be valid for the writes `store` asks.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
unsafe fn run(simd: Simd, band: &Band, blocks: usize, out: *mut f32, stride: usize, store: Store) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has the instructions and the reads are inside the band (checked); the
    // writes are the caller's.
    timed(|| unsafe {
        match (simd, band.offsets.len()) {
            (Simd::Avx2, 9) => avx2::conv_band::<9>(band, blocks, out, stride, store),
            (Simd::Avx2, 1) => avx2::conv_band::<1>(band, blocks, out, stride, store),
            (Simd::Avx512, 9) => avx512::conv_band::<9>(band, blocks, out, stride, store),
            (Simd::Avx512, 1) => avx512::conv_band::<1>(band, blocks, out, stride, store),
            (_, taps) => panic!("direct conv: {taps} taps"),
        }
    });
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("direct kernels run on x86-64 only");
}

/// Output channels per tile of the weight-gradient kernel (rows of its output gradient are
/// padded to a multiple of this).
pub(crate) const GRAD_CO_BLOCK: usize = CO_BLOCK;

/// The operands of one band of the weight gradient.
pub(crate) struct GradBand<'a> {
    /// Input channels.
    pub cin: usize,
    /// Padded input band, as in [`Band`].
    pub input: &'a [f32],
    /// Channel stride of `input`.
    pub plane: usize,
    /// Offset of each tap on the padded grid.
    pub offsets: &'a [usize],
    /// Output channels.
    pub cout: usize,
    /// Gradient w.r.t. the output on the grid, `[cout rounded up to GRAD_CO_BLOCK][stride]`,
    /// zero at the junk columns, past the band and in the padding rows.
    pub dout: &'a [f32],
    /// Channel stride of `dout`: the positions summed over.
    pub stride: usize,
}

/// Re-packs transposed weights `wt[ci][t·cout + co]` (see `conv::transpose_weight`) for
/// [`conv_band`] run as the input gradient: output channels `cin`, input channels `cout`.
pub(crate) fn pack_transposed(cout: usize, cin: usize, taps: usize, wt: &[f32]) -> Vec<f32> {
    pack(cin, cout, taps, |ci, co, t| {
        wt[ci * taps * cout + t * cout + co]
    })
}

/// Input channels per row of the transposed band: a whole number of AVX-512 vectors.
fn transposed_row(cin: usize) -> usize {
    cin.next_multiple_of(16)
}

/// `xt[p · row + i] = input[(c0 + i) · plane + p]` for `p < positions` and `i < row` (a
/// multiple of 8): the `row` channels from `c0`, zero for those past `cin`.
fn transpose_band(band: &GradBand, positions: usize, c0: usize, row: usize, xt: &mut [f32]) {
    let whole = positions / 8 * 8;
    #[cfg(target_arch = "x86_64")]
    if Isa::Avx2.supported() {
        // SAFETY: the CPU has AVX2 (checked just above).
        unsafe { avx2::transpose_blocks(band, whole, c0, row, xt) };
    } else {
        transpose_scalar(band, 0..whole, c0, row, xt);
    }
    #[cfg(not(target_arch = "x86_64"))]
    transpose_scalar(band, 0..whole, c0, row, xt);
    transpose_scalar(band, whole..positions, c0, row, xt);
}

/// The positions `range` of [`transpose_band`], one element at a time.
fn transpose_scalar(
    band: &GradBand,
    range: std::ops::Range<usize>,
    c0: usize,
    row: usize,
    xt: &mut [f32],
) {
    for p in range {
        let line = &mut xt[p * row..(p + 1) * row];
        for (i, d) in line.iter_mut().enumerate() {
            let ci = c0 + i;
            *d = if ci < band.cin {
                band.input[ci * band.plane + p]
            } else {
                0.0
            };
        }
    }
}

thread_local! {
    // The transposed band, reused across bands, layers and steps.
    static TRANSPOSED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Floats per cache line.
const LINE_FLOATS: usize = comir_cpu::CACHE_LINE / std::mem::size_of::<f32>();

/// The `len` floats of `buf` (which holds at least `len + LINE_FLOATS`) from its first cache
/// line boundary on. The transposed rows are whole cache lines (a multiple of 16 floats), so
/// every vector the weight-gradient kernels load then lies in one line: from the system
/// allocator's 16-byte alignment, every AVX-512 load and half of the AVX2 ones straddled two.
/// (Programs that install `comir_cpu::CacheLineAlloc` get aligned buffers anyway; the engine
/// does not rely on it.)
fn cache_aligned(buf: &mut [f32], len: usize) -> &mut [f32] {
    let skip = buf
        .as_ptr()
        .align_offset(comir_cpu::CACHE_LINE)
        .min(LINE_FLOATS);
    &mut buf[skip..skip + len]
}

/// `dw[t][co][ci] += Σ_n dout[co · stride + n] · input[ci · plane + offsets[t] + n]` over
/// `n < stride` (the tap-major layout of `conv::conv_backward`).
///
/// Panics if a read would leave its slice, or if the CPU lacks `simd`'s instructions.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub(crate) fn weight_grad_band(simd: Simd, band: &GradBand, dw: &mut [f32]) {
    let taps = band.offsets.len();
    assert_eq!(
        dw.len(),
        taps * band.cout * band.cin,
        "direct conv: dw size"
    );
    let co_pad = band.cout.next_multiple_of(GRAD_CO_BLOCK);
    assert!(
        band.dout.len() >= co_pad * band.stride,
        "direct conv: dout too short"
    );
    let max_off = band.offsets.iter().copied().max().unwrap_or(0);
    let positions = band.stride + max_off;
    assert!(
        band.cin == 0 || (band.cin - 1) * band.plane + positions <= band.input.len(),
        "direct conv: input band too short"
    );
    assert!(simd.isa().supported(), "direct conv: CPU lacks {simd:?}");
    if band.cin == 0 || band.cout == 0 {
        return;
    }
    // AVX2 sums 16 channels at a time: the band is transposed 16 channels at a time, and each
    // such column (64 bytes a position, a fraction of the band in the wide layers) stays in L1
    // across every tap and output block instead of coming from L2 for each. AVX-512's runs of
    // 64 channels gain nothing from it and take the whole band at once.
    let row = match simd {
        Simd::Avx2 => 16,
        Simd::Avx512 => transposed_row(band.cin),
    };
    timed(|| {
        TRANSPOSED.with(|cell| {
            let mut buf = cell.borrow_mut();
            if buf.len() < positions * row + LINE_FLOATS {
                buf.resize(positions * row + LINE_FLOATS, 0.0);
            }
            let xt = cache_aligned(&mut buf[..], positions * row);
            for ci0 in (0..band.cin).step_by(row) {
                transpose_band(band, positions, ci0, row, xt);
                let tile = GradTile { xt, row, band };
                for (t, &off) in band.offsets.iter().enumerate() {
                    for co0 in (0..band.cout).step_by(GRAD_CO_BLOCK) {
                        let rows = (band.cout - co0).min(GRAD_CO_BLOCK);
                        let dw_rows =
                            &mut dw[(t * band.cout + co0) * band.cin..][..rows * band.cin];
                        #[cfg(target_arch = "x86_64")]
                        // SAFETY: the instructions are asserted; the tile reads rows
                        // co0..co0+6 of dout (padded, asserted) and transposed rows
                        // off..off+stride (sized above), and writes `rows` rows of `cin`
                        // gradients.
                        unsafe {
                            match simd {
                                Simd::Avx2 => avx2::grad_chunk(&tile, off, co0, ci0, dw_rows),
                                Simd::Avx512 => avx512::grad_block(&tile, off, co0, dw_rows),
                            }
                        }
                    }
                }
            }
        })
    });
}

/// What the weight-gradient kernels read.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct GradTile<'a> {
    /// The band transposed to `[position][row]`.
    xt: &'a [f32],
    /// Input channels per transposed row (a multiple of 16).
    row: usize,
    band: &'a GradBand<'a>,
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Band, GradBand, GradTile, Store, CO_BLOCK, PX_BLOCK};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn conv_band<const TAPS: usize>(
        band: &Band,
        blocks: usize,
        out: *mut f32,
        stride: usize,
        store: Store,
    ) {
        const { assert!(TAPS <= 9, "the taps are written out for up to 3 × 3") };
        let mut offsets = [0usize; TAPS];
        offsets.copy_from_slice(band.offsets);
        let x = band.input.as_ptr();
        for b in 0..blocks {
            let wb = band.weights.as_ptr().add(b * band.cin * TAPS * CO_BLOCK);
            let mut n = 0;
            while n < band.positions {
                let mut acc = [[_mm256_setzero_ps(); 2]; CO_BLOCK];
                for ci in 0..band.cin {
                    let xc = x.add(ci * band.plane + n);
                    let wc = wb.add(ci * TAPS * CO_BLOCK);
                    // The taps written out, as in the AVX-512 kernel.
                    macro_rules! tap {
                        ($t:expr) => {
                            if $t < TAPS {
                                let p = xc.add(offsets[$t]);
                                let v0 = _mm256_loadu_ps(p);
                                let v1 = _mm256_loadu_ps(p.add(8));
                                for (j, acc) in acc.iter_mut().enumerate() {
                                    let w = _mm256_broadcast_ss(&*wc.add($t * CO_BLOCK + j));
                                    acc[0] = _mm256_fmadd_ps(w, v0, acc[0]);
                                    acc[1] = _mm256_fmadd_ps(w, v1, acc[1]);
                                }
                            }
                        };
                    }
                    nine_taps!(tap);
                }
                let count = (band.positions - n).min(PX_BLOCK);
                let channels = (store.channels - b * CO_BLOCK).min(CO_BLOCK);
                for (j, acc) in acc.iter().enumerate().take(channels) {
                    let co = b * CO_BLOCK + j;
                    let o = out.add(co * stride + n);
                    let [v0, v1] = finish(acc, co, store);
                    if count == PX_BLOCK {
                        _mm256_storeu_ps(o, v0);
                        _mm256_storeu_ps(o.add(8), v1);
                    } else {
                        _mm256_maskstore_ps(o, lanes_below(count), v0);
                        _mm256_maskstore_ps(o.add(8), lanes_below(count.saturating_sub(8)), v1);
                    }
                }
                n += PX_BLOCK;
            }
        }
    }

    /// A tile's sums for output channel `co` with `store`'s bias and ReLU: `y = v + bias`,
    /// then `max(y, 0)`, which is `simd::add_bias`'s `if y > 0 { y } else { 0 }`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn finish(acc: &[__m256; 2], co: usize, store: Store) -> [__m256; 2] {
        // Plain statements: closures here would not be inlined into the intrinsics' callers.
        let [mut v0, mut v1] = *acc;
        if let Some(bias) = store.bias {
            let b = _mm256_set1_ps(bias[co]);
            v0 = _mm256_add_ps(v0, b);
            v1 = _mm256_add_ps(v1, b);
        }
        if store.relu {
            v0 = _mm256_max_ps(v0, _mm256_setzero_ps());
            v1 = _mm256_max_ps(v1, _mm256_setzero_ps());
        }
        [v0, v1]
    }

    /// A mask of the lanes below `count` (all 8 from 8 on).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn lanes_below(count: usize) -> __m256i {
        let index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(count.min(8) as i32), index)
    }

    /// [`super::transpose_band`] for positions `0..whole` (a multiple of 8), in 8 × 8 blocks
    /// transposed in registers: every read and write is a whole vector along a cache line.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn transpose_blocks(
        band: &GradBand,
        whole: usize,
        c0: usize,
        row: usize,
        xt: &mut [f32],
    ) {
        assert!(band.cin == 0 || (band.cin - 1) * band.plane + whole <= band.input.len());
        assert!(whole * row <= xt.len() && row.is_multiple_of(8));
        let (x, out) = (band.input.as_ptr(), xt.as_mut_ptr());
        for p0 in (0..whole).step_by(8) {
            for i0 in (0..row).step_by(8) {
                let present = band.cin.saturating_sub(c0 + i0).min(8);
                let mut r = [_mm256_setzero_ps(); 8];
                for (i, r) in r.iter_mut().enumerate().take(present) {
                    // In bounds: channel c0 + i0 + i < cin and p0 + 8 <= whole (asserted).
                    *r = _mm256_loadu_ps(x.add((c0 + i0 + i) * band.plane + p0));
                }
                let t = transpose8(r);
                for (p, t) in t.iter().enumerate() {
                    // In bounds: (p0 + p) · row + i0 + 8 <= whole · row (asserted).
                    _mm256_storeu_ps(out.add((p0 + p) * row + i0), *t);
                }
            }
        }
    }

    /// The transpose of an 8 × 8 block held as 8 row vectors.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ]
    }

    /// `dw[j][ci0 + i] += Σ_n dout[co0 + j][n] · xt[n + off][i]` for the rows of `dw` (up to
    /// 6) and the 16 input channels from `ci0` (two vectors), transposed from `ci0` on.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn grad_chunk(
        tile: &GradTile,
        off: usize,
        co0: usize,
        ci0: usize,
        dw: &mut [f32],
    ) {
        let band = tile.band;
        let cin = band.cin;
        let rows = dw.len() / cin;
        let d = band.dout.as_ptr().add(co0 * band.stride);
        let mut acc = [[_mm256_setzero_ps(); 2]; CO_BLOCK];
        let mut x = tile.xt.as_ptr().add(off * tile.row);
        for n in 0..band.stride {
            let v0 = _mm256_loadu_ps(x);
            let v1 = _mm256_loadu_ps(x.add(8));
            for (j, acc) in acc.iter_mut().enumerate() {
                let g = _mm256_broadcast_ss(&*d.add(j * band.stride + n));
                acc[0] = _mm256_fmadd_ps(g, v0, acc[0]);
                acc[1] = _mm256_fmadd_ps(g, v1, acc[1]);
            }
            x = x.add(tile.row);
        }
        let mut sums = [[0.0f32; 16]; CO_BLOCK];
        for (sum, acc) in sums.iter_mut().zip(&acc) {
            _mm256_storeu_ps(sum.as_mut_ptr(), acc[0]);
            _mm256_storeu_ps(sum.as_mut_ptr().add(8), acc[1]);
        }
        let width = (cin - ci0).min(16);
        for (j, sum) in sums.iter().enumerate().take(rows) {
            for (g, &v) in dw[j * cin + ci0..j * cin + ci0 + width].iter_mut().zip(sum) {
                *g += v;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Band, GradTile, Store, CO_BLOCK};
    use std::arch::x86_64::*;

    /// Vectors of 16 positions per full tile: 6 × 4 accumulators, 4 inputs and a broadcast
    /// weight use 29 of the 32 registers.
    const TILE_VECTORS: usize = 4;

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn conv_band<const TAPS: usize>(
        band: &Band,
        blocks: usize,
        out: *mut f32,
        stride: usize,
        store: Store,
    ) {
        const { assert!(TAPS <= 9, "the taps are written out for up to 3 × 3") };
        let mut offsets = [0usize; TAPS];
        offsets.copy_from_slice(band.offsets);
        let full = band.positions / (16 * TILE_VECTORS) * (16 * TILE_VECTORS);
        let rest = band.positions - full;
        // The last vector of the closing run holds 1..=16 positions.
        let tail: __mmask16 = match rest % 16 {
            0 => 0xffff,
            r => (1u16 << r) - 1,
        };
        for b in 0..blocks {
            let wb = band.weights.as_ptr().add(b * band.cin * TAPS * CO_BLOCK);
            let to = Out {
                ptr: out,
                stride,
                block: b * CO_BLOCK,
                store,
            };
            let mut n = 0;
            while n < full {
                tile::<TAPS, TILE_VECTORS>(band, &offsets, wb, &to, n, 0xffff);
                n += 16 * TILE_VECTORS;
            }
            match rest.div_ceil(16) {
                0 => {}
                1 => tile::<TAPS, 1>(band, &offsets, wb, &to, n, tail),
                2 => tile::<TAPS, 2>(band, &offsets, wb, &to, n, tail),
                3 => tile::<TAPS, 3>(band, &offsets, wb, &to, n, tail),
                _ => tile::<TAPS, 4>(band, &offsets, wb, &to, n, tail),
            }
        }
    }

    /// Where a block of output channels goes.
    struct Out<'a> {
        ptr: *mut f32,
        stride: usize,
        /// The block's first output channel.
        block: usize,
        store: Store<'a>,
    }

    /// One tile: `V` vectors of positions from `n` (the last one under `last`) × `CO_BLOCK`
    /// output channels, summed over all input channels and taps, then stored.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn tile<const TAPS: usize, const V: usize>(
        band: &Band,
        offsets: &[usize; TAPS],
        wb: *const f32,
        to: &Out,
        n: usize,
        last: __mmask16,
    ) {
        let x = band.input.as_ptr();
        let mut acc = [[_mm512_setzero_ps(); V]; CO_BLOCK];
        for ci in 0..band.cin {
            let xc = x.add(ci * band.plane + n);
            let wc = wb.add(ci * TAPS * CO_BLOCK);
            // The taps written out: as a loop, the compiler kept it rolled, with the tap
            // offsets loaded and the counters updated in every pass (the kernel ran 5–10 %
            // slower).
            macro_rules! tap {
                ($t:expr) => {
                    if $t < TAPS {
                        let p = xc.add(offsets[$t]);
                        let mut v = [_mm512_setzero_ps(); V];
                        for (k, v) in v.iter_mut().enumerate() {
                            *v = if k + 1 < V {
                                _mm512_loadu_ps(p.add(16 * k))
                            } else {
                                _mm512_maskz_loadu_ps(last, p.add(16 * k))
                            };
                        }
                        for (j, acc) in acc.iter_mut().enumerate() {
                            let w = _mm512_set1_ps(*wc.add($t * CO_BLOCK + j));
                            for (a, &v) in acc.iter_mut().zip(&v) {
                                *a = _mm512_fmadd_ps(w, v, *a);
                            }
                        }
                    }
                };
            }
            nine_taps!(tap);
        }
        let store = to.store;
        let channels = (store.channels - to.block).min(CO_BLOCK);
        for (j, acc) in acc.iter().enumerate().take(channels) {
            let co = to.block + j;
            let o = to.ptr.add(co * to.stride + n);
            let bias = _mm512_set1_ps(store.bias.map_or(0.0, |b| b[co]));
            for (k, &a) in acc.iter().enumerate() {
                // As `simd::add_bias`: `y = v + bias`, then `max(y, 0)` for its ReLU.
                let a = if store.bias.is_some() {
                    _mm512_add_ps(a, bias)
                } else {
                    a
                };
                let a = if store.relu {
                    _mm512_max_ps(a, _mm512_setzero_ps())
                } else {
                    a
                };
                if k + 1 < V {
                    _mm512_storeu_ps(o.add(16 * k), a);
                } else {
                    _mm512_mask_storeu_ps(o.add(16 * k), last, a);
                }
            }
        }
    }

    /// `dw[j][ci] += Σ_n dout[co0 + j][n] · xt[n + off][ci]` for the rows of `dw` (up to 6)
    /// and all input channels: runs of 64 channels, then one of 1 to 63 whose last vector is
    /// masked to the channels there are.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn grad_block(tile: &GradTile, off: usize, co0: usize, dw: &mut [f32]) {
        let cin = tile.band.cin;
        let full = cin / (16 * TILE_VECTORS) * (16 * TILE_VECTORS);
        let mut ci0 = 0;
        while ci0 < full {
            grad_run::<TILE_VECTORS>(tile, off, co0, ci0, dw, 0xffff);
            ci0 += 16 * TILE_VECTORS;
        }
        let rest = cin - full;
        let last: __mmask16 = match rest % 16 {
            0 => 0xffff,
            r => (1u16 << r) - 1,
        };
        match rest.div_ceil(16) {
            0 => {}
            1 => grad_run::<1>(tile, off, co0, ci0, dw, last),
            2 => grad_run::<2>(tile, off, co0, ci0, dw, last),
            3 => grad_run::<3>(tile, off, co0, ci0, dw, last),
            _ => grad_run::<4>(tile, off, co0, ci0, dw, last),
        }
    }

    /// One run of `V` vectors of input channels from `ci0` (the last under `last`).
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn grad_run<const V: usize>(
        tile: &GradTile,
        off: usize,
        co0: usize,
        ci0: usize,
        dw: &mut [f32],
        last: __mmask16,
    ) {
        let band = tile.band;
        let cin = band.cin;
        let rows = dw.len() / cin;
        let d = band.dout.as_ptr().add(co0 * band.stride);
        let mut acc = [[_mm512_setzero_ps(); V]; CO_BLOCK];
        let mut x = tile.xt.as_ptr().add(off * tile.row + ci0);
        for n in 0..band.stride {
            // The transposed rows are zero past `cin`: whole vectors are read.
            let mut v = [_mm512_setzero_ps(); V];
            for (k, v) in v.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(x.add(16 * k));
            }
            for (j, acc) in acc.iter_mut().enumerate() {
                let g = _mm512_set1_ps(*d.add(j * band.stride + n));
                for (a, &v) in acc.iter_mut().zip(&v) {
                    *a = _mm512_fmadd_ps(g, v, *a);
                }
            }
            x = x.add(tile.row);
        }
        let out = dw.as_mut_ptr();
        for (j, acc) in acc.iter().enumerate().take(rows) {
            for (k, &a) in acc.iter().enumerate() {
                let o = out.add(j * cin + ci0 + 16 * k);
                let mask = if k + 1 < V { 0xffff } else { last };
                let old = _mm512_maskz_loadu_ps(mask, o);
                _mm512_mask_storeu_ps(o, mask, _mm512_add_ps(old, a));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The transposed band starts on a cache line whatever the buffer's own alignment, and
    /// keeps its length inside the buffer.
    #[test]
    fn the_transposed_band_starts_on_a_cache_line() {
        let mut buf = vec![0.0f32; 100 + 2 * LINE_FLOATS];
        for start in 0..LINE_FLOATS {
            let inner = &mut buf[start..start + 100 + LINE_FLOATS];
            let base = inner.as_ptr() as usize;
            let xt = cache_aligned(inner, 100);
            let at = xt.as_ptr() as usize;
            assert_eq!(at % 64, 0, "start {start}");
            assert!(at >= base && at - base < 64, "start {start}");
            assert_eq!(xt.len(), 100);
        }
    }

    /// The band transposed for the weight gradient, whole or a run of channels at a time,
    /// holds every input element at its transposed place and zeros in the padding channels,
    /// for channel counts and lengths that are and are not whole 8 × 8 blocks.
    #[test]
    fn transposed_band_matches_the_transpose_written_out() {
        for (cin, positions) in [(1, 1), (3, 8), (8, 16), (12, 37), (17, 64), (44, 131)] {
            let plane = positions + 5;
            let input: Vec<f32> = (0..cin * plane).map(|i| i as f32 + 0.5).collect();
            let band = GradBand {
                cin,
                input: &input,
                plane,
                offsets: &[0],
                cout: 1,
                dout: &[],
                stride: positions,
            };
            let whole = transposed_row(cin);
            for (c0, row) in [(0, whole), (0, 16), (8, 8), (16, 16), (24, 16)] {
                let mut xt = vec![f32::NAN; positions * row];
                transpose_band(&band, positions, c0, row, &mut xt);
                for p in 0..positions {
                    for i in 0..row {
                        let ci = c0 + i;
                        let want = if ci < cin { input[ci * plane + p] } else { 0.0 };
                        assert_eq!(
                            xt[p * row + i],
                            want,
                            "cin {cin}, channels from {c0}, position {p}, channel {ci}"
                        );
                    }
                }
            }
        }
    }

    /// AVX-512 ends a band of any length with a masked vector: every count of positions from
    /// one to past two tiles gives the sums written out, and nothing past them is written.
    #[test]
    fn avx512_masked_ends_compute_exactly_the_positions_asked_for() {
        if !Isa::Avx512.supported() {
            eprintln!("skipped: this CPU does not run AVX-512");
            return;
        }
        let (cin, cout, plane) = (3, 7, 200);
        let offsets = [0, 1, 2, 20, 21, 22, 40, 41, 42];
        let input: Vec<f32> = (0..cin * plane)
            .map(|i| ((i * 7) % 13) as f32 - 6.0)
            .collect();
        let weight: Vec<f32> = (0..cout * cin * 9)
            .map(|i| ((i * 5) % 11) as f32 - 5.0)
            .collect();
        let packed = pack_weights(cout, cin, 9, &weight);
        let stride = 160;
        for positions in 1..=150 {
            let band = Band {
                cin,
                input: &input,
                plane,
                offsets: &offsets,
                weights: &packed,
                positions,
            };
            let mut out = vec![f32::NAN; cout.next_multiple_of(CO_BLOCK) * stride];
            conv_band(Simd::Avx512, &band, &mut out, stride);
            for co in 0..cout {
                for n in 0..stride {
                    let got = out[co * stride + n];
                    if n >= positions {
                        assert!(got.is_nan(), "position {n} of {positions} written");
                        continue;
                    }
                    let mut want = 0.0f32;
                    for ci in 0..cin {
                        for (t, &off) in offsets.iter().enumerate() {
                            want += weight[(co * cin + ci) * 9 + t] * input[ci * plane + off + n];
                        }
                    }
                    // Small integers: every order of the sums is exact.
                    assert_eq!(got, want, "channel {co}, position {n} of {positions}");
                }
            }
        }
    }
}
