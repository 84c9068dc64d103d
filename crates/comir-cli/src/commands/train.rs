//! `comir train`.

use std::path::PathBuf;

use anyhow::Result;
use comir_pipeline::train::{train, TrainOptions};
use comir_pipeline::{BottleneckMode, Critic, Preset};

use crate::console::Terminal;
use crate::values::TrainerArg;

/// Arguments of `comir train`.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  comir train --a data/demo/A --b data/demo/B --out models/mr --steps 300\n  \
    comir train --a shg/ --b he/ --out models/he --preset histology --config train.toml --resume\n\n\
    The model folder gets model.json, weights.bpk (what inference needs), checkpoint.bin and history.csv."
)]
pub struct TrainArgs {
    /// Folder of modality-A images.
    #[arg(long)]
    pub a: PathBuf,
    /// Folder of modality-B images, file names matching A's.
    #[arg(long)]
    pub b: PathBuf,
    /// Model folder to write (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Network size: fast (≈46 k parameters, the default), small (≈0.17 M, the reference
    /// network) or histology (≈1.05 M, the reference histology network).
    #[arg(long)]
    pub preset: Option<Preset>,
    /// Training settings (TOML: preset, out_channels, [train], [patches], [schedule], [split]);
    /// flags given on the command line override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Optimisation steps.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Patch pairs per step.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Similarity critic: mse, cosine, l1, euclidean, l3, linf, huber, dot.
    #[arg(long)]
    pub critic: Option<Critic>,
    /// InfoNCE temperature.
    #[arg(long)]
    pub tau: Option<f64>,
    /// Contrastive supervision of the bottleneck (the 2023 study): off (default), flat,
    /// pooled or projection.
    #[arg(long)]
    pub bottleneck: Option<BottleneckMode>,
    /// λ, the weight of the bottleneck loss (default 1).
    #[arg(long)]
    pub bottleneck_weight: Option<f64>,
    /// Seed of weights, sampling and augmentation.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Fraction of pairs held out as a test set (recorded in model.json; `comir eval --model`
    /// evaluates only pairs the model has not seen).
    #[arg(long)]
    pub test_fraction: Option<f64>,
    /// Wall-clock budget in minutes: stop (with a checkpoint) at the first step that ends
    /// after it; `--steps` stays an upper bound.
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Compute device: cpu (default), wgpu or cuda (GPU builds only).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Continue a killed run from the model folder's checkpoint (--steps may extend it).
    #[arg(long)]
    pub resume: bool,
    /// Which implementation trains: auto (comir's CPU engine on the CPU, burn on a GPU; a
    /// resumed run keeps the one that started it), engine, or burn.
    #[arg(long, value_enum, default_value_t = TrainerArg::Auto)]
    pub trainer: TrainerArg,
}

/// Runs `comir train`.
pub fn run(args: TrainArgs) -> Result<()> {
    let options = TrainOptions {
        a: args.a,
        b: args.b,
        out: args.out,
        preset: args.preset,
        config: args.config,
        steps: args.steps,
        batch: args.batch,
        critic: args.critic,
        tau: args.tau,
        bottleneck: args.bottleneck,
        bottleneck_weight: args.bottleneck_weight,
        seed: args.seed,
        test_fraction: args.test_fraction,
        minutes: args.minutes,
        device: args.device,
        resume: args.resume,
        trainer: args.trainer.into(),
    };
    let summary = train(&options, &mut Terminal)?;
    let last = summary.history.last();
    let val = summary
        .history
        .iter()
        .rev()
        .find_map(|r| r.val_loss.zip(r.val_positive_mse));
    println!(
        "trained {} steps ({} in this run) on {} pairs ({} validation, {} held out for testing)",
        summary.steps,
        summary.steps_this_run,
        summary.split.train.len(),
        summary.split.validation.len(),
        summary.split.test.len()
    );
    if let Some(r) = last {
        println!(
            "last step: loss {:.4}, positive-pair error {:.5}, {:.1} s of training",
            r.loss, r.positive_mse, r.seconds
        );
    }
    if let Some((l, p)) = val {
        println!("validation: loss {l:.4}, positive-pair error {p:.5}");
    }
    println!("model: {}", options.out.display());
    Ok(())
}
