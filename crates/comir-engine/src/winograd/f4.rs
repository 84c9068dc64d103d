//! Winograd F(4×4, 3×3): a 4 × 4 tile of outputs from the 6 × 6 inputs around it, with
//! Lavin & Gray's points 0, ±1, ±2 and ∞. 36 multiplies per input channel for 16 outputs:
//! 2.25 per output, where F(2×2, 3×3) needs 4 and the direct convolution 9. On planes whose
//! sides are multiples of 4 it computes the forward convolutions, the input gradients and the
//! weight gradients; this module holds its transforms, and `super` the drivers both tile
//! sides share.
//!
//! Padded rows are stored split four ways (`[p0 p4 p8 … | p1 p5 … | p2 p6 … | p3 p7 …]`, see
//! [`split`]), so that the input transform reads the six columns of 8 tiles (16 on AVX-512)
//! as whole vectors. The transforms are written once over the vector width (`lanes`); a lane
//! computes the same thing at either width, so both give the same bits.
//! The input and output transforms multiply by 2, 4, 5 and 8, the kernel transform divides by
//! 4, 6, 12 and 24 (in f64, once per convolution and batch): the result differs from the direct sum by
//! f32 rounding of terms a few times larger than the outputs. Tiles lie on the plane's rows
//! and columns that are multiples of 4, so each output is computed the same way whichever
//! band or window it falls in.

use super::LANES;

/// Positions of the transformed 6 × 6 tile.
pub(super) const FREQS: usize = 36;
/// `G g Gᵀ` of one 3×3 kernel (row-major), with `G = [¼ 0 0; −⅙ −⅙ −⅙; −⅙ ⅙ −⅙;
/// 1/24 1/12 ⅙; 1/24 −1/12 ⅙; 0 0 1]`.
pub(super) fn transform_kernel(g: &[f64; 9]) -> [f64; FREQS] {
    let col = |a: f64, b: f64, c: f64| {
        [
            a / 4.0,
            -(a + b + c) / 6.0,
            -(a - b + c) / 6.0,
            a / 24.0 + b / 12.0 + c / 6.0,
            a / 24.0 - b / 12.0 + c / 6.0,
            c,
        ]
    };
    // G g: 6 × 3, column by column.
    let gg: [[f64; 6]; 3] = std::array::from_fn(|j| col(g[j], g[3 + j], g[6 + j]));
    let mut u = [0.0; FREQS];
    for i in 0..6 {
        u[6 * i..6 * i + 6].copy_from_slice(&col(gg[0][i], gg[1][i], gg[2][i]));
    }
    u
}

/// The gradient w.r.t. a 3×3 kernel (row-major) of a loss whose gradient w.r.t. `G g Gᵀ` is
/// `u`: `Gᵀ u G`, the adjoint of [`transform_kernel`].
pub(super) fn kernel_gradient(u: &[f64; FREQS]) -> [f64; 9] {
    // Gᵀ applied to a column of six; multiplications by reciprocals, as this runs for every
    // kernel of every sample (divisions cost a percent of a training step).
    const SIXTH: f64 = 1.0 / 6.0;
    const TWELFTH: f64 = 1.0 / 12.0;
    const TWENTY_FOURTH: f64 = 1.0 / 24.0;
    let col = |c: [f64; 6]| {
        let (a, b) = (c[3] + c[4], c[3] - c[4]);
        let s = (c[1] + c[2]) * SIXTH;
        [
            c[0] * 0.25 - s + a * TWENTY_FOURTH,
            (c[2] - c[1]) * SIXTH + b * TWELFTH,
            a * SIXTH - s + c[5],
        ]
    };
    // Gᵀ u: 3 × 6, column by column.
    let gu: [[f64; 3]; 6] = std::array::from_fn(|j| col(std::array::from_fn(|i| u[6 * i + j])));
    let mut g = [0.0; 9];
    for k in 0..3 {
        g[3 * k..3 * k + 3].copy_from_slice(&col(std::array::from_fn(|j| gu[j][k])));
    }
    g
}

/// Where the four parts of a split row of `wp` floats (`wp − 2` a multiple of 4) start: the
/// padded columns `4j`, `4j + 1`, `4j + 2` and `4j + 3`.
fn parts(wp: usize) -> [usize; 4] {
    let q = (wp - 2) / 4 + 1;
    [0, q, 2 * q, 3 * q - 1]
}

/// Stores a padded row of `w + 2` floats (`w` a multiple of 4) as its columns `4j`, then
/// `4j + 1`, `4j + 2` and `4j + 3`: `w / 4 + 1`, `w / 4 + 1`, `w / 4` and `w / 4` of them.
pub(crate) fn split(row: &[f32], dst: &mut [f32]) {
    let wp = row.len();
    assert!(
        wp >= 2 && (wp - 2).is_multiple_of(4) && dst.len() == wp,
        "split4: lengths"
    );
    #[cfg(target_arch = "x86_64")]
    if comir_cpu::Isa::Avx2.supported() {
        // SAFETY: the CPU has AVX2 (checked); lengths checked.
        unsafe { avx2::split(row, dst) };
        return;
    }
    let starts = parts(wp);
    for (k, &start) in starts.iter().enumerate() {
        for (j, p) in (k..wp).step_by(4).enumerate() {
            dst[start + j] = row[p];
        }
    }
}

/// [`split`] of the padded row `[0, relu(a · x + b), 0]`, computed as `simd::bn_relu` computes
/// it (a product, then a sum, each rounded), without writing the row first.
pub(crate) fn bn_relu_split(x: &[f32], a: f32, b: f32, dst: &mut [f32]) {
    let w = x.len();
    assert!(
        w.is_multiple_of(4) && dst.len() == w + 2,
        "bn_relu_split4: lengths"
    );
    #[cfg(target_arch = "x86_64")]
    if comir_cpu::Isa::Avx2.supported() {
        // SAFETY: the CPU has AVX2 (checked); lengths checked.
        unsafe { avx2::bn_relu_split(x, a, b, dst) };
        return;
    }
    let [p0, p1, p2, p3] = parts(w + 2);
    let relu = |v: f32| {
        let y = a * v + b;
        if y > 0.0 {
            y
        } else {
            0.0
        }
    };
    dst[p0] = 0.0;
    dst[p1 + w / 4] = 0.0;
    // Image column x is padded column x + 1.
    for (j, q) in x.chunks_exact(4).enumerate() {
        dst[p1 + j] = relu(q[0]);
        dst[p2 + j] = relu(q[1]);
        dst[p3 + j] = relu(q[2]);
        dst[p0 + j + 1] = relu(q[3]);
    }
}

/// `Aᵀ m A` of a segment of `seg` tiles (up to 16) of one tile row for [`super::band`], from
/// `m[f · fstride + t]`: the 4 × 4 outputs of tile `t` to `out[a · wp + 4t + b]`, exactly
/// those. With `wide`, a segment of more than 8 tiles is transformed on AVX-512's 16 lanes
/// (the same bits).
///
/// # Safety
/// The CPU has AVX2 and FMA, and AVX-512F with `wide`.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub(super) unsafe fn output_transform_segment(
    m: &[f32],
    fstride: usize,
    seg: usize,
    out: &mut [f32],
    wp: usize,
    wide: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if wide && seg > LANES {
        return avx512::output_transform(m, fstride, seg, out, wp);
    }
    for j in 0..seg.div_ceil(LANES) {
        let t = LANES * j;
        let n = LANES.min(seg - t);
        avx2::output_transform(&m[t..], fstride, n, &mut out[4 * t..], wp);
    }
}

/// `A y Aᵀ` of the 4 × 4 output gradients of one row of `tw` tiles, for
/// [`super::weight_grad_band`], from `parts`: 4 rows of 4 parts (the columns `4j + p`), `ew`
/// each, zero past `tw`. Frequency `f` of tile `t` to `z[f · fstride + t]`, whole vectors of
/// tiles (the last one runs past the row). With `wide`, 16 tiles a vector while 16 are left.
///
/// # Safety
/// The CPU has AVX2 and FMA, and AVX-512F with `wide`.
pub(super) unsafe fn output_grad_transform(
    parts: &[f32],
    ew: usize,
    tw: usize,
    z: &mut [f32],
    fstride: usize,
    wide: bool,
) {
    let vecs = tw.div_ceil(LANES);
    assert!(16 * ew <= parts.len() && vecs * LANES <= ew);
    assert!((FREQS - 1) * fstride + vecs * LANES <= z.len());
    by_vectors(tw, wide, |tx, wide| match wide {
        #[cfg(target_arch = "x86_64")]
        true => avx512::output_grad_transform(&parts[tx..], ew, &mut z[tx..], fstride),
        _ => avx2::output_grad_transform(&parts[tx..], ew, &mut z[tx..], fstride),
    });
}

/// Runs `f(tx, true)` for the vectors of 16 tiles from `tx` while 16 of the `tw` tiles are left
/// (with `wide`), then `f(tx, false)` for vectors of 8 (the last one may run past `tw`).
fn by_vectors(tw: usize, wide: bool, mut f: impl FnMut(usize, bool)) {
    let mut tx = 0;
    if wide {
        while tx + 2 * LANES <= tw {
            f(tx, true);
            tx += 2 * LANES;
        }
    }
    while tx < tw {
        f(tx, false);
        tx += LANES;
    }
}

/// `Bᵀ d B` of the tiles of `tr` tile rows of `tw` tiles for [`super::weight_grad_band`] and
/// [`super::band`], from rows split by [`split`] (`band` at the first row of a channel):
/// frequency `f` of tile `t = ty · tw + tx` to `v[f · fstride + t]`, whole vectors per tile
/// row (the last vector of a row runs into the next row's tiles, written after it, or past
/// the last row). With `wide`, 16 tiles a vector while 16 are left.
///
/// # Safety
/// The CPU has AVX2 and FMA, and AVX-512F with `wide`.
pub(super) unsafe fn input_transform_rows(
    band: &[f32],
    wp: usize,
    tr: usize,
    tw: usize,
    v: &mut [f32],
    fstride: usize,
    wide: bool,
) {
    for ty in 0..tr {
        let (row, v) = (&band[4 * ty * wp..], &mut v[ty * tw..]);
        by_vectors(tw, wide, |tx, wide| match wide {
            #[cfg(target_arch = "x86_64")]
            true => avx512::input_transform(&row[tx..], wp, &mut v[tx..], fstride),
            _ => avx2::input_transform(&row[tx..], wp, &mut v[tx..], fstride),
        });
    }
}

/// Elsewhere there are no direct kernels, so nothing asks for Winograd.
#[cfg(not(target_arch = "x86_64"))]
mod avx2 {
    pub(super) unsafe fn input_transform(_: &[f32], _: usize, _: &mut [f32], _: usize) {
        unreachable!("Winograd runs with the direct kernels, on x86-64 only")
    }

    pub(super) unsafe fn output_transform(_: &[f32], _: usize, _: usize, _: &mut [f32], _: usize) {
        unreachable!("Winograd runs with the direct kernels, on x86-64 only")
    }

    pub(super) unsafe fn output_grad_transform(_: &[f32], _: usize, _: &mut [f32], _: usize) {
        unreachable!("Winograd runs with the direct kernels, on x86-64 only")
    }
}

/// The transforms, once for every vector width: what a lane computes does not depend on it.
#[cfg(target_arch = "x86_64")]
mod lanes {
    use super::super::vectors::F32s;
    use super::{parts, FREQS};

    /// `Bᵀ d` of six vectors, `Bᵀ = [4 0 −5 0 1 0; 0 −4 −4 1 1 0; 0 4 −4 −1 1 0;
    /// 0 −2 −1 2 1 0; 0 2 −1 −2 1 0; 0 4 0 −5 0 1]`.
    #[inline(always)]
    unsafe fn bt<V: F32s>(d: [V; 6]) -> [V; 6] {
        let (two, four, five) = (V::splat(2.0), V::splat(4.0), V::splat(5.0));
        let (s12, d12) = (d[1].add(d[2]), d[1].sub(d[2]));
        let (s34, d43) = (d[3].add(d[4]), d[4].sub(d[3]));
        let (d31, d42) = (d[3].sub(d[1]), d[4].sub(d[2]));
        [
            four.mul_add(d[0], five.neg_mul_add(d[2], d[4])),
            four.neg_mul_add(s12, s34),
            four.mul_add(d12, d43),
            two.mul_add(d31, d42),
            two.neg_mul_add(d31, d42),
            four.mul_add(d[1], five.neg_mul_add(d[3], d[5])),
        ]
    }

    /// `Bᵀ d B` of one vector of tiles of one tile row, from split rows `wp` apart (see
    /// [`super::split`]; `band` at the first tile's part-0 element of its first row):
    /// frequency `f` of tile `t` to `v[f · fstride + t]`, whole vectors (tiles past the row's
    /// end are junk).
    // Indexing keeps the vectors in registers; `array::map` copies them through memory.
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    pub(super) unsafe fn input_transform<V: F32s>(
        band: &[f32],
        wp: usize,
        v: &mut [f32],
        fstride: usize,
    ) {
        let [_, p1, p2, p3] = parts(wp);
        assert!(5 * wp + p3 + V::LANES <= band.len());
        assert!((FREQS - 1) * fstride + V::LANES <= v.len());
        let (e, d) = (band.as_ptr(), v.as_mut_ptr());
        // d B, row by row: padded columns 4t … 4t + 5 of the tiles are parts 0, 1, 2, 3 at t
        // and parts 0, 1 at t + 1.
        let mut rows = [[V::zero(); 6]; 6];
        for (r, row) in rows.iter_mut().enumerate() {
            let p = e.add(r * wp);
            *row = bt([
                V::load(p),
                V::load(p.add(p1)),
                V::load(p.add(p2)),
                V::load(p.add(p3)),
                V::load(p.add(1)),
                V::load(p.add(p1 + 1)),
            ]);
        }
        // Then Bᵀ down each column j: frequency 6i + j.
        for j in 0..6 {
            let col = bt([
                rows[0][j], rows[1][j], rows[2][j], rows[3][j], rows[4][j], rows[5][j],
            ]);
            for (i, c) in col.iter().enumerate() {
                c.store(d.add((6 * i + j) * fstride));
            }
        }
    }

    /// `N` vectors `stride` floats apart from `p`.
    #[inline(always)]
    unsafe fn loads<V: F32s, const N: usize>(p: *const f32, stride: usize) -> [V; N] {
        let mut v = [V::zero(); N];
        for (k, v) in v.iter_mut().enumerate() {
            *v = V::load(p.add(k * stride));
        }
        v
    }

    /// `Aᵀ m` of six vectors, `Aᵀ = [1 1 1 1 1 0; 0 1 −1 2 −2 0; 0 1 1 4 4 0; 0 1 −1 8 −8 1]`.
    #[inline(always)]
    unsafe fn at<V: F32s>(m: [V; 6]) -> [V; 4] {
        let (two, four, eight) = (V::splat(2.0), V::splat(4.0), V::splat(8.0));
        let (s12, d12) = (m[1].add(m[2]), m[1].sub(m[2]));
        let (s34, d34) = (m[3].add(m[4]), m[3].sub(m[4]));
        [
            m[0].add(s12).add(s34),
            two.mul_add(d34, d12),
            four.mul_add(s34, s12),
            eight.mul_add(d34, d12).add(m[5]),
        ]
    }

    /// `Aᵀ m A` of one vector of tiles, from `m[f · fstride + t]`: output `(a, b)` of each
    /// tile in `[b][a]`.
    #[inline(always)]
    pub(super) unsafe fn output_transform<V: F32s>(m: *const f32, fstride: usize) -> [[V; 4]; 4] {
        // m A, row by row.
        let mut rows = [[V::zero(); 4]; 6];
        for (i, row) in rows.iter_mut().enumerate() {
            *row = at(loads(m.add(6 * i * fstride), fstride));
        }
        // Aᵀ down each column b.
        let mut cols = [[V::zero(); 4]; 4];
        for (b, col) in cols.iter_mut().enumerate() {
            *col = at([
                rows[0][b], rows[1][b], rows[2][b], rows[3][b], rows[4][b], rows[5][b],
            ]);
        }
        cols
    }

    /// `A y` of four vectors, `A = [1 0 0 0; 1 1 1 1; 1 −1 1 −1; 1 2 4 8; 1 −2 4 −8; 0 0 0 1]`.
    #[inline(always)]
    unsafe fn a<V: F32s>(y: [V; 4]) -> [V; 6] {
        let (two, four) = (V::splat(2.0), V::splat(4.0));
        let (s02, s13) = (y[0].add(y[2]), y[1].add(y[3]));
        let e = four.mul_add(y[2], y[0]);
        let f = two.mul(four.mul_add(y[3], y[1]));
        [y[0], s02.add(s13), s02.sub(s13), e.add(f), e.sub(f), y[3]]
    }

    /// `A y Aᵀ` of one vector of tiles of [`super::output_grad_transform`] (`parts` and `z`
    /// at its first tile).
    // As in `input_transform`.
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    pub(super) unsafe fn output_grad_transform<V: F32s>(
        parts: &[f32],
        ew: usize,
        z: &mut [f32],
        fstride: usize,
    ) {
        assert!(15 * ew + V::LANES <= parts.len());
        assert!((FREQS - 1) * fstride + V::LANES <= z.len());
        let (s, d) = (parts.as_ptr(), z.as_mut_ptr());
        // y Aᵀ, row by row.
        let mut rows = [[V::zero(); 6]; 4];
        for (r, row) in rows.iter_mut().enumerate() {
            *row = a(loads(s.add(4 * r * ew), ew));
        }
        // Then A down each column j: frequency 6i + j.
        for j in 0..6 {
            let col = a([rows[0][j], rows[1][j], rows[2][j], rows[3][j]]);
            for (i, c) in col.iter().enumerate() {
                c.store(d.add((6 * i + j) * fstride));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{lanes, parts, FREQS, LANES};
    use std::arch::x86_64::*;

    /// The even and odd elements of 16 consecutive ones, each in order.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn deinterleave(a: __m256, b: __m256) -> (__m256, __m256) {
        // [a0 a2 b0 b2 | a4 a6 b4 b6] → [a0 a2 a4 a6 b0 b2 b4 b6], and the odd ones.
        let e = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
        let o = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
        let e = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(e)));
        let o = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(o)));
        (e, o)
    }

    /// Elements `4j`, `4j + 1`, `4j + 2`, `4j + 3` of 32 consecutive ones.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn quarters(v: [__m256; 4]) -> [__m256; 4] {
        let (e01, o01) = deinterleave(v[0], v[1]);
        let (e23, o23) = deinterleave(v[2], v[3]);
        let (q0, q2) = deinterleave(e01, e23);
        let (q1, q3) = deinterleave(o01, o23);
        [q0, q1, q2, q3]
    }

    /// [`super::split`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn split(row: &[f32], dst: &mut [f32]) {
        let wp = row.len();
        let starts = parts(wp);
        // Every part holds at least `(wp − 2) / 4` elements.
        let vecs = (wp - 2) / 4 / LANES;
        assert!(dst.len() == wp && 4 * LANES * vecs <= wp);
        let (s, d) = (row.as_ptr(), dst.as_mut_ptr());
        for j in 0..vecs {
            let v = std::array::from_fn(|k| _mm256_loadu_ps(s.add(4 * LANES * j + LANES * k)));
            for (q, &start) in quarters(v).iter().zip(&starts) {
                _mm256_storeu_ps(d.add(start + LANES * j), *q);
            }
        }
        for (k, &start) in starts.iter().enumerate() {
            for p in (4 * LANES * vecs + k..wp).step_by(4) {
                dst[start + p / 4] = row[p];
            }
        }
    }

    /// [`super::bn_relu_split`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn bn_relu_split(x: &[f32], a: f32, b: f32, dst: &mut [f32]) {
        let w = x.len();
        let [p0, p1, p2, p3] = parts(w + 2);
        assert!(dst.len() == w + 2);
        let (s, d) = (x.as_ptr(), dst.as_mut_ptr());
        *d.add(p0) = 0.0;
        *d.add(p1 + w / 4) = 0.0;
        let (va, vb, zero) = (_mm256_set1_ps(a), _mm256_set1_ps(b), _mm256_setzero_ps());
        // `if y > 0 { y } else { 0 }`, as max(y, 0) returns its second operand unless y > 0.
        let relu = |v: __m256| _mm256_max_ps(_mm256_add_ps(_mm256_mul_ps(va, v), vb), zero);
        // Image column x is padded column x + 1: image quarters 0, 1, 2 go to padded parts
        // 1, 2, 3 and image quarter 3 to part 0, one place on.
        let to = [p1, p2, p3, p0 + 1];
        let vecs = w / (4 * LANES);
        for j in 0..vecs {
            let v =
                std::array::from_fn(|k| relu(_mm256_loadu_ps(s.add(4 * LANES * j + LANES * k))));
            for (q, &start) in quarters(v).iter().zip(&to) {
                _mm256_storeu_ps(d.add(start + LANES * j), *q);
            }
        }
        for i in 4 * LANES * vecs..w {
            let y = a * *s.add(i) + b;
            *d.add(to[i % 4] + i / 4) = if y > 0.0 { y } else { 0.0 };
        }
    }

    /// [`lanes::input_transform`] of 8 tiles.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn input_transform(band: &[f32], wp: usize, v: &mut [f32], fstride: usize) {
        lanes::input_transform::<__m256>(band, wp, v, fstride)
    }

    /// [`lanes::output_grad_transform`] of 8 tiles.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn output_grad_transform(
        parts: &[f32],
        ew: usize,
        z: &mut [f32],
        fstride: usize,
    ) {
        lanes::output_grad_transform::<__m256>(parts, ew, z, fstride)
    }

    /// `Aᵀ m A` of `seg` (1 to 8) tiles of one tile row, from `m[f · fstride + t]`: the 4 × 4
    /// outputs of tile `t` to `out[a · wp + 4t + b]`. Exactly those are written (the last
    /// ones through a mask).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn output_transform(
        m: &[f32],
        fstride: usize,
        seg: usize,
        out: &mut [f32],
        wp: usize,
    ) {
        assert!((1..=LANES).contains(&seg));
        assert!((FREQS - 1) * fstride + LANES <= m.len());
        assert!(3 * wp + 4 * seg <= out.len());
        let cols = lanes::output_transform::<__m256>(m.as_ptr(), fstride);
        store_tiles(&cols, 4 * seg, out.as_mut_ptr(), wp);
    }

    /// Writes the outputs `cols[b][a]` of 8 tiles to `d[a · wp + 4t + b]`, the first `valid`
    /// of each row only.
    // Indexing keeps the vectors in registers.
    #[allow(clippy::needless_range_loop)]
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn store_tiles(
        cols: &[[__m256; 4]; 4],
        valid: usize,
        d: *mut f32,
        wp: usize,
    ) {
        for a in 0..4 {
            // Interleave the four columns: [t0b0 t0b1 t0b2 t0b3 t1b0 …].
            let (o0, o1, o2, o3) = (cols[0][a], cols[1][a], cols[2][a], cols[3][a]);
            let (u0, u1) = (_mm256_unpacklo_ps(o0, o1), _mm256_unpackhi_ps(o0, o1));
            let (u2, u3) = (_mm256_unpacklo_ps(o2, o3), _mm256_unpackhi_ps(o2, o3));
            // Tiles 0 | 4, 1 | 5, 2 | 6, 3 | 7.
            let w0 = _mm256_shuffle_ps::<0b01_00_01_00>(u0, u2);
            let w1 = _mm256_shuffle_ps::<0b11_10_11_10>(u0, u2);
            let w2 = _mm256_shuffle_ps::<0b01_00_01_00>(u1, u3);
            let w3 = _mm256_shuffle_ps::<0b11_10_11_10>(u1, u3);
            let chunks = [
                _mm256_permute2f128_ps::<0x20>(w0, w1),
                _mm256_permute2f128_ps::<0x20>(w2, w3),
                _mm256_permute2f128_ps::<0x31>(w0, w1),
                _mm256_permute2f128_ps::<0x31>(w2, w3),
            ];
            let p = d.add(a * wp);
            for (h, chunk) in chunks.iter().enumerate() {
                let n = valid.saturating_sub(h * LANES).min(LANES);
                if n == LANES {
                    _mm256_storeu_ps(p.add(h * LANES), *chunk);
                } else if n > 0 {
                    _mm256_maskstore_ps(
                        p.add(h * LANES),
                        super::super::avx2::first_lanes(n),
                        *chunk,
                    );
                }
            }
        }
    }
}

/// The transforms on AVX-512's 16 lanes: half the instructions of two 8-lane calls.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{avx2, lanes, FREQS, LANES};
    use std::arch::x86_64::*;

    /// [`lanes::input_transform`] of 16 tiles.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn input_transform(band: &[f32], wp: usize, v: &mut [f32], fstride: usize) {
        lanes::input_transform::<__m512>(band, wp, v, fstride)
    }

    /// [`lanes::output_grad_transform`] of 16 tiles.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn output_grad_transform(
        parts: &[f32],
        ew: usize,
        z: &mut [f32],
        fstride: usize,
    ) {
        lanes::output_grad_transform::<__m512>(parts, ew, z, fstride)
    }

    /// [`avx2::output_transform`] of `seg` (1 to 16) tiles: the transform on 16 lanes, the
    /// stores as two halves of 8 tiles.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn output_transform(
        m: &[f32],
        fstride: usize,
        seg: usize,
        out: &mut [f32],
        wp: usize,
    ) {
        assert!((1..=2 * LANES).contains(&seg));
        assert!((FREQS - 1) * fstride + 2 * LANES <= m.len());
        assert!(3 * wp + 4 * seg <= out.len());
        let cols = lanes::output_transform::<__m512>(m.as_ptr(), fstride);
        let half = |high: bool| -> [[__m256; 4]; 4] {
            std::array::from_fn(|b| {
                std::array::from_fn(|a| {
                    let v = _mm512_castps_pd(cols[b][a]);
                    _mm256_castpd_ps(if high {
                        _mm512_extractf64x4_pd::<1>(v)
                    } else {
                        _mm512_castpd512_pd256(v)
                    })
                })
            })
        };
        let d = out.as_mut_ptr();
        avx2::store_tiles(&half(false), (4 * seg).min(4 * LANES), d, wp);
        if seg > LANES {
            avx2::store_tiles(&half(true), 4 * (seg - LANES), d.add(4 * LANES), wp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The split row holds each padded column where the transform looks for it, at every width
    /// (whole vectors and tails), whichever way it is written.
    #[test]
    fn split_rows_hold_each_column_in_its_part() {
        for w in [4, 8, 28, 32, 36, 64, 100, 128] {
            let x: Vec<f32> = (0..w)
                .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.37)
                .collect();
            let (a, b) = (1.3f32, -0.2f32);
            let mut whole = vec![0.0; w + 2];
            crate::simd::bn_relu(&mut whole[1..=w], &x, a, b);
            let starts = parts(w + 2);
            let mut split_whole = vec![f32::NAN; w + 2];
            split(&whole, &mut split_whole);
            let mut fused = vec![f32::NAN; w + 2];
            bn_relu_split(&x, a, b, &mut fused);
            for (p, &want) in whole.iter().enumerate() {
                let at = starts[p % 4] + p / 4;
                assert_eq!(
                    split_whole[at].to_bits(),
                    want.to_bits(),
                    "width {w}, column {p}"
                );
                assert_eq!(fused[at].to_bits(), want.to_bits(), "width {w}, column {p}");
            }
        }
    }
}
