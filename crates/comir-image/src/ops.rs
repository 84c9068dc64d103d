//! Intensity transforms, quarter turns, bilinear sampling and warping; the Gaussian smoothing
//! and subsampling of [`crate::pyramid`] are re-exported here.

use crate::Image;

// Where callers have always found them.
pub use crate::pyramid::{gaussian_blur, gaussian_kernel, mirror_index, pyramid_level, subsample};

/// The quantile that [`network_input`] stretches to 0 (and `1 −` it to 1) when asked to
/// normalise.
pub const INPUT_STRETCH_QUANTILE: f64 = 0.01;

/// The intensity transform a CoMIR network sees its images through, the same in training and
/// inference: `log(1 + x)` when `log` (the reference does it for SHG), then, when `normalize`,
/// a per-image linear stretch of the 1st and 99th percentiles to 0 and 1
/// ([`Image::stretch_quantiles`]). The stretch is not in the reference: it makes one modality
/// look alike across acquisition batches, e.g. bright-field slides whose background is at 135
/// in one batch and at 250 in another.
pub fn network_input(img: &mut Image, log: bool, normalize: bool) {
    if log {
        img.data_mut()
            .iter_mut()
            .for_each(|v| *v = v.max(0.0).ln_1p());
    }
    if normalize {
        img.stretch_quantiles(INPUT_STRETCH_QUANTILE);
    }
}

/// `img` with its intensities remapped so that their distribution matches `reference`'s
/// (histogram matching, as ITK's `HistogramMatchingImageFilter`): the value at quantile q of
/// `img` becomes the value at quantile q of `reference`, for 1025 quantiles read from 4096-bin
/// histograms, linearly in between. The map is monotone, so `img`'s structure is kept; only its
/// intensity levels move to the reference's. Constant images are returned as they are.
pub fn match_histogram(img: &Image, reference: &Image) -> Image {
    const QUANTILES: usize = 1024;
    let (Some(src), Some(dst)) = (
        quantile_table(img, QUANTILES),
        quantile_table(reference, QUANTILES),
    ) else {
        return img.clone();
    };
    let mut out = img.clone();
    for v in out.data_mut() {
        // The segment of the source table holding v (the table is non-decreasing).
        let k = src.partition_point(|&q| q <= *v).clamp(1, QUANTILES);
        let (a, b) = (src[k - 1], src[k]);
        let t = if b > a {
            ((*v - a) / (b - a)).clamp(0.0, 1.0)
        } else {
            0.0
        };
        *v = dst[k - 1] + t * (dst[k] - dst[k - 1]);
    }
    out
}

/// The values at quantiles `0, 1/n, …, 1` of all of `img`'s values, from a 4096-bin histogram
/// with values spread evenly inside each bin; `None` for a constant image.
fn quantile_table(img: &Image, n: usize) -> Option<Vec<f32>> {
    const BINS: usize = 4096;
    let (lo, hi, hist) = img.histogram(BINS)?;
    let total = img.data().len() as f64;
    let width = f64::from(hi - lo) / BINS as f64;
    let mut table = Vec::with_capacity(n + 1);
    let (mut bin, mut below) = (0usize, 0.0f64);
    for i in 0..=n {
        let target = total * i as f64 / n as f64;
        // The bin whose cumulative count reaches the target.
        while bin < BINS - 1 && below + (hist[bin] as f64) < target {
            below += hist[bin] as f64;
            bin += 1;
        }
        let inside = if hist[bin] > 0 {
            ((target - below) / hist[bin] as f64).clamp(0.0, 1.0)
        } else {
            0.0
        };
        table.push((f64::from(lo) + (bin as f64 + inside) * width) as f32);
    }
    Some(table)
}

/// What a sample outside the image returns when warping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Border {
    /// Zero outside the image (ITK's and elastix's default).
    #[default]
    Zero,
    /// Mirror about the outermost pixel centres without repeating them (numpy `reflect`,
    /// scikit-image `warp(mode="reflect")`, used by the MultiRegEval protocol for whole tiles).
    Reflect,
}

/// Mirrors a coordinate into `[0, n − 1]` (period `2(n − 1)`, edges not repeated).
#[inline]
fn mirror(v: f64, n: usize) -> f64 {
    if n <= 1 {
        return 0.0;
    }
    let last = (n - 1) as f64;
    let period = 2.0 * last;
    let m = v.rem_euclid(period);
    if m > last {
        period - m
    } else {
        m
    }
}

/// `img` turned by `k` quarter turns (90° each, counter-clockwise as displayed with `y` down):
/// one turn makes a `w × h` image `h × w`, with `out(x, y) = in(w − 1 − y, x)`. Four turns give
/// back the image; `quarter_turns(·, 4 − k)` undoes `k` turns. Exact (no interpolation).
pub fn quarter_turns(img: &Image, k: usize) -> Image {
    let (w, h, c) = (img.width(), img.height(), img.channels());
    let src = img.data();
    let k = k % 4;
    if k == 0 {
        return img.clone();
    }
    let (ow, oh) = if k == 2 { (w, h) } else { (h, w) };
    let mut data = Vec::with_capacity(w * h * c);
    for y in 0..oh {
        for x in 0..ow {
            // Where output pixel (x, y) reads the input.
            let (sx, sy) = match k {
                1 => (w - 1 - y, x),
                2 => (w - 1 - x, h - 1 - y),
                _ => (y, h - 1 - x),
            };
            let i = (sy * w + sx) * c;
            data.extend_from_slice(&src[i..i + c]);
        }
    }
    Image::from_vec(ow, oh, c, data).expect("same number of pixels")
}

/// Bilinear interpolation of channel `c` at `(x, y)`; `None` outside `[0, w−1] × [0, h−1]`.
#[inline]
pub fn sample_bilinear(img: &Image, x: f64, y: f64, c: usize) -> Option<f32> {
    let (w, h) = (img.width(), img.height());
    if !(x >= 0.0 && y >= 0.0 && x <= (w - 1) as f64 && y <= (h - 1) as f64) {
        return None;
    }
    let x0 = (x.floor() as usize).min(w.saturating_sub(2));
    let y0 = (y.floor() as usize).min(h.saturating_sub(2));
    let (fx, fy) = ((x - x0 as f64) as f32, (y - y0 as f64) as f32);
    let x1 = (x0 + 1).min(w - 1);
    let y1 = (y0 + 1).min(h - 1);
    let v00 = img.get(x0, y0, c);
    let v10 = img.get(x1, y0, c);
    let v01 = img.get(x0, y1, c);
    let v11 = img.get(x1, y1, c);
    let top = v00 + fx * (v10 - v00);
    let bot = v01 + fx * (v11 - v01);
    Some(top + fy * (bot - top))
}

/// Resamples `moving` onto a `width × height` grid: output pixel `p` gets `moving(map(p))`
/// (bilinear), with `border` deciding what lies outside. `map` takes and returns `(x, y)`.
pub fn warp(
    moving: &Image,
    width: usize,
    height: usize,
    border: Border,
    map: impl Fn([f64; 2]) -> [f64; 2],
) -> Image {
    let c = moving.channels();
    let mut out = Image::zeros(width, height, c);
    for y in 0..height {
        for x in 0..width {
            let [mut mx, mut my] = map([x as f64, y as f64]);
            if border == Border::Reflect {
                mx = mirror(mx, moving.width());
                my = mirror(my, moving.height());
            }
            for ch in 0..c {
                if let Some(v) = sample_bilinear(moving, mx, my, ch) {
                    out.set(x, y, ch, v);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarter_turns_move_pixels_where_a_rotation_does() {
        // A 3×2 image with two channels; pixel (x, y) holds (10·x + y, −(10·x + y)).
        let img = Image::from_vec(
            3,
            2,
            2,
            (0..2)
                .flat_map(|y| {
                    (0..3).flat_map(move |x| [(10 * x + y) as f32, -((10 * x + y) as f32)])
                })
                .collect(),
        )
        .expect("image");
        let one = quarter_turns(&img, 1);
        assert_eq!((one.width(), one.height(), one.channels()), (2, 3, 2));
        // Counter-clockwise on screen: the top-right input corner (2, 0) goes to the top-left.
        assert_eq!(one.get(0, 0, 0), 20.0);
        assert_eq!(one.get(1, 0, 0), 21.0);
        assert_eq!(one.get(0, 2, 0), 0.0);
        assert_eq!(one.get(0, 2, 1), -0.0);
        let two = quarter_turns(&img, 2);
        assert_eq!((two.width(), two.height()), (3, 2));
        assert_eq!(two.get(0, 0, 0), 21.0);
        // Turning again is composing: k turns equal k single turns, and 4 − k undoes k.
        for k in 0..6 {
            let mut step = img.clone();
            for _ in 0..k {
                step = quarter_turns(&step, 1);
            }
            assert_eq!(quarter_turns(&img, k), step, "k = {k}");
            assert_eq!(quarter_turns(&quarter_turns(&img, k), 4 - k % 4), img);
        }
    }

    #[test]
    fn bilinear_matches_plane_exactly() {
        let img = Image::from_fn(5, 4, |x, y| 2.0 * x as f32 - 3.0 * y as f32 + 1.0);
        let v = sample_bilinear(&img, 2.25, 1.5, 0).expect("inside");
        assert!((v - (2.0 * 2.25 - 3.0 * 1.5 + 1.0)).abs() < 1e-5);
        assert!(sample_bilinear(&img, 4.0, 3.0, 0).is_some());
        assert!(sample_bilinear(&img, 4.01, 3.0, 0).is_none());
        assert!(sample_bilinear(&img, -0.01, 0.0, 0).is_none());
    }

    #[test]
    fn warp_by_integer_shift_moves_pixels() {
        let img = Image::from_fn(6, 5, |x, y| (x * 10 + y) as f32);
        let out = warp(&img, 6, 5, Border::Zero, |[x, y]| [x + 2.0, y - 1.0]);
        assert_eq!(out.get(1, 3, 0), img.get(3, 2, 0));
        assert_eq!(out.get(5, 3, 0), 0.0); // x + 2 = 7 is outside
        let refl = warp(&img, 6, 5, Border::Reflect, |[x, y]| [x + 2.0, y]);
        assert_eq!(refl.get(5, 0, 0), img.get(3, 0, 0)); // 7 mirrors to 3 about 5
    }
}
