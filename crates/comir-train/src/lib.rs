//! CoMIR training (Pielawski, Wetzer et al., NeurIPS 2020; docs/method.md §1.2–§1.6).
//!
//! One network per modality maps its patches to a representation; a [`Trainer`] step
//! 1. rotates every input patch by an independent random multiple of 90° (per sample and per
//!    modality, when `equivariance` is on) and undoes the rotation on the outputs (C4
//!    equivariance, docs/method.md §1.4);
//! 2. computes the InfoNCE loss between the two modalities' representations with the chosen
//!    critic and temperature (`comir_model::loss::info_nce`);
//! 3. adds L1/L2 activation decay on the raw outputs (docs/method.md §1.3);
//! 4. back-propagates once and updates each network with its own optimiser (SGD with momentum
//!    and weight decay, the reference default, or Adam).
//!
//! Two trainers take this step: [`Trainer`] runs the networks on burn (any device);
//! [`FastTrainer`] runs them on the hand-written CPU engine (`comir_engine`), which is what
//! `comir train` uses on a CPU. Both share the step's skeleton ([`StepPlan`]: the rotations
//! drawn once per step, and the loss code), so from the same seed they draw the same rotations
//! and compute the same loss. [`run::train`] drives either through [`ContrastiveTrainer`].
//!
//! Gradient clipping uses burn's per-parameter norm clipping; the reference clips the total norm
//! per network (`clip_grad_norm_(·, 1.0)`), so with clipping on the two differ when several
//! parameters exceed the norm. burn's trainer keeps this documented deviation (docs/method.md
//! §1.6); the engine's [`Clipping::TotalNorm`] clips as the reference does.
//!
//! The settings types ([`TrainSettings`], [`run::TrainConfig`], ...) live in
//! `comir_model::recipe`, because a model card records them; they are re-exported here.

pub mod bottleneck;
mod engine;
pub mod run;
mod step;

pub use bottleneck::{BottleneckMode, BottleneckSettings, BottleneckSupervision};
/// The training recipe's types live in `comir_model::recipe` (a model card records them);
/// they are re-exported here under their old paths.
pub use comir_model::recipe::{ConfigError, OptimizerSettings, TrainSettings};
pub use engine::{engine_trainer_factory, Clipping, FastTrainer};
pub use step::StepPlan;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, SgdConfig};
use burn::tensor::{Device, Tensor, TensorData};
use comir_data::Batch;
use comir_model::{DenseUNet, DenseUNetConfig, NetworkPair};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use step::{evaluation_stats, step_loss, StepLoss};

/// Errors of the training layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    InvalidConfig(String),
    /// A network could not be built or run.
    #[error(transparent)]
    Model(#[from] comir_model::ModelError),
    /// A saved training state does not fit this trainer.
    #[error("cannot restore the training state: {0}")]
    State(String),
    /// The training images could not be used (the message names the file or pair).
    #[error("{0}")]
    Data(String),
    /// The training backend failed (e.g. the CPU engine rejected a shape).
    #[error("training backend: {0}")]
    Backend(String),
    /// The loss became NaN or infinite.
    #[error("training diverged at step {step} (the loss is {loss}); the last checkpoint is kept: resume it with a smaller learning rate, or start again")]
    Diverged {
        /// The step (1-based, as in `history.csv`).
        step: usize,
        /// The loss value.
        loss: f64,
    },
}

impl From<ConfigError> for Error {
    /// Keeps the message: a recipe's invalid setting is this crate's invalid setting.
    fn from(e: ConfigError) -> Error {
        match e {
            ConfigError::Invalid(m) => Error::InvalidConfig(m),
            ConfigError::Model(m) => Error::Model(m),
            other => Error::InvalidConfig(other.to_string()),
        }
    }
}

/// Numbers of one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// Total loss (contrastive + activation decay).
    pub loss: f64,
    /// The InfoNCE part.
    pub contrastive: f64,
    /// The (unweighted) bottleneck InfoNCE; 0 without bottleneck supervision.
    pub bottleneck: f64,
    /// Mean squared difference of corresponding A/B representations (lower is better).
    pub positive_mse: f64,
}

/// A trainer's complete state (see [`Trainer::state`]); byte fields are burnpack records.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainerState {
    /// Steps done.
    pub steps: usize,
    /// Both networks ([`NetworkPair::to_bytes`]).
    pub weights: Vec<u8>,
    /// Optimiser state of network A.
    pub optimizer_a: Vec<u8>,
    /// Optimiser state of network B.
    pub optimizer_b: Vec<u8>,
    /// Position of the rotation RNG.
    pub rng_word_pos: u128,
    /// Projection heads and their optimiser states ([`BottleneckSupervision::state`]; empty
    /// without heads).
    pub bottleneck: Vec<u8>,
}

/// Draws every lazily initialised parameter of the module it visits (burn draws a parameter at
/// its first use).
pub(crate) struct Materialize;

impl burn::module::ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// Builds both networks with weights drawn from `seed`, A first, then B (as the reference
/// does). burn draws a parameter lazily, at its first use; every parameter is drawn here, at
/// once, so that the weights depend only on the seed (not on when a trainer first runs the
/// networks) and every trainer starts from the same ones.
///
/// # Errors
/// Invalid network configurations.
pub fn init_networks(
    a: &DenseUNetConfig,
    b: &DenseUNetConfig,
    seed: u64,
    device: &Device,
) -> Result<(DenseUNet, DenseUNet), Error> {
    device.seed(seed);
    let net_a = a.try_init(device)?;
    net_a.visit(&mut Materialize);
    let net_b = b.try_init(device)?;
    net_b.visit(&mut Materialize);
    Ok((net_a, net_b))
}

/// What [`run::train`] needs from a trainer. Implemented by [`Trainer`] (burn, any device)
/// and by [`FastTrainer`] (the hand-written CPU engine); the binary picks one.
pub trait ContrastiveTrainer {
    /// A short name recorded in checkpoints (their optimiser states differ between trainers).
    fn kind(&self) -> &'static str;
    /// Steps done so far.
    fn steps(&self) -> usize;
    /// One optimisation step on a batch of patch pairs.
    ///
    /// # Errors
    /// Wrong patch sizes or channels, or [`Error::Diverged`] (weights left as they were).
    fn step(&mut self, batch: &Batch) -> Result<StepStats, Error>;
    /// Multiplies the optimiser's learning rate from the next step on (default 1; a run sets
    /// it before every step from its schedule, so it is not part of the saved state).
    fn set_lr_scale(&mut self, scale: f64);
    /// Scores a batch without training: no rotations, inference-mode networks.
    ///
    /// # Errors
    /// Wrong patch sizes or channels.
    fn evaluate(&self, batch: &Batch) -> Result<StepStats, Error>;
    /// Both networks in inference mode as burn modules (what a model folder stores).
    ///
    /// # Errors
    /// The networks could not be converted.
    fn inference_networks(&self) -> Result<NetworkPair, Error>;
    /// Everything needed to continue exactly where this trainer is.
    ///
    /// # Errors
    /// A record could not be encoded.
    fn state(&self) -> Result<TrainerState, Error>;
    /// Continues from a state written by the same kind of trainer with the same settings.
    ///
    /// # Errors
    /// The state does not fit.
    fn restore(&mut self, state: &TrainerState) -> Result<(), Error>;
}

/// Builds the trainer for two network configurations and settings (the binary chooses the
/// backend once and hands [`run::train`] one of these).
pub type TrainerFactory<'a> = dyn Fn(
        &DenseUNetConfig,
        &DenseUNetConfig,
        &TrainSettings,
    ) -> Result<Box<dyn ContrastiveTrainer>, Error>
    + 'a;

/// A [`TrainerFactory`] for burn's [`Trainer`] on `device`.
pub fn burn_trainer_factory(
    device: Device,
) -> impl Fn(
    &DenseUNetConfig,
    &DenseUNetConfig,
    &TrainSettings,
) -> Result<Box<dyn ContrastiveTrainer>, Error> {
    move |a, b, settings| {
        Ok(Box::new(Trainer::new(a, b, settings.clone(), &device)?) as Box<dyn ContrastiveTrainer>)
    }
}

impl ContrastiveTrainer for Trainer {
    fn kind(&self) -> &'static str {
        "burn"
    }
    fn steps(&self) -> usize {
        Trainer::steps(self)
    }
    fn step(&mut self, batch: &Batch) -> Result<StepStats, Error> {
        Trainer::step(self, batch)
    }
    fn set_lr_scale(&mut self, scale: f64) {
        self.lr_scale = scale;
    }
    fn evaluate(&self, batch: &Batch) -> Result<StepStats, Error> {
        Trainer::evaluate(self, batch)
    }
    fn inference_networks(&self) -> Result<NetworkPair, Error> {
        Ok(Trainer::inference_networks(self))
    }
    fn state(&self) -> Result<TrainerState, Error> {
        Trainer::state(self)
    }
    fn restore(&mut self, state: &TrainerState) -> Result<(), Error> {
        Trainer::restore(self, state)
    }
}

/// Two networks and their optimisers.
pub struct Trainer {
    net_a: DenseUNet,
    net_b: DenseUNet,
    opt_a: burn::optim::ModuleOptimizer,
    opt_b: burn::optim::ModuleOptimizer,
    bottleneck: BottleneckSupervision,
    settings: TrainSettings,
    rng: ChaCha8Rng,
    device: Device,
    steps: usize,
    /// Factor on the optimiser's learning rate (the run's schedule).
    lr_scale: f64,
}

pub(crate) fn optimizer(settings: &TrainSettings) -> burn::optim::ModuleOptimizer {
    use burn::optim::decay::WeightDecayConfig;
    use burn::optim::grad_clipping::GradientClippingConfig;
    use burn::optim::momentum::MomentumConfig;
    let clip = settings
        .grad_clip_norm
        .map(|c| GradientClippingConfig::Norm(c as f32));
    match &settings.optimizer {
        OptimizerSettings::Sgd {
            momentum,
            weight_decay,
            ..
        } => SgdConfig::new()
            // PyTorch's SGD (the reference) has no dampening; burn's default is 0.1.
            .with_momentum(Some(
                MomentumConfig::new()
                    .with_momentum(*momentum)
                    .with_dampening(0.0),
            ))
            .with_weight_decay(Some(WeightDecayConfig::new(*weight_decay as f32)))
            .with_gradient_clipping(clip)
            .init(),
        OptimizerSettings::Adam { weight_decay, .. } => AdamConfig::new()
            .with_weight_decay(Some(WeightDecayConfig::new(*weight_decay as f32)))
            .with_grad_clipping(clip)
            .init(),
    }
}

impl Trainer {
    /// Builds both networks (weights seeded from `settings.seed`, A first, then B, as the
    /// reference does) on an autodiff version of `device`.
    ///
    /// # Errors
    /// Invalid settings or network configurations.
    pub fn new(
        model_a: &DenseUNetConfig,
        model_b: &DenseUNetConfig,
        settings: TrainSettings,
        device: &Device,
    ) -> Result<Trainer, Error> {
        settings.validate()?;
        if model_a.out_channels != model_b.out_channels {
            return Err(Error::InvalidConfig(format!(
                "both networks need the same number of output channels ({} vs {})",
                model_a.out_channels, model_b.out_channels
            )));
        }
        let device = device.clone().autodiff();
        let (net_a, net_b) = init_networks(model_a, model_b, settings.seed, &device)?;
        let bottleneck = BottleneckSupervision::new(&settings, model_a, model_b, &device)?;
        Ok(Trainer {
            bottleneck,
            net_a,
            net_b,
            opt_a: optimizer(&settings),
            opt_b: optimizer(&settings),
            rng: ChaCha8Rng::seed_from_u64(settings.seed ^ 0xC04D_1A55),
            settings,
            device,
            steps: 0,
            lr_scale: 1.0,
        })
    }

    /// The two networks (modality A, modality B).
    pub fn networks(&self) -> (&DenseUNet, &DenseUNet) {
        (&self.net_a, &self.net_b)
    }

    /// Steps done so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The two networks as they are used for inference (batch-norm running statistics, no
    /// autodiff), on the device the trainer was built for.
    pub fn inference_networks(&self) -> NetworkPair {
        NetworkPair {
            a: self.net_a.valid(),
            b: self.net_b.valid(),
        }
    }

    /// Scores a batch without training: no rotations, inference-mode networks.
    ///
    /// # Errors
    /// Wrong patch sizes or channels for the networks.
    pub fn evaluate(&self, batch: &Batch) -> Result<StepStats, Error> {
        let nets = self.inference_networks();
        let device = self.device.clone().inner();
        let (n, s) = (batch.n, batch.size);
        let xa = Tensor::<4>::from_data(
            TensorData::new(batch.a.clone(), [n, batch.channels_a, s, s]),
            &device,
        );
        let xb = Tensor::<4>::from_data(
            TensorData::new(batch.b.clone(), [n, batch.channels_b, s, s]),
            &device,
        );
        let za = nets.a.try_forward(xa)?.representation;
        let zb = nets.b.try_forward(xb)?.representation;
        Ok(evaluation_stats(
            &self.settings,
            za,
            zb,
            batch.mask.as_deref(),
        ))
    }

    /// Everything a later run needs to continue exactly where this one is: weights, batch-norm
    /// statistics, optimiser state (momentum, Adam moments), the rotation RNG and the step count.
    ///
    /// # Errors
    /// burn could not encode a record.
    pub fn state(&self) -> Result<TrainerState, Error> {
        let pair = NetworkPair {
            a: self.net_a.clone(),
            b: self.net_b.clone(),
        };
        let enc = |e: String| Error::State(e);
        Ok(TrainerState {
            steps: self.steps,
            weights: pair.to_bytes().map_err(enc)?,
            optimizer_a: self
                .opt_a
                .into_bytes()
                .map_err(|e| enc(e.to_string()))?
                .to_vec(),
            optimizer_b: self
                .opt_b
                .into_bytes()
                .map_err(|e| enc(e.to_string()))?
                .to_vec(),
            rng_word_pos: self.rng.get_word_pos(),
            bottleneck: self.bottleneck.state()?,
        })
    }

    /// Continues from a [`TrainerState`] of a trainer built with the same configurations and
    /// settings.
    ///
    /// # Errors
    /// The state does not fit these networks.
    pub fn restore(&mut self, state: &TrainerState) -> Result<(), Error> {
        let pair = NetworkPair {
            a: self.net_a.clone(),
            b: self.net_b.clone(),
        }
        .load_bytes(&state.weights)
        .map_err(Error::State)?;
        // The optimiser records are burnpack too; reject garbage before burn sees it, since its
        // loader assumes well-formed records.
        for bytes in [&state.optimizer_a, &state.optimizer_b] {
            burn::optim::OptimizerRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(
                bytes.clone(),
            ))
            .map_err(|e| Error::State(format!("optimiser state: {e}")))?;
        }
        self.opt_a = optimizer(&self.settings)
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(
                state.optimizer_a.clone(),
            ))
            .map_err(|e| Error::State(e.to_string()))?;
        self.opt_b = optimizer(&self.settings)
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(
                state.optimizer_b.clone(),
            ))
            .map_err(|e| Error::State(e.to_string()))?;
        self.bottleneck.restore(&state.bottleneck)?;
        self.net_a = pair.a;
        self.net_b = pair.b;
        self.rng.set_word_pos(state.rng_word_pos);
        self.steps = state.steps;
        Ok(())
    }

    /// One optimisation step on a batch of patch pairs.
    ///
    /// # Errors
    /// Wrong patch sizes or channels for the networks, or a non-finite loss
    /// ([`Error::Diverged`]; the networks are left as they were before the step).
    pub fn step(&mut self, batch: &Batch) -> Result<StepStats, Error> {
        // burn's own RNG (dropout) is reseeded per step so that a resumed run draws what an
        // uninterrupted one would.
        self.device
            .seed(self.settings.seed ^ (self.steps as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let (n, s) = (batch.n, batch.size);
        let xa = Tensor::<4>::from_data(
            TensorData::new(batch.a.clone(), [n, batch.channels_a, s, s]),
            &self.device,
        );
        let xb = Tensor::<4>::from_data(
            TensorData::new(batch.b.clone(), [n, batch.channels_b, s, s]),
            &self.device,
        );
        let plan = StepPlan::draw(&mut self.rng, n, self.settings.equivariance);
        let oa = self.net_a.try_forward(plan.rotate(0, xa))?;
        let ob = self.net_b.try_forward(plan.rotate(1, xb))?;
        let (ya, yb) = (oa.representation, ob.representation);
        let z = [plan.undo(0, ya.clone()), plan.undo(1, yb.clone())];
        let bottlenecks = self
            .bottleneck
            .is_on()
            .then_some([oa.bottleneck, ob.bottleneck]);
        let StepLoss { loss, stats } = step_loss(
            &self.settings,
            &self.bottleneck,
            &plan,
            z,
            [ya, yb],
            bottlenecks,
            batch.mask.as_deref(),
            self.steps,
        )?;
        let mut grads = loss.backward();
        let ga = GradientsParams::from_module(&mut grads, &self.net_a);
        let gb = GradientsParams::from_module(&mut grads, &self.net_b);
        let lr = self.settings.optimizer.lr() * self.lr_scale;
        self.net_a = self.opt_a.step(lr, self.net_a.clone(), ga);
        self.net_b = self.opt_b.step(lr, self.net_b.clone(), gb);
        self.bottleneck.update(&mut grads, lr);
        self.steps += 1;
        Ok(stats)
    }
}
