//! [`FastTrainer`]: the step of [`crate::Trainer`] on two [`FastDenseUNet`]s of the CPU
//! engine (`comir_engine`).
//!
//! The networks run on the engine; the loss and its gradient w.r.t. the two representations
//! (and bottlenecks) are computed with burn autodiff on those small tensors by the step code
//! both trainers share ([`crate::step`]): the same rotations, the same loss.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use comir_data::Batch;
use comir_engine::optim::{clip_per_param_norm, clip_total_norm, Adam, Sgd};
use comir_engine::{supports, FastDenseUNet, Workspace};
use comir_model::{DenseUNetConfig, NetworkPair};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::step::{evaluation_stats, step_loss, StepLoss, StepPlan};
use crate::{
    BottleneckSupervision, ContrastiveTrainer, Error, OptimizerSettings, StepStats, TrainSettings,
    TrainerState,
};

/// How gradients are clipped (per network).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Clipping {
    /// PyTorch `clip_grad_norm_(params, max_norm)`: the total norm of the network (the
    /// reference's behaviour).
    TotalNorm(f32),
    /// burn's per-parameter norm clipping (what [`crate::Trainer`] does).
    PerParameter(f32),
    /// No clipping.
    None,
}

enum Opt {
    Sgd(Sgd),
    Adam(Adam),
}

impl Opt {
    fn new(settings: &OptimizerSettings) -> Self {
        match settings {
            // Dampening 0, as PyTorch's SGD (and comir-train) use.
            OptimizerSettings::Sgd {
                momentum,
                weight_decay,
                ..
            } => Opt::Sgd(Sgd::new(*momentum as f32, 0.0, *weight_decay as f32)),
            OptimizerSettings::Adam { weight_decay, .. } => {
                Opt::Adam(Adam::burn_default(*weight_decay as f32))
            }
        }
    }

    fn step(&mut self, lr: f32, params: &mut [f32], grads: &[f32]) {
        match self {
            Opt::Sgd(o) => o.step(lr, params, grads),
            Opt::Adam(o) => o.step(lr, params, grads),
        }
    }
}

/// Two engine networks and their optimisers, with the step of [`crate::Trainer::step`] (the
/// shared [`StepPlan`] and loss; one optimiser per network).
pub struct FastTrainer {
    nets: [FastDenseUNet; 2],
    ws: [Workspace; 2],
    opts: [Opt; 2],
    grads: Vec<f32>,
    bottleneck: BottleneckSupervision,
    settings: TrainSettings,
    clipping: Clipping,
    rng: ChaCha8Rng,
    device: Device,
    steps: usize,
    /// Factor on the optimiser's learning rate (the run's schedule).
    lr_scale: f64,
}

impl FastTrainer {
    /// A trainer for two networks (modality A, modality B) with these settings and a clipping
    /// mode (`settings.grad_clip_norm` is ignored in favour of `clipping`). The rotations are
    /// drawn as [`crate::Trainer`] draws them from the same seed.
    ///
    /// # Errors
    /// Invalid settings, or networks with different output channels.
    pub fn new(
        net_a: FastDenseUNet,
        net_b: FastDenseUNet,
        settings: TrainSettings,
        clipping: Clipping,
    ) -> Result<Self, Error> {
        settings.validate()?;
        if net_a.out_channels() != net_b.out_channels() {
            return Err(Error::InvalidConfig(
                "both networks need the same number of output channels".into(),
            ));
        }
        let device = Device::flex().autodiff();
        let bottleneck =
            BottleneckSupervision::new(&settings, net_a.config(), net_b.config(), &device)?;
        Ok(Self {
            bottleneck,
            opts: [Opt::new(&settings.optimizer), Opt::new(&settings.optimizer)],
            nets: [net_a, net_b],
            ws: [Workspace::new(), Workspace::new()],
            grads: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(settings.seed ^ 0xC04D_1A55),
            settings,
            clipping,
            device,
            steps: 0,
            lr_scale: 1.0,
        })
    }

    /// The two networks (modality A, modality B).
    pub fn networks(&self) -> (&FastDenseUNet, &FastDenseUNet) {
        (&self.nets[0], &self.nets[1])
    }

    /// Steps done so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Both networks built and seeded exactly as [`crate::Trainer::new`] builds them (burn's
    /// initialisation from `settings.seed`, A first, then B), so both trainers start from the
    /// same weights. Gradients are clipped per parameter tensor (`settings.grad_clip_norm`) as
    /// burn's trainer clips them, so both trainers take the same steps (the reference clips
    /// each network's total norm; see the crate documentation).
    ///
    /// # Errors
    /// Invalid settings, or a configuration the engine does not run
    /// (see [`comir_engine::supports`]).
    pub fn from_configs(
        a: &DenseUNetConfig,
        b: &DenseUNetConfig,
        settings: TrainSettings,
    ) -> Result<Self, Error> {
        settings.validate()?;
        for c in [a, b] {
            supports(c).map_err(Error::InvalidConfig)?;
        }
        let (na, nb) = crate::init_networks(a, b, settings.seed, &Device::flex().autodiff())?;
        let ea = FastDenseUNet::from_burn(&na, a).map_err(backend)?;
        let eb = FastDenseUNet::from_burn(&nb, b).map_err(backend)?;
        let clipping = settings
            .grad_clip_norm
            .map_or(Clipping::None, |c| Clipping::PerParameter(c as f32));
        Self::new(ea, eb, settings, clipping)
    }

    /// Scores a batch without training: no rotations, running statistics (as
    /// [`crate::Trainer::evaluate`]).
    ///
    /// # Errors
    /// Wrong patch sizes or channels.
    pub fn evaluate(&self, batch: &Batch) -> Result<StepStats, Error> {
        comir_cpu::on_pool(|| self.evaluate_on_pool(batch))
    }

    fn evaluate_on_pool(&self, batch: &Batch) -> Result<StepStats, Error> {
        let (n, s) = (batch.n, batch.size);
        let d = self.nets[0].out_channels();
        let oa = self.nets[0]
            .forward_inference(&batch.a, n, s, s)
            .map_err(backend)?;
        let ob = self.nets[1]
            .forward_inference(&batch.b, n, s, s)
            .map_err(backend)?;
        let device = Device::flex();
        let t = |z: Vec<f32>| Tensor::<4>::from_data(TensorData::new(z, [n, d, s, s]), &device);
        Ok(evaluation_stats(
            &self.settings,
            t(oa.representation),
            t(ob.representation),
            batch.mask.as_deref(),
        ))
    }

    /// Both networks as burn modules on the CPU (inference mode).
    ///
    /// # Errors
    /// The conversion failed.
    pub fn burn_networks(&self) -> Result<NetworkPair, Error> {
        let device = Device::flex();
        Ok(NetworkPair {
            a: self.nets[0].to_burn(&device).map_err(backend)?.valid(),
            b: self.nets[1].to_burn(&device).map_err(backend)?.valid(),
        })
    }

    /// Weights, running statistics, optimiser states, the rotation RNG and the step count; the
    /// weights are in the format of [`crate::Trainer::state`] (a [`NetworkPair`] record), the
    /// optimiser states in the engine's own format.
    ///
    /// # Errors
    /// The conversion failed.
    pub fn state(&self) -> Result<TrainerState, Error> {
        Ok(TrainerState {
            steps: self.steps,
            weights: self.burn_networks()?.to_bytes().map_err(Error::State)?,
            optimizer_a: encode_optimizer(&self.opts[0]),
            optimizer_b: encode_optimizer(&self.opts[1]),
            rng_word_pos: self.rng.get_word_pos(),
            bottleneck: self.bottleneck.state()?,
        })
    }

    /// Continues from a state written by [`FastTrainer::state`] for the same networks and
    /// settings.
    ///
    /// # Errors
    /// [`Error::State`]: the state does not fit.
    pub fn restore(&mut self, state: &TrainerState) -> Result<(), Error> {
        let pair = self
            .burn_networks()?
            .load_bytes(&state.weights)
            .map_err(Error::State)?;
        let opt_a = decode_optimizer(
            &state.optimizer_a,
            &self.settings,
            self.nets[0].num_params(),
        )?;
        let opt_b = decode_optimizer(
            &state.optimizer_b,
            &self.settings,
            self.nets[1].num_params(),
        )?;
        let unfit = |e: comir_engine::Error| Error::State(e.to_string());
        let na = FastDenseUNet::from_burn(&pair.a, self.nets[0].config()).map_err(unfit)?;
        let nb = FastDenseUNet::from_burn(&pair.b, self.nets[1].config()).map_err(unfit)?;
        self.bottleneck.restore(&state.bottleneck)?;
        self.nets = [na, nb];
        self.opts = [opt_a, opt_b];
        self.ws = [Workspace::new(), Workspace::new()];
        self.rng.set_word_pos(state.rng_word_pos);
        self.steps = state.steps;
        Ok(())
    }

    /// One optimisation step on a batch of patch pairs.
    ///
    /// # Errors
    /// Wrong patch sizes or channels, or a non-finite loss ([`Error::Diverged`]; the
    /// networks' weights are left as they were).
    pub fn step(&mut self, batch: &Batch) -> Result<StepStats, Error> {
        // On the pool, so that the step's many parallel loops start there.
        comir_cpu::on_pool(|| self.step_on_pool(batch))
    }

    fn step_on_pool(&mut self, batch: &Batch) -> Result<StepStats, Error> {
        let (n, s) = (batch.n, batch.size);
        let plan = StepPlan::draw(&mut self.rng, n, self.settings.equivariance);
        let xa = plan.rotate_values(0, &batch.a, batch.channels_a, s);
        let xb = plan.rotate_values(1, &batch.b, batch.channels_b, s);
        self.nets[0]
            .forward_train(&xa, n, s, s, &mut self.ws[0])
            .map_err(backend)?;
        self.nets[1]
            .forward_train(&xb, n, s, s, &mut self.ws[1])
            .map_err(backend)?;
        let d = self.nets[0].out_channels();
        // The loss on leaves za, zb in the inputs' frame. The activation decay sums |y|^p,
        // which is rotation invariant, so it is computed on these leaves too, with the same
        // value and gradient as on the raw outputs.
        let za = plan.undo_values(0, self.ws[0].representation(), d, s);
        let zb = plan.undo_values(1, self.ws[1].representation(), d, s);
        let leaf = |z: Vec<f32>| {
            Tensor::<4>::from_data(TensorData::new(z, [n, d, s, s]), &self.device).require_grad()
        };
        let (ta, tb) = (leaf(za), leaf(zb));
        // The bottleneck term on leaves in the networks' (rotated) frames; the shared step
        // undoes the rotations as burn's trainer does.
        let bottleneck_leaves = if self.bottleneck.is_on() {
            let cb = self.nets[0].bottleneck_channels();
            let hb = s / self.nets[0].required_multiple();
            let leaf = |z: Vec<f32>| {
                Tensor::<4>::from_data(TensorData::new(z, [n, cb, hb, hb]), &self.device)
                    .require_grad()
            };
            Some([leaf(self.ws[0].bottleneck()), leaf(self.ws[1].bottleneck())])
        } else {
            None
        };
        let StepLoss { loss, stats } = step_loss(
            &self.settings,
            &self.bottleneck,
            &plan,
            [ta.clone(), tb.clone()],
            [ta.clone(), tb.clone()],
            bottleneck_leaves.clone(),
            batch.mask.as_deref(),
            self.steps,
        )?;
        let mut grads = loss.backward();
        let grad_of = |t: &Tensor<4>| -> Result<Vec<f32>, Error> {
            t.grad(&grads)
                .ok_or_else(|| Error::Backend("no gradient for a representation".into()))?
                .into_data()
                .try_into_vec_as::<f32>()
                .map_err(|e| Error::Backend(format!("{e:?}")))
        };
        // The gradient of undoing the rotation is rotating.
        let dya = plan.rotate_values(0, &grad_of(&ta)?, d, s);
        let dyb = plan.rotate_values(1, &grad_of(&tb)?, d, s);
        let lr64 = self.settings.optimizer.lr() * self.lr_scale;
        let lr = lr64 as f32;
        let dbott = match &bottleneck_leaves {
            Some([ba, bb]) => [Some(grad_of(ba)?), Some(grad_of(bb)?)],
            None => [None, None],
        };
        for (k, dy) in [dya, dyb].iter().enumerate() {
            self.nets[k]
                .backward(&mut self.ws[k], dy, dbott[k].as_deref(), &mut self.grads)
                .map_err(backend)?;
            match self.clipping {
                Clipping::TotalNorm(c) => {
                    clip_total_norm(&mut self.grads, c);
                }
                Clipping::PerParameter(c) => {
                    clip_per_param_norm(&mut self.grads, self.nets[k].param_specs(), c)
                }
                Clipping::None => {}
            }
            self.opts[k].step(lr, self.nets[k].params_mut(), &self.grads);
        }
        self.bottleneck.update(&mut grads, lr64);
        self.steps += 1;
        Ok(stats)
    }
}

/// An engine error as this crate's: bad configurations and inputs keep their kind, the rest
/// is the backend's.
fn backend(e: comir_engine::Error) -> Error {
    match e {
        comir_engine::Error::Config(m) => Error::InvalidConfig(m),
        comir_engine::Error::Model(m) => Error::Model(m),
        other => Error::Backend(other.to_string()),
    }
}

/// A [`crate::TrainerFactory`] building [`FastTrainer`]s (see [`FastTrainer::from_configs`]).
pub fn engine_trainer_factory() -> impl Fn(
    &DenseUNetConfig,
    &DenseUNetConfig,
    &TrainSettings,
) -> Result<Box<dyn ContrastiveTrainer>, Error> {
    |a, b, settings| {
        Ok(Box::new(FastTrainer::from_configs(a, b, settings.clone())?)
            as Box<dyn ContrastiveTrainer>)
    }
}

impl ContrastiveTrainer for FastTrainer {
    fn kind(&self) -> &'static str {
        "engine"
    }
    fn steps(&self) -> usize {
        self.steps
    }
    fn step(&mut self, batch: &Batch) -> Result<StepStats, Error> {
        FastTrainer::step(self, batch)
    }
    fn set_lr_scale(&mut self, scale: f64) {
        self.lr_scale = scale;
    }
    fn evaluate(&self, batch: &Batch) -> Result<StepStats, Error> {
        FastTrainer::evaluate(self, batch)
    }
    fn inference_networks(&self) -> Result<NetworkPair, Error> {
        self.burn_networks()
    }
    fn state(&self) -> Result<TrainerState, Error> {
        FastTrainer::state(self)
    }
    fn restore(&mut self, state: &TrainerState) -> Result<(), Error> {
        FastTrainer::restore(self, state)
    }
}

const OPTIMIZER_MAGIC: &[u8; 8] = b"COMIROPT";

fn push_vec(out: &mut Vec<u8>, v: &[f32]) {
    out.extend_from_slice(&(v.len() as u64).to_le_bytes());
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

/// `COMIROPT`, a kind byte (0 SGD, 1 Adam), then SGD: a flag and the velocity, Adam: the step
/// count and both moments; vectors as a u64 length and little-endian f32s.
fn encode_optimizer(opt: &Opt) -> Vec<u8> {
    let mut out = OPTIMIZER_MAGIC.to_vec();
    match opt {
        Opt::Sgd(o) => {
            out.push(0);
            match o.velocity() {
                Some(v) => {
                    out.push(1);
                    push_vec(&mut out, v);
                }
                None => out.push(0),
            }
        }
        Opt::Adam(o) => {
            out.push(1);
            let (t, m, v) = o.moments();
            out.extend_from_slice(&t.to_le_bytes());
            push_vec(&mut out, m);
            push_vec(&mut out, v);
        }
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Error> {
        if self.0.len() < n {
            return Err(Error::State("truncated optimiser state".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn byte(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }
    fn vec(&mut self, expected: usize) -> Result<Vec<f32>, Error> {
        let mut len = [0u8; 8];
        len.copy_from_slice(self.take(8)?);
        let len = u64::from_le_bytes(len);
        if len != expected as u64 {
            return Err(Error::State(format!(
                "optimiser state for {len} parameters, the network has {expected}"
            )));
        }
        Ok(self
            .take(expected * 4)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

fn decode_optimizer(bytes: &[u8], settings: &TrainSettings, params: usize) -> Result<Opt, Error> {
    let mut r = Reader(bytes);
    if r.take(8).ok() != Some(OPTIMIZER_MAGIC.as_slice()) {
        return Err(Error::State(
            "not an optimiser state of the CPU engine".into(),
        ));
    }
    let mut opt = Opt::new(&settings.optimizer);
    match (r.byte()?, &mut opt) {
        (0, Opt::Sgd(o)) => {
            let velocity = match r.byte()? {
                0 => None,
                _ => Some(r.vec(params)?),
            };
            o.set_velocity(velocity);
        }
        (1, Opt::Adam(o)) => {
            let mut t = [0u8; 4];
            t.copy_from_slice(r.take(4)?);
            let m = r.vec(params)?;
            let v = r.vec(params)?;
            o.set_moments(i32::from_le_bytes(t), m, v);
        }
        _ => {
            return Err(Error::State(
                "the optimiser state is for another optimiser".into(),
            ))
        }
    }
    if !r.0.is_empty() {
        return Err(Error::State(
            "trailing bytes after the optimiser state".into(),
        ));
    }
    Ok(opt)
}
