//! The recipe of a training run: everything `comir train --config` reads (the TOML sections
//! `[network]`, `[train]`, `[train.bottleneck]`, `[patches]`, `[schedule]`, `[split]`), as
//! plain serde structs with their defaults and checks.
//!
//! The recipe lives next to the networks, not with the trainers, because a model folder
//! records the recipe it was trained with (`ModelCard::training`, see [`crate::record`]) and
//! inference reads that card without depending on any training code. `comir-train` re-exports
//! every type here under its old paths.
//!
//! Every section is `#[serde(default)]`: a missing key takes the default named in its field's
//! documentation; an unknown key is an error.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::loss::Critic;
use crate::{DenseUNetConfig, ModelError};

pub use comir_data::PatchConfig;

/// Why a recipe is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting is out of range, or the text does not parse (the message names the value or
    /// the line).
    #[error("invalid setting: {0}")]
    Invalid(String),
    /// The network configuration is invalid.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Network size presets (docs/method.md §1.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The reference histology DenseUNet (≈ 1.05 M parameters).
    Histology,
    /// The reference Zurich DenseUNet (≈ 0.165 M parameters): it trains about five times
    /// faster than `histology` on a CPU.
    Small,
    /// `small` at half the width (growth 6, 12 initial filters; ≈ 46 k parameters), the
    /// default: comir's own, not in the reference. About 3.5× fewer multiply-adds per pixel
    /// than `small`, so 2.4× more training steps a minute, and as good on histology after 10
    /// minutes (docs/results.md, "Time to quality"); it represents an 834² image in under half a second.
    #[default]
    Fast,
}

impl Preset {
    /// The network configuration for `in_channels` input channels.
    pub fn network(self, in_channels: usize) -> DenseUNetConfig {
        match self {
            Preset::Histology => DenseUNetConfig::histology(in_channels),
            Preset::Small => DenseUNetConfig::small(in_channels),
            Preset::Fast => DenseUNetConfig::fast(in_channels),
        }
    }
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Preset, String> {
        match s {
            "histology" => Ok(Preset::Histology),
            "small" => Ok(Preset::Small),
            "fast" => Ok(Preset::Fast),
            _ => Err(format!(
                "unknown preset '{s}'; valid: histology, small, fast"
            )),
        }
    }
}

/// How the learning rate changes over a run: a factor on the optimiser's rate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrDecay {
    /// The optimiser's rate throughout (the reference recipe).
    #[default]
    Constant,
    /// Half a cosine from the full rate to zero over the run. Not in the reference: under a
    /// constant rate the registration quality of snapshots swings by tens of points from one
    /// few hundred steps to the next (docs/results.md, "Time to quality"); annealing ends the run in a
    /// minimum instead of wherever the last step landed.
    Cosine,
}

/// How long to train and how to split and watch it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Schedule {
    /// Optimisation steps (default 2000).
    pub steps: usize,
    /// Patch pairs per step (default 8, MultiRegEval).
    pub batch: usize,
    /// Validate every this many steps (default 100; 0 disables).
    pub validate_every: usize,
    /// Batches of the fixed validation set (default 4).
    pub validation_batches: usize,
    /// Write a checkpoint every this many steps (default 50).
    pub checkpoint_every: usize,
    /// Keep a copy of the model every this many steps in `OUT/snapshots/step-NNNNNN/` (a
    /// complete model folder for `--model`), to measure quality against training time from one
    /// run (default 0: none).
    pub snapshot_every: usize,
    /// A wall-clock budget: stop (with a checkpoint) at the first step that ends after this
    /// many minutes of training, summed over resumed runs (default none). The step count
    /// then depends on the machine's speed, so such runs are reproducible only through their
    /// checkpoint.
    pub minutes: Option<f64>,
    /// Learning-rate decay (default `constant`). Its progress is the larger of `step / steps`
    /// and, with a time budget, `elapsed / minutes`: a budgeted run anneals by the clock.
    pub lr_decay: LrDecay,
}

impl Schedule {
    /// The factor on the learning rate for the step that starts after `done` steps and
    /// `elapsed_s` seconds of training.
    pub fn lr_scale(&self, done: usize, elapsed_s: f64) -> f64 {
        match self.lr_decay {
            LrDecay::Constant => 1.0,
            LrDecay::Cosine => {
                let by_steps = done as f64 / self.steps.max(1) as f64;
                let by_time = self.minutes.map_or(0.0, |m| elapsed_s / (m * 60.0));
                let progress = by_steps.max(by_time).clamp(0.0, 1.0);
                0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            steps: 2000,
            batch: 8,
            validate_every: 100,
            validation_batches: 4,
            checkpoint_every: 50,
            snapshot_every: 0,
            minutes: None,
            lr_decay: LrDecay::Constant,
        }
    }
}

/// How the pairs are divided, by a seeded hash of their names (`comir_data::split_by_name`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitSettings {
    /// Fraction of pairs held out as a test set, never trained or validated on (default 0: the
    /// folder is for training; `comir eval --model` then skips every pair the model has seen).
    pub test_fraction: f64,
    /// Fraction of the remaining pairs used for validation (default 0.15).
    pub validation_fraction: f64,
    /// Seed of the split (default 0).
    pub seed: u64,
}

impl Default for SplitSettings {
    fn default() -> Self {
        SplitSettings {
            test_fraction: 0.0,
            validation_fraction: 0.15,
            seed: 0,
        }
    }
}

/// Everything a training run does; the TOML of `comir train --config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Network preset (default `fast`), used when `network` is not given.
    pub preset: Preset,
    /// Explicit network configuration for both modalities (input channels are taken from the
    /// data); overrides `preset`.
    pub network: Option<DenseUNetConfig>,
    /// Representation channels D (default 1).
    pub out_channels: usize,
    /// Loss, optimiser and seed.
    pub train: TrainSettings,
    /// Patch sampling and augmentation.
    pub patches: PatchConfig,
    /// Steps, batch size, validation and checkpoint cadence.
    pub schedule: Schedule,
    /// Train / validation / test split.
    pub split: SplitSettings,
}

impl Default for TrainConfig {
    /// The recipe that held best across histology, MNI152 and CT/MR (docs/results.md,
    /// "Training defaults"): the `fast` preset, 64² patches with each image's percentiles
    /// stretched, batches of 12, a cosine learning rate, activation L2 decay 0.1. Where it
    /// differs from its sections' own defaults (the reference's: 128² patches, no
    /// stretching, batches of 8, a constant rate, 1e-4; `configs/reference-2020.toml`), a
    /// config file's missing keys still take these values ([`TrainConfig::from_toml_str`]).
    fn default() -> Self {
        TrainConfig {
            preset: Preset::default(),
            network: None,
            out_channels: 1,
            train: TrainSettings {
                l2_decay: 0.1,
                ..TrainSettings::default()
            },
            patches: PatchConfig {
                size: 64,
                normalize_a: true,
                normalize_b: true,
                ..PatchConfig::default()
            },
            schedule: Schedule {
                batch: 12,
                validation_batches: 2,
                lr_decay: LrDecay::Cosine,
                ..Schedule::default()
            },
            split: SplitSettings::default(),
        }
    }
}

impl TrainConfig {
    /// Reads a TOML file; unknown keys are errors.
    ///
    /// # Errors
    /// The file cannot be read or parsed (message names the file).
    pub fn from_toml_file(path: &Path) -> Result<TrainConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?;
        TrainConfig::from_toml_str(&text)
            .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))
    }

    /// Parses a configuration from TOML text (unknown keys are errors). The message is one
    /// line with the line number of the problem.
    ///
    /// # Errors
    /// The text is not valid TOML or does not fit the schema.
    pub fn from_toml_str(text: &str) -> Result<TrainConfig, String> {
        // Checked as written first, so that errors name the line.
        toml::from_str::<TrainConfig>(text).map_err(|e| {
            let message = e
                .message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}: {message}")
                }
                None => message,
            }
        })?;
        // Then the keys it gives replace those of the recipe's defaults, section by section:
        // a key left out takes `TrainConfig::default()`'s value, not its section's own.
        let given: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
        let mut merged =
            toml::Table::try_from(TrainConfig::default()).map_err(|e| e.to_string())?;
        for (key, value) in given {
            match (merged.get_mut(&key), value) {
                (Some(toml::Value::Table(section)), toml::Value::Table(keys)) => {
                    section.extend(keys);
                }
                (_, value) => {
                    merged.insert(key, value);
                }
            }
        }
        merged
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())
    }

    /// The network of a modality with `in_channels` input channels.
    pub fn network_for(&self, in_channels: usize) -> DenseUNetConfig {
        let mut c = self
            .network
            .clone()
            .unwrap_or_else(|| self.preset.network(in_channels));
        c.in_channels = in_channels;
        c.out_channels = self.out_channels;
        c
    }

    /// Checks every value that the parts do not check themselves.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        self.train.validate()?;
        self.patches
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let s = &self.schedule;
        if s.steps == 0 {
            return bad("schedule.steps must be at least 1".into());
        }
        if s.batch < 2 {
            return bad(format!(
                "schedule.batch must be at least 2 (InfoNCE needs negatives), got {}",
                s.batch
            ));
        }
        if s.checkpoint_every == 0 {
            return bad("schedule.checkpoint_every must be at least 1".into());
        }
        if let Some(m) = s.minutes {
            if !(m > 0.0 && m.is_finite()) {
                return bad(format!("schedule.minutes must be positive, got {m}"));
            }
        }
        if self.out_channels == 0 {
            return bad("out_channels must be at least 1".into());
        }
        for (name, f) in [
            ("split.test_fraction", self.split.test_fraction),
            ("split.validation_fraction", self.split.validation_fraction),
        ] {
            if !(0.0..1.0).contains(&f) {
                return bad(format!("{name} must lie in [0, 1), got {f}"));
            }
        }
        let net = self.network_for(1);
        net.validate()?;
        let m = net.required_multiple();
        if !self.patches.size.is_multiple_of(m) {
            return bad(format!(
                "patch size {} must be a multiple of {m} for this network (2^depth)",
                self.patches.size
            ));
        }
        Ok(())
    }
}

/// The optimiser of each network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum OptimizerSettings {
    /// SGD with momentum and weight decay (reference: lr 1e-2, momentum 0.9, weight decay 1e-5).
    Sgd {
        /// Learning rate.
        lr: f64,
        /// Momentum.
        momentum: f64,
        /// L2 weight decay.
        weight_decay: f64,
    },
    /// Adam (the Zurich notebook: lr 1e-3, weight decay 1e-4).
    Adam {
        /// Learning rate.
        lr: f64,
        /// L2 weight decay.
        weight_decay: f64,
    },
}

impl Default for OptimizerSettings {
    fn default() -> Self {
        OptimizerSettings::Sgd {
            lr: 1e-2,
            momentum: 0.9,
            weight_decay: 1e-5,
        }
    }
}

impl OptimizerSettings {
    /// The learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerSettings::Sgd { lr, .. } | OptimizerSettings::Adam { lr, .. } => *lr,
        }
    }
}

/// What a training step does (defaults: the histology CoMIR recipe).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSettings {
    /// Similarity critic (default `mse`).
    pub critic: Critic,
    /// InfoNCE temperature τ (default 0.5).
    pub tau: f64,
    /// Optimiser of each network (default SGD, lr 1e-2, momentum 0.9, weight decay 1e-5).
    pub optimizer: OptimizerSettings,
    /// Weight of the L1 activation decay (default 1e-4).
    pub l1_decay: f64,
    /// Weight of the L2 activation decay (default 1e-4).
    pub l2_decay: f64,
    /// Random 90° rotations per sample and modality, undone on the outputs (default true).
    pub equivariance: bool,
    /// Per-parameter gradient-norm clip (default 1.0; `None` disables it).
    pub grad_clip_norm: Option<f64>,
    /// Seed of the weights and of the rotations (default 0).
    pub seed: u64,
    /// Contrastive supervision of the bottleneck (default off: the CoMIR baseline).
    pub bottleneck: BottleneckSettings,
    /// Weight of a direct alignment term, the mean squared difference of corresponding A/B
    /// representations, added to the loss (default 0: CoMIR's loss, InfoNCE alone). Not in the
    /// reference: constant patches (SHG's black and H&E's white background) are as close to every
    /// other constant patch as to their positive, so InfoNCE leaves their levels free and the two
    /// networks map the background to different values; this term pins them together.
    pub align_weight: f64,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            critic: Critic::Mse,
            tau: 0.5,
            optimizer: OptimizerSettings::default(),
            l1_decay: 1e-4,
            l2_decay: 1e-4,
            equivariance: true,
            grad_clip_norm: Some(1.0),
            seed: 0,
            bottleneck: BottleneckSettings::default(),
            align_weight: 0.0,
        }
    }
}

impl TrainSettings {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the bad value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if !(self.tau > 0.0 && self.tau.is_finite()) {
            return bad(format!("tau must be a positive number, got {}", self.tau));
        }
        if !(self.optimizer.lr() > 0.0 && self.optimizer.lr().is_finite()) {
            return bad(format!(
                "learning rate must be positive, got {}",
                self.optimizer.lr()
            ));
        }
        let non_negative = |x: f64| x >= 0.0 && x.is_finite();
        if !non_negative(self.align_weight) {
            return bad(format!(
                "align_weight must be finite and ≥ 0, got {}",
                self.align_weight
            ));
        }
        if !non_negative(self.l1_decay) || !non_negative(self.l2_decay) {
            return bad(format!(
                "activation decay weights must be finite and ≥ 0, got {} and {}",
                self.l1_decay, self.l2_decay
            ));
        }
        let (momentum, weight_decay) = match self.optimizer {
            OptimizerSettings::Sgd {
                momentum,
                weight_decay,
                ..
            } => (momentum, weight_decay),
            OptimizerSettings::Adam { weight_decay, .. } => (0.0, weight_decay),
        };
        if !(non_negative(momentum) && momentum < 1.0) {
            return bad(format!("momentum must lie in [0, 1), got {momentum}"));
        }
        if !non_negative(weight_decay) {
            return bad(format!(
                "weight_decay must be finite and ≥ 0, got {weight_decay}"
            ));
        }
        if let Some(c) = self.grad_clip_norm {
            if c <= 0.0 || c.is_nan() {
                return bad(format!("grad_clip_norm must be positive, got {c}"));
            }
        }
        self.bottleneck.validate()
    }
}

/// Which bottleneck supervision is added to the CoMIR loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BottleneckMode {
    /// None: the CoMIR baseline (default).
    #[default]
    Off,
    /// InfoNCE on the flattened (un-rotated) bottleneck tensor.
    Flat,
    /// InfoNCE on the globally average-pooled bottleneck vector.
    Pooled,
    /// InfoNCE on a projection head's output, the head fed the pooled vector.
    Projection,
}

impl BottleneckMode {
    /// The name used in configs and tables.
    pub fn name(self) -> &'static str {
        match self {
            BottleneckMode::Off => "off",
            BottleneckMode::Flat => "flat",
            BottleneckMode::Pooled => "pooled",
            BottleneckMode::Projection => "projection",
        }
    }
}

impl std::str::FromStr for BottleneckMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" | "none" | "baseline" => Ok(BottleneckMode::Off),
            "flat" => Ok(BottleneckMode::Flat),
            "pooled" => Ok(BottleneckMode::Pooled),
            "projection" => Ok(BottleneckMode::Projection),
            other => Err(format!(
                "unknown bottleneck supervision '{other}'; valid: off, flat, pooled, projection"
            )),
        }
    }
}

/// Settings of the bottleneck supervision (`[train.bottleneck]` in a config).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BottleneckSettings {
    /// Which form (default `off`).
    pub mode: BottleneckMode,
    /// λ, the weight of the bottleneck term (default 1).
    pub weight: f64,
    /// Hidden width of the projection head (default 64).
    pub projection_hidden: usize,
    /// Output width of the projection head (default 32).
    pub projection_out: usize,
}

impl Default for BottleneckSettings {
    fn default() -> Self {
        BottleneckSettings {
            mode: BottleneckMode::Off,
            weight: 1.0,
            projection_hidden: 64,
            projection_out: 32,
        }
    }
}

impl BottleneckSettings {
    /// Checks the values.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the bad value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.weight >= 0.0 && self.weight.is_finite()) {
            return Err(ConfigError::Invalid(format!(
                "bottleneck weight must be ≥ 0, got {}",
                self.weight
            )));
        }
        if self.mode == BottleneckMode::Projection
            && (self.projection_hidden == 0 || self.projection_out == 0)
        {
            return Err(ConfigError::Invalid(
                "projection head sizes must be positive".into(),
            ));
        }
        Ok(())
    }
}
