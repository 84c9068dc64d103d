//! Registering through a trained model: both images are mapped to their representations first.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, Result};
use comir_image::Image;
use comir_represent::{for_registration, Modality, Representer};

/// The names of the pairs a model was trained or validated on (from its card).
pub fn seen_pairs(card: &comir_model::ModelCard) -> HashSet<String> {
    split_names(card, &["train", "validation"])
}

/// The names of the pairs a model was validated on (from its card).
pub fn validation_pairs(card: &comir_model::ModelCard) -> HashSet<String> {
    split_names(card, &["validation"])
}

fn split_names(card: &comir_model::ModelCard, parts: &[&str]) -> HashSet<String> {
    let split = &card.training["split"];
    parts
        .iter()
        .filter_map(|k| split[k].as_array())
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// A loaded model and which modality the fixed image is.
pub struct ModelPrep {
    representer: Representer,
    fixed_modality: Modality,
    match_histograms: bool,
    rotation_average: bool,
}

impl ModelPrep {
    /// Loads a model folder onto `device`; `match_histograms` as in
    /// [`comir_represent::for_registration`]; `rotation_average` represents every image with
    /// [`Representer::represent_rotation_averaged`].
    pub fn load(
        dir: &Path,
        fixed_modality: Modality,
        device: &str,
        match_histograms: bool,
        rotation_average: bool,
    ) -> Result<ModelPrep> {
        let device = crate::device::select(device)?;
        let representer = Representer::load(dir, &device)?;
        Ok(ModelPrep {
            representer,
            fixed_modality,
            match_histograms,
            rotation_average,
        })
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
