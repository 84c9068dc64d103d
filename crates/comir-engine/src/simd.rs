//! The engine's elementwise loops and reductions, compiled once per instruction set.
//!
//! Batch norm + ReLU, the ReLU mask of the backward with its two per-channel sums, the
//! batch statistics and the batch-norm input gradient are plain Rust loops that the compiler
//! vectorises; built for the baseline x86-64 target they would use 4-lane SSE2. Each
//! function here is compiled three times (AVX-512, AVX2 + FMA, baseline) and runs the version
//! of the process's instruction set ([`comir_cpu::active`]). Reductions accumulate in a
//! fixed number of lanes (16 for `f32`, 8 for `f64`) that are combined in a fixed order, and
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

per_isa! {
    /// `Σ x` in `f64`.
    fn sum_f64 / sum_f64_on(x: &[f32]) -> f64 {
        let mut s = [0.0f64; 8];
        let chunks = x.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            for l in 0..8 {
                s[l] += f64::from(c[l]);
            }
        }
        for (l, &v) in rest.iter().enumerate() {
            s[l] += f64::from(v);
        }
        fold8(&s)
    }
}

per_isa! {
    /// `Σ (x − m)²` in `f64`.
    fn sum_squared_deviations / sum_squared_deviations_on(x: &[f32], m: f64) -> f64 {
        let mut s = [0.0f64; 8];
        let chunks = x.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            for l in 0..8 {
                let d = f64::from(c[l]) - m;
                s[l] += d * d;
            }
        }
        for (l, &v) in rest.iter().enumerate() {
            let d = f64::from(v) - m;
            s[l] += d * d;
        }
        fold8(&s)
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
