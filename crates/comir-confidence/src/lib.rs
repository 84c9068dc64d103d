//! How far to trust a registration result, judged from the two images and the transform found,
//! without the truth.
//!
//! [`assess`] takes the fixed image, the moving image and the fixed-to-moving [`Transform2`] any
//! method returned, gathers [`Evidence`] and turns it into a confidence in `[0, 1]` with a logistic
//! model whose coefficients ([`COEFFICIENTS`]) were fitted once on validation cases of the
//! evaluation protocol (docs/method.md, §10); below [`DOUBTFUL_BELOW`] the result is
//! [`Flag::Doubtful`]. It needs no method: the same function judges α-AMD, MI, feature or
//! global-search results, best on the raw images the model was fitted on.
//!
//! The evidence the model uses, computed on copies of the images reduced to about 128 pixels a
//! side:
//! * **local misalignment**: the moving image is resampled into the fixed frame and, in 9
//!   overlapping tiles, shifted by up to 6 % of the width to where the tile's mutual information
//!   peaks; a correct result leaves the peaks near zero, a wrong one far off;
//! * **edge disagreement**: how far a refinement by normalised gradient fields (edge
//!   directions, independent of how intensities pair up) moves the result, within the result's
//!   own transform model and as an affine map; MI's biased optima, which the MI tiles agree
//!   with, are where edges disagree;
//! * **overlap**: the fraction of the fixed image that lands inside the moving one;
//! * **plausibility** of a similarity or affine result: its largest absolute log-scale.
//!
//! [`Evidence`] also reports the whole-image mutual information, the tiles lost at the edge of
//! the search and the shear, which the model does not use.
//!
//! [`auroc`] and [`FlagCounts`] measure how well confidences and flags separate successes from
//! failures when the truth is known (in `comir eval`).
//!
//! ```
//! use comir_confidence::{assess, Flag};
//! use comir_transform::{Rigid2, Transform2};
//! let (fixed, moving) = comir_testkit::phantom_pair(96, 96, 3);
//! let truth = Transform2::Rigid(Rigid2::identity(fixed.center()));
//! let a = assess(&fixed, &moving, &truth);
//! assert!(a.confidence > 0.5 && a.flag == Flag::Ok);
//! ```

use comir_image::ops::sample_bilinear;
use comir_image::pyramid::pyramid_level;
use comir_image::Image;
use comir_mi::{MattesMi, MattesMiConfig, Metric};
use comir_register::Registrar;
use comir_transform::{dense_error, Transform2, TransformKind};

/// Side (in pixels) the images are reduced to before the evidence is gathered.
const WORK_SIDE: f64 = 128.0;
/// Intensity bins of the whole-image mutual information.
const BINS: usize = 16;
/// Intensity bins of a tile's mutual information.
const TILE_BINS: usize = 8;
/// Tiles per side.
const TILE_GRID: usize = 3;
/// A tile's side as a fraction of the image's.
const TILE_FRAC: f64 = 0.4;
/// The local search reaches this fraction of the width either way.
const SEARCH_FRAC: f64 = 0.06;
/// A tile counts when at least this fraction of it has a moving value at every shift tried.
const MIN_VALID: f64 = 0.6;
/// A tile counts when its fixed intensities have at least this entropy (nats).
const MIN_TILE_ENTROPY: f64 = 0.5;
/// Pyramid of the edge refinement: from the result, at half and full resolution (the `ngf`
/// method's refinement).
const EDGE_FACTORS: [usize; 2] = [2, 1];
/// Fixed samples per level of the edge refinement.
const EDGE_SAMPLES: usize = 16_384;
/// Marks a resampled point outside the moving image.
const OUTSIDE: u8 = u8::MAX;

/// What [`assess`] measured. Fractions of the width are of the fixed image's full width.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evidence {
    /// Fraction of the fixed image that maps inside the moving image.
    pub overlap: f64,
    /// Mutual information (nats, 16 bins) between the fixed image and the resampled moving one.
    pub mi: f64,
    /// Median local misalignment over the informative tiles, as a fraction of the width (the
    /// search's reach when no tile is informative).
    pub tile_shift: f64,
    /// Fraction of the informative tiles whose best shift lies at the edge of the search.
    pub tile_lost: f64,
    /// Fraction of the tiles that were informative (textured and overlapping).
    pub tiles: f64,
    /// How far a refinement by normalised gradient fields of the result's own kind (rigid,
    /// similarity or affine), started at the result, moves the fixed image's points (mean over a
    /// dense grid), as a fraction of the width; 6 % of the width (`SEARCH_FRAC`) when the
    /// refinement cannot run (too little overlap), and at most that.
    pub edge_shift: f64,
    /// The same for an affine refinement (equal to `edge_shift` for an affine result).
    pub edge_shift_affine: f64,
    /// How well the edges agree after the affine refinement: the mean squared cosine between
    /// the fixed and the moving image's gradients (ε-regularised, §4.5 of docs/method.md), in
    /// [0, 1]; 0 when the refinement cannot run.
    pub edge_agreement: f64,
    /// Largest absolute log-scale of the transform's linear part (0 for a rigid transform).
    pub log_scale: f64,
    /// Absolute shear of the transform's linear part (0 for rigid and similarity transforms).
    pub shear: f64,
}

/// The verdict on a registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    /// The result looks right.
    Ok,
    /// The result is probably wrong: check it.
    Doubtful,
}

impl Flag {
    /// `ok` or `doubtful`, as written in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Flag::Ok => "ok",
            Flag::Doubtful => "doubtful",
        }
    }
}

impl std::fmt::Display for Flag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A confidence, its flag and the evidence behind them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Assessment {
    /// Probability-like confidence that the result is within the protocol's tolerance, in
    /// `[0, 1]`.
    pub confidence: f64,
    /// [`Flag::Doubtful`] when `confidence` < [`DOUBTFUL_BELOW`].
    pub flag: Flag,
    /// What the confidence was computed from.
    pub evidence: Evidence,
}

/// Number of model features (see [`Evidence::features`]).
pub const N_FEATURES: usize = 5;

/// The logistic model: intercept, then one weight per entry of [`Evidence::features`]. Fitted
/// (L2 penalty 1 on standardised features) to success within 2 % of the width on the validation
/// half of the evaluation cases: Mattes MI, rigid and similarity→affine, on rigid and affine
/// displacements of MNI152 T1/T2, SHG/H&E, AANLIB CT/MR and AANLIB PET/MR pairs whose name's
/// FNV-1a hash is even and whose edges held ([`Evidence::edges_held`]). PET/MR keeps the weight
/// on implausible scales: there NGF shares MI's pull towards shrunk optima, so the edges alone
/// would vouch for them.
pub const COEFFICIENTS: [f64; N_FEATURES + 1] =
    [-40.3638, -1.2680, 13.1625, -12.3908, -2.5104, -3.2018];

/// The model without the edge evidence (intercept, then the weights of the first three
/// features), used when an edge refinement ran off by 6 % of the width (`SEARCH_FRAC`) or more:
/// the edges are then not shared (functional images such as PET, where NGF drifts towards shrunk
/// optima even from a right result) and say nothing about the result. Fitted like
/// [`COEFFICIENTS`], on MNI152 T1/T2, SHG/H&E and AANLIB CT/MR.
pub const TILES_ONLY_COEFFICIENTS: [f64; 4] = [-25.7210, -2.56857, 17.4146, -4.54108];

/// Results with a lower confidence are flagged [`Flag::Doubtful`]: the confidence below which 5 %
/// of the validation successes fall.
pub const DOUBTFUL_BELOW: f64 = 0.453;

/// Scales within `exp(±0.12)` (0.89–1.13) cost no confidence: sections and scans legitimately
/// differ by that much (raw H&E onto SHG: 0.88–1.13 on all but one pair).
pub const PLAUSIBLE_LOG_SCALE: f64 = 0.12;

impl Evidence {
    /// The model's inputs: `ln(tile_shift + 0.005)`, `overlap`, the log-scale beyond the
    /// plausible range, `max(0, log_scale − PLAUSIBLE_LOG_SCALE)`, `ln(edge_shift + 0.005)` and
    /// `ln(edge_shift_affine + 0.005)`.
    pub fn features(&self) -> [f64; N_FEATURES] {
        [
            (self.tile_shift + 0.005).ln(),
            self.overlap,
            (self.log_scale - PLAUSIBLE_LOG_SCALE).max(0.0),
            (self.edge_shift + 0.005).ln(),
            (self.edge_shift_affine + 0.005).ln(),
        ]
    }

    /// Whether both edge refinements stayed within 6 % of the width (`SEARCH_FRAC`) of the
    /// result: only then does the edge evidence enter the confidence.
    pub fn edges_held(&self) -> bool {
        self.edge_shift < SEARCH_FRAC && self.edge_shift_affine < SEARCH_FRAC
    }

    /// The confidence the model gives this evidence, in `[0, 1]`: [`COEFFICIENTS`] when the
    /// edges held, [`TILES_ONLY_COEFFICIENTS`] otherwise.
    pub fn confidence(&self) -> f64 {
        let x = self.features();
        let beta: &[f64] = if self.edges_held() {
            &COEFFICIENTS
        } else {
            &TILES_ONLY_COEFFICIENTS
        };
        let z = beta[0] + x.iter().zip(&beta[1..]).map(|(x, b)| x * b).sum::<f64>();
        if z.is_finite() {
            1.0 / (1.0 + (-z).exp())
        } else {
            0.0
        }
    }
}

/// Judges a registration result: `t` maps fixed-image points into `moving`.
///
/// Multi-channel images are averaged to gray. Costs about one short registration: the tiles work
/// on copies reduced to about 128 pixels a side, and the edge refinements (one for an affine
/// result, two otherwise) at half and full resolution on at most 16384 samples; the tiles and
/// the refinements run side by side on the thread pool.
pub fn assess(fixed: &Image, moving: &Image, t: &Transform2) -> Assessment {
    let evidence = evidence(fixed, moving, t);
    let confidence = evidence.confidence();
    let flag = if confidence < DOUBTFUL_BELOW {
        Flag::Doubtful
    } else {
        Flag::Ok
    };
    Assessment {
        confidence,
        flag,
        evidence,
    }
}

/// The images reduced and quantised once, for every transform tried on them.
struct Work {
    /// Fixed image, `BINS` levels.
    fixed: Vec<u8>,
    width: usize,
    height: usize,
    /// Full-resolution pixels per reduced pixel.
    factor: f64,
    /// Moving image, reduced (gray).
    moving: Image,
    /// The moving intensities mapped to bin 0 and to the last bin.
    moving_range: (f32, f32),
    /// Full-resolution width of the fixed image.
    full_width: f64,
}

/// The 1 % and 99 % quantiles of an image's values (a unit range for a constant image).
fn robust_range(img: &Image) -> (f32, f32) {
    let (lo, hi) = img.quantile_range(0.01);
    (lo, if hi > lo { hi } else { lo + 1.0 })
}

fn quantise(v: f32, (lo, hi): (f32, f32)) -> u8 {
    let x = ((v - lo) / (hi - lo) * BINS as f32).floor();
    x.clamp(0.0, (BINS - 1) as f32) as u8
}

fn gray(img: &Image) -> Image {
    if img.channels() == 1 {
        img.clone()
    } else {
        img.to_gray()
    }
}

impl Work {
    /// `fixed` and `moving` are gray.
    fn new(fixed: &Image, moving: &Image) -> Work {
        let side = fixed.width().max(fixed.height()) as f64;
        let factor = ((side / WORK_SIDE).round() as usize).max(1);
        let reduce = |g: &Image| {
            if factor == 1 {
                g.clone()
            } else {
                pyramid_level(g, factor, 0.5 * factor as f64)
            }
        };
        let f = reduce(fixed);
        let m = reduce(moving);
        let fr = robust_range(&f);
        Work {
            fixed: f.data().iter().map(|&v| quantise(v, fr)).collect(),
            width: f.width(),
            height: f.height(),
            factor: factor as f64,
            moving_range: robust_range(&m),
            moving: m,
            full_width: fixed.width() as f64,
        }
    }

    /// The moving image's bins at the reduced fixed grid extended by `margin` on every side,
    /// through `map` (full-resolution fixed to moving coordinates); [`OUTSIDE`] off the image.
    fn resample(&self, margin: usize, map: impl Fn([f64; 2]) -> [f64; 2]) -> Vec<u8> {
        let (gw, gh) = (self.width + 2 * margin, self.height + 2 * margin);
        let mut out = Vec::with_capacity(gw * gh);
        let k = self.factor;
        for j in 0..gh {
            for i in 0..gw {
                let p = [
                    (i as f64 - margin as f64) * k,
                    (j as f64 - margin as f64) * k,
                ];
                let q = map(p);
                out.push(
                    sample_bilinear(&self.moving, q[0] / k, q[1] / k, 0)
                        .map_or(OUTSIDE, |v| quantise(v, self.moving_range)),
                );
            }
        }
        out
    }

    /// Whole-image mutual information and overlap of a resampling without margin.
    fn mi(&self, warped: &[u8]) -> (f64, f64) {
        let mut joint = [0u32; BINS * BINS];
        let mut n = 0usize;
        for (&f, &m) in self.fixed.iter().zip(warped) {
            if m != OUTSIDE {
                joint[f as usize * BINS + m as usize] += 1;
                n += 1;
            }
        }
        (
            mutual_information(&joint, BINS),
            n as f64 / self.fixed.len().max(1) as f64,
        )
    }
}

/// Mutual information (nats) of a `bins × bins` joint histogram.
fn mutual_information(joint: &[u32], bins: usize) -> f64 {
    let total: u64 = joint.iter().map(|&c| c as u64).sum();
    if total == 0 {
        return 0.0;
    }
    let n = total as f64;
    let mut pf = vec![0.0f64; bins];
    let mut pm = vec![0.0f64; bins];
    for a in 0..bins {
        for b in 0..bins {
            let c = joint[a * bins + b] as f64;
            pf[a] += c;
            pm[b] += c;
        }
    }
    let mut mi = 0.0;
    for a in 0..bins {
        for b in 0..bins {
            let c = joint[a * bins + b] as f64;
            if c > 0.0 {
                mi += c / n * (c * n / (pf[a] * pm[b])).ln();
            }
        }
    }
    mi.max(0.0)
}

fn entropy(counts: &[u32]) -> f64 {
    let n: f64 = counts.iter().map(|&c| c as f64).sum();
    if n == 0.0 {
        return 0.0;
    }
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.ln()
        })
        .sum()
}

/// One tile's local search: the best shift (reduced pixels, sub-pixel), whether it lies at the
/// edge of the search, or `None` when the tile is not informative.
fn tile_search(
    work: &Work,
    warped: &[u8],
    margin: usize,
    (x0, y0, tw, th): (usize, usize, usize, usize),
) -> Option<([f64; 2], bool)> {
    let to_tile = BINS / TILE_BINS;
    let mut fixed_counts = [0u32; TILE_BINS];
    for y in y0..y0 + th {
        for x in x0..x0 + tw {
            fixed_counts[work.fixed[y * work.width + x] as usize / to_tile] += 1;
        }
    }
    if entropy(&fixed_counts) < MIN_TILE_ENTROPY {
        return None;
    }
    let r = margin as isize;
    let side = (2 * r + 1) as usize;
    let gw = work.width + 2 * margin;
    let need = (MIN_VALID * (tw * th) as f64).ceil() as usize;
    let mut surface = vec![f64::NAN; side * side];
    let mut joint = [0u32; TILE_BINS * TILE_BINS];
    for dy in -r..=r {
        for dx in -r..=r {
            joint.fill(0);
            let mut n = 0usize;
            for y in y0..y0 + th {
                let row = ((y as isize + r + dy) as usize) * gw;
                for x in x0..x0 + tw {
                    let m = warped[row + (x as isize + r + dx) as usize];
                    if m != OUTSIDE {
                        let f = work.fixed[y * work.width + x] as usize / to_tile;
                        joint[f * TILE_BINS + m as usize / to_tile] += 1;
                        n += 1;
                    }
                }
            }
            if n >= need {
                surface[((dy + r) as usize) * side + (dx + r) as usize] =
                    mutual_information(&joint, TILE_BINS);
            }
        }
    }
    // The centre must be measurable: otherwise the tile barely overlaps the moving image.
    if surface[r as usize * side + r as usize].is_nan() {
        return None;
    }
    let (best, _) = surface
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_nan())
        .max_by(|a, b| a.1.total_cmp(b.1))?;
    let (bx, by) = ((best % side) as isize, (best / side) as isize);
    let at = |x: isize, y: isize| -> Option<f64> {
        (x >= 0 && y >= 0 && x < side as isize && y < side as isize)
            .then(|| surface[y as usize * side + x as usize])
            .filter(|v| !v.is_nan())
    };
    let v0 = surface[best];
    // A parabola through the best value and its neighbours along each axis.
    let refine = |lo: Option<f64>, hi: Option<f64>| match (lo, hi) {
        (Some(a), Some(b)) => {
            let d = a - 2.0 * v0 + b;
            if d < 0.0 {
                (0.5 * (a - b) / d).clamp(-0.5, 0.5)
            } else {
                0.0
            }
        }
        _ => 0.0,
    };
    let sx = refine(at(bx - 1, by), at(bx + 1, by));
    let sy = refine(at(bx, by - 1), at(bx, by + 1));
    let shift = [(bx - r) as f64 + sx, (by - r) as f64 + sy];
    let edge = bx == 0 || by == 0 || bx == 2 * r || by == 2 * r;
    Some((shift, edge))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// How far a refinement of `kind` by normalised gradient fields started at `t` moves the fixed
/// image's points, as a fraction of the width, and how well the edges agree where it ends. The
/// refinement measures edges, not intensities, so on anatomical pairs it does not share the
/// biases of MI's optimum; on a right result it stays within a pixel or two.
fn edge_shift(fixed: &Image, moving: &Image, t: &Transform2, kind: TransformKind) -> (f64, f64) {
    let config = MattesMiConfig {
        transform: kind,
        metric: Metric::Ngf,
        shrink_factors: EDGE_FACTORS.to_vec(),
        max_samples: EDGE_SAMPLES,
        ..MattesMiConfig::default()
    };
    let refined = t.lift(kind).and_then(|start| {
        let registrar = MattesMi::new(config).ok()?;
        registrar
            .register(fixed, moving, &start)
            .ok()
            .filter(|o| o.stop != comir_register::StopReason::TooFewSamples)
    });
    match refined {
        Some(o) => {
            let (w, h) = (fixed.width() as f64, fixed.height() as f64);
            let d = dense_error(&o.transform, t, w, h) / w;
            let shift = if d.is_finite() {
                d.min(SEARCH_FRAC)
            } else {
                SEARCH_FRAC
            };
            (shift, (-o.metric_value).clamp(0.0, 1.0))
        }
        None => (SEARCH_FRAC, 0.0),
    }
}

/// Gathers the [`Evidence`] on a result (see the crate documentation).
pub fn evidence(fixed: &Image, moving: &Image, t: &Transform2) -> Evidence {
    // Gray once, for the tiles and the edge refinements alike.
    let (fixed_gray, moving_gray) = (gray(fixed), gray(moving));
    // The tiles and the edge refinements are independent: they run side by side, and so do
    // the tiles and the two refinements of a rigid or similarity result. Each gives the numbers
    // it gives alone.
    let (tiles, (own, affine)) = rayon::join(
        || tile_evidence(&fixed_gray, &moving_gray, t),
        || match t.kind() {
            TransformKind::Affine => {
                let own = edge_shift(&fixed_gray, &moving_gray, t, TransformKind::Affine);
                (own, own)
            }
            kind => rayon::join(
                || edge_shift(&fixed_gray, &moving_gray, t, kind),
                || edge_shift(&fixed_gray, &moving_gray, t, TransformKind::Affine),
            ),
        },
    );
    let (edge_shift_affine, edge_agreement) = affine;
    let edge_shift = own.0;
    let (log_scale, shear) = match t {
        Transform2::Rigid(_) => (0.0, 0.0),
        _ => {
            let parts = t.to_affine().decompose();
            let ls = parts
                .scale
                .iter()
                .map(|s| {
                    if *s > 0.0 {
                        s.ln().abs()
                    } else {
                        f64::INFINITY
                    }
                })
                .fold(0.0, f64::max);
            (ls, parts.shear.abs())
        }
    };
    Evidence {
        overlap: tiles.overlap,
        mi: tiles.mi,
        tile_shift: tiles.shift,
        edge_shift,
        edge_shift_affine,
        edge_agreement,
        tile_lost: tiles.lost,
        tiles: tiles.informative as f64 / (TILE_GRID * TILE_GRID) as f64,
        log_scale,
        shear,
    }
}

/// What the tiles say: [`Evidence`]'s whole-image `mi` and `overlap`, the median shift and the
/// fraction of informative tiles whose best shift lies at the search's edge.
struct TileEvidence {
    mi: f64,
    overlap: f64,
    shift: f64,
    lost: f64,
    informative: usize,
}

/// The whole-image MI and the tiles' local searches (gray images).
fn tile_evidence(fixed_gray: &Image, moving_gray: &Image, t: &Transform2) -> TileEvidence {
    use rayon::prelude::*;
    let work = Work::new(fixed_gray, moving_gray);
    let margin = ((SEARCH_FRAC * work.width as f64).round() as usize).max(2);

    // Local searches on a resampling with a margin for the shifts.
    let warped = work.resample(margin, |p| t.apply(p));
    let gw = work.width + 2 * margin;
    let inner: Vec<u8> = (0..work.height)
        .flat_map(|y| {
            let row = (y + margin) * gw + margin;
            warped[row..row + work.width].iter().copied()
        })
        .collect();
    let (mi, overlap) = work.mi(&inner);

    let tw = ((TILE_FRAC * work.width as f64).round() as usize).clamp(1, work.width);
    let th = ((TILE_FRAC * work.height as f64).round() as usize).clamp(1, work.height);
    let c = |g: usize| (g as f64 + 0.5) / TILE_GRID as f64 * (1.0 - TILE_FRAC) + 0.5 * TILE_FRAC;
    // The tiles in parallel, their results in grid order.
    let found: Vec<Option<([f64; 2], bool)>> = (0..TILE_GRID * TILE_GRID)
        .into_par_iter()
        .map(|k| {
            let (gx, gy) = (k % TILE_GRID, k / TILE_GRID);
            let x0 = ((c(gx) * work.width as f64 - 0.5 * tw as f64)
                .round()
                .max(0.0) as usize)
                .min(work.width - tw);
            let y0 = ((c(gy) * work.height as f64 - 0.5 * th as f64)
                .round()
                .max(0.0) as usize)
                .min(work.height - th);
            tile_search(&work, &warped, margin, (x0, y0, tw, th))
        })
        .collect();
    let mut shifts = Vec::new();
    let mut lost = 0usize;
    for (s, edge) in found.into_iter().flatten() {
        shifts.push(s[0].hypot(s[1]) * work.factor / work.full_width);
        lost += usize::from(edge);
    }
    let informative = shifts.len();
    let (shift, lost) = if informative == 0 {
        (margin as f64 * work.factor / work.full_width, 1.0)
    } else {
        (median(shifts), lost as f64 / informative as f64)
    };
    TileEvidence {
        mi,
        overlap,
        shift,
        lost,
        informative,
    }
}

/// The area under the ROC curve of `scores` for telling `positive` cases from the others: the
/// probability that a random positive scores higher than a random negative, ties counting half.
/// `None` unless there is at least one case of each kind (or when the lengths differ).
pub fn auroc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    if scores.len() != positive.len() {
        return None;
    }
    let pos: Vec<f64> = scores
        .iter()
        .zip(positive)
        .filter(|(_, &p)| p)
        .map(|(s, _)| *s)
        .collect();
    let neg: Vec<f64> = scores
        .iter()
        .zip(positive)
        .filter(|(_, &p)| !p)
        .map(|(s, _)| *s)
        .collect();
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let mut wins = 0.0;
    for p in &pos {
        for n in &neg {
            wins += match p.total_cmp(n) {
                std::cmp::Ordering::Greater => 1.0,
                std::cmp::Ordering::Equal => 0.5,
                std::cmp::Ordering::Less => 0.0,
            };
        }
    }
    Some(wins / (pos.len() * neg.len()) as f64)
}

/// How flags met the truth over a set of cases.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlagCounts {
    /// Successful cases.
    pub successes: usize,
    /// Failed cases.
    pub failures: usize,
    /// Failures flagged doubtful.
    pub flagged_failures: usize,
    /// Successes flagged doubtful (false alarms).
    pub false_alarms: usize,
}

impl FlagCounts {
    /// Counts `(success, doubtful)` cases.
    pub fn count(cases: impl IntoIterator<Item = (bool, bool)>) -> FlagCounts {
        let mut c = FlagCounts::default();
        for (success, doubtful) in cases {
            if success {
                c.successes += 1;
                c.false_alarms += usize::from(doubtful);
            } else {
                c.failures += 1;
                c.flagged_failures += usize::from(doubtful);
            }
        }
        c
    }
}

#[cfg(test)]
mod tests;
