//! End-to-end tests of learning through the `comir` binary: train, resume, represent, and
//! register / evaluate through a model, on generated pairs with a tiny network.

mod common;

use comir_image::ops::quarter_turns;
use common::{comir, s};
use std::path::Path;
use std::process::Output;

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok(o: &Output) -> String {
    let (out, err) = text(o);
    assert!(o.status.success(), "failed: {err}\n{out}");
    out
}

fn clean_error(o: &Output, needle: &str) {
    let (_, err) = text(o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(needle), "expected '{needle}' in {err}");
}

/// `comir represent` with the given model, modality, input and output, plus `extra` flags.
fn represent(model: &Path, modality: &str, input: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "represent",
        "--model",
        s(model),
        "--modality",
        modality,
        "--input",
        s(input),
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    comir(&args)
}

const TINY: &str = concat!(
    tiny_network!(),
    r#"
[patches]
size = 32

[schedule]
batch = 4
checkpoint_every = 2
validate_every = 2
validation_batches = 1
"#
);

#[test]
fn train_resume_represent_register_and_eval_through_a_model() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    comir_testkit::write_phantom_pairs(d, 0..8, 64);
    let cfg = d.join("tiny.toml");
    std::fs::write(&cfg, TINY).expect("write");
    let model = d.join("model");
    let (dir_a, dir_b) = (d.join("A"), d.join("B"));
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--a",
            s(&dir_a),
            "--b",
            s(&dir_b),
            "--out",
            s(&model),
        ];
        args.extend_from_slice(extra);
        comir(&args)
    };
    let first = train(&[
        "--config",
        s(&cfg),
        "--steps",
        "4",
        "--test-fraction",
        "0.25",
    ]);
    let out = ok(&first);
    assert!(out.contains("trained 4 steps"), "{out}");
    // No terminal here, so progress comes as one line per checkpoint (every 2 steps).
    let (_, progress) = text(&first);
    assert!(progress.contains("step 2/4: loss"), "{progress}");
    assert!(progress.contains("step 4/4: loss"), "{progress}");
    for f in ["model.json", "weights.bpk", "checkpoint.bin", "history.csv"] {
        assert!(model.join(f).is_file(), "{f} missing");
    }
    // A second run into the same folder must not overwrite it silently.
    clean_error(&train(&["--steps", "4"]), "--resume");
    // Resume with more steps: the saved settings are used.
    let out = ok(&train(&["--resume", "--steps", "6"]));
    assert!(out.contains("trained 6 steps (2 in this run)"), "{out}");
    // ... but not with different ones.
    clean_error(
        &train(&["--resume", "--steps", "8", "--tau", "0.2"]),
        "other settings",
    );

    // Represent: float TIFF of the same size, and an 8-bit PNG.
    let tif = d.join("rep.tif");
    ok(&represent(&model, "a", &d.join("A/p0.png"), &tif, &[]));
    let rep = comir_image::load(&tif).expect("tif");
    assert_eq!((rep.width(), rep.height(), rep.channels()), (64, 64, 1));
    assert!(!rep.is_constant());
    let png = d.join("rep.png");
    ok(&represent(&model, "b", &d.join("B/p0.png"), &png, &[]));
    assert!(png.is_file());
    // Rotation-averaged: turning the input turns the output (the 64² input needs no uneven
    // padding), which the plain network does not do.
    let turned_in = d.join("p0-turned.png");
    let p0 = comir_image::load(d.join("A/p0.png")).expect("p0");
    comir_image::save_png(&turned_in, &quarter_turns(&p0, 1)).expect("save");
    let turned_tif = d.join("rep-turned.tif");
    let flag = ["--rotation-average"];
    ok(&represent(&model, "a", &d.join("A/p0.png"), &tif, &flag));
    ok(&represent(&model, "a", &turned_in, &turned_tif, &flag));
    let avg = comir_image::load(&tif).expect("tif");
    let avg_turned = comir_image::load(&turned_tif).expect("tif");
    let (lo, hi) = avg.min_max();
    let gap = |a: &comir_image::Image, b: &comir_image::Image| {
        a.data()
            .iter()
            .zip(b.data())
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
    };
    assert!(gap(&quarter_turns(&avg, 1), &avg_turned) < 1e-4 * (hi - lo));
    ok(&represent(&model, "a", &turned_in, &turned_tif, &[]));
    assert!(
        gap(
            &quarter_turns(&rep, 1),
            &comir_image::load(&turned_tif).expect("tif")
        ) > 1e-3 * (hi - lo)
    );

    // Register through the model (p1's pair, with `extra` options) into `json`.
    let (fixed, moving) = (d.join("A/p1.png"), d.join("B/p1.png"));
    let register = |json: &Path, extra: &[&str]| {
        let mut args = vec![
            "register",
            "--fixed",
            s(&fixed),
            "--moving",
            s(&moving),
            "--method",
            "aamd",
            "--out",
            s(json),
        ];
        args.extend_from_slice(extra);
        comir(&args)
    };
    let read = |json: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(json).expect("json")).expect("parse")
    };
    let json = d.join("t.json");
    let out = ok(&register(&json, &["--model", s(&model)]));
    assert!(out.starts_with("comir+aamd"), "{out}");
    let record = read(&json);
    assert_eq!(record["method"], "comir+aamd");
    // The same through rotation-averaged representations: other representations, so another
    // optimum of the metric (the flag reaches the representer).
    let json_avg = d.join("t-avg.json");
    ok(&register(
        &json_avg,
        &["--model", s(&model), "--rotation-average"],
    ));
    assert_ne!(read(&json_avg)["metric_value"], record["metric_value"]);
    // Without a model there is nothing to average.
    let no_model = register(&json_avg, &["--rotation-average"]);
    assert_eq!(no_model.status.code(), Some(2));
    assert!(
        text(&no_model).1.contains("--model"),
        "{}",
        text(&no_model).1
    );

    // Evaluate: only the held-out pairs, representation and raw methods side by side.
    let csv = d.join("eval.csv");
    let out = ok(&comir(&[
        "eval",
        "--pairs",
        s(d),
        "--model",
        s(&model),
        "--method",
        "aamd",
        "--raw-method",
        "mi",
        "--levels",
        "1",
        "--out",
        s(&csv),
    ]));
    assert!(out.contains("skipping 6 of 8 pairs"), "{out}");
    let rows = std::fs::read_to_string(&csv).expect("csv");
    let data: Vec<&str> = rows.lines().skip(1).collect();
    assert_eq!(data.len(), 4, "2 test pairs × 1 level × 2 methods:\n{rows}");
    assert_eq!(
        data.iter().filter(|l| l.contains(",comir+aamd,")).count(),
        2
    );
    assert_eq!(data.iter().filter(|l| l.contains(",mi,")).count(), 2);
    // The validation pairs instead: exactly those on the model card, none of the test pairs.
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("model.json")).expect("card"))
            .expect("json");
    let validation: std::collections::BTreeSet<String> = card["training"]["split"]["validation"]
        .as_array()
        .expect("validation names")
        .iter()
        .map(|v| {
            v.as_str()
                .expect("name")
                .trim_end_matches(".png")
                .to_string()
        })
        .collect();
    assert!(!validation.is_empty());
    let val_csv = d.join("eval-validation.csv");
    ok(&comir(&[
        "eval",
        "--pairs",
        s(d),
        "--model",
        s(&model),
        "--split",
        "validation",
        "--method",
        "aamd",
        "--levels",
        "1",
        "--out",
        s(&val_csv),
    ]));
    let pair_names = |csv: &Path| -> std::collections::BTreeSet<String> {
        std::fs::read_to_string(csv)
            .expect("csv")
            .lines()
            .skip(1)
            .map(|l| {
                l.split(',')
                    .next()
                    .expect("pair")
                    .trim_end_matches(".png")
                    .to_string()
            })
            .collect()
    };
    assert_eq!(pair_names(&val_csv), validation);
    assert!(pair_names(&csv).is_disjoint(&validation));
    // Without a model there is no split to choose.
    let no_model = comir(&[
        "eval",
        "--pairs",
        s(d),
        "--split",
        "validation",
        "--method",
        "mi",
        "--out",
        s(&val_csv),
    ]);
    assert_eq!(no_model.status.code(), Some(2));

    // A GPU device in a CPU-only build.
    if !cfg!(feature = "wgpu") {
        clean_error(
            &represent(
                &model,
                "a",
                &d.join("A/p0.png"),
                &tif,
                &["--device", "wgpu"],
            ),
            "--features wgpu",
        );
    }

    // Bad model folders.
    clean_error(
        &represent(&d.join("nope"), "a", &d.join("A/p0.png"), &tif, &[]),
        "no such model folder",
    );
    std::fs::write(model.join("weights.bpk"), b"garbage").expect("write");
    clean_error(
        &represent(&model, "a", &d.join("A/p0.png"), &tif, &[]),
        "weights.bpk",
    );
}
