//! The projection head of the `projection` bottleneck supervision (Wetzer et al. 2023, read as
//! SimCLR's head; docs/method.md §2.2): `Linear → ReLU → Linear` on a pooled bottleneck vector.
//! It exists only during training; the saved model does not include it.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{activation::relu, Device, Tensor};
use serde::{Deserialize, Serialize};

/// Sizes of a [`ProjectionHead`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectionHeadConfig {
    /// Input features (the bottleneck channels).
    pub input: usize,
    /// Hidden features.
    pub hidden: usize,
    /// Output features (the space the contrastive loss compares).
    pub output: usize,
}

impl ProjectionHeadConfig {
    /// Builds the head on `device` (weights drawn lazily by burn from its RNG).
    pub fn init(&self, device: &Device) -> ProjectionHead {
        ProjectionHead {
            first: LinearConfig::new(self.input, self.hidden).init(device),
            second: LinearConfig::new(self.hidden, self.output).init(device),
        }
    }
}

/// A [`ProjectionHead`]'s weights (`y = W2ᵀ relu(W1ᵀ x + b1) + b2`; matrices as `[in][out]`,
/// burn's layout).
#[derive(Clone, Debug, PartialEq)]
pub struct HeadWeights {
    /// First layer, `[input][hidden]`.
    pub w1: Vec<Vec<f64>>,
    /// First bias.
    pub b1: Vec<f64>,
    /// Second layer, `[hidden][output]`.
    pub w2: Vec<Vec<f64>>,
    /// Second bias.
    pub b2: Vec<f64>,
}

/// `Linear → ReLU → Linear`, SimCLR-style.
#[derive(Module, Debug)]
pub struct ProjectionHead {
    first: Linear,
    second: Linear,
}

impl ProjectionHead {
    /// `[N, input] → [N, output]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.second.forward(relu(self.first.forward(x)))
    }

    /// The weights as f64, for checks and analysis.
    pub fn weights(&self) -> HeadWeights {
        fn matrix(l: &Linear) -> Vec<Vec<f64>> {
            let w = l.weight.val();
            let [_, out] = w.dims();
            let v = w.into_data().try_to_vec::<f32>().unwrap_or_default();
            v.chunks(out.max(1))
                .map(|r| r.iter().map(|&x| f64::from(x)).collect())
                .collect()
        }
        fn bias(l: &Linear) -> Vec<f64> {
            l.bias.as_ref().map_or_else(Vec::new, |b| {
                b.val()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap_or_default()
                    .into_iter()
                    .map(f64::from)
                    .collect()
            })
        }
        HeadWeights {
            w1: matrix(&self.first),
            b1: bias(&self.first),
            w2: matrix(&self.second),
            b2: bias(&self.second),
        }
    }
}
