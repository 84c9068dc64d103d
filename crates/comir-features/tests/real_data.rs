//! Real-data check on the MNI152 T1/T2 slices (skipped when the dataset is absent).
//!
//! Run with `COMIR_DATASETS=/path/to/datasets cargo test --release -p comir-features --test real_data
//! -- --ignored --nocapture` (from a worktree the default lookup beside the repository may miss).

use std::time::Instant;

use comir_features::{FeatureConfig, FeatureRegistrar};
use comir_image::ops::Border;
use comir_register::{centered_identity, Registrar};
use comir_testkit::{dataset, moved_by};
use comir_transform::{corner_error, Rigid2};

#[test]
#[ignore = "needs the shared mni152-t1-t2 dataset; run in release"]
fn mni152_slices() {
    let Some(dir) = dataset("mni152-t1-t2") else {
        return;
    };
    let mut names: Vec<String> = std::fs::read_dir(dir.join("A"))
        .expect("dataset folder")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".png"))
        .collect();
    names.sort();
    // Ten slices spread over the volume.
    let step = (names.len() / 10).max(1);
    let picked: Vec<&String> = names.iter().step_by(step).take(10).collect();
    let reg = FeatureRegistrar::new(FeatureConfig::default()).expect("valid");
    for (label, use_b) in [
        ("A vs moved A (T1/T1)", false),
        ("A vs moved B (T1/T2)", true),
    ] {
        let mut ok = 0;
        let mut errs = Vec::new();
        let mut secs = 0.0;
        for name in &picked {
            let a = comir_image::load_gray(dir.join("A").join(name)).expect("load A");
            let src = if use_b {
                comir_image::load_gray(dir.join("B").join(name)).expect("load B")
            } else {
                a.clone()
            };
            let w = a.width() as f64;
            let h = a.height() as f64;
            let truth = Rigid2::new(15f64.to_radians(), [10.0, -8.0], a.center());
            let moving = moved_by(&src, &truth, Border::Zero);
            let t0 = Instant::now();
            let r = reg.register(&a, &moving, &centered_identity(&a, &moving));
            secs += t0.elapsed().as_secs_f64();
            match r {
                Ok(o) => {
                    let e = corner_error(&o.transform, &truth, w, h);
                    if e <= 0.02 * w {
                        ok += 1;
                    }
                    eprintln!(
                        "{label} {name}: error {e:.3} px, metric {:.2}",
                        o.metric_value
                    );
                    errs.push(e);
                }
                Err(e) => eprintln!("{label} {name}: {e}"),
            }
        }
        errs.sort_by(f64::total_cmp);
        let median = errs.get(errs.len() / 2).copied().unwrap_or(f64::NAN);
        eprintln!(
            "{label}: {ok}/{} within 0.02·w, median error of returned results {median:.3} px, {:.1} ms per pair",
            picked.len(),
            1e3 * secs / picked.len() as f64
        );
        if !use_b {
            assert!(
                ok >= 8,
                "monomodal: only {ok} of {} succeeded",
                picked.len()
            );
        }
    }
}
