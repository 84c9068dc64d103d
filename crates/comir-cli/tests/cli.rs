//! End-to-end tests of the `comir` binary: real runs on generated images, and bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use comir_image::ops::Border;
use comir_image::Image;
use comir_transform::{corner_error, read_json, Rigid2};

fn comir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_comir"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a clean failure: exit status 2, one line on stderr that contains `needle`.
fn assert_clean_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "more than one line: {err}"
    );
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn write_pair(dir: &Path, size: usize) -> (PathBuf, PathBuf, Rigid2) {
    let (a, b) = comir_testkit::phantom_pair(size, size, 11);
    let truth = Rigid2::new(6f64.to_radians(), [4.0, -3.0], a.center());
    let moving = comir_testkit::moved_by(&b, &truth, Border::Zero);
    let (f, m) = (dir.join("fixed.png"), dir.join("moving.png"));
    comir_image::save_png(&f, &a).expect("save");
    comir_image::save_png(&m, &moving).expect("save");
    (f, m, truth)
}

#[test]
fn register_mi_recovers_a_known_transform_and_writes_all_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (f, m, truth) = write_pair(dir.path(), 96);
    let out = dir.path().join("t.json");
    let tfm = dir.path().join("t.tfm");
    let warped = dir.path().join("w.png");
    let o = comir(&[
        "register",
        "--fixed",
        f.to_str().expect("utf8"),
        "--moving",
        m.to_str().expect("utf8"),
        "--method",
        "mi",
        "--transform",
        "rigid",
        "--out",
        out.to_str().expect("utf8"),
        "--tfm",
        tfm.to_str().expect("utf8"),
        "--warped",
        warped.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rec = read_json(&out).expect("json");
    assert_eq!(rec.method, "mi");
    let err = corner_error(&rec.transform(), &truth, 96.0, 96.0);
    assert!(err < 0.02 * 96.0, "corner error {err}");
    // A correct result is judged trustworthy, in the file and on the printed line.
    assert!(rec.confidence.is_some_and(|c| c > 0.5), "{rec:?}");
    assert_eq!(rec.flag.as_deref(), Some("ok"));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("confidence ") && stdout.contains("(ok)"),
        "{stdout}"
    );
    assert!(std::fs::read_to_string(&tfm)
        .expect("tfm")
        .contains("Euler2DTransform_double_2_2"));
    let w = comir_image::load(&warped).expect("warped");
    assert_eq!((w.width(), w.height()), (96, 96));
}

#[test]
fn global_init_lets_a_local_method_recover_a_large_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = comir_testkit::phantom_pair(96, 96, 5);
    let truth = Rigid2::new(110f64.to_radians(), [6.0, -4.0], a.center());
    let (f, m) = (dir.path().join("f.png"), dir.path().join("m.png"));
    comir_image::save_png(&f, &a).expect("save");
    comir_image::save_png(&m, &comir_testkit::moved_by(&b, &truth, Border::Zero)).expect("save");
    let result = |init: &str| {
        let out = dir.path().join(format!("{init}.json"));
        let o = comir(&[
            "register",
            "--fixed",
            f.to_str().expect("utf8"),
            "--moving",
            m.to_str().expect("utf8"),
            "--method",
            "mi",
            "--transform",
            "rigid",
            "--init",
            init,
            "--out",
            out.to_str().expect("utf8"),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let rec = read_json(&out).expect("json");
        let error = corner_error(&rec.transform(), &truth, 96.0, 96.0);
        (error, rec.flag.unwrap_or_default())
    };
    // 110° is far outside a local optimiser's reach, even with the ±0.4 rad starts; the wrong
    // result is flagged, the right one is not.
    let (error, flag) = result("identity");
    assert!(error > 0.02 * 96.0 && flag == "doubtful", "{error} {flag}");
    let (error, flag) = result("global");
    assert!(error < 0.02 * 96.0 && flag == "ok", "{error} {flag}");
}

#[test]
fn no_confidence_leaves_the_judgement_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (f, m, _) = write_pair(dir.path(), 64);
    let out = dir.path().join("t.json");
    let o = comir(&[
        "register",
        "--fixed",
        f.to_str().expect("utf8"),
        "--moving",
        m.to_str().expect("utf8"),
        "--method",
        "mi",
        "--out",
        out.to_str().expect("utf8"),
        "--no-confidence",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).expect("json");
    assert!(
        !text.contains("confidence") && !text.contains("flag"),
        "{text}"
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains("confidence"));
}

#[test]
fn eval_writes_csv_with_the_protocol_columns_and_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    for sub in ["A", "B"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
    }
    for (i, name) in ["p1.png", "p2.png"].iter().enumerate() {
        let (a, b) = comir_testkit::phantom_pair(64, 64, i as u64);
        comir_image::save_png(dir.path().join("A").join(name), &a).expect("save");
        comir_image::save_png(dir.path().join("B").join(name), &b).expect("save");
    }
    let csv = dir.path().join("r.csv");
    let args = [
        "eval",
        "--pairs",
        dir.path().to_str().expect("utf8"),
        "--method",
        "mi",
        "--levels",
        "1,2",
        "--out",
        csv.to_str().expect("utf8"),
    ];
    let o = comir(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = comir_eval::read_csv(&csv).expect("csv");
    assert_eq!(rows.len(), 4);
    let text = std::fs::read_to_string(&csv).expect("csv");
    assert!(text.starts_with("pair,level,method,error_px,width,success,seconds"));
    assert!(text
        .lines()
        .next()
        .is_some_and(|h| h.ends_with(",status,confidence,flag,corner_error_px")));
    for r in &rows {
        assert!(
            r.confidence.is_some_and(|c| (0.0..=1.0).contains(&c)),
            "{r:?}"
        );
        assert!(
            matches!(r.flag.as_deref(), Some("ok" | "doubtful")),
            "{r:?}"
        );
    }
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("median error px"), "{stdout}");
    // Resuming a finished run redoes nothing and keeps every row.
    let mut resumed: Vec<&str> = args.to_vec();
    resumed.push("--resume");
    let o = comir(&resumed);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(comir_eval::read_csv(&csv).expect("csv"), rows);
}

#[test]
fn bad_inputs_fail_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (f, _, _) = write_pair(dir.path(), 48);
    let f = f.to_str().expect("utf8");
    let out = dir.path().join("t.json");
    let out = out.to_str().expect("utf8");
    // `comir register` with the given images and method; the output path is always valid.
    let register = |fixed: &str, moving: &str, method: &str| {
        comir(&[
            "register", "--fixed", fixed, "--moving", moving, "--method", method, "--out", out,
        ])
    };
    let missing = dir.path().join("nope.png");
    assert_clean_error(
        &register(f, missing.to_str().expect("utf8"), "mi"),
        "nope.png",
    );

    let junk = dir.path().join("junk.png");
    std::fs::write(&junk, b"\x89PNG\r\n\x1a\n garbage").expect("write");
    assert_clean_error(
        &register(junk.to_str().expect("utf8"), f, "aamd"),
        "junk.png",
    );

    let tiny = dir.path().join("tiny.png");
    comir_image::save_png(&tiny, &Image::from_fn(1, 1, |_, _| 0.5)).expect("save");
    assert_clean_error(&register(f, tiny.to_str().expect("utf8"), "global"), "1×1");

    let flat = dir.path().join("flat.png");
    comir_image::save_png(&flat, &Image::from_fn(48, 48, |_, _| 0.5)).expect("save");
    assert_clean_error(
        &register(flat.to_str().expect("utf8"), f, "features"),
        "constant",
    );

    let o = comir(&[
        "eval",
        "--pairs",
        dir.path().to_str().expect("utf8"),
        "--method",
        "mi",
        "--out",
        out,
    ]);
    assert_clean_error(&o, "A/ and B/");
}
