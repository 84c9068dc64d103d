//! `COMIR_ISA`: every instruction set this CPU runs can be forced, trains and represents like
//! the others (within f32 rounding) and like itself (bit for bit); a bad or unavailable value
//! is refused with one line before anything runs.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use comir_cpu::Isa;
use common::{clean_error, s};

fn comir_with(isa: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_comir"))
        .args(args)
        .env("COMIR_ISA", isa)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .expect("the binary runs")
}

#[test]
fn a_bad_or_unavailable_instruction_set_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("rep.tif");
    let args = [
        "represent",
        "--model",
        "nowhere",
        "--modality",
        "a",
        "--input",
        "none.png",
        "--out",
        s(&out),
    ];
    clean_error(&comir_with("sse9", &args), &["COMIR_ISA", "sse9", "avx512"]);
    for isa in Isa::ALL.into_iter().filter(|i| !i.supported()) {
        clean_error(
            &comir_with(isa.name(), &args),
            &["COMIR_ISA", isa.name(), "does not run"],
        );
    }
    assert!(!out.exists());
}

const TINY: &str = tiny_training!();

/// The loss `comir train` reports for its last step.
fn last_loss(o: &Output) -> f64 {
    let text = common::ok(o);
    let line = text
        .lines()
        .find(|l| l.starts_with("last step: loss "))
        .unwrap_or_else(|| panic!("no last step in: {text}"));
    line["last step: loss ".len()..]
        .split(',')
        .next()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no loss in: {line}"))
}

#[test]
fn every_instruction_set_trains_and_represents_alike() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    comir_testkit::write_phantom_pairs(d, 0..3, 48);
    let cfg = d.join("tiny.toml");
    std::fs::write(&cfg, TINY).expect("write");
    let (big, _) = comir_testkit::phantom_pair(150, 130, 9);
    let input = d.join("big.png");
    comir_image::save_png(&input, &big).expect("save");
    let train = |isa: Isa, out: &Path| {
        let o = comir_with(
            isa.name(),
            &[
                "train",
                "--a",
                s(&d.join("A")),
                "--b",
                s(&d.join("B")),
                "--out",
                s(out),
                "--config",
                s(&cfg),
                "--steps",
                "4",
                "--seed",
                "5",
            ],
        );
        last_loss(&o)
    };
    let represent = |isa: Isa, model: &Path, out: &Path| {
        let o = comir_with(
            isa.name(),
            &[
                "represent",
                "--model",
                s(model),
                "--modality",
                "b",
                "--input",
                s(&input),
                "--out",
                s(out),
                "--max-tile",
                "160",
            ],
        );
        common::ok(&o);
        comir_image::load(out).expect("representation")
    };
    let model = d.join("reference-model");
    let loss_portable = train(Isa::Portable, &model);
    let reference = represent(Isa::Portable, &model, &d.join("portable.tif"));
    for isa in Isa::available() {
        let version = common::ok(&comir_with(isa.name(), &["--version"]));
        assert!(
            version.contains(&format!("kernels: {isa};")),
            "{isa}: {version}"
        );
        // Training: four steps of forward, backward and SGD end at the same loss.
        let loss = train(isa, &d.join(format!("model-{isa}")));
        assert!(
            (loss - loss_portable).abs() <= 1e-4 * loss_portable.abs().max(1.0),
            "{isa}: loss {loss} vs portable {loss_portable}"
        );
        // Inference of one model: the same representation within rounding ...
        let first = d.join(format!("{isa}.tif"));
        let got = represent(isa, &model, &first);
        let scale = reference.data().iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        let err = got
            .data()
            .iter()
            .zip(reference.data())
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert_eq!(got.data().len(), reference.data().len());
        assert!(
            err <= 1e-5 * scale,
            "{isa}: representation differs by {err}"
        );
        // ... and the same bytes on a second run of the same path.
        let second = d.join(format!("{isa}-again.tif"));
        represent(isa, &model, &second);
        assert_eq!(
            std::fs::read(&first).expect("read"),
            std::fs::read(&second).expect("read"),
            "{isa}: a second run differs"
        );
    }
}
