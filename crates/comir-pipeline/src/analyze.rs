//! What a trained model's embeddings look like on held-out pairs — MDS maps, covariance spectra
//! (dimensional collapse), the modality gap and the rotation equivariance: the entry point
//! behind `comir analyze` (and the analysis step of each study cell). The protocol itself is
//! [`comir_analysis::protocol`]; this module loads the model and the pairs for it.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use comir_analysis::protocol::{self, AnalysisOutcome, Embedder, Embedding, Settings};
use comir_image::Image;
use comir_represent::{Modality, Representer};
use indicatif::ProgressBar;

use crate::model::seen_pairs;
use crate::Console;

/// Which model to analyse, on which pairs, into which folder.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalyzeOptions {
    /// Model folder written by `comir train`.
    pub model: PathBuf,
    /// Folder with A/ and B/ aligned pairs (the held-out ones are used).
    pub pairs: PathBuf,
    /// Output folder (created if missing).
    pub out: PathBuf,
    /// Patch pairs to embed (at least 3).
    pub patches: usize,
    /// Patch side in pixels (default: the training patch size, else 128).
    pub patch_size: Option<usize>,
    /// Seed of the patch positions.
    pub seed: u64,
    /// Rotation step of the equivariance score, in degrees, in (0, 360].
    pub angle_step: f64,
}

impl AnalyzeOptions {
    /// The model in `model` on the pairs in `pairs` into `out`: 200 patches of the training
    /// size, seed 0, a 30° equivariance step.
    pub fn new(model: PathBuf, pairs: PathBuf, out: PathBuf) -> AnalyzeOptions {
        AnalyzeOptions {
            model,
            pairs,
            out,
            patches: 200,
            patch_size: None,
            seed: 0,
            angle_step: 30.0,
        }
    }
}

/// A model as the analysis protocol sees it.
struct ModelEmbedder<'r>(&'r Representer);

fn modality(m: protocol::Modality) -> Modality {
    match m {
        protocol::Modality::A => Modality::A,
        protocol::Modality::B => Modality::B,
    }
}

impl Embedder for ModelEmbedder<'_> {
    type Error = comir_represent::Error;

    fn bottleneck_channels(&self) -> usize {
        let net = &self.0.card().network_a;
        net.growth_rate * net.bottleneck_layers
    }

    fn embed_patch(
        &self,
        image: &Image,
        m: protocol::Modality,
        corner: (usize, usize),
        size: usize,
    ) -> Result<Embedding, comir_represent::Error> {
        let e = self
            .0
            .embed_patches(image, modality(m), &[corner], size)?
            .into_iter()
            .next()
            .ok_or_else(|| comir_represent::Error::Input("no embedding for the patch".into()))?;
        Ok(Embedding {
            representation: e.representation,
            bottleneck: e.bottleneck,
        })
    }

    fn represent(
        &self,
        image: &Image,
        m: protocol::Modality,
    ) -> Result<Image, comir_represent::Error> {
        self.0.represent(image, modality(m))
    }
}

/// Draws the embedding of the patches on a console's bar.
struct Progress(ProgressBar);

impl protocol::Observer for Progress {
    fn patch_embedded(&mut self) {
        self.0.inc(1);
    }
    fn embedding_finished(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Analyses the model on the pairs it was neither trained nor validated on, writes the plots
/// and CSVs into the output folder, and returns the numbers (see
/// [`AnalysisOutcome::lines`] for the table a person reads).
///
/// # Errors
/// Settings out of range, an unloadable model or pairs, no held-out pairs, images smaller than
/// the patches, or an unwritable output.
pub fn analyze(options: &AnalyzeOptions, console: &mut dyn Console) -> Result<AnalysisOutcome> {
    if options.patches < 3 {
        bail!("--patches must be at least 3, got {}", options.patches);
    }
    if !(options.angle_step > 0.0 && options.angle_step <= 360.0) {
        bail!(
            "--angle-step must lie in (0, 360], got {}",
            options.angle_step
        );
    }
    let device = crate::device::select("cpu")?;
    let representer = Representer::load(&crate::bundled::resolve(&options.model)?, &device)?;
    let card = representer.card();
    let size = match options.patch_size {
        Some(s) => s,
        None => card.patch_size(),
    };
    let seen = seen_pairs(card);
    let mut pairs = comir_data::find_pairs_in(&options.pairs.join("A"), &options.pairs.join("B"))?;
    pairs.retain(|p| !seen.contains(&p.name));
    if pairs.is_empty() {
        bail!(
            "{}: every pair was used to train the model; analyse other pairs",
            options.pairs.display()
        );
    }
    let images = pairs
        .iter()
        .map(|p| {
            p.load()
                .with_context(|| format!("loading pair '{}'", p.name))
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some((a, _)) = images
        .iter()
        .find(|(a, _)| a.width() < size || a.height() < size)
    {
        bail!(
            "{}: an image of {}×{} is smaller than the {size}² patches",
            options.pairs.display(),
            a.width(),
            a.height()
        );
    }
    std::fs::create_dir_all(&options.out).with_context(|| format!("{}", options.out.display()))?;
    let settings = Settings {
        patches: options.patches,
        patch_size: size,
        seed: options.seed,
        angle_step: options.angle_step,
    };
    let mut progress = Progress(console.bar(options.patches as u64, "embed"));
    Ok(protocol::run(
        &images,
        &settings,
        &ModelEmbedder(&representer),
        &options.out,
        &mut progress,
    )?)
}
