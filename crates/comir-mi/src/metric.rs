//! The metrics on one pyramid level, with their analytic derivatives with respect to the
//! parameters of a rigid, similarity or affine transform: Mattes mutual information (joint
//! histogram with a box window on the fixed image and a cubic B-spline Parzen window on the moving
//! image), normalised cross-correlation (for images of the same modality, such as learned
//! representations) and normalised gradient fields (edge directions, for modalities whose
//! intensities pair badly but whose edges coincide).

use comir_image::pyramid::gaussian_blur;
use comir_image::Image;
use comir_transform::bspline::JacobianTerms;
use comir_transform::{Affine2, BSpline2, Transform2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Bins of padding on each side of the moving-intensity range, so the B-spline window (support ±2)
/// always falls inside the histogram (as in ITK's `MattesMutualInformationImageToImageMetric`).
const PAD: f64 = 2.0;

/// One fixed-image sample: its offset from the rotation centre in full-resolution pixels, its
/// fixed intensity and that intensity's bin.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    dx: f64,
    dy: f64,
    f: f64,
    fbin: u32,
}

/// Everything the metric needs at one pyramid level.
#[derive(Clone, Debug)]
pub(crate) struct Level {
    /// Shrink factor of this level (level pixel = `factor` full-resolution pixels).
    pub(crate) factor: f64,
    /// The moving image at this level (smoothed and subsampled).
    moving: Image,
    /// Minimum of the moving level image.
    m_min: f64,
    /// Continuous moving bins per intensity unit: `(bins − 4) / (max − min)`.
    m_scale: f64,
    /// Rotation centre in full-resolution pixels.
    center: [f64; 2],
    /// The fixed sample points.
    samples: Vec<Sample>,
    /// Histogram bins (per image).
    bins: usize,
    /// The similarity measured.
    metric: Metric,
    /// What NGF reads (only when `metric` is [`Metric::Ngf`]).
    ngf: Option<NgfLevel>,
}

/// The gradients NGF compares at one level.
#[derive(Clone, Debug)]
struct NgfLevel {
    /// Per sample, the fixed gradient normalised, `∇f / ‖∇f‖_ε` (per full-resolution pixel).
    fixed_dir: Vec<[f64; 2]>,
    /// The moving level image's derivatives along x and y (per level pixel).
    moving_dx: Image,
    moving_dy: Image,
    /// `ε²` of the moving gradient (per full-resolution pixel, squared).
    eps2: f64,
}

/// Smoothing (level pixels) before the images are differentiated for NGF.
const NGF_SIGMA: f64 = 1.0;
/// NGF's ε as a fraction of each image's mean gradient magnitude: gradients weaker than this
/// count less (noise), stronger ones by their direction only. Chosen among 0.03–3 on the first
/// 20 pairs of AANLIB CT/MR (affine displacements); 1 loses a third of the gain.
const NGF_EPS: f64 = 0.1;

/// Central differences along x and y (one-sided at the borders), per pixel.
fn derivatives(img: &Image) -> (Image, Image) {
    let (w, h) = (img.width(), img.height());
    let d = img.data();
    let at = |x: usize, y: usize| d[y * w + x];
    let dx = Image::from_fn(w, h, |x, y| {
        let (a, b) = (x.saturating_sub(1), (x + 1).min(w - 1));
        (at(b, y) - at(a, y)) / (b - a).max(1) as f32
    });
    let dy = Image::from_fn(w, h, |x, y| {
        let (a, b) = (y.saturating_sub(1), (y + 1).min(h - 1));
        (at(x, b) - at(x, a)) / (b - a).max(1) as f32
    });
    (dx, dy)
}

/// The similarity a level measures (larger is better for both).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Mattes mutual information, for images of different modalities.
    #[default]
    Mi,
    /// Normalised cross-correlation, for images of the same modality (learned representations).
    Ncc,
    /// Normalised gradient fields (Haber and Modersitzki 2006): the mean of
    /// `((∇f · ∇m) / (‖∇f‖_ε ‖∇m‖_ε))²`, with `∇m` the gradient of the warped moving image and ε
    /// a tenth of each image's mean gradient magnitude. Compares edge directions only, so it does
    /// not pair intensities (a CT's bright bone with an MR's bright scalp); it needs a start near
    /// the answer.
    Ngf,
}

/// Per-sample quantities kept between the histogram pass and the derivative pass.
#[derive(Clone, Copy, Debug, Default)]
struct Pending {
    /// Row offset `fbin · bins + first moving bin`.
    base: u32,
    /// The sample's index in the level.
    sample: u32,
    /// `κ₀ − m`: the B-spline argument of the first of the four moving bins.
    u0: f64,
    /// `∂m/∂x`, `∂m/∂y` at the mapped point (moving bins per full-resolution pixel).
    mx: f64,
    my: f64,
}

/// One sample's share of the joint histogram, worked out in parallel and added in sample order.
#[derive(Clone, Copy, Debug, Default)]
struct Share {
    /// Whether the sample maps inside the moving image (nothing else is set otherwise).
    inside: bool,
    /// As [`Pending`].
    base: u32,
    /// The four moving bins' B-spline weights.
    weights: [f64; 4],
    u0: f64,
    mx: f64,
    my: f64,
}

/// Samples per parallel chunk of a metric's passes. The per-sample work runs chunk by chunk on
/// the thread pool and the sums are then taken in sample order, as a single loop takes them, so
/// the metric has the same bits on any number of threads (and as before it ran in parallel);
/// levels of at most this many samples run on the calling thread.
pub(crate) const CHUNK: usize = 1024;

/// Reusable buffers, so an iteration allocates nothing.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    joint: Vec<f64>,
    log_ratio: Vec<f64>,
    pending: Vec<Pending>,
    /// Every sample's [`Share`].
    shares: Vec<Share>,
    /// Per-sample terms, summed in order: `[inside, value, ∂/∂μ…]` for NGF; MI uses only the
    /// gradient's slots (its value comes from the histogram).
    terms: Vec<[f64; MAX_PARAMS + 2]>,
    /// NCC's per-sample values: fixed value, moving value, `∂m/∂x`, `∂m/∂y`, sample index.
    ncc: Vec<(f64, f64, f64, f64, u32)>,
}

/// Most parameters of a transform the metric differentiates (affine: 6).
pub(crate) const MAX_PARAMS: usize = 6;

/// The metric at one transform.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Eval {
    /// The similarity (larger is better): mutual information in nats (≥ 0), or NCC in [−1, 1].
    pub(crate) mi: f64,
    /// Its gradient in the transform's parameter order (zero when not requested; only the first
    /// `n_params` entries are used).
    pub(crate) grad: [f64; MAX_PARAMS],
    /// Samples that fell inside the moving image.
    pub(crate) valid: usize,
}

/// Cubic B-spline β³(u).
#[inline]
fn bspline3(u: f64) -> f64 {
    let a = u.abs();
    if a < 1.0 {
        2.0 / 3.0 - a * a + 0.5 * a * a * a
    } else if a < 2.0 {
        let b = 2.0 - a;
        b * b * b / 6.0
    } else {
        0.0
    }
}

/// Derivative of the cubic B-spline, β³′(u).
#[inline]
fn bspline3_deriv(u: f64) -> f64 {
    let a = u.abs();
    if a < 1.0 {
        -2.0 * u + 1.5 * u * a
    } else if a < 2.0 {
        let b = 2.0 - a;
        -0.5 * b * b * u.signum()
    } else {
        0.0
    }
}

/// Bilinear value and gradient (per level pixel) of `img` at `(x, y)`, the gradient being the exact
/// derivative of the bilinear interpolant. `None` outside `[0, w−1] × [0, h−1]`.
#[inline(always)]
fn bilinear_with_grad(img: &Image, x: f64, y: f64) -> Option<(f64, f64, f64)> {
    let (w, h) = (img.width(), img.height());
    if !(x >= 0.0 && y >= 0.0 && x <= (w - 1) as f64 && y <= (h - 1) as f64) {
        return None;
    }
    // x, y ≥ 0 here, so truncation is the floor (and avoids a libm call).
    let x0 = (x as usize).min(w.saturating_sub(2));
    let y0 = (y as usize).min(h.saturating_sub(2));
    let fx = x - x0 as f64;
    let fy = y - y0 as f64;
    let d = img.data();
    let i = y0 * w + x0;
    let v00 = d[i] as f64;
    let v10 = d[i + 1] as f64;
    let v01 = d[i + w] as f64;
    let v11 = d[i + w + 1] as f64;
    let top = v00 + fx * (v10 - v00);
    let bot = v01 + fx * (v11 - v01);
    let v = top + fy * (bot - top);
    let gx = (1.0 - fy) * (v10 - v00) + fy * (v11 - v01);
    let gy = bot - top;
    Some((v, gx, gy))
}

/// A transform as the metric evaluates it: where a sample at offset `(dx, dy)` from the centre
/// lands in the moving image (full-resolution pixels), and how the moving intensity there changes
/// with each parameter given the image gradient `(mx, my)` (chain rule through `∂T/∂μ`).
trait SampleMap: Sync {
    /// Number of parameters.
    const N: usize;
    /// The mapped position.
    fn map(&self, dx: f64, dy: f64) -> (f64, f64);
    /// `∂m/∂μₖ = (mx, my) · ∂T/∂μₖ` for each parameter, into `out[..N]`.
    fn dm(&self, dx: f64, dy: f64, mx: f64, my: f64, out: &mut [f64]);
    /// The linear part `A` of the map, row-major (`x' = A₀₀ dx + A₀₁ dy + …`).
    fn linear(&self) -> [[f64; 2]; 2];
    /// `gᵀ (∂A/∂μₖ) u` for each parameter, into `out[..N]`.
    fn d_linear(&self, g: [f64; 2], u: [f64; 2], out: &mut [f64]);
}

/// `gᵀ M u` for a 2 × 2 matrix.
#[inline(always)]
fn bilinear_form(g: [f64; 2], m: [[f64; 2]; 2], u: [f64; 2]) -> f64 {
    g[0] * (m[0][0] * u[0] + m[0][1] * u[1]) + g[1] * (m[1][0] * u[0] + m[1][1] * u[1])
}

/// `T(p) = R(θ)(p − c) + c + t`, parameters `(θ, tx, ty)`.
struct RigidMap {
    s: f64,
    c: f64,
    ox: f64,
    oy: f64,
}

impl SampleMap for RigidMap {
    const N: usize = 3;
    #[inline(always)]
    fn map(&self, dx: f64, dy: f64) -> (f64, f64) {
        let (s, c) = (self.s, self.c);
        (c * dx - s * dy + self.ox, s * dx + c * dy + self.oy)
    }
    #[inline(always)]
    fn dm(&self, dx: f64, dy: f64, mx: f64, my: f64, out: &mut [f64]) {
        let (s, c) = (self.s, self.c);
        // ∂T/∂θ = R′(θ)(p − c).
        let jx = -s * dx - c * dy;
        let jy = c * dx - s * dy;
        out[0] = mx * jx + my * jy;
        out[1] = mx;
        out[2] = my;
    }
    #[inline(always)]
    fn linear(&self) -> [[f64; 2]; 2] {
        [[self.c, -self.s], [self.s, self.c]]
    }
    #[inline(always)]
    fn d_linear(&self, g: [f64; 2], u: [f64; 2], out: &mut [f64]) {
        let (s, c) = (self.s, self.c);
        out[0] = bilinear_form(g, [[-s, -c], [c, -s]], u);
        out[1] = 0.0;
        out[2] = 0.0;
    }
}

/// `T(p) = k·R(θ)(p − c) + c + t`, parameters `(k, θ, tx, ty)`.
struct SimilarityMap {
    k: f64,
    s: f64,
    c: f64,
    ox: f64,
    oy: f64,
}

impl SampleMap for SimilarityMap {
    const N: usize = 4;
    #[inline(always)]
    fn map(&self, dx: f64, dy: f64) -> (f64, f64) {
        let (k, s, c) = (self.k, self.s, self.c);
        (
            k * (c * dx - s * dy) + self.ox,
            k * (s * dx + c * dy) + self.oy,
        )
    }
    #[inline(always)]
    fn dm(&self, dx: f64, dy: f64, mx: f64, my: f64, out: &mut [f64]) {
        let (k, s, c) = (self.k, self.s, self.c);
        out[0] = mx * (c * dx - s * dy) + my * (s * dx + c * dy);
        out[1] = k * (mx * (-s * dx - c * dy) + my * (c * dx - s * dy));
        out[2] = mx;
        out[3] = my;
    }
    #[inline(always)]
    fn linear(&self) -> [[f64; 2]; 2] {
        let (k, s, c) = (self.k, self.s, self.c);
        [[k * c, -k * s], [k * s, k * c]]
    }
    #[inline(always)]
    fn d_linear(&self, g: [f64; 2], u: [f64; 2], out: &mut [f64]) {
        let (k, s, c) = (self.k, self.s, self.c);
        out[0] = bilinear_form(g, [[c, -s], [s, c]], u);
        out[1] = k * bilinear_form(g, [[-s, -c], [c, -s]], u);
        out[2] = 0.0;
        out[3] = 0.0;
    }
}

/// `T(p) = A(p − c) + c + t`, parameters `(a11, a12, a21, a22, tx, ty)`.
struct AffineMap {
    a: [[f64; 2]; 2],
    ox: f64,
    oy: f64,
}

impl SampleMap for AffineMap {
    const N: usize = 6;
    #[inline(always)]
    fn map(&self, dx: f64, dy: f64) -> (f64, f64) {
        let a = &self.a;
        (
            a[0][0] * dx + a[0][1] * dy + self.ox,
            a[1][0] * dx + a[1][1] * dy + self.oy,
        )
    }
    #[inline(always)]
    fn dm(&self, dx: f64, dy: f64, mx: f64, my: f64, out: &mut [f64]) {
        out[0] = mx * dx;
        out[1] = mx * dy;
        out[2] = my * dx;
        out[3] = my * dy;
        out[4] = mx;
        out[5] = my;
    }
    #[inline(always)]
    fn linear(&self) -> [[f64; 2]; 2] {
        self.a
    }
    #[inline(always)]
    fn d_linear(&self, g: [f64; 2], u: [f64; 2], out: &mut [f64]) {
        out[0] = g[0] * u[0];
        out[1] = g[0] * u[1];
        out[2] = g[1] * u[0];
        out[3] = g[1] * u[1];
        out[4] = 0.0;
        out[5] = 0.0;
    }
}

impl Level {
    /// Prepares a level.
    ///
    /// * `fixed`, `moving`: the level images (already smoothed and shrunk by `factor`, so level
    ///   pixel `q` sits at full-resolution position `factor · q`); both must be at least 2×2.
    /// * `full_size`: the full-resolution fixed image's `(width, height)`.
    /// * `center`: the rotation centre in full-resolution pixels.
    /// * `max_samples`: the sample points are full-resolution fixed pixel positions: all of them
    ///   when there are at most this many, otherwise a uniformly random subset of this size
    ///   (without replacement, drawn from `rng`, sorted in raster order for memory locality).
    ///   Their fixed value is the level image interpolated bilinearly at `position / factor`, so a
    ///   coarse level keeps as many samples as a fine one.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        fixed: &Image,
        moving: Image,
        factor: usize,
        full_size: (usize, usize),
        center: [f64; 2],
        bins: usize,
        max_samples: usize,
        clip: f64,
        rng: &mut ChaCha8Rng,
    ) -> Level {
        let (fmin, fmax) = fixed.quantile_range(clip);
        let (fmin, fmax) = (fmin as f64, fmax as f64);
        let frange = if fmax > fmin { fmax - fmin } else { 1.0 };
        let (mmin, mmax) = moving.quantile_range(clip);
        let (mmin, mmax) = (mmin as f64, mmax as f64);
        let mrange = if mmax > mmin { mmax - mmin } else { 1.0 };
        let (fw, fh) = full_size;
        let n = fw * fh;
        let indices: Vec<usize> = if n <= max_samples {
            (0..n).collect()
        } else {
            let mut v = rand::seq::index::sample(rng, n, max_samples).into_vec();
            v.sort_unstable();
            v
        };
        let f = factor as f64;
        let samples = indices
            .into_iter()
            .filter_map(|i| {
                let (px, py) = ((i % fw) as f64, (i / fw) as f64);
                let v = bilinear_with_grad(fixed, px / f, py / f)?.0;
                let b = (((v - fmin) / frange) * bins as f64).floor();
                let fbin = b.clamp(0.0, (bins - 1) as f64) as u32;
                Some(Sample {
                    dx: px - center[0],
                    dy: py - center[1],
                    f: v,
                    fbin,
                })
            })
            .collect();
        Level {
            factor: f,
            moving,
            m_min: mmin,
            m_scale: (bins as f64 - 2.0 * PAD) / mrange,
            center,
            samples,
            bins,
            metric: Metric::Mi,
            ngf: None,
        }
    }

    /// The same level measuring `metric` instead; `fixed` is the level's fixed image, as given
    /// to [`Level::new`] (NGF reads its gradient).
    pub(crate) fn with_metric(mut self, metric: Metric, fixed: &Image) -> Level {
        self.metric = metric;
        if metric == Metric::Ngf {
            self.ngf = Some(self.ngf_level(fixed));
        }
        self
    }

    /// NGF's gradients: both images smoothed by [`NGF_SIGMA`] and differentiated; the fixed
    /// gradient interpolated at the samples and normalised with ε = [`NGF_EPS`] times its mean
    /// magnitude there (the moving one likewise over the level image).
    fn ngf_level(&self, fixed: &Image) -> NgfLevel {
        let inv_f = 1.0 / self.factor;
        let (fdx, fdy) = derivatives(&gaussian_blur(fixed, NGF_SIGMA));
        let (moving_dx, moving_dy) = derivatives(&gaussian_blur(&self.moving, NGF_SIGMA));
        let c = self.center;
        let fixed_grad: Vec<[f64; 2]> = self
            .samples
            .iter()
            .map(|p| {
                let (x, y) = ((p.dx + c[0]) * inv_f, (p.dy + c[1]) * inv_f);
                let gx = bilinear_with_grad(&fdx, x, y).map_or(0.0, |v| v.0);
                let gy = bilinear_with_grad(&fdy, x, y).map_or(0.0, |v| v.0);
                [gx * inv_f, gy * inv_f]
            })
            .collect();
        let mean_norm = |g: &mut dyn Iterator<Item = f64>| {
            let (s, n) = g.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
            if n == 0 {
                1.0
            } else {
                (s / n as f64).max(1e-12)
            }
        };
        let eps_f = NGF_EPS * mean_norm(&mut fixed_grad.iter().map(|g| g[0].hypot(g[1])));
        let fixed_dir = fixed_grad
            .iter()
            .map(|g| {
                let norm = (g[0] * g[0] + g[1] * g[1] + eps_f * eps_f).sqrt();
                [g[0] / norm, g[1] / norm]
            })
            .collect();
        let eps_m = mean_norm(
            &mut moving_dx
                .data()
                .iter()
                .zip(moving_dy.data())
                .map(|(&a, &b)| f64::from(a).hypot(f64::from(b)) * inv_f),
        );
        NgfLevel {
            fixed_dir,
            moving_dx,
            moving_dy,
            eps2: (NGF_EPS * eps_m).powi(2),
        }
    }

    /// Number of fixed samples at this level.
    pub(crate) fn n_samples(&self) -> usize {
        self.samples.len()
    }

    /// Root-mean-square distance of the samples from the rotation centre (full-resolution pixels):
    /// the lever arm that turns a rotation into a point displacement.
    pub(crate) fn rms_radius(&self) -> f64 {
        if self.samples.is_empty() {
            return 1.0;
        }
        let s: f64 = self.samples.iter().map(|p| p.dx * p.dx + p.dy * p.dy).sum();
        (s / self.samples.len() as f64).sqrt().max(1.0)
    }

    /// MI (and, with `want_grad`, its gradient with respect to the transform's parameters) at
    /// `t`, which must be expressed about the level's centre. Samples mapped outside the moving
    /// image are dropped.
    pub(crate) fn evaluate(&self, t: &Transform2, want_grad: bool, scratch: &mut Scratch) -> Eval {
        debug_assert_eq!(t.center(), self.center, "transform centre");
        let tr = match t {
            Transform2::Rigid(r) => r.translation,
            Transform2::Similarity(r) => r.translation,
            Transform2::Affine(r) => r.translation,
        };
        let ox = self.center[0] + tr[0];
        let oy = self.center[1] + tr[1];
        match t {
            Transform2::Rigid(r) => {
                let (s, c) = r.angle_rad.sin_cos();
                self.evaluate_map(&RigidMap { s, c, ox, oy }, want_grad, scratch)
            }
            Transform2::Similarity(r) => {
                let (s, c) = r.angle_rad.sin_cos();
                let map = SimilarityMap {
                    k: r.scale,
                    s,
                    c,
                    ox,
                    oy,
                };
                self.evaluate_map(&map, want_grad, scratch)
            }
            Transform2::Affine(r) => {
                let map = AffineMap {
                    a: r.matrix,
                    ox,
                    oy,
                };
                self.evaluate_map(&map, want_grad, scratch)
            }
        }
    }

    fn evaluate_map<M: SampleMap>(&self, map: &M, want_grad: bool, scratch: &mut Scratch) -> Eval {
        match self.metric {
            Metric::Ncc => return self.evaluate_ncc(map, want_grad, scratch),
            Metric::Ngf => {
                // `with_metric` prepares the gradients whenever it sets NGF.
                let ngf = self.ngf.as_ref().expect("an NGF level holds its gradients");
                return self.evaluate_ngf(map, ngf, want_grad, scratch);
            }
            Metric::Mi => {}
        }
        let valid = self.fill_histogram(|p| map.map(p.dx, p.dy), want_grad, scratch);
        let mut grad = [0.0; MAX_PARAMS];
        if valid == 0 {
            return Eval {
                mi: 0.0,
                grad,
                valid,
            };
        }
        let mi = self.mutual_information(valid, scratch);
        if want_grad {
            let (pending, log_ratio) = (&scratch.pending, &scratch.log_ratio);
            scratch.terms.resize(pending.len(), [0.0; MAX_PARAMS + 2]);
            scratch
                .terms
                .par_chunks_mut(CHUNK)
                .zip(pending.par_chunks(CHUNK))
                .for_each(|(terms, pending)| {
                    let mut d = [0.0; MAX_PARAMS];
                    for (t, q) in terms.iter_mut().zip(pending) {
                        let acc = self.pending_weight(q, log_ratio);
                        let p = &self.samples[q.sample as usize];
                        map.dm(p.dx, p.dy, q.mx, q.my, &mut d[..M::N]);
                        for (t, d) in t[2..].iter_mut().zip(&d[..M::N]) {
                            *t = acc * d;
                        }
                    }
                });
            for t in &scratch.terms {
                for (g, t) in grad.iter_mut().zip(&t[2..2 + M::N]) {
                    *g -= t;
                }
            }
            let norm = 1.0 / valid as f64;
            for g in &mut grad[..M::N] {
                *g *= norm;
            }
        }
        Eval { mi, grad, valid }
    }

    /// Normalised cross-correlation `cov(f, m) / (σ_f σ_m)` over the samples inside the moving
    /// image, and its gradient: with `n` samples,
    /// `∂NCC/∂m_i = ((f_i − f̄) / (σ_f σ_m) − NCC · (m_i − m̄) / σ_m²) / n`, chained through
    /// `∂m_i/∂μ` as for MI. 0 (and a zero gradient) when either image is constant there.
    fn evaluate_ncc<M: SampleMap>(&self, map: &M, want_grad: bool, scratch: &mut Scratch) -> Eval {
        let inv_f = 1.0 / self.factor;
        scratch.ncc.clear();
        for (i, p) in self.samples.iter().enumerate() {
            let (x, y) = map.map(p.dx, p.dy);
            if let Some((v, gx, gy)) = bilinear_with_grad(&self.moving, x * inv_f, y * inv_f) {
                scratch.ncc.push((p.f, v, gx * inv_f, gy * inv_f, i as u32));
            }
        }
        let valid = scratch.ncc.len();
        let mut grad = [0.0; MAX_PARAMS];
        let zero = Eval {
            mi: 0.0,
            grad,
            valid,
        };
        if valid == 0 {
            return zero;
        }
        let n = valid as f64;
        let (sf, sm) = scratch
            .ncc
            .iter()
            .fold((0.0, 0.0), |(a, b), &(f, m, ..)| (a + f, b + m));
        let (mf, mm) = (sf / n, sm / n);
        let (mut vf, mut vm, mut cov) = (0.0, 0.0, 0.0);
        for &(f, m, ..) in &scratch.ncc {
            vf += (f - mf) * (f - mf);
            vm += (m - mm) * (m - mm);
            cov += (f - mf) * (m - mm);
        }
        let (vf, vm, cov) = (vf / n, vm / n, cov / n);
        if vf <= 0.0 || vm <= 0.0 {
            return zero;
        }
        let sd = (vf * vm).sqrt();
        let ncc = cov / sd;
        if want_grad {
            let mut d = [0.0; MAX_PARAMS];
            for &(f, m, mx, my, i) in &scratch.ncc {
                let w = ((f - mf) / sd - ncc * (m - mm) / vm) / n;
                let p = &self.samples[i as usize];
                map.dm(p.dx, p.dy, mx, my, &mut d[..M::N]);
                for (g, d) in grad.iter_mut().zip(&d[..M::N]) {
                    *g += w * d;
                }
            }
        }
        Eval {
            mi: ncc,
            grad,
            valid,
        }
    }

    /// Normalised gradient fields over the samples inside the moving image. With `g = ∇m(T(p))`
    /// and the warped image's gradient `w = Aᵀ g` (`A` the linear part of `T`), a sample gives
    /// `v = (n·w)² / (‖w‖² + ε²)` for the fixed direction `n`; with
    /// `u = 2(n·w)/q · (n − (n·w)/q · w)`, `q = ‖w‖² + ε²`, its derivative is
    /// `u · ∂w/∂μ = gᵀ (∂A/∂μ) u + (Hᵀ A u) · ∂T/∂μ`, `H` the derivative of the interpolated
    /// moving gradient. The value is the mean of `v`.
    fn evaluate_ngf<M: SampleMap>(
        &self,
        map: &M,
        ngf: &NgfLevel,
        want_grad: bool,
        scratch: &mut Scratch,
    ) -> Eval {
        let inv_f = 1.0 / self.factor;
        let a = map.linear();
        debug_assert_eq!(
            ngf.fixed_dir.len(),
            self.samples.len(),
            "a direction per sample"
        );
        // Each sample's terms ([inside, value, gradient]) in parallel, summed in order below.
        scratch
            .terms
            .resize(self.samples.len(), [0.0; MAX_PARAMS + 2]);
        scratch
            .terms
            .par_chunks_mut(CHUNK)
            .zip(self.samples.par_chunks(CHUNK))
            .zip(ngf.fixed_dir.par_chunks(CHUNK))
            .for_each(|((terms, samples), dirs)| {
                let (mut d_lin, mut d_pos) = ([0.0; MAX_PARAMS], [0.0; MAX_PARAMS]);
                for ((t, p), n) in terms.iter_mut().zip(samples).zip(dirs) {
                    let (x, y) = map.map(p.dx, p.dy);
                    let (lx, ly) = (x * inv_f, y * inv_f);
                    let (Some((g0, h00, h01)), Some((g1, h10, h11))) = (
                        bilinear_with_grad(&ngf.moving_dx, lx, ly),
                        bilinear_with_grad(&ngf.moving_dy, lx, ly),
                    ) else {
                        t[0] = 0.0;
                        continue;
                    };
                    t[0] = 1.0;
                    // Per full-resolution pixel: the gradient once, its derivative twice.
                    let g = [g0 * inv_f, g1 * inv_f];
                    let s2 = inv_f * inv_f;
                    let h = [[h00 * s2, h01 * s2], [h10 * s2, h11 * s2]];
                    let w = [
                        a[0][0] * g[0] + a[1][0] * g[1],
                        a[0][1] * g[0] + a[1][1] * g[1],
                    ];
                    let dot = n[0] * w[0] + n[1] * w[1];
                    let q = w[0] * w[0] + w[1] * w[1] + ngf.eps2;
                    t[1] = dot * dot / q;
                    if want_grad {
                        let k = 2.0 * dot / q;
                        let r = dot / q;
                        let u = [k * (n[0] - r * w[0]), k * (n[1] - r * w[1])];
                        let au = [
                            a[0][0] * u[0] + a[0][1] * u[1],
                            a[1][0] * u[0] + a[1][1] * u[1],
                        ];
                        // z = Hᵀ (A u): how v changes as the mapped point moves.
                        let z = [
                            h[0][0] * au[0] + h[1][0] * au[1],
                            h[0][1] * au[0] + h[1][1] * au[1],
                        ];
                        map.dm(p.dx, p.dy, z[0], z[1], &mut d_pos[..M::N]);
                        map.d_linear(g, u, &mut d_lin[..M::N]);
                        for k in 0..M::N {
                            t[2 + k] = d_pos[k] + d_lin[k];
                        }
                    }
                }
            });
        let mut sum = 0.0;
        let mut grad = [0.0; MAX_PARAMS];
        let mut valid = 0usize;
        for t in scratch.terms.iter().filter(|t| t[0] != 0.0) {
            valid += 1;
            sum += t[1];
            if want_grad {
                for (g, t) in grad.iter_mut().zip(&t[2..2 + M::N]) {
                    *g += t;
                }
            }
        }
        if valid == 0 {
            return Eval {
                mi: 0.0,
                grad,
                valid,
            };
        }
        let norm = 1.0 / valid as f64;
        for g in &mut grad[..M::N] {
            *g *= norm;
        }
        Eval {
            mi: sum * norm,
            grad,
            valid,
        }
    }

    /// MI at the deformable transform `T(p) = L(p + d(p))` (see [`DeformedSamples`]), and with
    /// `grad` its gradient with respect to the deformation's coefficients (ITK order: every x
    /// then every y coefficient), written into `grad` (which must hold `2 · n_ctrl` values).
    /// Returns `(MI, valid samples)`.
    pub(crate) fn evaluate_deformed(
        &self,
        deformed: &DeformedSamples,
        coefficients: &[f64],
        grad: Option<&mut [f64]>,
        scratch: &mut Scratch,
    ) -> (f64, usize) {
        let a = deformed.matrix;
        let n = coefficients.len() / 2;
        let (cx, cy) = coefficients.split_at(n);
        let terms = &deformed.terms;
        let map = |i: usize, p: &Sample| {
            let t = &terms[i];
            let (mut ux, mut uy) = (0.0, 0.0);
            for (&k, &w) in t.index[..t.len].iter().zip(&t.weight[..t.len]) {
                ux += w * cx[k];
                uy += w * cy[k];
            }
            let (x, y) = (p.dx + ux, p.dy + uy);
            (
                a[0][0] * x + a[0][1] * y + deformed.offset[0],
                a[1][0] * x + a[1][1] * y + deformed.offset[1],
            )
        };
        let want_grad = grad.is_some();
        let valid = self.fill_histogram_indexed(map, want_grad, scratch);
        let Some(grad) = grad else {
            return (
                if valid == 0 {
                    0.0
                } else {
                    self.mutual_information(valid, scratch)
                },
                valid,
            );
        };
        grad.iter_mut().for_each(|g| *g = 0.0);
        if valid == 0 {
            return (0.0, 0);
        }
        let mi = self.mutual_information(valid, scratch);
        let norm = 1.0 / valid as f64;
        let (gx, gy) = grad.split_at_mut(n);
        for q in &scratch.pending {
            let acc = self.pending_weight(q, &scratch.log_ratio) * norm;
            // ∂m/∂c = ∇M · A · w: the image gradient pulled back through the linear part.
            let px = q.mx * a[0][0] + q.my * a[1][0];
            let py = q.mx * a[0][1] + q.my * a[1][1];
            let t = &terms[q.sample as usize];
            for (&k, &w) in t.index[..t.len].iter().zip(&t.weight[..t.len]) {
                gx[k] -= acc * px * w;
                gy[k] -= acc * py * w;
            }
        }
        (mi, valid)
    }

    /// First pass: maps every sample with `map`, fills the joint histogram and (with
    /// `want_grad`) the per-sample quantities of the derivative. Returns the number of samples
    /// inside the moving image.
    fn fill_histogram(
        &self,
        map: impl Fn(&Sample) -> (f64, f64) + Sync,
        want_grad: bool,
        scratch: &mut Scratch,
    ) -> usize {
        self.fill_histogram_indexed(|_, p| map(p), want_grad, scratch)
    }

    /// [`Level::fill_histogram`] with the sample's index passed to `map`.
    fn fill_histogram_indexed(
        &self,
        map: impl Fn(usize, &Sample) -> (f64, f64) + Sync,
        want_grad: bool,
        scratch: &mut Scratch,
    ) -> usize {
        let b = self.bins;
        let inv_f = 1.0 / self.factor;
        let m_hi = b as f64 - PAD - 1e-9;
        scratch.shares.resize(self.samples.len(), Share::default());
        scratch
            .shares
            .par_chunks_mut(CHUNK)
            .zip(self.samples.par_chunks(CHUNK))
            .enumerate()
            .for_each(|(c, (shares, samples))| {
                for (k, (share, p)) in shares.iter_mut().zip(samples).enumerate() {
                    let (x, y) = map(c * CHUNK + k, p);
                    let (x, y) = (x * inv_f, y * inv_f);
                    let Some((v, gx, gy)) = bilinear_with_grad(&self.moving, x, y) else {
                        share.inside = false;
                        continue;
                    };
                    let m_raw = (v - self.m_min) * self.m_scale + PAD;
                    let m = m_raw.clamp(PAD, m_hi);
                    // A clamped intensity does not move with the transform.
                    let slope = if m == m_raw { self.m_scale } else { 0.0 };
                    let k0 = m as usize - 1; // m ≥ 2: truncation is the floor
                    let u0 = k0 as f64 - m;
                    *share = Share {
                        inside: true,
                        base: (p.fbin as usize * b + k0) as u32,
                        weights: [0, 1, 2, 3].map(|j| bspline3(u0 + j as f64)),
                        u0,
                        // ∂m/∂(moving position) in full-resolution pixels.
                        mx: slope * gx * inv_f,
                        my: slope * gy * inv_f,
                    };
                }
            });
        scratch.joint.clear();
        scratch.joint.resize(b * b, 0.0);
        scratch.pending.clear();
        let mut valid = 0usize;
        for (i, s) in scratch.shares.iter().enumerate() {
            if !s.inside {
                continue;
            }
            valid += 1;
            let base = s.base as usize;
            for (h, w) in scratch.joint[base..base + 4].iter_mut().zip(&s.weights) {
                *h += w;
            }
            if want_grad {
                scratch.pending.push(Pending {
                    base: s.base,
                    sample: i as u32,
                    u0: s.u0,
                    mx: s.mx,
                    my: s.my,
                });
            }
        }
        valid
    }

    /// MI from the filled histogram of `valid` samples; also leaves `log(p(ι,κ) / p_m(κ))` in
    /// `scratch.log_ratio` for the derivative.
    fn mutual_information(&self, valid: usize, scratch: &mut Scratch) -> f64 {
        let b = self.bins;
        let norm = 1.0 / valid as f64;
        // Marginals (of the un-normalised histogram; normalised below).
        let mut pf = vec![0.0; b];
        let mut pm = vec![0.0; b];
        for (row, pfi) in scratch.joint.chunks_exact(b).zip(pf.iter_mut()) {
            for (&h, pmk) in row.iter().zip(pm.iter_mut()) {
                *pfi += h;
                *pmk += h;
            }
        }
        // MI = Σ p log(p / (pf pm)), p = h / N. With counts: Σ (h/N) log(h N / (hf hm)).
        let ln_n = (valid as f64).ln();
        let ln_pm: Vec<f64> = pm
            .iter()
            .map(|&v| if v > 0.0 { v.ln() } else { 0.0 })
            .collect();
        scratch.log_ratio.clear();
        scratch.log_ratio.resize(b * b, 0.0);
        let mut mi = 0.0;
        let rows = scratch
            .joint
            .chunks_exact(b)
            .zip(scratch.log_ratio.chunks_exact_mut(b))
            .zip(&pf);
        for ((row, lr_row), &pfi) in rows {
            if pfi <= 0.0 {
                continue;
            }
            let ln_pf = pfi.ln();
            for ((&h, lr), &lpm) in row.iter().zip(lr_row.iter_mut()).zip(&ln_pm) {
                if h > 0.0 {
                    let lh = h.ln();
                    mi += h * (lh + ln_n - ln_pf - lpm);
                    // log(p(ι,κ) / p_m(κ)) — the normalisation cancels.
                    *lr = lh - lpm;
                }
            }
        }
        (mi * norm).max(0.0)
    }

    /// `Σ_j log(p/p_m) · β³′(κ_j − m)` of one sample: with the chain rule through `∂m/∂μ`,
    /// `dMI/dμ = −(1/N) Σ_x weight(x) · ∂m(x)/∂μ`, since
    /// `dMI/dμ = Σ_{ι,κ} ∂p(ι,κ)/∂μ · log(p(ι,κ)/p_m(κ))` and
    /// `∂p(ι,κ)/∂μ = −(1/N) Σ_x [ι = ι(x)] β³′(κ − m(x)) ∂m(x)/∂μ`.
    #[inline(always)]
    fn pending_weight(&self, q: &Pending, log_ratio: &[f64]) -> f64 {
        let base = q.base as usize;
        let mut acc = 0.0;
        for j in 0..4 {
            acc += log_ratio[base + j] * bspline3_deriv(q.u0 + j as f64);
        }
        acc
    }
}

/// The B-spline weights of a level's samples for one control grid, and the linear transform that
/// follows the deformation, so that [`Level::evaluate_deformed`] maps a sample at offset `q` from
/// the centre to `A·(q + d(p)) + offset`.
#[derive(Clone, Debug)]
pub(crate) struct DeformedSamples {
    /// The sparse parameter Jacobian (the B-spline weights) of each sample.
    terms: Vec<JacobianTerms>,
    /// The linear part's matrix.
    matrix: [[f64; 2]; 2],
    /// Where the centre goes: `c + t`.
    offset: [f64; 2],
}

impl DeformedSamples {
    /// The weights of `level`'s samples on `grid`'s control points, followed by `linear`
    /// (expressed about the level's centre).
    pub(crate) fn new(level: &Level, grid: &BSpline2, linear: &Affine2) -> DeformedSamples {
        let c = level.center;
        let terms = level
            .samples
            .iter()
            .map(|p| {
                let mut t = JacobianTerms::new();
                grid.jacobian([p.dx + c[0], p.dy + c[1]], &mut t);
                t
            })
            .collect();
        DeformedSamples {
            terms,
            matrix: linear.matrix,
            offset: [c[0] + linear.translation[0], c[1] + linear.translation[1]],
        }
    }
}

/// A deterministic generator for the sample draws of one registration.
pub(crate) fn sample_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}
