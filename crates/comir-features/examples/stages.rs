//! Rough per-stage timings of the feature pipeline on a 512×512 textured image.
//!
//! `RAYON_NUM_THREADS=1 cargo run --release -p comir-features --example stages`

use std::time::Instant;

use comir_features::{detect_and_describe, match_descriptors, FeatureConfig};
use comir_image::ops::gaussian_blur;
use comir_testkit::textured;

fn best_ms(mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let img = textured(512, 1);
    for n in [2usize, 500] {
        let cfg = FeatureConfig {
            max_features: n,
            ..Default::default()
        };
        let ms = best_ms(|| {
            std::hint::black_box(detect_and_describe(&img, &cfg));
        });
        println!("detect+describe, max_features {n}: {ms:.1} ms");
    }
    let cfg = FeatureConfig::default();
    let k = detect_and_describe(&img, &cfg);
    let ms = best_ms(|| {
        std::hint::black_box(match_descriptors(&k, &k, 0.8, true));
    });
    println!("matching {}×{}: {ms:.1} ms", k.len(), k.len());
    let ms = best_ms(|| {
        std::hint::black_box(gaussian_blur(&img, 2.0));
    });
    println!("(reference) comir_image gaussian_blur σ=2: {ms:.1} ms");
}
