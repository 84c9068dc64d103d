//! Optimisers and gradient clipping on flat parameter buffers, with the semantics of burn
//! 0.22's `Sgd` / `Adam` (as configured by `comir-train`) and of PyTorch's
//! `clip_grad_norm_`.

use crate::net::ParamSpec;

/// SGD with momentum and L2 weight decay, as burn's `Sgd`:
/// `g ← g + λ·θ`; `v ← g` on the first step, else `v ← μ·v + (1 − dampening)·g`;
/// `θ ← θ − lr·v`. burn's `MomentumConfig` defaults to dampening 0.1 (PyTorch: 0).
#[derive(Debug, Clone)]
pub struct Sgd {
    /// Momentum μ (0 disables the velocity).
    pub momentum: f32,
    /// Dampening of the new gradient in the velocity update.
    pub dampening: f32,
    /// L2 weight decay λ.
    pub weight_decay: f32,
    velocity: Option<Vec<f32>>,
}

impl Sgd {
    /// A fresh optimiser (no velocity yet).
    pub fn new(momentum: f32, dampening: f32, weight_decay: f32) -> Self {
        Self {
            momentum,
            dampening,
            weight_decay,
            velocity: None,
        }
    }

    /// One update of `params` with `grads` (same length) and learning rate `lr`.
    ///
    /// # Panics
    /// Panics if the lengths differ.
    pub fn step(&mut self, lr: f32, params: &mut [f32], grads: &[f32]) {
        assert_eq!(params.len(), grads.len(), "Sgd::step: length mismatch");
        let (mu, damp, wd) = (self.momentum, self.dampening, self.weight_decay);
        match &mut self.velocity {
            None if mu != 0.0 => {
                let v: Vec<f32> = params
                    .iter()
                    .zip(grads)
                    .map(|(&p, &g)| p * wd + g)
                    .collect();
                for (p, &vv) in params.iter_mut().zip(&v) {
                    *p -= vv * lr;
                }
                self.velocity = Some(v);
            }
            Some(v) if mu != 0.0 => {
                for ((p, vv), &g) in params.iter_mut().zip(v.iter_mut()).zip(grads) {
                    let g = *p * wd + g;
                    *vv = g * (1.0 - damp) + *vv * mu;
                    *p -= *vv * lr;
                }
            }
            _ => {
                for (p, &g) in params.iter_mut().zip(grads) {
                    let g = *p * wd + g;
                    *p -= g * lr;
                }
            }
        }
    }
}

impl Sgd {
    /// The velocity (`None` before the first step or without momentum).
    pub fn velocity(&self) -> Option<&[f32]> {
        self.velocity.as_deref()
    }

    /// Replaces the velocity (to continue a saved run).
    pub fn set_velocity(&mut self, velocity: Option<Vec<f32>>) {
        self.velocity = velocity;
    }
}

/// Adam with L2 weight decay added to the gradient, as burn's `Adam` (β₁ 0.9, β₂ 0.999,
/// ε 1e-5 by default in burn; PyTorch uses ε 1e-8).
#[derive(Debug, Clone)]
pub struct Adam {
    /// β₁.
    pub beta1: f32,
    /// β₂.
    pub beta2: f32,
    /// ε.
    pub epsilon: f32,
    /// L2 weight decay λ.
    pub weight_decay: f32,
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl Adam {
    /// A fresh optimiser.
    pub fn new(beta1: f32, beta2: f32, epsilon: f32, weight_decay: f32) -> Self {
        Self {
            beta1,
            beta2,
            epsilon,
            weight_decay,
            m: Vec::new(),
            v: Vec::new(),
            t: 0,
        }
    }

    /// burn's defaults with the given weight decay.
    pub fn burn_default(weight_decay: f32) -> Self {
        Self::new(0.9, 0.999, 1e-5, weight_decay)
    }

    /// One update of `params` with `grads` (same length) and learning rate `lr`.
    ///
    /// # Panics
    /// Panics if the lengths differ.
    pub fn step(&mut self, lr: f32, params: &mut [f32], grads: &[f32]) {
        assert_eq!(params.len(), grads.len(), "Adam::step: length mismatch");
        let (b1, b2, wd) = (self.beta1, self.beta2, self.weight_decay);
        let first = self.t == 0;
        if first {
            self.m = vec![0.0; params.len()];
            self.v = vec![0.0; params.len()];
        }
        self.t += 1;
        let bc2 = (1.0 - b2.powi(self.t)).sqrt();
        let factor = bc2 / (1.0 - b1.powi(self.t));
        let eps = self.epsilon * bc2;
        for (((p, m), v), &g) in params
            .iter_mut()
            .zip(self.m.iter_mut())
            .zip(self.v.iter_mut())
            .zip(grads)
        {
            let g = *p * wd + g;
            if first {
                *m = g * (1.0 - b1);
                *v = g * g * (1.0 - b2);
            } else {
                *m = *m * b1 + g * (1.0 - b1);
                *v = *v * b2 + g * g * (1.0 - b2);
            }
            *p -= (*m * factor / (v.sqrt() + eps)) * lr;
        }
    }
}

impl Adam {
    /// `(t, m, v)`: steps taken and the two moment buffers.
    pub fn moments(&self) -> (i32, &[f32], &[f32]) {
        (self.t, &self.m, &self.v)
    }

    /// Replaces the step count and moments (to continue a saved run).
    pub fn set_moments(&mut self, t: i32, m: Vec<f32>, v: Vec<f32>) {
        self.t = t;
        self.m = m;
        self.v = v;
    }
}

/// Scales `grads` so that their global L2 norm is at most `max_norm`, as PyTorch's
/// `clip_grad_norm_(params, max_norm)` (coefficient `max_norm / (norm + 1e-6)`, applied
/// only when below 1). Returns the norm before clipping.
pub fn clip_total_norm(grads: &mut [f32], max_norm: f32) -> f32 {
    let norm = grads
        .iter()
        .map(|&g| f64::from(g) * f64::from(g))
        .sum::<f64>()
        .sqrt() as f32;
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for g in grads.iter_mut() {
            *g *= coef;
        }
    }
    norm
}

/// burn's `GradientClipping::Norm`: every tensor of `specs` is clipped to L2 norm
/// `max_norm` on its own (coefficient `max_norm / (norm + f32::MIN_POSITIVE)`, at most 1).
pub fn clip_per_param_norm(grads: &mut [f32], specs: &[ParamSpec], max_norm: f32) {
    for spec in specs {
        let g = &mut grads[spec.range()];
        let norm = g.iter().map(|&v| v * v).sum::<f32>().sqrt();
        let coef = (max_norm / (norm + f32::MIN_POSITIVE)).min(1.0);
        for v in g.iter_mut() {
            *v *= coef;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Textbook Adam with L2 decay in f64 (Kingma & Ba, Algorithm 1, with `g + λp`), written
    /// from the formulas rather than from [`Adam::step`]: bias-corrected moments, then
    /// `p ← p − lr · m̂ / (√v̂ + ε)`.
    fn textbook(p0: &[f64], grads: &[Vec<f64>], lr: f64, eps: f64, wd: f64) -> Vec<f64> {
        let (b1, b2) = (0.9f64, 0.999f64);
        let mut p = p0.to_vec();
        let (mut m, mut v) = (vec![0.0; p.len()], vec![0.0; p.len()]);
        for (t, g) in grads.iter().enumerate() {
            let t = t as i32 + 1;
            for i in 0..p.len() {
                let g = g[i] + wd * p[i];
                m[i] = b1 * m[i] + (1.0 - b1) * g;
                v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                let (mh, vh) = (m[i] / (1.0 - b1.powi(t)), v[i] / (1.0 - b2.powi(t)));
                p[i] -= lr * mh / (vh.sqrt() + eps);
            }
        }
        p
    }

    #[test]
    fn adam_matches_the_textbook_update() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let n: usize = 200;
        let p0: Vec<f64> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
        // Gradients over five orders of magnitude, so that both regimes of ε are exercised.
        let grads: Vec<Vec<f64>> = (0..3)
            .map(|_| {
                (0..n)
                    .map(|i| rng.gen_range(-1.0..1.0) * 10f64.powi((i % 5) as i32 - 2))
                    .collect()
            })
            .collect();
        for (eps, wd) in [(1e-8, 0.0), (1e-5, 1e-2), (1.0, 1e-2)] {
            let expected = textbook(&p0, &grads, 0.05, eps, wd);
            let mut adam = Adam::new(0.9, 0.999, eps as f32, wd as f32);
            let mut p: Vec<f32> = p0.iter().map(|&v| v as f32).collect();
            for g in &grads {
                let g: Vec<f32> = g.iter().map(|&v| v as f32).collect();
                adam.step(0.05, &mut p, &g);
            }
            for (i, (&a, &e)) in p.iter().zip(&expected).enumerate() {
                // f32 against f64: a few ulps of the parameter, far below one step (0.05).
                assert!(
                    (a as f64 - e).abs() < 2e-6,
                    "ε {eps}, λ {wd}, entry {i}: {a} vs {e}"
                );
            }
        }
    }
}
