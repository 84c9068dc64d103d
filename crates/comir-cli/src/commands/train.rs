//! `comir train`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use comir_model::loss::Critic;
use comir_train::run::{
    has_checkpoint, saved_config, saved_trainer, train, HistoryRow, Observer, Preset, RunPaths,
    RunSummary, TrainConfig,
};
use comir_train::TrainerFactory;
use indicatif::ProgressBar;

use crate::progress;

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
    /// Network size: small (≈0.17 M parameters, default) or histology (≈1.05 M).
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
    pub bottleneck: Option<comir_train::BottleneckMode>,
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
    #[arg(long, value_enum, default_value_t = TrainerChoice::Auto)]
    pub trainer: TrainerChoice,
}

/// The `--trainer` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TrainerChoice {
    /// The CPU engine on the CPU, burn otherwise.
    Auto,
    /// comir's hand-written CPU engine (≈ 4× faster than burn's CPU backend).
    Engine,
    /// burn, on any device.
    Burn,
}

struct Bar {
    pb: ProgressBar,
    last_val: Option<(f64, f64)>,
    last_row: Option<HistoryRow>,
}

impl Observer for Bar {
    fn start(&mut self, first: usize, total: usize) {
        self.pb.set_length(total as u64);
        self.pb.set_position(first as u64);
        self.pb.reset_eta();
    }
    fn step(&mut self, row: &HistoryRow) {
        if let (Some(l), Some(p)) = (row.val_loss, row.val_positive_mse) {
            self.last_val = Some((l, p));
        }
        let val = self
            .last_val
            .map_or(String::new(), |(l, p)| format!(" | val {l:.4} pos {p:.4}"));
        self.pb.set_message(format!(
            "loss {:.4} pos {:.4}{val}",
            row.loss, row.positive_mse
        ));
        self.pb.set_position(row.step as u64);
        self.last_row = Some(row.clone());
    }
    fn checkpoint(&mut self, step: usize) {
        // Without a terminal (nohup, a cluster job) the bar is hidden: log one line per checkpoint.
        if let (true, Some(r)) = (self.pb.is_hidden(), &self.last_row) {
            let val = self.last_val.map_or(String::new(), |(l, p)| {
                format!(", validation {l:.4} / {p:.4}")
            });
            eprintln!(
                "step {step}/{}: loss {:.4}, positive-pair error {:.4}{val}, {:.0} s",
                self.pb.length().unwrap_or(0),
                r.loss,
                r.positive_mse,
                r.seconds
            );
        }
    }
}

/// Trains with a progress bar (one line per checkpoint without a terminal) on the trainer that
/// `choice` and `device` select.
pub fn train_with_progress(
    config: &TrainConfig,
    paths: &RunPaths,
    resume: bool,
    choice: TrainerChoice,
    device_name: &str,
) -> Result<RunSummary> {
    let mut bar = Bar {
        pb: progress::bar(config.schedule.steps as u64, "train"),
        last_val: None,
        last_row: None,
    };
    let device = crate::device::select(device_name)?;
    let kind = match choice {
        TrainerChoice::Auto if resume => saved_trainer(&paths.out)?,
        TrainerChoice::Auto
            if device_name == "cpu" && comir_engine::supports(&config.network_for(1)).is_ok() =>
        {
            "engine".to_string()
        }
        TrainerChoice::Auto | TrainerChoice::Burn => "burn".to_string(),
        TrainerChoice::Engine => {
            if device_name != "cpu" {
                bail!(
                    "--trainer engine runs on the CPU only; use --trainer burn with --device {device_name}"
                );
            }
            "engine".to_string()
        }
    };
    let factory: Box<TrainerFactory<'_>> = if kind == "engine" {
        Box::new(comir_engine::engine_trainer_factory())
    } else {
        Box::new(comir_train::burn_trainer_factory(device))
    };
    let summary = train(config, paths, resume, factory.as_ref(), &mut bar)?;
    bar.pb.finish_and_clear();
    Ok(summary)
}

/// Runs `comir train`.
pub fn run(args: TrainArgs) -> Result<()> {
    if !args.resume && has_checkpoint(&args.out) {
        bail!(
            "{}: holds a training run already; pass --resume to continue it or choose another --out",
            args.out.display()
        );
    }
    if args.resume && !has_checkpoint(&args.out) {
        bail!("{}: no checkpoint to resume from", args.out.display());
    }
    // A resumed run starts from its saved settings; flags on top must agree with them (only
    // --steps may change), which the trainer checks.
    let mut config = match (&args.config, args.resume) {
        (Some(p), _) => TrainConfig::from_toml_file(p)?,
        (None, true) => saved_config(&args.out)?,
        (None, false) => TrainConfig::default(),
    };
    if let Some(p) = args.preset {
        config.preset = p;
        config.network = None;
    }
    if let Some(s) = args.steps {
        config.schedule.steps = s;
    }
    if let Some(b) = args.batch {
        config.schedule.batch = b;
    }
    if let Some(c) = args.critic {
        config.train.critic = c;
    }
    if let Some(t) = args.tau {
        config.train.tau = t;
    }
    if let Some(m) = args.bottleneck {
        config.train.bottleneck.mode = m;
    }
    if let Some(w) = args.bottleneck_weight {
        config.train.bottleneck.weight = w;
    }
    if let Some(s) = args.seed {
        config.train.seed = s;
    }
    if let Some(f) = args.test_fraction {
        config.split.test_fraction = f;
    }
    if let Some(m) = args.minutes {
        config.schedule.minutes = Some(m);
    }
    let paths = RunPaths {
        a: args.a,
        b: args.b,
        out: args.out,
    };
    let summary = train_with_progress(&config, &paths, args.resume, args.trainer, &args.device)?;
    let last = summary.history.last();
    let val = summary
        .history
        .iter()
        .rev()
        .find_map(|r| r.val_loss.zip(r.val_positive_mse));
    println!(
        "trained {} steps ({} in this session) on {} pairs ({} validation, {} held out for testing)",
        summary.steps,
        summary.steps_this_session,
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
    println!("model: {}", paths.out.display());
    Ok(())
}
