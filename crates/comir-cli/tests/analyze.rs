//! `comir train --bottleneck` and `comir analyze` end to end on generated pairs with a tiny
//! network: the analysis files exist, have the right shapes, and the equivariance score at 0°
//! is exactly 1.

mod common;

use common::{comir, ok, s};
use std::path::Path;

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

fn records(path: &Path) -> Vec<csv::StringRecord> {
    csv::Reader::from_path(path)
        .expect("csv")
        .records()
        .collect::<Result<Vec<_>, _>>()
        .expect("rows")
}

#[test]
fn a_model_trained_with_bottleneck_supervision_is_analysed() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    comir_testkit::write_phantom_pairs(d, 0..8, 64);
    let cfg = d.join("tiny.toml");
    std::fs::write(&cfg, TINY).expect("write");
    let model = d.join("model");
    ok(&comir(&[
        "train",
        "--a",
        s(&d.join("A")),
        "--b",
        s(&d.join("B")),
        "--out",
        s(&model),
        "--config",
        s(&cfg),
        "--steps",
        "3",
        "--test-fraction",
        "0.25",
        "--bottleneck",
        "projection",
    ]));
    // The bottleneck loss is logged.
    let history = records(&model.join("history.csv"));
    assert_eq!(history.len(), 3);
    let card = std::fs::read_to_string(model.join("model.json")).expect("card");
    assert!(card.contains("\"projection\""), "{card}");

    let out = d.join("analysis");
    let table = ok(&comir(&[
        "analyze",
        "--model",
        s(&model),
        "--pairs",
        s(d),
        "--out",
        s(&out),
        "--patches",
        "12",
        "--angle-step",
        "90",
    ]));
    assert!(table.contains("bottleneck-pooled"), "{table}");
    for png in [
        "mds-representation.png",
        "mds-bottleneck.png",
        "spectrum-representation.png",
        "spectrum-bottleneck.png",
        "spectrum-bottleneck-pooled.png",
    ] {
        let img = comir_image::load(out.join(png)).expect(png);
        assert_eq!((img.width(), img.height()), (800, 600), "{png}");
    }
    // Dimensions per layer: representation 1·32², bottleneck 4 channels · 8², pooled 4.
    let summary = records(&out.join("spectrum-summary.csv"));
    assert_eq!(summary.len(), 6);
    let dims: Vec<(String, String)> = summary
        .iter()
        .map(|r| (r[0].to_string(), r[4].to_string()))
        .collect();
    for (layer, want) in [
        ("representation", "1024"),
        ("bottleneck", "256"),
        ("bottleneck-pooled", "4"),
    ] {
        assert!(
            dims.iter().any(|(l, d)| l == layer && d == want),
            "{layer}: {dims:?}"
        );
    }
    assert_eq!(records(&out.join("mds.csv")).len(), 2 * 2 * 12);
    assert_eq!(records(&out.join("modality-gap.csv")).len(), 3);
    // Equivariance: 4 angles per modality; at 0° the image is unchanged, so r = 1.
    let eq = records(&out.join("equivariance.csv"));
    assert_eq!(eq.len(), 8);
    for r in eq.iter().filter(|r| &r[1] == "0") {
        let c: f64 = r[2].parse().expect("number");
        assert!((c - 1.0).abs() < 1e-9, "r(0°) = {c}");
    }
}
