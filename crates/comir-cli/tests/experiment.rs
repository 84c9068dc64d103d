//! `comir experiment` on a tiny grid of generated pairs: every cell is trained, evaluated and
//! analysed; a second run skips finished cells; an interrupted cell is finished without
//! redoing the others.

mod common;

use common::{comir, ok};
use std::path::Path;

const RECIPE: &str = concat!(
    tiny_network!(),
    r#"
[patches]
size = 32

[schedule]
batch = 4
checkpoint_every = 2
validate_every = 2
validation_batches = 1

[split]
test_fraction = 0.25
"#
);

const GRID: &str = r#"
out = "study"
steps = 3
variants = ["off", "pooled"]
critics = ["mse"]
seeds = [0]
methods = ["aamd"]
levels = [1]
analysis_patches = 6

[[datasets]]
name = "phantoms"
pairs = "data"
config = "recipe.toml"
"#;

fn modified(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .expect("mtime")
}

#[test]
fn the_grid_runs_every_cell_once_and_resumes() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    comir_testkit::write_phantom_pairs(&d.join("data"), 0..8, 64);
    std::fs::write(d.join("recipe.toml"), RECIPE).expect("write");
    let grid = d.join("grid.toml");
    std::fs::write(&grid, GRID).expect("write");
    let grid_s = grid.to_str().expect("utf8");

    let first = ok(&comir(&["experiment", grid_s]));
    assert!(first.contains("cell 2/2"), "{first}");
    let study = d.join("study");
    let results = std::fs::read_to_string(study.join("results.csv")).expect("results");
    assert_eq!(results.lines().count(), 1 + 2, "{results}");
    assert!(
        results.contains("phantoms,off,mse,0,3,comir+aamd"),
        "{results}"
    );
    assert!(
        results.contains("phantoms,pooled,mse,0,3,comir+aamd"),
        "{results}"
    );
    let md = std::fs::read_to_string(study.join("results.md")).expect("md");
    assert!(
        md.contains("| phantoms | pooled | mse | comir+aamd |"),
        "{md}"
    );
    let off = study.join("phantoms/off-mse-seed0");
    let pooled = study.join("phantoms/pooled-mse-seed0");
    for cell in [&off, &pooled] {
        assert!(cell.join("cell.json").is_file());
        assert!(cell.join("analysis/spectrum-bottleneck.png").is_file());
    }

    // Everything finished: nothing is redone; --report draws the page from the finished cells.
    let before = modified(&off.join("model/weights.bpk"));
    let report = d.join("report");
    let second = ok(&comir(&[
        "experiment",
        grid_s,
        "--report",
        report.to_str().expect("utf8"),
    ]));
    let page = std::fs::read_to_string(report.join("index.html")).expect("report");
    assert!(
        page.contains("<td>phantoms</td><td>pooled</td><td>mse</td><td>comir+aamd</td>"),
        "{page}"
    );
    let pictures: Vec<&str> = page
        .split("<img src=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    // 2 cells × (2 MDS + 2 spectra), copied beside the page.
    assert_eq!(pictures.len(), 8, "{pictures:?}");
    assert!(pictures.iter().all(|p| report.join(p).is_file()));
    assert_eq!(second.matches("finished, skipped").count(), 2, "{second}");
    assert_eq!(modified(&off.join("model/weights.bpk")), before);
    assert_eq!(
        std::fs::read_to_string(study.join("results.csv")).expect("results"),
        results
    );

    // --tables-only runs nothing: with one cell's record gone, the tables hold the other one.
    let record = std::fs::read(pooled.join("cell.json")).expect("cell.json");
    std::fs::remove_file(pooled.join("cell.json")).expect("rm");
    let only = ok(&comir(&["experiment", grid_s, "--tables-only"]));
    assert!(only.contains("not finished"), "{only}");
    let partial = std::fs::read_to_string(study.join("results.csv")).expect("results");
    assert_eq!(partial.lines().count(), 1 + 1, "{partial}");
    assert!(!pooled.join("cell.json").exists());
    std::fs::write(pooled.join("cell.json"), record).expect("restore");

    // A cell interrupted after training (no cell.json, half its CSV): only it runs again, its
    // training is already complete, and the totals are the same.
    std::fs::remove_file(pooled.join("cell.json")).expect("rm");
    let csv = std::fs::read_to_string(pooled.join("results.csv")).expect("csv");
    let kept: Vec<&str> = csv.lines().take(2).collect();
    std::fs::write(pooled.join("results.csv"), kept.join("\n") + "\n").expect("cut");
    let third = ok(&comir(&["experiment", grid_s]));
    assert_eq!(third.matches("finished, skipped").count(), 1, "{third}");
    assert_eq!(
        std::fs::read_to_string(study.join("results.csv")).expect("results"),
        results
    );

    // A bad grid is one clear line.
    std::fs::write(&grid, GRID.replace("\"pooled\"", "\"middle\"")).expect("write");
    let bad = comir(&["experiment", grid_s]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("grid.toml") && err.contains("middle"), "{err}");

    // A dataset's own budget and evaluation size override the grid's.
    let small = GRID
        .replace("out = \"study\"", "out = \"study-small\"")
        .replace("[\"off\", \"pooled\"]", "[\"off\"]")
        + "steps = 2\neval_pairs = 1\n";
    std::fs::write(&grid, small).expect("write");
    ok(&comir(&["experiment", grid_s]));
    let results = std::fs::read_to_string(d.join("study-small/results.csv")).expect("results");
    // steps 2 (not the grid's 3), 1 pair × 1 level = 1 case (not 2).
    assert!(
        results.contains("phantoms,off,mse,0,2,comir+aamd,1,"),
        "{results}"
    );
}
