//! Gaussian smoothing and pyramid levels: the one separable Gaussian filter of comir.
//!
//! Full-resolution blurs ([`gaussian_blur`]), pyramid levels ([`pyramid_level`]), the pyramids
//! of the registration methods and the scale spaces of feature detectors all run through
//! [`blur_subsample`]: a kernel truncated at 4σ ([`gaussian_kernel`]), edges mirrored with the
//! edge pixel repeated ([`mirror_index`], scipy `gaussian_filter(mode="reflect")`), and only the
//! pixels that survive the subsampling computed, so a σ = 12, ×4 level of a 512² image costs
//! about 16 times less than smoothing everything first.
//!
//! The two passes of a separable filter may run in either order ([`PassOrder`]); the results
//! agree up to float rounding. Each method keeps the order it was tuned and tested with, so that
//! its numbers stay exactly as they were.

use rayon::prelude::*;

use crate::Image;

/// Rows per parallel task: enough work in each to outweigh the scheduling. The split does not
/// change any value (every output is computed by the same operations on any thread).
const ROWS_PER_TASK: usize = 8;

/// Which direction a separable smoothing filters first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassOrder {
    /// Along each row (x) first, then along each column: [`gaussian_blur`], [`pyramid_level`],
    /// α-AMD's pyramid.
    HorizontalFirst,
    /// Along each column (y) first, then along each row: the Mattes MI pyramid.
    VerticalFirst,
}

/// Index mirrored into `[0, n)` with the edge repeated (scipy `reflect`), used for filtering:
/// `−1 → 0`, `−2 → 1`, `n → n − 1`, with period `2n`.
///
/// # Panics
/// If `n` is zero.
#[inline]
pub fn mirror_index(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    let period = 2 * n;
    let m = i.rem_euclid(period);
    (if m >= n { period - 1 - m } else { m }) as usize
}

/// A normalised 1-D Gaussian kernel truncated at 4σ (scipy's `gaussian_filter` default);
/// `[1.0]` for σ ≤ 0.
pub fn gaussian_kernel(sigma: f64) -> Vec<f32> {
    if sigma <= 0.0 {
        return vec![1.0];
    }
    let radius = (4.0 * sigma + 0.5) as isize;
    let mut k: Vec<f64> = (-radius..=radius)
        .map(|i| (-0.5 * (i as f64 / sigma).powi(2)).exp())
        .collect();
    let s: f64 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= s);
    k.into_iter().map(|v| v as f32).collect()
}

/// Smooths every channel of `img` with a Gaussian of `sigma` pixels and keeps every
/// `factor`-th pixel in both directions, starting at `(0, 0)` (numpy `[::f, ::f]`), computing
/// only the kept pixels; the passes run in `order`. A `factor` of 0 counts as 1.
///
/// σ ≤ 0 filters with the one-tap kernel `[1.0]`, which keeps every value except that −0.0
/// comes out as +0.0 ([`pyramid_level`] copies instead).
pub fn blur_subsample(img: &Image, sigma: f64, factor: usize, order: PassOrder) -> Image {
    let factor = factor.max(1);
    let (w, h, c) = (img.width(), img.height(), img.channels());
    let (nw, nh) = (w.div_ceil(factor), h.div_ceil(factor));
    if w == 0 || h == 0 {
        return Image::zeros(nw, nh, c);
    }
    let filter = Filter {
        kernel: gaussian_kernel(sigma),
        factor,
    };
    let data = match order {
        PassOrder::HorizontalFirst => {
            let rows = filter.horizontal(img.data(), (w, h, c));
            filter.vertical(&rows, (nw, h, c))
        }
        PassOrder::VerticalFirst => {
            let columns = filter.vertical(img.data(), (w, h, c));
            filter.horizontal(&columns, (w, nh, c))
        }
    };
    Image::from_vec(nw, nh, c, data).expect("the passes produce nw × nh × c values")
}

/// A separable filter with `kernel` in both directions, evaluated at every `factor`-th pixel only.
struct Filter {
    kernel: Vec<f32>,
    factor: usize,
}

impl Filter {
    /// Filters each row of `src` (`w × h × c`) at every `factor`-th column only:
    /// `w.div_ceil(factor) × h × c` values.
    fn horizontal(&self, src: &[f32], (w, h, c): (usize, usize, usize)) -> Vec<f32> {
        let (kernel, factor) = (&self.kernel, self.factor);
        let r = kernel.len() / 2;
        let out_stride = w.div_ceil(factor) * c;
        // Each value starts at −0.0, the neutral element of float addition, so that it is exactly
        // the sum of its products (as `Iterator::sum` forms it).
        let mut out = vec![-0.0f32; out_stride * h];
        out.par_chunks_mut(out_stride)
            .enumerate()
            .with_min_len(ROWS_PER_TASK)
            .for_each_init(
                || vec![0f32; (w + 2 * r) * c],
                |padded, (y, dst)| {
                    let row = &src[y * w * c..(y + 1) * w * c];
                    for (i, px) in padded.chunks_exact_mut(c).enumerate() {
                        let xi = mirror_index(i as isize - r as isize, w);
                        px.copy_from_slice(&row[xi * c..(xi + 1) * c]);
                    }
                    // Tap by tap over the whole output row: the products of one value are added in
                    // kernel order, and the loops over a row vectorise.
                    for (j, &kv) in kernel.iter().enumerate() {
                        let taps = &padded[j * c..];
                        if factor == 1 {
                            for (d, p) in dst.iter_mut().zip(taps) {
                                *d += kv * p;
                            }
                        } else {
                            for (d, p) in dst.chunks_exact_mut(c).zip(taps.chunks(factor * c)) {
                                for (d, p) in d.iter_mut().zip(p) {
                                    *d += kv * p;
                                }
                            }
                        }
                    }
                },
            );
        out
    }

    /// Filters each column of `src` (`w × h × c`) at every `factor`-th row only:
    /// `w × h.div_ceil(factor) × c` values.
    fn vertical(&self, src: &[f32], (w, h, c): (usize, usize, usize)) -> Vec<f32> {
        let (kernel, factor) = (&self.kernel, self.factor);
        let r = kernel.len() / 2;
        let stride = w * c;
        let mut out = vec![0f32; stride * h.div_ceil(factor)];
        // Whole rows at a time, for cache friendliness.
        out.par_chunks_mut(stride)
            .enumerate()
            .with_min_len(ROWS_PER_TASK)
            .for_each(|(oy, dst)| {
                let y = oy * factor;
                for (j, &kv) in kernel.iter().enumerate() {
                    let yi = mirror_index((y + j) as isize - r as isize, h);
                    for (d, s) in dst.iter_mut().zip(&src[yi * stride..(yi + 1) * stride]) {
                        *d += kv * s;
                    }
                }
            });
        out
    }
}

/// Separable Gaussian smoothing of every channel, σ in pixels, edges mirrored with repetition
/// (scipy `gaussian_filter(mode="reflect")`), rows first. σ ≤ 0 returns a copy.
pub fn gaussian_blur(img: &Image, sigma: f64) -> Image {
    if sigma <= 0.0 {
        return img.clone();
    }
    blur_subsample(img, sigma, 1, PassOrder::HorizontalFirst)
}

/// Keeps every `factor`-th pixel in both directions, starting at `(0, 0)` (numpy `[::f, ::f]`).
///
/// # Panics
/// If `factor` is zero.
pub fn subsample(img: &Image, factor: usize) -> Image {
    assert!(factor > 0);
    let (w, h, c) = (img.width(), img.height(), img.channels());
    let (nw, nh) = (w.div_ceil(factor), h.div_ceil(factor));
    let mut data = Vec::with_capacity(nw * nh * c);
    for y in (0..h).step_by(factor) {
        for x in (0..w).step_by(factor) {
            for ch in 0..c {
                data.push(img.get(x, y, ch));
            }
        }
    }
    Image::from_vec(nw, nh, c, data).expect("consistent size")
}

/// One pyramid level: Gaussian smoothing with `sigma` (rows first), then [`subsample`] by
/// `factor`; the same values as `subsample(&gaussian_blur(img, sigma), factor)`, computed at
/// the kept pixels only.
///
/// # Panics
/// If `factor` is zero.
pub fn pyramid_level(img: &Image, factor: usize, sigma: f64) -> Image {
    assert!(factor > 0);
    if sigma <= 0.0 {
        return subsample(img, factor);
    }
    blur_subsample(img, sigma, factor, PassOrder::HorizontalFirst)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same smoothing and subsampling written out independently, in f64: a direct 2-D sum
    /// over the truncated kernel's window, the weights from the formula, mirrored indices by
    /// repeated reflection.
    fn direct(img: &Image, sigma: f64, factor: usize) -> Vec<f64> {
        let radius = (4.0 * sigma + 0.5).floor() as isize;
        let weight = |i: isize| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp();
        let total: f64 = (-radius..=radius).map(weight).sum();
        let reflect = |mut i: isize, n: usize| {
            let n = n as isize;
            while i < 0 || i >= n {
                i = if i < 0 { -1 - i } else { 2 * n - 1 - i };
            }
            i as usize
        };
        let (w, h, c) = (img.width(), img.height(), img.channels());
        let mut out = Vec::new();
        for y in (0..h).step_by(factor) {
            for x in (0..w).step_by(factor) {
                for ch in 0..c {
                    let mut acc = 0.0;
                    for dy in -radius..=radius {
                        for dx in -radius..=radius {
                            let (sx, sy) =
                                (reflect(x as isize + dx, w), reflect(y as isize + dy, h));
                            acc += weight(dx) * weight(dy) * f64::from(img.get(sx, sy, ch));
                        }
                    }
                    out.push(acc / (total * total));
                }
            }
        }
        out
    }

    #[test]
    fn both_orders_match_a_direct_two_dimensional_sum() {
        let img = Image::from_vec(
            23,
            17,
            2,
            (0..23 * 17 * 2)
                .map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * if i % 7 == 0 { 3.0 } else { 1.0 })
                .collect(),
        )
        .expect("image");
        for (sigma, factor) in [(0.5, 1), (1.0, 2), (2.5, 3), (6.0, 4), (1.7, 5)] {
            let want = direct(&img, sigma, factor);
            for order in [PassOrder::HorizontalFirst, PassOrder::VerticalFirst] {
                let got = blur_subsample(&img, sigma, factor, order);
                assert_eq!(
                    (got.width(), got.height(), got.channels()),
                    (23usize.div_ceil(factor), 17usize.div_ceil(factor), 2)
                );
                for (g, w) in got.data().iter().zip(&want) {
                    assert!(
                        (f64::from(*g) - w).abs() < 1e-5,
                        "σ {sigma}, factor {factor}, {order:?}: {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_row_gets_the_known_reflected_gaussian() {
        // σ = 0.5: radius 2, weights 0.000263865, 0.106450772, 0.786570726 (normalised
        // e^(−2i²)); at x = 0 the row [1, 2, 3] reads [2, 1 | 1, 2, 3] (scipy `reflect`).
        let row = Image::from_vec(3, 1, 1, vec![1.0, 2.0, 3.0]).expect("row");
        let k = gaussian_kernel(0.5);
        let want_k = [
            0.000_263_865,
            0.106_450_772,
            0.786_570_726,
            0.106_450_772,
            0.000_263_865,
        ];
        for (a, b) in k.iter().zip(want_k) {
            assert!((f64::from(*a) - b).abs() < 1e-8, "{a} vs {b}");
        }
        let want = [1.107_242_367, 2.0, 2.892_757_633];
        for img in [gaussian_blur(&row, 0.5), pyramid_level(&row, 1, 0.5)] {
            for (a, b) in img.data().iter().zip(want) {
                assert!((f64::from(*a) - b).abs() < 1e-6, "{a} vs {b}");
            }
        }
        // The same row as a column: the vertical pass mirrors the same way.
        let column = Image::from_vec(1, 3, 1, vec![1.0, 2.0, 3.0]).expect("column");
        for (a, b) in gaussian_blur(&column, 0.5).data().iter().zip(want) {
            assert!((f64::from(*a) - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn mirror_index_repeats_the_edge() {
        let got: Vec<usize> = (-5..9).map(|i| mirror_index(i, 4)).collect();
        assert_eq!(got, [3, 3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0, 0]);
        assert_eq!(mirror_index(-7, 1), 0);
    }

    #[test]
    fn empty_images_stay_empty() {
        let img = Image::zeros(0, 5, 2);
        let out = blur_subsample(&img, 1.0, 2, PassOrder::VerticalFirst);
        assert_eq!((out.width(), out.height(), out.channels()), (0, 3, 2));
    }

    #[test]
    fn blur_preserves_constant_and_mean() {
        let img = Image::from_fn(9, 6, |_, _| 0.7);
        let b = gaussian_blur(&img, 2.0);
        assert!(b.data().iter().all(|v| (v - 0.7).abs() < 1e-5));
        let ramp = Image::from_fn(31, 1, |x, _| x as f32);
        let b = gaussian_blur(&ramp, 1.5);
        // A linear ramp is unchanged by a symmetric kernel away from the borders.
        for x in 8..23 {
            assert!((b.get(x, 0, 0) - x as f32).abs() < 1e-4);
        }
    }

    #[test]
    fn subsample_takes_every_other_pixel() {
        let img = Image::from_fn(5, 3, |x, y| (x + 10 * y) as f32);
        let s = subsample(&img, 2);
        assert_eq!((s.width(), s.height()), (3, 2));
        assert_eq!(s.get(2, 1, 0), img.get(4, 2, 0));
    }

    #[test]
    fn matches_the_image_crate_pyramid() {
        let img = Image::from_fn(37, 23, |x, y| ((x * 7 + y * 13) % 11) as f32 / 10.0);
        for (f, s) in [(4, 12.0), (2, 5.0), (1, 1.0), (3, 0.0)] {
            let a = pyramid_level(&img, f, s);
            let b = blur_subsample(&img, s, f, PassOrder::HorizontalFirst);
            assert_eq!((a.width(), a.height()), (b.width(), b.height()));
            for (u, v) in a.data().iter().zip(b.data()) {
                assert!((u - v).abs() < 1e-5, "f={f} σ={s}: {u} vs {v}");
            }
        }
    }
}
