//! `comir analyze`: what a trained model's embeddings look like on held-out pairs — MDS maps,
//! covariance spectra (dimensional collapse), the modality gap and the rotation equivariance
//! (the analyses of Wetzer et al. 2023; docs/method.md §8).

use std::path::PathBuf;

use anyhow::Result;
use comir_pipeline::analyze::{analyze, AnalyzeOptions};

use crate::console::Terminal;

/// Arguments of `comir analyze`.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  comir analyze --model models/he --pairs ../shared/datasets/histology-shg-he --out he-analysis\n\n\
    Writes mds-*.png, spectrum-*.png and CSVs (mds.csv, spectrum.csv, spectrum-summary.csv,\n\
    modality-gap.csv, equivariance.csv) into --out; pairs the model was trained or validated on\n\
    are skipped."
)]
pub struct AnalyzeArgs {
    /// Model folder written by `comir train`, or a bundled model's name (`comir models`).
    #[arg(long)]
    pub model: PathBuf,
    /// Folder with A/ and B/ aligned pairs (held-out pairs are used).
    #[arg(long)]
    pub pairs: PathBuf,
    /// Output folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Patch pairs to embed.
    #[arg(long, default_value_t = 200)]
    pub patches: usize,
    /// Patch side in pixels (default: the training patch size).
    #[arg(long)]
    pub patch_size: Option<usize>,
    /// Seed of the patch positions.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Rotation step of the equivariance score, in degrees.
    #[arg(long, default_value_t = 30.0)]
    pub angle_step: f64,
}

/// Runs `comir analyze`.
pub fn run(args: AnalyzeArgs) -> Result<()> {
    let options = AnalyzeOptions {
        model: args.model,
        pairs: args.pairs,
        out: args.out,
        patches: args.patches,
        patch_size: args.patch_size,
        seed: args.seed,
        angle_step: args.angle_step,
    };
    for line in analyze(&options, &mut Terminal)?.lines() {
        println!("{line}");
    }
    Ok(())
}
