//! The method registry: a registration method built from its name and the optional TOML config
//! file of method settings.

use std::path::Path;

use anyhow::{Context, Result};
use comir_aamd::{AlphaAmd, AlphaAmdConfig};
use comir_features::{FeatureConfig, FeatureRegistrar};
use comir_globalign::{GlobalSearch, GlobalSearchConfig};
use comir_mi::{BSplineConfig, BSplineMi, MattesMi, MattesMiConfig, Metric};
use comir_register::{Chained, MultiStart, Registrar};
use comir_transform::TransformKind;

use crate::select::ModelSelection;
use crate::stages::TransformStages;
use serde::{Deserialize, Serialize};

/// The registration methods, by their names in commands, grids and results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodName {
    /// α-AMD (Öfverstedt et al. 2019), reference settings, multi-start.
    Aamd,
    /// Mattes mutual information on the raw images, pyramid, multi-start.
    Mi,
    /// SIFT-like keypoints, descriptors and a RANSAC rigid fit.
    Features,
    /// Exhaustive rotation search with all translations at once by FFT (CMIF).
    Global,
    /// Normalised cross-correlation with MI's pyramid and optimiser, multi-start: for images of
    /// one modality (learned representations).
    Ncc,
    /// Mattes MI as `Mi`, then its result refined by normalised gradient fields (edge
    /// directions; Haber and Modersitzki 2006) in the last linear stage: for modalities whose
    /// intensities pair wrongly under MI but whose edges coincide (CT and MR).
    Ngf,
}

impl MethodName {
    /// Every method, in the order commands list them.
    pub const ALL: [MethodName; 6] = [
        MethodName::Aamd,
        MethodName::Mi,
        MethodName::Features,
        MethodName::Global,
        MethodName::Ncc,
        MethodName::Ngf,
    ];

    /// The name used in files and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            MethodName::Aamd => "aamd",
            MethodName::Mi => "mi",
            MethodName::Features => "features",
            MethodName::Global => "global",
            MethodName::Ncc => "ncc",
            MethodName::Ngf => "ngf",
        }
    }
}

impl std::str::FromStr for MethodName {
    type Err = String;

    /// A method by its name, ignoring ASCII case.
    fn from_str(s: &str) -> Result<MethodName, String> {
        MethodName::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = MethodName::ALL.iter().map(|m| m.as_str()).collect();
                format!("unknown method '{s}' (expected {})", names.join(", "))
            })
    }
}

/// Pyramid of the `ngf` method's refinement: it starts from MI's result, so it needs no coarse
/// levels, and on coarse levels NGF pulls towards other edges. On AANLIB CT/MR (41 pairs not
/// used to choose NGF's ε, affine displacements) the full pyramid refined 48.2 % of the cases
/// to success against MI's 57.3 %; the two finest levels 67.7 %.
const NGF_REFINEMENT_FACTORS: [usize; 2] = [2, 1];

/// Fewest fixed samples per level of the `ngf` refinement: NGF is informative at edges only,
/// a small part of the image (on the same cases, 16384 samples: 72.6 %; 4096: 67.7 %).
const NGF_REFINEMENT_SAMPLES: usize = 16_384;

/// Settings of every method, as read from `--config FILE.toml` (sections `[aamd]`, `[mi]`,
/// `[bspline]`, `[features]`, `[global]`; every field optional, defaults are the reference
/// settings).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MethodsConfig {
    /// α-AMD settings.
    pub aamd: AlphaAmdConfig,
    /// Mattes MI settings.
    pub mi: MattesMiConfig,
    /// Settings of the B-spline stage (Mattes MI over a deformation).
    pub bspline: BSplineConfig,
    /// Feature-matching settings.
    pub features: FeatureConfig,
    /// Global-search settings.
    pub global: GlobalSearchConfig,
}

/// α-AMD's pyramid σ (full-resolution pixels, coarse to fine) for registering learned
/// representations, used when the config leaves `pyramid_sigmas` unset on the default
/// three-level pyramid. The reference's `[12, 5, 1]` was made for raw images; on
/// representations its coarsest level blurs the structure away and leaves outlines that
/// attract wrong rotations. Chosen on the validation pairs of four histology models and an
/// MNI152 model, never on test pairs (docs/results.md, "The pyramid of α-AMD on representations").
pub const REPRESENTATION_AAMD_SIGMAS: [f64; 3] = [2.0, 1.0, 1.0];

impl MethodsConfig {
    /// The settings for registering learned representations: α-AMD's pyramid σ becomes
    /// [`REPRESENTATION_AAMD_SIGMAS`] unless the config sets σ or another pyramid.
    pub fn for_representations(mut self) -> MethodsConfig {
        let default_pyramid = AlphaAmdConfig::default().pyramid_factors;
        if self.aamd.pyramid_sigmas.is_none() && self.aamd.pyramid_factors == default_pyramid {
            self.aamd.pyramid_sigmas = Some(REPRESENTATION_AAMD_SIGMAS.to_vec());
        }
        self
    }

    /// Reads a TOML file, or the defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<MethodsConfig> {
        let Some(path) = path else {
            return Ok(MethodsConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read config", path.display()))?;
        let cfg: MethodsConfig = toml::from_str(&text).map_err(|e| {
            // toml's own rendering spans several lines; keep its message and say where.
            let line = e
                .span()
                .and_then(|s| text.get(..s.start))
                .map(|before| format!(" (line {})", before.matches('\n').count() + 1))
                .unwrap_or_default();
            anyhow::anyhow!(
                "{}: invalid config: {}{line}",
                path.display(),
                e.message().trim().replace('\n', "; ")
            )
        })?;
        // Every section is checked, also those of methods this run does not use.
        let invalid =
            |e: comir_register::Error| anyhow::anyhow!("{}: invalid config: {e}", path.display());
        cfg.aamd.validate().map_err(invalid)?;
        cfg.mi.validate().map_err(invalid)?;
        cfg.bspline.validate().map_err(invalid)?;
        cfg.features.validate().map_err(invalid)?;
        cfg.global.validate().map_err(invalid)?;
        Ok(cfg)
    }

    /// Sets the B-spline stage's control-point spacing when `spacing` is given.
    ///
    /// # Errors
    /// A spacing below 4 px or not finite (`--grid-spacing`).
    pub fn with_grid_spacing(mut self, spacing: Option<f64>) -> Result<MethodsConfig> {
        if let Some(s) = spacing {
            self.bspline.grid_spacing = s;
            self.bspline
                .validate()
                .map_err(|_| anyhow::anyhow!("--grid-spacing must be at least 4 px, got {s}"))?;
        }
        Ok(self)
    }

    /// Sets the seed of every method that uses randomness.
    pub fn with_seed(mut self, seed: u64) -> MethodsConfig {
        self.aamd.seed = seed;
        self.mi.seed = seed;
        self.features.seed = seed;
        self.global.seed = seed;
        self
    }
}

/// Builds the registrar for `name` and the transform `stages`. With `init_global`, a global
/// search runs first and the method refines its result.
///
/// The method runs the first stage; every later stage (similarity, affine) is Mattes MI with that
/// transform, started where the previous stage ended, on the same images (or representations),
/// and a final `bspline` stage is Mattes MI over a B-spline deformation ([`BSplineMi`]) after the
/// last linear result. α-AMD, feature matching and the global search estimate rigid transforms
/// only, so with them the first stage must be `rigid`.
///
/// `auto` with MI builds a rigid and a `similarity,affine` registration and keeps one result per
/// pair ([`ModelSelection`]); with the other methods it is `rigid`.
///
/// # Errors
/// An invalid setting, or a first stage the method cannot estimate.
pub fn build(
    name: MethodName,
    cfg: &MethodsConfig,
    init_global: bool,
    stages: &TransformStages,
) -> Result<Box<dyn Registrar>> {
    if stages.is_auto() {
        if name != MethodName::Mi {
            // Only MI's choice between the two was calibrated; the others stay rigid.
            return build(name, cfg, init_global, &TransformStages::rigid());
        }
        let flexible = stages.flexible();
        let selection: Box<dyn Registrar> = Box::new(ModelSelection {
            rigid: build(name, cfg, false, &TransformStages::rigid())?,
            flexible: build(name, cfg, false, &flexible)?,
        });
        if init_global {
            return Ok(Box::new(Chained {
                first: GlobalSearch::new(cfg.global.clone())?,
                then: selection,
            }));
        }
        return Ok(selection);
    }
    let kinds = stages.kinds();
    let bspline_stage = || BSplineMi::new(cfg.mi.clone(), cfg.bspline.clone());
    // MI and NCC estimate any linear model; the others rigid transforms only.
    let flexible = matches!(name, MethodName::Mi | MethodName::Ncc | MethodName::Ngf);
    let Some(&first) = kinds.first() else {
        // A deformation alone, from the identity (or the global search's result).
        if name != MethodName::Mi {
            anyhow::bail!(
                "{} estimates rigid transforms; start the chain with rigid (e.g. --transform \
                 rigid,affine,bspline) or use --method mi",
                name.as_str()
            );
        }
        let mut registrar: Box<dyn Registrar> = Box::new(bspline_stage()?);
        if init_global {
            registrar = Box::new(Chained {
                first: GlobalSearch::new(cfg.global.clone())?,
                then: registrar,
            });
        }
        return Ok(registrar);
    };
    if !flexible && first != TransformKind::Rigid {
        anyhow::bail!(
            "{} estimates rigid transforms; start the chain with rigid (e.g. --transform \
             rigid,{first}) or use --method mi",
            name.as_str()
        );
    }
    // `--method ncc` measures NCC in every linear stage; otherwise the config's `mi.metric`.
    let metric = if name == MethodName::Ncc {
        Metric::Ncc
    } else {
        cfg.mi.metric
    };
    let mi_stage = |kind: TransformKind| {
        let mut mi = cfg.mi.clone();
        mi.transform = kind;
        mi.metric = metric;
        MattesMi::new(mi)
    };
    let local: Box<dyn Registrar> = match name {
        MethodName::Aamd => Box::new(AlphaAmd::new(cfg.aamd.clone())?),
        MethodName::Mi | MethodName::Ncc | MethodName::Ngf => {
            Box::new(MultiStart::reference(mi_stage(first)?))
        }
        MethodName::Features => Box::new(FeatureRegistrar::new(cfg.features.clone())?),
        MethodName::Global => Box::new(GlobalSearch::new(cfg.global.clone())?),
    };
    let mut registrar = local;
    if init_global && name != MethodName::Global {
        let global = GlobalSearch::new(cfg.global.clone())?;
        registrar = Box::new(Chained {
            first: global,
            then: registrar,
        });
    }
    for &kind in kinds.iter().skip(1) {
        registrar = Box::new(Chained {
            first: registrar,
            then: mi_stage(kind)?,
        });
    }
    if name == MethodName::Ngf {
        let last = kinds.last().copied().unwrap_or(first);
        let mut ngf = cfg.mi.clone();
        ngf.transform = last;
        ngf.metric = Metric::Ngf;
        ngf.shrink_factors = NGF_REFINEMENT_FACTORS.to_vec();
        ngf.max_samples = ngf.max_samples.max(NGF_REFINEMENT_SAMPLES);
        registrar = Box::new(Chained {
            first: registrar,
            then: MattesMi::new(ngf)?,
        });
    }
    if stages.bspline() {
        registrar = Box::new(Chained {
            first: registrar,
            then: bspline_stage()?,
        });
    }
    Ok(registrar)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ngf` runs MI's chain and then refines the last stage by NGF: the result is NGF's
    /// (name, cost in [−1, 0]), of the chain's last kind, and recovers an affine displacement
    /// between two modalities of a phantom; a rigid chain gives a rigid NGF refinement.
    #[test]
    fn ngf_refines_the_mi_chain_with_normalised_gradient_fields() {
        use comir_image::ops::Border;
        use comir_register::centered_identity;
        use comir_transform::{dense_error, Affine2, Transform2};
        let (fixed, b) = comir_testkit::phantom_pair(128, 128, 9);
        let truth: Transform2 = Affine2 {
            matrix: [[1.05, 0.02], [-0.03, 0.96]],
            translation: [2.5, -3.0],
            center: fixed.center(),
        }
        .into();
        let moving = comir_testkit::moved_by_transform(&b, &truth, Border::Zero);
        let cfg = MethodsConfig::default();
        let stages: TransformStages = "similarity,affine".parse().expect("stages");
        let reg = build(MethodName::Ngf, &cfg, false, &stages).expect("build");
        assert_eq!((reg.name(), reg.kind()), ("ngf", TransformKind::Affine));
        let out = reg
            .register(&fixed, &moving, &centered_identity(&fixed, &moving))
            .expect("register");
        let err = dense_error(&out.transform, &truth, 128.0, 128.0);
        assert!(err < 1.0, "dense error {err:.3} px");
        assert!(
            (-1.0..=0.0).contains(&out.metric_value),
            "NGF cost {}",
            out.metric_value
        );
        let rigid = build(MethodName::Ngf, &cfg, false, &TransformStages::rigid()).expect("build");
        assert_eq!((rigid.name(), rigid.kind()), ("ngf", TransformKind::Rigid));
    }

    #[test]
    fn names_parse_back_ignoring_case() {
        for m in MethodName::ALL {
            assert_eq!(m.as_str().parse::<MethodName>(), Ok(m));
            assert_eq!(m.as_str().to_uppercase().parse::<MethodName>(), Ok(m));
        }
        let err = "sift".parse::<MethodName>().expect_err("unknown");
        assert!(
            err.starts_with("unknown method 'sift' (expected aamd, "),
            "{err}"
        );
    }

    #[test]
    fn representations_get_their_own_pyramid_sigma_unless_the_config_sets_one() {
        let cfg = MethodsConfig::default();
        assert_eq!(cfg.aamd.pyramid_sigmas, None);
        let rep = cfg.clone().for_representations();
        assert_eq!(
            rep.aamd.pyramid_sigmas,
            Some(REPRESENTATION_AAMD_SIGMAS.to_vec())
        );
        rep.aamd.validate().expect("valid settings");
        // Nothing else changes.
        assert_eq!(rep.aamd.pyramid_factors, cfg.aamd.pyramid_factors);
        assert_eq!(rep.mi, cfg.mi);
        // A σ or a pyramid from the config wins.
        let mut own = MethodsConfig::default();
        own.aamd.pyramid_sigmas = Some(vec![12.0, 5.0, 1.0]);
        assert_eq!(
            own.clone().for_representations().aamd.pyramid_sigmas,
            own.aamd.pyramid_sigmas
        );
        let mut two = MethodsConfig::default();
        two.aamd.pyramid_factors = vec![2, 1];
        assert_eq!(two.for_representations().aamd.pyramid_sigmas, None);
    }
}
