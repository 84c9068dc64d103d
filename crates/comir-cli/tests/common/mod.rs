//! Helpers shared by the CLI test binaries (each binary uses a subset).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `comir` binary with `args`.
pub fn comir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_comir"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// Asserts success and returns stdout.
pub fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "failed: {err}\n{out}");
    out
}

/// The rows of a CSV file (header first) without its `seconds` column, the one value that
/// differs between otherwise identical runs.
pub fn csv_rows_without_time(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).expect("read the CSV");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let time = header
        .iter()
        .position(|c| *c == "seconds")
        .expect("a seconds column");
    std::iter::once(header.join(","))
        .chain(lines.map(str::to_string))
        .map(|l| {
            l.split(',')
                .enumerate()
                .filter(|(i, _)| *i != time)
                .map(|(_, v)| v.to_string())
                .collect()
        })
        .collect()
}

/// Asserts a refusal: exit status 2 and one line on stderr containing every needle, no panic.
#[track_caller]
pub fn clean_error(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    for n in needles {
        assert!(err.contains(n), "expected '{n}' in: {err}");
    }
}

/// `comir register --fixed F --moving M --out OUT` with `extra` flags, and `--method mi` unless
/// `extra` names a method.
pub fn register_pair(fixed: &str, moving: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "register",
        "--fixed",
        fixed,
        "--moving",
        moving,
        "--out",
        s(out),
    ];
    if !extra.contains(&"--method") {
        args.extend_from_slice(&["--method", "mi"]);
    }
    args.extend_from_slice(extra);
    comir(&args)
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

/// The `[network]` section of a tiny DenseUNet (two levels, growth 4) for training configs in
/// tests: `concat!(tiny_network!(), "[schedule]\n…")`.
#[macro_export]
macro_rules! tiny_network {
    () => {
        "
[network]
init_filters = 4
down_blocks = [1, 1]
up_blocks = [1, 1]
bottleneck_layers = 1
growth_rate = 4
"
    };
}

/// A whole training config of the tiny network: 16² patches, batch 2, a checkpoint every 2
/// steps, no validation.
#[macro_export]
macro_rules! tiny_training {
    () => {
        concat!(
            $crate::tiny_network!(),
            r#"
[patches]
size = 16

[schedule]
batch = 2
checkpoint_every = 2
validate_every = 0
"#
        )
    };
}
