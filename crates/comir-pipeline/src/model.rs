//! Registering through a trained model: both images are mapped to their representations first.
//! Also what a model's card says about its training (which pairs it saw, its patch size).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use comir_image::Image;
use comir_model::ModelCard;
use comir_represent::{for_registration, Modality, Representer};

/// The names of the pairs a model was trained or validated on (from its card).
pub fn seen_pairs(card: &ModelCard) -> HashSet<String> {
    card.seen_pairs()
}

/// The names of the pairs a model was validated on (from its card).
pub fn validation_pairs(card: &ModelCard) -> HashSet<String> {
    card.validation_pairs()
}

/// Which model registers, and how its representations are made.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelOptions {
    /// Model folder written by `comir train`, or the name of a bundled model
    /// ([`crate::bundled`]).
    pub dir: PathBuf,
    /// Which modality the fixed image is (the moving one is the other).
    pub fixed_modality: Modality,
    /// Compute device: `cpu`, `wgpu` or `cuda` (see [`crate::device`]).
    pub device: String,
    /// Match the moving representation's histogram to the fixed one's (see
    /// [`comir_represent::for_registration`]); off, the representations are registered exactly
    /// as the reference does.
    pub match_histograms: bool,
    /// Represent every image as the average over its four 90° turns
    /// ([`Representer::represent_rotation_averaged`]).
    pub rotation_average: bool,
}

impl ModelOptions {
    /// The model in `dir` on the CPU, fixed modality A, histograms matched, no rotation
    /// average.
    pub fn new(dir: PathBuf) -> ModelOptions {
        ModelOptions {
            dir,
            fixed_modality: Modality::A,
            device: "cpu".into(),
            match_histograms: true,
            rotation_average: false,
        }
    }
}

/// A loaded model and how it represents a fixed and a moving image for registration.
pub struct RegistrationModel {
    representer: Arc<Representer>,
    fixed_modality: Modality,
    match_histograms: bool,
    rotation_average: bool,
}

impl RegistrationModel {
    /// Loads the model folder onto its device.
    ///
    /// # Errors
    /// An unknown or unbuilt device, or a model folder that cannot be loaded.
    pub fn load(options: &ModelOptions) -> Result<RegistrationModel> {
        let device = crate::device::select(&options.device)?;
        let representer = Representer::load(&crate::bundled::resolve(&options.dir)?, &device)?;
        Ok(RegistrationModel::with_representer(
            Arc::new(representer),
            options,
        ))
    }

    /// A model already loaded (shared, e.g. by a Python `comir.Model`), represented as
    /// `options` say; their `dir` and `device` are not read.
    pub fn with_representer(representer: Arc<Representer>, options: &ModelOptions) -> Self {
        RegistrationModel {
            representer,
            fixed_modality: options.fixed_modality,
            match_histograms: options.match_histograms,
            rotation_average: options.rotation_average,
        }
    }

    /// The names of the pairs the model was trained or validated on (from model.json).
    pub fn seen_pairs(&self) -> HashSet<String> {
        seen_pairs(self.representer.card())
    }

    /// The pairs the model was validated on.
    pub fn validation_pairs(&self) -> HashSet<String> {
        validation_pairs(self.representer.card())
    }

    /// The gray images to register: the representations of `fixed` (as the fixed modality) and
    /// `moving` (as the other one).
    ///
    /// # Errors
    /// An image the network cannot take (naming which of the two).
    pub fn prepare(&self, fixed: &Image, moving: &Image) -> Result<(Image, Image)> {
        let moving_modality = match self.fixed_modality {
            Modality::A => Modality::B,
            Modality::B => Modality::A,
        };
        let represent = |img: &Image, modality: Modality| {
            if self.rotation_average {
                self.representer.represent_rotation_averaged(img, modality)
            } else {
                self.representer.represent(img, modality)
            }
        };
        let f = represent(fixed, self.fixed_modality).context("fixed image")?;
        let m = represent(moving, moving_modality).context("moving image")?;
        Ok(for_registration(&f, &m, self.match_histograms))
    }
}

impl comir_eval::Representations for RegistrationModel {
    fn represent(&self, fixed: &Image, moving: &Image) -> Result<(Image, Image), String> {
        self.prepare(fixed, moving).map_err(|e| format!("{e:#}"))
    }
}
