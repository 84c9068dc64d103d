//! A hand-written CPU engine for the CoMIR FC-DenseNet ([`comir_model::DenseUNet`]).
//!
//! [`FastDenseUNet`] holds the same tensors as the burn network (same parameter paths, same
//! order, see [`FastDenseUNet::param_specs`]) in flat `f32` buffers and converts to and from
//! it exactly ([`FastDenseUNet::from_burn`], [`FastDenseUNet::to_burn`]). It runs
//!
//! * the training-mode forward ([`FastDenseUNet::forward_train`]: batch statistics, running
//!   statistics updated like burn: momentum 0.1, biased variance), caching what the backward
//!   needs in a reusable [`Workspace`];
//! * the backward ([`FastDenseUNet::backward`]) from `dL/d(representation)` and optionally
//!   `dL/d(bottleneck)` to the gradients of all trainable parameters;
//! * the inference-mode forward ([`FastDenseUNet::forward_inference`]: running statistics,
//!   one sample at a time), also of a [`Window`] of the image only
//!   ([`FastDenseUNet::forward_inference_window`]: the up path computes what the window
//!   depends on, so a tile's context margin costs little there);
//!
//! and [`optim`] provides SGD (momentum, dampening, weight decay) and Adam with burn's
//! semantics, plus total-norm (PyTorch `clip_grad_norm_`) and burn's per-parameter norm
//! gradient clipping. `comir_train::FastTrainer` runs the training step on two engine
//! networks; `comir_represent` runs inference on them. The engine itself knows nothing of
//! training runs: it depends on `comir-model` only.
//!
//! # Why it is fast
//!
//! Convolutions run on row bands of one sample, on a zero-padded band into which batch
//! norm and ReLU (or upsampling) are fused, with hand-written AVX-512 or AVX2 + FMA kernels
//! that keep a tile of outputs in registers over all input channels and taps (`direct.rs`;
//! a few matrix products of the `gemm` crate on other CPUs, the portable path). The 3×3
//! convolutions and both their gradients run as Winograd convolutions where it pays
//! (`winograd.rs`): F(4×4, 3×3) on planes whose sides are multiples of 4, 4× fewer multiplies,
//! and with AVX2 F(2×2, 3×3) on the others, 2.25× fewer. Bands prefetch the next channel's
//! rows: each reads a few rows of many channels, too little for the hardware prefetcher. A
//! convolution's weights are prepared once for the whole batch. The elementwise loops are
//! compiled once per instruction set (`simd.rs`); dense blocks append their layers' outputs
//! into one preallocated buffer; samples run in parallel (rayon); buffers live in a reusable
//! [`Workspace`] and per-thread scratch. Inference of one sample runs each level's
//! convolutions as a fused group of rows (`fused.rs`): a wavefront of chunks per thread, so
//! that a layer reads what the layers before it have just written from the cache.
//!
//! # Instruction sets
//!
//! The kernels of the process's instruction set run ([`comir_cpu::active`]: the widest the
//! CPU has, or the one `COMIR_ISA` names); [`FastDenseUNet::set_isa`] chooses another for one
//! network. Every path agrees with the others within f32 rounding (their sums run in
//! different orders, and Winograd's transforms round differently) and repeats itself bit for
//! bit for a given thread count.
//!
//! Dropout is not supported (the presets use none): configurations with `dropout ≠ 0` are
//! rejected.
#![warn(missing_docs)]

mod conv;
mod convert;
mod direct;
mod engine;
mod fused;
mod net;
pub mod optim;
mod simd;
mod winograd;

pub use conv::{set_band_bytes, Window};
pub use direct::{kernel_time, set_kernel_timing};
pub use engine::{set_fused_inference, Output, Workspace};
pub use net::{FastDenseUNet, ParamSpec};

/// The first `len` floats of a scratch buffer kept across calls, grown with zeros when it is
/// shorter and not cleared otherwise.
pub(crate) fn grow(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// `Ok` when the engine runs networks of this configuration (everything but dropout), else
/// why not.
///
/// # Errors
/// The reason, naming the unsupported setting.
pub fn supports(config: &comir_model::DenseUNetConfig) -> Result<(), String> {
    if config.dropout != 0.0 {
        return Err(format!(
            "the CPU engine does not implement dropout (got {}); use the burn trainer",
            config.dropout
        ));
    }
    Ok(())
}

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The network configuration is invalid or unsupported.
    #[error("unsupported configuration: {0}")]
    Config(String),
    /// Invalid configuration or input, as reported by `comir-model`.
    #[error(transparent)]
    Model(#[from] comir_model::ModelError),
    /// A buffer has the wrong size.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// The burn network and the engine do not have the same tensors.
    #[error("conversion: {0}")]
    Convert(String),
}
