//! Deep-learning models and losses for **CoMIR** (Contrastive Multimodal Image
//! Representations).
//!
//! CoMIR — Pielawski, Wetzer, Öfverstedt, Lu, Wählby, Lindblad, Sladoje,
//! *"CoMIR: Contrastive Multimodal Image Representation for Registration"*,
//! NeurIPS 2020 (arXiv:2006.06325) — trains two independent networks
//! `f_A`, `f_B` (one per modality) that map aligned image patches to dense,
//! image-like representations of the same spatial size with `D` channels. The
//! networks are trained with an InfoNCE (NT-Xent) contrastive loss over a batch
//! of *patches*; afterwards the representations of the two modalities can be
//! registered with ordinary monomodal methods.
//!
//! This crate provides, on top of [burn](https://burn.dev) 0.22:
//!
//! * [`DenseUNetConfig`] / [`DenseUNet`]: the FC-DenseNet "Tiramisu" used by the
//!   original implementation, reproduced layer by layer (same channel
//!   bookkeeping, same parameter counts as the PyTorch reference:
//!   1,053,244 parameters for the histology preset with one input channel).
//! * [`UNetConfig`] / [`UNet`]: a plain Ronneberger-style U-Net for comparison.
//! * [`loss`]: the contrastive loss [`loss::info_nce`] with pluggable
//!   [`loss::Critic`] similarities, the activation regulariser
//!   [`loss::activation_decay`], and the C4 (90° rotation) helpers
//!   [`loss::rot90`] / [`loss::rot90_inverse`] used for rotational equivariance.
//! * [`store`]: the model folder (`model.json` + `weights.bpk`) that inference loads; its card
//!   ([`ModelCard`]) records how the networks were made ([`record`]), including the training
//!   recipe ([`recipe`]: the configuration structs of `comir train`, which live here so that
//!   reading a card needs no training code).
//! * [`torch_import`]: the weights of the official PyTorch CoMIR as a [`DenseUNet`].
//!
//! # Backends
//!
//! In burn 0.22 tensors carry their backend at run time through a
//! [`burn::tensor::Device`], so all model and loss code here is backend-agnostic:
//! a `Device::flex()` (pure-Rust CPU) device is used in the tests, and
//! GPU devices (wgpu / CUDA) work unchanged once the corresponding burn
//! features are enabled by the final binary. Training needs an autodiff
//! device (`device.autodiff()`); batch normalisation then uses batch statistics
//! (training mode), while a module obtained with [`burn::module::Module::valid`]
//! (or any module run on a non-autodiff device) uses the running statistics
//! (momentum 0.1, as in PyTorch). One small deviation from PyTorch: burn 0.22
//! updates `running_var` with the *biased* batch variance (PyTorch uses the
//! unbiased one); the factor `n / (n − 1)` is negligible for image batches.
//!
//! Parameter counts: burn's `Module::num_params` also counts the batch-norm
//! running statistics; [`trainable_param_count`] (and the
//! `num_trainable_params` methods) count only trainable tensors, matching
//! PyTorch's `model.parameters()`.
//!
//! # Input sizes
//!
//! Both networks pool by a factor two per level, so the spatial size of the
//! input must be divisible by `2^depth`
//! ([`DenseUNetConfig::required_multiple`], [`UNetConfig::required_multiple`]);
//! 64 for the histology preset. Callers should pad (e.g. symmetrically) to a
//! multiple before running the network and crop afterwards.
#![warn(missing_docs)]

pub mod densenet;
pub mod error;
pub mod heads;
pub mod limits;
pub mod loss;
pub mod recipe;
pub mod record;
pub mod store;
pub mod torch_import;
pub mod unet;

pub use densenet::{DenseUNet, DenseUNetConfig};
pub use error::ModelError;
pub use heads::{ProjectionHead, ProjectionHeadConfig};
pub use recipe::{ConfigError, TrainConfig};
pub use record::TrainingRecord;
pub use store::{InputTransform, Model, ModelCard, NetworkPair, StoreError};
pub use unet::{UNet, UNetConfig};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// Output of a CoMIR network.
#[derive(Debug, Clone)]
pub struct ModelOutput {
    /// The dense representation (the CoMIR), shape `[N, D, H, W]`, same spatial
    /// size as the input. Unbounded, real valued (no output activation).
    pub representation: Tensor<4>,
    /// Features at the bottleneck of the network, shape `[N, C_b, H / 2^depth, W / 2^depth]`.
    /// For [`DenseUNet`] these are the *new* features produced by the
    /// bottleneck dense block (48 channels for the histology preset).
    pub bottleneck: Tensor<4>,
}

/// Common interface of the CoMIR networks in this crate.
pub trait RepresentationNet {
    /// Runs the network on a batch `[N, C, H, W]`; `H` and `W` must be
    /// multiples of [`RepresentationNet::required_multiple`].
    fn forward(&self, x: Tensor<4>) -> ModelOutput;
    /// Spatial sizes must be divisible by this number (`2^depth`).
    fn required_multiple(&self) -> usize;
    /// Number of output (representation) channels `D`.
    fn out_channels(&self) -> usize;
}

/// Checks that `x` has `channels` channels and that its spatial dimensions are
/// positive multiples of `multiple`.
pub fn check_input_shape(
    dims: [usize; 4],
    channels: usize,
    multiple: usize,
) -> Result<(), ModelError> {
    let [_, c, h, w] = dims;
    if c != channels {
        return Err(ModelError::InputChannels {
            expected: channels,
            got: c,
        });
    }
    if h == 0 || w == 0 || h % multiple != 0 || w % multiple != 0 {
        return Err(ModelError::InputSize {
            height: h,
            width: w,
            multiple,
        });
    }
    Ok(())
}

/// 2× nearest-neighbour upsampling of a `[N, C, H, W]` tensor (PyTorch
/// `UpsamplingNearest2d(scale_factor=2)`): every pixel becomes a 2×2 block.
pub fn upsample_nearest2x(x: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h, 1, w, 1])
        .expand([n, c, h, 2, w, 2])
        .reshape([n, c, 2 * h, 2 * w])
}

/// Number of trainable parameters of a module, comparable with PyTorch's
/// `sum(p.numel() for p in model.parameters())`.
///
/// burn's [`Module::num_params`] also counts the batch-normalisation buffers
/// `running_mean` / `running_var` (they are visited like parameters); this
/// counter skips every tensor stored in a field with one of those names.
pub fn trainable_param_count<M: Module>(module: &M) -> usize {
    struct Counter {
        path: Vec<String>,
        count: usize,
    }
    impl ModuleVisitor for Counter {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let buffer = matches!(
                self.path.last().map(String::as_str),
                Some("running_mean" | "running_var")
            );
            if !buffer {
                self.count += param.lazy_shape().num_elements();
            }
        }
    }
    let mut counter = Counter {
        path: Vec::new(),
        count: 0,
    };
    module.visit(&mut counter);
    counter.count
}
