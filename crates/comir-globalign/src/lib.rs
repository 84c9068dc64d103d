//! Global rigid registration by exhaustive rotation search, with mutual information evaluated for
//! all integer translations at once by FFT: the CMIF method of **globalign**.
//!
//! Öfverstedt, Lindblad, Sladoje, *Fast computation of mutual information in the frequency domain
//! with applications to global multimodal image alignment*, Pattern Recognition Letters 159:196–203
//! (2022), doi:10.1016/j.patrec.2022.05.022, arXiv:2106.14699; code: github.com/MIDA-group/globalign.
//!
//! # Method
//! 1. **Quantisation.** Each image is reduced to `labels` (Q, default 8) intensity labels by a
//!    deterministic 1-D k-means: Lloyd's algorithm on a 4096-bin histogram of the full-resolution
//!    image, started from the weighted quantiles `(i + ½)/Q`, re-seeding empty clusters at the
//!    worst-fitted value. Labels are ordered by intensity. (globalign uses scikit-learn's
//!    MiniBatchKMeans with a fixed random state; for gray images an exact, deterministic 1-D
//!    k-means is the better-defined equivalent.) Pyramid levels are smoothed and subsampled
//!    *intensities*, quantised with the same full-resolution thresholds.
//! 2. **CMIF.** For a rotation θ the moving label map is rotated about the transform centre
//!    (nearest neighbour, ties rounded up; pixels from outside the moving image get no label). For every integer
//!    translation `u` of a window, the joint label counts `C_ab(u) = Σ_p [F(p)=a]·[G(p+u)=b]` are
//!    cross-correlations, computed with `rustfft`: the fixed indicator spectra are computed once
//!    per level, the moving indicators are packed two per complex FFT, and since the fixed
//!    indicators are real, one inverse FFT of `conj(F̂_a)·FFT(g_b + i·g_b')` returns two count
//!    maps at once (`Q_A·Q_B/2` inverse FFTs per angle). Counts are rounded to integers (as in
//!    globalign); the marginals and the overlap `N(u)` are their sums, so no extra FFTs are
//!    needed. Then `MI(u) = Σ p_ab ln p_ab − Σ p_a ln p_a − Σ p_b ln p_b` (nats) with `p = C/N`,
//!    evaluated with an `n ln n` table. Translations with `N(u)` below `min_overlap` × the largest
//!    attainable overlap (the smaller image's pixel count; globalign uses the per-angle maximum of
//!    `N`, which is the same whenever one image fits inside the other) are invalid.
//! 3. **Search, coarse to fine.** The exhaustive search runs on a pyramid level whose longest side
//!    is at most `coarse_side` (default 80 px; factors are powers of two): `angles` (100) angles
//!    over the full circle (or `±angle_range_deg`), each with a translation window of
//!    `±max_shift_fraction` (50 %) of the image side, i.e. globalign's padding for overlap 0.5.
//!    The best `candidates` (3) local maxima over angle are refined at each finer level, up to the
//!    level whose longest side is at most `finest_side` (256 px): a grid of `refine_angles` (9)
//!    angles spanning ± the previous angle step around the estimate (or random angles, seeded,
//!    like globalign's refinement), each with a small translation window (`±refine_window` px)
//!    around the previous translation, which keeps the FFTs small. After the first refinement
//!    level only the best candidate continues. The finest level is refined again (with the
//!    step shrinking each round) until one angle step moves the image corners by at most half a
//!    pixel there. At the finest level the translation is refined to
//!    sub-pixel precision by a parabola through the MI at the peak and its neighbours, and (grid
//!    refinement) the angle likewise over the neighbouring grid angles.
//! 4. **Output.** A search over `(θ, u)` (level pixels) is the transform
//!    `T(p) = R(θ)(p − c) + c + f·R(θ)u` at pyramid factor `f`, with `c = init.center`, i.e.
//!    `Rigid2 { angle_rad: θ, translation: f·R(θ)u, center: init.center }`.
//!    [`Outcome::metric_value`] is `−MI` (nats) at the best integer translation of the finest
//!    level; [`StopReason::SearchComplete`].
//!
//! Angles are evaluated in parallel with rayon, each independently, and reduced in a fixed order
//! (ties go to the smallest angle index), so results do not depend on the number of threads.
//!
//! # The initial transform
//! The search is global: by default `init` only provides the rotation centre, and its rotation
//! and translation are ignored (the translation window is centred where the image centres meet).
//! With `use_init = true` the angle grid is centred on `init.angle_rad` (so `angle_range_deg`
//! limits the search to `±angle_range_deg` around it) and the translation window on
//! `init.translation`. The result is a complete fixed-to-moving transform and can be passed as the
//! `init` of a local method.

mod cmif;
mod fft2;
mod quantize;

use std::f64::consts::PI;
use std::time::Instant;

use comir_image::ops::pyramid_level;
use comir_image::Image;
use comir_register::{check_inputs, rigid_start, Error, Outcome, Registrar, StopReason, MIN_SIZE};
use comir_transform::{Rigid2, Transform2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::cmif::{AngleEval, LabelMap, Plan};
use crate::quantize::Quantizer;

/// How angles are refined around the coarse estimate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AngleRefinement {
    /// A regular grid of `refine_angles` angles (odd) spanning ± the previous step.
    #[default]
    Grid,
    /// The current best angle plus `refine_angles` angles drawn uniformly within ± the previous
    /// step (globalign's `align_rigid_and_refine`), from the configured seed.
    Random,
}

/// Settings of [`GlobalSearch`]. The defaults are the reference settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GlobalSearchConfig {
    /// Number of intensity labels per image (Q). Default 8; 2..=32.
    pub labels: usize,
    /// Number of angles of the exhaustive coarse search. Default 100 (3.6° apart over the full
    /// circle, as in globalign); 1..=3600.
    pub angles: usize,
    /// Half-range of the coarse angle search in degrees; 180 (the default) is the full circle.
    /// (0, 180].
    pub angle_range_deg: f64,
    /// How angles are refined at the finer levels. Default [`AngleRefinement::Grid`].
    pub refinement: AngleRefinement,
    /// Angles per candidate and refinement level. Default 9 (a grid with a quarter of the previous
    /// step); grid: odd, 5..=101; random: 3..=101 (fewer would never narrow the step).
    pub refine_angles: usize,
    /// Local maxima (over angle) of the coarse search that are refined at the next level.
    /// Default 3; 1..=16.
    pub candidates: usize,
    /// Longest side, in pixels, of the coarse level that is searched exhaustively (the pyramid
    /// factor is the smallest power of two reaching it). Default 80; at least 16.
    pub coarse_side: usize,
    /// Longest side, in pixels, of the finest level used; 0 means full resolution. Default 256.
    /// Values below `coarse_side` make the coarse level the finest.
    pub finest_side: usize,
    /// Half-width of the coarse translation window, as a fraction of the larger image side.
    /// Default 0.5 (globalign's padding for an overlap of 0.5); (0, 1].
    pub max_shift_fraction: f64,
    /// Half-width in pixels of the translation window at the refinement levels. Default 3; 1..=64.
    pub refine_window: usize,
    /// Translations whose overlap is below this fraction of the largest attainable overlap are
    /// ignored. Default 0.5 (globalign); (0, 1].
    pub min_overlap: f64,
    /// Sub-pixel translation (and, with grid refinement, sub-step angle) by parabola fits of the MI
    /// at the finest level. Default true.
    pub subpixel: bool,
    /// Centre the angle range on `init.angle_rad` and the translation window on
    /// `init.translation` instead of a global search. Default false.
    pub use_init: bool,
    /// Seed of the random angle refinement. Default 0.
    pub seed: u64,
}

impl Default for GlobalSearchConfig {
    fn default() -> Self {
        GlobalSearchConfig {
            labels: 8,
            angles: 100,
            angle_range_deg: 180.0,
            refinement: AngleRefinement::Grid,
            refine_angles: 9,
            candidates: 3,
            coarse_side: 80,
            finest_side: 256,
            max_shift_fraction: 0.5,
            refine_window: 3,
            min_overlap: 0.5,
            subpixel: true,
            use_init: false,
            seed: 0,
        }
    }
}

impl GlobalSearchConfig {
    /// Checks every setting.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first out-of-range setting.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if !(2..=32).contains(&self.labels) {
            return bad(format!("labels must be in 2..=32, got {}", self.labels));
        }
        if !(1..=3600).contains(&self.angles) {
            return bad(format!("angles must be in 1..=3600, got {}", self.angles));
        }
        if !(self.angle_range_deg > 0.0 && self.angle_range_deg <= 180.0) {
            return bad(format!(
                "angle_range_deg must be in (0, 180], got {}",
                self.angle_range_deg
            ));
        }
        match self.refinement {
            // The finest level is repeated until the angle step is small enough, so every
            // refinement must shrink the step: grid steps become step / (n / 2), random ones
            // 2·step / n.
            AngleRefinement::Grid => {
                if !(5..=101).contains(&self.refine_angles) || self.refine_angles.is_multiple_of(2)
                {
                    return bad(format!(
                        "refine_angles must be odd and in 5..=101 for grid refinement (3 would never narrow the angle step), got {}",
                        self.refine_angles
                    ));
                }
            }
            AngleRefinement::Random => {
                if !(3..=101).contains(&self.refine_angles) {
                    return bad(format!(
                        "refine_angles must be in 3..=101 for random refinement (fewer would never narrow the angle step), got {}",
                        self.refine_angles
                    ));
                }
            }
        }
        if !(1..=16).contains(&self.candidates) {
            return bad(format!(
                "candidates must be in 1..=16, got {}",
                self.candidates
            ));
        }
        if self.coarse_side < 16 {
            return bad(format!(
                "coarse_side must be at least 16, got {}",
                self.coarse_side
            ));
        }
        if self.finest_side != 0 && self.finest_side < 16 {
            return bad(format!(
                "finest_side must be 0 (full resolution) or at least 16, got {}",
                self.finest_side
            ));
        }
        if !(self.max_shift_fraction > 0.0 && self.max_shift_fraction <= 1.0) {
            return bad(format!(
                "max_shift_fraction must be in (0, 1], got {}",
                self.max_shift_fraction
            ));
        }
        if !(1..=64).contains(&self.refine_window) {
            return bad(format!(
                "refine_window must be in 1..=64, got {}",
                self.refine_window
            ));
        }
        if !(self.min_overlap > 0.0 && self.min_overlap <= 1.0) {
            return bad(format!(
                "min_overlap must be in (0, 1], got {}",
                self.min_overlap
            ));
        }
        Ok(())
    }
}

/// Where the time of one search went (wall-clock seconds), and the level sizes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SearchStats {
    /// Quantisation and pyramid construction.
    pub prepare_s: f64,
    /// The exhaustive coarse search.
    pub coarse_s: f64,
    /// All refinement levels, sub-pixel fits included.
    pub refine_s: f64,
    /// Fixed image size at the coarse level.
    pub coarse_size: [usize; 2],
    /// Fixed image size at the finest level.
    pub finest_size: [usize; 2],
    /// Angles evaluated in total.
    pub angles_evaluated: usize,
}

/// Global rigid registration by exhaustive angle search with FFT-based MI over all translations
/// (registrar name `global`). See the crate documentation.
#[derive(Clone, Debug)]
pub struct GlobalSearch {
    config: GlobalSearchConfig,
}

/// One pyramid level of both images.
struct Level {
    factor: usize,
    fixed: LabelMap,
    moving: LabelMap,
}

/// An estimate being refined: full-resolution transform parameters and its MI.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    angle: f64,
    t: [f64; 2],
    mi: f64,
}

/// One angle to evaluate at a level.
#[derive(Clone, Copy, Debug)]
struct Job {
    angle: f64,
    origin: [i64; 2],
}

impl Job {
    /// The job for `angle` whose translation window of half-size `(hx, hy)` is centred on `u`.
    fn around(angle: f64, u: [f64; 2], hx: usize, hy: usize) -> Job {
        Job {
            angle,
            origin: [
                u[0].round() as i64 - hx as i64,
                u[1].round() as i64 - hy as i64,
            ],
        }
    }
}

/// The smallest power of two `f` with `ceil(side / f) ≤ target`.
fn pow2_factor(side: usize, target: usize) -> usize {
    let mut f = 1;
    while side.div_ceil(f) > target {
        f *= 2;
    }
    f
}

fn labels_of(img: &Image, q: &Quantizer) -> LabelMap {
    LabelMap {
        w: img.width(),
        h: img.height(),
        data: img.data().iter().map(|&v| q.label(v)).collect(),
    }
}

/// `Rᵀ(θ)·v`.
fn rot_t(angle: f64, v: [f64; 2]) -> [f64; 2] {
    let (s, c) = angle.sin_cos();
    [c * v[0] + s * v[1], -s * v[0] + c * v[1]]
}

/// `R(θ)·v`.
fn rot(angle: f64, v: [f64; 2]) -> [f64; 2] {
    let (s, c) = angle.sin_cos();
    [c * v[0] - s * v[1], s * v[0] + c * v[1]]
}

/// Angle wrapped into (−π, π].
fn wrap(a: f64) -> f64 {
    let w = a.rem_euclid(2.0 * PI);
    if w > PI {
        w - 2.0 * PI
    } else {
        w
    }
}

/// Vertex offset of the parabola through `(−1, a), (0, b), (1, c)`, in [−½, ½]; 0 if the three
/// values do not form a finite maximum.
fn parabola_vertex(a: f64, b: f64, c: f64) -> f64 {
    if !(a.is_finite() && b.is_finite() && c.is_finite()) {
        return 0.0;
    }
    let den = a - 2.0 * b + c;
    if den >= 0.0 {
        return 0.0;
    }
    (0.5 * (a - c) / den).clamp(-0.5, 0.5)
}

/// Evaluates all jobs of a level in parallel; the output order is the job order.
fn evaluate(plan: &Plan<'_>, center: [f64; 2], jobs: &[Job]) -> Vec<AngleEval> {
    jobs.par_iter()
        .map_init(
            || plan.workspace(),
            |ws, job| plan.eval(job.angle, center, job.origin, ws),
        )
        .collect()
}

impl GlobalSearch {
    /// A search with the given settings.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if a setting is out of range.
    pub fn new(config: GlobalSearchConfig) -> Result<Self, Error> {
        config.validate()?;
        Ok(GlobalSearch { config })
    }

    /// The settings.
    pub fn config(&self) -> &GlobalSearchConfig {
        &self.config
    }

    /// Like [`Registrar::register`], also returning where the time went.
    ///
    /// # Errors
    /// Unusable inputs, or no rotation and translation with enough overlap.
    pub fn register_with_stats(
        &self,
        fixed: &Image,
        moving: &Image,
        init: &Rigid2,
    ) -> Result<(Outcome, SearchStats), Error> {
        check_inputs(fixed, moving, MIN_SIZE)?;
        let cfg = &self.config;
        let mut stats = SearchStats::default();
        let t_start = Instant::now();

        // Quantisers from full resolution; pyramid of intensities by repeated halving.
        let q = cfg.labels;
        let qf = Quantizer::fit(fixed.data(), q);
        let qm = Quantizer::fit(moving.data(), q);
        let side = fixed
            .width()
            .max(fixed.height())
            .max(moving.width())
            .max(moving.height());
        let fc = pow2_factor(side, cfg.coarse_side);
        let ff = if cfg.finest_side == 0 {
            1
        } else {
            pow2_factor(side, cfg.finest_side).min(fc)
        };
        let mut factors = vec![fc];
        let mut f = fc;
        while f > ff {
            f /= 2;
            factors.push(f);
        }
        let mut levels: Vec<Level> = Vec::with_capacity(factors.len());
        {
            let (mut fi, mut mi, mut f) = (fixed.clone(), moving.clone(), 1);
            loop {
                if factors.contains(&f) {
                    levels.push(Level {
                        factor: f,
                        fixed: labels_of(&fi, &qf),
                        moving: labels_of(&mi, &qm),
                    });
                }
                if f >= fc {
                    break;
                }
                fi = pyramid_level(&fi, 2, 1.0);
                mi = pyramid_level(&mi, 2, 1.0);
                f *= 2;
            }
        }
        levels.reverse(); // coarse first
        stats.prepare_s = t_start.elapsed().as_secs_f64();

        let c = init.center;
        let cf = fixed.center();
        let cm = moving.center();
        let mut evaluated = 0usize;

        // ---- Coarse exhaustive search.
        let t_coarse = Instant::now();
        let coarse = &levels[0];
        let fl = coarse.factor as f64;
        let c_l = [c[0] / fl, c[1] / fl];
        let a0 = if cfg.use_init { init.angle_rad } else { 0.0 };
        let range = cfg.angle_range_deg.to_radians();
        let full_circle = cfg.angle_range_deg >= 180.0;
        let n = cfg.angles;
        let (angles, mut step): (Vec<f64>, f64) = if full_circle {
            let step = 2.0 * PI / n as f64;
            ((0..n).map(|j| a0 - PI + step * j as f64).collect(), step)
        } else if n == 1 {
            (vec![a0], range)
        } else {
            let step = 2.0 * range / (n - 1) as f64;
            ((0..n).map(|j| a0 - range + step * j as f64).collect(), step)
        };
        let (fw, fh) = (coarse.fixed.w, coarse.fixed.h);
        let (mw, mh) = (coarse.moving.w, coarse.moving.h);
        let hx = (cfg.max_shift_fraction * fw.max(mw) as f64).ceil() as usize;
        let hy = (cfg.max_shift_fraction * fh.max(mh) as f64).ceil() as usize;
        let window_centre = |angle: f64, t_full: Option<[f64; 2]>, f: f64| -> [f64; 2] {
            match t_full {
                // t = f·R(θ)u  ⇒  u = Rᵀ(θ)t / f.
                Some(t) => {
                    let u = rot_t(angle, t);
                    [u[0] / f, u[1] / f]
                }
                // Image centres meet: T(cf) = cm ⇒ u = Rᵀ(θ)(cm − c) − (cf − c).
                None => {
                    let u = rot_t(angle, [cm[0] - c[0], cm[1] - c[1]]);
                    [(u[0] - cf[0] + c[0]) / f, (u[1] - cf[1] + c[1]) / f]
                }
            }
        };
        let init_t = cfg.use_init.then_some(init.translation);
        let jobs: Vec<Job> = angles
            .iter()
            .map(|&a| Job::around(a, window_centre(a, init_t, fl), hx, hy))
            .collect();
        let plan = Plan::new(
            &coarse.fixed,
            &coarse.moving,
            q,
            2 * hx + 1,
            2 * hy + 1,
            cfg.min_overlap,
        );
        let res = evaluate(&plan, c_l, &jobs);
        drop(plan);
        evaluated += jobs.len();
        stats.coarse_size = [fw, fh];
        // Local maxima over angle (circular for the full circle), best first, ties by index.
        let nres = res.len();
        let mut peaks: Vec<usize> = (0..nres)
            .filter(|&j| {
                let v = res[j].mi;
                if !v.is_finite() {
                    return false;
                }
                let prev = if j > 0 {
                    Some(res[j - 1].mi)
                } else if full_circle && nres > 1 {
                    Some(res[nres - 1].mi)
                } else {
                    None
                };
                let next = if j + 1 < nres {
                    Some(res[j + 1].mi)
                } else if full_circle && nres > 1 {
                    Some(res[0].mi)
                } else {
                    None
                };
                prev.is_none_or(|p| v >= p) && next.is_none_or(|x| v >= x)
            })
            .collect();
        peaks.sort_by(|&a, &b| res[b].mi.total_cmp(&res[a].mi).then(a.cmp(&b)));
        peaks.truncate(cfg.candidates);
        if peaks.is_empty() {
            return Err(Error::Failed {
                method: "global",
                reason: "no rotation and translation gives enough overlap (see min_overlap)".into(),
            });
        }
        let mut cands: Vec<Candidate> = peaks
            .iter()
            .map(|&j| {
                let r = &res[j];
                let t = rot(jobs[j].angle, [r.u[0] as f64 * fl, r.u[1] as f64 * fl]);
                Candidate {
                    angle: jobs[j].angle,
                    t,
                    mi: r.mi,
                }
            })
            .collect();
        stats.coarse_s = t_coarse.elapsed().as_secs_f64();

        // ---- Refinement levels (the coarse level itself when it is also the finest).
        let t_refine = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let refine_levels: Vec<&Level> = if levels.len() > 1 {
            levels[1..].iter().collect()
        } else {
            vec![&levels[0]]
        };
        let hr = cfg.refine_window;
        let m = cfg.refine_angles / 2;
        let mut best: Candidate;
        // The finest level is repeated until the angle step moves the image corners by at most
        // half a pixel there.
        let finest = refine_levels[refine_levels.len() - 1];
        let half_diag = 0.5 * (finest.fixed.w as f64).hypot(finest.fixed.h as f64);
        let next_step = |step: f64| match cfg.refinement {
            AngleRefinement::Grid => step / m as f64,
            AngleRefinement::Random => 2.0 * step / cfg.refine_angles as f64,
        };
        let mut li = 0;
        loop {
            let level = refine_levels[li.min(refine_levels.len() - 1)];
            let last = li + 1 >= refine_levels.len() && next_step(step) * half_diag <= 0.5;
            li += 1;
            let fl = level.factor as f64;
            let c_l = [c[0] / fl, c[1] / fl];
            // Offsets (in radians) around each candidate.
            let offsets: Vec<f64> = match cfg.refinement {
                AngleRefinement::Grid => (0..cfg.refine_angles)
                    .map(|j| step * (j as f64 - m as f64) / m as f64)
                    .collect(),
                AngleRefinement::Random => std::iter::once(0.0)
                    .chain((0..cfg.refine_angles).map(|_| rng.gen_range(-step..=step)))
                    .collect(),
            };
            let per = offsets.len();
            let jobs: Vec<Job> = cands
                .iter()
                .flat_map(|cand| {
                    offsets.iter().map(move |&o| {
                        let a = cand.angle + o;
                        Job::around(a, window_centre(a, Some(cand.t), fl), hr, hr)
                    })
                })
                .collect();
            let plan = Plan::new(
                &level.fixed,
                &level.moving,
                q,
                2 * hr + 1,
                2 * hr + 1,
                cfg.min_overlap,
            );
            let res = evaluate(&plan, c_l, &jobs);
            drop(plan);
            evaluated += jobs.len();
            // Best job overall (ties: smallest index).
            let mut bj = 0;
            for (j, r) in res.iter().enumerate() {
                if r.mi > res[bj].mi {
                    bj = j;
                }
            }
            if !res[bj].mi.is_finite() {
                return Err(Error::Failed {
                    method: "global",
                    reason: "no translation with enough overlap at a refinement level".into(),
                });
            }
            let to_t = |j: usize, sub: [f64; 2]| -> [f64; 2] {
                let r = &res[j];
                rot(
                    jobs[j].angle,
                    [(r.u[0] as f64 + sub[0]) * fl, (r.u[1] as f64 + sub[1]) * fl],
                )
            };
            let mut angle = jobs[bj].angle;
            let mut t = to_t(bj, [0.0, 0.0]);
            if last && cfg.subpixel {
                let sub = |j: usize| -> [f64; 2] {
                    let nb = &res[j].nbhd;
                    [
                        parabola_vertex(nb[3], nb[4], nb[5]),
                        parabola_vertex(nb[1], nb[4], nb[7]),
                    ]
                };
                t = to_t(bj, sub(bj));
                let k = bj % per;
                if cfg.refinement == AngleRefinement::Grid && k > 0 && k + 1 < per {
                    let (jm, jp) = (bj - 1, bj + 1);
                    let d = parabola_vertex(res[jm].mi, res[bj].mi, res[jp].mi);
                    if d != 0.0 {
                        // Lagrange interpolation of the translations of the three angles.
                        let (tm, t0, tp) = (to_t(jm, sub(jm)), t, to_t(jp, sub(jp)));
                        let (wm, w0, wp) = (0.5 * d * (d - 1.0), 1.0 - d * d, 0.5 * d * (d + 1.0));
                        t = [
                            wm * tm[0] + w0 * t0[0] + wp * tp[0],
                            wm * tm[1] + w0 * t0[1] + wp * tp[1],
                        ];
                        angle += d * step / m as f64;
                    }
                }
            }
            best = Candidate {
                angle,
                t,
                mi: res[bj].mi,
            };
            cands = vec![best];
            step = next_step(step);
            if last {
                stats.finest_size = [level.fixed.w, level.fixed.h];
                break;
            }
        }
        stats.refine_s = t_refine.elapsed().as_secs_f64();
        stats.angles_evaluated = evaluated;
        let outcome = Outcome {
            transform: Rigid2::new(wrap(best.angle), best.t, c).into(),
            deformation: None,
            metric_value: -best.mi,
            iterations: evaluated,
            stop: StopReason::SearchComplete,
        };
        Ok((outcome, stats))
    }
}

impl Registrar for GlobalSearch {
    fn name(&self) -> &'static str {
        "global"
    }

    fn register(&self, fixed: &Image, moving: &Image, init: &Transform2) -> Result<Outcome, Error> {
        let init = rigid_start(init, "global")?;
        self.register_with_stats(fixed, moving, &init)
            .map(|(o, _)| o)
    }
}

#[cfg(test)]
mod tests;
