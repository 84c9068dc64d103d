//! Registration on real images: the bundled MNI152 T1/T2 demo pairs (always present) and the
//! shared histology SHG/H&E set (skipped with a message when `../shared/datasets` is absent).
//! These guard the success rates reported in docs/results.md against regressions.

use std::path::{Path, PathBuf};
use std::process::Command;

fn eval(pairs: &Path, methods: &str, limit: &str, out: &Path) -> Vec<comir_eval::CaseResult> {
    let o = Command::new(env!("CARGO_BIN_EXE_comir"))
        .args(["eval", "--pairs"])
        .arg(pairs)
        .args([
            "--method", methods, "--levels", "1,4", "--limit", limit, "--out",
        ])
        .arg(out)
        .output()
        .expect("the binary runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    comir_eval::read_csv(out).expect("results")
}

fn rate(rows: &[comir_eval::CaseResult], method: &str) -> f64 {
    let mine: Vec<_> = rows.iter().filter(|r| r.method == method).collect();
    mine.iter().filter(|r| r.success).count() as f64 / mine.len() as f64
}

#[test]
fn mi_and_global_register_bundled_t2_to_t1() {
    let demo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/demo");
    let dir = tempfile::tempdir().expect("tempdir");
    let rows = eval(&demo, "mi,global", "4", &dir.path().join("r.csv"));
    assert_eq!(rows.len(), 4 * 2 * 2);
    assert_eq!(rate(&rows, "mi"), 1.0, "{rows:#?}");
    assert!(rate(&rows, "global") >= 0.75, "{rows:#?}");
}

#[test]
fn mi_and_global_register_raw_shg_to_he() {
    let Some(ds) = comir_testkit::dataset("histology-shg-he") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let rows = eval(&ds, "mi,global", "3", &dir.path().join("r.csv"));
    assert!(rate(&rows, "mi") >= 0.8, "{rows:#?}");
    assert!(rate(&rows, "global") >= 0.8, "{rows:#?}");
}
