//! Contrastive supervision of the U-Net bottleneck (Wetzer, Lindblad, Sladoje 2023;
//! docs/method.md §2.2). The paper's exact definitions are not public; the reading adopted here:
//!
//! * **the bottleneck** is the new-feature output of the bottleneck dense block
//!   ([`comir_model::ModelOutput::bottleneck`]: 48 channels for the histology preset, 36 for
//!   `small`; 2×2 for a 128² patch with the histology preset's 6 levels);
//! * the loss is `L = L_CoMIR + λ · L_bottleneck`, where `L_bottleneck` is the same InfoNCE
//!   (same critic, same τ) between modality A's and modality B's bottleneck embeddings of the
//!   same patches, in one of three forms:
//!   1. `flat`: the flattened bottleneck tensor, after undoing the C4 rotation on its grid (so
//!      that corresponding cells are compared);
//!   2. `pooled`: the globally average-pooled vector (rotation invariant);
//!   3. `projection`: a `Linear → ReLU → Linear` head per modality on the pooled vector
//!      (SimCLR-style); the heads are trained with the networks and not saved in the model.
//!
//! Both trainers (burn's and the CPU engine's) use this code for the bottleneck term, so they
//! compute the same loss.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use comir_model::loss::{global_average_pool, info_nce, rot90_inverse, Critic};
use comir_model::{DenseUNetConfig, ProjectionHead, ProjectionHeadConfig};

pub use comir_model::recipe::{BottleneckMode, BottleneckSettings};

use crate::{optimizer, Error, Materialize, TrainSettings};

struct Heads {
    a: ProjectionHead,
    b: ProjectionHead,
    opt_a: burn::optim::ModuleOptimizer,
    opt_b: burn::optim::ModuleOptimizer,
}

/// The bottleneck term of a trainer: its settings and, for `projection`, the two heads with
/// their optimisers (the same optimiser settings as the networks).
pub struct BottleneckSupervision {
    settings: BottleneckSettings,
    critic: Critic,
    tau: f64,
    heads: Option<Heads>,
}

impl BottleneckSupervision {
    /// The supervision for networks `a` and `b` trained with `train` on the autodiff `device`.
    /// Projection heads are drawn from `train.seed` (after the networks, from a derived seed).
    ///
    /// # Errors
    /// Invalid settings, or `flat`/`projection` with networks whose bottlenecks differ.
    pub fn new(
        train: &TrainSettings,
        a: &DenseUNetConfig,
        b: &DenseUNetConfig,
        device: &Device,
    ) -> Result<Self, Error> {
        let settings = train.bottleneck.clone();
        settings.validate()?;
        let (ca, cb) = (
            a.growth_rate * a.bottleneck_layers,
            b.growth_rate * b.bottleneck_layers,
        );
        let depth = |c: &DenseUNetConfig| c.down_blocks.len();
        if settings.mode != BottleneckMode::Off && (ca != cb || depth(a) != depth(b)) {
            return Err(Error::InvalidConfig(format!(
                "bottleneck supervision needs bottlenecks of the same shape in both networks ({ca} vs {cb} channels)"
            )));
        }
        let heads = if settings.mode == BottleneckMode::Projection {
            device.seed(train.seed ^ 0xB077_1E5E_C0DE);
            let config = ProjectionHeadConfig {
                input: ca,
                hidden: settings.projection_hidden,
                output: settings.projection_out,
            };
            let (ha, hb) = (config.init(device), config.init(device));
            ha.visit(&mut Materialize);
            hb.visit(&mut Materialize);
            Some(Heads {
                a: ha,
                b: hb,
                opt_a: optimizer(train),
                opt_b: optimizer(train),
            })
        } else {
            None
        };
        Ok(BottleneckSupervision {
            settings,
            critic: train.critic,
            tau: train.tau,
            heads,
        })
    }

    /// The projection heads of modality A and B (`projection` mode only).
    pub fn heads(&self) -> Option<(&ProjectionHead, &ProjectionHead)> {
        self.heads.as_ref().map(|h| (&h.a, &h.b))
    }

    /// `true` unless the mode is `off`.
    pub fn is_on(&self) -> bool {
        self.settings.mode != BottleneckMode::Off
    }

    /// λ.
    pub fn weight(&self) -> f64 {
        self.settings.weight
    }

    /// The (unweighted) bottleneck loss from the networks' bottlenecks `ba`, `bb`
    /// (`[N, C, h, w]`, computed on inputs rotated by `ka`, `kb` quarter turns).
    pub fn loss(&self, ba: Tensor<4>, bb: Tensor<4>, ka: &[usize], kb: &[usize]) -> Tensor<1> {
        match (&self.settings.mode, &self.heads) {
            (BottleneckMode::Flat, _) | (BottleneckMode::Off, _) => info_nce(
                rot90_inverse(ba, ka),
                rot90_inverse(bb, kb),
                self.critic,
                self.tau,
            ),
            (BottleneckMode::Projection, Some(h)) => info_nce(
                h.a.forward(global_average_pool(ba)),
                h.b.forward(global_average_pool(bb)),
                self.critic,
                self.tau,
            ),
            (BottleneckMode::Pooled, _) | (BottleneckMode::Projection, None) => info_nce(
                global_average_pool(ba),
                global_average_pool(bb),
                self.critic,
                self.tau,
            ),
        }
    }

    /// Updates the projection heads (if any) from the gradients of the last loss.
    pub fn update(&mut self, grads: &mut burn::tensor::Gradients, lr: f64) {
        if let Some(h) = &mut self.heads {
            let ga = GradientsParams::from_module(grads, &h.a);
            let gb = GradientsParams::from_module(grads, &h.b);
            h.a = h.opt_a.step(lr, h.a.clone(), ga);
            h.b = h.opt_b.step(lr, h.b.clone(), gb);
        }
    }

    /// The heads' weights and optimiser states (empty without heads), for checkpoints.
    ///
    /// # Errors
    /// burn could not encode a record.
    pub fn state(&self) -> Result<Vec<u8>, Error> {
        let Some(h) = &self.heads else {
            return Ok(Vec::new());
        };
        let enc = |e: String| Error::State(e);
        let parts = [
            h.a.clone()
                .into_record()
                .into_bytes()
                .map_err(|e| enc(e.to_string()))?
                .to_vec(),
            h.b.clone()
                .into_record()
                .into_bytes()
                .map_err(|e| enc(e.to_string()))?
                .to_vec(),
            h.opt_a
                .into_bytes()
                .map_err(|e| enc(e.to_string()))?
                .to_vec(),
            h.opt_b
                .into_bytes()
                .map_err(|e| enc(e.to_string()))?
                .to_vec(),
        ];
        let mut out = Vec::new();
        for p in parts {
            out.extend_from_slice(&(p.len() as u64).to_le_bytes());
            out.extend_from_slice(&p);
        }
        Ok(out)
    }

    /// Restores what [`BottleneckSupervision::state`] wrote.
    ///
    /// # Errors
    /// The bytes do not fit these heads.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let Some(h) = &mut self.heads else {
            return if bytes.is_empty() {
                Ok(())
            } else {
                Err(Error::State(
                    "the checkpoint has projection heads, this run has none".into(),
                ))
            };
        };
        let bad = |m: &str| Error::State(format!("projection heads: {m}"));
        let mut rest = bytes;
        let mut parts = Vec::with_capacity(4);
        for _ in 0..4 {
            if rest.len() < 8 {
                return Err(bad("truncated state"));
            }
            let mut len = [0u8; 8];
            len.copy_from_slice(&rest[..8]);
            let len = usize::try_from(u64::from_le_bytes(len)).map_err(|_| bad("bad length"))?;
            rest = &rest[8..];
            if rest.len() < len {
                return Err(bad("truncated state"));
            }
            parts.push(burn::tensor::Bytes::from_bytes_vec(rest[..len].to_vec()));
            rest = &rest[len..];
        }
        let record = |b: burn::tensor::Bytes| {
            burn::store::ModuleRecord::from_bytes(b).map_err(|e| bad(&e.to_string()))
        };
        let mut parts = parts.into_iter();
        let mut next = || parts.next().ok_or_else(|| bad("missing part"));
        let a =
            h.a.clone()
                .try_load_record(record(next()?)?)
                .map_err(|e| bad(&e.to_string()))?;
        let b =
            h.b.clone()
                .try_load_record(record(next()?)?)
                .map_err(|e| bad(&e.to_string()))?;
        let (oa, ob) = (next()?, next()?);
        for o in [&oa, &ob] {
            burn::optim::OptimizerRecord::from_bytes(o.clone())
                .map_err(|e| bad(&format!("optimiser state: {e}")))?;
        }
        h.opt_a = std::mem::replace(&mut h.opt_a, burn::optim::SgdConfig::new().init())
            .from_bytes(oa)
            .map_err(|e| bad(&e.to_string()))?;
        h.opt_b = std::mem::replace(&mut h.opt_b, burn::optim::SgdConfig::new().init())
            .from_bytes(ob)
            .map_err(|e| bad(&e.to_string()))?;
        h.a = a;
        h.b = b;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    /// InfoNCE by hand (f64) on 2N points with the MSE critic: anchor i's positive is
    /// (i + N) mod 2N, the denominator runs over all j ≠ i.
    fn info_nce_mse(a: &[Vec<f64>], b: &[Vec<f64>], tau: f64) -> f64 {
        let n = a.len();
        let z: Vec<&Vec<f64>> = a.iter().chain(b.iter()).collect();
        let sim = |x: &Vec<f64>, y: &Vec<f64>| {
            -x.iter().zip(y).map(|(p, q)| (p - q) * (p - q)).sum::<f64>() / x.len() as f64 / tau
        };
        let mut total = 0.0;
        for i in 0..2 * n {
            let pos = sim(z[i], z[(i + n) % (2 * n)]);
            let denom: f64 = (0..2 * n)
                .filter(|&j| j != i)
                .map(|j| sim(z[i], z[j]).exp())
                .sum();
            total += denom.ln() - pos;
        }
        total / (2 * n) as f64
    }

    fn tensor(v: &[f32], shape: [usize; 4]) -> Tensor<4> {
        Tensor::<4>::from_data(TensorData::new(v.to_vec(), shape), &Device::flex())
    }

    fn supervision(mode: BottleneckMode) -> BottleneckSupervision {
        let cfg = DenseUNetConfig {
            growth_rate: 2,
            bottleneck_layers: 1,
            ..DenseUNetConfig::small(1)
        };
        let train = TrainSettings {
            bottleneck: BottleneckSettings {
                mode,
                projection_hidden: 3,
                projection_out: 2,
                ..BottleneckSettings::default()
            },
            ..TrainSettings::default()
        };
        BottleneckSupervision::new(&train, &cfg, &cfg, &Device::flex()).expect("supervision")
    }

    // Two patches, two channels, a 2×2 grid: [N=2][C=2][2][2].
    const A: [f32; 16] = [
        1.0, 2.0, 3.0, 4.0, /**/ 0.0, 1.0, 0.0, 1.0, /**/ -1.0, 0.5, 2.0, 0.0,
        /**/ 3.0, 3.0, 1.0, 1.0,
    ];
    const B: [f32; 16] = [
        2.0, 2.0, 1.0, 4.0, /**/ 1.0, 1.0, 0.0, 0.0, /**/ 0.0, 0.0, 2.0, 1.0,
        /**/ 2.0, 3.0, 1.0, 0.5,
    ];

    fn rows(v: &[f32], per: usize) -> Vec<Vec<f64>> {
        v.chunks(per)
            .map(|c| c.iter().map(|&x| f64::from(x)).collect())
            .collect()
    }

    fn pooled(v: &[f32]) -> Vec<Vec<f64>> {
        v.chunks(8)
            .map(|p| {
                p.chunks(4)
                    .map(|c| c.iter().map(|&x| f64::from(x)).sum::<f64>() / 4.0)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn flat_loss_is_infonce_of_the_flattened_tensors_after_undoing_rotations() {
        let s = supervision(BottleneckMode::Flat);
        let got = comir_model::loss::scalar(s.loss(
            tensor(&A, [2, 2, 2, 2]),
            tensor(&B, [2, 2, 2, 2]),
            &[0, 0],
            &[0, 0],
        ));
        let want = info_nce_mse(&rows(&A, 8), &rows(&B, 8), 0.5);
        assert!((got - want).abs() < 1e-5, "flat: {got} vs {want}");
        // B's grids rotated by a quarter turn, with the rotation declared: the same loss.
        let rotated = comir_model::loss::rot90(tensor(&B, [2, 2, 2, 2]), &[1, 3]);
        let again =
            comir_model::loss::scalar(s.loss(tensor(&A, [2, 2, 2, 2]), rotated, &[0, 0], &[1, 3]));
        assert!((again - want).abs() < 1e-5, "rotated: {again} vs {want}");
    }

    #[test]
    fn pooled_loss_is_infonce_of_the_channel_means() {
        let s = supervision(BottleneckMode::Pooled);
        let got = comir_model::loss::scalar(s.loss(
            tensor(&A, [2, 2, 2, 2]),
            tensor(&B, [2, 2, 2, 2]),
            &[0, 2],
            &[1, 0],
        ));
        let want = info_nce_mse(&pooled(&A), &pooled(&B), 0.5);
        assert!((got - want).abs() < 1e-5, "pooled: {got} vs {want}");
    }

    #[test]
    fn projection_loss_is_infonce_of_the_heads_outputs() {
        let s = supervision(BottleneckMode::Projection);
        let (ha, hb) = s.heads().expect("heads");
        // The heads by hand: y = W2ᵀ relu(W1ᵀ x + b1) + b2 (burn's Linear stores W as [in, out]).
        let by_hand = |h: &ProjectionHead, x: &[Vec<f64>]| -> Vec<Vec<f64>> {
            let comir_model::heads::HeadWeights { w1, b1, w2, b2 } = h.weights();
            let lin = |w: &[Vec<f64>], b: &[f64], v: &[f64]| -> Vec<f64> {
                (0..b.len())
                    .map(|o| {
                        b[o] + v
                            .iter()
                            .enumerate()
                            .map(|(i, vi)| vi * w[i][o])
                            .sum::<f64>()
                    })
                    .collect()
            };
            x.iter()
                .map(|v| {
                    let hidden: Vec<f64> =
                        lin(&w1, &b1, v).into_iter().map(|t| t.max(0.0)).collect();
                    lin(&w2, &b2, &hidden)
                })
                .collect()
        };
        let want = info_nce_mse(&by_hand(ha, &pooled(&A)), &by_hand(hb, &pooled(&B)), 0.5);
        let got = comir_model::loss::scalar(s.loss(
            tensor(&A, [2, 2, 2, 2]),
            tensor(&B, [2, 2, 2, 2]),
            &[0, 0],
            &[0, 0],
        ));
        assert!((got - want).abs() < 1e-5, "projection: {got} vs {want}");
        assert!(
            (got - info_nce_mse(&pooled(&A), &pooled(&B), 0.5)).abs() > 1e-6,
            "the head changes the loss"
        );
    }

    #[test]
    fn mismatched_bottlenecks_and_bad_weights_are_refused() {
        let a = DenseUNetConfig::small(1);
        let b = DenseUNetConfig {
            growth_rate: 8,
            ..DenseUNetConfig::small(1)
        };
        let train = TrainSettings {
            bottleneck: BottleneckSettings {
                mode: BottleneckMode::Flat,
                ..BottleneckSettings::default()
            },
            ..TrainSettings::default()
        };
        assert!(BottleneckSupervision::new(&train, &a, &b, &Device::flex()).is_err());
        let mut bad = train.clone();
        bad.bottleneck.weight = -1.0;
        assert!(bad.validate().is_err());
        assert_eq!(
            "pooled".parse::<BottleneckMode>(),
            Ok(BottleneckMode::Pooled)
        );
        assert!("middle".parse::<BottleneckMode>().is_err());
    }
}
