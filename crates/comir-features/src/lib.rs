//! Feature-based rigid registration: SIFT keypoints and descriptors, descriptor matching, and a
//! rigid RANSAC model.
//!
//! # Method
//! This is the keypoint pipeline the CoMIR paper (Pielawski, Wetzer et al., "CoMIR: Contrastive
//! Multimodal Image Representation for Registration", NeurIPS 2020, arXiv 2006.06325) and the
//! MultiRegEval benchmark (Lu, Öfverstedt et al., "Is image-to-image translation the panacea for
//! multimodal image registration? A comparative study", PLOS ONE 2022) run on learned
//! representations (CoMIRs): once the two modalities are mapped to similar, smooth, image-like
//! representations, a monomodal feature method can align them.
//!
//! 1. **Keypoints** ([`sift`]): a compact implementation of SIFT (Lowe, "Distinctive image
//!    features from scale-invariant keypoints", IJCV 60(2):91–110, 2004), following the structure
//!    and constants of OpenCV's `cv::SIFT` (σ = 1.6, 3 scales per octave, contrast threshold
//!    0.04/3 on `[0, 1]` images, edge ratio 10, 36-bin orientations with 0.8 secondary peaks,
//!    4×4×8 descriptors clipped at 0.2). The strongest 500 keypoints are kept, as MultiRegEval's
//!    `SIFT_create(500)`. No maintained pure-Rust SIFT crate exists, hence this module.
//! 2. **Matching** ([`matching`]): brute-force L2 nearest neighbour, with Lowe's ratio test (0.8)
//!    and a cross-check (MultiRegEval uses `BFMatcher(NORM_L2, crossCheck=True)`, Fiji's SIFT in
//!    the CoMIR scripts a ratio of 0.9). Both are on by default: together they give the fewest
//!    outliers, and 2-point RANSAC tolerates the lost matches easily.
//! 3. **Model** ([`ransac`]): RANSAC over 2-point minimal samples of a rigid transform (rotation +
//!    translation, no scale), 1000 seeded trials (Fiji's count; MultiRegEval uses 100 trials of
//!    3 points with skimage), inlier threshold 2 px (MultiRegEval's `residual_threshold=2`), then a
//!    least-squares refit (2-D Procrustes) on the inliers, repeated until the inlier set is stable.
//!    Fewer than 5 inliers (Fiji's `minNumInliers`) is a failure ([`Error::Failed`]), which the
//!    evaluation counts as a failed registration.
//!
//! # Choices
//! * **Input scaling.** Each image is rescaled to `[0, 1]` by its own minimum and maximum before
//!   detection, so the contrast threshold has OpenCV's meaning for 8-bit CoMIRs (OpenCV divides
//!   by 255) and the same meaning for float or 16-bit inputs.
//! * **No initial upsampling by default** ([`FeatureConfig::upsample`]): OpenCV doubles the image
//!   first; that roughly quadruples the cost and mostly adds small-scale keypoints, which smooth
//!   CoMIRs lack. It can be switched on.
//! * **The initial transform is ignored except for its centre.** Features are global, so the
//!   result does not depend on the starting rotation or translation; the returned
//!   [`Rigid2`] is expressed about `init.center` (the fixed image centre by convention). Wrapping
//!   this method in `MultiStart` therefore gives the same answer from every start.
//! * **Direction.** Matches pair a fixed keypoint with a moving one; RANSAC estimates the map
//!   fixed → moving directly (`moving ≈ R·fixed + t`), the convention of [`Rigid2`].
//! * **Metric value** (lower is better): `−(inlier count) + mean inlier residual / threshold`. The
//!   second term lies in `[0, 1]`, so results are ordered by inlier count first and the residual
//!   only breaks ties.
//! * **Determinism.** Scale-space rows, octave layers, descriptors and distance rows are computed
//!   in parallel with rayon, but every value is produced by the same operations and collected in a
//!   fixed order; RANSAC draws from a [`rand_chacha::ChaCha8Rng`] seeded by
//!   [`FeatureConfig::seed`]. Same inputs and seed give bit-identical output for any thread count.

pub mod matching;
pub mod ransac;
pub mod sift;

use comir_image::Image;
use comir_register::{check_inputs, rigid_start, Error, Outcome, Registrar, StopReason, MIN_SIZE};
use comir_transform::{Rigid2, Transform2};
use serde::{Deserialize, Serialize};

pub use crate::matching::{match_descriptors, Match};
pub use crate::ransac::{procrustes, ransac_rigid, RansacFit, RigidModel};
pub use crate::sift::{detect_and_describe, Keypoint, DESCRIPTOR_LEN};

/// The registrar's name on the command line.
pub const NAME: &str = "features";

/// Settings of the feature-based registration. `Default` gives the reference settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureConfig {
    /// Keypoints kept per image, strongest first (by DoG contrast). Default 500
    /// (MultiRegEval's `SIFT_create(500)`). At least 2.
    pub max_features: usize,
    /// Base scale σ of each octave, in pixels of the octave. Default 1.6 (Lowe, OpenCV). In
    /// `(0.5, 20]`.
    pub sigma: f64,
    /// Scales per octave `s` (the DoG has `s + 2` layers). Default 3. In `1..=10`.
    pub scales_per_octave: usize,
    /// Contrast threshold on `[0, 1]`-rescaled images: a refined extremum is kept when
    /// `|D(x̂)| ≥ contrast_threshold / scales_per_octave`. Default 0.04 (OpenCV). `≥ 0`.
    pub contrast_threshold: f64,
    /// Edge-response limit `r` on the ratio of principal curvatures. Default 10 (Lowe, OpenCV).
    /// `≥ 1`.
    pub edge_threshold: f64,
    /// Doubles the image (bilinear) before building the scale space, as OpenCV does. Default
    /// `false` (about 4× faster; smooth CoMIRs have few small-scale features).
    pub upsample: bool,
    /// Octaves are added while their smaller side has at least this many pixels. Default 16.
    /// At least 12 (the detector skips a 5-pixel border).
    pub min_octave_side: usize,
    /// Lowe's ratio test: a match is kept when the nearest descriptor distance is below `ratio`
    /// times the second nearest. Default 0.8. In `(0, 1]`; 1 disables the test.
    pub ratio: f64,
    /// Keep only mutual nearest neighbours (OpenCV `crossCheck=True`). Default `true`.
    pub cross_check: bool,
    /// RANSAC inlier threshold: largest distance, in pixels of the moving image, between a
    /// matched moving keypoint and the model's image of its fixed keypoint. Default 2
    /// (MultiRegEval's `residual_threshold`). Finite and `> 0`.
    pub inlier_threshold_px: f64,
    /// RANSAC trials (2-point samples). Default 1000 (Fiji's SIFT registration). In
    /// `1..=10_000_000`.
    pub ransac_iterations: usize,
    /// Fewest inliers for a result; fewer is [`Error::Failed`]. Default 5 (Fiji's
    /// `minNumInliers`). At least 2.
    pub min_inliers: usize,
    /// Seed of the RANSAC sampler. Default 0.
    pub seed: u64,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig {
            max_features: 500,
            sigma: 1.6,
            scales_per_octave: 3,
            contrast_threshold: 0.04,
            edge_threshold: 10.0,
            upsample: false,
            min_octave_side: 16,
            ratio: 0.8,
            cross_check: true,
            inlier_threshold_px: 2.0,
            ransac_iterations: 1000,
            min_inliers: 5,
            seed: 0,
        }
    }
}

impl FeatureConfig {
    /// Checks every value's range.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |msg: String| Err(Error::InvalidConfig(msg));
        if self.max_features < 2 {
            return bad(format!(
                "max_features must be at least 2, got {}",
                self.max_features
            ));
        }
        if !(self.sigma > 0.5 && self.sigma <= 20.0) {
            return bad(format!("sigma must be in (0.5, 20], got {}", self.sigma));
        }
        if !(1..=10).contains(&self.scales_per_octave) {
            return bad(format!(
                "scales_per_octave must be in 1..=10, got {}",
                self.scales_per_octave
            ));
        }
        if !(self.contrast_threshold >= 0.0 && self.contrast_threshold.is_finite()) {
            return bad(format!(
                "contrast_threshold must be finite and ≥ 0, got {}",
                self.contrast_threshold
            ));
        }
        if !(self.edge_threshold >= 1.0 && self.edge_threshold.is_finite()) {
            return bad(format!(
                "edge_threshold must be finite and ≥ 1, got {}",
                self.edge_threshold
            ));
        }
        if self.min_octave_side < 12 {
            return bad(format!(
                "min_octave_side must be at least 12, got {}",
                self.min_octave_side
            ));
        }
        if !(self.ratio > 0.0 && self.ratio <= 1.0) {
            return bad(format!("ratio must be in (0, 1], got {}", self.ratio));
        }
        if !(self.inlier_threshold_px > 0.0 && self.inlier_threshold_px.is_finite()) {
            return bad(format!(
                "inlier_threshold_px must be finite and > 0, got {}",
                self.inlier_threshold_px
            ));
        }
        if !(1..=10_000_000).contains(&self.ransac_iterations) {
            return bad(format!(
                "ransac_iterations must be in 1..=10000000, got {}",
                self.ransac_iterations
            ));
        }
        if self.min_inliers < 2 {
            return bad(format!(
                "min_inliers must be at least 2, got {}",
                self.min_inliers
            ));
        }
        Ok(())
    }
}

/// Feature-based rigid registration (SIFT + matching + rigid RANSAC), a single-start
/// [`Registrar`] named `"features"`.
#[derive(Clone, Debug)]
pub struct FeatureRegistrar {
    config: FeatureConfig,
}

impl FeatureRegistrar {
    /// A registrar with validated settings.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when a setting is out of range.
    pub fn new(config: FeatureConfig) -> Result<Self, Error> {
        config.validate()?;
        Ok(FeatureRegistrar { config })
    }

    /// The settings.
    pub fn config(&self) -> &FeatureConfig {
        &self.config
    }

    /// Keypoints of both images, the putative matches and the RANSAC fit (for inspection and
    /// plotting). The fit is `None` when there were fewer than two matches or no usable sample.
    ///
    /// # Errors
    /// Unusable inputs (see [`check_inputs`]).
    pub fn analyse(&self, fixed: &Image, moving: &Image) -> Result<Analysis, Error> {
        check_inputs(fixed, moving, MIN_SIZE)?;
        let cfg = &self.config;
        let (kf, km) = rayon::join(
            || detect_and_describe(fixed, cfg),
            || detect_and_describe(moving, cfg),
        );
        let matches = match_descriptors(&kf, &km, cfg.ratio, cfg.cross_check);
        let src: Vec<[f64; 2]> = matches
            .iter()
            .map(|m| [kf[m.fixed].x, kf[m.fixed].y])
            .collect();
        let dst: Vec<[f64; 2]> = matches
            .iter()
            .map(|m| [km[m.moving].x, km[m.moving].y])
            .collect();
        let fit = ransac_rigid(
            &src,
            &dst,
            cfg.inlier_threshold_px,
            cfg.ransac_iterations,
            cfg.seed,
        );
        Ok(Analysis {
            fixed_keypoints: kf,
            moving_keypoints: km,
            matches,
            fit,
        })
    }
}

/// The intermediate results of one feature registration (see [`FeatureRegistrar::analyse`]).
#[derive(Clone, Debug)]
pub struct Analysis {
    /// Keypoints of the fixed image, strongest first.
    pub fixed_keypoints: Vec<Keypoint>,
    /// Keypoints of the moving image, strongest first.
    pub moving_keypoints: Vec<Keypoint>,
    /// Putative matches after the ratio test / cross-check.
    pub matches: Vec<Match>,
    /// RANSAC fit, fixed → moving about the origin; its inliers index `matches`.
    pub fit: Option<RansacFit>,
}

impl Registrar for FeatureRegistrar {
    fn name(&self) -> &'static str {
        NAME
    }

    fn register(&self, fixed: &Image, moving: &Image, init: &Transform2) -> Result<Outcome, Error> {
        let init = rigid_start(init, NAME)?;
        let cfg = &self.config;
        let a = self.analyse(fixed, moving)?;
        let fail = |reason: String| {
            Err(Error::Failed {
                method: NAME,
                reason,
            })
        };
        let (nf, nm, nmatch) = (
            a.fixed_keypoints.len(),
            a.moving_keypoints.len(),
            a.matches.len(),
        );
        if nf < cfg.min_inliers || nm < cfg.min_inliers {
            return fail(format!(
                "too few keypoints ({nf} in the fixed image, {nm} in the moving image; need {})",
                cfg.min_inliers
            ));
        }
        if nmatch < cfg.min_inliers {
            return fail(format!(
                "only {nmatch} descriptor matches among {nf} fixed and {nm} moving keypoints \
                 (need {})",
                cfg.min_inliers
            ));
        }
        let Some(fit) = a.fit else {
            return fail(format!(
                "RANSAC found no usable 2-point sample among {nmatch} matches"
            ));
        };
        if fit.inliers.len() < cfg.min_inliers {
            return fail(format!(
                "RANSAC found only {} inliers within {} px among {nmatch} matches (need {})",
                fit.inliers.len(),
                cfg.inlier_threshold_px,
                cfg.min_inliers
            ));
        }
        // moving = R·fixed + t  ⇒  about centre c: translation = R·c + t − c.
        let c = init.center;
        let m = fit.model.apply(c);
        let transform = Rigid2::new(fit.model.angle_rad, [m[0] - c[0], m[1] - c[1]], c);
        let metric_value =
            -(fit.inliers.len() as f64) + fit.mean_residual / cfg.inlier_threshold_px;
        Ok(Outcome {
            transform: transform.into(),
            deformation: None,
            metric_value,
            iterations: fit.iterations,
            stop: StopReason::Converged,
        })
    }
}

#[cfg(test)]
mod tests;
