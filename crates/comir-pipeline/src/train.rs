//! Training a CoMIR on aligned pairs, on the trainer a device calls for: the entry point behind
//! `comir train` (and the training step of the demo and of each study cell).

use std::path::PathBuf;

use anyhow::{bail, Result};
use comir_model::loss::Critic;
use comir_train::run::{
    has_checkpoint, saved_config, saved_trainer, HistoryRow, Observer, Preset, RunPaths,
    RunSummary, TrainConfig,
};
use comir_train::{BottleneckMode, TrainerFactory};
use indicatif::ProgressBar;

use crate::Console;

/// Which implementation trains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TrainerChoice {
    /// The CPU engine on the CPU, burn otherwise; a resumed run keeps the one that started it.
    #[default]
    Auto,
    /// comir's hand-written CPU engine (≈ 4× faster than burn's CPU backend).
    Engine,
    /// burn, on any device.
    Burn,
}

/// A training run: the data, the model folder, and the settings that override the recipe.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainOptions {
    /// Folder of modality-A images.
    pub a: PathBuf,
    /// Folder of modality-B images, file names matching A's.
    pub b: PathBuf,
    /// Model folder to write (created if missing).
    pub out: PathBuf,
    /// Network size (replaces the recipe's network).
    pub preset: Option<Preset>,
    /// The recipe (TOML of [`TrainConfig`]); without it, the defaults, or the saved settings of
    /// a resumed run.
    pub config: Option<PathBuf>,
    /// Optimisation steps.
    pub steps: Option<usize>,
    /// Patch pairs per step.
    pub batch: Option<usize>,
    /// Similarity critic.
    pub critic: Option<Critic>,
    /// InfoNCE temperature.
    pub tau: Option<f64>,
    /// Contrastive supervision of the bottleneck.
    pub bottleneck: Option<BottleneckMode>,
    /// λ, the weight of the bottleneck loss.
    pub bottleneck_weight: Option<f64>,
    /// Seed of weights, sampling and augmentation.
    pub seed: Option<u64>,
    /// Fraction of pairs held out as a test set.
    pub test_fraction: Option<f64>,
    /// Wall-clock budget in minutes.
    pub minutes: Option<f64>,
    /// Compute device: `cpu`, `wgpu` or `cuda`.
    pub device: String,
    /// Continue a killed run from the model folder's checkpoint.
    pub resume: bool,
    /// Which implementation trains.
    pub trainer: TrainerChoice,
}

/// Draws a training run on a console's bar; without a drawn bar, one note per checkpoint.
pub(crate) struct Bar<'c> {
    pb: ProgressBar,
    console: &'c mut dyn Console,
    last_val: Option<(f64, f64)>,
    last_row: Option<HistoryRow>,
}

impl Observer for Bar<'_> {
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
            self.console.note(&format!(
                "step {step}/{}: loss {:.4}, positive-pair error {:.4}{val}, {:.0} s",
                self.pb.length().unwrap_or(0),
                r.loss,
                r.positive_mse,
                r.seconds
            ));
        }
    }
}

/// The trainer that `choice` and `device_name` select for `config`; a resumed run (`resumed`:
/// the model folder it continues) keeps the trainer that started it.
///
/// # Errors
/// An unknown device, or a trainer that cannot run there.
pub(crate) fn trainer_factory(
    config: &TrainConfig,
    resumed: Option<&std::path::Path>,
    choice: TrainerChoice,
    device_name: &str,
) -> Result<Box<TrainerFactory<'static>>> {
    let device = crate::device::select(device_name)?;
    let kind = match (choice, resumed) {
        (TrainerChoice::Auto, Some(out)) => saved_trainer(out)?,
        (TrainerChoice::Auto, None)
            if device_name == "cpu" && comir_engine::supports(&config.network_for(1)).is_ok() =>
        {
            "engine".to_string()
        }
        (TrainerChoice::Auto | TrainerChoice::Burn, _) => "burn".to_string(),
        (TrainerChoice::Engine, _) => {
            if device_name != "cpu" {
                bail!(
                    "--trainer engine runs on the CPU only; use --trainer burn with --device {device_name}"
                );
            }
            "engine".to_string()
        }
    };
    Ok(if kind == "engine" {
        Box::new(comir_train::engine_trainer_factory())
    } else {
        Box::new(comir_train::burn_trainer_factory(device))
    })
}

impl<'c> Bar<'c> {
    /// A training observer that draws on `console`'s bar named `what`.
    pub(crate) fn new(console: &'c mut dyn Console, steps: usize, what: &str) -> Bar<'c> {
        Bar {
            pb: console.bar(steps as u64, what),
            console,
            last_val: None,
            last_row: None,
        }
    }

    /// Clears the bar.
    pub(crate) fn finish(&self) {
        self.pb.finish_and_clear();
    }
}

/// Trains `config` on `paths`, on the trainer that `choice` and `device_name` select, drawing
/// its progress on `console`.
///
/// # Errors
/// An unknown device, a trainer that cannot run there, or the training's own errors.
pub fn train_with_progress(
    config: &TrainConfig,
    paths: &RunPaths,
    resume: bool,
    choice: TrainerChoice,
    device_name: &str,
    console: &mut dyn Console,
) -> Result<RunSummary> {
    let factory = trainer_factory(
        config,
        resume.then_some(paths.out.as_path()),
        choice,
        device_name,
    )?;
    let mut bar = Bar::new(console, config.schedule.steps, "train");
    let summary = comir_train::run::train(config, paths, resume, factory.as_ref(), &mut bar)?;
    bar.finish();
    Ok(summary)
}

/// Trains as `options` say: checks the model folder against `resume`, assembles the settings
/// (recipe, then the options on top) and trains.
///
/// # Errors
/// A folder that holds a run already (without `resume`) or none (with it), an unreadable
/// recipe, or the training's own errors.
pub fn train(options: &TrainOptions, console: &mut dyn Console) -> Result<RunSummary> {
    if !options.resume && has_checkpoint(&options.out) {
        bail!(
            "{}: holds a training run already; pass --resume to continue it or choose another --out",
            options.out.display()
        );
    }
    if options.resume && !has_checkpoint(&options.out) {
        bail!("{}: no checkpoint to resume from", options.out.display());
    }
    // A resumed run starts from its saved settings; options on top must agree with them (only
    // the steps may change), which the trainer checks.
    let mut config = match (&options.config, options.resume) {
        (Some(p), _) => TrainConfig::from_toml_file(p)?,
        (None, true) => saved_config(&options.out)?,
        (None, false) => TrainConfig::default(),
    };
    if let Some(p) = options.preset {
        config.preset = p;
        config.network = None;
    }
    if let Some(s) = options.steps {
        config.schedule.steps = s;
    }
    if let Some(b) = options.batch {
        config.schedule.batch = b;
    }
    if let Some(c) = options.critic {
        config.train.critic = c;
    }
    if let Some(t) = options.tau {
        config.train.tau = t;
    }
    if let Some(m) = options.bottleneck {
        config.train.bottleneck.mode = m;
    }
    if let Some(w) = options.bottleneck_weight {
        config.train.bottleneck.weight = w;
    }
    if let Some(s) = options.seed {
        config.train.seed = s;
    }
    if let Some(f) = options.test_fraction {
        config.split.test_fraction = f;
    }
    if let Some(m) = options.minutes {
        config.schedule.minutes = Some(m);
    }
    let paths = RunPaths {
        a: options.a.clone(),
        b: options.b.clone(),
        out: options.out.clone(),
    };
    train_with_progress(
        &config,
        &paths,
        options.resume,
        options.trainer,
        &options.device,
        console,
    )
}
