//! Multimodal image pairs for evaluation and training.
//!
//! * [`find_pairs`] / [`find_pairs_in`] match the files of modality A and modality B by name.
//! * [`split_by_name`] makes a deterministic train/validation split by name, so that a pair is
//!   never trained on and evaluated at once.
//! * [`PatchSampler`] draws training patches the way the CoMIR reference does
//!   (docs/method.md §1.5, MultiRegEval `train_comir.py`): a random pair (with replacement), a random
//!   position, a random rotation in [−180°, 180°) with symmetric (edge-repeating) padding, a
//!   horizontal flip with probability ½, an optional Gaussian blur, and the centre `size × size`
//!   crop — all with **identical geometry for both modalities**. Patches come out channel-first
//!   (`C × H × W`), ready for a network.
//! * [`PatchSampler::registered`] does the same for pairs that are registered, not aligned
//!   ([`RegisteredPair`]): B's patch is resampled through the pair's transform as it is drawn,
//!   with a mask where it falls outside B.

pub mod manifest;
mod pairs;
mod patches;
mod split;

use std::path::PathBuf;

pub use pairs::{find_pairs, find_pairs_in, Pair};
pub use patches::{Batch, PatchConfig, PatchSampler, RegisteredPair};
pub use split::split_by_name;

/// Errors of the data layer; each names the folder, file or pair involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A folder could not be listed.
    #[error("{path}: {error}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// The folders are not laid out as two sets of images with matching file names.
    #[error("{path}: {reason}")]
    Layout {
        /// The folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An image could not be loaded.
    #[error(transparent)]
    Image(#[from] comir_image::Error),
    /// The two images of a pair differ in size.
    #[error("pair '{pair}': A is {a_w}×{a_h} but B is {b_w}×{b_h}; aligned pairs must have the same size")]
    SizeMismatch {
        /// The pair name.
        pair: String,
        /// A's width.
        a_w: usize,
        /// A's height.
        a_h: usize,
        /// B's width.
        b_w: usize,
        /// B's height.
        b_h: usize,
    },
    /// A pair cannot be learned from (e.g. one of its images is constant).
    #[error("pair '{pair}': {reason}")]
    UnusablePair {
        /// The pair name.
        pair: String,
        /// Why.
        reason: String,
    },
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    InvalidConfig(String),
}
