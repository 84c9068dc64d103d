//! α-AMD rigid registration: gradient descent on the symmetric α-cut average minimal distance.
//!
//! # Method
//! Öfverstedt, Lindblad & Sladoje, "Fast and Robust Symmetric Image Registration Based on
//! Distances Combining Intensity and Spatial Information", IEEE Trans. Image Processing 28(7),
//! 2019 (the distance itself: Lindblad & Sladoje, IEEE TIP 2014). This crate follows the setup
//! MultiRegEval runs (`alpha_amd/aamd.py` and its `register_multi_channel.py`):
//!
//! 1. Each image is min-max normalised to `[0, 1]`; per pyramid level (factor, σ) =
//!    (4, 12), (2, 5), (1, 1) it is Gaussian-smoothed and subsampled (`[::f, ::f]`).
//! 2. Each level image is quantised into `Q + 1 = 8` levels, `q = 1 + ⌊I·Q − ½⌋`. For every
//!    α-cut `k = 1..Q` the exact Euclidean distance transform (Felzenszwalb–Huttenlocher, in
//!    [`edt_sq`]) gives the distance to `{q ≥ k}` and to `{q ≤ Q − k}`, clipped, with
//!    central-difference gradients that are zero inside the set. A point of level `i` pays
//!    `DT_i = (1/Q)[Σ_{k≤i} d(·, {q ≥ k}) + Σ_{k≤Q−i} d(·, {q ≤ Q − k})]`, precomputed per level
//!    as a table of (distance, gradient) read with bilinear interpolation; points mapped outside
//!    the other image count for nothing (weight 0).
//! 3. The measure is symmetric: the mean of the forward term (fixed points into the moving
//!    image's tables) and the inverse term (moving points mapped by `T⁻¹` into the fixed
//!    image's tables), each normalised by the number of points that landed inside. Every
//!    iteration draws a fresh 1 % of the points of each image, with replacement.
//! 4. Gradient descent per level, 3000/1000/200 iterations (times `iteration_factor`), step
//!    length ramped linearly from 2 to 2, 2 to 2, 2 to 0.2, the gradient clipped to `[−1, 1]`
//!    elementwise and smoothed by `g ← 0.9 m + 0.1 g` (reset per level), parameter scaling
//!    `(0.1/diag, 5, 5)` with `diag` the mean of the two image diagonals `‖shape − 1‖`; a level
//!    stops early when `‖g‖ < 10⁻⁴`.
//! 5. Multi-start from rotations {0, −0.4, +0.4} rad; the start with the lowest smoothed final
//!    value (`s ← ½ s + ½ v`) wins. That value is [`Outcome::metric_value`] (lower is better).
//!
//! # Choices
//! * **Multi-start is built in** ([`AlphaAmdConfig::starts_rad`]): the pyramid and the distance
//!   tables depend only on the images, so they are computed once and shared by all starts, which
//!   then run in parallel (one thread each). Do not wrap [`AlphaAmd`] in
//!   `comir_register::MultiStart` with the default starts; set `starts_rad = [0.0]` for a single
//!   start. Every start reseeds the generator from [`AlphaAmdConfig::seed`], as the reference
//!   reseeds numpy before each start, so results are bit-identical whatever the thread count.
//! * **Coordinates.** The reference works in (row, col) with `T(p) = p·M + t`; its angle is the
//!   negative of comir's and its translations are swapped. Here the parameters are comir's own
//!   `(φ, tx, ty)` on coordinates relative to the full-resolution centres, which is the same
//!   optimisation (clipping, momentum and the symmetric scaling are unaffected by a sign flip or
//!   a swap). Level pixel `j` sits at full-resolution coordinate `f·j` and every level uses the
//!   full-resolution centre; the reference centres each level at `f·(n_f − 1)/2`, which moves its
//!   rotation centre by up to `(f − 1)/2` px between levels. We do not reproduce that artefact.
//! * **Sampling.** The reference draws level counts from a multinomial with the level
//!   frequencies, then points uniformly inside each level; that is exactly uniform sampling of
//!   all points with replacement, which is what we draw (ChaCha8, not numpy's stream).
//! * **Empty directions.** If every sample of a direction falls outside the other image, that
//!   direction's value is the distance clip (the largest value it can take) and its gradient 0;
//!   if this is still so at the very end, the start reports `StopReason::TooFewSamples`.
//! * Single-channel images with all-ones weights and no masks (the MultiRegEval setting);
//!   multi-channel "sum" mode is not implemented.
//! * Tables hold one 8-byte record per pixel: the distance as `f32` and its gradient as
//!   fixed-point `i16` (the gradient of a table is bounded by 1, so the grid step is 3·10⁻⁵,
//!   far below the sampling noise); all `Q + 1` tables of an image share one allocation, and
//!   sums are accumulated in `f64`. The reference keeps `float64`; the registrations agree to
//!   hundredths of a pixel (`bench/aamd-vs-python`).
//! * Speed. The lookups are random reads into 4–17 MB of tables per image, bound by memory
//!   latency. Each iteration therefore first maps all sampled points and issues cache prefetches
//!   (the x86-64 prefetch hint), then interpolates. Point coordinates are recomputed from the
//!   pixel index instead of being stored. The tables and distance maps ask Linux for
//!   transparent huge pages (`madvise`), which halves the page faults of building them and
//!   the TLB misses of reading them. When an iteration has ≥ 1024 samples, its forward and
//!   inverse sums run in parallel, which balances three starts over two cores. Each sum is
//!   computed the same way either way, so the output is bit-identical whatever the thread
//!   count.

mod edt;
mod hugepages;
mod measure;
mod tables;

use comir_image::pyramid::{blur_subsample, PassOrder};
use comir_image::Image;
use comir_register::{check_inputs, rigid_start, Error, Outcome, Registrar, StopReason, MIN_SIZE};
use comir_transform::{Rigid2, Transform2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use crate::edt::edt_sq;
use crate::measure::{evaluate, Params, Sampling};
use crate::tables::LevelImage;

/// Settings of [`AlphaAmd`]. `Default` is the MultiRegEval reference setup for 512-px images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlphaAmdConfig {
    /// Number of α-levels `Q` (the image is quantised into `Q + 1` levels). Default 7.
    pub alpha_levels: usize,
    /// Pyramid subsampling factors, coarse to fine. Default `[4, 2, 1]`.
    pub pyramid_factors: Vec<usize>,
    /// Gaussian σ (full-resolution pixels) per level. Default `None`: the reference rule,
    /// `[12, 5, 1]` when `iteration_factor ≥ 1` and `[7, 3, 1]` otherwise (only for three levels;
    /// other pyramids must give σ explicitly).
    pub pyramid_sigmas: Option<Vec<f64>>,
    /// Gradient-descent iterations per level before `iteration_factor`. Default
    /// `[3000, 1000, 200]`.
    pub iterations: Vec<usize>,
    /// Multiplies `iterations` (rounded, at least 1). Default 1.0; MultiRegEval uses 0.3 for its
    /// 300-px datasets.
    pub iteration_factor: f64,
    /// Step length `[start, end]` per level, ramped linearly over the level's iterations.
    /// Default `[[2, 2], [2, 2], [2, 0.2]]`.
    pub step_lengths: Vec<[f64; 2]>,
    /// Fraction of each image's points sampled per direction and iteration, in `(0, 1]`.
    /// Default 0.01.
    pub sampling_fraction: f64,
    /// Angle scaling numerator: the angle step is scaled by `angle_scale / diag`. Default 0.1.
    pub angle_scale: f64,
    /// Translation step scaling. Default 5.0.
    pub translation_scale: f64,
    /// Elementwise gradient clip before the momentum. Default 1.0.
    pub gradient_clip: f64,
    /// Weight of the previous direction in `g ← β m + (1 − β) g`, in `[0, 1)`. Default 0.9.
    pub momentum: f64,
    /// A level stops when the smoothed gradient's norm falls below this. Default 1e-4.
    pub gradient_threshold: f64,
    /// Initial rotations (radians, added to the initial transform's angle) of the built-in
    /// multi-start; the start with the lowest final smoothed value wins. Default `[0, −0.4, 0.4]`.
    pub starts_rad: Vec<f64>,
    /// Seed of the sampling generator, reset for every start. Default 1000 (the reference's
    /// `np.random.seed(1000)`).
    pub seed: u64,
}

impl Default for AlphaAmdConfig {
    fn default() -> Self {
        AlphaAmdConfig {
            alpha_levels: 7,
            pyramid_factors: vec![4, 2, 1],
            pyramid_sigmas: None,
            iterations: vec![3000, 1000, 200],
            iteration_factor: 1.0,
            step_lengths: vec![[2.0, 2.0], [2.0, 2.0], [2.0, 0.2]],
            sampling_fraction: 0.01,
            angle_scale: 0.1,
            translation_scale: 5.0,
            gradient_clip: 1.0,
            momentum: 0.9,
            gradient_threshold: 1e-4,
            starts_rad: vec![0.0, -0.4, 0.4],
            seed: 1000,
        }
    }
}

fn invalid(msg: String) -> Error {
    Error::InvalidConfig(msg)
}

impl AlphaAmdConfig {
    /// Checks every setting.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), Error> {
        if !(1..=64).contains(&self.alpha_levels) {
            return Err(invalid(format!(
                "alpha_levels must be in 1..=64, got {}",
                self.alpha_levels
            )));
        }
        let n = self.pyramid_factors.len();
        if n == 0 {
            return Err(invalid("pyramid_factors must not be empty".into()));
        }
        if let Some(f) = self
            .pyramid_factors
            .iter()
            .find(|&&f| !(1..=64).contains(&f))
        {
            return Err(invalid(format!(
                "pyramid_factors must be in 1..=64, got {f}"
            )));
        }
        if self.iterations.len() != n || self.step_lengths.len() != n {
            return Err(invalid(format!(
                "pyramid_factors, iterations and step_lengths must have the same length, got {}, {} and {}",
                n,
                self.iterations.len(),
                self.step_lengths.len()
            )));
        }
        match &self.pyramid_sigmas {
            Some(s) if s.len() != n => {
                return Err(invalid(format!(
                    "pyramid_sigmas must have one σ per pyramid level ({n}), got {}",
                    s.len()
                )))
            }
            Some(s) if s.iter().any(|v| !(v.is_finite() && *v >= 0.0)) => {
                return Err(invalid(format!(
                    "pyramid_sigmas must be finite and ≥ 0, got {s:?}"
                )))
            }
            None if n != 3 => {
                return Err(invalid(format!(
                    "pyramid_sigmas must be given for a {n}-level pyramid (the default rule covers 3 levels)"
                )))
            }
            _ => {}
        }
        if !(self.iteration_factor.is_finite() && self.iteration_factor > 0.0) {
            return Err(invalid(format!(
                "iteration_factor must be finite and > 0, got {}",
                self.iteration_factor
            )));
        }
        if self
            .step_lengths
            .iter()
            .flatten()
            .any(|v| !(v.is_finite() && *v >= 0.0))
        {
            return Err(invalid(format!(
                "step_lengths must be finite and ≥ 0, got {:?}",
                self.step_lengths
            )));
        }
        if !(self.sampling_fraction > 0.0 && self.sampling_fraction <= 1.0) {
            return Err(invalid(format!(
                "sampling_fraction must be in (0, 1], got {}",
                self.sampling_fraction
            )));
        }
        for (name, v) in [
            ("angle_scale", self.angle_scale),
            ("translation_scale", self.translation_scale),
            ("gradient_clip", self.gradient_clip),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(format!("{name} must be finite and > 0, got {v}")));
            }
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(invalid(format!(
                "momentum must be in [0, 1), got {}",
                self.momentum
            )));
        }
        if !(self.gradient_threshold.is_finite() && self.gradient_threshold >= 0.0) {
            return Err(invalid(format!(
                "gradient_threshold must be finite and ≥ 0, got {}",
                self.gradient_threshold
            )));
        }
        if self.starts_rad.is_empty() || self.starts_rad.iter().any(|a| !a.is_finite()) {
            return Err(invalid(format!(
                "starts_rad must be a non-empty list of finite angles, got {:?}",
                self.starts_rad
            )));
        }
        Ok(())
    }

    /// σ per level after the reference rule.
    fn sigmas(&self) -> Vec<f64> {
        match &self.pyramid_sigmas {
            Some(s) => s.clone(),
            None if self.iteration_factor >= 1.0 => vec![12.0, 5.0, 1.0],
            None => vec![7.0, 3.0, 1.0],
        }
    }

    /// Iterations per level after `iteration_factor`.
    fn level_iterations(&self) -> Vec<usize> {
        self.iterations
            .iter()
            .map(|&n| {
                if n == 0 {
                    0
                } else {
                    ((n as f64 * self.iteration_factor).round() as usize).max(1)
                }
            })
            .collect()
    }
}

/// α-AMD rigid registration with the MultiRegEval settings and a built-in multi-start.
#[derive(Clone, Debug)]
pub struct AlphaAmd {
    config: AlphaAmdConfig,
}

/// The precomputed pyramid of both images: per level, (fixed, moving).
pub struct Prepared {
    levels: Vec<(LevelImage, LevelImage)>,
    fixed_center: [f64; 2],
    moving_center: [f64; 2],
    diag: f64,
}

/// The result of one start.
struct StartResult {
    params: Params,
    value: f64,
    iterations: usize,
    stop: StopReason,
}

fn diagonal(img: &Image) -> f64 {
    let (w, h) = (img.width() as f64 - 1.0, img.height() as f64 - 1.0);
    (w * w + h * h).sqrt()
}

impl AlphaAmd {
    /// A registrar with `config`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when a setting is out of range.
    pub fn new(config: AlphaAmdConfig) -> Result<AlphaAmd, Error> {
        config.validate()?;
        Ok(AlphaAmd { config })
    }

    /// The settings.
    pub fn config(&self) -> &AlphaAmdConfig {
        &self.config
    }

    /// Checks the images and computes everything that does not depend on the transform: the
    /// normalised pyramid, point sets and distance tables of both images.
    ///
    /// # Errors
    /// Unusable images, or a pyramid level smaller than 2×2.
    pub fn prepare(&self, fixed: &Image, moving: &Image) -> Result<Prepared, Error> {
        check_inputs(fixed, moving, MIN_SIZE)?;
        let cfg = &self.config;
        for img in [fixed, moving] {
            for &f in &cfg.pyramid_factors {
                if img.width().div_ceil(f) < 2 || img.height().div_ceil(f) < 2 {
                    return Err(invalid(format!(
                        "pyramid factor {f} leaves fewer than 2×2 pixels of a {}×{} image",
                        img.width(),
                        img.height()
                    )));
                }
            }
        }
        let (fnorm, mnorm) = (fixed.normalized(), moving.normalized());
        let sigmas = cfg.sigmas();
        let q = cfg.alpha_levels;
        let jobs: Vec<(usize, bool)> = (0..cfg.pyramid_factors.len())
            .flat_map(|l| [(l, false), (l, true)])
            .collect();
        let mut built: Vec<LevelImage> = jobs
            .par_iter()
            .map(|&(l, is_moving)| {
                let img = if is_moving { &mnorm } else { &fnorm };
                let f = cfg.pyramid_factors[l];
                let level = blur_subsample(img, sigmas[l], f, PassOrder::HorizontalFirst);
                LevelImage::build(&level, f, img.center(), q)
            })
            .collect();
        let mut levels = Vec::with_capacity(cfg.pyramid_factors.len());
        while !built.is_empty() {
            let mut pair = built.drain(..2);
            if let (Some(f), Some(m)) = (pair.next(), pair.next()) {
                levels.push((f, m));
            }
        }
        Ok(Prepared {
            levels,
            fixed_center: fixed.center(),
            moving_center: moving.center(),
            diag: 0.5 * (diagonal(fixed) + diagonal(moving)),
        })
    }

    /// Registers with precomputed tables (see [`AlphaAmd::prepare`]), running every start.
    ///
    /// # Errors
    /// None at present; the signature leaves room for method failures.
    pub fn register_prepared(&self, prep: &Prepared, init: &Rigid2) -> Result<Outcome, Error> {
        let cfg = &self.config;
        let results: Vec<StartResult> = cfg
            .starts_rad
            .par_iter()
            .map(|&a| {
                let mut start = *init;
                start.angle_rad += a;
                let c = start.with_center(prep.fixed_center);
                let p = Params {
                    angle: c.angle_rad,
                    t: [
                        c.translation[0] + prep.fixed_center[0] - prep.moving_center[0],
                        c.translation[1] + prep.fixed_center[1] - prep.moving_center[1],
                    ],
                };
                self.run_start(prep, p)
            })
            .collect();
        let total: usize = results.iter().map(|r| r.iterations).sum();
        let mut best: Option<StartResult> = None;
        for r in results {
            // A start that lost its samples loses to any start that did not.
            let key = |r: &StartResult| (r.stop == StopReason::TooFewSamples, r.value);
            if best
                .as_ref()
                .is_none_or(|b| key(&r).partial_cmp(&key(b)) == Some(std::cmp::Ordering::Less))
            {
                best = Some(r);
            }
        }
        let best = best.ok_or_else(|| invalid("starts_rad must not be empty".into()))?;
        let p = best.params;
        let t = Rigid2::new(
            p.angle,
            [
                p.t[0] + prep.moving_center[0] - prep.fixed_center[0],
                p.t[1] + prep.moving_center[1] - prep.fixed_center[1],
            ],
            prep.fixed_center,
        )
        .with_center(init.center);
        Ok(Outcome {
            transform: t.into(),
            deformation: None,
            metric_value: best.value,
            iterations: total,
            stop: best.stop,
        })
    }

    /// One gradient-descent run through every pyramid level.
    fn run_start(&self, prep: &Prepared, mut p: Params) -> StartResult {
        let cfg = &self.config;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let scale = [
            cfg.angle_scale / prep.diag,
            cfg.translation_scale,
            cfg.translation_scale,
        ];
        let iters = cfg.level_iterations();
        let mut total = 0;
        let mut value = f64::INFINITY;
        let mut stop = StopReason::MaxIterations;
        let mut enough = true;
        let mut scratch = measure::Scratch::default();
        for (l, (fixed, moving)) in prep.levels.iter().enumerate() {
            let n = iters[l];
            if n == 0 {
                continue;
            }
            let [s0, s1] = cfg.step_lengths[l];
            let mut m = [0.0f64; 3];
            let mut smoothed: Option<f64> = None;
            stop = StopReason::MaxIterations;
            for i in 0..n {
                let step = s0 + (i as f64 / n as f64) * (s1 - s0);
                let e = evaluate(
                    fixed,
                    moving,
                    &p,
                    &mut Sampling::Random {
                        rng: &mut rng,
                        fraction: cfg.sampling_fraction,
                        scratch: &mut scratch,
                    },
                );
                total += 1;
                enough = e.enough_samples;
                let mut g = [0.0; 3];
                for k in 0..3 {
                    let c = e.grad[k].clamp(-cfg.gradient_clip, cfg.gradient_clip);
                    g[k] = cfg.momentum * m[k] + (1.0 - cfg.momentum) * c;
                }
                m = g;
                p.angle -= step * scale[0] * g[0];
                p.t[0] -= step * scale[1] * g[1];
                p.t[1] -= step * scale[2] * g[2];
                let s = smoothed.map_or(e.value, |s| 0.5 * s + 0.5 * e.value);
                smoothed = Some(s);
                value = s;
                if (g[0] * g[0] + g[1] * g[1] + g[2] * g[2]).sqrt() < cfg.gradient_threshold {
                    stop = StopReason::Converged;
                    break;
                }
            }
        }
        if !enough {
            stop = StopReason::TooFewSamples;
        }
        StartResult {
            params: p,
            value,
            iterations: total,
            stop,
        }
    }
}

impl Registrar for AlphaAmd {
    fn name(&self) -> &'static str {
        "aamd"
    }

    fn register(&self, fixed: &Image, moving: &Image, init: &Transform2) -> Result<Outcome, Error> {
        let init = rigid_start(init, "aamd")?;
        let prep = self.prepare(fixed, moving)?;
        self.register_prepared(&prep, &init)
    }
}
