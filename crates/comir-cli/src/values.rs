//! The values of enumerated flags, as clap lists them in `--help` and in errors; each maps to
//! the library's type.

use std::path::PathBuf;

use comir_pipeline::eval::EvalSplit;
use comir_pipeline::model::ModelOptions;
use comir_pipeline::train::TrainerChoice;
use comir_pipeline::{MethodName, Modality};

/// The registration methods, by their command-line names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    /// α-AMD (Öfverstedt et al. 2019), reference settings, multi-start.
    Aamd,
    /// Mattes mutual information on the raw images, pyramid, multi-start.
    Mi,
    /// SIFT-like keypoints, descriptors and a RANSAC rigid fit.
    Features,
    /// Exhaustive rotation search with all translations at once by FFT (CMIF).
    Global,
    /// Normalised cross-correlation, MI's pyramid and optimiser: for one modality (learned
    /// representations, --model).
    Ncc,
    /// Mattes MI, then refined by normalised gradient fields (edge directions): for modalities
    /// whose edges coincide but whose intensities MI pairs wrongly (CT and MR).
    Ngf,
}

impl From<MethodArg> for MethodName {
    fn from(m: MethodArg) -> MethodName {
        match m {
            MethodArg::Aamd => MethodName::Aamd,
            MethodArg::Mi => MethodName::Mi,
            MethodArg::Features => MethodName::Features,
            MethodArg::Global => MethodName::Global,
            MethodArg::Ncc => MethodName::Ncc,
            MethodArg::Ngf => MethodName::Ngf,
        }
    }
}

/// The methods named by `args`.
pub fn methods(args: &[MethodArg]) -> Vec<MethodName> {
    args.iter().map(|&m| m.into()).collect()
}

/// Which of a model's pairs `comir eval --model` evaluates on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SplitArg {
    /// The pairs the model was neither trained nor validated on.
    Test,
    /// The pairs the model was validated on (for choosing settings).
    Validation,
}

impl From<SplitArg> for EvalSplit {
    fn from(s: SplitArg) -> EvalSplit {
        match s {
            SplitArg::Test => EvalSplit::Test,
            SplitArg::Validation => EvalSplit::Validation,
        }
    }
}

/// The `--trainer` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TrainerArg {
    /// The CPU engine on the CPU, burn otherwise.
    Auto,
    /// comir's hand-written CPU engine (≈ 4× faster than burn's CPU backend).
    Engine,
    /// burn, on any device.
    Burn,
}

impl From<TrainerArg> for TrainerChoice {
    fn from(t: TrainerArg) -> TrainerChoice {
        match t {
            TrainerArg::Auto => TrainerChoice::Auto,
            TrainerArg::Engine => TrainerChoice::Engine,
            TrainerArg::Burn => TrainerChoice::Burn,
        }
    }
}

/// The flags of registering through a trained model, shared by `register` and `eval`.
#[derive(clap::Args)]
pub struct ModelArgs {
    /// Register the learned representations of the images instead of the images (a `comir
    /// train` folder, or a bundled model's name: `comir models`); `eval` skips the pairs the
    /// model was trained or validated on.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Which modality the fixed image is (the moving one is the other); with --model.
    #[arg(long, default_value = "a")]
    pub fixed_modality: Modality,
    /// Compute device of the model: cpu (default), wgpu or cuda (GPU builds only).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Register the representations exactly as the reference does (`sigmoid`), without
    /// matching the moving representation's histogram to the fixed one's (with --model).
    #[arg(long)]
    pub no_histogram_match: bool,
    /// Represent every image as the average over its four 90° turns (each turned copy
    /// represented and turned back): exactly rotation-equivariant representations, at four
    /// times the inference time (with --model). Not in the reference.
    #[arg(long, requires = "model")]
    pub rotation_average: bool,
}

impl ModelArgs {
    /// The model options, `None` without `--model`.
    pub fn options(self) -> Option<ModelOptions> {
        let ModelArgs {
            model,
            fixed_modality,
            device,
            no_histogram_match,
            rotation_average,
        } = self;
        model.map(|dir| ModelOptions {
            dir,
            fixed_modality,
            device,
            match_histograms: !no_histogram_match,
            rotation_average,
        })
    }
}
