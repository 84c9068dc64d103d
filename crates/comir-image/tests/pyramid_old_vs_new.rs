//! Temporary: the shared pyramid against verbatim copies of the four implementations it
//! replaces (comir-image ops, comir-aamd, comir-mi, comir-features SIFT), bit for bit.

use comir_image::pyramid::{blur_subsample, gaussian_blur, pyramid_level, PassOrder};
use comir_image::Image;
use rayon::prelude::*;

// ---- old comir_image::ops ----
#[inline]
fn old_mirror_index(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    let period = 2 * n;
    let m = i.rem_euclid(period);
    (if m >= n { period - 1 - m } else { m }) as usize
}

fn old_gaussian_kernel(sigma: f64) -> Vec<f32> {
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

fn old_gaussian_blur(img: &Image, sigma: f64) -> Image {
    if sigma <= 0.0 {
        return img.clone();
    }
    let k = old_gaussian_kernel(sigma);
    let r = (k.len() / 2) as isize;
    let (w, h, c) = (img.width(), img.height(), img.channels());
    let src = img.data();
    // Horizontal pass.
    let mut tmp = vec![0f32; src.len()];
    for y in 0..h {
        let row = &src[y * w * c..(y + 1) * w * c];
        let out = &mut tmp[y * w * c..(y + 1) * w * c];
        for x in 0..w {
            for ch in 0..c {
                let mut acc = 0f32;
                for (j, &kv) in k.iter().enumerate() {
                    let xi = old_mirror_index(x as isize + j as isize - r, w);
                    acc += kv * row[xi * c + ch];
                }
                out[x * c + ch] = acc;
            }
        }
    }
    // Vertical pass: accumulate whole rows for cache friendliness.
    let mut out = vec![0f32; src.len()];
    let stride = w * c;
    for y in 0..h {
        let dst = &mut out[y * stride..(y + 1) * stride];
        for (j, &kv) in k.iter().enumerate() {
            let yi = old_mirror_index(y as isize + j as isize - r, h);
            let srow = &tmp[yi * stride..(yi + 1) * stride];
            for (d, s) in dst.iter_mut().zip(srow) {
                *d += kv * s;
            }
        }
    }
    Image::from_vec(w, h, c, out).expect("same shape")
}

fn old_subsample(img: &Image, factor: usize) -> Image {
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

fn old_pyramid_level(img: &Image, factor: usize, sigma: f64) -> Image {
    old_subsample(&old_gaussian_blur(img, sigma), factor)
}

// ---- old comir-aamd pyramid.rs ----
struct Level {
    data: Vec<f32>,
    width: usize,
    height: usize,
}

fn aamd_blur_subsample(
    data: &[f32],
    width: usize,
    height: usize,
    sigma: f64,
    factor: usize,
) -> Level {
    let factor = factor.max(1);
    let (nw, nh) = (width.div_ceil(factor), height.div_ceil(factor));
    let k = old_gaussian_kernel(sigma);
    let r = (k.len() / 2) as isize;
    // Horizontal pass on every row, at the kept columns only.
    let mut tmp = vec![0f32; nw * height];
    let mut padded = vec![0f32; width + 2 * r as usize];
    for y in 0..height {
        let row = &data[y * width..(y + 1) * width];
        for (i, p) in padded.iter_mut().enumerate() {
            *p = row[old_mirror_index(i as isize - r, width)];
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
            let yi = old_mirror_index(y + j as isize - r, height);
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

// ---- old comir-mi lib.rs ----
#[inline]
fn mi_mirror_index(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n <= 1 {
        return 0;
    }
    let m = i.rem_euclid(2 * n);
    (if m >= n { 2 * n - 1 - m } else { m }) as usize
}

fn mi_blur_subsample(img: &Image, sigma: f64, factor: usize) -> Image {
    let factor = factor.max(1);
    let k = old_gaussian_kernel(sigma);
    let r = (k.len() / 2) as isize;
    let (w, h) = (img.width(), img.height());
    let (nw, nh) = (w.div_ceil(factor), h.div_ceil(factor));
    let data = img.data();
    let c = img.channels();
    let mut tmp = vec![0f32; nh * w * c];
    let stride = w * c;
    for ny in 0..nh {
        let dst = &mut tmp[ny * stride..(ny + 1) * stride];
        for (j, &kv) in k.iter().enumerate() {
            let yi = mi_mirror_index((ny * factor) as isize + j as isize - r, h);
            let src = &data[yi * stride..(yi + 1) * stride];
            for (d, s) in dst.iter_mut().zip(src) {
                *d += kv * s;
            }
        }
    }
    let cols: Vec<usize> = (0..nw)
        .flat_map(|nx| {
            (0..k.len()).map(move |j| mi_mirror_index((nx * factor) as isize + j as isize - r, w))
        })
        .collect();
    let mut out = Vec::with_capacity(nw * nh * c);
    for ny in 0..nh {
        let row = &tmp[ny * stride..(ny + 1) * stride];
        for idx in cols.chunks_exact(k.len()) {
            for ch in 0..c {
                let acc: f32 = idx
                    .iter()
                    .zip(&k)
                    .map(|(&xi, &kv)| kv * row[xi * c + ch])
                    .sum();
                out.push(acc);
            }
        }
    }
    Image::from_vec(nw, nh, c, out).unwrap_or_else(|_| Image::zeros(nw, nh, c))
}

// ---- old comir-features sift.rs ----
const ROWS_PER_TASK: usize = 8;

#[derive(Clone)]
struct Plane {
    w: usize,
    h: usize,
    data: Vec<f32>,
}

#[inline]
fn sift_mirror_index(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n <= 1 {
        return 0;
    }
    let period = 2 * n;
    let m = i.rem_euclid(period);
    (if m >= n { period - 1 - m } else { m }) as usize
}

fn sift_blur(src: &Plane, sigma: f64) -> Plane {
    let (w, h) = (src.w, src.h);
    if sigma <= 0.0 || w == 0 || h == 0 {
        return src.clone();
    }
    let k = old_gaussian_kernel(sigma);
    let r = k.len() / 2;
    let mut tmp = vec![0f32; w * h];
    tmp.par_chunks_mut(w)
        .enumerate()
        .with_min_len(ROWS_PER_TASK)
        .for_each(|(y, out)| {
            let row = &src.data[y * w..(y + 1) * w];
            let mut pad = vec![0f32; w + 2 * r];
            pad[r..r + w].copy_from_slice(row);
            for i in 0..r {
                pad[i] = row[sift_mirror_index(i as isize - r as isize, w)];
                pad[r + w + i] = row[sift_mirror_index((w + i) as isize, w)];
            }
            // Tap by tap over the whole row, so the inner loop vectorises.
            for (j, &kv) in k.iter().enumerate() {
                for (o, p) in out.iter_mut().zip(&pad[j..j + w]) {
                    *o += kv * p;
                }
            }
        });
    let mut out = vec![0f32; w * h];
    out.par_chunks_mut(w)
        .enumerate()
        .with_min_len(ROWS_PER_TASK)
        .for_each(|(y, dst)| {
            for (j, &kv) in k.iter().enumerate() {
                let yi = sift_mirror_index(y as isize + j as isize - r as isize, h);
                for (d, s) in dst.iter_mut().zip(&tmp[yi * w..(yi + 1) * w]) {
                    *d += kv * s;
                }
            }
        });
    Plane { w, h, data: out }
}

// ---- the comparison ----

/// xorshift64*: reproducible values without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Mostly ordinary values, with ±0, tiny (subnormal) and large ones mixed in.
    fn value(&mut self) -> f32 {
        match self.below(10) {
            0 => -0.0,
            1 => 0.0,
            2 => f32::from_bits((self.next() as u32) & 0x807f_ffff), // ± subnormal
            3 => (self.next() as u32 as f32) * if self.below(2) == 0 { 1e3 } else { -1e3 },
            _ => ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0,
        }
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn the_shared_pyramid_reproduces_every_old_copy_bit_for_bit() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let sigmas = [0.0, -1.0, 0.2, 0.5, 0.9, 1.0, 1.5, 2.5, 3.0, 5.0, 7.0, 12.0];
    let mut cases = 0;
    for _ in 0..1500 {
        let (w, h) = (1 + rng.below(45), 1 + rng.below(45));
        let c = [1, 1, 1, 2, 3, 4][rng.below(6)];
        let sigma = if rng.below(3) == 0 {
            sigmas[rng.below(sigmas.len())]
        } else {
            rng.below(4000) as f64 / 400.0
        };
        let factor = 1 + rng.below(6);
        let img =
            Image::from_vec(w, h, c, (0..w * h * c).map(|_| rng.value()).collect()).expect("image");
        let what = format!("{w}×{h}×{c}, σ {sigma}, factor {factor}");

        assert_eq!(
            bits(old_pyramid_level(&img, factor, sigma).data()),
            bits(pyramid_level(&img, factor, sigma).data()),
            "pyramid_level {what}"
        );
        assert_eq!(
            bits(old_gaussian_blur(&img, sigma).data()),
            bits(gaussian_blur(&img, sigma).data()),
            "gaussian_blur {what}"
        );
        let mi_old = mi_blur_subsample(&img, sigma, factor);
        let mi_new = blur_subsample(&img, sigma, factor, PassOrder::VerticalFirst);
        assert_eq!(
            (mi_old.width(), mi_old.height(), mi_old.channels()),
            (mi_new.width(), mi_new.height(), mi_new.channels())
        );
        assert_eq!(bits(mi_old.data()), bits(mi_new.data()), "mi {what}");
        if c == 1 {
            let a_old = aamd_blur_subsample(img.data(), w, h, sigma, factor);
            let a_new = blur_subsample(&img, sigma, factor, PassOrder::HorizontalFirst);
            assert_eq!((a_old.width, a_old.height), (a_new.width(), a_new.height()));
            assert_eq!(bits(&a_old.data), bits(a_new.data()), "aamd {what}");
            let plane = Plane {
                w,
                h,
                data: img.data().to_vec(),
            };
            let s_old = sift_blur(&plane, sigma);
            // How SIFT now blurs: a copy for σ ≤ 0, otherwise the shared blur.
            let s_new = gaussian_blur(&img, sigma);
            assert_eq!((s_old.w, s_old.h), (s_new.width(), s_new.height()));
            assert_eq!(bits(&s_old.data), bits(s_new.data()), "sift {what}");
        }
        cases += 1;
    }
    assert_eq!(cases, 1500);
}

#[test]
fn the_shared_pyramid_reproduces_the_old_copies_on_large_images() {
    let mut rng = Rng(7);
    for &(w, h, sigma, factor) in &[
        (512usize, 512usize, 12.0, 4usize),
        (512, 512, 5.0, 2),
        (512, 512, 1.0, 1),
        (300, 217, 8.0, 16),
        (300, 217, 4.0, 8),
        (257, 199, 0.5, 1),
        (257, 199, 2.0, 2),
    ] {
        let img =
            Image::from_vec(w, h, 1, (0..w * h).map(|_| rng.value()).collect()).expect("image");
        let a_old = aamd_blur_subsample(img.data(), w, h, sigma, factor);
        let a_new = blur_subsample(&img, sigma, factor, PassOrder::HorizontalFirst);
        assert_eq!(bits(&a_old.data), bits(a_new.data()));
        let mi_old = mi_blur_subsample(&img, sigma, factor);
        let mi_new = blur_subsample(&img, sigma, factor, PassOrder::VerticalFirst);
        assert_eq!(bits(mi_old.data()), bits(mi_new.data()));
        assert_eq!(
            bits(old_pyramid_level(&img, factor, sigma).data()),
            bits(pyramid_level(&img, factor, sigma).data())
        );
        let plane = Plane {
            w,
            h,
            data: img.data().to_vec(),
        };
        assert_eq!(
            bits(&sift_blur(&plane, sigma).data),
            bits(gaussian_blur(&img, sigma).data())
        );
    }
}

#[test]
fn the_shared_pyramid_keeps_the_sign_of_zero_where_the_old_copies_differ() {
    // −2 × the smallest subnormal, σ = 1: the first pass gives −1 × the smallest subnormal
    // (only the centre weight, 0.399, rounds it to a non-zero value) and every product of the
    // second pass rounds to −0.0; the Mattes MI copy summed those from −0.0 and gave −0.0.
    let tiny = -2.0 * f32::from_bits(1);
    for c in [1, 3] {
        let img = Image::from_vec(9, 7, c, vec![tiny; 9 * 7 * c]).expect("image");
        for factor in [1, 2] {
            let old = mi_blur_subsample(&img, 1.0, factor);
            let new = blur_subsample(&img, 1.0, factor, PassOrder::VerticalFirst);
            assert!(old
                .data()
                .iter()
                .all(|v| v.to_bits() == (-0.0f32).to_bits()));
            assert_eq!(bits(old.data()), bits(new.data()));
            let a_old = aamd_blur_subsample(img.data(), 9, 7, 1.0, factor);
            let a_new = blur_subsample(&img, 1.0, factor, PassOrder::HorizontalFirst);
            if c == 1 {
                assert_eq!(bits(&a_old.data), bits(a_new.data()));
            }
            assert_eq!(
                bits(old_pyramid_level(&img, factor, 1.0).data()),
                bits(pyramid_level(&img, factor, 1.0).data())
            );
        }
    }
}
