//! How close corresponding representations of the two modalities are (the modality gap), and
//! Pearson correlation (for the equivariance score).
//!
//! CoMIR trains f_A and f_B so that the representation of a patch in modality A is close to the
//! representation of the same patch in modality B and far from other patches. The modality gap
//! measures that on test data: the mean Euclidean distance `‖a_i − b_i‖` of corresponding pairs
//! against the mean `‖a_i − b_j‖` over all non-corresponding pairs `i ≠ j`. A ratio well below 1
//! means the pairs find each other; a ratio near 1 means a representation says no more about its
//! partner than about any other patch.
//!
//! The equivariance score is a correlation: the representation of an image rotated by θ and
//! rotated back by −θ against the representation of the image itself; 1 means the network is
//! exactly equivariant to that rotation. [`pearson`] is that correlation (the caller does the
//! rotating and cropping to the common valid region).

use rayon::prelude::*;
use serde::Serialize;

use crate::mds::{euclidean, ROW_BLOCK};
use crate::{check_rows, Error};

/// The modality gap of n paired embeddings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ModalityGap {
    /// Mean `‖a_i − b_i‖` over the n corresponding pairs.
    pub corresponding: f64,
    /// Mean `‖a_i − b_j‖` over the n(n − 1) ordered non-corresponding pairs `i ≠ j`.
    pub non_corresponding: f64,
    /// `corresponding / non_corresponding`: below 1, pairs are closer than strangers. NaN when
    /// every distance is 0 (all embeddings coincide).
    pub ratio: f64,
    /// Number of pairs.
    pub n: usize,
}

/// The modality gap of paired embeddings `a[i] ↔ b[i]` (see the module docs).
///
/// # Shapes
/// `a`, `b`: n ≥ 2 rows each, all of the same length d.
///
/// # Errors
/// [`Error::Shape`] for fewer than 2 pairs (no non-corresponding pair exists), different row
/// counts or lengths, empty or ragged rows; [`Error::NotFinite`] for NaN or ±∞.
pub fn modality_gap(a: &[Vec<f32>], b: &[Vec<f32>]) -> Result<ModalityGap, Error> {
    let da = check_rows(a, "modality A embeddings")?;
    let db = check_rows(b, "modality B embeddings")?;
    if a.len() != b.len() {
        return Err(Error::Shape(format!(
            "{} A embeddings but {} B embeddings; they must pair up",
            a.len(),
            b.len()
        )));
    }
    if da != db {
        return Err(Error::Shape(format!(
            "A embeddings have {da} values, B embeddings {db}"
        )));
    }
    let n = a.len();
    if n < 2 {
        return Err(Error::Shape(
            "the modality gap needs at least 2 pairs (there is no non-corresponding pair)".into(),
        ));
    }
    // Blocks of A rows in parallel (each B row read serves the whole block while cached); each
    // row's sum runs over j in order, and rows are added in order: the same result on any thread
    // count.
    let per_row: Vec<(f64, f64)> = (0..n.div_ceil(ROW_BLOCK))
        .into_par_iter()
        .flat_map_iter(|blk| {
            let (i0, i1) = (blk * ROW_BLOCK, ((blk + 1) * ROW_BLOCK).min(n));
            let mut sums = vec![(0.0, 0.0); i1 - i0];
            for (j, bj) in b.iter().enumerate() {
                for (i, s) in (i0..i1).zip(sums.iter_mut()) {
                    let dist = euclidean(&a[i], bj);
                    if i == j {
                        s.0 = dist;
                    } else {
                        s.1 += dist;
                    }
                }
            }
            sums
        })
        .collect();
    let same: f64 = per_row.iter().map(|p| p.0).sum();
    let other: f64 = per_row.iter().map(|p| p.1).sum();
    let corresponding = same / n as f64;
    let non_corresponding = other / (n * (n - 1)) as f64;
    Ok(ModalityGap {
        corresponding,
        non_corresponding,
        ratio: corresponding / non_corresponding,
        n,
    })
}

/// Pearson's correlation coefficient of two equal-length signals, computed in `f64`, in [−1, 1].
///
/// # Errors
/// [`Error::Shape`] for different or zero lengths; [`Error::NotFinite`] for NaN or ±∞ (`row` is
/// the index, `col` 0 for `x` and 1 for `y`); [`Error::Degenerate`] when either signal is
/// constant (its variance is 0 and the correlation undefined).
pub fn pearson(x: &[f32], y: &[f32]) -> Result<f64, Error> {
    if x.len() != y.len() {
        return Err(Error::Shape(format!(
            "correlation of signals of different lengths ({} and {})",
            x.len(),
            y.len()
        )));
    }
    if x.is_empty() {
        return Err(Error::Shape("correlation of empty signals".into()));
    }
    for (col, s) in [x, y].iter().enumerate() {
        if let Some(row) = s.iter().position(|v| !v.is_finite()) {
            return Err(Error::NotFinite {
                what: "correlation input",
                row,
                col,
            });
        }
    }
    let n = x.len() as f64;
    let mx = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let my = y.iter().map(|&v| v as f64).sum::<f64>() / n;
    // Two passes (means first): the one-pass formula loses everything to cancellation when the
    // signals sit far from 0, as sigmoid representations near 1 do.
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (&a, &b) in x.iter().zip(y) {
        let (p, q) = (a as f64 - mx, b as f64 - my);
        sxy += p * q;
        sxx += p * p;
        syy += q * q;
    }
    if sxx == 0.0 || syy == 0.0 {
        return Err(Error::Degenerate(
            "correlation with a constant signal (zero variance)".into(),
        ));
    }
    Ok((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_of_a_unit_square() {
        // a0 = (0,0), a1 = (1,0); b0 = (0,1), b1 = (1,1): corresponding distances 1 and 1,
        // non-corresponding ‖a0 − b1‖ = ‖a1 − b0‖ = √2.
        let a = vec![vec![0.0f32, 0.0], vec![1.0, 0.0]];
        let b = vec![vec![0.0f32, 1.0], vec![1.0, 1.0]];
        let g = modality_gap(&a, &b).expect("gap");
        assert_eq!(g.n, 2);
        assert!((g.corresponding - 1.0).abs() < 1e-15);
        assert!((g.non_corresponding - 2.0f64.sqrt()).abs() < 1e-15);
        assert!((g.ratio - 1.0 / 2.0f64.sqrt()).abs() < 1e-15);
    }

    #[test]
    fn gap_of_three_points_on_a_line() {
        // a = 0, 1, 3 and b = a (identical): corresponding 0; non-corresponding ordered pairs
        // |0−1|, |0−3|, |1−0|, |1−3|, |3−0|, |3−1| = 1, 3, 1, 2, 3, 2 → mean 2.
        let a = vec![vec![0.0f32], vec![1.0], vec![3.0]];
        let g = modality_gap(&a, &a).expect("gap");
        assert_eq!(g.corresponding, 0.0);
        assert!((g.non_corresponding - 2.0).abs() < 1e-15);
        assert_eq!(g.ratio, 0.0);
        // b shifted by 1: corresponding 1 each; non-corresponding |a_i − (a_j + 1)|:
        // |0−2|, |0−4|, |1−1|, |1−4|, |3−1|, |3−2| = 2, 4, 0, 3, 2, 1 → 12/6 = 2.
        let b: Vec<Vec<f32>> = a.iter().map(|r| vec![r[0] + 1.0]).collect();
        let g = modality_gap(&a, &b).expect("gap");
        assert!((g.corresponding - 1.0).abs() < 1e-15);
        assert!((g.non_corresponding - 2.0).abs() < 1e-15);
        assert!((g.ratio - 0.5).abs() < 1e-15);
    }

    #[test]
    fn gap_refuses_bad_shapes() {
        let one = vec![vec![0.0f32]];
        assert!(matches!(modality_gap(&one, &one), Err(Error::Shape(_))));
        let a = vec![vec![0.0f32], vec![1.0]];
        let b = vec![vec![0.0f32], vec![1.0], vec![2.0]];
        assert!(matches!(modality_gap(&a, &b), Err(Error::Shape(_))));
        let b2 = vec![vec![0.0f32, 0.0], vec![1.0, 0.0]];
        assert!(matches!(modality_gap(&a, &b2), Err(Error::Shape(_))));
        let nan = vec![vec![0.0f32], vec![f32::NAN]];
        assert!(matches!(
            modality_gap(&a, &nan),
            Err(Error::NotFinite { row: 1, .. })
        ));
    }

    #[test]
    fn pearson_hand_values() {
        let r = pearson(&[1.0, 2.0, 3.0, 4.0], &[2.0, 4.0, 6.0, 8.0]).expect("r");
        assert!((r - 1.0).abs() < 1e-15);
        let r = pearson(&[1.0, 2.0, 3.0, 4.0], &[8.0, 6.0, 4.0, 2.0]).expect("r");
        assert!((r + 1.0).abs() < 1e-15);
        // dx = (−1, 0, 1), dy = (−1, 1, 0): Σdxdy = 1, Σdx² = Σdy² = 2 → r = 1/2.
        let r = pearson(&[1.0, 2.0, 3.0], &[1.0, 3.0, 2.0]).expect("r");
        assert!((r - 0.5).abs() < 1e-15);
        // Uncorrelated: dx = (−1, 1, −1, 1), dy = (−1, −1, 1, 1) → 0.
        let r = pearson(&[0.0, 2.0, 0.0, 2.0], &[0.0, 0.0, 2.0, 2.0]).expect("r");
        assert_eq!(r, 0.0);
        // Far from zero, where the one-pass formula breaks down in f32.
        let x: Vec<f32> = (0..100).map(|i| 1000.0 + i as f32 * 1e-2).collect();
        let r = pearson(&x, &x).expect("r");
        assert!((r - 1.0).abs() < 1e-12);
    }

    #[test]
    fn pearson_refuses_bad_input() {
        assert!(matches!(pearson(&[], &[]), Err(Error::Shape(_))));
        assert!(matches!(pearson(&[1.0], &[1.0, 2.0]), Err(Error::Shape(_))));
        assert!(matches!(
            pearson(&[1.0, 1.0], &[1.0, 2.0]),
            Err(Error::Degenerate(_))
        ));
        assert!(matches!(
            pearson(&[1.0, 2.0], &[1.0, f32::NAN]),
            Err(Error::NotFinite { row: 1, col: 1, .. })
        ));
    }
}
