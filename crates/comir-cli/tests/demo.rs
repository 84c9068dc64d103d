//! `comir demo` on the bundled pairs: it learns a (tiny, in `--quick`) CoMIR, then registers
//! only the held-out pairs through it and with MI on the raw images, on the same cases.

use std::process::Command;

fn demo(args: &[&str]) -> (String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_comir"))
        .arg("demo")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(o.status.success(), "failed: {err}\n{out}");
    (out, err)
}

#[test]
fn the_quick_demo_trains_then_compares_comir_with_mi_on_held_out_pairs() {
    let dir = tempfile::tempdir().expect("tmp");
    let out_dir = dir.path().join("demo");
    let out_str = out_dir.to_str().expect("utf8");
    let (out, _) = demo(&["--quick", "--out", out_str]);
    assert!(out.contains("method: comir+aamd"), "{out}");
    assert!(out.contains("method: mi"), "{out}");
    assert!(out_dir.join("model/model.json").is_file());
    let card: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("model/model.json")).expect("card"),
    )
    .expect("json");
    let test: Vec<String> = card["training"]["split"]["test"]
        .as_array()
        .expect("test split")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    assert!(!test.is_empty());
    let mut rows = csv::Reader::from_path(out_dir.join("results.csv")).expect("csv");
    let rows: Vec<csv::StringRecord> = rows.records().collect::<Result<_, _>>().expect("rows");
    // Held-out pairs × levels 1, 2 × two methods, and only held-out pairs.
    assert_eq!(rows.len(), test.len() * 2 * 2);
    assert!(rows.iter().all(|r| test.iter().any(|t| t == &r[0])));
    // The visual report: every picture the page shows exists and decodes; it has the loss
    // curve and, for the first held-out pair, representations and before/after pictures.
    let report = out_dir.join("report");
    let page = std::fs::read_to_string(report.join("index.html")).expect("report page");
    assert!(out.contains("report:"), "{out}");
    let srcs: Vec<&str> = page
        .split("<img src=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    for s in &srcs {
        comir_image::load(report.join(s)).unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    for want in [
        "loss.png",
        "error-scatter.png",
        "success-vs-displacement.png",
        "rep-fixed.png",
        "checker-before.png",
        "overlay-before.png",
    ] {
        assert!(
            srcs.iter().any(|s| s.ends_with(want)),
            "{want} missing: {srcs:?}"
        );
    }
    assert!(page.contains("<td>comir+aamd</td>") && page.contains("<td>mi</td>"));
    // A second run replaces the demo's model instead of refusing.
    demo(&["--quick", "--out", out_str]);
}

#[test]
fn the_raw_demo_registers_every_bundled_pair_without_learning() {
    let dir = tempfile::tempdir().expect("tmp");
    let out_dir = dir.path().join("raw");
    let (out, _) = demo(&["--raw", "--quick", "--out", out_dir.to_str().expect("utf8")]);
    assert!(
        out.contains("method: mi") && out.contains("method: global"),
        "{out}"
    );
    assert!(!out_dir.join("model").exists());
}

#[test]
fn the_pretrained_demo_registers_the_pairs_the_bundled_model_has_not_seen() {
    let dir = tempfile::tempdir().expect("tmp");
    let out_dir = dir.path().join("pretrained");
    let (out, _) = demo(&["--pretrained", "--out", out_dir.to_str().expect("utf8")]);
    assert!(
        out.contains("method: comir+aamd") && out.contains("method: mi"),
        "{out}"
    );
    // The bundled model saw 8 of the 12 bundled pairs; the other 4 are registered at 4 levels.
    let text = std::fs::read_to_string(out_dir.join("results.csv")).expect("results");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    // Columns: pair, level, method, error_px, width, success, ...
    let through_model: Vec<_> = rows.iter().filter(|r| r[2] == "comir+aamd").collect();
    assert_eq!(through_model.len(), 16, "{rows:?}");
    let successes = through_model.iter().filter(|r| r[5] == "true").count();
    assert!(successes >= 15, "{successes} of 16");
    assert!(!out_dir.join("model").exists());
}
