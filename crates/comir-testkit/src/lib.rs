//! Test helpers: synthetic multimodal image pairs, known transforms, and the lookup of the shared
//! real datasets (with a clear skip message when they are absent).
//!
//! The phantom is license-clean by construction: a few random smooth ellipses with region labels,
//! rendered twice with two different, non-monotonic label→intensity maps. The two renderings share
//! structure but not intensities, like two imaging modalities.

pub mod bad_files;

use std::path::{Path, PathBuf};

use comir_image::ops::{gaussian_blur, warp, Border};
use comir_image::Image;
use comir_transform::{Composite2, Rigid2, Transform2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Writes `seeds.len()` phantom pairs of `side × side` pixels as `dir/A/p{i}.png` and
/// `dir/B/p{i}.png` (`i` from 0, phantom seed `seeds.start + i`): a training or evaluation
/// folder.
///
/// # Panics
/// Panics if the folder or a file cannot be written (test helper).
pub fn write_phantom_pairs(dir: &Path, seeds: std::ops::Range<u64>, side: usize) {
    for sub in ["A", "B"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
    }
    let start = seeds.start;
    for seed in seeds {
        let i = seed - start;
        let (a, b) = phantom_pair(side, side, seed);
        comir_image::save_png(dir.join("A").join(format!("p{i}.png")), &a).expect("save");
        comir_image::save_png(dir.join("B").join(format!("p{i}.png")), &b).expect("save");
    }
}

/// A pair of aligned synthetic "modalities" of size `width × height`, intensities in `[0, 1]`.
///
/// Modality A maps region labels 0..5 to increasing intensities; modality B maps them to a
/// scrambled, non-monotonic order and inverts the background, so no global intensity map turns one
/// into the other but the region boundaries coincide.
pub fn phantom_pair(width: usize, height: usize, seed: u64) -> (Image, Image) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = 9;
    let (w, h) = (width as f64, height as f64);
    let shapes: Vec<(f64, f64, f64, f64, f64, usize)> = (0..n)
        .map(|i| {
            let cx = rng.gen_range(0.2..0.8) * w;
            let cy = rng.gen_range(0.2..0.8) * h;
            let a = rng.gen_range(0.06..0.22) * w;
            let b = rng.gen_range(0.04..0.15) * h;
            let th = rng.gen_range(0.0..std::f64::consts::PI);
            (cx, cy, a, b, th, 1 + i % 5)
        })
        .collect();
    let labels = Image::from_fn(width, height, |x, y| {
        let mut label = 0;
        for &(cx, cy, a, b, th, l) in &shapes {
            let (dx, dy) = (x as f64 - cx, y as f64 - cy);
            let (s, c) = th.sin_cos();
            let (u, v) = (c * dx + s * dy, -s * dx + c * dy);
            if (u / a).powi(2) + (v / b).powi(2) <= 1.0 {
                label = l;
            }
        }
        label as f32
    });
    let map_a = [0.05f32, 0.25, 0.45, 0.6, 0.8, 1.0];
    let map_b = [0.9f32, 0.1, 0.7, 0.3, 1.0, 0.5];
    let render = |map: &[f32; 6]| {
        let mut img = labels.clone();
        for v in img.data_mut() {
            *v = map[*v as usize];
        }
        gaussian_blur(&img, 1.0)
    };
    (render(&map_a), render(&map_b))
}

/// A license-clean textured image of `w × w` pixels: phantom modality A plus smoothed random
/// noise blobs, so that feature detectors find corners everywhere.
pub fn textured(w: usize, seed: u64) -> Image {
    let (a, _) = phantom_pair(w, w, seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_b10b);
    let noise = Image::from_fn(w, w, |_, _| rng.gen::<f32>());
    let blobs = gaussian_blur(&noise, 2.5).normalized();
    Image::from_fn(w, w, |x, y| a.get(x, y, 0) + 0.6 * blobs.get(x, y, 0))
}

/// The moving image whose true fixed-to-moving transform is `t`: `moving(t(p)) = fixed(p)`.
pub fn moved_by(fixed: &Image, t: &Rigid2, border: Border) -> Image {
    let inv = t.inverse();
    warp(fixed, fixed.width(), fixed.height(), border, |p| {
        inv.apply(p)
    })
}

/// [`moved_by`] for a transform of any kind (it must be invertible).
pub fn moved_by_transform(fixed: &Image, t: &Transform2, border: Border) -> Image {
    let inv = t.inverse().expect("an invertible transform");
    warp(fixed, fixed.width(), fixed.height(), border, |p| {
        inv.apply(p)
    })
}

/// A texture in two "modalities" (the second a non-monotonic function of the first), aligned and
/// `w × w`: a deformation of a flat region cannot be seen by any metric, so deformable
/// registration is tested on texture that covers everything.
pub fn textured_pair(w: usize) -> (Image, Image) {
    let f = |x: f32, y: f32| (x / 7.0).sin() + (y / 9.0).cos() + 0.3 * ((x + y) / 5.0).sin();
    let a = Image::from_fn(w, w, |x, y| f(x as f32, y as f32));
    let b = Image::from_fn(w, w, |x, y| {
        let (x, y) = (x as f32, y as f32);
        (f(x, y) - 0.4).powi(2) + 0.1 * (x / 13.0).cos()
    });
    (a, b)
}

/// [`moved_by`] for a composite (deformable) transform: `b` warped so that registering it onto
/// `b`'s frame has the answer `truth` (zero where `truth` cannot be inverted).
pub fn moved_by_composite(b: &Image, truth: &Composite2) -> Image {
    warp(b, b.width(), b.height(), Border::Zero, |q| {
        truth.inverse_apply(q).map_or([-1e9, -1e9], |(p, _)| p)
    })
}

/// The folder of shared real datasets: `$COMIR_DATASETS`, or `shared/datasets` beside the
/// repository. `None` when it does not exist.
pub fn datasets_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("COMIR_DATASETS") {
        let p = PathBuf::from(p);
        return p.is_dir().then_some(p);
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let p = repo.join("../shared/datasets");
    p.is_dir().then(|| p.canonicalize().unwrap_or(p))
}

/// The folder of one shared dataset, or `None` after printing why the caller skips.
pub fn dataset(name: &str) -> Option<PathBuf> {
    match datasets_dir().map(|d| d.join(name)) {
        Some(p) if p.join("A").is_dir() && p.join("B").is_dir() => Some(p),
        _ => {
            eprintln!(
                "SKIP: dataset '{name}' not found (looked in $COMIR_DATASETS, then ../shared/datasets beside the repository)"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phantom_modalities_share_edges_not_intensities() {
        let (a, b) = phantom_pair(64, 64, 1);
        assert!(!a.is_constant() && !b.is_constant());
        // Not a monotonic remap: the rank correlation of pixel values is far from ±1.
        let corr = {
            let (ma, mb) = (
                a.data().iter().sum::<f32>() / 4096.0,
                b.data().iter().sum::<f32>() / 4096.0,
            );
            let mut sab = 0.0;
            let mut saa = 0.0;
            let mut sbb = 0.0;
            for (x, y) in a.data().iter().zip(b.data()) {
                sab += (x - ma) * (y - mb);
                saa += (x - ma).powi(2);
                sbb += (y - mb).powi(2);
            }
            sab / (saa * sbb).sqrt()
        };
        assert!(corr.abs() < 0.9, "correlation {corr}");
    }

    #[test]
    fn moved_by_realises_the_transform() {
        let (a, _) = phantom_pair(48, 48, 2);
        let t = Rigid2::new(0.0, [3.0, -2.0], a.center());
        let m = moved_by(&a, &t, Border::Zero);
        // moving(t(p)) = fixed(p) for an interior p.
        assert!((m.get(23, 18, 0) - a.get(20, 20, 0)).abs() < 1e-6);
    }
}
