//! A training run whose loss becomes NaN or infinite stops with one line and exit status 2, and
//! keeps its last good checkpoint: `--resume` finds it and the model folder still loads.

mod common;

use common::{comir, s};

/// A tiny network with an absurd learning rate: the first update throws the weights to ~1e30,
/// and the next loss overflows.
const DIVERGING: &str = concat!(
    tiny_network!(),
    r#"
[train]
optimizer = { kind = "sgd", lr = 1e30, momentum = 0.0, weight_decay = 0.0 }

[patches]
size = 16

[schedule]
batch = 2
checkpoint_every = 1
validate_every = 0
"#
);

#[test]
fn a_diverging_run_stops_with_one_line_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    comir_testkit::write_phantom_pairs(d, 0..3, 40);
    let cfg = d.join("diverge.toml");
    std::fs::write(&cfg, DIVERGING).expect("write");
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
            "--steps",
            "20",
        ];
        args.extend_from_slice(extra);
        comir(&args)
    };
    let o = train(&["--config", s(&cfg)]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    eprintln!("{err}");
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // Progress lines (one per checkpoint, no terminal here) come first; the error is the last
    // line, and the only one that starts with "error:".
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert_eq!(err.trim_end().lines().last(), Some(errors[0]), "{err}");
    assert!(errors[0].contains("training diverged at step"), "{err}");
    assert!(
        errors[0].contains("NaN") || errors[0].contains("inf"),
        "{err}"
    );
    // The steps before the divergence were checkpointed ...
    let history = std::fs::read_to_string(model.join("history.csv")).expect("history");
    let good_steps = history.lines().count() - 1;
    assert!(
        (1..20).contains(&good_steps),
        "{good_steps} good steps:\n{history}"
    );
    assert!(model.join("checkpoint.bin").is_file());
    // ... the model folder loads (represent runs) ...
    let rep = comir(&[
        "represent",
        "--model",
        s(&model),
        "--modality",
        "a",
        "--input",
        s(&d.join("A/p0.png")),
        "--out",
        s(&d.join("rep.tif")),
    ]);
    assert!(
        rep.status.success(),
        "{}",
        String::from_utf8_lossy(&rep.stderr)
    );
    // ... and --resume finds the checkpoint: it continues from it (and diverges at the same step
    // again, with the same message).
    let again = train(&["--resume"]);
    let err2 = String::from_utf8_lossy(&again.stderr).into_owned();
    assert_eq!(again.status.code(), Some(2), "{err2}");
    let last2 = err2.trim_end().lines().last().unwrap_or_default();
    assert_eq!(last2, errors[0], "{err2}");
    let history2 = std::fs::read_to_string(model.join("history.csv")).expect("history");
    assert_eq!(
        history2, history,
        "a diverged step must not reach the history"
    );
}
