//! Analyses of learned representations, for the bottleneck-supervision study (Wetzer, Lindblad,
//! Sladoje 2023). The crate sees only numbers: embeddings are rows of `f32` (one row per patch,
//! flattened), and it knows nothing about networks or training.
//!
//! * [`mds`] — metric multidimensional scaling (SMACOF).
//! * [`spectrum`] — the singular-value spectrum of the embedding covariance.
//! * [`gap`] — the modality gap and Pearson correlation.
//! * [`plot`] — PNG plots.

#![warn(missing_docs)]

pub mod gap;
pub mod mds;
pub mod plot;
pub mod spectrum;

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
