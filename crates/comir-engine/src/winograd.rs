//! Winograd F(2×2, 3×3) convolution (Lavin & Gray, "Fast Algorithms for Convolutional Neural
//! Networks", CVPR 2016) for the 3×3 layers on CPUs with the direct kernels.
//!
//! Why: the direct kernels run at about 90 % of the FMA peak already, so the 3×3 layers get
//! faster only with fewer multiplies. A 2 × 2 tile of outputs is computed from the 4 × 4
//! inputs around it as `Aᵀ [Σ_ci (G g Gᵀ) ⊙ (Bᵀ d B)] A`: 16 multiplies per input channel
//! where the direct convolution needs 36, 2.25× fewer. The sums over input channels are 16
//! matrix products, one per position of the 4 × 4 transformed tile ("frequency"), which run
//! on the direct kernel with one tap ([`direct::conv_band`]); the transforms around them are
//! additions only. The same band computes the input gradient (the output gradient convolved
//! with the flipped kernel).
//!
//! The transforms multiply by 0, ±1 and ½ only, so the result differs from the direct sum by
//! f32 rounding (a few ulps of the largest term), and each output is computed the same way
//! whichever band or window it falls in: tiles lie on the plane's even rows and columns.

use std::cell::RefCell;

use crate::direct::{self, Simd, CO_BLOCK, PX_BLOCK};

/// Positions of the transformed 4 × 4 tile.
const FREQS: usize = 16;
/// Tiles transformed per vector: the transforms use AVX2's 8 lanes on every CPU that has the
/// direct kernels (they are additions and shuffles, not the hot loop).
const LANES: usize = 8;
/// Target size in bytes of the transformed input of one chunk of tile rows: it is written once
/// and read twice (once per block of six outputs), so it should stay in L2.
const CHUNK_BYTES: usize = 256 * 1024;

/// Whether Winograd computes a 3×3 convolution from `inputs` to `outputs` channels faster than
/// the direct kernel. Per input channel and 8 tiles, the direct kernel does 36 multiplies per
/// output, Winograd 16 plus its share of the transforms: about 80 operations per input channel
/// and 50 per output channel.
pub(crate) fn pays(inputs: usize, outputs: usize) -> bool {
    20 * inputs * outputs > 50 * outputs + 80 * inputs
}

/// The 16 transformed kernels `G g Gᵀ`, each packed for [`direct::conv_band`] with one tap.
pub(crate) struct Weights {
    inputs: usize,
    outputs: usize,
    /// `FREQS` blocks of `block` floats.
    packed: Vec<f32>,
    block: usize,
}

thread_local! {
    // Buffers of dropped `Weights`, reused: a convolution is run for each sample and layer,
    // and a fresh buffer of a few hundred KiB would come with page faults every time.
    static BUFFERS: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

impl Weights {
    /// Transforms the 3×3 kernels `g(output, input, tap)` (taps row-major).
    pub(crate) fn new(
        outputs: usize,
        inputs: usize,
        g: impl Fn(usize, usize, usize) -> f32,
    ) -> Weights {
        let padded = outputs.div_ceil(CO_BLOCK) * CO_BLOCK;
        let block = padded * inputs;
        let mut packed = BUFFERS.with(|b| b.borrow_mut().pop()).unwrap_or_default();
        packed.clear();
        packed.resize(FREQS * block, 0.0);
        // Block f as `direct::pack_weights` lays out one tap: `[o / 6][i][o % 6]`, the padding
        // outputs zero.
        for o in 0..outputs {
            let (ob, oj) = (o / CO_BLOCK, o % CO_BLOCK);
            for i in 0..inputs {
                let k: [f64; 9] = std::array::from_fn(|t| f64::from(g(o, i, t)));
                for (f, u) in transform_kernel(&k).iter().enumerate() {
                    packed[f * block + (ob * inputs + i) * CO_BLOCK + oj] = *u as f32;
                }
            }
        }
        Weights {
            inputs,
            outputs,
            packed,
            block,
        }
    }

    fn freq(&self, f: usize) -> &[f32] {
        &self.packed[f * self.block..(f + 1) * self.block]
    }
}

impl Drop for Weights {
    fn drop(&mut self) {
        let packed = std::mem::take(&mut self.packed);
        BUFFERS.with(|b| b.borrow_mut().push(packed));
    }
}

/// `G g Gᵀ` of one 3×3 kernel (row-major), with `G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1]`.
fn transform_kernel(g: &[f64; 9]) -> [f64; FREQS] {
    let col = |a: f64, b: f64, c: f64| [a, (a + b + c) / 2.0, (a - b + c) / 2.0, c];
    // G g: 4 × 3, column by column.
    let gg: [[f64; 4]; 3] = std::array::from_fn(|j| col(g[j], g[3 + j], g[6 + j]));
    let mut u = [0.0; FREQS];
    for i in 0..4 {
        let row = col(gg[0][i], gg[1][i], gg[2][i]);
        u[4 * i..4 * i + 4].copy_from_slice(&row);
    }
    u
}

/// Scratch of [`band`], reused across calls.
#[derive(Default)]
pub(crate) struct Scratch {
    /// Transformed input of a chunk, `[FREQS][inputs][tiles]`.
    v: Vec<f32>,
    /// Products, `[FREQS][outputs rounded up to CO_BLOCK][tiles]`.
    m: Vec<f32>,
}

fn grow(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// A band of the convolution on the zero-padded input band `input` (channel `c` at
/// `c · plane`, rows of `wp` floats, `rows + 2` rows, as for the direct kernel): writes
/// `out[o · stride + r · wp + x]` for output rows `r < rows` (even) and columns `x` in
/// `xa..xb` (both even) and returns `stride`. Other positions of `out` hold junk.
///
/// Panics if the CPU lacks `simd`'s instructions or the band is shorter than described.
#[allow(clippy::too_many_arguments)]
pub(crate) fn band(
    simd: Simd,
    weights: &Weights,
    input: &[f32],
    plane: usize,
    wp: usize,
    rows: usize,
    (xa, xb): (usize, usize),
    out: &mut Vec<f32>,
    scratch: &mut Scratch,
) -> usize {
    let (inputs, outputs) = (weights.inputs, weights.outputs);
    assert!(
        rows.is_multiple_of(2) && xa.is_multiple_of(2) && xb.is_multiple_of(2) && xa < xb,
        "winograd: rows {rows} and columns {xa}..{xb} must be even"
    );
    assert!(
        xb + 2 <= wp,
        "winograd: columns {xa}..{xb} outside the band"
    );
    assert!(
        inputs == 0 || (inputs - 1) * plane + (rows + 2) * wp + 2 * LANES <= input.len(),
        "winograd: input band too short"
    );
    assert!(comir_cpu::Isa::Avx2.supported(), "winograd: CPU lacks AVX2");
    // Output rows, then a vector of slack for the last tiles' overrun.
    let stride = rows * wp + 2 * LANES;
    let og = grow(out, outputs * stride);
    let tw = (xb - xa) / 2;
    let tile_rows = rows / 2;
    // Tile rows per chunk: the transformed input near CHUNK_BYTES, at least 4 vectors of tiles.
    let per_row = FREQS * inputs.max(1) * tw * 4;
    let chunk = (CHUNK_BYTES / per_row)
        .max((4 * PX_BLOCK).div_ceil(tw))
        .clamp(1, tile_rows);
    // The last vector of a tile row runs this far past it.
    let overrun = tw.next_multiple_of(LANES) - tw;
    let blocks = outputs.div_ceil(CO_BLOCK) * CO_BLOCK;
    let mut ty0 = 0;
    while ty0 < tile_rows {
        let tr = chunk.min(tile_rows - ty0);
        // The products are computed for the chunk's tiles (whole vectors of them on AVX2);
        // rows of `v` and `m` have room for the overrun.
        let positions = match simd {
            Simd::Avx2 => (tr * tw).next_multiple_of(PX_BLOCK),
            Simd::Avx512 => tr * tw,
        };
        let tiles = (tr * tw + overrun).next_multiple_of(PX_BLOCK);
        let v = grow(&mut scratch.v, FREQS * inputs * tiles);
        for c in 0..inputs {
            let rows_of_chunk = &input[c * plane + 2 * ty0 * wp + xa / 2..];
            // SAFETY: AVX2 is present (asserted); the reads stay in the band (asserted: the
            // last row's overrun is within the vector of slack after it), the writes in `v`
            // (sized above: whole vectors of tiles per row).
            unsafe {
                avx2::input_transform(
                    rows_of_chunk,
                    wp,
                    tr,
                    tw,
                    &mut v[c * tiles..],
                    inputs * tiles,
                );
            }
        }
        let m = grow(&mut scratch.m, FREQS * blocks * tiles);
        for f in 0..FREQS {
            let band = direct::Band {
                cin: inputs,
                input: &v[f * inputs * tiles..(f + 1) * inputs * tiles],
                plane: tiles,
                offsets: &[0],
                weights: weights.freq(f),
                positions,
            };
            direct::conv_band(simd, &band, &mut m[f * blocks * tiles..], tiles);
        }
        for o in 0..outputs {
            let dst = &mut og[o * stride + 2 * ty0 * wp + xa..(o + 1) * stride];
            // SAFETY: as above; each row's writes end within the next row or the slack.
            unsafe {
                avx2::output_transform(&m[o * tiles..], blocks * tiles, tr, tw, dst, wp);
            }
        }
        ty0 += tr;
    }
    stride
}

/// Stores a padded row (even length) as its even elements, then its odd ones:
/// `[p0 p1 p2 p3 …] → [p0 p2 … | p1 p3 …]`. Winograd's tiles start on even columns, so its
/// input transform then reads 8 tiles' columns as whole vectors.
pub(crate) fn split(row: &[f32], dst: &mut [f32]) {
    let half = row.len() / 2;
    assert!(
        row.len() == 2 * half && dst.len() == row.len(),
        "split: lengths"
    );
    #[cfg(target_arch = "x86_64")]
    if comir_cpu::Isa::Avx2.supported() {
        // SAFETY: the CPU has AVX2 (checked).
        unsafe { avx2::split(row, dst) };
        return;
    }
    for k in 0..half {
        dst[k] = row[2 * k];
        dst[half + k] = row[2 * k + 1];
    }
}

/// Elsewhere there are no direct kernels, so nothing asks for Winograd.
#[cfg(not(target_arch = "x86_64"))]
mod avx2 {
    pub(super) unsafe fn input_transform(
        _: &[f32],
        _: usize,
        _: usize,
        _: usize,
        _: &mut [f32],
        _: usize,
    ) {
        unreachable!("Winograd runs with the direct kernels, on x86-64 only")
    }

    pub(super) unsafe fn output_transform(
        _: &[f32],
        _: usize,
        _: usize,
        _: usize,
        _: &mut [f32],
        _: usize,
    ) {
        unreachable!("Winograd runs with the direct kernels, on x86-64 only")
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{FREQS, LANES};
    use std::arch::x86_64::*;

    /// [`super::split`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn split(row: &[f32], dst: &mut [f32]) {
        let half = row.len() / 2;
        let vecs = half / LANES;
        assert!(row.len() == 2 * half && dst.len() == row.len());
        let (s, d) = (row.as_ptr(), dst.as_mut_ptr());
        for j in 0..vecs {
            let a = _mm256_loadu_ps(s.add(2 * LANES * j));
            let b = _mm256_loadu_ps(s.add(2 * LANES * j + LANES));
            // [a0 a2 b0 b2 | a4 a6 b4 b6] → [a0 a2 a4 a6 b0 b2 b4 b6], and the odd ones.
            let e = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
            let o = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
            let e = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(e)));
            let o = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(o)));
            _mm256_storeu_ps(d.add(LANES * j), e);
            _mm256_storeu_ps(d.add(half + LANES * j), o);
        }
        for k in vecs * LANES..half {
            dst[k] = row[2 * k];
            dst[half + k] = row[2 * k + 1];
        }
    }

    /// Row transform of one split input row at tiles `tx..tx + 8`: `d0 − d2, d1 + d2, d2 − d1,
    /// d1 − d3` with `d0, d1, d2, d3` the row's elements `2tx, 2tx + 1, 2tx + 2, 2tx + 3`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn row_transform(even: *const f32, odd: *const f32) -> [__m256; 4] {
        let (d0, d1) = (_mm256_loadu_ps(even), _mm256_loadu_ps(odd));
        let (d2, d3) = (_mm256_loadu_ps(even.add(1)), _mm256_loadu_ps(odd.add(1)));
        [
            _mm256_sub_ps(d0, d2),
            _mm256_add_ps(d1, d2),
            _mm256_sub_ps(d2, d1),
            _mm256_sub_ps(d1, d3),
        ]
    }

    /// `Bᵀ d B` of the tiles of `tr` tile rows of `tw` tiles, `Bᵀ = [1 0 −1 0; 0 1 1 0;
    /// 0 −1 1 0; 0 1 0 −1]`, from split rows `wp` apart (even elements at `band[r · wp]`, odd
    /// ones `wp / 2` further): frequency `f` of tile `t = ty · tw + tx` to `v[f · fstride + t]`,
    /// whole vectors of tiles per row (the last vector of a row runs into the next row's
    /// tiles, which are written later, or past the chunk). Rows of tiles in order and each
    /// from left to right, so that every store continues the one before it in its frequency.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn input_transform(
        band: &[f32],
        wp: usize,
        tr: usize,
        tw: usize,
        v: &mut [f32],
        fstride: usize,
    ) {
        let vecs = tw.div_ceil(LANES);
        let half = wp / 2;
        assert!((2 * tr + 1) * wp + half + vecs * LANES < band.len());
        assert!((FREQS - 1) * fstride + (tr - 1) * tw + vecs * LANES <= v.len());
        let (e, d) = (band.as_ptr(), v.as_mut_ptr());
        let f4 = 4 * fstride;
        for ty in 0..tr {
            for j in 0..vecs {
                let tx = LANES * j;
                let row = |i: usize| {
                    let r = (2 * ty + i) * wp + tx;
                    row_transform(e.add(r), e.add(r + half))
                };
                let [r0, r1, r2, r3] = [row(0), row(1), row(2), row(3)];
                // The same down the columns. One pointer walks the frequencies (a, c) at
                // fixed multiples of `fstride` (16 pointers would not stay in registers).
                let mut p = d.add(ty * tw + tx);
                for c in 0..4 {
                    _mm256_storeu_ps(p, _mm256_sub_ps(r0[c], r2[c]));
                    _mm256_storeu_ps(p.add(f4), _mm256_add_ps(r1[c], r2[c]));
                    _mm256_storeu_ps(p.add(2 * f4), _mm256_sub_ps(r2[c], r1[c]));
                    _mm256_storeu_ps(p.add(3 * f4), _mm256_sub_ps(r1[c], r3[c]));
                    p = p.add(fstride);
                }
            }
        }
    }

    /// `Aᵀ m A` of the tiles of `tr` tile rows of `tw` tiles, `Aᵀ = [1 1 1 0; 0 1 −1 −1]`, from
    /// `m[f · fstride + t]`: the 2 × 2 outputs of tile `(ty, tx)` to
    /// `out[(2ty + a) · wp + 2tx + b]`, whole vectors of tiles. A row's last vector runs past
    /// it, by less than a vector, into the start of the next row or the slack: tile rows are
    /// written in order and the vectors of each from last to first, so every valid output is
    /// written last by its own.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn output_transform(
        m: &[f32],
        fstride: usize,
        tr: usize,
        tw: usize,
        out: &mut [f32],
        wp: usize,
    ) {
        let vecs = tw.div_ceil(LANES);
        assert!((FREQS - 1) * fstride + (tr - 1) * tw + vecs * LANES <= m.len());
        assert!((2 * tr - 1) * wp + 2 * LANES * vecs <= out.len());
        let (s, d) = (m.as_ptr(), out.as_mut_ptr());
        for ty in 0..tr {
            for j in (0..vecs).rev() {
                let tx = LANES * j;
                let t = ty * tw + tx;
                // Row pass: per row i of the tile, (m0 + m1 + m2, m1 − m2 − m3).
                let mut a = [[_mm256_setzero_ps(); 2]; 4];
                let mut q = s.add(t);
                for ai in a.iter_mut() {
                    let m0 = _mm256_loadu_ps(q);
                    let m1 = _mm256_loadu_ps(q.add(fstride));
                    let m2 = _mm256_loadu_ps(q.add(2 * fstride));
                    let m3 = _mm256_loadu_ps(q.add(3 * fstride));
                    q = q.add(4 * fstride);
                    *ai = [
                        _mm256_add_ps(_mm256_add_ps(m0, m1), m2),
                        _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3),
                    ];
                }
                for row in 0..2 {
                    // Column pass for output row `row`: even and odd columns.
                    let y: [__m256; 2] = std::array::from_fn(|b| {
                        if row == 0 {
                            _mm256_add_ps(_mm256_add_ps(a[0][b], a[1][b]), a[2][b])
                        } else {
                            _mm256_sub_ps(_mm256_sub_ps(a[1][b], a[2][b]), a[3][b])
                        }
                    });
                    // Interleave: [e0 o0 e1 o1 … e7 o7].
                    let lo = _mm256_unpacklo_ps(y[0], y[1]);
                    let hi = _mm256_unpackhi_ps(y[0], y[1]);
                    let p = d.add((2 * ty + row) * wp + 2 * tx);
                    _mm256_storeu_ps(p, _mm256_permute2f128_ps::<0x20>(lo, hi));
                    _mm256_storeu_ps(p.add(LANES), _mm256_permute2f128_ps::<0x31>(lo, hi));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `G g Gᵀ` against the matrices multiplied out.
    #[test]
    fn the_kernel_transform_is_g_g_gt() {
        let g: [f64; 9] = std::array::from_fn(|i| (i as f64 * 0.7 - 2.0).sin());
        let gm = [
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.5],
            [0.5, -0.5, 0.5],
            [0.0, 0.0, 1.0],
        ];
        let u = transform_kernel(&g);
        for i in 0..4 {
            for j in 0..4 {
                let mut want = 0.0;
                for k in 0..3 {
                    for l in 0..3 {
                        want += gm[i][k] * g[3 * k + l] * gm[j][l];
                    }
                }
                assert!((u[4 * i + j] - want).abs() < 1e-12, "({i}, {j})");
            }
        }
    }
}
