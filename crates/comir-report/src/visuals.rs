//! The pictures of a sample pair: images scaled for display, a checkerboard and a colour overlay
//! of the fixed and the moving image, before and after registration.

use comir_image::ops::{pyramid_level, warp, Border};
use comir_image::Image;
use comir_transform::PointMap;

/// Longest side of a picture in the report, in pixels (larger images are shrunk by a whole
/// factor, after a blur, so that the page stays light).
pub const MAX_SIDE: usize = 320;

/// Shrinks `img` by the smallest whole factor that brings its longest side to at most
/// [`MAX_SIDE`].
pub fn shrink(img: &Image) -> Image {
    let side = img.width().max(img.height());
    let factor = side.div_ceil(MAX_SIDE).max(1);
    if factor == 1 {
        img.clone()
    } else {
        pyramid_level(img, factor, 0.5 * factor as f64)
    }
}

/// The 1st and 99th percentiles of a channel (robust display range: a few hot pixels do not
/// wash out the picture).
fn percentiles(img: &Image, c: usize) -> (f32, f32) {
    let ch = img.channels();
    let mut v: Vec<f32> = img
        .data()
        .iter()
        .skip(c)
        .step_by(ch)
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    if v.is_empty() {
        return (0.0, 1.0);
    }
    v.sort_by(f32::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.01), at(0.99))
}

/// An image for display: RGB in [0, 1]. One channel shows as gray, three or more as the first
/// three (a 3-channel CoMIR reads as colour); each channel stretched between its 1st and 99th
/// percentiles.
pub fn display(img: &Image) -> Image {
    let shown = if img.channels() >= 3 { 3 } else { 1 };
    let ranges: Vec<(f32, f32)> = (0..shown).map(|c| percentiles(img, c)).collect();
    let mut out = Image::zeros(img.width(), img.height(), 3);
    for y in 0..img.height() {
        for x in 0..img.width() {
            for k in 0..3 {
                let c = if shown == 1 { 0 } else { k };
                let (lo, hi) = ranges[c];
                let v = img.get(x, y, c);
                let s = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                out.set(
                    x,
                    y,
                    k,
                    if s.is_finite() {
                        s.clamp(0.0, 1.0)
                    } else {
                        0.0
                    },
                );
            }
        }
    }
    out
}

/// Gray in [0, 1] (1st–99th percentile stretch) of any image.
fn gray01(img: &Image) -> Image {
    display(&img.to_gray()).channel(0)
}

/// The moving image resampled into the fixed image's frame by `t` (fixed → moving coordinates,
/// as `comir register` writes it); outside the moving image is black.
pub fn moving_in_fixed_frame(fixed: &Image, moving: &Image, t: &impl PointMap) -> Image {
    warp(moving, fixed.width(), fixed.height(), Border::Zero, |p| {
        t.map_point(p)
    })
}

/// A checkerboard of `tiles × tiles` squares alternating between the fixed and the moving image
/// (both gray, same size): edges that continue across squares show alignment.
pub fn checkerboard(fixed: &Image, moving: &Image, tiles: usize) -> Image {
    let (f, m) = (gray01(fixed), gray01(moving));
    let (w, h) = (f.width(), f.height());
    let tiles = tiles.max(1);
    let mut out = Image::zeros(w, h, 3);
    for y in 0..h {
        for x in 0..w {
            let (tx, ty) = (x * tiles / w.max(1), y * tiles / h.max(1));
            let v = if (tx + ty) % 2 == 0 {
                f.get(x, y, 0)
            } else if x < m.width() && y < m.height() {
                m.get(x, y, 0)
            } else {
                0.0
            };
            for k in 0..3 {
                out.set(x, y, k, v);
            }
        }
    }
    out
}

/// A colour overlay: fixed in magenta (red + blue), moving in green. Where both agree the
/// picture is gray; misalignment shows as magenta and green fringes.
pub fn overlay(fixed: &Image, moving: &Image) -> Image {
    let (f, m) = (gray01(fixed), gray01(moving));
    let (w, h) = (f.width(), f.height());
    let mut out = Image::zeros(w, h, 3);
    for y in 0..h {
        for x in 0..w {
            let fv = f.get(x, y, 0);
            let mv = if x < m.width() && y < m.height() {
                m.get(x, y, 0)
            } else {
                0.0
            };
            out.set(x, y, 0, fv);
            out.set(x, y, 1, mv);
            out.set(x, y, 2, fv);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use comir_transform::Rigid2;

    #[test]
    fn shrink_keeps_small_images_and_divides_large_ones_by_a_whole_factor() {
        let small = Image::zeros(100, 80, 1);
        assert_eq!(shrink(&small).width(), 100);
        let big = Image::zeros(1000, 500, 1);
        let s = shrink(&big);
        // factor ceil(1000 / 320) = 4
        assert_eq!((s.width(), s.height()), (250, 125));
    }

    #[test]
    fn checkerboard_alternates_fixed_and_moving_and_overlay_colours_them() {
        let fixed = Image::from_fn(8, 8, |x, _| x as f32);
        let moving = Image::from_fn(8, 8, |x, _| 7.0 - x as f32);
        let cb = checkerboard(&fixed, &moving, 2);
        let f = gray01(&fixed);
        let m = gray01(&moving);
        // Top-left square from the fixed image, top-right from the moving one.
        assert_eq!(cb.get(1, 1, 0), f.get(1, 1, 0));
        assert_eq!(cb.get(6, 1, 0), m.get(6, 1, 0));
        assert_eq!(cb.get(6, 6, 0), f.get(6, 6, 0));
        let ov = overlay(&fixed, &moving);
        assert_eq!(ov.get(2, 3, 0), f.get(2, 3, 0));
        assert_eq!(ov.get(2, 3, 1), m.get(2, 3, 0));
        assert_eq!(ov.get(2, 3, 2), f.get(2, 3, 0));
    }

    #[test]
    fn a_moving_image_displaced_by_a_known_transform_is_put_back_by_it() {
        let (fixed, _) = comir_testkit::phantom_pair(64, 64, 1);
        let t = Rigid2::new(0.1, [3.0, -2.0], fixed.center());
        // moving(p) = fixed(t⁻¹ p): then moving(t(x)) = fixed(x).
        let inv = t.inverse();
        let moving = warp(&fixed, 64, 64, Border::Zero, |p| inv.apply(p));
        let back = moving_in_fixed_frame(&fixed, &moving, &t);
        // Away from the borders (where the displaced image lost content) it matches.
        let mut worst = 0.0f32;
        for y in 16..48 {
            for x in 16..48 {
                worst = worst.max((back.get(x, y, 0) - fixed.get(x, y, 0)).abs());
            }
        }
        let (lo, hi) = fixed.min_max();
        assert!(worst < 0.15 * (hi - lo), "worst {worst}");
    }

    #[test]
    fn display_maps_to_unit_rgb_and_keeps_three_channel_colour() {
        let rgb = Image::from_vec(2, 1, 3, vec![0.0, 5.0, -1.0, 10.0, 5.0, 1.0]).expect("image");
        let d = display(&rgb);
        assert_eq!(d.channels(), 3);
        assert!(d.get(0, 0, 0) < 0.1 && d.get(1, 0, 0) > 0.9);
        // A constant channel shows as mid-gray.
        assert_eq!(d.get(0, 0, 1), 0.5);
        assert!(d.get(0, 0, 2) < 0.1 && d.get(1, 0, 2) > 0.9);
    }
}
