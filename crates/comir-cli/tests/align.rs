//! `comir align` end to end on generated collections of unaligned multimodal pairs with known
//! affine displacements: recovery, rounds, resume after a kill, sizes and RGB, bad input.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use comir_image::ops::{warp, Border};
use comir_image::Image;
use comir_transform::{dense_error, read_json, Affine2, Transform2, TransformRecord};
use common::{clean_error, comir, ok, s};

const SIDE: usize = 96;

/// The true fixed-to-moving transform of pair `k`: a few degrees, a few pixels, a few percent of
/// scale and shear, different for every pair.
fn truth(k: usize) -> Transform2 {
    let f = k as f64;
    let (angle, scale) = ((3.0 - 1.5 * f).to_radians(), 1.0 + 0.025 * (f - 2.0));
    let (c, si) = (angle.cos() * scale, angle.sin() * scale);
    Affine2 {
        matrix: [[c, -si + 0.02], [si, c * 0.97]],
        translation: [3.0 - f, 2.0 * f - 4.0],
        center: [(SIDE as f64 - 1.0) / 2.0; 2],
    }
    .into()
}

/// B of pair `k` moved by `truth(k)` onto a `w × h` canvas (0 outside).
fn displaced(b: &Image, t: &Transform2, w: usize, h: usize) -> Image {
    let inv = t.inverse().expect("invertible");
    warp(b, w, h, Border::Zero, |q| inv.apply(q))
}

/// `n` pairs in `root/A`, `root/B`: phantoms of two modalities, B displaced. Pair 1's B is RGB
/// and 112 × 104 pixels; the others are gray and `SIDE` square.
fn collection(root: &Path, n: usize) -> Vec<(String, Transform2)> {
    collection_of(root, &(0..n).map(truth).collect::<Vec<_>>())
}

/// A collection whose pair `k` is displaced by `truths[k]` (pair 1 RGB, as in [`collection`]).
fn collection_of(root: &Path, truths: &[Transform2]) -> Vec<(String, Transform2)> {
    for d in ["A", "B"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    truths
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let (a, b) = comir_testkit::phantom_pair(SIDE, SIDE, 20 + k as u64);
            let t = *t;
            let name = format!("pair{k}.png");
            comir_image::save_png(root.join("A").join(&name), &a).expect("save");
            let moving = if k == 1 {
                let g = displaced(&b, &t, 112, 104);
                let rgb: Vec<f32> = g
                    .data()
                    .iter()
                    .flat_map(|&v| [v, 0.8 * v + 0.1, 1.0 - 0.5 * v])
                    .collect();
                Image::from_vec(112, 104, 3, rgb).expect("rgb")
            } else {
                displaced(&b, &t, SIDE, SIDE)
            };
            comir_image::save_png(root.join("B").join(&name), &moving).expect("save");
            (name, t)
        })
        .collect()
}

fn align_args<'a>(pairs: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "align",
        "--pairs",
        s(pairs),
        "--out",
        s(out),
        "--steps",
        "24",
    ];
    args.extend_from_slice(extra);
    args
}

/// Each pair's transform record in `out`.
fn records(out: &Path, names: &[(String, Transform2)]) -> Vec<TransformRecord> {
    names
        .iter()
        .map(|(n, _)| {
            let stem = n.trim_end_matches(".png");
            read_json(out.join("transforms").join(format!("{stem}.json"))).expect("transform json")
        })
        .collect()
}

fn transforms(out: &Path, names: &[(String, Transform2)]) -> Vec<Transform2> {
    records(out, names).iter().map(|r| r.transform()).collect()
}

/// Asserts that every pair's transform in `out` is within 2 % of the width of its truth.
fn assert_recovered(out: &Path, truths: &[(String, Transform2)]) {
    for ((name, t), found) in truths.iter().zip(transforms(out, truths)) {
        let e = dense_error(&found, t, SIDE as f64, SIDE as f64);
        assert!(e <= 0.02 * SIDE as f64, "{name}: {e:.2} px");
    }
}

/// The `kind` of each pair's transform in `out`.
fn kinds(out: &Path, truths: &[(String, Transform2)]) -> Vec<String> {
    records(out, truths).into_iter().map(|r| r.kind).collect()
}

/// `results.csv`'s rows as (pair, round, pipeline, confidence, flag).
fn results(out: &Path) -> Vec<(String, usize, String, f64, String)> {
    let mut r = csv::Reader::from_path(out.join("results.csv")).expect("results.csv");
    r.records()
        .map(|row| {
            let row = row.expect("row");
            (
                row[0].to_string(),
                row[1].parse().expect("round"),
                row[2].to_string(),
                row[3].parse().expect("confidence"),
                row[4].to_string(),
            )
        })
        .collect()
}

#[test]
fn align_recovers_known_affine_displacements_and_keeps_the_most_confident_results() {
    let dir = tempfile::tempdir().expect("tmp");
    let pairs = dir.path().join("pairs");
    let truths = collection(&pairs, 5);
    let out = dir.path().join("out");
    let text = ok(&comir(&align_args(
        &pairs,
        &out,
        &["--rounds", "2", "--warped", "--report"],
    )));
    assert!(text.contains("aligned 5 pairs"), "{text}");

    assert_recovered(&out, &truths);
    // Every pair has a row per round; a pair's confidence never falls from round to round (the
    // fresh last round could lower it by overruling a result it contradicts, but every result
    // here is right, so nothing is contradicted).
    let rows = results(&out);
    let rounds = rows.iter().map(|r| r.1).max().expect("rows");
    assert!(rounds >= 1, "at least one learned round: {rows:?}");
    for (name, _) in &truths {
        let mine: Vec<_> = rows.iter().filter(|r| &r.0 == name).collect();
        assert_eq!(mine.len(), rounds + 1, "{name}");
        for w in mine.windows(2) {
            assert!(w[1].3 >= w[0].3, "{name}: {:?}", w);
        }
    }
    assert!(rows.iter().all(|r| r.4 == "ok" || r.4 == "doubtful"));
    // The learned model, the .tfm files and the warped images are there; the RGB pair's warp
    // has the fixed image's size.
    assert!(out.join("model").join("weights.bpk").is_file());
    // The last round's fresh model replaced the fine-tuned one.
    assert!(!out.join("model.fresh").exists());
    assert!(out.join("transforms").join("pair1.tfm").is_file());
    let warped = comir_image::load(out.join("warped").join("pair1.png")).expect("warped");
    assert_eq!((warped.width(), warped.height()), (SIDE, SIDE));

    // The report names every pair and shows two overlays each.
    let page = std::fs::read_to_string(out.join("report").join("index.html")).expect("report");
    for (name, _) in &truths {
        assert!(page.contains(name.as_str()), "{name} not in the report");
    }
    let pictures = std::fs::read_dir(out.join("report"))
        .expect("report folder")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "png"))
        })
        .count();
    assert_eq!(pictures, 2 * truths.len());

    // A second run without --resume is refused; with it, a finished run changes nothing.
    clean_error(
        &comir(&align_args(&pairs, &out, &["--rounds", "2"])),
        &["--resume"],
    );
    let before = std::fs::read(out.join("transforms").join("pair0.json")).expect("json");
    ok(&comir(&align_args(
        &pairs,
        &out,
        &["--rounds", "2", "--resume"],
    )));
    let after = std::fs::read(out.join("transforms").join("pair0.json")).expect("json");
    assert_eq!(before, after);
    // Other settings cannot resume it.
    clean_error(
        &comir(&align_args(
            &pairs,
            &out,
            &["--rounds", "2", "--resume", "--seed", "3"],
        )),
        &["other settings"],
    );
}

fn reap(mut child: std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_killed_alignment_resumes_to_the_same_transforms() {
    let dir = tempfile::tempdir().expect("tmp");
    let pairs = dir.path().join("pairs");
    let truths = collection(&pairs, 4);
    let whole = dir.path().join("whole");
    ok(&comir(&align_args(&pairs, &whole, &["--rounds", "2"])));

    // Killed during the first learned round's training (once its first checkpoint exists), and
    // again during the second round's (once the first round is saved), each time resumed.
    let killed = dir.path().join("killed");
    let state = killed.join("align-state.json");
    let checkpoint = killed.join("model").join("checkpoint.bin");
    let round_saved = |round: usize| {
        std::fs::read_to_string(&state).is_ok_and(|t| t.contains(&format!("\"round\": {round}")))
    };
    let markers: [&dyn Fn() -> bool; 2] = [&|| checkpoint.is_file(), &|| round_saved(1)];
    let mut kills = 0;
    for marker in markers {
        let resume = state.is_file();
        let mut args = align_args(&pairs, &killed, &["--rounds", "2"]);
        if resume {
            args.push("--resume");
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_comir"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let start = Instant::now();
        loop {
            if marker() {
                std::thread::sleep(Duration::from_millis(150));
                if child.try_wait().expect("wait").is_none() {
                    kills += 1;
                }
                reap(child);
                break;
            }
            let done = child.try_wait().expect("wait").is_some();
            if done || start.elapsed() > Duration::from_secs(300) {
                reap(child);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(kills >= 1, "the run was never killed mid-way");
    ok(&comir(&align_args(
        &pairs,
        &killed,
        &["--rounds", "2", "--resume"],
    )));
    let (a, b) = (transforms(&whole, &truths), transforms(&killed, &truths));
    for ((name, _), (x, y)) in truths.iter().zip(a.iter().zip(&b)) {
        assert_eq!(x, y, "{name}");
    }
}

#[test]
fn bad_collections_are_refused_in_one_line_and_a_bad_pair_is_skipped() {
    let dir = tempfile::tempdir().expect("tmp");
    let pairs = dir.path().join("pairs");
    collection(&pairs, 3);
    let out = dir.path().join("out");

    // A name only in B.
    std::fs::copy(
        pairs.join("B").join("pair0.png"),
        pairs.join("B").join("extra.png"),
    )
    .expect("copy");
    clean_error(
        &comir(&align_args(&pairs, &out, &[])),
        &["extra.png", "only in B/"],
    );
    std::fs::remove_file(pairs.join("B").join("extra.png")).expect("rm");

    // One pair only.
    let single = dir.path().join("single");
    collection(&single, 1);
    clean_error(
        &comir(&align_args(&single, &out, &[])),
        &["1 pair", "comir register"],
    );

    // No A/ at all.
    clean_error(&comir(&align_args(dir.path(), &out, &[])), &["A/"]);

    // A chain with an unknown stage.
    clean_error(
        &comir(&align_args(&pairs, &out, &["--transform", "rigid,warp"])),
        &["warp"],
    );

    // A constant image: that pair is reported and skipped, the others are aligned.
    let flat = Image::from_fn(SIDE, SIDE, |_, _| 0.5);
    comir_image::save_png(pairs.join("B").join("pair2.png"), &flat).expect("save");
    let o = comir(&align_args(&pairs, &out, &["--rounds", "0"]));
    let text = ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("pair2.png") && err.contains("constant"),
        "{err}"
    );
    assert!(text.contains("aligned 2 pairs"), "{text}");
    assert!(out.join("transforms").join("pair0.json").is_file());
    assert!(!out.join("transforms").join("pair2.json").exists());
}

#[test]
fn a_time_budget_stops_the_training_and_the_rounds() {
    let dir = tempfile::tempdir().expect("tmp");
    let pairs = dir.path().join("pairs");
    collection(&pairs, 3);
    let out = dir.path().join("out");
    // 5000 steps would take many minutes; the budget is 30 seconds, far more than round 0.
    let args = [
        "align",
        "--pairs",
        s(&pairs),
        "--out",
        s(&out),
        "--steps",
        "5000",
        "--minutes",
        "0.5",
    ];
    let text = ok(&comir(&args));
    assert!(text.contains("aligned 3 pairs"), "{text}");
    let history = std::fs::read_to_string(out.join("model").join("history.csv")).expect("history");
    let steps = history.lines().count() - 1;
    assert!((1..5000).contains(&steps), "{steps} steps");
    assert!(
        results(&out).iter().all(|r| r.1 <= 1),
        "one learned round at most"
    );
}

/// `--transform auto` (the default) keeps a rigid result where the displacement is rigid and an
/// affine one where the scale is real, and recovers both; an explicit chain is fitted as given.
#[test]
fn auto_keeps_rigid_results_for_rigid_displacements_and_affine_ones_for_scaled_sections() {
    let dir = tempfile::tempdir().expect("tmp");
    let pairs = dir.path().join("pairs");
    let centre = [(SIDE as f64 - 1.0) / 2.0; 2];
    let rigid = |deg: f64, tx: f64, ty: f64| -> Transform2 {
        let (c, s) = (deg.to_radians().cos(), deg.to_radians().sin());
        Affine2 {
            matrix: [[c, -s], [s, c]],
            translation: [tx, ty],
            center: centre,
        }
        .into()
    };
    let scaled = |scale: f64, tx: f64| -> Transform2 {
        Affine2 {
            matrix: [[scale, 0.01], [0.0, scale * 1.02]],
            translation: [tx, -2.0],
            center: centre,
        }
        .into()
    };
    let truths = collection_of(
        &pairs,
        &[
            rigid(4.0, 3.0, -2.0),
            rigid(-3.0, -2.0, 4.0),
            scaled(0.9, 2.0),
            scaled(1.1, -3.0),
        ],
    );
    let out = dir.path().join("out");
    ok(&comir(&align_args(&pairs, &out, &["--rounds", "0"])));
    assert_recovered(&out, &truths);
    assert_eq!(kinds(&out, &truths), ["rigid", "rigid", "affine", "affine"]);
    // The explicit chain fits every pair affinely.
    let chain = dir.path().join("chain");
    ok(&comir(&align_args(
        &pairs,
        &chain,
        &["--rounds", "0", "--transform", "similarity,affine"],
    )));
    assert_recovered(&chain, &truths);
    assert_eq!(kinds(&chain, &truths), ["affine"; 4]);
}

/// `--raw-method ngf` registers round 0 by MI refined by NGF: every pair is recovered within
/// 2 % of the width and labelled `raw ngf`; a method that estimates no affine map is refused in
/// one line, and a run cannot be resumed with another raw method.
#[test]
fn the_raw_round_can_refine_mi_by_normalised_gradient_fields() {
    let dir = tempfile::tempdir().expect("tmp");
    let pairs = dir.path().join("pairs");
    let names = collection(&pairs, 3);
    let out = dir.path().join("out");
    ok(&comir(&align_args(
        &pairs,
        &out,
        &["--rounds", "0", "--raw-method", "ngf"],
    )));
    assert_recovered(&out, &names);
    let rows = results(&out);
    assert_eq!(rows.len(), names.len());
    assert!(rows.iter().all(|r| r.2.starts_with("raw ngf")), "{rows:?}");
    clean_error(
        &comir(&align_args(
            &pairs,
            &out,
            &["--rounds", "0", "--raw-method", "mi", "--resume"],
        )),
        &["other settings"],
    );
    clean_error(
        &comir(&align_args(
            &pairs,
            &dir.path().join("other"),
            &["--raw-method", "features"],
        )),
        &["mi or ngf", "features"],
    );
}
