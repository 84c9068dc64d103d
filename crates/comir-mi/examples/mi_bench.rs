//! Timing of one registration (single start and the 3-start wrapper) on phantom and real images.
//!
//! `cargo run --release -p comir-mi --example mi_bench`

use std::time::Instant;

use comir_image::ops::{pyramid_level, Border};
use comir_image::{load_gray, Image};
use comir_mi::{MattesMi, MattesMiConfig};
use comir_register::{centered_identity, MultiStart, Registrar};
use comir_testkit::{dataset, moved_by, phantom_pair};
use comir_transform::{corner_error, Rigid2};

/// CPU seconds used by this process so far (all threads), from /proc/self/stat; 0 elsewhere.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name.
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn time(label: &str, a: &Image, b: &Image, truth: &Rigid2) {
    let single = MattesMi::new(MattesMiConfig::default()).expect("config");
    let multi = MultiStart::reference(MattesMi::new(MattesMiConfig::default()).expect("config"));
    let moving = moved_by(b, truth, Border::Zero);
    let init = centered_identity(a, &moving);
    let (w, h) = (a.width() as f64, a.height() as f64);
    let reps = 5;
    let mut best1 = f64::INFINITY;
    let mut best3 = f64::INFINITY;
    let mut e1 = 0.0;
    let mut e3 = 0.0;
    let mut it1 = 0;
    for _ in 0..reps {
        let s = Instant::now();
        let o = single.register(a, &moving, &init).expect("register");
        best1 = best1.min(s.elapsed().as_secs_f64());
        e1 = corner_error(&o.transform, truth, w, h);
        it1 = o.iterations;
        let s = Instant::now();
        let o = multi.register(a, &moving, &init).expect("register");
        best3 = best3.min(s.elapsed().as_secs_f64());
        e3 = corner_error(&o.transform, truth, w, h);
    }
    let n = 20;
    let c0 = cpu_seconds();
    for _ in 0..n {
        single.register(a, &moving, &init).expect("register");
    }
    let c1 = cpu_seconds();
    for _ in 0..n {
        multi.register(a, &moving, &init).expect("register");
    }
    let c2 = cpu_seconds();
    println!(
        "{label:<28} CPU time per registration: single {:.4} s, 3-start {:.4} s",
        (c1 - c0) / n as f64,
        (c2 - c1) / n as f64
    );
    println!(
        "{label:<28} {}x{}: single {:.4} s ({it1} it, err {e1:.3} px), 3-start {:.4} s (err {e3:.3} px)  [best of {reps}, {} rayon threads]",
        a.width(),
        a.height(),
        best1,
        best3,
        rayon::current_num_threads()
    );
}

fn main() {
    for n in [256usize, 512] {
        let (a, b) = phantom_pair(n, n, 1);
        let truth = Rigid2::new(10f64.to_radians(), [8.0, -6.0], a.center());
        time("phantom", &a, &b, &truth);
    }
    if let Some(dir) = dataset("histology-shg-he") {
        let a = load_gray(dir.join("A/1B_A1.png")).expect("A");
        let b = load_gray(dir.join("B/1B_A1.png")).expect("B");
        let truth = Rigid2::new(10f64.to_radians(), [15.0, -10.0], a.center());
        time("histology-shg-he", &a, &b, &truth);
        // The same pair halved to 256².
        let (a2, b2) = (pyramid_level(&a, 2, 1.0), pyramid_level(&b, 2, 1.0));
        let truth2 = Rigid2::new(10f64.to_radians(), [7.5, -5.0], a2.center());
        time("histology-shg-he (1/2)", &a2, &b2, &truth2);
    }
    if let Some(dir) = dataset("mni152-t1-t2") {
        let a = load_gray(dir.join("A/axial_090.png")).expect("A");
        let b = load_gray(dir.join("B/axial_090.png")).expect("B");
        let truth = Rigid2::new(10f64.to_radians(), [8.0, -6.0], a.center());
        time("mni152-t1-t2", &a, &b, &truth);
    }
}
