//! `comir register --manifest` in shards: N shards and a merge give exactly the transforms and
//! the table of one run; a killed shard resumes; bad manifests and shard specs are one line.

mod common;

use common::{comir, ok, s};
use std::path::Path;
use std::process::Output;

/// Writes 5 phantom pairs and a manifest whose outputs go under `out/`.
fn setup(dir: &Path, out: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("img")).expect("mkdir");
    let mut csv = String::from("fixed,moving,output\n");
    for i in 0..5u64 {
        let (a, b) = comir_testkit::phantom_pair(48, 48, i);
        comir_image::save_png(dir.join(format!("img/a{i}.png")), &a).expect("save");
        comir_image::save_png(dir.join(format!("img/b{i}.png")), &b).expect("save");
        csv.push_str(&format!("img/a{i}.png,img/b{i}.png,{out}/t{i}.json\n"));
    }
    let manifest = dir.join("pairs.csv");
    std::fs::write(&manifest, csv).expect("manifest");
    manifest
}

/// The merged table without the time column.
fn table(path: &Path) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_path(path).expect("csv");
    let headers = r.headers().expect("header").clone();
    let secs = headers
        .iter()
        .position(|h| h == "seconds")
        .expect("seconds");
    r.records()
        .map(|row| {
            row.expect("row")
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != secs)
                .map(|(_, v)| v.to_string())
                .collect()
        })
        .collect()
}

fn transform(path: &Path) -> (f64, [f64; 2]) {
    let r = comir_transform::read_json(path).expect("transform");
    (r.transform().angle_rad(), r.translation)
}

#[test]
fn shards_and_a_merge_equal_one_run() {
    let one = tempfile::tempdir().expect("tmp");
    let m1 = setup(one.path(), "out");
    ok(&comir(&[
        "register",
        "--manifest",
        s(&m1),
        "--method",
        "mi",
    ]));
    ok(&comir(&[
        "register",
        "--manifest",
        s(&m1),
        "--method",
        "mi",
        "--merge",
    ]));

    let many = tempfile::tempdir().expect("tmp");
    let m3 = setup(many.path(), "out");
    for k in 1..=3 {
        let shard = format!("{k}/3");
        let out = ok(&comir(&[
            "register",
            "--manifest",
            s(&m3),
            "--method",
            "mi",
            "--shard",
            &shard,
        ]));
        assert!(out.contains(&format!("shard {k}/3")), "{out}");
    }
    // Shard 1 of 3 holds rows 0 and 3.
    let first = table(&many.path().join("pairs.results.1-of-3.csv"));
    assert_eq!(
        first.iter().map(|r| r[0].clone()).collect::<Vec<_>>(),
        ["0", "3"]
    );
    ok(&comir(&[
        "register",
        "--manifest",
        s(&m3),
        "--method",
        "mi",
        "--merge",
    ]));
    assert_eq!(
        table(&many.path().join("pairs.results.csv")),
        table(&one.path().join("pairs.results.csv"))
    );
    // Every row carries its judgement: a confidence in [0, 1] and a flag.
    let merged = table(&one.path().join("pairs.results.csv"));
    for row in &merged {
        let n = row.len();
        let confidence: f64 = row[n - 2].parse().expect("confidence");
        assert!((0.0..=1.0).contains(&confidence), "{row:?}");
        assert!(["ok", "doubtful"].contains(&row[n - 1].as_str()), "{row:?}");
    }
    let header = std::fs::read_to_string(one.path().join("pairs.results.csv")).expect("csv");
    assert!(
        header.starts_with(
            "index,fixed,moving,output,method,angle_deg,tx,ty,metric_value,seconds,confidence,flag\n"
        ),
        "{header}"
    );
    for i in 0..5 {
        let t = format!("out/t{i}.json");
        assert_eq!(
            transform(&many.path().join(&t)),
            transform(&one.path().join(&t))
        );
    }

    // A killed shard: its finished outputs are kept, the rest is done, nothing twice.
    std::fs::remove_file(many.path().join("out/t3.json")).expect("rm");
    let kept = std::fs::read(many.path().join("out/t0.json")).expect("t0");
    let out = ok(&comir(&[
        "register",
        "--manifest",
        s(&m3),
        "--method",
        "mi",
        "--shard",
        "1/3",
    ]));
    assert!(out.contains("2 pairs registered (1 already done)"), "{out}");
    assert_eq!(
        std::fs::read(many.path().join("out/t0.json")).expect("t0"),
        kept
    );
}

#[test]
fn bad_manifests_shards_and_incomplete_merges_are_one_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = setup(dir.path(), "out");
    let one_line = |o: &Output, needle: &str| {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "expected '{needle}' in {err}");
    };
    one_line(
        &comir(&[
            "register",
            "--manifest",
            s(&m),
            "--method",
            "mi",
            "--shard",
            "4/3",
        ]),
        "--shard must be K/N",
    );
    one_line(
        &comir(&["register", "--manifest", s(&m), "--method", "mi", "--merge"]),
        "have no result",
    );
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "fixed,moving\na.png,b.png\n").expect("write");
    one_line(
        &comir(&["register", "--manifest", s(&bad), "--method", "mi"]),
        "fixed,moving,output",
    );
}
