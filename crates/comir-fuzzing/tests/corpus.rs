//! Replays every committed fuzz input — the corpus in `fuzz/corpus/TARGET/` and the reproducers of
//! fixed crashes in `fuzz/regressions/TARGET/` — through the functions the fuzz targets call, on
//! the stable toolchain, so that `cargo test --workspace` (and CI) keeps what fuzzing found.
//!
//! No input may panic. A file whose name starts with `ok-` must be accepted, one starting with
//! `err-` must be refused; other files (what libFuzzer kept) may go either way.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The committed inputs of `target`: corpus and regressions, sorted.
fn inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for kind in ["corpus", "regressions"] {
        let dir = fuzz_dir().join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let p = e.expect("directory entry").path();
            if p.is_file() {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// Runs `f` on every input of `target` and checks the outcomes; returns how many ran.
fn replay(target: &str, f: impl Fn(&[u8]) -> Option<Result<(), String>>) -> usize {
    let files = inputs(target);
    let mut failures = Vec::new();
    for p in &files {
        let data = std::fs::read(p).expect("read input");
        eprintln!("replaying {}", p.display());
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        match catch_unwind(AssertUnwindSafe(|| f(&data))) {
            Err(_) => failures.push(format!("{}: panicked", p.display())),
            Ok(Some(Err(e))) if name.starts_with("ok-") => {
                failures.push(format!("{}: expected Ok, got {e}", p.display()))
            }
            Ok(Some(Ok(()))) if name.starts_with("err-") => {
                failures.push(format!("{}: expected an error, got Ok", p.display()))
            }
            Ok(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    files.len()
}

#[test]
fn decode_image_corpus() {
    let n = replay("decode_image", |d| {
        Some(
            comir_fuzzing::decode_image(d)
                .map(drop)
                .map_err(|e| e.to_string()),
        )
    });
    assert!(
        n >= 5,
        "only {n} inputs: is fuzz/corpus/decode_image there?"
    );
}

#[test]
fn transform_json_corpus() {
    let n = replay("transform_json", |d| {
        Some(comir_fuzzing::parse_transform(d).map(drop))
    });
    assert!(n >= 5, "only {n} inputs");
}

#[test]
fn train_config_corpus() {
    let n = replay("train_config", |d| {
        Some(comir_fuzzing::parse_train_config(d).map(drop))
    });
    assert!(n >= 5, "only {n} inputs");
}

#[test]
fn register_corpus() {
    let n = replay("register", |d| {
        comir_fuzzing::register_bytes(d).map(|r| r.map(drop).map_err(|e| e.to_string()))
    });
    assert!(n >= 5, "only {n} inputs");
}

#[test]
fn model_card_corpus() {
    let n = replay("model_card", |d| {
        Some(comir_fuzzing::parse_model_card(d).map(drop))
    });
    assert!(n >= 5, "only {n} inputs");
}

#[test]
fn weights_corpus() {
    let n = replay("weights", |d| Some(comir_fuzzing::load_weights(d)));
    assert!(n >= 5, "only {n} inputs");
}

#[test]
fn safetensors_corpus() {
    let n = replay("safetensors", |d| {
        Some(comir_fuzzing::import_safetensors(d))
    });
    assert!(n >= 5, "only {n} inputs");
}

#[test]
fn manifest_corpus() {
    let n = replay("manifest", |d| {
        Some(comir_fuzzing::parse_manifest(d).map(drop))
    });
    assert!(n >= 5, "only {n} inputs");
}

#[test]
fn bspline_corpus() {
    let n = replay("bspline", |d| Some(comir_fuzzing::parse_bspline(d)));
    assert!(n >= 4, "only {n} inputs");
}
