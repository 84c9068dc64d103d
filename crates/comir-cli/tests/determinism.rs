//! The same inputs, seed and thread count give bit-identical outputs: transforms (JSON, ITK
//! `.tfm`, warped image) and results CSVs from `comir register` / `comir eval`, float TIFF
//! representations from `comir represent`. Two runs of the binary are compared byte for byte;
//! only the wall-clock fields (`seconds`) may differ.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use comir_image::ops::Border;
use comir_transform::Rigid2;
use common::s;

/// Runs `comir` with `RAYON_NUM_THREADS` set to `threads`.
fn comir(args: &[&str], threads: usize) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_comir"))
        .args(args)
        .env("RAYON_NUM_THREADS", threads.to_string())
        .output()
        .expect("the binary runs");
    assert!(
        o.status.success(),
        "comir {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// A file's text without the lines or CSV columns that hold wall-clock time.
fn without_time(path: &Path) -> String {
    if path.extension().is_some_and(|e| e == "json") {
        return std::fs::read_to_string(path)
            .expect("read")
            .lines()
            .filter(|l| !l.trim_start().starts_with("\"seconds\""))
            .collect::<Vec<_>>()
            .join("\n");
    }
    common::csv_rows_without_time(path)
        .iter()
        .map(|r| r.join(","))
        .collect::<Vec<_>>()
        .join("\n")
}

fn pair(dir: &Path) -> (PathBuf, PathBuf) {
    // One modality, so that feature matching (made for representations) finds matches too.
    let (a, _) = comir_testkit::phantom_pair(112, 96, 21);
    let truth = Rigid2::new(7f64.to_radians(), [3.0, -2.0], a.center());
    let (f, m) = (dir.join("fixed.png"), dir.join("moving.png"));
    comir_image::save_png(&f, &a).expect("save");
    comir_image::save_png(&m, &comir_testkit::moved_by(&a, &truth, Border::Zero)).expect("save");
    (f, m)
}

#[test]
fn register_writes_identical_transforms_for_the_same_seed() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (f, m) = pair(d);
    for method in ["mi", "aamd", "features", "global"] {
        // Twice with two threads, once with one: the methods promise the same result for any
        // thread count.
        let outputs: Vec<(String, Vec<u8>, Vec<u8>)> = [(0, 2), (1, 2), (2, 1)]
            .iter()
            .map(|&(run, threads)| {
                let json = d.join(format!("{method}{run}.json"));
                let tfm = d.join(format!("{method}{run}.tfm"));
                let warped = d.join(format!("{method}{run}.tif"));
                comir(
                    &[
                        "register",
                        "--fixed",
                        s(&f),
                        "--moving",
                        s(&m),
                        "--method",
                        method,
                        "--seed",
                        "7",
                        "--out",
                        s(&json),
                        "--tfm",
                        s(&tfm),
                        "--warped",
                        s(&warped),
                    ],
                    threads,
                );
                (
                    without_time(&json),
                    std::fs::read(&tfm).expect("tfm"),
                    std::fs::read(&warped).expect("warped"),
                )
            })
            .collect();
        assert_eq!(outputs[0], outputs[1], "{method}: two runs differ");
        assert_eq!(outputs[0], outputs[2], "{method}: 1 thread differs from 2");
    }
}

#[test]
fn eval_writes_identical_csvs_for_the_same_seed() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    comir_testkit::write_phantom_pairs(d, 30..30 + 2, 64);
    let run = |n: usize| {
        let csv = d.join(format!("r{n}.csv"));
        comir(
            &[
                "eval",
                "--pairs",
                s(d),
                "--method",
                "mi,aamd,features,global",
                "--levels",
                "1,4",
                "--seed",
                "3",
                "--out",
                s(&csv),
            ],
            2,
        );
        without_time(&csv)
    };
    let first = run(0);
    assert_eq!(first.lines().count(), 1 + 2 * 2 * 4);
    assert_eq!(first, run(1));
}

const TINY: &str = tiny_training!();

#[test]
fn represent_writes_identical_float_tiffs() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    comir_testkit::write_phantom_pairs(d, 0..3, 48);
    let cfg = d.join("tiny.toml");
    std::fs::write(&cfg, TINY).expect("write");
    // Two trainings with the same seed give the same weights ...
    let (dir_a, dir_b) = (d.join("A"), d.join("B"));
    let train = |out: &Path| {
        comir(
            &[
                "train",
                "--a",
                s(&dir_a),
                "--b",
                s(&dir_b),
                "--out",
                s(out),
                "--config",
                s(&cfg),
                "--steps",
                "2",
                "--seed",
                "5",
            ],
            2,
        );
        std::fs::read(out.join("weights.bpk")).expect("weights")
    };
    let model = d.join("model");
    assert_eq!(train(&model), train(&d.join("model2")));
    // ... and the representation of an image (tiled, to cover the seams) is the same bytes.
    let (big, _) = comir_testkit::phantom_pair(150, 130, 9);
    let input = d.join("big.png");
    comir_image::save_png(&input, &big).expect("save");
    let rep = |n: usize| {
        let out = d.join(format!("rep{n}.tif"));
        comir(
            &[
                "represent",
                "--model",
                s(&model),
                "--modality",
                "b",
                "--input",
                s(&input),
                "--out",
                s(&out),
                "--max-tile",
                "160",
            ],
            2,
        );
        std::fs::read(&out).expect("tif")
    };
    assert_eq!(rep(0), rep(1));
}
