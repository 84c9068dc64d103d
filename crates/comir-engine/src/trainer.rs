//! [`FastTrainer`]: the step of `comir_train::Trainer` on two [`FastDenseUNet`]s.
//!
//! The networks run on the engine; the loss (InfoNCE + activation decay) and its gradient
//! w.r.t. the two representations are computed with burn autodiff on the small
//! representation tensors, using `comir_model::loss` itself, so the loss code is shared.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use comir_data::Batch;
use comir_model::loss::{activation_decay, info_nce, scalar};
use comir_model::{DenseUNetConfig, NetworkPair};
use comir_train::{
    BottleneckSupervision, ContrastiveTrainer, OptimizerSettings, StepStats, TrainSettings,
    TrainerState,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::optim::{clip_per_param_norm, clip_total_norm, Adam, Sgd};
use crate::{Error, FastDenseUNet, Workspace};

/// How gradients are clipped (per network).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Clipping {
    /// PyTorch `clip_grad_norm_(params, max_norm)`: the total norm of the network (the
    /// reference's behaviour).
    TotalNorm(f32),
    /// burn's per-parameter norm clipping (what `comir_train::Trainer` does).
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

/// Two engine networks and their optimisers, with the step semantics of
/// `comir_train::Trainer::step` (C4 rotations per sample and modality undone on the outputs,
/// InfoNCE with the configured critic and τ, L1/L2 activation decay on the raw outputs, one
/// optimiser per network).
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

/// Rotates every `[c][s][s]` sample `i` by `k[i]·90°` counter-clockwise like `torch.rot90`
/// (k = 1: `out[i][j] = x[j][s − 1 − i]`).
fn rot90(x: &[f32], n: usize, c: usize, s: usize, k: &[usize]) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for (i, &ki) in k.iter().enumerate().take(n) {
        for ch in 0..c {
            let base = (i * c + ch) * s * s;
            let src = &x[base..base + s * s];
            let dst = &mut out[base..base + s * s];
            for r in 0..s {
                for col in 0..s {
                    let (sr, sc) = match ki % 4 {
                        0 => (r, col),
                        1 => (col, s - 1 - r),
                        2 => (s - 1 - r, s - 1 - col),
                        _ => (s - 1 - col, r),
                    };
                    dst[r * s + col] = src[sr * s + sc];
                }
            }
        }
    }
    out
}

fn inverse(k: &[usize]) -> Vec<usize> {
    k.iter().map(|&ki| (4 - ki % 4) % 4).collect()
}

impl FastTrainer {
    /// A trainer for two networks (modality A, modality B) with `comir_train` settings and a
    /// clipping mode (`settings.grad_clip_norm` is ignored in favour of `clipping`). The
    /// rotations are drawn like `comir_train::Trainer` draws them from the same seed.
    ///
    /// # Errors
    /// Invalid settings, or networks with different output channels.
    pub fn new(
        net_a: FastDenseUNet,
        net_b: FastDenseUNet,
        settings: TrainSettings,
        clipping: Clipping,
    ) -> Result<Self, Error> {
        settings
            .validate()
            .map_err(|e| Error::Config(e.to_string()))?;
        if net_a.out_channels() != net_b.out_channels() {
            return Err(Error::Config(
                "both networks need the same number of output channels".into(),
            ));
        }
        let device = Device::flex().autodiff();
        let bottleneck =
            BottleneckSupervision::new(&settings, net_a.config(), net_b.config(), &device)
                .map_err(|e| Error::Config(e.to_string()))?;
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

    /// Both networks built and seeded exactly as `comir_train::Trainer::new` builds them
    /// (burn's initialisation from `settings.seed`, A first, then B), so both trainers start
    /// from the same weights. Gradients are clipped per parameter tensor
    /// (`settings.grad_clip_norm`) as burn's trainer clips them, so both trainers take the same
    /// steps (the reference clips each network's total norm; see comir-train's docs).
    ///
    /// # Errors
    /// Invalid settings, or a configuration the engine does not run (see [`supports`]).
    pub fn from_configs(
        a: &DenseUNetConfig,
        b: &DenseUNetConfig,
        settings: TrainSettings,
    ) -> Result<Self, comir_train::Error> {
        settings.validate()?;
        for c in [a, b] {
            supports(c).map_err(comir_train::Error::InvalidConfig)?;
        }
        let (na, nb) = comir_train::init_networks(a, b, settings.seed, &Device::flex().autodiff())?;
        let ea = FastDenseUNet::from_burn(&na, a).map_err(to_train_error)?;
        let eb = FastDenseUNet::from_burn(&nb, b).map_err(to_train_error)?;
        let clipping = settings
            .grad_clip_norm
            .map_or(Clipping::None, |c| Clipping::PerParameter(c as f32));
        Self::new(ea, eb, settings, clipping).map_err(to_train_error)
    }

    /// Scores a batch without training: no rotations, running statistics (as
    /// `comir_train::Trainer::evaluate`).
    ///
    /// # Errors
    /// Wrong patch sizes or channels.
    pub fn evaluate(&self, batch: &Batch) -> Result<StepStats, Error> {
        let (n, s) = (batch.n, batch.size);
        let d = self.nets[0].out_channels();
        let oa = self.nets[0].forward_inference(&batch.a, n, s, s)?;
        let ob = self.nets[1].forward_inference(&batch.b, n, s, s)?;
        let device = Device::flex();
        let t = |z: Vec<f32>| Tensor::<4>::from_data(TensorData::new(z, [n, d, s, s]), &device);
        let (za, zb) = (t(oa.representation), t(ob.representation));
        let positive_mse = scalar((za.clone() - zb.clone()).powf_scalar(2.0).mean());
        let contrastive = scalar(info_nce(za, zb, self.settings.critic, self.settings.tau));
        Ok(StepStats {
            loss: contrastive,
            contrastive,
            bottleneck: 0.0,
            positive_mse,
        })
    }

    /// Both networks as burn modules on the CPU (inference mode).
    ///
    /// # Errors
    /// The conversion failed.
    pub fn burn_networks(&self) -> Result<NetworkPair, Error> {
        let device = Device::flex();
        Ok(NetworkPair {
            a: self.nets[0].to_burn(&device)?.valid(),
            b: self.nets[1].to_burn(&device)?.valid(),
        })
    }

    /// Weights, running statistics, optimiser states, the rotation RNG and the step count; the
    /// weights are in the format of `comir_train::Trainer::state` (a [`NetworkPair`] record),
    /// the optimiser states in the engine's own format.
    ///
    /// # Errors
    /// The conversion failed.
    pub fn state(&self) -> Result<TrainerState, Error> {
        Ok(TrainerState {
            steps: self.steps,
            weights: self.burn_networks()?.to_bytes().map_err(Error::Convert)?,
            optimizer_a: encode_optimizer(&self.opts[0]),
            optimizer_b: encode_optimizer(&self.opts[1]),
            rng_word_pos: self.rng.get_word_pos(),
            bottleneck: self
                .bottleneck
                .state()
                .map_err(|e| Error::Convert(e.to_string()))?,
        })
    }

    /// Continues from a state written by [`FastTrainer::state`] for the same networks and
    /// settings.
    ///
    /// # Errors
    /// The state does not fit.
    pub fn restore(&mut self, state: &TrainerState) -> Result<(), Error> {
        let pair = self
            .burn_networks()?
            .load_bytes(&state.weights)
            .map_err(Error::Convert)?;
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
        let na = FastDenseUNet::from_burn(&pair.a, self.nets[0].config())?;
        let nb = FastDenseUNet::from_burn(&pair.b, self.nets[1].config())?;
        self.bottleneck
            .restore(&state.bottleneck)
            .map_err(|e| Error::Convert(e.to_string()))?;
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
        let (n, s) = (batch.n, batch.size);
        let draw = |rng: &mut ChaCha8Rng| -> Vec<usize> {
            if self.settings.equivariance {
                (0..n).map(|_| rng.gen_range(0..4)).collect()
            } else {
                vec![0; n]
            }
        };
        let ka = draw(&mut self.rng);
        let kb = draw(&mut self.rng);
        let xa = rot90(&batch.a, n, batch.channels_a, s, &ka);
        let xb = rot90(&batch.b, n, batch.channels_b, s, &kb);
        self.nets[0].forward_train(&xa, n, s, s, &mut self.ws[0])?;
        self.nets[1].forward_train(&xb, n, s, s, &mut self.ws[1])?;
        let d = self.nets[0].out_channels();
        let za = rot90(self.ws[0].representation(), n, d, s, &inverse(&ka));
        let zb = rot90(self.ws[1].representation(), n, d, s, &inverse(&kb));
        // Loss on leaves za, zb. The activation decay sums |y|^p, which is rotation invariant,
        // so it is computed on the un-rotated outputs with the same value and gradient.
        let leaf = |z: Vec<f32>| {
            Tensor::<4>::from_data(TensorData::new(z, [n, d, s, s]), &self.device).require_grad()
        };
        let (ta, tb) = (leaf(za), leaf(zb));
        let positive_sq = (ta.clone() - tb.clone()).powf_scalar(2.0).mean();
        let positive_mse = scalar(positive_sq.clone().detach());
        let contrastive = info_nce(
            ta.clone(),
            tb.clone(),
            self.settings.critic,
            self.settings.tau,
        );
        let mut loss = contrastive.clone();
        if self.settings.align_weight > 0.0 {
            loss = loss + positive_sq * self.settings.align_weight;
        }
        // The bottleneck term on leaves in the networks' (rotated) frames; the shared
        // comir_train code undoes the rotations as burn's trainer does.
        let mut bottleneck = 0.0;
        let bottleneck_leaves = if self.bottleneck.is_on() {
            let cb = self.nets[0].bottleneck_channels();
            let hb = s / self.nets[0].required_multiple();
            let leaf = |z: Vec<f32>| {
                Tensor::<4>::from_data(TensorData::new(z, [n, cb, hb, hb]), &self.device)
                    .require_grad()
            };
            let (ba, bb) = (leaf(self.ws[0].bottleneck()), leaf(self.ws[1].bottleneck()));
            let lb = self.bottleneck.loss(ba.clone(), bb.clone(), &ka, &kb);
            bottleneck = scalar(lb.clone().detach());
            loss = loss + lb * self.bottleneck.weight();
            Some((ba, bb))
        } else {
            None
        };
        if self.settings.l1_decay > 0.0 {
            loss = loss + activation_decay(&[ta.clone(), tb.clone()], 1.0) * self.settings.l1_decay;
        }
        if self.settings.l2_decay > 0.0 {
            loss = loss + activation_decay(&[ta.clone(), tb.clone()], 2.0) * self.settings.l2_decay;
        }
        let loss_value = scalar(loss.clone().detach());
        if !loss_value.is_finite() {
            return Err(Error::Diverged {
                step: self.steps + 1,
                loss: loss_value,
            });
        }
        let mut grads = loss.backward();
        let grad_of = |t: &Tensor<4>| -> Result<Vec<f32>, Error> {
            t.grad(&grads)
                .ok_or_else(|| Error::Shape("no gradient for a representation".into()))?
                .into_data()
                .try_into_vec_as::<f32>()
                .map_err(|e| Error::Shape(format!("{e:?}")))
        };
        // The gradient of un-rotating is rotating.
        let dya = rot90(&grad_of(&ta)?, n, d, s, &ka);
        let dyb = rot90(&grad_of(&tb)?, n, d, s, &kb);
        let lr64 = self.settings.optimizer.lr() * self.lr_scale;
        let lr = lr64 as f32;
        let dbott = match &bottleneck_leaves {
            Some((ba, bb)) => [Some(grad_of(ba)?), Some(grad_of(bb)?)],
            None => [None, None],
        };
        for (k, dy) in [dya, dyb].iter().enumerate() {
            self.nets[k].backward(&mut self.ws[k], dy, dbott[k].as_deref(), &mut self.grads)?;
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
        Ok(StepStats {
            loss: loss_value,
            contrastive: scalar(contrastive.detach()),
            bottleneck,
            positive_mse,
        })
    }
}

/// `Ok` when the engine runs networks of this configuration (everything but dropout), else
/// why not.
pub fn supports(config: &DenseUNetConfig) -> Result<(), String> {
    if config.dropout != 0.0 {
        return Err(format!(
            "the CPU engine does not implement dropout (got {}); use the burn trainer",
            config.dropout
        ));
    }
    Ok(())
}

fn to_train_error(e: Error) -> comir_train::Error {
    match e {
        Error::Config(m) => comir_train::Error::InvalidConfig(m),
        Error::Model(m) => comir_train::Error::Model(m),
        Error::Diverged { step, loss } => comir_train::Error::Diverged { step, loss },
        other => comir_train::Error::Backend(other.to_string()),
    }
}

/// A `comir_train::TrainerFactory` building [`FastTrainer`]s (see [`FastTrainer::from_configs`]).
pub fn engine_trainer_factory() -> impl Fn(
    &DenseUNetConfig,
    &DenseUNetConfig,
    &TrainSettings,
) -> Result<Box<dyn ContrastiveTrainer>, comir_train::Error> {
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
    fn step(&mut self, batch: &Batch) -> Result<StepStats, comir_train::Error> {
        FastTrainer::step(self, batch).map_err(to_train_error)
    }
    fn set_lr_scale(&mut self, scale: f64) {
        self.lr_scale = scale;
    }
    fn evaluate(&self, batch: &Batch) -> Result<StepStats, comir_train::Error> {
        FastTrainer::evaluate(self, batch).map_err(to_train_error)
    }
    fn inference_networks(&self) -> Result<NetworkPair, comir_train::Error> {
        self.burn_networks().map_err(to_train_error)
    }
    fn state(&self) -> Result<TrainerState, comir_train::Error> {
        FastTrainer::state(self).map_err(to_train_error)
    }
    fn restore(&mut self, state: &TrainerState) -> Result<(), comir_train::Error> {
        FastTrainer::restore(self, state).map_err(|e| comir_train::Error::State(e.to_string()))
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
            return Err(Error::Convert("truncated optimiser state".into()));
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
            return Err(Error::Convert(format!(
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
        return Err(Error::Convert(
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
            return Err(Error::Convert(
                "the optimiser state is for another optimiser".into(),
            ))
        }
    }
    if !r.0.is_empty() {
        return Err(Error::Convert(
            "trailing bytes after the optimiser state".into(),
        ));
    }
    Ok(opt)
}
