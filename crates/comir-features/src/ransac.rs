//! Rigid (rotation + translation, no scale) model fitting: least squares (2-D Procrustes) and
//! RANSAC from two-point minimal samples.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A rigid map `q = R(θ)·p + t` (rotation about the origin, then translation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RigidModel {
    /// Rotation angle θ in radians.
    pub angle_rad: f64,
    /// Translation `t`.
    pub translation: [f64; 2],
}

impl RigidModel {
    /// Maps a point.
    #[inline]
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        let (s, c) = self.angle_rad.sin_cos();
        [
            c * p[0] - s * p[1] + self.translation[0],
            s * p[0] + c * p[1] + self.translation[1],
        ]
    }

    /// Euclidean distance between the image of `p` and `q`.
    #[inline]
    pub fn residual(&self, p: [f64; 2], q: [f64; 2]) -> f64 {
        let m = self.apply(p);
        ((m[0] - q[0]).powi(2) + (m[1] - q[1]).powi(2)).sqrt()
    }
}

/// The least-squares rigid map from `src` to `dst` (2-D Kabsch/Procrustes without scale):
/// minimises `Σ |R·srcᵢ + t − dstᵢ|²`. `None` for fewer than two points or when the points all
/// coincide (the rotation is then undetermined).
pub fn procrustes(src: &[[f64; 2]], dst: &[[f64; 2]]) -> Option<RigidModel> {
    let n = src.len().min(dst.len());
    if n < 2 {
        return None;
    }
    let mean = |pts: &[[f64; 2]]| {
        let s = pts[..n]
            .iter()
            .fold([0.0, 0.0], |a, p| [a[0] + p[0], a[1] + p[1]]);
        [s[0] / n as f64, s[1] / n as f64]
    };
    let (ms, md) = (mean(src), mean(dst));
    // a = Σ p'·q', b = Σ p' × q' (centred); θ = atan2(b, a) maximises Σ q'·R p'.
    let (mut a, mut b) = (0.0, 0.0);
    for (p, q) in src[..n].iter().zip(&dst[..n]) {
        let (px, py) = (p[0] - ms[0], p[1] - ms[1]);
        let (qx, qy) = (q[0] - md[0], q[1] - md[1]);
        a += px * qx + py * qy;
        b += px * qy - py * qx;
    }
    if (a == 0.0 && b == 0.0) || !(a.is_finite() && b.is_finite()) {
        return None;
    }
    let angle_rad = b.atan2(a);
    let (s, c) = angle_rad.sin_cos();
    Some(RigidModel {
        angle_rad,
        translation: [
            md[0] - (c * ms[0] - s * ms[1]),
            md[1] - (s * ms[0] + c * ms[1]),
        ],
    })
}

/// The result of [`ransac_rigid`].
#[derive(Clone, Debug, PartialEq)]
pub struct RansacFit {
    /// The least-squares model on the final inliers.
    pub model: RigidModel,
    /// Indices of the correspondences within the threshold of `model`, increasing.
    pub inliers: Vec<usize>,
    /// Mean residual of the inliers, in pixels.
    pub mean_residual: f64,
    /// Random samples drawn.
    pub iterations: usize,
}

/// Indices with residual ≤ `thr` and the sum of their residuals.
fn inliers_of(
    model: &RigidModel,
    src: &[[f64; 2]],
    dst: &[[f64; 2]],
    thr: f64,
) -> (Vec<usize>, f64) {
    let mut idx = Vec::new();
    let mut sum = 0.0;
    for (i, (p, q)) in src.iter().zip(dst).enumerate() {
        let r = model.residual(*p, *q);
        if r <= thr {
            idx.push(i);
            sum += r;
        }
    }
    (idx, sum)
}

/// RANSAC for a rigid map from `src[i]` to `dst[i]`.
///
/// Each of `iterations` trials draws two distinct correspondences with a
/// [`ChaCha8Rng`] seeded by `seed`, skips the sample when the two point distances differ by more
/// than `2·threshold` (no rigid map can fit both) or the points coincide, and otherwise fits the
/// exact two-point model and counts the correspondences with residual ≤ `threshold`. The model with
/// the most inliers wins (ties: smaller residual sum, then the earlier trial). It is then refitted
/// by [`procrustes`] on its inliers, and the inlier set recomputed, until it no longer changes (at
/// most 20 rounds).
///
/// `None` when there are fewer than two correspondences or no trial gave a model.
pub fn ransac_rigid(
    src: &[[f64; 2]],
    dst: &[[f64; 2]],
    threshold: f64,
    iterations: usize,
    seed: u64,
) -> Option<RansacFit> {
    let n = src.len().min(dst.len());
    let (src, dst) = (&src[..n], &dst[..n]);
    if n < 2 {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut best: Option<(usize, f64, RigidModel)> = None;
    for _ in 0..iterations {
        let i = rng.gen_range(0..n);
        let mut j = rng.gen_range(0..n - 1);
        if j >= i {
            j += 1;
        }
        let ds = [src[j][0] - src[i][0], src[j][1] - src[i][1]];
        let dd = [dst[j][0] - dst[i][0], dst[j][1] - dst[i][1]];
        let (ls, ld) = (ds[0].hypot(ds[1]), dd[0].hypot(dd[1]));
        if ls < 1e-9 || ld < 1e-9 || (ls - ld).abs() > 2.0 * threshold {
            continue;
        }
        let Some(model) = procrustes(&[src[i], src[j]], &[dst[i], dst[j]]) else {
            continue;
        };
        let (idx, sum) = inliers_of(&model, src, dst, threshold);
        let better = match &best {
            None => true,
            Some((bn, bs, _)) => idx.len() > *bn || (idx.len() == *bn && sum < *bs),
        };
        if better {
            best = Some((idx.len(), sum, model));
        }
    }
    let (_, _, mut model) = best?;
    let (mut inliers, mut sum) = inliers_of(&model, src, dst, threshold);
    for _ in 0..20 {
        let s: Vec<[f64; 2]> = inliers.iter().map(|&i| src[i]).collect();
        let d: Vec<[f64; 2]> = inliers.iter().map(|&i| dst[i]).collect();
        let Some(refit) = procrustes(&s, &d) else {
            break;
        };
        let (new_inl, new_sum) = inliers_of(&refit, src, dst, threshold);
        if new_inl.len() < 2 {
            break;
        }
        let same = new_inl == inliers;
        (model, inliers, sum) = (refit, new_inl, new_sum);
        if same {
            break;
        }
    }
    let mean_residual = if inliers.is_empty() {
        f64::INFINITY
    } else {
        sum / inliers.len() as f64
    };
    Some(RansacFit {
        model,
        inliers,
        mean_residual,
        iterations,
    })
}
