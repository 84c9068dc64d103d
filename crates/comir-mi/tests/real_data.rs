//! Real-data check (ignored by default; run with
//! `cargo test --release -p comir-mi --test real_data -- --ignored --nocapture`).
//!
//! For 10 pairs of each dataset: fixed = A, moving = B warped by a known rigid transform with
//! `moved_by`; reports the corner error of single-start and 3-start (0, ±0.4 rad) registration,
//! success (error ≤ 0.02·w) and the time per pair.

use std::path::Path;
use std::time::Instant;

use comir_image::load_gray;
use comir_image::ops::Border;
use comir_mi::{MattesMi, MattesMiConfig};
use comir_register::{centered_identity, MultiStart, Registrar};
use comir_testkit::{dataset, moved_by};
use comir_transform::{corner_error, Rigid2};

fn run_dataset(name: &str, angle_deg: f64, shift: [f64; 2], n: usize) -> Option<(usize, usize)> {
    let dir = dataset(name)?;
    let mut files: Vec<_> = std::fs::read_dir(dir.join("A"))
        .expect("read A")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .filter(|f| {
            Path::new(f)
                .extension()
                .is_some_and(|e| e == "png" || e == "tif")
        })
        .collect();
    files.sort();
    // Spread the pairs over the dataset.
    let step = (files.len() / n).max(1);
    let picked: Vec<_> = files.iter().step_by(step).take(n).collect();
    let single = MattesMi::new(MattesMiConfig::default()).expect("config");
    let multi = MultiStart::reference(MattesMi::new(MattesMiConfig::default()).expect("config"));
    let (mut ok1, mut ok3) = (0, 0);
    let (mut t1, mut t3) = (0.0, 0.0);
    for (i, f) in picked.iter().enumerate() {
        let a = load_gray(dir.join("A").join(f)).expect("load A");
        let b = load_gray(dir.join("B").join(f)).expect("load B");
        let (w, h) = (a.width() as f64, a.height() as f64);
        // Alternate the sign of the rotation so both directions are tested.
        let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
        let truth = Rigid2::new(sign * angle_deg.to_radians(), shift, a.center());
        let moving = moved_by(&b, &truth, Border::Zero);
        let init = centered_identity(&a, &moving);
        let s = Instant::now();
        let o1 = single.register(&a, &moving, &init).expect("register");
        let d1 = s.elapsed().as_secs_f64();
        let s = Instant::now();
        let o3 = multi.register(&a, &moving, &init).expect("register");
        let d3 = s.elapsed().as_secs_f64();
        let e1 = corner_error(&o1.transform, &truth, w, h);
        let e3 = corner_error(&o3.transform, &truth, w, h);
        ok1 += usize::from(e1 <= 0.02 * w);
        ok3 += usize::from(e3 <= 0.02 * w);
        t1 += d1;
        t3 += d3;
        println!(
            "{name} {:>16} {}x{}: single err {e1:7.3} px ({:.3} s, {} it, {:?}, -MI {:.4}) | 3-start err {e3:7.3} px ({:.3} s, -MI {:.4})",
            f.to_string_lossy(),
            a.width(),
            a.height(),
            d1,
            o1.iterations,
            o1.stop,
            o1.metric_value,
            d3,
            o3.metric_value
        );
    }
    let k = picked.len();
    println!(
        "{name}: success single {ok1}/{k}, 3-start {ok3}/{k}; mean time single {:.3} s, 3-start {:.3} s",
        t1 / k as f64,
        t3 / k as f64
    );
    Some((ok1, ok3))
}

#[test]
#[ignore = "needs the shared datasets; run in release with --ignored --nocapture"]
fn real_data_mni152_t1_t2() {
    if let Some((_, ok3)) = run_dataset("mni152-t1-t2", 10.0, [8.0, -6.0], 10) {
        assert!(ok3 >= 8, "3-start success {ok3}/10");
    }
}

#[test]
#[ignore = "needs the shared datasets; run in release with --ignored --nocapture"]
fn real_data_histology_shg_he() {
    if let Some((_, ok3)) = run_dataset("histology-shg-he", 10.0, [15.0, -10.0], 10) {
        assert!(ok3 >= 5, "3-start success {ok3}/10");
    }
}
