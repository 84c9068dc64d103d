//! Analyses of learned representations, for the bottleneck-supervision study (Wetzer, Lindblad,
//! Sladoje 2023, "Can representation learning for multimodal image registration be improved by
//! supervision of intermediate layers?"). The crate sees only numbers: embeddings are rows of
//! `f32` (one row per patch, flattened), and it knows nothing about networks or training.
//!
//! # What each analysis shows, and why
//!
//! * [`mds`] — **metric multidimensional scaling** (SMACOF, Borg & Groenen, *Modern
//!   Multidimensional Scaling*, 2005). The representations of N patches of modality A and their N
//!   counterparts in modality B are placed in the plane so that plane distances match the
//!   representation distances as well as possible; the remaining misfit is the *stress*. The
//!   picture answers: do the two modalities' representations overlap (each A point next to its B
//!   partner), or do they form two separate clouds? Does the cloud spread out, or crowd onto a
//!   curve (a sign of collapse)? CoMIR needs overlap: registration compares the representations of
//!   A and B as if they were one modality.
//! * [`spectrum`] — the **singular-value spectrum of the embedding covariance** (Jing, Vincent,
//!   LeCun, Tian, ICLR 2022, "Understanding dimensional collapse in contrastive self-supervised
//!   learning"). Sorted on a log scale, a healthy embedding decays gradually; **dimensional
//!   collapse** shows as a tail of singular values that drop to about zero: the embedding uses
//!   fewer dimensions than it has. Summaries: the effective rank (Roy & Vetterli 2007) and the count
//!   of singular values below 10⁻⁵ of the largest. The 2023 paper reports partial collapse of the
//!   bottleneck embedding under bottleneck supervision.
//! * [`gap`] — the **modality gap**: mean distance between corresponding A/B representations
//!   against the mean distance between non-corresponding ones (a ratio well below 1 means pairs
//!   find each other), and the Pearson correlation used for the equivariance score (the
//!   representation of a rotated image, rotated back, against the representation of the image).
//! * [`plot`] — PNG pictures of the above (MDS scatter, log-scale spectrum), drawn without fonts or
//!   system libraries, and [`tables`] — the same numbers as CSV rows.
//! * [`protocol`] — the whole analysis of a trained model on held-out pairs: seeded patch
//!   sampling, the analyses above on two layers, and the rotation equivariance; the model comes
//!   in through the [`protocol::Embedder`] trait.
//!
//! Every file is written through a temporary file and a rename
//! ([`comir_fs::write_atomically`]), so a killed run never leaves a torn file.
//!
//! # Example
//!
//! ```
//! use comir_analysis::{gap, mds, spectrum};
//!
//! // Four patches per modality, 3-dimensional embeddings; B is A shifted a little.
//! let a = vec![vec![0.0f32, 0.0, 0.0], vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0], vec![0.0, 0.0, 1.0]];
//! let b: Vec<Vec<f32>> = a.iter().map(|r| r.iter().map(|v| v + 0.1).collect()).collect();
//!
//! // MDS of both sets together: rows 0..4 are A, 4..8 are B.
//! let all: Vec<Vec<f32>> = a.iter().chain(&b).cloned().collect();
//! let d = mds::pairwise_euclidean(&all)?;
//! let fit = mds::smacof(&d, &mds::SmacofConfig::default())?;
//! assert_eq!(fit.coords.len(), 8);
//! assert!(fit.stress.stress1 < 0.2);
//!
//! // Covariance spectrum of A and its summaries.
//! let sv = spectrum::covariance_spectrum(&a)?;
//! assert_eq!(sv.len(), 3);
//! assert!(spectrum::effective_rank(&sv) > 1.0);
//!
//! // Modality gap: corresponding pairs are much closer than the others.
//! let g = gap::modality_gap(&a, &b)?;
//! assert!(g.ratio < 0.5);
//! # Ok::<(), comir_analysis::Error>(())
//! ```

#![warn(missing_docs)]

pub mod gap;
pub mod mds;
pub mod plot;
pub mod protocol;
pub mod spectrum;
pub mod tables;

mod font;

use std::path::PathBuf;

/// Everything that can go wrong in the analyses. Input errors say which row, column or entry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A distance matrix is not square (row `row` has `len` entries, but there are `n` rows).
    #[error("distance matrix is not square: row {row} has {len} entries, but there are {n} rows")]
    NotSquare {
        /// The offending row.
        row: usize,
        /// Its length.
        len: usize,
        /// The number of rows.
        n: usize,
    },
    /// A distance matrix is not symmetric within the tolerance.
    #[error("distance matrix is not symmetric: d[{i}][{j}] = {d_ij} but d[{j}][{i}] = {d_ji}")]
    NotSymmetric {
        /// Row of the first entry.
        i: usize,
        /// Column of the first entry.
        j: usize,
        /// `d[i][j]`.
        d_ij: f64,
        /// `d[j][i]`.
        d_ji: f64,
    },
    /// A distance is negative.
    #[error("distance matrix has a negative entry: d[{i}][{j}] = {value}")]
    NegativeDistance {
        /// Row.
        i: usize,
        /// Column.
        j: usize,
        /// The value.
        value: f64,
    },
    /// A diagonal entry is not zero (within the tolerance).
    #[error("distance matrix has a non-zero diagonal entry: d[{i}][{i}] = {value}")]
    NonZeroDiagonal {
        /// Row and column.
        i: usize,
        /// The value.
        value: f64,
    },
    /// An input value is NaN or infinite.
    #[error("{what} has a non-finite value at row {row}, column {col}")]
    NotFinite {
        /// Which input ("distance matrix", "embeddings", ...).
        what: &'static str,
        /// Row (or index, for a vector).
        row: usize,
        /// Column (0 for a vector).
        col: usize,
    },
    /// The input has the wrong shape: empty, ragged rows, or mismatched lengths.
    #[error("bad input shape: {0}")]
    Shape(String),
    /// The input is valid but the quantity is undefined for it (e.g. the correlation of a
    /// constant signal).
    #[error("undefined: {0}")]
    Degenerate(String),
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    InvalidConfig(String),
    /// A CSV file could not be written.
    #[error("{path}: {reason}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A plot or table could not be encoded or written.
    #[error(transparent)]
    Image(#[from] comir_image::Error),
}

/// Checks that `rows` is a non-empty matrix of finite values with equal row lengths, and returns
/// the row length. `what` names the input in errors.
pub(crate) fn check_rows(rows: &[Vec<f32>], what: &'static str) -> Result<usize, Error> {
    let Some(first) = rows.first() else {
        return Err(Error::Shape(format!("{what}: no rows")));
    };
    let d = first.len();
    if d == 0 {
        return Err(Error::Shape(format!("{what}: rows have no values")));
    }
    for (i, r) in rows.iter().enumerate() {
        if r.len() != d {
            return Err(Error::Shape(format!(
                "{what}: row {i} has {} values, row 0 has {d}",
                r.len()
            )));
        }
        if let Some(col) = r.iter().position(|v| !v.is_finite()) {
            return Err(Error::NotFinite { what, row: i, col });
        }
    }
    Ok(d)
}
