//! One pyramid level, `gaussian_filter(I, σ)[::f, ::f]`, computing only the pixels that survive
//! the subsampling.
//!
//! The result equals `comir_image::ops::pyramid_level` (same kernel, same mirrored edges) up to
//! float rounding, but the horizontal pass runs only at every `f`-th column and the vertical pass
//! only at every `f`-th row, so a σ = 12, f = 4 level of a 512² image costs ~16× less.

use comir_image::ops::{gaussian_kernel, mirror_index};

/// A single-channel level: values, width, height.
pub(crate) struct Level {
    pub data: Vec<f32>,
    pub width: usize,
    pub height: usize,
}

/// Smooths `data` (`width × height`, one channel) with a Gaussian of `sigma` pixels and keeps
/// every `factor`-th pixel in both directions, starting at `(0, 0)`.
pub(crate) fn blur_subsample(
    data: &[f32],
    width: usize,
    height: usize,
    sigma: f64,
    factor: usize,
) -> Level {
    let factor = factor.max(1);
    let (nw, nh) = (width.div_ceil(factor), height.div_ceil(factor));
    let k = gaussian_kernel(sigma);
    let r = (k.len() / 2) as isize;
    // Horizontal pass on every row, at the kept columns only.
    let mut tmp = vec![0f32; nw * height];
    let mut padded = vec![0f32; width + 2 * r as usize];
    for y in 0..height {
        let row = &data[y * width..(y + 1) * width];
        for (i, p) in padded.iter_mut().enumerate() {
            *p = row[mirror_index(i as isize - r, width)];
        }
        let out = &mut tmp[y * nw..(y + 1) * nw];
        for (j, o) in out.iter_mut().enumerate() {
            let x = j * factor;
            let win = &padded[x..x + k.len()];
            *o = win.iter().zip(&k).map(|(a, b)| a * b).sum();
        }
    }
    // Vertical pass at the kept rows only, whole rows at a time.
    let mut out = vec![0f32; nw * nh];
    for (oy, dst) in out.chunks_exact_mut(nw).enumerate() {
        let y = (oy * factor) as isize;
        for (j, &kv) in k.iter().enumerate() {
            let yi = mirror_index(y + j as isize - r, height);
            let src = &tmp[yi * nw..(yi + 1) * nw];
            for (d, s) in dst.iter_mut().zip(src) {
                *d += kv * s;
            }
        }
    }
    Level {
        data: out,
        width: nw,
        height: nh,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use comir_image::ops::pyramid_level;
    use comir_image::Image;

    #[test]
    fn matches_the_image_crate_pyramid() {
        let img = Image::from_fn(37, 23, |x, y| ((x * 7 + y * 13) % 11) as f32 / 10.0);
        for (f, s) in [(4, 12.0), (2, 5.0), (1, 1.0), (3, 0.0)] {
            let a = pyramid_level(&img, f, s);
            let b = blur_subsample(img.data(), 37, 23, s, f);
            assert_eq!((a.width(), a.height()), (b.width, b.height));
            for (u, v) in a.data().iter().zip(&b.data) {
                assert!((u - v).abs() < 1e-5, "f={f} σ={s}: {u} vs {v}");
            }
        }
    }
}
