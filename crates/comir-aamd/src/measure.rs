//! The symmetric α-AMD measure and its gradient with respect to the rigid parameters.
//!
//! Parameters `(φ, tx, ty)` act on centre-relative full-resolution coordinates: a fixed point
//! `p = X − c_fixed` goes to `y = R(φ)p + t`, i.e. `Y = y + c_moving` in the moving image. The
//! forward term samples fixed points and reads the moving image's tables; the inverse term
//! samples moving points `q`, maps them by `T⁻¹(q) = R(−φ)(q − t)` and reads the fixed image's
//! tables. The inverse term is differentiated directly with respect to the forward parameters
//! (the chain rule through `θ ↦ θ⁻¹`, which is what the reference's analytic
//! `inverse_to_forward_matrix` does).

use rand::Rng;

use crate::tables::{LevelImage, GRAD_SCALE};

/// Rigid parameters: angle (radians) and centre-relative translation (full-resolution pixels).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Params {
    /// Rotation angle φ (comir convention: `R = [[cos, −sin], [sin, cos]]` in `(x, y)`).
    pub angle: f64,
    /// Translation of centre-relative coordinates.
    pub t: [f64; 2],
}

/// Which points a direction uses.
pub(crate) enum Sampling<'a, R: Rng> {
    /// Every point once (deterministic; for tests).
    #[cfg_attr(not(test), allow(dead_code))]
    All,
    /// `max(1, round(fraction · N))` points drawn uniformly with replacement. Drawing a level
    /// from the multinomial of level frequencies and then a point uniformly inside it, as the
    /// reference does, is the same distribution as drawing uniformly from all points.
    Random {
        /// The generator (one per start; forward indices are drawn first, then inverse ones).
        rng: &'a mut R,
        /// The fraction of points per direction and iteration.
        fraction: f64,
        /// Reused buffers.
        scratch: &'a mut Scratch,
    },
}

/// Scratch buffers one start reuses across iterations.
#[derive(Default)]
pub(crate) struct Scratch {
    /// Drawn point indices, forward direction.
    fwd: Vec<u32>,
    /// Drawn point indices, inverse direction.
    inv: Vec<u32>,
    /// Prepared lookups, forward direction.
    staged_fwd: Vec<Staged>,
    /// Prepared lookups, inverse direction.
    staged_inv: Vec<Staged>,
}

/// From this many samples per iteration on, the two directions are summed in parallel. Each sum
/// is computed the same way either way, so results do not depend on it or on the thread count.
const PARALLEL_SAMPLES: usize = 1024;

/// Sums over the points of one direction.
#[derive(Default, Clone, Copy)]
struct Sums {
    /// Σ distance.
    v: f64,
    /// Number of points that landed inside the target.
    w: f64,
    /// Σ ∂/∂x.
    gx: f64,
    /// Σ ∂/∂y.
    gy: f64,
    /// Σ g · J(M p), with J the 90° rotation `(a, b) ↦ (−b, a)`.
    a: f64,
}

/// A lookup prepared in the first pass: which table entry, the bilinear weights, and the
/// rotated point (for the angle derivative).
#[derive(Clone, Copy)]
pub(crate) struct Staged {
    /// Index into the concatenated tables of the top-left corner.
    base: usize,
    fx: f32,
    fy: f32,
    rx: f32,
    ry: f32,
}

/// Hints the CPU to fetch the cache line holding `p`. Lookups are latency-bound random reads
/// into tables of several megabytes; issuing the fetches for a whole batch before using them
/// lets many misses overlap.
#[inline(always)]
fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint; it never faults and has no architectural effect, and
    // `p` is a valid reference anyway.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            (p as *const T).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Maps the points `idx` of `src` by `M p + o` into `dst` and sums the table values.
fn accumulate(
    src: &LevelImage,
    dst: &LevelImage,
    m: [[f64; 2]; 2],
    o: [f64; 2],
    idx: impl Iterator<Item = usize>,
    staged: &mut Vec<Staged>,
) -> Sums {
    let inv = 1.0 / dst.spacing;
    let (ox, oy) = ((o[0] + dst.center[0]) * inv, (o[1] + dst.center[1]) * inv);
    let (w, h) = (dst.width, dst.height);
    let (wmax, hmax) = ((w - 1) as f64, (h - 1) as f64);
    let n = w * h;
    let table = &dst.table;
    let sw = src.width;
    let (sp, scx, scy) = (src.spacing, src.center[0], src.center[1]);
    // Pass 1: where each point lands; prefetch the two rows of its 2×2 neighbourhood.
    staged.clear();
    // 32-bit division is several times cheaper than 64-bit here; `levels` has < 2³² pixels.
    let sw32 = sw as u32;
    for j in idx {
        let (jx, jy) = (j as u32 % sw32, j as u32 / sw32);
        let (px, py) = (jx as f64 * sp - scx, jy as f64 * sp - scy);
        let rx = m[0][0] * px + m[0][1] * py;
        let ry = m[1][0] * px + m[1][1] * py;
        let (u, v) = (rx * inv + ox, ry * inv + oy);
        if !(u >= 0.0 && v >= 0.0 && u <= wmax && v <= hmax) {
            continue;
        }
        let x0 = (u as usize).min(w - 2);
        let y0 = (v as usize).min(h - 2);
        let base = src.levels[j] as usize * n + y0 * w + x0;
        prefetch(&table[base]);
        prefetch(&table[base + w + 1]);
        staged.push(Staged {
            base,
            fx: (u - x0 as f64) as f32,
            fy: (v - y0 as f64) as f32,
            rx: rx as f32,
            ry: ry as f32,
        });
    }
    // Pass 2: bilinear interpolation and sums.
    let mut s = Sums {
        w: staged.len() as f64,
        ..Sums::default()
    };
    // The gradients are summed in fixed-point units and scaled once at the end.
    for st in staged.iter() {
        let i = st.base;
        let (a, b, c, d) = (table[i], table[i + 1], table[i + w], table[i + w + 1]);
        let lerp = |a: f32, b: f32, c: f32, d: f32| {
            let top = a + st.fx * (b - a);
            let bot = c + st.fx * (d - c);
            top + st.fy * (bot - top)
        };
        let v = lerp(a.d, b.d, c.d, d.d);
        let gx = lerp(a.gx as f32, b.gx as f32, c.gx as f32, d.gx as f32) as f64;
        let gy = lerp(a.gy as f32, b.gy as f32, c.gy as f32, d.gy as f32) as f64;
        s.v += v as f64;
        s.gx += gx;
        s.gy += gy;
        s.a += gy * st.rx as f64 - gx * st.ry as f64;
    }
    let unit = 1.0 / GRAD_SCALE as f64;
    s.gx *= unit;
    s.gy *= unit;
    s.a *= unit;
    s
}

/// Draws `max(1, round(fraction · N))` sample indices of `src` into `out`, uniformly with
/// replacement: random words are generated in bulk and mapped to `0..N` by Lemire's
/// multiply-and-reject method, which is exactly uniform (the rare rejected words are replaced).
fn draw<R: Rng>(src: &LevelImage, rng: &mut R, fraction: f64, out: &mut Vec<u32>) {
    let n = src.len() as u32;
    let k = ((fraction * n as f64).round() as usize).max(1);
    out.clear();
    out.resize(k, 0);
    rng.fill(&mut out[..]);
    // Words whose low product half falls below 2³² mod n are rejected.
    let threshold = n.wrapping_neg() % n;
    for x in out.iter_mut() {
        let mut m = *x as u64 * n as u64;
        while (m as u32) < threshold {
            m = rng.next_u32() as u64 * n as u64;
        }
        *x = (m >> 32) as u32;
    }
    if let Some(s) = &src.subset {
        for x in out.iter_mut() {
            *x = s[*x as usize];
        }
    }
}

/// Forward and inverse sums.
#[allow(clippy::too_many_arguments)]
fn both_sums<R: Rng + Send>(
    fixed: &LevelImage,
    moving: &LevelImage,
    mf: [[f64; 2]; 2],
    of: [f64; 2],
    mi: [[f64; 2]; 2],
    oi: [f64; 2],
    sampling: &mut Sampling<'_, R>,
) -> (Sums, Sums) {
    let all = |img: &LevelImage| -> Vec<usize> {
        match &img.subset {
            None => (0..img.len()).collect(),
            Some(s) => s.iter().map(|&j| j as usize).collect(),
        }
    };
    match sampling {
        Sampling::All => (
            accumulate(
                fixed,
                moving,
                mf,
                of,
                all(fixed).into_iter(),
                &mut Vec::new(),
            ),
            accumulate(
                moving,
                fixed,
                mi,
                oi,
                all(moving).into_iter(),
                &mut Vec::new(),
            ),
        ),
        Sampling::Random {
            rng,
            fraction,
            scratch,
        } => {
            draw(fixed, rng, *fraction, &mut scratch.fwd);
            draw(moving, rng, *fraction, &mut scratch.inv);
            let Scratch {
                fwd,
                inv,
                staged_fwd,
                staged_inv,
            } = &mut **scratch;
            let mut f = || {
                let idx = fwd.iter().map(|&j| j as usize);
                accumulate(fixed, moving, mf, of, idx, staged_fwd)
            };
            let mut i = || {
                let idx = inv.iter().map(|&j| j as usize);
                accumulate(moving, fixed, mi, oi, idx, staged_inv)
            };
            if fwd.len() + inv.len() >= PARALLEL_SAMPLES {
                rayon::join(f, i)
            } else {
                (f(), i())
            }
        }
    }
}

/// Value and gradient of one evaluation, plus whether both directions had points inside.
pub(crate) struct Evaluation {
    /// ½(d_forward + d_inverse).
    pub value: f64,
    /// Gradient with respect to `(φ, tx, ty)`.
    pub grad: [f64; 3],
    /// False when every sample of a direction fell outside its target.
    pub enough_samples: bool,
}

/// The symmetric measure between `fixed` and `moving` at `p`.
pub(crate) fn evaluate<R: Rng + Send>(
    fixed: &LevelImage,
    moving: &LevelImage,
    p: &Params,
    sampling: &mut Sampling<'_, R>,
) -> Evaluation {
    let (s, c) = p.angle.sin_cos();
    // Forward: y = R(φ) p + t.
    let mf = [[c, -s], [s, c]];
    // Inverse: p' = R(−φ) q + o', o' = −R(−φ) t.
    let mi = [[c, s], [-s, c]];
    let oi = [
        -(mi[0][0] * p.t[0] + mi[0][1] * p.t[1]),
        -(mi[1][0] * p.t[0] + mi[1][1] * p.t[1]),
    ];
    let (f, i) = both_sums(fixed, moving, mf, p.t, mi, oi, sampling);

    let mut value = 0.0;
    let mut grad = [0.0; 3];
    let mut enough = true;
    if f.w > 0.0 {
        value += f.v / f.w;
        grad[0] += f.a / f.w;
        grad[1] += f.gx / f.w;
        grad[2] += f.gy / f.w;
    } else {
        value += moving.dmax as f64;
        enough = false;
    }
    if i.w > 0.0 {
        value += i.v / i.w;
        // ∂p'/∂φ = −J p' and ∂p'/∂t = −R(−φ).
        let a = i.a + (i.gy * oi[0] - i.gx * oi[1]);
        grad[0] -= a / i.w;
        // −R(−φ)ᵀ g = −R(φ) g.
        grad[1] -= (c * i.gx - s * i.gy) / i.w;
        grad[2] -= (s * i.gx + c * i.gy) / i.w;
    } else {
        value += fixed.dmax as f64;
        enough = false;
    }
    Evaluation {
        value: 0.5 * value,
        grad: grad.map(|g| 0.5 * g),
        enough_samples: enough,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::Entry;
    use comir_image::pyramid::{blur_subsample, PassOrder};
    use comir_image::Image;
    use rand_chacha::ChaCha8Rng;

    /// Smooth blobs, different in the two images, so the distance maps are smooth too.
    fn blobs(w: usize, h: usize, shift: f64) -> Vec<f32> {
        let mut v = vec![0f32; w * h];
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (x as f64 - shift, y as f64);
                let a = (-((fx - 30.0).powi(2) + (fy - 25.0).powi(2)) / 200.0).exp();
                let b = (-((fx - 45.0).powi(2) / 60.0 + (fy - 42.0).powi(2) / 250.0)).exp();
                v[y * w + x] = (0.9 * a + 0.6 * b).min(1.0) as f32;
            }
        }
        v
    }

    fn level_image(data: &[f32], w: usize, h: usize) -> LevelImage {
        let img = Image::from_vec(w, h, 1, data.to_vec()).expect("image");
        let l = blur_subsample(&img, 0.0, 1, PassOrder::HorizontalFirst);
        LevelImage::build(&l, 1, [(w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0], 7)
    }

    fn full(f: &LevelImage, m: &LevelImage, p: &Params) -> Evaluation {
        evaluate::<ChaCha8Rng>(f, m, p, &mut Sampling::All)
    }

    #[test]
    fn sampling_is_uniform_and_in_range() {
        use rand::SeedableRng;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let img = level_image(&blobs(10, 7, 0.0), 10, 7);
        let mut out = Vec::new();
        let mut counts = [0usize; 70];
        for _ in 0..2000 {
            draw(&img, &mut rng, 1.0, &mut out);
            assert_eq!(out.len(), 70);
            for &j in &out {
                counts[j as usize] += 1;
            }
        }
        // 2000 draws per pixel expected; 5 standard deviations is ±224.
        assert!(
            counts.iter().all(|&c| (1776..=2224).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn gradient_matches_central_differences() {
        let (w, h) = (72, 64);
        let fixed = level_image(&blobs(w, h, 0.0), w, h);
        let moving = level_image(&blobs(w, h, 3.0), w, h);
        for p in [
            Params {
                angle: 0.12,
                t: [-4.0, 6.0],
            },
            Params {
                angle: -0.2,
                t: [7.0, 2.5],
            },
        ] {
            let e = full(&fixed, &moving, &p);
            let steps = [1e-4, 1e-2, 1e-2];
            let mut fd = [0.0; 3];
            for (k, &hk) in steps.iter().enumerate() {
                let (mut a, mut b) = (p, p);
                match k {
                    0 => {
                        a.angle += hk;
                        b.angle -= hk;
                    }
                    _ => {
                        a.t[k - 1] += hk;
                        b.t[k - 1] -= hk;
                    }
                }
                fd[k] = (full(&fixed, &moving, &a).value - full(&fixed, &moving, &b).value)
                    / (2.0 * hk);
            }
            // The tables hold central-difference gradients of the distance maps, zeroed inside
            // the sets (as the reference), not the exact slope of their bilinear interpolant:
            // near the boundary of an α-cut the table gradient ramps from 0 while the distance
            // already rises. So the analytic gradient is close to, not equal to, the finite
            // differences (the exact chain rule is checked with linear tables below).
            let norm = |v: &[f64; 3]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
            let cos = (0..3).map(|k| e.grad[k] * fd[k]).sum::<f64>() / (norm(&e.grad) * norm(&fd));
            assert!(
                cos > 0.99,
                "cosine {cos}: analytic {:?} vs fd {:?}",
                e.grad,
                fd
            );
            for k in 0..3 {
                assert!(
                    (e.grad[k] - fd[k]).abs() <= 0.25 * norm(&fd),
                    "param {k}: analytic {:?} vs finite differences {:?}",
                    e.grad,
                    fd
                );
            }
            // And the sign of a descent step is right: stepping against the gradient lowers d.
            let step = 1e-3;
            let q = Params {
                angle: p.angle - step * 1e-2 * e.grad[0],
                t: [p.t[0] - step * e.grad[1], p.t[1] - step * e.grad[2]],
            };
            assert!(full(&fixed, &moving, &q).value < e.value);
        }
    }

    #[test]
    fn inverse_term_gradient_matches_on_its_own() {
        // Swapping the images turns the inverse term into a forward one; the measure is
        // symmetric, so d(A, B; T) = d(B, A; T⁻¹).
        let (w, h) = (72, 64);
        let a = level_image(&blobs(w, h, 0.0), w, h);
        let b = level_image(&blobs(w, h, 3.0), w, h);
        let p = Params {
            angle: 0.1,
            t: [2.0, -3.0],
        };
        let (s, c) = (-p.angle).sin_cos();
        let inv = Params {
            angle: -p.angle,
            t: [-(c * p.t[0] - s * p.t[1]), -(s * p.t[0] + c * p.t[1])],
        };
        let d1 = full(&a, &b, &p).value;
        let d2 = full(&b, &a, &inv).value;
        assert!((d1 - d2).abs() < 1e-9 * d1.abs().max(1.0), "{d1} vs {d2}");
    }

    /// A level image whose tables are linear functions of position (different per α-level), so
    /// bilinear interpolation is exact and the table gradient is the true derivative.
    fn linear_level(w: usize, h: usize, spacing: usize, seed: u64) -> LevelImage {
        use rand::SeedableRng;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let sp = spacing as f64;
        let center = [
            ((w - 1) * spacing) as f64 / 2.0,
            ((h - 1) * spacing) as f64 / 2.0,
        ];
        // Slopes on the tables' fixed-point grid, so that the stored gradient is exact.
        let slope =
            |rng: &mut ChaCha8Rng| rng.gen_range(-9830i32..=9830) as f64 / GRAD_SCALE as f64;
        let coef: Vec<[f64; 3]> = (0..8)
            .map(|_| [rng.gen_range(0.0..5.0), slope(&mut rng), slope(&mut rng)])
            .collect();
        let table = coef
            .iter()
            .flat_map(|c| {
                (0..w * h).map(|i| {
                    let (x, y) = ((i % w) as f64 * sp, (i / w) as f64 * sp);
                    Entry::new(
                        (c[0] + c[1] * x + c[2] * y) as f32,
                        c[1] as f32,
                        c[2] as f32,
                    )
                })
            })
            .collect();
        // Points only in a central disc, so that no point crosses the other image's border
        // under the small perturbations of the finite differences.
        let radius = 0.3 * center[0].min(center[1]) * 2.0;
        let levels = (0..w * h).map(|_| rng.gen_range(0..8u8)).collect();
        let subset = (0..(w * h) as u32)
            .filter(|&i| {
                let x = (i as usize % w) as f64 * sp - center[0];
                let y = (i as usize / w) as f64 * sp - center[1];
                x.hypot(y) < radius
            })
            .collect();
        LevelImage {
            spacing: sp,
            width: w,
            height: h,
            center,
            table,
            levels,
            subset: Some(subset),
            dmax: 100.0,
        }
    }

    #[test]
    fn gradient_equals_central_differences_for_linear_tables() {
        // Different sizes and spacings on the two sides exercise the centre and spacing handling
        // of both directions and the analytic inverse-to-forward mapping.
        let fixed = linear_level(61, 47, 1, 1);
        let moving = linear_level(33, 29, 2, 2);
        for p in [
            Params {
                angle: 0.3,
                t: [-3.0, 4.5],
            },
            Params {
                angle: -0.15,
                t: [2.0, -1.0],
            },
        ] {
            let e = full(&fixed, &moving, &p);
            for k in 0..3 {
                let h = if k == 0 { 1e-3 } else { 1e-2 };
                let (mut a, mut b) = (p, p);
                if k == 0 {
                    a.angle += h;
                    b.angle -= h;
                } else {
                    a.t[k - 1] += h;
                    b.t[k - 1] -= h;
                }
                let fd =
                    (full(&fixed, &moving, &a).value - full(&fixed, &moving, &b).value) / (2.0 * h);
                assert!(
                    (e.grad[k] - fd).abs() < 1e-5 + 1e-4 * fd.abs(),
                    "param {k}: analytic {} vs finite difference {fd}",
                    e.grad[k]
                );
            }
        }
    }
}
