//! Registering one pair of image files, on the raw images or through a trained model: the entry
//! point behind `comir register --fixed … --moving …` (and, row by row, behind a manifest; see
//! [`crate::batch`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use comir_image::ops::{warp, Border};
use comir_image::Image;
use comir_register::Registrar;
use comir_transform::{write_itk_composite, write_json, Composite2, Transform2, TransformRecord};

use crate::methods::{build, MethodName, MethodsConfig};
use crate::model::{ModelOptions, RegistrationModel};
use crate::points::read_transform;
use crate::stages::TransformStages;

/// How pairs are registered.
#[derive(Clone, Debug, PartialEq)]
pub struct RegisterOptions {
    /// Registration method.
    pub method: MethodName,
    /// Seed of every random choice of the method.
    pub seed: u64,
    /// Start from a global FFT search instead of the identity (for large displacements).
    pub init_global: bool,
    /// Start from this transform (JSON of `comir register` or ITK `.tfm`) instead of the
    /// identity.
    pub init_file: Option<PathBuf>,
    /// The transform models, run in order (`rigid`, `rigid,affine`, `affine,bspline`, …).
    pub stages: TransformStages,
    /// Control-point spacing of a bspline stage (overrides the config's).
    pub grid_spacing: Option<f64>,
    /// Method settings (TOML with sections `[aamd]`, `[mi]`, `[features]`, `[global]`).
    pub config: Option<PathBuf>,
    /// Register the learned representations of the two images with this model.
    pub model: Option<ModelOptions>,
    /// Judge each result without the truth (the record's `confidence` and `flag`).
    pub confidence: bool,
}

/// The method (and model) that registers every pair of a run.
pub struct PairRegistrar {
    registrar: Box<dyn Registrar>,
    init: Option<Transform2>,
    model: Option<RegistrationModel>,
    label: String,
    confidence: bool,
}

/// One registration: the transform record, the transform, the fixed image as registered (for
/// the warped output's size) and the moving image as loaded.
#[derive(Clone, Debug)]
pub struct Registered {
    /// What is written as JSON.
    pub record: TransformRecord,
    /// The transform found (fixed → moving coordinates), with its deformation if any.
    pub transform: Composite2,
    /// The fixed image as registered (gray, or its representation).
    pub fixed: Image,
    /// The moving image as loaded.
    pub moving_full: Image,
}

impl PairRegistrar {
    /// Builds the method (and loads the model).
    ///
    /// # Errors
    /// An invalid config file, or a model that cannot be loaded.
    pub fn new(options: &RegisterOptions) -> Result<PairRegistrar> {
        PairRegistrar::build(options, || {
            options
                .model
                .as_ref()
                .map(RegistrationModel::load)
                .transpose()
        })
    }

    /// As [`PairRegistrar::new`], registering through `model` (already loaded) instead of
    /// loading the options' model; `options.model` still says how it represents.
    ///
    /// # Errors
    /// An invalid config file.
    pub fn with_model(
        options: &RegisterOptions,
        model: RegistrationModel,
    ) -> Result<PairRegistrar> {
        PairRegistrar::build(options, || Ok(Some(model)))
    }

    fn build(
        options: &RegisterOptions,
        load_model: impl FnOnce() -> Result<Option<RegistrationModel>>,
    ) -> Result<PairRegistrar> {
        let mut cfg = MethodsConfig::load(options.config.as_deref())?
            .with_seed(options.seed)
            .with_grid_spacing(options.grid_spacing)?;
        if options.model.is_some() {
            // Learned representations get their own α-AMD pyramid.
            cfg = cfg.for_representations();
        }
        if options.init_global && options.init_file.is_some() {
            anyhow::bail!("give a global search or a start transform, not both");
        }
        let registrar = build(options.method, &cfg, options.init_global, &options.stages)?;
        let init = options
            .init_file
            .as_deref()
            .map(|path| {
                let t = read_transform(path)?;
                if t.deformation.is_some() {
                    anyhow::bail!(
                        "{}: a B-spline transform cannot start a registration; give its linear \
                         part (a rigid, similarity or affine transform)",
                        path.display()
                    );
                }
                Ok(t.linear)
            })
            .transpose()?;
        let model = load_model()?;
        let label = match &model {
            Some(_) => format!("comir+{}", options.method.as_str()),
            None => options.method.as_str().to_string(),
        };
        Ok(PairRegistrar {
            registrar,
            init,
            model,
            label,
            confidence: options.confidence,
        })
    }

    /// Starts every registration from `init` instead of the options' start.
    pub fn set_init(&mut self, init: Transform2) {
        self.init = Some(init);
    }

    /// The method's name in records (`comir+aamd` through a model).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Registers the image in `moving_path` onto the one in `fixed_path`; when the options ask
    /// for it, the record also carries the result's confidence and flag (their few
    /// milliseconds are not part of its `seconds`).
    ///
    /// # Errors
    /// Unreadable images, or the method's failure (naming both files).
    pub fn register(&self, fixed_path: &Path, moving_path: &Path) -> Result<Registered> {
        // Both images decode side by side.
        let (fixed_full, moving_full) = rayon::join(
            || comir_image::load(fixed_path),
            || comir_image::load(moving_path),
        );
        let (fixed_full, moving_full) = (fixed_full?, moving_full?);
        self.register_loaded(&fixed_full, moving_full, || {
            format!(
                "registering {} to {}",
                moving_path.display(),
                fixed_path.display()
            )
        })
    }

    /// Registers `moving` onto `fixed`, images already in memory (gray or RGB, values as
    /// [`comir_image::load`] gives them): what [`PairRegistrar::register`] does after loading.
    ///
    /// # Errors
    /// An image the model cannot take, or the method's failure.
    pub fn register_images(&self, fixed: &Image, moving: Image) -> Result<Registered> {
        self.register_loaded(fixed, moving, || {
            "registering the moving image to the fixed one".to_string()
        })
    }

    fn register_loaded(
        &self,
        fixed_full: &Image,
        moving_full: Image,
        what: impl Fn() -> String,
    ) -> Result<Registered> {
        let start = Instant::now();
        let (fixed, moving) = match &self.model {
            Some(m) => m.prepare(fixed_full, &moving_full)?,
            None => (fixed_full.to_gray(), moving_full.to_gray()),
        };
        let init = self
            .init
            .unwrap_or_else(|| comir_register::centered_identity(&fixed, &moving));
        let outcome = self
            .registrar
            .register(&fixed, &moving, &init)
            .with_context(what)?;
        let seconds = start.elapsed().as_secs_f64();
        let transform = outcome.composite();
        let mut record =
            TransformRecord::from_composite(&transform, &self.label, outcome.metric_value, seconds);
        if self.confidence {
            // Judged on the images as given, also through a model: the confidence was fitted on
            // raw images, and ranks learned results better there (docs/method.md §10).
            judge(&mut record, fixed_full, &moving_full, &outcome);
        } else if transform.folds() {
            record.flag = Some(comir_confidence::Flag::Doubtful.as_str().into());
        }
        Ok(Registered {
            record,
            transform,
            fixed,
            moving_full,
        })
    }
}

/// Sets `record`'s confidence and flag for `outcome`, judged on `fixed` and `moving` (on the
/// linear part of a deformable result); a folding deformation is doubtful whatever its confidence.
pub(crate) fn judge(
    record: &mut TransformRecord,
    fixed: &Image,
    moving: &Image,
    outcome: &comir_register::Outcome,
) {
    let a = comir_confidence::assess(fixed, moving, &outcome.transform);
    let flag = if outcome.composite().folds() {
        comir_confidence::Flag::Doubtful
    } else {
        a.flag
    };
    record.confidence = Some(a.confidence);
    record.flag = Some(flag.as_str().to_string());
}

/// Where one registration's results go.
#[derive(Clone, Debug, PartialEq)]
pub struct PairOutputs {
    /// The transform as JSON.
    pub out: PathBuf,
    /// Also the transform as an ITK .tfm file.
    pub tfm: Option<PathBuf>,
    /// Also the moving image resampled into the fixed frame (.png, or .tif for float).
    pub warped: Option<PathBuf>,
}

/// Registers `moving` onto `fixed` and writes the outputs; returns the registration.
///
/// # Errors
/// As [`PairRegistrar::new`] and [`PairRegistrar::register`], or an unwritable output.
pub fn register_pair(
    options: &RegisterOptions,
    fixed: &Path,
    moving: &Path,
    outputs: &PairOutputs,
) -> Result<Registered> {
    let registrar = PairRegistrar::new(options)?;
    let registered = registrar.register(fixed, moving)?;
    let t = &registered.transform;
    write_json(&outputs.out, &registered.record)?;
    if let Some(path) = &outputs.tfm {
        write_itk_composite(path, t)?;
    }
    if let Some(path) = &outputs.warped {
        let out = warp(
            &registered.moving_full,
            registered.fixed.width(),
            registered.fixed.height(),
            Border::Zero,
            |p| t.apply(p),
        );
        let is_tif = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("tif") || e.eq_ignore_ascii_case("tiff"));
        if is_tif {
            comir_image::save_tiff_f32(path, &out)?;
        } else {
            let (lo, hi) = out.min_max();
            let out = if lo < 0.0 || hi > 1.0 {
                out.normalized()
            } else {
                out
            };
            comir_image::save_png(path, &out)?;
        }
    }
    Ok(registered)
}
