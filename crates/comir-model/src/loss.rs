//! CoMIR training losses: InfoNCE with pluggable critics, activation decay and
//! the C4 rotation helpers used for rotational equivariance.
//!
//! # InfoNCE
//!
//! For two batches of representations `za`, `zb` (shape `[N, ...]`, the `i`-th
//! entries of both being the CoMIRs of the same patch in the two modalities),
//! `z = concat(za, zb)` gives `M = 2N` points, each a whole flattened patch
//! representation of `F` values. With `S = sim(z_i, z_j) / τ`,
//!
//! ```text
//! loss_i = −S[i, (i+N) mod 2N] + log Σ_{j≠i} exp S[i, j]
//! loss   = mean_i loss_i
//! ```
//!
//! (SimCLR's NT-Xent; the denominator includes the positive; every anchor has
//! `2N − 2` negatives.) The similarity matrix is computed with whole-matrix
//! tensor operations: a matrix product for `mse`, `euclidean`, `cosine` and
//! `dot`, and a broadcast `[M, M, F]` pairwise difference for `l1`, `l3`,
//! `linf` and `huber` (memory `M²·F`, like the reference's double loop under
//! autograd).

use std::fmt;
use std::str::FromStr;

use burn::tensor::{Bool, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Similarity function ("critic") between two patch representations `x`, `y`
/// of `F` values each. All critics are normalised per element so that the
/// temperature τ has a comparable meaning for every patch size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Critic {
    /// `−mean((x − y)²)`: negative mean squared error (the "Gaussian" critic of
    /// all published CoMIR models). Default.
    #[default]
    Mse,
    /// Cosine similarity of the **flattened** tensors, `x·y / (‖x‖‖y‖)` (norms
    /// clamped below at 1e-8). Note: the reference code's
    /// `F.cosine_similarity(x, y, dim=1)` on a `D×H×W` tensor computes the
    /// cosine between columns along `H` and averages; this crate deliberately
    /// uses the cosine of the whole patch instead.
    Cosine,
    /// `−mean |x − y|`.
    L1,
    /// `−‖x − y‖₂ / √F = −sqrt(mean (x − y)²)`: per-element normalised
    /// Euclidean distance (root of the MSE; clamped at 1e-12 inside the root).
    Euclidean,
    /// `−‖x − y‖₃ / F^{1/3} = −(mean |x − y|³)^{1/3}`.
    L3,
    /// `−max |x − y|` (the L∞ norm needs no per-element normalisation).
    Linf,
    /// Pseudo-Huber: `−mean sqrt(1 + (x − y)²)`.
    Huber,
    /// `mean(x ⊙ y) = x·y / F`.
    Dot,
}

impl Critic {
    /// All critics, in the order of [`Critic::NAMES`].
    pub const ALL: [Critic; 8] = [
        Critic::Mse,
        Critic::Cosine,
        Critic::L1,
        Critic::Euclidean,
        Critic::L3,
        Critic::Linf,
        Critic::Huber,
        Critic::Dot,
    ];
    /// Names accepted by [`Critic::from_str`].
    pub const NAMES: [&'static str; 8] = [
        "mse",
        "cosine",
        "l1",
        "euclidean",
        "l3",
        "linf",
        "huber",
        "dot",
    ];

    /// The canonical (lower-case) name.
    pub fn name(self) -> &'static str {
        match self {
            Critic::Mse => "mse",
            Critic::Cosine => "cosine",
            Critic::L1 => "l1",
            Critic::Euclidean => "euclidean",
            Critic::L3 => "l3",
            Critic::Linf => "linf",
            Critic::Huber => "huber",
            Critic::Dot => "dot",
        }
    }
}

impl fmt::Display for Critic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Critic {
    type Err = ModelError;

    /// Parses a critic name (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        Critic::ALL
            .into_iter()
            .find(|c| c.name() == lower)
            .ok_or_else(|| ModelError::UnknownCritic {
                name: s.to_string(),
                valid: Critic::NAMES.join(", "),
            })
    }
}

/// Pairwise similarity matrix `S[i, j] = sim(z_i, z_j)` of the rows of
/// `z: [M, F]` (no temperature applied).
pub fn similarity_matrix(z: Tensor<2>, critic: Critic) -> Tensor<2> {
    let [m, f] = z.dims();
    let fl = f as f64;
    match critic {
        Critic::Mse | Critic::Euclidean => {
            let msd = mean_squared_distances(z);
            match critic {
                Critic::Mse => msd.neg(),
                _ => msd.clamp_min(1e-12).sqrt().neg(),
            }
        }
        Critic::Dot => z.clone().matmul(z.transpose()).div_scalar(fl),
        Critic::Cosine => {
            let norms = z.clone().square().sum_dim(1).sqrt().clamp_min(1e-8); // [M, 1]
            let zn = z / norms;
            zn.clone().matmul(zn.transpose())
        }
        Critic::L1 | Critic::L3 | Critic::Linf | Critic::Huber => {
            let a = z.clone().reshape([m, 1, f]).expand([m, m, f]);
            let b = z.reshape([1, m, f]).expand([m, m, f]);
            let d = a - b;
            let s: Tensor<3> = match critic {
                Critic::L1 => d.abs().mean_dim(2),
                Critic::L3 => d
                    .abs()
                    .powi_scalar(3)
                    .mean_dim(2)
                    .clamp_min(1e-12)
                    .powf_scalar(1.0 / 3.0),
                Critic::Linf => d.abs().max_dim(2),
                _ => d.square().add_scalar(1.0).sqrt().mean_dim(2),
            };
            s.reshape([m, m]).neg()
        }
    }
}

/// `(‖z_i‖² + ‖z_j‖² − 2 z_i·z_j) / F` via one matrix product.
fn mean_squared_distances(z: Tensor<2>) -> Tensor<2> {
    let [m, f] = z.dims();
    let sq = z.clone().square().sum_dim(1); // [M, 1]
    let gram = z.clone().matmul(z.transpose()); // [M, M]
    let sq_row = sq.clone().reshape([1, m]);
    (sq + sq_row - gram.mul_scalar(2.0)).div_scalar(f as f64)
}

/// Flattens `[N, ...]` to `[N, F]`.
fn flatten_batch<const D: usize>(x: Tensor<D>) -> Tensor<2> {
    let dims = x.dims();
    let n = dims[0];
    let f: usize = dims[1..].iter().product();
    x.reshape([n, f])
}

/// The value of a one-element tensor as `f64` (NaN if it cannot be read), for logging losses.
pub fn scalar(t: Tensor<1>) -> f64 {
    t.into_data()
        .try_into_vec_as::<f32>()
        .ok()
        .and_then(|v| v.first().copied())
        .map_or(f64::NAN, f64::from)
}

/// Value used to exclude the diagonal from the log-sum-exp.
const MASK_VALUE: f64 = -1e30;

/// InfoNCE / NT-Xent contrastive loss of two aligned batches (see the module
/// docs); returns a one-element tensor.
///
/// `za` and `zb` must have the same shape `[N, ...]` (e.g. `[N, D, H, W]`
/// CoMIRs); each sample is flattened to one point. `tau` is the temperature.
///
/// # Panics
/// Panics if the shapes differ, `N == 0`, or `tau` is not positive and finite.
pub fn info_nce<const D: usize>(
    za: Tensor<D>,
    zb: Tensor<D>,
    critic: Critic,
    tau: f64,
) -> Tensor<1> {
    assert_eq!(
        za.dims(),
        zb.dims(),
        "info_nce: za and zb must have the same shape"
    );
    assert!(
        tau.is_finite() && tau > 0.0,
        "info_nce: tau must be positive and finite"
    );
    let n = za.dims()[0];
    assert!(n > 0, "info_nce: empty batch");
    let m = 2 * n;
    let device = za.device();
    let z = Tensor::cat(vec![flatten_batch(za), flatten_batch(zb)], 0);
    let s = similarity_matrix(z, critic).div_scalar(tau);

    // Positive partner of anchor i is (i + N) mod 2N.
    let mut perm = vec![0.0f32; m * m];
    let mut diag = vec![false; m * m];
    for i in 0..m {
        perm[i * m + (i + n) % m] = 1.0;
        diag[i * m + i] = true;
    }
    let perm = Tensor::<2>::from_data(TensorData::new(perm, [m, m]), &device);
    let diag = Tensor::<2, Bool>::from_data(TensorData::new(diag, [m, m]), &device);

    let pos = (s.clone() * perm).sum_dim(1); // [M, 1]
    let masked = s.mask_fill(diag, MASK_VALUE);
    let max = masked.clone().max_dim(1).detach(); // [M, 1]
    let lse = (masked - max.clone()).exp().sum_dim(1).log() + max;
    (lse - pos).mean()
}

/// Global average pooling `[N, C, H, W] → [N, C]` (invariant to 90° rotations of the grid).
pub fn global_average_pool(x: Tensor<4>) -> Tensor<2> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h * w]).mean_dim(2).reshape([n, c])
}

/// Activation decay `(1 + Σ_t Σ |x|^p) / Σ_t numel(t)` over all `outputs`
/// (the reference's `act_decay_p`, computed on both networks' raw outputs).
///
/// # Panics
/// Panics if `outputs` is empty or `p` is not positive.
pub fn activation_decay<const D: usize>(outputs: &[Tensor<D>], p: f64) -> Tensor<1> {
    assert!(!outputs.is_empty(), "activation_decay: no tensors");
    assert!(p > 0.0, "activation_decay: p must be positive");
    let mut numel = 0usize;
    let mut total: Option<Tensor<1>> = None;
    for t in outputs {
        numel += t.dims().iter().product::<usize>();
        let a = t.clone().abs();
        let powered = if p == 1.0 {
            a
        } else if p == 2.0 {
            a.square()
        } else {
            a.powf_scalar(p)
        };
        let s = powered.sum();
        total = Some(match total {
            None => s,
            Some(acc) => acc + s,
        });
    }
    let total = total.expect("non-empty");
    total.add_scalar(1.0).div_scalar(numel as f64)
}

/// Rotates every sample of `x: [N, C, H, W]` by `k[i] · 90°` counter-clockwise
/// in the (H, W) plane, exactly like `torch.rot90(x_i, k_i, dims=(1, 2))`:
/// for k = 1, `out[.., i, j] = x[.., j, W − 1 − i]`. `k` values are taken mod 4.
///
/// # Panics
/// Panics if `k.len() != N`, or if the image is not square and the rotations
/// differ in parity (the results would have different shapes).
pub fn rot90(x: Tensor<4>, k: &[usize]) -> Tensor<4> {
    let [n, _, h, w] = x.dims();
    assert_eq!(k.len(), n, "rot90: need one k per sample");
    if n == 0 {
        return x;
    }
    let k0 = k[0] % 4;
    if k.iter().all(|&ki| ki % 4 == k0) {
        return rot90_all(x, k0);
    }
    assert!(
        h == w || k.iter().all(|&ki| ki % 2 == k0 % 2),
        "rot90: non-square images need rotations of equal parity"
    );
    let parts = (0..n)
        .map(|i| rot90_all(x.clone().narrow(0, i, 1), k[i] % 4))
        .collect();
    Tensor::cat(parts, 0)
}

/// Inverse of [`rot90`]: rotates sample `i` by `−k[i] · 90°`.
pub fn rot90_inverse(x: Tensor<4>, k: &[usize]) -> Tensor<4> {
    let inv: Vec<usize> = k.iter().map(|&ki| (4 - ki % 4) % 4).collect();
    rot90(x, &inv)
}

/// Rotates the whole batch by `k · 90°` (k in 0..4).
fn rot90_all(x: Tensor<4>, k: usize) -> Tensor<4> {
    match k % 4 {
        0 => x,
        1 => x.flip([3]).swap_dims(2, 3),
        2 => x.flip([2, 3]),
        _ => x.flip([2]).swap_dims(2, 3),
    }
}
