//! The engine's elementwise loops and reductions, compiled once per instruction set.
//!
//! Batch norm + ReLU, the ReLU mask of the backward with its two per-channel sums, the
//! batch statistics and the batch-norm input gradient are plain Rust loops that the compiler
//! vectorises; built for the baseline x86-64 target they would use 4-lane SSE2. Each
//! function here is compiled three times (AVX-512, AVX2 + FMA, baseline) and runs the version
//! of the process's instruction set ([`comir_cpu::active`]). Reductions accumulate in a
//! fixed number of lanes (16 for `f32`, 32 for `f64`) that are combined in a fixed order, and
//! the compiler never fuses a multiply and an add on its own, so every version computes the
//! same numbers bit for bit (checked in the tests below).

use comir_cpu::Isa;

/// Defines `pub(crate) fn $name(args) -> ret`, which runs `$body` compiled for the process's
/// instruction set, and `$on(isa, args)`, which runs the version of `isa` (the baseline one
/// when this CPU does not run `isa`).
macro_rules! per_isa {
    ($(#[$doc:meta])* fn $name:ident / $on:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $name($($arg: $ty),*) $(-> $ret)? {
            $on(comir_cpu::active(), $($arg),*)
        }

        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $on(isa: Isa, $($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                body($($arg),*)
            }
            match isa {
                // SAFETY: the CPU runs the instructions (checked).
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 if isa.supported() => unsafe { avx512($($arg),*) },
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 if isa.supported() => unsafe { avx2($($arg),*) },
                _ => body($($arg),*),
            }
        }
    };
}

/// `f32` lanes of the reductions.
const LANES: usize = 16;

/// Asks the cache for the lines of `data` ahead of their use; results do not change. The
/// layers' planes are larger than L2, and a band reads a few rows of each channel: runs too
/// short for the hardware prefetcher to get going before the next channel starts.
#[inline]
pub(crate) fn prefetch(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        let p = data.as_ptr().cast::<i8>();
        for byte in (0..std::mem::size_of_val(data)).step_by(64) {
            // SAFETY: a prefetch does not fault, and the address lies inside `data`.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(p.add(byte)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

per_isa! {
    /// `dst = relu(a · x + b)`.
    fn bn_relu / bn_relu_on(dst: &mut [f32], x: &[f32], a: f32, b: f32) {
        for (d, &v) in dst.iter_mut().zip(x) {
            let y = a * v + b;
            *d = if y > 0.0 { y } else { 0.0 };
        }
    }
}

/// Per-lane partial sums, folded with [`fold_lanes`] once a run of rows is summed.
pub(crate) type Lanes = [f32; LANES];

per_isa! {
    /// The ReLU mask of the batch-norm backward, added into the input gradient: with
    /// `gy = grad` where `a · x + b > 0`, else 0, `g += a · gy`; adds `gy` into the lanes of
    /// `s1` and `gy · (x − m) · invstd` into those of `s2` (element `i` into lane `i % 16`).
    fn relu_grad_sums / relu_grad_sums_on(
        g: &mut [f32],
        x: &[f32],
        grad: &[f32],
        a: f32,
        b: f32,
        m: f32,
        invstd: f32,
        s1: &mut Lanes,
        s2: &mut Lanes,
    ) {
        let n = g.len().min(x.len()).min(grad.len());
        let whole = n / LANES * LANES;
        let (g, x, grad) = (&mut g[..n], &x[..n], &grad[..n]);
        for ((gs, xs), gr) in g[..whole]
            .chunks_exact_mut(LANES)
            .zip(x[..whole].chunks_exact(LANES))
            .zip(grad[..whole].chunks_exact(LANES))
        {
            for l in 0..LANES {
                let gv = if a * xs[l] + b > 0.0 { gr[l] } else { 0.0 };
                gs[l] += a * gv;
                s1[l] += gv;
                s2[l] += gv * (xs[l] - m) * invstd;
            }
        }
        for i in whole..n {
            let l = i - whole;
            let gv = if a * x[i] + b > 0.0 { grad[i] } else { 0.0 };
            g[i] += a * gv;
            s1[l] += gv;
            s2[l] += gv * (x[i] - m) * invstd;
        }
    }
}

/// The sum of the lanes, pairwise (a fixed order).
pub(crate) fn fold_lanes(v: &Lanes) -> f32 {
    fold16(v)
}

/// Sums 16 lanes pairwise (a fixed order).
#[inline(always)]
fn fold16(v: &[f32; LANES]) -> f32 {
    let mut w = *v;
    let mut half = LANES / 2;
    while half > 0 {
        for l in 0..half {
            w[l] += w[l + half];
        }
        half /= 2;
    }
    w[0]
}

/// Sums 8 lanes pairwise (a fixed order).
#[inline(always)]
fn fold8(v: &[f64; 8]) -> f64 {
    ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]))
}

/// `f64` lanes of the reductions in `f64`: four vectors' worth on AVX2, so that the additions
/// of one lane do not wait on each other (one chain of 8 lanes is bound by the add latency).
const F64_LANES: usize = 32;

/// Partial sums of the reductions in `f64`: lane `l` in `[l / 8][l % 8]`.
type F64Lanes = [[f64; 8]; F64_LANES / 8];

/// Sums [`F64_LANES`] lanes pairwise (a fixed order).
#[inline(always)]
fn fold_f64(v: &F64Lanes) -> f64 {
    let mut w = [0.0f64; 8];
    for (l, w) in w.iter_mut().enumerate() {
        *w = (v[0][l] + v[2][l]) + (v[1][l] + v[3][l]);
    }
    fold8(&w)
}

per_isa! {
    /// `Σ x` in `f64`.
    fn sum_f64 / sum_f64_on(x: &[f32]) -> f64 {
        let mut s: F64Lanes = Default::default();
        let chunks = x.chunks_exact(F64_LANES);
        let rest = chunks.remainder();
        // Four named vectors of lanes: written as one loop over 32, the compiler packed the
        // lanes into odd groups and spilled them.
        let [s0, s1, s2, s3] = &mut s;
        for c in chunks {
            for l in 0..8 {
                s0[l] += f64::from(c[l]);
                s1[l] += f64::from(c[8 + l]);
                s2[l] += f64::from(c[16 + l]);
                s3[l] += f64::from(c[24 + l]);
            }
        }
        for (l, &v) in rest.iter().enumerate() {
            s[l / 8][l % 8] += f64::from(v);
        }
        fold_f64(&s)
    }
}

per_isa! {
    /// `Σ (x − m)²` in `f64`.
    fn sum_squared_deviations / sum_squared_deviations_on(x: &[f32], m: f64) -> f64 {
        let mut s: F64Lanes = Default::default();
        let chunks = x.chunks_exact(F64_LANES);
        let rest = chunks.remainder();
        let [s0, s1, s2, s3] = &mut s;
        for c in chunks {
            for l in 0..8 {
                let d = [0, 8, 16, 24].map(|k| f64::from(c[k + l]) - m);
                s0[l] += d[0] * d[0];
                s1[l] += d[1] * d[1];
                s2[l] += d[2] * d[2];
                s3[l] += d[3] * d[3];
            }
        }
        for (l, &v) in rest.iter().enumerate() {
            let d = f64::from(v) - m;
            s[l / 8][l % 8] += d * d;
        }
        fold_f64(&s)
    }
}

per_isa! {
    /// The part of the batch-norm input gradient of one channel that comes from the batch
    /// statistics: `g −= offset + slope · (x − mean)`.
    fn bn_batch_grad / bn_batch_grad_on(g: &mut [f32], x: &[f32], offset: f32, slope: f32, mean: f32) {
        for (gv, &xv) in g.iter_mut().zip(x) {
            *gv -= offset + slope * (xv - mean);
        }
    }
}

per_isa! {
    /// `out = g + bias`, then ReLU when `relu`.
    fn add_bias / add_bias_on(out: &mut [f32], g: &[f32], bias: f32, relu: bool) {
        if relu {
            for (o, &v) in out.iter_mut().zip(g) {
                let y = v + bias;
                *o = if y > 0.0 { y } else { 0.0 };
            }
        } else {
            for (o, &v) in out.iter_mut().zip(g) {
                *o = v + bias;
            }
        }
    }
}

/// The larger of two activations: a plain comparison, not `f32::max`, whose NaN rule costs a
/// blend per element (activations are finite).
#[inline(always)]
fn larger(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

per_isa! {
    /// 2×2 max pooling of one row of windows: `out[x]` is the largest of columns `2x` and
    /// `2x + 1` of the rows `r0` and `r1`.
    fn max_pool_row / max_pool_row_on(r0: &[f32], r1: &[f32], out: &mut [f32]) {
        for ((o, a), b) in out.iter_mut().zip(r0.chunks_exact(2)).zip(r1.chunks_exact(2)) {
            *o = larger(larger(a[0], a[1]), larger(b[0], b[1]));
        }
    }
}

/// Backward of 2×2 max pooling for one row of windows: `t0`, `t1` are the two input rows the
/// windows cover, `g` the gradient of their maxima; `d0`, `d1` receive the input gradient.
/// The first of the four that equals the maximum (top left, top right, bottom left, bottom
/// right) takes the gradient, the others 0. A selection, so every version gives the same bits.
pub(crate) fn max_pool_grad_row(t0: &[f32], t1: &[f32], g: &[f32], d0: &mut [f32], d1: &mut [f32]) {
    max_pool_grad_row_on(comir_cpu::active(), t0, t1, g, d0, d1);
}

/// [`max_pool_grad_row`] with the vectors of `isa` (plain Rust when this CPU does not run it).
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub(crate) fn max_pool_grad_row_on(
    isa: Isa,
    t0: &[f32],
    t1: &[f32],
    g: &[f32],
    d0: &mut [f32],
    d1: &mut [f32],
) {
    let n = g.len();
    assert!(t0.len() >= 2 * n && t1.len() >= 2 * n && d0.len() >= 2 * n && d1.len() >= 2 * n);
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if matches!(isa, Isa::Avx2 | Isa::Avx512) && Isa::Avx2.supported() {
        done = n / 4 * 4;
        // SAFETY: the CPU runs AVX2 (checked); the slices hold 2·n ≥ 2·done floats (asserted).
        unsafe { max_pool_grad_avx2(t0, t1, g, d0, d1, done) };
    }
    for x in done..n {
        let (tl, tr, bl, br) = (t0[2 * x], t0[2 * x + 1], t1[2 * x], t1[2 * x + 1]);
        let m = larger(larger(larger(tl, tr), bl), br);
        let gv = g[x];
        let (is_tl, is_tr, is_bl) = (tl == m, tr == m, bl == m);
        d0[2 * x] = if is_tl { gv } else { 0.0 };
        d0[2 * x + 1] = if is_tr && !is_tl { gv } else { 0.0 };
        d1[2 * x] = if is_bl && !is_tl && !is_tr { gv } else { 0.0 };
        d1[2 * x + 1] = if br == m && !is_tl && !is_tr && !is_bl {
            gv
        } else {
            0.0
        };
    }
}

/// [`max_pool_grad_row`] for the first `windows` windows (a multiple of 4), 4 at a time in
/// the rows' own interleaved order: each element is compared with its window's other column
/// (its neighbour swapped in), so nothing is de-interleaved.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn max_pool_grad_avx2(
    t0: &[f32],
    t1: &[f32],
    g: &[f32],
    d0: &mut [f32],
    d1: &mut [f32],
    windows: usize,
) {
    use std::arch::x86_64::*;
    // Lanes 1, 3, 5, 7 hold the right column of their window.
    let odd = _mm256_castsi256_ps(_mm256_setr_epi32(0, -1, 0, -1, 0, -1, 0, -1));
    let spread = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    for x in (0..windows).step_by(4) {
        let a = _mm256_loadu_ps(t0.as_ptr().add(2 * x));
        let b = _mm256_loadu_ps(t1.as_ptr().add(2 * x));
        // The other column of each element's window.
        let a2 = _mm256_permute_ps::<0b1011_0001>(a);
        let b2 = _mm256_permute_ps::<0b1011_0001>(b);
        // The same order of comparisons as `larger`: tl vs tr, then bl, then br.
        let (left_a, right_a) = (_mm256_blendv_ps(a, a2, odd), _mm256_blendv_ps(a2, a, odd));
        let (left_b, right_b) = (_mm256_blendv_ps(b, b2, odd), _mm256_blendv_ps(b2, b, odd));
        let gt = |p: __m256, q: __m256| _mm256_blendv_ps(q, p, _mm256_cmp_ps::<_CMP_GT_OQ>(p, q));
        let m = gt(gt(gt(left_a, right_a), left_b), right_b);
        let eq = |p: __m256| _mm256_cmp_ps::<_CMP_EQ_OQ>(p, m);
        let (ea, ea2, eb, eb2) = (eq(a), eq(a2), eq(b), eq(b2));
        let gv = _mm256_permutevar8x32_ps(
            _mm256_castps128_ps256(_mm_loadu_ps(g.as_ptr().add(x))),
            spread,
        );
        // Top row: its element, unless it is the right column and the left one equals m.
        let top = _mm256_andnot_ps(_mm256_and_ps(odd, ea2), ea);
        // Bottom row: its element, unless the top row has m, or it is the right column and
        // the bottom left equals m.
        let above = _mm256_or_ps(ea, ea2);
        let bottom = _mm256_andnot_ps(_mm256_or_ps(above, _mm256_and_ps(odd, eb2)), eb);
        _mm256_storeu_ps(d0.as_mut_ptr().add(2 * x), _mm256_and_ps(top, gv));
        _mm256_storeu_ps(d1.as_mut_ptr().add(2 * x), _mm256_and_ps(bottom, gv));
    }
}

per_isa! {
    /// `g += v`.
    fn add_assign / add_assign_on(g: &mut [f32], v: &[f32]) {
        for (g, &v) in g.iter_mut().zip(v) {
            *g += v;
        }
    }
}

per_isa! {
    /// `acc += w · x` (a multiply, then an add).
    fn mul_add_assign / mul_add_assign_on(acc: &mut [f32], x: &[f32], w: f32) {
        for (a, &v) in acc.iter_mut().zip(x) {
            *a += w * v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 37 + seed * 11) % 101) as f32 - 50.0) / 7.0)
            .collect()
    }

    /// Every version of the max-pool backward gives the gradient to the first of each window's
    /// largest values: every window of values from {0, 1, 2} (so every pattern of ties), at
    /// row lengths of whole vectors, tails alone and both.
    #[test]
    fn max_pool_backward_picks_the_first_largest() {
        let (mut t0, mut t1) = (Vec::new(), Vec::new());
        for k in 0..81 {
            let v = |d: usize| (k / d % 3) as f32;
            t0.extend([v(1), v(3)]);
            t1.extend([v(9), v(27)]);
        }
        let g: Vec<f32> = (0..81).map(|i| i as f32 + 0.25).collect();
        let mut want0 = vec![0.0; 162];
        let mut want1 = vec![0.0; 162];
        for x in 0..81 {
            let four = [t0[2 * x], t0[2 * x + 1], t1[2 * x], t1[2 * x + 1]];
            let m = four.iter().copied().fold(f32::MIN, f32::max);
            let first = four.iter().position(|&v| v == m).unwrap_or(0);
            if first < 2 {
                want0[2 * x + first] = g[x];
            } else {
                want1[2 * x + first - 2] = g[x];
            }
        }
        for n in [0, 1, 3, 4, 5, 8, 11, 80, 81] {
            for isa in [Isa::Portable, Isa::Avx2, Isa::Avx512] {
                let mut d0 = vec![f32::NAN; 2 * n];
                let mut d1 = vec![f32::NAN; 2 * n];
                max_pool_grad_row_on(isa, &t0[..2 * n], &t1[..2 * n], &g[..n], &mut d0, &mut d1);
                assert_eq!(
                    (&d0[..], &d1[..]),
                    (&want0[..2 * n], &want1[..2 * n]),
                    "{isa:?}, {n} windows"
                );
            }
        }
    }

    #[test]
    fn reductions_match_f64_sums() {
        let x = data(1003, 0);
        let exact: f64 = x.iter().map(|&v| f64::from(v)).sum();
        assert!((sum_f64(&x) - exact).abs() < 1e-9 * exact.abs().max(1.0));
        let m = exact / x.len() as f64;
        let ss: f64 = x.iter().map(|&v| (f64::from(v) - m).powi(2)).sum();
        assert!((sum_squared_deviations(&x, m) - ss).abs() < 1e-9 * ss);
        let grad: Vec<f32> = x.iter().map(|v| v * 0.5 - 1.0).collect();
        let before: Vec<f32> = x.iter().map(|v| 0.25 - v).collect();
        let mut g = before.clone();
        let (a, b, mean, invstd) = (1.5f32, -0.25f32, 0.3f32, 2.0f32);
        let (mut l1, mut l2) = ([0.0; LANES], [0.0; LANES]);
        relu_grad_sums(&mut g, &x, &grad, a, b, mean, invstd, &mut l1, &mut l2);
        let (s1, s2) = (fold_lanes(&l1), fold_lanes(&l2));
        let (mut e1, mut e2) = (0.0f64, 0.0f64);
        for i in 0..x.len() {
            let want = if a * x[i] + b > 0.0 { grad[i] } else { 0.0 };
            assert_eq!(g[i], before[i] + a * want);
            e1 += f64::from(want);
            e2 += f64::from(want) * (f64::from(x[i]) - f64::from(mean)) * f64::from(invstd);
        }
        assert!(
            (f64::from(s1) - e1).abs() < 1e-4 * e1.abs().max(1.0),
            "{s1} vs {e1}"
        );
        assert!(
            (f64::from(s2) - e2).abs() < 1e-4 * e2.abs().max(1.0),
            "{s2} vs {e2}"
        );
    }

    #[test]
    fn batch_grad_subtracts_the_affine_part() {
        let x = data(37, 3);
        let g0 = data(37, 4);
        let mut g = g0.clone();
        bn_batch_grad(&mut g, &x, 0.5, -1.25, 0.75);
        for i in 0..x.len() {
            assert_eq!(g[i], g0[i] - (0.5 + -1.25 * (x[i] - 0.75)));
        }
    }

    /// Every version computes the same bits as the baseline one, on lengths off the lane
    /// counts.
    #[test]
    fn every_instruction_set_computes_the_same_bits() {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for n in [0, 1, 15, 16, 17, 130, 1003] {
            let (x, g) = (data(n, 1), data(n, 2));
            let run = |isa: Isa| {
                let mut out = Vec::new();
                let mut d = vec![0.0; n];
                bn_relu_on(isa, &mut d, &x, 0.7, -0.1);
                out.extend(bits(&d));
                let (mut l1, mut l2) = ([0.0; LANES], [0.0; LANES]);
                relu_grad_sums_on(isa, &mut d, &x, &g, 0.7, -0.1, 0.2, 1.3, &mut l1, &mut l2);
                let (s1, s2) = (fold_lanes(&l1), fold_lanes(&l2));
                out.extend(bits(&d));
                out.extend([s1.to_bits(), s2.to_bits()]);
                let mut acc = g.clone();
                bn_batch_grad_on(isa, &mut acc, &x, 0.1, -0.2, 0.3);
                add_bias_on(isa, &mut d, &acc, 0.25, true);
                add_assign_on(isa, &mut acc, &d);
                mul_add_assign_on(isa, &mut acc, &x, -0.35);
                out.extend(bits(&acc));
                let s = sum_f64_on(isa, &x);
                let q = sum_squared_deviations_on(isa, &x, s / n.max(1) as f64);
                (out, s.to_bits(), q.to_bits())
            };
            let reference = run(Isa::Portable);
            for isa in Isa::available() {
                assert!(run(isa) == reference, "{isa}, length {n}");
            }
        }
    }
}
