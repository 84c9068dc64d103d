//! Times one feature registration of a 512×512 (and 256×256) textured synthetic pair.
//!
//! `cargo run --release -p comir-features --example timing`

use std::time::Instant;

use comir_features::{detect_and_describe, FeatureConfig, FeatureRegistrar};
use comir_image::ops::Border;
use comir_register::{centered_identity, Registrar};
use comir_testkit::{moved_by, textured};
use comir_transform::{corner_error, Rigid2};

fn main() {
    for (w, upsample) in [(256usize, false), (512, false), (512, true)] {
        let fixed = textured(w, 1);
        let truth = Rigid2::new(20f64.to_radians(), [12.0, -7.0], fixed.center());
        let moving = moved_by(&fixed, &truth, Border::Zero);
        let cfg = FeatureConfig {
            upsample,
            ..Default::default()
        };
        let reg = FeatureRegistrar::new(cfg.clone()).expect("valid config");
        let init = centered_identity(&fixed, &moving);
        // Warm-up, then the best of 5.
        let _ = reg.register(&fixed, &moving, &init);
        let mut best = f64::INFINITY;
        let mut det = f64::INFINITY;
        let mut result = None;
        for _ in 0..5 {
            let t0 = Instant::now();
            let k = detect_and_describe(&fixed, &cfg);
            det = det.min(t0.elapsed().as_secs_f64());
            std::hint::black_box(k);
            let t0 = Instant::now();
            result = Some(reg.register(&fixed, &moving, &init));
            best = best.min(t0.elapsed().as_secs_f64());
        }
        match result {
            Some(Ok(o)) => println!(
                "{w}×{w} upsample={upsample}: register {:.1} ms (detect+describe one image {:.1} ms), corner error {:.3} px, metric {:.2}, threads {}",
                best * 1e3,
                det * 1e3,
                corner_error(&o.transform, &truth, w as f64, w as f64),
                o.metric_value,
                rayon::current_num_threads()
            ),
            Some(Err(e)) => println!("{w}×{w}: failed: {e}"),
            None => {}
        }
    }
}
