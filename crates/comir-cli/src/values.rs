//! The values of enumerated flags, as clap lists them in `--help` and in errors; each maps to
//! the library's type.

use comir_pipeline::eval::EvalSplit;
use comir_pipeline::train::TrainerChoice;
use comir_pipeline::MethodName;

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
}

impl From<MethodArg> for MethodName {
    fn from(m: MethodArg) -> MethodName {
        match m {
            MethodArg::Aamd => MethodName::Aamd,
            MethodArg::Mi => MethodName::Mi,
            MethodArg::Features => MethodName::Features,
            MethodArg::Global => MethodName::Global,
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
