//! The models that ship inside comir: listed by `comir models`, usable by name wherever a model
//! folder is asked for, and good on the pairs they were not trained on.

mod common;

use common::{clean_error, comir, ok, register_pair, s};

const NAME: &str = "mni152-t1t2";

#[test]
fn comir_models_lists_the_bundled_model() {
    let out = ok(&comir(&["models"]));
    assert!(out.lines().any(|l| l.starts_with(NAME)), "{out}");
}

#[test]
fn a_bundled_model_registers_a_held_out_pair_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let card: serde_json::Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/mni152-t1t2/model.json"
        ))
        .expect("model card"),
    )
    .expect("json");
    // The demo slices are MNI152 slices too: take one the model was not trained or validated on.
    let test_pairs: Vec<&str> = card["training"]["split"]["test"]
        .as_array()
        .expect("test split")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/demo");
    let name = std::fs::read_dir(format!("{demo}/A"))
        .expect("demo")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|n| test_pairs.contains(&n.as_str()))
        .expect("a demo slice held out from the bundled model");
    let out = dir.path().join("t.json");
    let o = register_pair(
        &format!("{demo}/A/{name}"),
        &format!("{demo}/B/{name}"),
        &out,
        &["--method", "aamd", "--model", NAME],
    );
    ok(&o);
    let rec = comir_transform::read_json(&out).expect("transform");
    assert_eq!(rec.method, "comir+aamd");
    // The pair is aligned: the transform found is the identity within a pixel at the corners.
    let t = rec.transform();
    let err = comir_transform::corners(182.0, 218.0)
        .iter()
        .map(|&p| {
            let q = t.apply(p);
            (q[0] - p[0]).hypot(q[1] - p[1])
        })
        .sum::<f64>()
        / 4.0;
    assert!(err < 1.0, "{name}: {err} px");
    // A representation by name too.
    let rep = dir.path().join("rep.tif");
    ok(&comir(&[
        "represent",
        "--model",
        NAME,
        "--modality",
        "b",
        "--input",
        &format!("{demo}/B/{name}"),
        "--out",
        s(&rep),
    ]));
    assert!(rep.is_file());
}

#[test]
fn an_unknown_model_name_is_one_line_listing_the_bundled_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/demo");
    let o = register_pair(
        &format!("{demo}/A/axial_080.png"),
        &format!("{demo}/B/axial_080.png"),
        &dir.path().join("t.json"),
        &["--method", "aamd", "--model", "mni-t1t2"],
    );
    clean_error(&o, &["mni-t1t2: no such model folder", NAME]);
}
