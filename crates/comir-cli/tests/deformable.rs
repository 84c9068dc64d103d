//! `comir register --transform …,bspline` end to end on a generated two-modality texture deformed
//! by a known affine transform and a smooth field: the JSON, the composite `.tfm`, the warped
//! image, `transform-points` both ways, and the bad input of the deformable stage.

mod common;

use std::path::Path;

use comir_transform::{
    dense_error, read_itk_composite, read_json, write_json, Affine2, BSpline2, Composite2,
    Transform2, TransformRecord,
};
use common::{clean_error, comir, ok, register_pair, s};

/// Writes the pair (float TIFF) and the affine part of the truth as a start; returns the paths
/// and the whole truth.
fn deformed_pair(d: &Path) -> (String, String, String, Composite2) {
    let w = 128;
    let (a, b) = comir_testkit::textured_pair(w);
    let linear: Transform2 = Affine2 {
        matrix: [[1.04, 0.03], [-0.02, 0.97]],
        translation: [3.0, -2.0],
        center: a.center(),
    }
    .into();
    let truth = Composite2 {
        linear,
        deformation: Some(BSpline2::random_smooth(w, w, 32.0, 4.0, 9).expect("field")),
    };
    let moving = comir_testkit::moved_by_composite(&b, &truth);
    let (f, m, init) = (
        d.join("fixed.tif"),
        d.join("moving.tif"),
        d.join("lin.json"),
    );
    comir_image::save_tiff_f32(&f, &a).expect("save");
    comir_image::save_tiff_f32(&m, &moving).expect("save");
    write_json(&init, &TransformRecord::new(&linear, "truth", 0.0, 0.0)).expect("json");
    (
        s(&f).to_string(),
        s(&m).to_string(),
        s(&init).to_string(),
        truth,
    )
}

#[test]
fn a_bspline_stage_recovers_a_smooth_deformation_and_every_output_agrees() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (f, m, init, truth) = deformed_pair(d);
    let (json, tfm, warped) = (d.join("t.json"), d.join("t.tfm"), d.join("w.tif"));
    let o = comir(&[
        "register",
        "--fixed",
        &f,
        "--moving",
        &m,
        "--method",
        "mi",
        "--transform",
        "bspline",
        "--grid-spacing",
        "32",
        "--init",
        &init,
        "--out",
        s(&json),
        "--tfm",
        s(&tfm),
        "--warped",
        s(&warped),
    ]);
    ok(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("then a B-spline on a"), "{stdout}");
    let rec = read_json(&json).expect("json");
    assert_eq!(rec.kind, "bspline");
    assert_eq!(
        rec.flag.as_deref(),
        Some("ok"),
        "a gentle field does not fold"
    );
    let found = rec.composite();
    let before = dense_error(&Composite2::linear(truth.linear), &truth, 128.0, 128.0);
    let after = dense_error(&found, &truth, 128.0, 128.0);
    assert!(
        before > 1.5 && after < 0.3 * before,
        "dense error {after:.3} px, {before:.3} px with the affine part alone"
    );
    // The .tfm maps points as the JSON does.
    let text = std::fs::read_to_string(&tfm).expect("tfm");
    assert!(text.contains("CompositeTransform_double_2_2"), "{text}");
    let from_tfm = read_itk_composite(&tfm).expect("read tfm");
    assert!(dense_error(&from_tfm, &found, 128.0, 128.0) < 1e-9);
    // The warped image is the moving image pulled through the composite.
    let moving = comir_image::load(Path::new(&m)).expect("moving");
    let w = comir_image::load(&warped).expect("warped");
    let p = [50.0, 70.0];
    let q = found.apply(p);
    let want = comir_image::ops::sample_bilinear(&moving, q[0], q[1], 0).expect("inside");
    assert!((w.get(50, 70, 0) - want).abs() < 1e-5);

    // Points: forward through the composite, and back through its inverse.
    let points = d.join("p.csv");
    std::fs::write(&points, "id,x,y\na,20.5,30\nb,100,64\n").expect("write");
    let (fwd, back) = (d.join("fwd.csv"), d.join("back.csv"));
    let map = |from: &Path, to: &Path, inverse: bool| {
        let mut args = vec![
            "transform-points",
            "--transform",
            s(&json),
            "--points",
            s(from),
            "--out",
            s(to),
        ];
        if inverse {
            args.push("--inverse");
        }
        ok(&comir(&args));
        std::fs::read_to_string(to).expect("read")
    };
    let text = map(&points, &fwd, false);
    let row: Vec<f64> = text
        .lines()
        .nth(2)
        .expect("row")
        .split(',')
        .skip(1)
        .map(|v| v.parse().expect("num"))
        .collect();
    let q = found.apply([100.0, 64.0]);
    assert!((row[0] - q[0]).abs() < 1e-9 && (row[1] - q[1]).abs() < 1e-9);
    let text = map(&fwd, &back, true);
    let row: Vec<f64> = text
        .lines()
        .nth(1)
        .expect("row")
        .split(',')
        .skip(1)
        .map(|v| v.parse().expect("num"))
        .collect();
    assert!(
        (row[0] - 20.5).abs() < 1e-3 && (row[1] - 30.0).abs() < 1e-3,
        "{row:?}"
    );
}

#[test]
fn bad_deformable_settings_get_one_line_and_exit_2() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (f, m, init, truth) = deformed_pair(d);
    let out = d.join("t.json");
    let register = |extra: &[&str]| register_pair(&f, &m, &out, extra);
    clean_error(
        &register(&["--transform", "affine,bspline", "--grid-spacing", "2"]),
        &["--grid-spacing must be at least 4 px"],
    );
    clean_error(
        &register(&[
            "--transform",
            "bspline",
            "--grid-spacing",
            "500",
            "--init",
            &init,
        ]),
        &["larger than the fixed image"],
    );
    clean_error(
        &register(&["--transform", "bspline,affine"]),
        &["must be the last stage"],
    );
    clean_error(
        &register(&["--method", "aamd", "--transform", "bspline"]),
        &["aamd estimates rigid transforms"],
    );
    // A deformable result cannot be a start.
    let deformable = d.join("deformable.json");
    write_json(
        &deformable,
        &TransformRecord::from_composite(&truth, "truth", 0.0, 0.0),
    )
    .expect("json");
    clean_error(
        &register(&["--transform", "affine", "--init", s(&deformable)]),
        &["deformable.json", "cannot start a registration"],
    );
    // A malformed grid in a B-spline record.
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&deformable).expect("read")).expect("json");
    v["bspline"]["grid_spacing"] = serde_json::json!([0.0, 32.0]);
    std::fs::write(&deformable, v.to_string()).expect("write");
    let points = d.join("p.csv");
    std::fs::write(&points, "x,y\n1,2\n").expect("write");
    clean_error(
        &comir(&[
            "transform-points",
            "--transform",
            s(&deformable),
            "--points",
            s(&points),
            "--out",
            s(&d.join("o.csv")),
        ]),
        &["deformable.json", "spacing"],
    );
}
