//! Brute-force descriptor matching with Lowe's ratio test and/or a cross-check.

use rayon::prelude::*;

use crate::sift::{Keypoint, DESCRIPTOR_LEN};

/// A putative correspondence between a fixed and a moving keypoint.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Match {
    /// Index into the fixed image's keypoints.
    pub fixed: usize,
    /// Index into the moving image's keypoints.
    pub moving: usize,
    /// Euclidean descriptor distance.
    pub distance: f32,
}

/// Squared Euclidean distance of two descriptors, with eight independent accumulators so the
/// loop vectorises (the summation order is fixed, so the result is deterministic).
#[inline]
fn dist2(a: &[f32; DESCRIPTOR_LEN], b: &[f32; DESCRIPTOR_LEN]) -> f32 {
    let mut acc = [0f32; 8];
    for (ca, cb) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for l in 0..8 {
            let d = ca[l] - cb[l];
            acc[l] += d * d;
        }
    }
    acc.iter().sum()
}

/// Matches every fixed keypoint to its nearest moving keypoint (L2 distance of descriptors).
///
/// A match is kept when
/// * `ratio < 1` and the nearest distance is below `ratio` times the second nearest (Lowe's
///   ratio test; `ratio = 1` switches the test off), and
/// * if `cross_check`, the fixed keypoint is also the nearest to its moving partner (OpenCV
///   `BFMatcher(crossCheck = true)`).
///
/// Matches that repeat an earlier one's fixed and moving positions exactly (keypoints duplicated
/// by SIFT's secondary orientations) are dropped, keeping the closest, so that a correspondence
/// counts once in RANSAC. The result is ordered by fixed index.
pub fn match_descriptors(
    fixed: &[Keypoint],
    moving: &[Keypoint],
    ratio: f64,
    cross_check: bool,
) -> Vec<Match> {
    if fixed.is_empty() || moving.is_empty() {
        return Vec::new();
    }
    let nm = moving.len();
    // Row f: squared distances from fixed keypoint f to every moving keypoint.
    let dists: Vec<Vec<f32>> = fixed
        .par_iter()
        .map(|kf| {
            moving
                .iter()
                .map(|km| dist2(&kf.descriptor, &km.descriptor))
                .collect()
        })
        .collect();
    // Nearest fixed keypoint of every moving keypoint (first index on ties).
    let mut col_best = vec![(f32::INFINITY, usize::MAX); nm];
    for (f, row) in dists.iter().enumerate() {
        for (m, &d) in row.iter().enumerate() {
            if d < col_best[m].0 {
                col_best[m] = (d, f);
            }
        }
    }
    let ratio2 = (ratio * ratio) as f32;
    let mut out: Vec<Match> = Vec::new();
    for (f, row) in dists.iter().enumerate() {
        let (mut b1, mut b2, mut i1) = (f32::INFINITY, f32::INFINITY, usize::MAX);
        for (m, &d) in row.iter().enumerate() {
            if d < b1 {
                b2 = b1;
                b1 = d;
                i1 = m;
            } else if d < b2 {
                b2 = d;
            }
        }
        if i1 == usize::MAX {
            continue;
        }
        if ratio < 1.0 && b1 >= ratio2 * b2 {
            continue;
        }
        if cross_check && col_best[i1].1 != f {
            continue;
        }
        out.push(Match {
            fixed: f,
            moving: i1,
            distance: b1.max(0.0).sqrt(),
        });
    }
    dedup_positions(fixed, moving, out)
}

/// Drops matches whose fixed and moving positions both equal those of a closer match.
fn dedup_positions(fixed: &[Keypoint], moving: &[Keypoint], mut ms: Vec<Match>) -> Vec<Match> {
    let key = |m: &Match| {
        let (a, b) = (&fixed[m.fixed], &moving[m.moving]);
        [a.x.to_bits(), a.y.to_bits(), b.x.to_bits(), b.y.to_bits()]
    };
    let mut order: Vec<usize> = (0..ms.len()).collect();
    order.sort_by(|&i, &j| {
        key(&ms[i])
            .cmp(&key(&ms[j]))
            .then(ms[i].distance.total_cmp(&ms[j].distance))
            .then(i.cmp(&j))
    });
    let mut keep = vec![false; ms.len()];
    let mut last: Option<[u64; 4]> = None;
    for &i in &order {
        let k = key(&ms[i]);
        if last != Some(k) {
            keep[i] = true;
            last = Some(k);
        }
    }
    let mut i = 0;
    ms.retain(|_| {
        let k = keep[i];
        i += 1;
        k
    });
    ms
}
