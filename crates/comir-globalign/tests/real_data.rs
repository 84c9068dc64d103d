//! Real-data check on the shared datasets (ignored by default; run with
//! `cargo test --release -p comir-globalign --test real_data -- --ignored --nocapture`).

use std::time::Instant;

use comir_globalign::{GlobalSearch, GlobalSearchConfig};
use comir_image::ops::Border;
use comir_register::centered_rigid;
use comir_testkit::{dataset, moved_by};
use comir_transform::{corner_error, Rigid2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Registers up to `count` pairs: fixed = A, moving = B moved by about `angle_deg` and `t`.
/// Returns (successes, pairs).
fn run(name: &str, count: usize, angle_deg: f64, t: [f64; 2]) -> Option<(usize, usize)> {
    let dir = dataset(name)?;
    let mut files: Vec<_> = std::fs::read_dir(dir.join("A"))
        .expect("A/")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .filter(|f| dir.join("B").join(f).is_file())
        .collect();
    files.sort();
    // Spread the picks over the dataset.
    let stride = (files.len() / count).max(1);
    let picks: Vec<_> = files.iter().step_by(stride).take(count).collect();
    // `COMIR_GLOBAL_CONFIG` may hold a JSON configuration to try other settings.
    let cfg: GlobalSearchConfig = match std::env::var("COMIR_GLOBAL_CONFIG") {
        Ok(json) => serde_json::from_str(&json).expect("COMIR_GLOBAL_CONFIG"),
        Err(_) => GlobalSearchConfig::default(),
    };
    let g = GlobalSearch::new(cfg).expect("config");
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let (mut ok, mut total_s, mut errs) = (0, 0.0, Vec::new());
    for f in &picks {
        let a = comir_image::load_gray(dir.join("A").join(f)).expect("A image");
        let b = comir_image::load_gray(dir.join("B").join(f)).expect("B image");
        let sign = if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
        let ang = sign * (angle_deg + rng.gen_range(-2.0..2.0));
        let tt = [
            t[0] + rng.gen_range(-2.0..2.0),
            t[1] + rng.gen_range(-2.0..2.0),
        ];
        let truth = Rigid2::new(ang.to_radians(), tt, a.center());
        let moving = moved_by(&b, &truth, Border::Zero);
        let init = centered_rigid(&a, &moving);
        let start = Instant::now();
        let (o, st) = g
            .register_with_stats(&a, &moving, &init)
            .expect("registers");
        let secs = start.elapsed().as_secs_f64();
        total_s += secs;
        let (w, h) = (a.width() as f64, a.height() as f64);
        let err = corner_error(&o.transform, &truth, w, h);
        let success = err <= 0.02 * w;
        ok += usize::from(success);
        errs.push(err);
        println!(
            "{name} {:>16} {}x{} truth {ang:+7.2}° ({:+6.2},{:+6.2})  got {:+7.2}° ({:+6.2},{:+6.2})  err {err:6.2} px {}  {secs:.3} s (prep {:.3}, coarse {:.3}, refine {:.3})",
            f.to_string_lossy(),
            a.width(),
            a.height(),
            tt[0],
            tt[1],
            o.transform.angle_rad().to_degrees(),
            o.transform.params()[1],
            o.transform.params()[2],
            if success { "ok" } else { "FAIL" },
            st.prepare_s,
            st.coarse_s,
            st.refine_s,
        );
    }
    errs.sort_by(f64::total_cmp);
    println!(
        "{name}: {ok}/{} within 0.02·w, median error {:.2} px, {:.3} s per pair",
        picks.len(),
        errs[errs.len() / 2],
        total_s / picks.len() as f64
    );
    Some((ok, picks.len()))
}

#[test]
#[ignore = "needs the shared datasets; run in release"]
fn real_data_mni152_t1_t2() {
    if let Some((ok, n)) = run("mni152-t1-t2", 10, 15.0, [10.0, -8.0]) {
        assert!(ok * 10 >= n * 8, "{ok}/{n}");
    }
}

#[test]
#[ignore = "needs the shared datasets; run in release"]
fn real_data_histology_shg_he() {
    if let Some((ok, n)) = run("histology-shg-he", 10, 15.0, [20.0, -15.0]) {
        assert!(ok * 10 >= n * 5, "{ok}/{n}");
    }
}
