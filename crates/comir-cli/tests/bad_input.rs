//! Bad input to every subcommand: one line on stderr that names the file or the problem, exit
//! status 2, never a panic. One test per subcommand; each case is a row of the README's
//! `## Errors` table.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use comir_image::Image;
use comir_testkit::bad_files;
use common::s;

fn comir(args: &[&str]) -> Output {
    comir_in(args, None)
}

fn comir_in(args: &[&str], cwd: Option<&Path>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_comir"));
    c.args(args);
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    c.output().expect("the binary runs")
}

/// Asserts a clean failure: exit status 2, exactly one line on stderr, containing every needle,
/// and no panic.
#[track_caller]
fn clean_error(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    // `--nocapture` lists every message (the README's table quotes them).
    eprintln!("{}", err.trim_end());
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "more than one line: {err}"
    );
    assert!(err.starts_with("error: "), "{err}");
    let parts: Vec<&str> = err.trim_end().split(": ").collect();
    assert!(
        parts.windows(2).all(|w| w[0] != w[1]),
        "a cause is repeated: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "expected '{n}' in: {err}");
    }
}

/// Asserts success (for inputs that are accepted on purpose, e.g. a constant image to represent).
#[track_caller]
fn ok(o: &Output) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Asserts how a bad flag value is refused: exit status 2, one line naming the value, no panic
/// (clap's message is joined into one line by `main`).
#[track_caller]
fn flag_error(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
}

/// Every kind of bad image file, written once into a folder.
struct BadFiles {
    dir: tempfile::TempDir,
}

impl BadFiles {
    fn new() -> BadFiles {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let (a, _) = comir_testkit::phantom_pair(48, 48, 1);
        comir_image::save_png(d.join("good.png"), &a).expect("save");
        comir_image::save_tiff_f32(d.join("good.tif"), &a).expect("save");
        let png = std::fs::read(d.join("good.png")).expect("read");
        std::fs::write(d.join("truncated.png"), &png[..png.len() / 2]).expect("write");
        let tif = std::fs::read(d.join("good.tif")).expect("read");
        std::fs::write(d.join("truncated.tif"), &tif[..tif.len() / 2]).expect("write");
        std::fs::write(d.join("u32.tif"), bad_files::tiff_u32()).expect("write");
        std::fs::write(d.join("bilevel.tif"), bad_files::tiff_1bit()).expect("write");
        std::fs::write(
            d.join("empty.tif"),
            bad_files::tiff_with(0, 0, 8, 1, 1, &[]),
        )
        .expect("write");
        std::fs::write(d.join("empty.png"), bad_files::png_claiming(0, 0)).expect("write");
        comir_image::save_png(d.join("tiny.png"), &Image::from_fn(1, 1, |_, _| 0.5)).expect("save");
        comir_image::save_png(d.join("flat.png"), &Image::from_fn(48, 48, |_, _| 0.5))
            .expect("save");
        for (name, v) in [("nan.tif", f32::NAN), ("inf.tif", f32::INFINITY)] {
            let mut img = a.clone();
            img.data_mut()[100] = v;
            comir_image::save_tiff_f32(d.join(name), &img).expect("save");
        }
        std::fs::write(
            d.join("huge.png"),
            bad_files::png_claiming(100_000, 100_000),
        )
        .expect("write");
        std::fs::write(
            d.join("huge.tif"),
            bad_files::tiff_claiming(100_000, 100_000),
        )
        .expect("write");
        std::fs::create_dir(d.join("a-folder.png")).expect("mkdir");
        BadFiles { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `(file, what the error must say)` for every bad image file.
    fn cases(&self) -> Vec<(PathBuf, Vec<&'static str>)> {
        [
            (
                "missing.png",
                vec!["missing.png", "No such file or directory"],
            ),
            ("a-folder.png", vec!["a-folder.png", "Is a directory"]),
            (
                "truncated.png",
                vec!["truncated.png", "cannot decode image"],
            ),
            (
                "truncated.tif",
                vec!["truncated.tif", "cannot decode image"],
            ),
            (
                "u32.tif",
                vec![
                    "u32.tif",
                    "unsupported TIFF bit depth: 32-bit unsigned integer",
                ],
            ),
            (
                "bilevel.tif",
                vec!["bilevel.tif", "unsupported TIFF bit depth: 1 bits"],
            ),
            ("empty.tif", vec!["empty.tif"]),
            ("empty.png", vec!["empty.png"]),
            ("nan.tif", vec!["nan.tif", "NaN or infinite"]),
            ("inf.tif", vec!["inf.tif", "NaN or infinite"]),
            (
                "huge.png",
                vec!["huge.png", "100000×100000 pixels", "COMIR_MAX_IMAGE_MIB"],
            ),
            (
                "huge.tif",
                vec!["huge.tif", "100000×100000 pixels", "COMIR_MAX_IMAGE_MIB"],
            ),
        ]
        .into_iter()
        .map(|(n, needles)| (self.path(n), needles))
        .collect()
    }
}

/// A pairs folder `DIR/A`, `DIR/B` with `n` good 48×48 phantom pairs named `p0.png`, ...
fn pairs_folder(root: &Path, name: &str, n: u64) -> PathBuf {
    let d = root.join(name);
    comir_testkit::write_phantom_pairs(&d, 0..n, 48);
    d
}

/// The same pairs folder with `A/<name>` and `B/<name>` replaced by copies of `file`.
fn pairs_with(root: &Path, folder: &str, name: &str, file: &Path) -> PathBuf {
    let d = pairs_folder(root, folder, 2);
    for sub in ["A", "B"] {
        let target = d.join(sub).join(name);
        if file.is_file() {
            std::fs::copy(file, &target).expect("copy");
        } else if file.is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
        }
    }
    d
}

const TINY: &str = concat!(
    tiny_network!(),
    r#"
[patches]
size = 16

[schedule]
batch = 2
checkpoint_every = 1
validate_every = 0
"#
);

/// Trains a tiny model (2 steps) into `root/model` and returns its folder.
fn tiny_model(root: &Path) -> PathBuf {
    let data = pairs_folder(root, "train-data", 3);
    let cfg = root.join("tiny.toml");
    std::fs::write(&cfg, TINY).expect("write");
    let model = root.join("model");
    ok(&comir(&[
        "train",
        "--a",
        s(&data.join("A")),
        "--b",
        s(&data.join("B")),
        "--out",
        s(&model),
        "--config",
        s(&cfg),
        "--steps",
        "2",
    ]));
    model
}

/// A copy of a model folder with `model.json` claiming another format version.
fn model_of_another_version(root: &Path, model: &Path) -> PathBuf {
    let other = root.join("model-v99");
    std::fs::create_dir_all(&other).expect("mkdir");
    for f in ["model.json", "weights.bpk"] {
        std::fs::copy(model.join(f), other.join(f)).expect("copy");
    }
    let card = std::fs::read_to_string(other.join("model.json")).expect("read");
    let card = card.replace("\"format_version\": 1", "\"format_version\": 99");
    std::fs::write(other.join("model.json"), card).expect("write");
    other
}

/// A copy of a model folder with its weights cut in half.
fn model_with_torn_weights(root: &Path, model: &Path) -> PathBuf {
    let other = root.join("model-torn");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::copy(model.join("model.json"), other.join("model.json")).expect("copy");
    let w = std::fs::read(model.join("weights.bpk")).expect("read");
    std::fs::write(other.join("weights.bpk"), &w[..w.len() / 2]).expect("write");
    other
}

#[test]
fn register_refuses_bad_input_cleanly() {
    let bad = BadFiles::new();
    let good = bad.path("good.png");
    let out = bad.path("t.json");
    let register = |fixed: &Path, moving: &Path, extra: &[&str]| {
        let mut args = vec![
            "register",
            "--fixed",
            s(fixed),
            "--moving",
            s(moving),
            "--method",
            "mi",
            "--out",
            s(&out),
        ];
        args.extend_from_slice(extra);
        comir(&args)
    };
    for (file, needles) in bad.cases() {
        clean_error(&register(&good, &file, &[]), &needles);
        clean_error(&register(&file, &good, &[]), &needles);
    }
    // Images that decode but cannot be registered.
    clean_error(
        &register(&good, &bad.path("tiny.png"), &[]),
        &["tiny.png", "moving image is 1×1", "16×16"],
    );
    clean_error(
        &register(&bad.path("flat.png"), &good, &[]),
        &["flat.png", "fixed image is constant"],
    );
    // Fixed and moving may differ in size: that is not an error.
    let (small, _) = comir_testkit::phantom_pair(40, 36, 1);
    comir_image::save_png(bad.path("small.png"), &small).expect("save");
    ok(&register(&good, &bad.path("small.png"), &[]));
    // Bad method settings and unknown sections.
    let cfg = bad.path("methods.toml");
    std::fs::write(&cfg, "[mi]\nbins = 0\n").expect("write");
    clean_error(&register(&good, &good, &["--config", s(&cfg)]), &["bins"]);
    std::fs::write(&cfg, "[sift]\nratio = 0.7\n").expect("write");
    clean_error(
        &register(&good, &good, &["--config", s(&cfg)]),
        &["methods.toml", "unknown field `sift`", "(line 1)"],
    );
    clean_error(
        &register(&good, &good, &["--config", s(&bad.path("nope.toml"))]),
        &["nope.toml", "No such file"],
    );
    // An output folder that does not exist.
    let o = comir(&[
        "register",
        "--fixed",
        s(&good),
        "--moving",
        s(&good),
        "--method",
        "mi",
        "--out",
        s(&bad.path("no/such/dir/t.json")),
    ]);
    clean_error(
        &o,
        &[
            "t.json",
            "cannot create a file in",
            "No such file or directory",
        ],
    );
    // An unknown method on the command line: clap's usage error.
    let o = comir(&[
        "register",
        "--fixed",
        s(&good),
        "--moving",
        s(&good),
        "--method",
        "sift",
        "--out",
        s(&out),
    ]);
    flag_error(&o, "invalid value 'sift'");
}

#[test]
fn register_and_eval_refuse_bad_models_cleanly() {
    let bad = BadFiles::new();
    let root = bad.dir.path();
    let model = tiny_model(root);
    let other = model_of_another_version(root, &model);
    let torn = model_with_torn_weights(root, &model);
    let good = bad.path("good.png");
    let pairs = pairs_folder(root, "eval-pairs", 1);
    for (dir, needles) in [
        (
            &other,
            vec!["model.json", "model format version 99 is not supported"],
        ),
        (&torn, vec!["weights.bpk"]),
        (
            &root.join("no-model"),
            vec!["no-model", "no such model folder"],
        ),
    ] {
        let o = comir(&[
            "register",
            "--fixed",
            s(&good),
            "--moving",
            s(&good),
            "--method",
            "aamd",
            "--model",
            s(dir),
            "--out",
            s(&root.join("t.json")),
        ]);
        clean_error(&o, &needles);
        let o = comir(&[
            "eval",
            "--pairs",
            s(&pairs),
            "--method",
            "aamd",
            "--model",
            s(dir),
            "--out",
            s(&root.join("r.csv")),
        ]);
        clean_error(&o, &needles);
    }
}

/// `comir eval` (or `comir demo`) on a pairs folder, writing into `root`.
fn eval_on(pairs: &Path, root: &Path, extra: &[&str]) -> Output {
    let csv = root.join("r.csv");
    let mut args = vec![
        "eval",
        "--pairs",
        s(pairs),
        "--method",
        "mi",
        "--levels",
        "1",
        "--out",
        s(&csv),
    ];
    args.extend_from_slice(extra);
    comir(&args)
}

fn demo_on(pairs: &Path, root: &Path) -> Output {
    comir(&[
        "demo",
        "--quick",
        "--pairs",
        s(pairs),
        "--out",
        s(&root.join("demo-out")),
    ])
}

/// The pair-folder cases shared by `eval` and `demo`: `(folder, what the error must say)`.
fn bad_pair_folders(bad: &BadFiles) -> Vec<(PathBuf, Vec<String>)> {
    let root = bad.dir.path();
    let mut cases: Vec<(PathBuf, Vec<String>)> = Vec::new();
    cases.push((
        root.join("no-such-folder"),
        vec!["no-such-folder".into(), "A/ and B/".into()],
    ));
    let unmatched = pairs_folder(root, "unmatched", 2);
    std::fs::rename(unmatched.join("B/p1.png"), unmatched.join("B/q1.png")).expect("mv");
    cases.push((
        unmatched,
        vec!["unmatched names: only in A/ [p1.png]; only in B/ [q1.png]".into()],
    ));
    let sizes = pairs_folder(root, "sizes", 2);
    let (small, _) = comir_testkit::phantom_pair(40, 48, 0);
    comir_image::save_png(sizes.join("B/p1.png"), &small).expect("save");
    cases.push((
        sizes,
        vec!["pair 'p1.png'".into(), "A is 48×48 but B is 40×48".into()],
    ));
    for (i, (file, needles)) in bad.cases().into_iter().enumerate() {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_string();
        if name == "missing.png" {
            continue; // a missing file is an unmatched name, covered above
        }
        let ext = if name.ends_with(".tif") { "tif" } else { "png" };
        let d = pairs_with(root, &format!("bad{i}"), &format!("x.{ext}"), &file);
        let mut needles: Vec<String> = needles.iter().map(|n| n.to_string()).collect();
        // The error names the file in the pairs folder.
        needles[0] = format!("x.{ext}");
        if name == "a-folder.png" {
            // A sub-folder named like an image is not an image: it is not listed at all.
            continue;
        }
        cases.push((d, needles));
    }
    cases.push((
        pairs_with(root, "tiny", "x.png", &bad.path("tiny.png")),
        vec!["pair 'x.png'".into(), "1×1".into(), "16×16".into()],
    ));
    cases.push((
        pairs_with(root, "flat", "x.png", &bad.path("flat.png")),
        vec!["pair 'x.png'".into(), "constant".into()],
    ));
    cases
}

#[test]
fn eval_refuses_bad_input_cleanly() {
    let bad = BadFiles::new();
    let root = bad.dir.path();
    for (pairs, needles) in bad_pair_folders(&bad) {
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        clean_error(&eval_on(&pairs, root, &[]), &needles);
    }
    let pairs = pairs_folder(root, "good-pairs", 1);
    // Bad protocol and method settings.
    clean_error(&eval_on(&pairs, root, &["--levels", "0"]), &["level"]);
    clean_error(&eval_on(&pairs, root, &["--limit", "0"]), &["--limit"]);
    let cfg = root.join("methods.toml");
    std::fs::write(&cfg, "[global]\nangles = 0\n").expect("write");
    clean_error(&eval_on(&pairs, root, &["--config", s(&cfg)]), &["angles"]);
    // --resume over a results file that is not one.
    std::fs::write(root.join("r.csv"), "pair,level\nx,1\n").expect("write");
    clean_error(&eval_on(&pairs, root, &["--resume"]), &["r.csv"]);
    flag_error(
        &comir(&[
            "eval",
            "--pairs",
            s(&pairs),
            "--method",
            "elastix",
            "--out",
            "r.csv",
        ]),
        "invalid value 'elastix'",
    );
}

#[test]
fn demo_refuses_bad_input_cleanly() {
    let bad = BadFiles::new();
    let root = bad.dir.path();
    for (pairs, needles) in bad_pair_folders(&bad).into_iter().take(6) {
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        clean_error(&demo_on(&pairs, root), &needles);
    }
    // An output folder that cannot be created (a file is in the way).
    let pairs = pairs_folder(root, "good-pairs", 1);
    std::fs::write(root.join("blocker"), b"").expect("write");
    let o = comir(&[
        "demo",
        "--quick",
        "--pairs",
        s(&pairs),
        "--out",
        s(&root.join("blocker")),
    ]);
    clean_error(&o, &["blocker", "cannot create folder"]);
}

/// `comir train` from `pairs/A`, `pairs/B` into `root/out-<tag>`, with `extra` flags.
fn train_on(pairs: &Path, root: &Path, tag: &str, extra: &[&str]) -> Output {
    let out = root.join(format!("out-{tag}"));
    let (a, b) = (pairs.join("A"), pairs.join("B"));
    let mut args = vec![
        "train",
        "--a",
        s(&a),
        "--b",
        s(&b),
        "--out",
        s(&out),
        "--steps",
        "1",
    ];
    args.extend_from_slice(extra);
    comir(&args)
}

#[test]
fn train_refuses_bad_input_cleanly() {
    let bad = BadFiles::new();
    let root = bad.dir.path();
    let cfg = root.join("tiny.toml");
    // Every pair is trained on (pairs held out for validation or testing are not read).
    std::fs::write(
        &cfg,
        format!("{TINY}\n[split]\nvalidation_fraction = 0.0\n"),
    )
    .expect("write");
    let tiny = ["--config", s(&cfg)];
    for (i, (pairs, needles)) in bad_pair_folders(&bad).into_iter().enumerate() {
        let mut needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        if i == 0 {
            needles = vec!["no-such-folder", "not a folder"];
        }
        if needles.contains(&"16×16") {
            // Training pads small images; a 1×1 image is refused for being constant.
            needles = vec!["pair 'x.png'", "constant"];
        }
        clean_error(&train_on(&pairs, root, &format!("c{i}"), &tiny), &needles);
    }
    let pairs = pairs_folder(root, "good-pairs", 3);
    // Invalid values, on the command line and in the config file.
    clean_error(
        &train_on(&pairs, root, "tau", &["--tau=-0.5"]),
        &["tau must be a positive number, got -0.5"],
    );
    clean_error(
        &train_on(&pairs, root, "batch", &["--batch", "0"]),
        &["schedule.batch must be at least 2"],
    );
    for (toml, needles) in [
        ("[train]\ntau = -1.0\n", vec!["tau"]),
        ("[schedule]\nbatch = 0\n", vec!["batch"]),
        (
            "[train]\ncritic = \"psnr\"\n",
            vec!["bad.toml", "unknown variant `psnr`"],
        ),
        (
            "[train]\nlearning_rate = 0.1\n",
            vec!["bad.toml", "unknown field `learning_rate`"],
        ),
        ("[patches]\nsize = 100\n", vec!["multiple of 8"]),
    ] {
        std::fs::write(root.join("bad.toml"), toml).expect("write");
        clean_error(
            &train_on(
                &pairs,
                root,
                "cfg",
                &["--config", s(&root.join("bad.toml"))],
            ),
            &needles,
        );
    }
    clean_error(
        &train_on(
            &pairs,
            root,
            "cfg",
            &["--config", s(&root.join("nope.toml"))],
        ),
        &["nope.toml"],
    );
    // A TOML syntax error: refused on one line naming the file and the line.
    std::fs::write(root.join("bad.toml"), "[schedule\nbatch = 2\n").expect("write");
    flag_error(
        &train_on(
            &pairs,
            root,
            "cfg",
            &["--config", s(&root.join("bad.toml"))],
        ),
        "bad.toml: line 1: invalid table header",
    );
    flag_error(
        &train_on(&pairs, root, "critic", &["--critic", "psnr"]),
        "invalid value 'psnr'",
    );
    flag_error(&train_on(&pairs, root, "batch", &["--batch=-1"]), "'-1'");

    // Resuming: nothing to resume, a corrupt checkpoint, a checkpoint of another version.
    clean_error(
        &train_on(&pairs, root, "fresh", &["--resume"]),
        &["out-fresh", "no checkpoint to resume from"],
    );
    ok(&train_on(&pairs, root, "run", &tiny));
    let run = root.join("out-run");
    let ckpt = std::fs::read(run.join("checkpoint.bin")).expect("checkpoint");
    std::fs::write(run.join("checkpoint.bin"), &ckpt[..ckpt.len() / 2]).expect("write");
    clean_error(
        &train_on(&pairs, root, "run", &["--resume"]),
        &["checkpoint.bin", "truncated checkpoint"],
    );
    let mut other = ckpt.clone();
    other[8..12].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(run.join("checkpoint.bin"), &other).expect("write");
    clean_error(
        &train_on(&pairs, root, "run", &["--resume"]),
        &["checkpoint.bin", "checkpoint version 99 is not supported"],
    );
    std::fs::write(run.join("checkpoint.bin"), b"garbage").expect("write");
    clean_error(
        &train_on(&pairs, root, "run", &["--resume"]),
        &["checkpoint.bin", "not a comir checkpoint"],
    );
}

#[test]
fn represent_refuses_bad_input_cleanly() {
    let bad = BadFiles::new();
    let root = bad.dir.path();
    let model = tiny_model(root);
    let out = root.join("rep.tif");
    let represent = |model: &Path, input: &Path, out: &Path, extra: &[&str]| {
        let mut args = vec![
            "represent",
            "--model",
            s(model),
            "--modality",
            "a",
            "--input",
            s(input),
            "--out",
            s(out),
        ];
        args.extend_from_slice(extra);
        comir(&args)
    };
    for (file, needles) in bad.cases() {
        clean_error(&represent(&model, &file, &out, &[]), &needles);
    }
    // A 1×1 and a constant image have a representation: accepted on purpose.
    ok(&represent(&model, &bad.path("tiny.png"), &out, &[]));
    let rep = comir_image::load(&out).expect("representation");
    assert_eq!((rep.width(), rep.height()), (1, 1));
    ok(&represent(&model, &bad.path("flat.png"), &out, &[]));
    // A tile limit smaller than the network's context is raised to the smallest that works.
    ok(&represent(
        &model,
        &bad.path("good.png"),
        &out,
        &["--max-tile", "0"],
    ));
    // Bad model folders.
    let good = bad.path("good.png");
    clean_error(
        &represent(&root.join("no-model"), &good, &out, &[]),
        &["no-model", "no such model folder", "mni152-t1t2"],
    );
    clean_error(
        &represent(&model_of_another_version(root, &model), &good, &out, &[]),
        &["model.json", "model format version 99 is not supported"],
    );
    clean_error(
        &represent(&model_with_torn_weights(root, &model), &good, &out, &[]),
        &["weights.bpk"],
    );
    // Bad outputs.
    clean_error(
        &represent(&model, &good, &root.join("rep.bmp"), &[]),
        &["rep.bmp", ".tif, .tiff or .png"],
    );
    clean_error(
        &represent(&model, &good, &root.join("no/such/dir/rep.tif"), &[]),
        &["rep.tif", "No such file or directory"],
    );
    flag_error(
        &comir(&[
            "represent",
            "--model",
            s(&model),
            "--modality",
            "c",
            "--input",
            s(&good),
            "--out",
            s(&out),
        ]),
        "'c'",
    );
}
