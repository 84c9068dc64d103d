//! [`FastTrainer`]: the step of `comir_train::Trainer` on two [`FastDenseUNet`]s.
//!
//! The networks run on the engine; the loss (InfoNCE + activation decay) and its gradient
//! w.r.t. the two representations are computed with burn autodiff on the small
//! representation tensors, using `comir_model::loss` itself, so the loss code is shared.

use burn::tensor::{Device, Tensor, TensorData};
use comir_data::Batch;
use comir_model::loss::{activation_decay, info_nce, scalar};
use comir_train::{OptimizerSettings, StepStats, TrainSettings};
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
    settings: TrainSettings,
    clipping: Clipping,
    rng: ChaCha8Rng,
    device: Device,
    steps: usize,
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
        Ok(Self {
            opts: [Opt::new(&settings.optimizer), Opt::new(&settings.optimizer)],
            nets: [net_a, net_b],
            ws: [Workspace::new(), Workspace::new()],
            grads: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(settings.seed ^ 0xC04D_1A55),
            settings,
            clipping,
            device: Device::flex().autodiff(),
            steps: 0,
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

    /// One optimisation step on a batch of patch pairs.
    ///
    /// # Errors
    /// Wrong patch sizes or channels, or a non-finite loss (`Error::Config` naming the step;
    /// the networks' weights are left as they were).
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
        let positive_mse = scalar((ta.clone() - tb.clone()).powf_scalar(2.0).mean().detach());
        let contrastive = info_nce(
            ta.clone(),
            tb.clone(),
            self.settings.critic,
            self.settings.tau,
        );
        let mut loss = contrastive.clone();
        if self.settings.l1_decay > 0.0 {
            loss = loss + activation_decay(&[ta.clone(), tb.clone()], 1.0) * self.settings.l1_decay;
        }
        if self.settings.l2_decay > 0.0 {
            loss = loss + activation_decay(&[ta.clone(), tb.clone()], 2.0) * self.settings.l2_decay;
        }
        let loss_value = scalar(loss.clone().detach());
        if !loss_value.is_finite() {
            return Err(Error::Config(format!(
                "training diverged at step {}: the loss is {loss_value}",
                self.steps
            )));
        }
        let grads = loss.backward();
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
        let lr = match self.settings.optimizer {
            OptimizerSettings::Sgd { lr, .. } | OptimizerSettings::Adam { lr, .. } => lr as f32,
        };
        for (k, dy) in [dya, dyb].iter().enumerate() {
            self.nets[k].backward(&mut self.ws[k], dy, None, &mut self.grads)?;
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
        self.steps += 1;
        Ok(StepStats {
            loss: loss_value,
            contrastive: scalar(contrastive.detach()),
            positive_mse,
        })
    }
}
