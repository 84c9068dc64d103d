//! The skeleton of a training step that both trainers ([`crate::Trainer`] on burn,
//! [`crate::FastTrainer`] on the CPU engine) share, so that they draw the same rotations and
//! compute the same loss:
//!
//! 1. [`StepPlan::draw`]: the C4 rotation of every sample, per modality, from the trainer's
//!    RNG (A's quarter turns first, then B's);
//! 2. the networks run on the rotated inputs ([`StepPlan::rotate`]) and their outputs are
//!    turned back ([`StepPlan::undo`]);
//! 3. [`step_loss`]: InfoNCE, the alignment term, the bottleneck term and the activation
//!    decay, with the divergence check;
//! 4. each trainer back-propagates and updates its networks its own way.

use burn::tensor::{Device, Tensor, TensorData};
use comir_model::loss::{activation_decay, info_nce, rot90, rot90_inverse, scalar};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::{BottleneckSupervision, Error, StepStats, TrainSettings};

/// The random draws of one step: per modality (index 0 = A, 1 = B), the number of
/// counter-clockwise quarter turns of every sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepPlan {
    quarter_turns: [Vec<usize>; 2],
}

impl StepPlan {
    /// Draws the rotations of a batch of `n` pairs: with `equivariance`, an independent
    /// multiple of 90° per sample and modality (A's `n` draws, then B's), else none (and
    /// nothing is drawn).
    pub fn draw(rng: &mut ChaCha8Rng, n: usize, equivariance: bool) -> StepPlan {
        let mut draw = || -> Vec<usize> {
            if equivariance {
                (0..n).map(|_| rng.gen_range(0..4)).collect()
            } else {
                vec![0; n]
            }
        };
        let a = draw();
        let b = draw();
        StepPlan {
            quarter_turns: [a, b],
        }
    }

    /// The quarter turns of modality `m` (0 = A, 1 = B), one per sample.
    pub fn quarter_turns(&self, m: usize) -> &[usize] {
        &self.quarter_turns[m]
    }

    /// Rotates the batch `x` (`[N, C, H, W]`) of modality `m` as planned. It is also the
    /// gradient of [`StepPlan::undo`].
    pub fn rotate(&self, m: usize, x: Tensor<4>) -> Tensor<4> {
        rot90(x, &self.quarter_turns[m])
    }

    /// Turns the networks' outputs of modality `m` back into the frame of the inputs.
    pub fn undo(&self, m: usize, y: Tensor<4>) -> Tensor<4> {
        rot90_inverse(y, &self.quarter_turns[m])
    }

    /// [`StepPlan::rotate`] on `n × c × s × s` values in a flat buffer.
    pub fn rotate_values(&self, m: usize, x: &[f32], c: usize, s: usize) -> Vec<f32> {
        let rotated = self.rotate(m, self.tensor(x, c, s));
        values(rotated)
    }

    /// [`StepPlan::undo`] on `n × c × s × s` values in a flat buffer.
    pub fn undo_values(&self, m: usize, y: &[f32], c: usize, s: usize) -> Vec<f32> {
        let undone = self.undo(m, self.tensor(y, c, s));
        values(undone)
    }

    fn tensor(&self, x: &[f32], c: usize, s: usize) -> Tensor<4> {
        let n = self.quarter_turns[0].len();
        Tensor::<4>::from_data(TensorData::new(x.to_vec(), [n, c, s, s]), &Device::flex())
    }
}

/// The values of a CPU tensor in its logical (row-major) order.
fn values(t: Tensor<4>) -> Vec<f32> {
    t.into_data()
        .try_into_vec::<f32>()
        .unwrap_or_else(|e| unreachable!("a float tensor built from f32 values: {e:?}"))
}

/// The loss of one step, still to be back-propagated, and its numbers.
pub(crate) struct StepLoss {
    /// The total loss.
    pub loss: Tensor<1>,
    /// Its value and parts.
    pub stats: StepStats,
}

/// The loss of a step done `done` steps into training: InfoNCE between the representations `z`
/// (in the inputs' frame, rotations undone), plus `align_weight` times their mean squared
/// difference, plus the weighted bottleneck term on `bottlenecks` (the networks' bottlenecks,
/// in their rotated frames; `None` when the supervision is off), plus the L1/L2 activation
/// decay of `decayed` (the raw outputs: the decay is rotation invariant, so either frame gives
/// the same value). With a `mask` (`n × h × w`, 0 where the B patch fell outside its image), both
/// representations are zeroed there first, so those pixels add nothing to any similarity.
///
/// # Errors
/// [`Error::Diverged`] when the loss is not finite.
#[allow(clippy::too_many_arguments)] // the parts of one step, each used once
pub(crate) fn step_loss(
    settings: &TrainSettings,
    supervision: &BottleneckSupervision,
    plan: &StepPlan,
    z: [Tensor<4>; 2],
    decayed: [Tensor<4>; 2],
    bottlenecks: Option<[Tensor<4>; 2]>,
    mask: Option<&[f32]>,
    done: usize,
) -> Result<StepLoss, Error> {
    let [za, zb] = z;
    let (za, zb) = masked(za, zb, mask);
    let positive_sq = (za.clone() - zb.clone()).powf_scalar(2.0).mean();
    let positive_mse = scalar(positive_sq.clone().detach());
    let contrastive = info_nce(za, zb, settings.critic, settings.tau);
    let mut loss = contrastive.clone();
    if settings.align_weight > 0.0 {
        loss = loss + positive_sq * settings.align_weight;
    }
    let mut bottleneck = 0.0;
    if let Some([ba, bb]) = bottlenecks {
        let lb = supervision.loss(ba, bb, plan.quarter_turns(0), plan.quarter_turns(1));
        bottleneck = scalar(lb.clone().detach());
        loss = loss + lb * supervision.weight();
    }
    let [ya, yb] = decayed;
    if settings.l1_decay > 0.0 {
        loss = loss + activation_decay(&[ya.clone(), yb.clone()], 1.0) * settings.l1_decay;
    }
    if settings.l2_decay > 0.0 {
        loss = loss + activation_decay(&[ya, yb], 2.0) * settings.l2_decay;
    }
    let loss_value = scalar(loss.clone().detach());
    if !loss_value.is_finite() {
        return Err(Error::Diverged {
            step: done + 1,
            loss: loss_value,
        });
    }
    Ok(StepLoss {
        loss,
        stats: StepStats {
            loss: loss_value,
            contrastive: scalar(contrastive.detach()),
            bottleneck,
            positive_mse,
        },
    })
}

/// Both representations (`[n, d, h, w]`) zeroed where the `n × h × w` mask is 0.
fn masked(za: Tensor<4>, zb: Tensor<4>, mask: Option<&[f32]>) -> (Tensor<4>, Tensor<4>) {
    // A mask of ones changes nothing; skipping it keeps such a batch's arithmetic that of an
    // unmasked one, to the bit.
    let Some(mask) = mask.filter(|m| m.iter().any(|&v| v != 1.0)) else {
        return (za, zb);
    };
    let [n, d, h, w] = za.dims();
    let m = Tensor::<4>::from_data(TensorData::new(mask.to_vec(), [n, 1, h, w]), &za.device())
        .repeat_dim(1, d);
    (za * m.clone(), zb * m)
}

/// The numbers of a batch scored without training, from both networks' representations in
/// inference mode: InfoNCE and the positive-pair error (no bottleneck, no decay).
pub(crate) fn evaluation_stats(
    settings: &TrainSettings,
    za: Tensor<4>,
    zb: Tensor<4>,
    mask: Option<&[f32]>,
) -> StepStats {
    let (za, zb) = masked(za, zb, mask);
    let positive_mse = scalar((za.clone() - zb.clone()).powf_scalar(2.0).mean());
    let contrastive = scalar(info_nce(za, zb, settings.critic, settings.tau));
    StepStats {
        loss: contrastive,
        contrastive,
        bottleneck: 0.0,
        positive_mse,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn undo_turns_rotated_values_back_and_rotate_is_torch_rot90() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let plan = StepPlan::draw(&mut rng, 4, true);
        let (c, s) = (2, 3);
        let x: Vec<f32> = (0..4 * c * s * s).map(|i| i as f32).collect();
        for m in 0..2 {
            let rotated = plan.rotate_values(m, &x, c, s);
            assert_eq!(plan.undo_values(m, &rotated, c, s), x);
            // torch.rot90 by one quarter turn: out[r][col] = x[col][s − 1 − r].
            for (i, &k) in plan.quarter_turns(m).iter().enumerate() {
                if k == 1 {
                    let at = |v: &[f32], r: usize, col: usize| v[(i * c) * s * s + r * s + col];
                    assert_eq!(at(&rotated, 0, 0), at(&x, 0, s - 1));
                }
            }
        }
    }

    #[test]
    fn masked_pixels_add_nothing_to_the_loss() {
        let (n, d, s) = (3, 2, 4);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mask: Vec<f32> = (0..n * s * s).map(|i| f32::from(i % 3 != 0)).collect();
        let draw = |rng: &mut ChaCha8Rng| -> Vec<f32> {
            (0..n * d * s * s)
                .map(|_| rng.gen_range(-1.0..1.0))
                .collect()
        };
        let (za, zb) = (draw(&mut rng), draw(&mut rng));
        // The same representations with other values wherever the mask is 0.
        let noise = draw(&mut rng);
        let scramble = |z: &[f32]| -> Vec<f32> {
            z.iter()
                .enumerate()
                .map(|(i, &v)| {
                    let pixel = (i / (d * s * s)) * s * s + i % (s * s);
                    if mask[pixel] == 0.0 {
                        noise[i] * 5.0
                    } else {
                        v
                    }
                })
                .collect()
        };
        let t =
            |z: Vec<f32>| Tensor::<4>::from_data(TensorData::new(z, [n, d, s, s]), &Device::flex());
        let settings = TrainSettings::default();
        let stats = |a: Vec<f32>, b: Vec<f32>, m: Option<&[f32]>| {
            evaluation_stats(&settings, t(a), t(b), m)
        };
        let clean = stats(za.clone(), zb.clone(), Some(&mask));
        let noisy = stats(scramble(&za), scramble(&zb), Some(&mask));
        assert!(
            (clean.loss - noisy.loss).abs() < 1e-6,
            "{clean:?} vs {noisy:?}"
        );
        assert!((clean.positive_mse - noisy.positive_mse).abs() < 1e-9);
        // Without the mask the scrambled pixels do count.
        let unmasked = stats(scramble(&za), scramble(&zb), None);
        assert!((unmasked.loss - clean.loss).abs() > 1e-3);
    }

    #[test]
    fn without_equivariance_nothing_is_drawn() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let plan = StepPlan::draw(&mut rng, 3, false);
        assert_eq!(plan.quarter_turns(0), &[0, 0, 0]);
        assert_eq!(plan.quarter_turns(1), &[0, 0, 0]);
        assert_eq!(rng.get_word_pos(), 0);
    }
}
