//! Metric multidimensional scaling by SMACOF (de Leeuw 1977; Borg & Groenen, *Modern
//! Multidimensional Scaling*, 2nd ed. 2005, ch. 8).
//!
//! Given dissimilarities `d_ij` between n objects, MDS looks for points `x_i` in `dims` dimensions
//! (2 by default) whose distances `δ_ij = ‖x_i − x_j‖` match them, by minimising the raw stress
//!
//! ```text
//! σ(X) = Σ_{i<j} (d_ij − δ_ij(X))²
//! ```
//!
//! SMACOF ("scaling by majorizing a complicated function") repeats the Guttman transform
//! `X ← (1/n) B(X) X`, with `B_ij = −d_ij / δ_ij` (0 where `δ_ij = 0`) off the diagonal and
//! `B_ii = −Σ_{j≠i} B_ij`. Each step minimises a majorizing function of σ, so the stress never
//! increases. It starts from classical (Torgerson) MDS, which makes the result deterministic and
//! exact when the dissimilarities are Euclidean distances of points in `dims` dimensions; a random
//! start would make every run draw a different picture.
//!
//! The reported normalised stress is Kruskal's stress-1 in the form sklearn also uses:
//! `sqrt(σ / Σ_{i<j} d_ij²)`, 0 for a perfect fit.
//!
//! Cost: classical MDS is one dense symmetric eigendecomposition (n³), each SMACOF iteration n²;
//! a few thousand points are fine.

use nalgebra::{DMatrix, SymmetricEigen};
use rayon::prelude::*;
use serde::Serialize;

use crate::{check_rows, Error};

/// Settings of [`smacof`].
#[derive(Clone, Debug, PartialEq)]
pub struct SmacofConfig {
    /// Dimensions of the embedding. Default 2 (a picture).
    pub dims: usize,
    /// Most Guttman transforms to run. Default 1000.
    pub max_iter: usize,
    /// Stop when one iteration lowers the raw stress by less than `tol` times its value.
    /// Default 1e-6: at SMACOF's slow linear convergence, smaller changes no longer move the
    /// picture.
    pub tol: f64,
    /// How far the input may be from an exact distance matrix, relative to its largest entry:
    /// `|d_ij − d_ji|`, `|d_ii|` and negative entries up to `input_tol · max d` are taken as
    /// rounding (the matrix is symmetrised and clamped), larger ones are refused. Default 1e-6.
    pub input_tol: f64,
}

impl Default for SmacofConfig {
    fn default() -> Self {
        SmacofConfig {
            dims: 2,
            max_iter: 1000,
            tol: 1e-6,
            input_tol: 1e-6,
        }
    }
}

impl SmacofConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for zero dimensions or a negative or non-finite tolerance.
    pub fn validate(&self) -> Result<(), Error> {
        if self.dims == 0 {
            return Err(Error::InvalidConfig(
                "MDS needs at least one dimension".into(),
            ));
        }
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return Err(Error::InvalidConfig(format!(
                "SMACOF tolerance must be finite and non-negative, got {}",
                self.tol
            )));
        }
        if !(self.input_tol.is_finite() && self.input_tol >= 0.0) {
            return Err(Error::InvalidConfig(format!(
                "distance-matrix tolerance must be finite and non-negative, got {}",
                self.input_tol
            )));
        }
        Ok(())
    }
}

/// How badly a configuration fits the dissimilarities.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stress {
    /// Raw stress `Σ_{i<j} (d_ij − δ_ij)²`, in squared distance units.
    pub raw: f64,
    /// Normalised stress-1 `sqrt(raw / Σ_{i<j} d_ij²)`: 0 is a perfect fit; scale-free. 0 when
    /// all dissimilarities and distances are 0, +∞ when all dissimilarities are 0 but the points
    /// are not.
    pub stress1: f64,
}

/// The result of [`smacof`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MdsResult {
    /// One point per object, `dims` coordinates each, centred on the origin.
    pub coords: Vec<Vec<f64>>,
    /// The stress of `coords`.
    pub stress: Stress,
    /// Guttman transforms run.
    pub iterations: usize,
    /// Whether the stopping rule was met (rather than `max_iter` reached).
    pub converged: bool,
}

impl MdsResult {
    /// The first two coordinates of each point, for plotting (a missing second coordinate, with
    /// `dims = 1`, is 0).
    pub fn points_2d(&self) -> Vec<[f64; 2]> {
        self.coords
            .iter()
            .map(|c| {
                [
                    c.first().copied().unwrap_or(0.0),
                    c.get(1).copied().unwrap_or(0.0),
                ]
            })
            .collect()
    }
}

/// Euclidean distances between all pairs of rows, computed in `f64`.
///
/// # Shapes
/// `rows`: n rows of d values; result: n × n, symmetric, zero diagonal.
///
/// # Errors
/// [`Error::Shape`] for no rows, empty or ragged rows; [`Error::NotFinite`] for NaN or ±∞.
pub fn pairwise_euclidean(rows: &[Vec<f32>]) -> Result<Vec<Vec<f64>>, Error> {
    check_rows(rows, "embeddings")?;
    let n = rows.len();
    // Upper triangle, each entry computed once so the matrix is exactly symmetric. Rows go in
    // blocks: every row j read from memory serves the whole block of rows i while it is in cache
    // (long embeddings make a row-at-a-time loop wait on memory).
    let blocks: Vec<Vec<f64>> = (0..n.div_ceil(ROW_BLOCK))
        .into_par_iter()
        .map(|blk| {
            let (i0, i1) = (blk * ROW_BLOCK, ((blk + 1) * ROW_BLOCK).min(n));
            let mut out = vec![0.0; (i1 - i0) * n];
            for j in i0 + 1..n {
                for i in i0..i1.min(j) {
                    out[(i - i0) * n + j] = euclidean(&rows[i], &rows[j]);
                }
            }
            out
        })
        .collect();
    let mut d = vec![vec![0.0; n]; n];
    for (blk, out) in blocks.iter().enumerate() {
        for (r, row) in out.chunks_exact(n).enumerate() {
            let i = blk * ROW_BLOCK + r;
            for j in i + 1..n {
                d[i][j] = row[j];
                d[j][i] = row[j];
            }
        }
    }
    Ok(d)
}

/// Rows per block in the all-pairs loops ([`pairwise_euclidean`], the modality gap): eight rows of
/// a few thousand floats stay in cache while the other rows stream past.
pub(crate) const ROW_BLOCK: usize = 8;

pub(crate) fn euclidean(a: &[f32], b: &[f32]) -> f64 {
    // Eight independent partial sums: one running sum is a chain of dependent additions the
    // compiler may not reorder, eight of them vectorise. The order is fixed, so the result is too.
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (p, q) in ca.zip(cb) {
        for k in 0..8 {
            let t = p[k] as f64 - q[k] as f64;
            acc[k] += t * t;
        }
    }
    for (k, (&p, &q)) in ra.iter().zip(rb).enumerate() {
        let t = p as f64 - q as f64;
        acc[k] += t * t;
    }
    acc.iter().sum::<f64>().sqrt()
}

/// A checked, symmetrised distance matrix, row-major.
struct Distances {
    n: usize,
    d: Vec<f64>,
    /// `Σ_{i<j} d_ij²`.
    sum_sq: f64,
}

impl Distances {
    fn new(rows: &[Vec<f64>], tol: f64) -> Result<Distances, Error> {
        let n = rows.len();
        if n == 0 {
            return Err(Error::Shape("distance matrix has no rows".into()));
        }
        for (i, r) in rows.iter().enumerate() {
            if r.len() != n {
                return Err(Error::NotSquare {
                    row: i,
                    len: r.len(),
                    n,
                });
            }
            if let Some(j) = r.iter().position(|v| !v.is_finite()) {
                return Err(Error::NotFinite {
                    what: "distance matrix",
                    row: i,
                    col: j,
                });
            }
        }
        let scale = rows
            .iter()
            .flat_map(|r| r.iter())
            .fold(0.0f64, |m, v| m.max(v.abs()));
        let slack = tol * scale;
        let mut d = vec![0.0; n * n];
        let mut sum_sq = 0.0;
        for i in 0..n {
            if rows[i][i].abs() > slack {
                return Err(Error::NonZeroDiagonal {
                    i,
                    value: rows[i][i],
                });
            }
            for j in i + 1..n {
                let (a, b) = (rows[i][j], rows[j][i]);
                if (a - b).abs() > slack {
                    return Err(Error::NotSymmetric {
                        i,
                        j,
                        d_ij: a,
                        d_ji: b,
                    });
                }
                for (r, c, v) in [(i, j, a), (j, i, b)] {
                    if v < -slack {
                        return Err(Error::NegativeDistance {
                            i: r,
                            j: c,
                            value: v,
                        });
                    }
                }
                let v = (0.5 * (a + b)).max(0.0);
                d[i * n + j] = v;
                d[j * n + i] = v;
                sum_sq += v * v;
            }
        }
        Ok(Distances { n, d, sum_sq })
    }

    fn get(&self, i: usize, j: usize) -> f64 {
        self.d[i * self.n + j]
    }
}

/// Flat `n × dims` coordinates.
fn dist(x: &[f64], dims: usize, i: usize, j: usize) -> f64 {
    let (a, b) = (&x[i * dims..(i + 1) * dims], &x[j * dims..(j + 1) * dims]);
    a.iter()
        .zip(b)
        .map(|(p, q)| (p - q) * (p - q))
        .sum::<f64>()
        .sqrt()
}

fn raw_stress(d: &Distances, x: &[f64], dims: usize) -> f64 {
    let n = d.n;
    // Per-row partial sums in parallel, added in row order: the same total on any thread count.
    let rows: Vec<f64> = (0..n)
        .into_par_iter()
        .map(|i| {
            (i + 1..n)
                .map(|j| {
                    let r = d.get(i, j) - dist(x, dims, i, j);
                    r * r
                })
                .sum()
        })
        .collect();
    rows.iter().sum()
}

fn stress_of(d: &Distances, x: &[f64], dims: usize) -> Stress {
    let raw = raw_stress(d, x, dims);
    let stress1 = if raw == 0.0 {
        0.0
    } else if d.sum_sq == 0.0 {
        f64::INFINITY
    } else {
        (raw / d.sum_sq).sqrt()
    };
    Stress { raw, stress1 }
}

/// One Guttman transform: `x_i ← (1/n) Σ_{j≠i} (d_ij / δ_ij) (x_i − x_j)`, which is
/// `(1/n) B(X) X` written out row by row (the terms with `δ_ij = 0` are dropped, as `B` sets them
/// to 0). Also returns the raw stress of `x`, from the same distances `δ_ij`, so an iteration
/// computes each distance once per direction rather than again for the stress.
fn guttman(d: &Distances, x: &[f64], dims: usize) -> (Vec<f64>, f64) {
    let n = d.n;
    let inv_n = 1.0 / n as f64;
    let rows: Vec<(Vec<f64>, f64)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut acc = vec![0.0; dims];
            let mut stress = 0.0;
            let xi = &x[i * dims..(i + 1) * dims];
            let drow = &d.d[i * n..(i + 1) * n];
            for (j, (xj, &dij)) in x.chunks_exact(dims).zip(drow).enumerate() {
                if j == i {
                    continue;
                }
                let delta = xi
                    .iter()
                    .zip(xj)
                    .map(|(p, q)| (p - q) * (p - q))
                    .sum::<f64>()
                    .sqrt();
                if j > i {
                    stress += (dij - delta) * (dij - delta);
                }
                if delta <= 0.0 {
                    continue;
                }
                let r = dij / delta;
                for ((a, p), q) in acc.iter_mut().zip(xi).zip(xj) {
                    *a += r * (p - q);
                }
            }
            acc.iter_mut().for_each(|v| *v *= inv_n);
            (acc, stress)
        })
        .collect();
    // Row sums added in row order: the same total on any thread count.
    let stress = rows.iter().map(|r| r.1).sum();
    (rows.into_iter().flat_map(|r| r.0).collect(), stress)
}

/// Classical (Torgerson) MDS: the top `dims` eigenvectors of the double-centred matrix
/// `B = −½ J D⁽²⁾ J`, scaled by the square roots of their eigenvalues (negative eigenvalues, from
/// non-Euclidean input, count as 0). Exact for Euclidean distances of points in `dims`
/// dimensions. Each axis's sign is fixed so that its largest-magnitude coordinate is positive,
/// so the result does not depend on the eigensolver's sign choice.
///
/// # Shapes
/// `distances`: n × n; result: n rows of `dims` coordinates.
///
/// # Errors
/// As [`smacof`].
pub fn classical_mds(distances: &[Vec<f64>], dims: usize) -> Result<Vec<Vec<f64>>, Error> {
    let cfg = SmacofConfig {
        dims,
        ..SmacofConfig::default()
    };
    cfg.validate()?;
    let d = Distances::new(distances, cfg.input_tol)?;
    Ok(unflatten(&classical(&d, dims), dims))
}

fn classical(d: &Distances, dims: usize) -> Vec<f64> {
    let n = d.n;
    let sq = |i: usize, j: usize| d.get(i, j) * d.get(i, j);
    let row_mean: Vec<f64> = (0..n)
        .map(|i| (0..n).map(|j| sq(i, j)).sum::<f64>() / n as f64)
        .collect();
    let grand = row_mean.iter().sum::<f64>() / n as f64;
    let b = DMatrix::from_fn(n, n, |i, j| {
        -0.5 * (sq(i, j) - row_mean[i] - row_mean[j] + grand)
    });
    let eig = SymmetricEigen::new(b);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&p, &q| eig.eigenvalues[q].total_cmp(&eig.eigenvalues[p]));
    let mut x = vec![0.0; n * dims];
    for (k, &col) in order.iter().take(dims).enumerate() {
        let scale = eig.eigenvalues[col].max(0.0).sqrt();
        let v = eig.eigenvectors.column(col);
        let sign = match v.iter().copied().max_by(|a, b| a.abs().total_cmp(&b.abs())) {
            Some(m) if m < 0.0 => -1.0,
            _ => 1.0,
        };
        for i in 0..n {
            x[i * dims + k] = sign * scale * v[i];
        }
    }
    x
}

fn unflatten(x: &[f64], dims: usize) -> Vec<Vec<f64>> {
    x.chunks(dims).map(<[f64]>::to_vec).collect()
}

/// Metric MDS by SMACOF, started from classical MDS ([`classical_mds`]), so the same input
/// always gives the same picture.
///
/// # Shapes
/// `distances`: n × n; result: n rows of `cfg.dims` coordinates.
///
/// # Errors
/// [`Error::InvalidConfig`] for bad settings; for the matrix: [`Error::Shape`] (no rows),
/// [`Error::NotSquare`], [`Error::NotFinite`], [`Error::NotSymmetric`],
/// [`Error::NegativeDistance`], [`Error::NonZeroDiagonal`] (beyond `cfg.input_tol`).
pub fn smacof(distances: &[Vec<f64>], cfg: &SmacofConfig) -> Result<MdsResult, Error> {
    cfg.validate()?;
    let d = Distances::new(distances, cfg.input_tol)?;
    let init = classical(&d, cfg.dims);
    Ok(run_smacof(&d, init, cfg))
}

/// Metric MDS by SMACOF from a given start (for comparisons, e.g. against random starts).
///
/// # Shapes
/// `init`: n rows of `cfg.dims` coordinates.
///
/// # Errors
/// As [`smacof`], plus [`Error::Shape`] when `init` does not have n rows of `cfg.dims` values
/// and [`Error::NotFinite`] for NaN or ±∞ in it.
pub fn smacof_from(
    distances: &[Vec<f64>],
    init: &[Vec<f64>],
    cfg: &SmacofConfig,
) -> Result<MdsResult, Error> {
    cfg.validate()?;
    let d = Distances::new(distances, cfg.input_tol)?;
    let x = check_coords(init, d.n, cfg.dims, "initial configuration")?;
    Ok(run_smacof(&d, x, cfg))
}

/// The stress of a configuration `coords` against `distances`.
///
/// # Errors
/// As [`smacof`] for the matrix; [`Error::Shape`] when `coords` does not have one row per object,
/// all of the same length; [`Error::NotFinite`] for NaN or ±∞ in it.
pub fn stress(distances: &[Vec<f64>], coords: &[Vec<f64>]) -> Result<Stress, Error> {
    let d = Distances::new(distances, SmacofConfig::default().input_tol)?;
    let dims = coords.first().map_or(0, Vec::len);
    if dims == 0 {
        return Err(Error::Shape("configuration has no coordinates".into()));
    }
    let x = check_coords(coords, d.n, dims, "configuration")?;
    Ok(stress_of(&d, &x, dims))
}

fn check_coords(
    coords: &[Vec<f64>],
    n: usize,
    dims: usize,
    what: &'static str,
) -> Result<Vec<f64>, Error> {
    if coords.len() != n {
        return Err(Error::Shape(format!(
            "{what} has {} points, the distance matrix {n}",
            coords.len()
        )));
    }
    let mut x = Vec::with_capacity(n * dims);
    for (i, c) in coords.iter().enumerate() {
        if c.len() != dims {
            return Err(Error::Shape(format!(
                "{what}: point {i} has {} coordinates, expected {dims}",
                c.len()
            )));
        }
        if let Some(col) = c.iter().position(|v| !v.is_finite()) {
            return Err(Error::NotFinite { what, row: i, col });
        }
        x.extend_from_slice(c);
    }
    Ok(x)
}

/// Below this stress-1² the fit is exact up to rounding, and relative decreases are noise.
const EXACT_FIT: f64 = 1e-20;

fn run_smacof(d: &Distances, mut x: Vec<f64>, cfg: &SmacofConfig) -> MdsResult {
    let dims = cfg.dims;
    // The Guttman transform yields centred points; centring the start too makes the output
    // centred even when no iteration runs.
    for k in 0..dims {
        let mean = (0..d.n).map(|i| x[i * dims + k]).sum::<f64>() / d.n as f64;
        (0..d.n).for_each(|i| x[i * dims + k] -= mean);
    }
    let exact = |raw: f64| raw <= EXACT_FIT * d.sum_sq;
    // `cur` is the stress of `x`, `next` its Guttman transform.
    let (mut next, mut cur) = guttman(d, &x, dims);
    let mut iterations = 0;
    let mut converged = exact(cur);
    while !converged && iterations < cfg.max_iter {
        let (after, s) = guttman(d, &next, dims);
        iterations += 1;
        // SMACOF never increases the stress in exact arithmetic; a rise is rounding at the
        // minimum, so keep the better configuration and stop.
        if s > cur {
            converged = true;
            break;
        }
        converged = exact(s) || cur - s <= cfg.tol * cur;
        x = next;
        next = after;
        cur = s;
    }
    MdsResult {
        stress: stress_of(d, &x, dims),
        coords: unflatten(&x, dims),
        iterations,
        converged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn dist_matrix(points: &[Vec<f64>]) -> Vec<Vec<f64>> {
        points
            .iter()
            .map(|p| {
                points
                    .iter()
                    .map(|q| {
                        p.iter()
                            .zip(q)
                            .map(|(a, b)| (a - b) * (a - b))
                            .sum::<f64>()
                            .sqrt()
                    })
                    .collect()
            })
            .collect()
    }

    fn random_points(n: usize, dims: usize, seed: u64) -> Vec<Vec<f64>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| (0..dims).map(|_| rng.gen_range(-5.0..5.0)).collect())
            .collect()
    }

    #[test]
    fn recovers_a_known_2d_configuration() {
        // An irregular 2-D configuration (a house outline plus a few points inside).
        let pts: Vec<Vec<f64>> = [
            [0.0, 0.0],
            [4.0, 0.0],
            [4.0, 3.0],
            [2.0, 5.0],
            [0.0, 3.0],
            [1.0, 1.0],
            [3.0, 2.0],
            [2.5, 0.5],
        ]
        .iter()
        .map(|p| p.to_vec())
        .collect();
        let d = dist_matrix(&pts);
        let fit = smacof(&d, &SmacofConfig::default()).expect("mds");
        assert!(fit.converged);
        assert!(fit.stress.stress1 < 1e-9, "{:?}", fit.stress);
        assert!(fit.stress.raw < 1e-12, "{:?}", fit.stress);
        let back = dist_matrix(&fit.coords);
        for i in 0..pts.len() {
            for j in 0..pts.len() {
                let (want, got) = (d[i][j], back[i][j]);
                assert!(
                    (want - got).abs() <= 1e-6 * want.max(1e-12),
                    "d[{i}][{j}]: {want} vs {got}"
                );
            }
        }
    }

    #[test]
    fn smacof_iterations_reach_the_exact_fit_from_a_perturbed_start() {
        // Tests the Guttman iteration itself (from classical MDS there is nothing left to do).
        let pts = random_points(12, 2, 3);
        let d = dist_matrix(&pts);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let init: Vec<Vec<f64>> = pts
            .iter()
            .map(|p| p.iter().map(|v| v + rng.gen_range(-1.0..1.0)).collect())
            .collect();
        let cfg = SmacofConfig {
            max_iter: 20_000,
            tol: 0.0,
            ..SmacofConfig::default()
        };
        let start = stress(&d, &init).expect("stress");
        let fit = smacof_from(&d, &init, &cfg).expect("mds");
        assert!(start.stress1 > 0.01);
        assert!(fit.iterations > 1);
        assert!(fit.stress.stress1 < 1e-6, "{:?}", fit.stress);
    }

    #[test]
    fn guttman_transforms_never_increase_the_stress() {
        // The majorization property, checked on the bare transform (run_smacof would hide a rise
        // by stopping at it).
        let pts = random_points(15, 3, 5);
        let d = Distances::new(&dist_matrix(&pts), 1e-6).expect("d");
        let mut x = random_points(15, 2, 6).concat();
        let mut last = raw_stress(&d, &x, 2);
        let first = last;
        for it in 0..50 {
            let (next, stress_before) = guttman(&d, &x, 2);
            assert!((stress_before - last).abs() <= 1e-12 * last);
            x = next;
            let s = raw_stress(&d, &x, 2);
            assert!(s <= last * (1.0 + 1e-12), "iteration {it}: {s} > {last}");
            last = s;
        }
        assert!(last < 0.5 * first);
    }

    #[test]
    fn a_3d_configuration_in_2d_has_some_stress_but_less_than_random_starts() {
        let pts = random_points(20, 3, 7);
        let d = dist_matrix(&pts);
        let fit = smacof(&d, &SmacofConfig::default()).expect("mds");
        assert!(fit.converged);
        assert!(fit.stress.stress1 > 1e-3, "{:?}", fit.stress);
        // SMACOF improves on its classical start.
        let classical = stress(&d, &classical_mds(&d, 2).expect("cmds")).expect("stress");
        assert!(fit.stress.raw <= classical.raw);
        // Better than random configurations of the same spread, and no worse than SMACOF run
        // from random starts (which can stop in poorer local minima).
        let cfg = SmacofConfig::default();
        for seed in 0..10 {
            let init = random_points(20, 2, 100 + seed);
            let random = stress(&d, &init).expect("stress");
            assert!(fit.stress.raw < random.raw, "seed {seed}");
            let from_random = smacof_from(&d, &init, &cfg).expect("mds");
            assert!(
                // (within the stopping tolerance's reach)
                fit.stress.raw <= from_random.stress.raw * (1.0 + 1e-3),
                "seed {seed}: {} > {}",
                fit.stress.raw,
                from_random.stress.raw
            );
        }
    }

    #[test]
    fn stress1_is_normalised_by_the_squared_dissimilarities() {
        // Three points on a line, configuration collapsed to one point: every δ is 0, so the raw
        // stress is Σ d² and stress-1 is exactly 1.
        let d = vec![
            vec![0.0, 1.0, 2.0],
            vec![1.0, 0.0, 1.0],
            vec![2.0, 1.0, 0.0],
        ];
        let s = stress(&d, &[vec![0.0, 0.0], vec![0.0, 0.0], vec![0.0, 0.0]]).expect("s");
        assert_eq!(s.raw, 6.0);
        assert_eq!(s.stress1, 1.0);
        // Half-scale configuration: residuals 0.5, 0.5, 1 → raw 1.5, stress-1 = sqrt(1.5/6) = 0.5.
        let s = stress(&d, &[vec![0.0], vec![0.5], vec![1.0]]).expect("s");
        assert!((s.raw - 1.5).abs() < 1e-15);
        assert!((s.stress1 - 0.5).abs() < 1e-15);
    }

    #[test]
    fn is_deterministic_and_centred() {
        let pts = random_points(30, 5, 9);
        let d = dist_matrix(&pts);
        let a = smacof(&d, &SmacofConfig::default()).expect("a");
        let b = smacof(&d, &SmacofConfig::default()).expect("b");
        assert_eq!(a, b);
        for k in 0..2 {
            let mean: f64 = a.coords.iter().map(|c| c[k]).sum::<f64>() / 30.0;
            assert!(mean.abs() < 1e-9);
        }
    }

    #[test]
    fn small_and_degenerate_inputs() {
        let one = smacof(&[vec![0.0]], &SmacofConfig::default()).expect("one");
        assert_eq!(one.coords, vec![vec![0.0, 0.0]]);
        assert_eq!(one.stress.stress1, 0.0);
        assert!(one.converged);
        let zeros = vec![vec![0.0; 4]; 4];
        let z = smacof(&zeros, &SmacofConfig::default()).expect("zeros");
        assert_eq!(z.stress.raw, 0.0);
        let two = smacof(&[vec![0.0, 3.0], vec![3.0, 0.0]], &SmacofConfig::default()).expect("two");
        assert!((dist_matrix(&two.coords)[0][1] - 3.0).abs() < 1e-12);
        assert_eq!(two.points_2d().len(), 2);
    }

    #[test]
    fn bad_matrices_are_refused() {
        let cfg = SmacofConfig::default();
        let err = |m: Vec<Vec<f64>>| smacof(&m, &cfg).expect_err("bad matrix");
        assert!(matches!(err(vec![]), Error::Shape(_)));
        assert!(matches!(
            err(vec![vec![0.0, 1.0], vec![1.0]]),
            Error::NotSquare {
                row: 1,
                len: 1,
                n: 2
            }
        ));
        assert!(matches!(
            err(vec![vec![0.0, 1.0], vec![2.0, 0.0]]),
            Error::NotSymmetric { i: 0, j: 1, .. }
        ));
        assert!(matches!(
            err(vec![vec![0.0, -1.0], vec![-1.0, 0.0]]),
            Error::NegativeDistance { .. }
        ));
        assert!(matches!(
            err(vec![vec![0.5, 1.0], vec![1.0, 0.0]]),
            Error::NonZeroDiagonal { i: 0, .. }
        ));
        assert!(matches!(
            err(vec![vec![0.0, f64::NAN], vec![f64::NAN, 0.0]]),
            Error::NotFinite { row: 0, col: 1, .. }
        ));
        assert!(matches!(
            err(vec![vec![0.0, f64::INFINITY], vec![f64::INFINITY, 0.0]]),
            Error::NotFinite { .. }
        ));
        // The messages name the entry.
        let msg = err(vec![vec![0.0, 1.0], vec![2.0, 0.0]]).to_string();
        assert!(
            msg.contains("d[0][1] = 1") && msg.contains("d[1][0] = 2"),
            "{msg}"
        );
        // Rounding-level asymmetry is accepted (and symmetrised).
        assert!(smacof(&[vec![0.0, 1.0], vec![1.0 + 1e-12, 0.0]], &cfg).is_ok());
        // Bad settings.
        let bad = SmacofConfig {
            dims: 0,
            ..SmacofConfig::default()
        };
        assert!(matches!(
            smacof(&[vec![0.0]], &bad),
            Err(Error::InvalidConfig(_))
        ));
        // A start of the wrong shape.
        assert!(matches!(
            smacof_from(&[vec![0.0]], &[vec![0.0]], &cfg),
            Err(Error::Shape(_))
        ));
    }

    #[test]
    fn pairwise_euclidean_matches_hand_values() {
        let rows = vec![vec![0.0f32, 0.0], vec![3.0, 4.0], vec![-1.0, 0.0]];
        let d = pairwise_euclidean(&rows).expect("d");
        assert_eq!(d[0][1], 5.0);
        assert_eq!(d[1][0], 5.0);
        assert_eq!(d[0][2], 1.0);
        assert!((d[1][2] - 32.0f64.sqrt()).abs() < 1e-15);
        assert_eq!(d[2][2], 0.0);
        // Long rows (the partial sums and the tail): ‖(1, …, 1)‖ over 19 values is √19.
        let long = pairwise_euclidean(&[vec![1.0f32; 19], vec![0.0; 19]]).expect("d");
        assert!((long[0][1] - 19.0f64.sqrt()).abs() < 1e-15);
        assert!(matches!(
            pairwise_euclidean(&[vec![0.0], vec![0.0, 1.0]]),
            Err(Error::Shape(_))
        ));
        assert!(matches!(
            pairwise_euclidean(&[vec![0.0], vec![f32::NAN]]),
            Err(Error::NotFinite { row: 1, col: 0, .. })
        ));
        assert!(matches!(pairwise_euclidean(&[]), Err(Error::Shape(_))));
    }
}
