//! `comir register` beyond rigid, `--init FILE` and `comir transform-points`, end to end on a
//! generated multimodal pair displaced by a known affine transform; and their bad input.

mod common;

use std::path::Path;

use comir_image::ops::Border;
use comir_transform::{dense_error, read_json, Affine2, Transform2, TransformKind};
use common::{clean_error, comir, ok, register_pair, s};

/// A multimodal phantom pair whose true fixed-to-moving transform is an affine map with 8 %
/// anisotropic scale and a shear: out of reach of a rigid registration.
fn affine_pair(dir: &Path) -> (String, String, Transform2) {
    let (a, b) = comir_testkit::phantom_pair(112, 112, 9);
    let truth: Transform2 = Affine2 {
        matrix: [[1.08, 0.04], [-0.03, 0.93]],
        translation: [4.0, -3.0],
        center: a.center(),
    }
    .into();
    let (f, m) = (dir.join("fixed.png"), dir.join("moving.png"));
    comir_image::save_png(&f, &a).expect("save");
    let moving = comir_testkit::moved_by_transform(&b, &truth, Border::Zero);
    comir_image::save_png(&m, &moving).expect("save");
    (s(&f).to_string(), s(&m).to_string(), truth)
}

#[test]
fn similarity_then_affine_recovers_an_affine_transform_that_rigid_cannot() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (f, m, truth) = affine_pair(d);
    let run = |extra: &[&str], name: &str| -> Transform2 {
        let json = d.join(name);
        let mut args = vec![
            "register",
            "--fixed",
            &f,
            "--moving",
            &m,
            "--method",
            "mi",
            "--out",
            s(&json),
        ];
        args.extend_from_slice(extra);
        ok(&comir(&args));
        read_json(&json).expect("json").transform()
    };
    let tfm = d.join("t.tfm");
    let default = run(
        &["--transform", "similarity,affine", "--tfm", s(&tfm)],
        "default.json",
    );
    let rigid = run(&["--transform", "rigid"], "rigid.json");
    assert_eq!(default.kind(), TransformKind::Affine);
    let (e_default, e_rigid) = (
        dense_error(&default, &truth, 112.0, 112.0),
        dense_error(&rigid, &truth, 112.0, 112.0),
    );
    assert!(e_default < 0.01 * 112.0, "default: {e_default:.2} px");
    assert!(e_rigid > 0.02 * 112.0, "rigid: {e_rigid:.2} px");
    // With no --transform (auto), the affine result fits clearly better and is kept: the same
    // transform as similarity,affine gives.
    let auto = run(&[], "auto.json");
    assert_eq!(auto.kind(), TransformKind::Affine);
    assert!(dense_error(&auto, &default, 112.0, 112.0) < 1e-9);
    let text = std::fs::read_to_string(&tfm).expect("tfm");
    assert!(text.contains("AffineTransform_double_2_2"), "{text}");

    // Started from its own result, an affine registration stays there.
    let again = run(
        &[
            "--transform",
            "affine",
            "--init",
            s(&d.join("default.json")),
        ],
        "again.json",
    );
    assert!(dense_error(&again, &default, 112.0, 112.0) < 0.5);
    // The .tfm reads back as a start too.
    let from_tfm = run(&["--transform", "affine", "--init", s(&tfm)], "tfm.json");
    assert!(dense_error(&from_tfm, &default, 112.0, 112.0) < 0.5);

    // Points go fixed → moving exactly as the transform maps them, and back.
    let points = d.join("points.csv");
    std::fs::write(&points, "label,x,y\nnucleus,20.5,30\ncorner,100,7\n").expect("write");
    let mapped = d.join("mapped.csv");
    let json = d.join("default.json");
    ok(&comir(&[
        "transform-points",
        "--transform",
        s(&json),
        "--points",
        s(&points),
        "--out",
        s(&mapped),
    ]));
    let text = std::fs::read_to_string(&mapped).expect("mapped");
    let row: Vec<&str> = text.lines().nth(1).expect("row").split(',').collect();
    let q = default.apply([20.5, 30.0]);
    assert_eq!(row[0], "nucleus");
    assert!((row[1].parse::<f64>().expect("x") - q[0]).abs() < 1e-9);
    assert!((row[2].parse::<f64>().expect("y") - q[1]).abs() < 1e-9);
    let back = d.join("back.csv");
    ok(&comir(&[
        "transform-points",
        "--transform",
        s(&json),
        "--points",
        s(&mapped),
        "--out",
        s(&back),
        "--inverse",
    ]));
    let text = std::fs::read_to_string(&back).expect("back");
    let row: Vec<&str> = text.lines().nth(2).expect("row").split(',').collect();
    assert!((row[1].parse::<f64>().expect("x") - 100.0).abs() < 1e-9);
    assert!((row[2].parse::<f64>().expect("y") - 7.0).abs() < 1e-9);
}

#[test]
fn auto_keeps_the_rigid_result_when_the_images_differ_by_a_rigid_motion() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (a, b) = comir_testkit::phantom_pair(112, 112, 9);
    let truth: Transform2 = comir_transform::Rigid2 {
        angle_rad: 0.08,
        translation: [5.0, -4.0],
        center: a.center(),
    }
    .into();
    let (f, m) = (d.join("fixed.png"), d.join("moving.png"));
    comir_image::save_png(&f, &a).expect("save");
    comir_image::save_png(
        &m,
        &comir_testkit::moved_by_transform(&b, &truth, Border::Zero),
    )
    .expect("save");
    let run = |extra: &[&str], name: &str| -> Transform2 {
        let json = d.join(name);
        ok(&register_pair(s(&f), s(&m), &json, extra));
        read_json(&json).expect("json").transform()
    };
    let auto = run(&[], "auto.json");
    let rigid = run(&["--transform", "rigid"], "rigid.json");
    assert_eq!(auto.kind(), TransformKind::Rigid);
    assert!(dense_error(&auto, &rigid, 112.0, 112.0) < 1e-9);
    assert!(dense_error(&auto, &truth, 112.0, 112.0) < 0.01 * 112.0);
    // `auto` is MI's choice; the other methods stay rigid.
    let aamd = run(&["--method", "aamd"], "aamd.json");
    assert_eq!(aamd.kind(), TransformKind::Rigid);
}

#[test]
fn bad_transforms_stages_and_points_get_one_line_and_exit_2() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (f, m, _) = affine_pair(d);
    let out = d.join("t.json");
    let register = |extra: &[&str]| register_pair(&f, &m, &out, extra);
    clean_error(
        &register(&["--transform", "rigid,warp"]),
        &["unknown stage 'warp'"],
    );
    clean_error(
        &register(&["--transform", "affine,rigid"]),
        &["more flexible"],
    );
    clean_error(
        &register(&["--transform", "auto,bspline"]),
        &["cannot be part of a chain"],
    );
    clean_error(
        &register(&["--method", "aamd", "--transform", "affine"]),
        &["aamd estimates rigid transforms"],
    );
    let bad = d.join("bad.json");
    std::fs::write(&bad, "{\"kind\": \"rigid\", ").expect("write");
    clean_error(&register(&["--init", s(&bad)]), &["bad.json"]);
    let reflect = d.join("reflect.tfm");
    std::fs::write(
        &reflect,
        "#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_2_2\n\
         Parameters: -1 0 0 1 0 0\nFixedParameters: 0 0\n",
    )
    .expect("write");
    clean_error(
        &register(&["--init", s(&reflect)]),
        &["reflect.tfm", "reflects"],
    );
    let missing = d.join("nowhere.json");
    clean_error(&register(&["--init", s(&missing)]), &["nowhere.json"]);
    // An affine start for a rigid method.
    ok(&register(&["--transform", "affine"]));
    clean_error(
        &register(&["--method", "aamd", "--init", s(&out)]),
        &["cannot start from the affine"],
    );

    let points = d.join("p.csv");
    let mapped = d.join("m.csv");
    let map = |text: &str| {
        std::fs::write(&points, text).expect("write");
        comir(&[
            "transform-points",
            "--transform",
            s(&out),
            "--points",
            s(&points),
            "--out",
            s(&mapped),
        ])
    };
    clean_error(&map("col,row\n1,2\n"), &["p.csv", "columns named x and y"]);
    clean_error(
        &map("x,y\n1,2\n3,inf\n"),
        &["p.csv", "line 3", "not a finite number"],
    );
    clean_error(&map("x,y\n1,2\n3\n"), &["p.csv", "line 3"]);
}

#[test]
fn ncc_registers_images_of_one_modality() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (a, _) = comir_testkit::phantom_pair(112, 112, 9);
    let truth: Transform2 = Affine2 {
        matrix: [[1.05, 0.03], [-0.02, 0.96]],
        translation: [3.0, -2.0],
        center: a.center(),
    }
    .into();
    let (f, m, out) = (d.join("f.png"), d.join("m.png"), d.join("t.json"));
    comir_image::save_png(&f, &a).expect("save");
    let moving = comir_testkit::moved_by_transform(&a, &truth, Border::Zero);
    comir_image::save_png(&m, &moving).expect("save");
    let stdout = ok(&comir(&[
        "register",
        "--fixed",
        s(&f),
        "--moving",
        s(&m),
        "--method",
        "ncc",
        "--transform",
        "similarity,affine",
        "--out",
        s(&out),
    ]));
    assert!(stdout.starts_with("ncc: affine"), "{stdout}");
    let rec = read_json(&out).expect("json");
    assert_eq!(rec.method, "ncc");
    // −NCC of an image with a resampled copy of itself.
    assert!(rec.metric_value < -0.95, "{}", rec.metric_value);
    let err = dense_error(&rec.transform(), &truth, 112.0, 112.0);
    assert!(err < 0.5, "dense error {err:.3} px");
}
