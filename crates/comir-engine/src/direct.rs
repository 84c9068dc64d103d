//! Direct convolution micro-kernels (AVX2 + FMA), used instead of `gemm` matrix products where
//! the CPU has those instructions: the forward convolution, the input gradient (the same
//! kernel on the output gradient with flipped taps) and the weight gradient.
//!
//! Why: the dense layers have few output channels (12) and few input channels per tap, so
//! one `gemm` call per tap fills 12 of the 16 rows of gemm's micro-kernel, packs its operands
//! on every call and reads and writes the whole output band nine times. Here a tile of 6
//! output channels × 16 grid positions stays in 12 vector registers while all input channels
//! and all taps are summed into it, and is written once; the weight gradient keeps a tile of
//! 4 output channels × 3 (input channel, tap) columns in registers over the whole band. The
//! input is the same zero-padded band as the gemm path (see `conv.rs`), on which every tap is
//! a constant offset.
//!
//! Tested against the convolution and its gradients written out, as is the gemm path, which
//! remains the portable fallback (`conv::tests`).

/// Output channels per tile (one broadcast weight each).
pub(crate) const CO_BLOCK: usize = 6;
/// Grid positions per tile (two 8-lane vectors): 12 accumulators, 2 inputs and a
/// broadcast weight use 15 of the 16 vector registers.
pub(crate) const PX_BLOCK: usize = 16;

/// Whether this CPU runs the kernel (checked once; `std` caches the detection).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

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
    /// Grid positions to compute, a multiple of [`PX_BLOCK`].
    pub positions: usize,
}

/// `out[co · stride + n] = Σ_ci Σ_t w[co][ci][t] · input[ci · plane + offsets[t] + n]` for
/// `n < positions` and every (padded) output channel `co`.
///
/// Panics if a read or write would leave its slice (the caller sizes the band's slack).
pub(crate) fn conv_band(band: &Band, out: &mut [f32], stride: usize) {
    let taps = band.offsets.len();
    let blocks = band.weights.len() / (band.cin * taps * CO_BLOCK);
    assert_eq!(band.weights.len(), blocks * band.cin * taps * CO_BLOCK);
    assert_eq!(
        band.positions % PX_BLOCK,
        0,
        "positions must be whole tiles"
    );
    let max_off = band.offsets.iter().copied().max().unwrap_or(0);
    assert!(
        band.cin == 0 || (band.cin - 1) * band.plane + max_off + band.positions <= band.input.len(),
        "direct conv: input band too short"
    );
    assert!(
        blocks == 0 || (blocks * CO_BLOCK - 1) * stride + band.positions <= out.len(),
        "direct conv: output too short"
    );
    assert!(available(), "direct conv: CPU lacks AVX2/FMA");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX2 and FMA (asserted); every read and write is inside the slices
    // (asserted above).
    unsafe {
        match taps {
            9 => avx2::conv_band::<9>(band, blocks, out.as_mut_ptr(), stride),
            1 => avx2::conv_band::<1>(band, blocks, out.as_mut_ptr(), stride),
            _ => panic!("direct conv: {taps} taps"),
        }
    }
}

/// Output channels per tile of the weight-gradient kernel.
pub(crate) const GRAD_CO_BLOCK: usize = 4;
/// (input channel, tap) columns per tile of the weight-gradient kernel.
const GRAD_COLUMNS: usize = 3;

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
    /// Channel stride of `dout`, a multiple of 8.
    pub stride: usize,
}

/// Re-packs transposed weights `wt[ci][t·cout + co]` (see `conv::transpose_weight`) for
/// [`conv_band`] run as the input gradient: output channels `cin`, input channels `cout`.
pub(crate) fn pack_transposed(cout: usize, cin: usize, taps: usize, wt: &[f32]) -> Vec<f32> {
    pack(cin, cout, taps, |ci, co, t| {
        wt[ci * taps * cout + t * cout + co]
    })
}

/// `dw[t][co][ci] += Σ_n dout[co · stride + n] · input[ci · plane + offsets[t] + n]` over
/// `n < stride` (the tap-major layout of `conv::conv_backward`).
///
/// Panics if a read would leave its slice.
pub(crate) fn weight_grad_band(band: &GradBand, dw: &mut [f32]) {
    let taps = band.offsets.len();
    assert_eq!(
        dw.len(),
        taps * band.cout * band.cin,
        "direct conv: dw size"
    );
    assert_eq!(
        band.stride % 8,
        0,
        "direct conv: stride must be whole vectors"
    );
    let co_pad = band.cout.next_multiple_of(GRAD_CO_BLOCK);
    assert!(
        band.dout.len() >= co_pad * band.stride,
        "direct conv: dout too short"
    );
    let max_off = band.offsets.iter().copied().max().unwrap_or(0);
    assert!(
        band.cin == 0 || (band.cin - 1) * band.plane + max_off + band.stride <= band.input.len(),
        "direct conv: input band too short"
    );
    assert!(available(), "direct conv: CPU lacks AVX2/FMA");
    // Columns (ci, t) in dw's order within a (t, co) row: each tile takes three of them.
    let columns: Vec<(usize, usize)> = (0..band.cin)
        .flat_map(|ci| (0..taps).map(move |t| (ci, t)))
        .collect();
    let mut sums = [[0.0f32; GRAD_COLUMNS]; GRAD_CO_BLOCK];
    for co0 in (0..band.cout).step_by(GRAD_CO_BLOCK) {
        for group in columns.chunks(GRAD_COLUMNS) {
            // A short last group repeats its first column; the repeats are not written.
            let at = |i: usize| {
                let (ci, t) = group[i.min(group.len() - 1)];
                ci * band.plane + band.offsets[t]
            };
            let starts = [at(0), at(1), at(2)];
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 and FMA asserted; rows co0..co0+4 of dout and the columns' input
            // spans of `stride` elements are inside the slices (asserted above).
            unsafe {
                avx2::grad_tile(band, co0, starts, &mut sums);
            }
            for (j, row) in sums.iter().enumerate().take(band.cout - co0) {
                for (&(ci, t), &v) in group.iter().zip(row) {
                    dw[(t * band.cout + co0 + j) * band.cin + ci] += v;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Band, GradBand, CO_BLOCK, GRAD_COLUMNS, GRAD_CO_BLOCK, PX_BLOCK};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn conv_band<const TAPS: usize>(
        band: &Band,
        blocks: usize,
        out: *mut f32,
        stride: usize,
    ) {
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
                    for (t, &off) in offsets.iter().enumerate() {
                        let p = xc.add(off);
                        let v0 = _mm256_loadu_ps(p);
                        let v1 = _mm256_loadu_ps(p.add(8));
                        for (j, acc) in acc.iter_mut().enumerate() {
                            let w = _mm256_broadcast_ss(&*wc.add(t * CO_BLOCK + j));
                            acc[0] = _mm256_fmadd_ps(w, v0, acc[0]);
                            acc[1] = _mm256_fmadd_ps(w, v1, acc[1]);
                        }
                    }
                }
                for (j, acc) in acc.iter().enumerate() {
                    let o = out.add((b * CO_BLOCK + j) * stride + n);
                    _mm256_storeu_ps(o, acc[0]);
                    _mm256_storeu_ps(o.add(8), acc[1]);
                }
                n += PX_BLOCK;
            }
        }
    }

    /// Sum of 8 lanes.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// `sums[j][c] = Σ_n dout[(co0 + j) · stride + n] · input[starts[c] + n]`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn grad_tile(
        band: &GradBand,
        co0: usize,
        starts: [usize; GRAD_COLUMNS],
        sums: &mut [[f32; GRAD_COLUMNS]; GRAD_CO_BLOCK],
    ) {
        let d = band.dout.as_ptr().add(co0 * band.stride);
        let x = band.input.as_ptr();
        let cols = [x.add(starts[0]), x.add(starts[1]), x.add(starts[2])];
        let mut acc = [[_mm256_setzero_ps(); GRAD_COLUMNS]; GRAD_CO_BLOCK];
        let mut n = 0;
        while n < band.stride {
            let v = [
                _mm256_loadu_ps(cols[0].add(n)),
                _mm256_loadu_ps(cols[1].add(n)),
                _mm256_loadu_ps(cols[2].add(n)),
            ];
            for (j, acc) in acc.iter_mut().enumerate() {
                let g = _mm256_loadu_ps(d.add(j * band.stride + n));
                acc[0] = _mm256_fmadd_ps(g, v[0], acc[0]);
                acc[1] = _mm256_fmadd_ps(g, v[1], acc[1]);
                acc[2] = _mm256_fmadd_ps(g, v[2], acc[2]);
            }
            n += 8;
        }
        for (row, acc) in sums.iter_mut().zip(&acc) {
            for (s, &a) in row.iter_mut().zip(acc) {
                *s = hsum(a);
            }
        }
    }
}
