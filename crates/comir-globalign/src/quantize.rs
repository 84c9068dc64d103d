//! Intensity quantisation into `k` labels by a deterministic 1-D k-means (Lloyd's algorithm).

/// Maps intensities to labels `0..k`, ordered by intensity.
#[derive(Clone, Debug)]
pub(crate) struct Quantizer {
    /// Decision thresholds: midpoints between consecutive sorted centroids.
    thresholds: Vec<f32>,
}

/// Histogram resolution of the k-means.
const BINS: usize = 4096;
/// Lloyd iterations at most.
const MAX_ITER: usize = 100;

impl Quantizer {
    /// Fits `k` clusters to the values.
    ///
    /// The values are binned into a 4096-bin histogram over their range; each non-empty bin
    /// becomes a weighted point at the mean of its values. Centroids start at the weighted
    /// quantiles `(i + 0.5)/k`; Lloyd iterations follow, and an empty cluster (e.g. several
    /// quantiles falling on a large uniform background) is re-seeded at the point that
    /// contributes most to the within-cluster error. Centroids are sorted, so labels follow
    /// intensity (the 1-D counterpart of globalign's nearest-neighbour ordering of clusters).
    pub(crate) fn fit(data: &[f32], k: usize) -> Quantizer {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for &v in data.iter().filter(|v| v.is_finite()) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if k < 2 || hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
            return Quantizer {
                thresholds: Vec::new(),
            };
        }
        let scale = BINS as f64 / (hi as f64 - lo as f64);
        let mut count = vec![0f64; BINS];
        let mut sum = vec![0f64; BINS];
        for &v in data.iter().filter(|v| v.is_finite()) {
            let b = (((v as f64 - lo as f64) * scale) as usize).min(BINS - 1);
            count[b] += 1.0;
            sum[b] += v as f64;
        }
        // Weighted points, sorted by value.
        let pts: Vec<(f64, f64)> = count
            .iter()
            .zip(&sum)
            .filter(|(c, _)| **c > 0.0)
            .map(|(c, s)| (s / c, *c))
            .collect();
        let mut cent: Vec<f64> = if pts.len() <= k {
            pts.iter().map(|p| p.0).collect()
        } else {
            let total: f64 = pts.iter().map(|p| p.1).sum();
            let mut cs = Vec::with_capacity(k);
            let (mut acc, mut j) = (0.0, 0);
            for i in 0..k {
                let target = (i as f64 + 0.5) / k as f64 * total;
                while j + 1 < pts.len() && acc + pts[j].1 < target {
                    acc += pts[j].1;
                    j += 1;
                }
                cs.push(pts[j].0);
            }
            lloyd(&pts, cs)
        };
        cent.sort_by(f64::total_cmp);
        cent.dedup();
        let thresholds = cent
            .windows(2)
            .map(|w| (0.5 * (w[0] + w[1])) as f32)
            .collect();
        Quantizer { thresholds }
    }

    /// The label of one intensity.
    #[inline]
    pub(crate) fn label(&self, v: f32) -> u8 {
        self.thresholds.partition_point(|&t| t < v) as u8
    }
}

/// Lloyd iterations on sorted weighted 1-D points, from the given centroids.
fn lloyd(pts: &[(f64, f64)], mut cent: Vec<f64>) -> Vec<f64> {
    let k = cent.len();
    let mut assign = vec![0usize; pts.len()];
    for _ in 0..MAX_ITER {
        cent.sort_by(f64::total_cmp);
        // Assignment: nearest centroid, ties to the lower one.
        let mut sums = vec![0f64; k];
        let mut weights = vec![0f64; k];
        for (i, &(v, w)) in pts.iter().enumerate() {
            let mut best = 0;
            let mut bd = f64::INFINITY;
            for (c, &cv) in cent.iter().enumerate() {
                let d = (v - cv).abs();
                if d < bd {
                    bd = d;
                    best = c;
                }
            }
            assign[i] = best;
            sums[best] += v * w;
            weights[best] += w;
        }
        let mut next: Vec<f64> = (0..k)
            .map(|c| {
                if weights[c] > 0.0 {
                    sums[c] / weights[c]
                } else {
                    f64::NAN
                }
            })
            .collect();
        // Re-seed empty clusters at the worst-fitted points not already a centroid.
        for c in 0..k {
            if next[c].is_nan() {
                let mut best: Option<(f64, f64)> = None;
                for (i, &(v, w)) in pts.iter().enumerate() {
                    let a = assign[i];
                    let err = w * (v - cent[a]).powi(2);
                    let taken = next.contains(&v);
                    if !taken && err > 0.0 && best.is_none_or(|(e, _)| err > e) {
                        best = Some((err, v));
                    }
                }
                next[c] = match best {
                    Some((_, v)) => v,
                    None => cent[c],
                };
            }
        }
        next.sort_by(f64::total_cmp);
        if next == cent {
            break;
        }
        cent = next;
    }
    cent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_clear_clusters_and_orders_labels() {
        let mut data = Vec::new();
        for (v, n) in [(0.0f32, 500), (0.3, 100), (0.31, 100), (0.9, 50)] {
            data.extend(std::iter::repeat_n(v, n));
        }
        let q = Quantizer::fit(&data, 3);
        assert_eq!(q.label(0.0), 0);
        assert_eq!(q.label(0.3), q.label(0.31));
        assert_eq!(q.label(0.3), 1);
        assert_eq!(q.label(0.9), 2);
    }

    #[test]
    fn large_background_does_not_waste_labels() {
        // 90 % zeros, the rest a ramp: all 8 labels should still be used.
        let mut data = vec![0f32; 9000];
        data.extend((0..1000).map(|i| 0.1 + i as f32 / 1000.0));
        let q = Quantizer::fit(&data, 8);
        let mut used = [false; 8];
        for &v in &data {
            used[q.label(v) as usize] = true;
        }
        assert!(used.iter().all(|&u| u), "{used:?}");
    }
}
