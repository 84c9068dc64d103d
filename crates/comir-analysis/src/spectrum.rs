//! The singular-value spectrum of the embedding covariance, after Jing, Vincent, LeCun, Tian,
//! "Understanding dimensional collapse in contrastive self-supervised learning" (ICLR 2022).
//!
//! For n embeddings `z_i ∈ R^d`, centred on their mean, the covariance is
//! `C = (1/n) Σ_i (z_i − z̄)(z_i − z̄)ᵀ = XᵀX / n`. Its singular values, sorted descending, show
//! how many directions the embedding really uses: **dimensional collapse** is a tail of singular
//! values that fall to about 0 (a cliff on a log plot). `C` is symmetric positive semi-definite, so
//! its singular values are its eigenvalues; rounding can make the smallest ones slightly negative,
//! and they are clamped to 0.
//!
//! Two summaries condense a spectrum into numbers:
//! * [`effective_rank`] (Roy & Vetterli, "The effective rank: a measure of effective
//!   dimensionality", EUSIPCO 2007): `exp(H(p))` with `p_k = σ_k / Σσ` and `H` the Shannon entropy
//!   in nats. It is `r` for `r` equal singular values and the rest 0, and shrinks as the spectrum
//!   concentrates on a few directions.
//! * [`count_below`]: how many singular values are below `rel` (default [`COLLAPSE_REL`] = 10⁻⁵)
//!   times the largest: the collapsed dimensions.
//!
//! Cost: when `d > n` the non-zero spectrum is computed from the n × n Gram matrix `XXᵀ / n`
//! instead of the d × d covariance (both have the same non-zero eigenvalues, since `XᵀX` and `XXᵀ`
//! do), so the eigendecomposition costs `min(n, d)³`, and a flattened bottleneck of a few thousand
//! values is fine with a few hundred patches.

use nalgebra::DMatrix;

use crate::{check_rows, Error};

/// The default threshold of [`count_below`]: a singular value below 10⁻⁵ of the largest counts as
/// collapsed (the threshold of the dimensional-collapse analysis, docs/method.md §8.3).
pub const COLLAPSE_REL: f64 = 1e-5;

/// Which matrix the eigenvalues are taken from. Both give the same spectrum; they differ in cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Route {
    /// The covariance when `d ≤ n`, the Gram matrix otherwise (cost `min(n, d)³`).
    #[default]
    Auto,
    /// The d × d covariance `XᵀX / n`.
    Covariance,
    /// The n × n Gram matrix `XXᵀ / n`, its spectrum padded with zeros to d values.
    Gram,
}

/// The singular values of the covariance of `rows` (one embedding per row), sorted descending,
/// d of them (d = the row length). See the module docs.
///
/// # Shapes
/// `rows`: n rows of d values; result: d values.
///
/// # Errors
/// [`Error::Shape`] for no rows or empty or ragged rows; [`Error::NotFinite`] for NaN or ±∞.
pub fn covariance_spectrum(rows: &[Vec<f32>]) -> Result<Vec<f64>, Error> {
    covariance_spectrum_via(rows, Route::Auto)
}

/// [`covariance_spectrum`] through a chosen [`Route`] (to check that the routes agree, or to
/// force one).
///
/// # Errors
/// As [`covariance_spectrum`].
pub fn covariance_spectrum_via(rows: &[Vec<f32>], route: Route) -> Result<Vec<f64>, Error> {
    let d = check_rows(rows, "embeddings")?;
    let n = rows.len();
    // Centre in f64: the mean of a few thousand f32 values loses digits the spectrum's small end
    // needs.
    let mut mean = vec![0.0f64; d];
    for r in rows {
        for (m, &v) in mean.iter_mut().zip(r) {
            *m += v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let x = DMatrix::from_fn(n, d, |i, k| rows[i][k] as f64 - mean[k]);
    let use_gram = match route {
        Route::Auto => d > n,
        Route::Covariance => false,
        Route::Gram => true,
    };
    let m = if use_gram {
        &x * x.transpose()
    } else {
        x.transpose() * &x
    } / n as f64;
    // Products computed in different orders leave the matrix asymmetric by rounding; the
    // eigensolver reads one triangle, so make both the average.
    let m = (&m + m.transpose()) * 0.5;
    let mut sv: Vec<f64> = m
        .symmetric_eigenvalues()
        .iter()
        .map(|&v| v.max(0.0))
        .collect();
    sv.sort_by(|a, b| b.total_cmp(a));
    // The Gram matrix has n eigenvalues; the covariance has d, of which at most min(n, d) are
    // non-zero. Keep d: the top ones, then exact zeros.
    sv.truncate(d);
    sv.resize(d, 0.0);
    Ok(sv)
}

/// The effective rank `exp(−Σ p_k ln p_k)`, `p_k = σ_k / Σσ` (Roy & Vetterli 2007), between 1 (one
/// direction) and the number of values (all equal). Negative values count as 0; an empty or
/// all-zero spectrum has effective rank 0.
pub fn effective_rank(sv: &[f64]) -> f64 {
    let total: f64 = sv.iter().map(|&s| s.max(0.0)).sum();
    if total <= 0.0 {
        return 0.0;
    }
    let entropy: f64 = sv
        .iter()
        .map(|&s| s.max(0.0) / total)
        .filter(|&p| p > 0.0)
        .map(|p| -p * p.ln())
        .sum();
    entropy.exp()
}

/// How many values are below `rel` times the largest (use [`COLLAPSE_REL`] for the analysis's
/// 10⁻⁵). An all-zero spectrum has every value collapsed, so the count is its length.
pub fn count_below(sv: &[f64], rel: f64) -> usize {
    let max = sv.iter().copied().fold(0.0f64, f64::max);
    if max <= 0.0 {
        return sv.len();
    }
    sv.iter().filter(|&&s| s < rel * max).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::StandardNormal;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// A random orthonormal d × d matrix (Gram–Schmidt on Gaussian columns).
    fn rotation(d: usize, seed: u64) -> Vec<Vec<f64>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut q: Vec<Vec<f64>> = Vec::new();
        while q.len() < d {
            let mut v: Vec<f64> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
            for u in &q {
                let dot: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(u).for_each(|(a, b)| *a -= dot * b);
            }
            let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            v.iter_mut().for_each(|a| *a /= norm);
            q.push(v);
        }
        q
    }

    fn rotate(rows: &[Vec<f64>], q: &[Vec<f64>]) -> Vec<Vec<f32>> {
        rows.iter()
            .map(|r| {
                q.iter()
                    .map(|u| r.iter().zip(u).map(|(a, b)| a * b).sum::<f64>() as f32)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn constructed_data_has_the_exact_spectrum() {
        // (±2, ±1, 0, 0, 0): mean 0, covariance diag(4, 1, 0, 0, 0) exactly.
        let rows: Vec<Vec<f32>> = [[2.0, 1.0], [2.0, -1.0], [-2.0, 1.0], [-2.0, -1.0]]
            .iter()
            .map(|&[a, b]| vec![a + 10.0, b - 3.0, 7.0, 7.0, 7.0]) // an offset, removed by centring
            .collect();
        for route in [Route::Auto, Route::Covariance, Route::Gram] {
            let sv = covariance_spectrum_via(&rows, route).expect("spectrum");
            assert_eq!(sv.len(), 5);
            let want = [4.0, 1.0, 0.0, 0.0, 0.0];
            for (k, (&got, &w)) in sv.iter().zip(&want).enumerate() {
                assert!(close(got, w, 1e-12), "{route:?} σ_{k} = {got}, want {w}");
            }
            assert_eq!(count_below(&sv, COLLAPSE_REL), 3);
        }
        // Effective rank of [4, 1]: p = (0.8, 0.2).
        let want = (-(0.8f64 * 0.8f64.ln() + 0.2 * 0.2f64.ln())).exp();
        let sv = covariance_spectrum(&rows).expect("spectrum");
        assert!(close(effective_rank(&sv), want, 1e-12));
        assert!(close(want, 1.649_385, 1e-6)); // hand value
    }

    #[test]
    fn rotated_constructed_data_keeps_its_spectrum() {
        // The same covariance diag(4, 1, 0, 0, 0) seen in a rotated basis: no longer diagonal, same
        // singular values (up to the f32 rounding of the input).
        let base: Vec<Vec<f64>> = [[2.0, 1.0], [2.0, -1.0], [-2.0, 1.0], [-2.0, -1.0]]
            .iter()
            .map(|&[a, b]| vec![a, b, 0.0, 0.0, 0.0])
            .collect();
        let rows = rotate(&base, &rotation(5, 1));
        let sv = covariance_spectrum(&rows).expect("spectrum");
        assert!(close(sv[0], 4.0, 1e-6) && close(sv[1], 1.0, 1e-6), "{sv:?}");
        assert!(sv[2..].iter().all(|&s| s < 1e-6), "{sv:?}");
    }

    #[test]
    fn sampled_gaussian_data_matches_its_covariance() {
        // z = (2 g1, g2, 0, 0, 0, 0) rotated: covariance eigenvalues (4, 1, 0, 0, 0, 0).
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let n = 20_000;
        let base: Vec<Vec<f64>> = (0..n)
            .map(|_| {
                let mut v = vec![0.0; 6];
                v[0] = 2.0 * rng.sample::<f64, _>(StandardNormal);
                v[1] = rng.sample::<f64, _>(StandardNormal);
                v
            })
            .collect();
        let rows = rotate(&base, &rotation(6, 3));
        let sv = covariance_spectrum(&rows).expect("spectrum");
        // Sampling error of a variance estimate is about σ²·sqrt(2/n) ≈ 1 % here.
        assert!(close(sv[0], 4.0, 0.2), "{sv:?}");
        assert!(close(sv[1], 1.0, 0.05), "{sv:?}");
        assert!(sv[2..].iter().all(|&s| s < 1e-6 * sv[0]), "{sv:?}");
        assert_eq!(count_below(&sv, COLLAPSE_REL), 4);
        let want = (-(0.8f64 * 0.8f64.ln() + 0.2 * 0.2f64.ln())).exp();
        assert!(close(effective_rank(&sv), want, 0.05));
    }

    #[test]
    fn isotropic_data_of_rank_r_has_effective_rank_r() {
        // Exact: ±e_k for k < r gives covariance (1/r)·diag(1, …, 1, 0, …).
        let (r, d) = (7, 12);
        let rows: Vec<Vec<f32>> = (0..r)
            .flat_map(|k| {
                [1.0f32, -1.0].map(|s| {
                    let mut v = vec![0.0; d];
                    v[k] = s;
                    v
                })
            })
            .collect();
        let sv = covariance_spectrum(&rows).expect("spectrum");
        assert!(close(effective_rank(&sv), r as f64, 1e-9));
        assert_eq!(count_below(&sv, COLLAPSE_REL), d - r);

        // Sampled: isotropic Gaussian in a random r-dimensional subspace of R^d.
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let q = rotation(d, 9);
        let base: Vec<Vec<f64>> = (0..20_000)
            .map(|_| {
                (0..d)
                    .map(|k| {
                        if k < r {
                            rng.sample::<f64, _>(StandardNormal)
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect();
        let sv = covariance_spectrum(&rotate(&base, &q)).expect("spectrum");
        let er = effective_rank(&sv);
        assert!(close(er, r as f64, 0.05 * r as f64), "{er} {sv:?}");
        assert_eq!(count_below(&sv, COLLAPSE_REL), d - r);
    }

    #[test]
    fn count_below_finds_the_collapsed_directions_of_rank_deficient_data() {
        // 50 samples in R^20 spanned by 3 random directions: 17 collapsed dimensions.
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let basis: Vec<Vec<f64>> = (0..3)
            .map(|_| (0..20).map(|_| rng.sample(StandardNormal)).collect())
            .collect();
        let rows: Vec<Vec<f32>> = (0..50)
            .map(|_| {
                let c: Vec<f64> = (0..3).map(|_| rng.sample(StandardNormal)).collect();
                (0..20)
                    .map(|k| (0..3).map(|j| c[j] * basis[j][k]).sum::<f64>() as f32)
                    .collect()
            })
            .collect();
        let sv = covariance_spectrum(&rows).expect("spectrum");
        assert_eq!(count_below(&sv, COLLAPSE_REL), 17, "{sv:?}");
        assert!(sv[2] > 1e-3 * sv[0]);
    }

    #[test]
    fn gram_route_gives_the_same_spectrum_as_the_covariance() {
        // d > n: the Gram route is the cheap one; d < n: the covariance is.
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        for (n, d) in [(15, 40), (40, 15), (20, 20)] {
            let rows: Vec<Vec<f32>> = (0..n)
                .map(|_| (0..d).map(|_| rng.gen_range(-1.0..1.0)).collect())
                .collect();
            let cov = covariance_spectrum_via(&rows, Route::Covariance).expect("cov");
            let gram = covariance_spectrum_via(&rows, Route::Gram).expect("gram");
            let auto = covariance_spectrum(&rows).expect("auto");
            assert_eq!((cov.len(), gram.len()), (d, d));
            for k in 0..d {
                assert!(close(cov[k], gram[k], 1e-12 * cov[0]), "n {n} d {d} k {k}");
            }
            assert_eq!(auto, if d > n { gram } else { cov });
            // Centring removes one dimension: at most n − 1 non-zero values.
            assert!(count_below(&auto, COLLAPSE_REL) >= d.saturating_sub(n - 1));
        }
    }

    #[test]
    fn summaries_of_hand_spectra() {
        assert_eq!(effective_rank(&[]), 0.0);
        assert_eq!(effective_rank(&[0.0, 0.0]), 0.0);
        assert!(close(effective_rank(&[5.0]), 1.0, 1e-15));
        assert!(close(effective_rank(&[2.0, 2.0, 2.0, 0.0]), 3.0, 1e-12));
        assert!(close(effective_rank(&[2.0, 2.0, -1e-18]), 2.0, 1e-12));
        assert_eq!(count_below(&[1.0, 1e-4, 1e-5, 9.9e-6, 0.0], 1e-5), 2);
        assert_eq!(count_below(&[0.0, 0.0, 0.0], 1e-5), 3);
        assert_eq!(count_below(&[], 1e-5), 0);
    }

    #[test]
    fn bad_embeddings_are_refused() {
        assert!(matches!(covariance_spectrum(&[]), Err(Error::Shape(_))));
        assert!(matches!(
            covariance_spectrum(&[vec![], vec![]]),
            Err(Error::Shape(_))
        ));
        assert!(matches!(
            covariance_spectrum(&[vec![1.0, 2.0], vec![1.0]]),
            Err(Error::Shape(_))
        ));
        assert!(matches!(
            covariance_spectrum(&[vec![1.0, 2.0], vec![1.0, f32::INFINITY]]),
            Err(Error::NotFinite { row: 1, col: 1, .. })
        ));
        // One sample is valid: no spread, all zero.
        assert_eq!(
            covariance_spectrum(&[vec![1.0, 2.0]]).expect("one"),
            vec![0.0, 0.0]
        );
    }
}
