//! Files from someone else that size an allocation — model cards, weights, PyTorch
//! state_dicts, manifests, transform files, experiment grids — made hostile: each is refused on
//! one line that names the file and the problem, with exit status 2, before anything of the
//! claimed size is allocated. The peak memory of every attempt (the child's maximum resident
//! set, from `wait4`) is asserted to stay under 200 MB on Linux; elsewhere it is not measured.
//!
//! `cargo test -p comir-cli --test hostile_files -- --nocapture` prints the table of attempts:
//! file, message, exit status, peak memory.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use comir_model::{DenseUNetConfig, InputTransform, Model, ModelCard, NetworkPair};
use common::s;

/// The most memory an attempt may take.
const PEAK_LIMIT_MB: f64 = 200.0;

/// What one run of `comir` did.
struct Attempt {
    code: Option<i32>,
    stderr: String,
    /// Maximum resident set in MB (`None` where it is not measured).
    peak_mb: Option<f64>,
}

/// Runs `comir` with `args` (and `env`) and measures its peak memory.
fn attempt(args: &[&str], env: &[(&str, &str)], scratch: &Path) -> Attempt {
    let err_path = scratch.join("stderr.txt");
    let err_file = std::fs::File::create(&err_path).expect("stderr file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_comir"));
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err_file);
    let child = cmd.spawn().expect("the binary runs");
    let (code, peak_mb) = wait_measured(child);
    let stderr = std::fs::read_to_string(&err_path).expect("stderr");
    Attempt {
        code,
        stderr,
        peak_mb,
    }
}

/// Waits for `child`; its exit code and its peak resident memory in MB.
#[cfg(target_os = "linux")]
fn wait_measured(child: std::process::Child) -> (Option<i32>, Option<f64>) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero `rusage` is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not waited for yet; both pointers are to live locals.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    // Linux reports ru_maxrss in kilobytes.
    (code, Some(usage.ru_maxrss as f64 / 1024.0))
}

#[cfg(not(target_os = "linux"))]
fn wait_measured(mut child: std::process::Child) -> (Option<i32>, Option<f64>) {
    (child.wait().expect("wait").code(), None)
}

/// Asserts a clean refusal within the memory limit and prints the attempt as a table row.
#[track_caller]
fn refused(what: &str, a: &Attempt, needles: &[&str]) {
    let line = a.stderr.trim_end();
    let peak = a
        .peak_mb
        .map_or_else(|| "not measured".to_string(), |mb| format!("{mb:.0} MB"));
    eprintln!("| {what} | `{line}` | {:?} | {peak} |", a.code);
    assert!(!line.contains("panicked"), "{line}");
    assert_eq!(a.code, Some(2), "{what}: {line}");
    assert_eq!(
        line.lines().count(),
        1,
        "{what}: more than one line: {line}"
    );
    assert!(line.starts_with("error: "), "{line}");
    for n in needles {
        assert!(line.contains(n), "{what}: expected '{n}' in: {line}");
    }
    if let Some(mb) = a.peak_mb {
        assert!(mb <= PEAK_LIMIT_MB, "{what}: peak {mb:.0} MB: {line}");
    }
}

fn tiny() -> DenseUNetConfig {
    DenseUNetConfig::tiny()
}

/// A model folder `root/name` with the networks of `weights_from` and a card of `card_a` (for
/// network A) and `tiny()` (network B): the card and the weights disagree when the two differ.
fn model_folder(
    root: &Path,
    name: &str,
    card_a: DenseUNetConfig,
    weights_from: &DenseUNetConfig,
    networks: impl FnOnce(NetworkPair) -> NetworkPair,
) -> PathBuf {
    let dir = root.join(name);
    let device = burn_device();
    let model = Model {
        card: ModelCard::new(weights_from.clone(), tiny(), InputTransform::default()),
        networks: networks(NetworkPair {
            a: weights_from.init(&device),
            b: tiny().init(&device),
        }),
    };
    model.save(&dir).expect("save");
    let card = ModelCard::new(card_a, tiny(), InputTransform::default());
    let json = serde_json::to_string_pretty(&card).expect("json");
    std::fs::write(dir.join("model.json"), json).expect("card");
    dir
}

fn burn_device() -> burn::tensor::Device {
    burn::tensor::Device::flex()
}

/// `comir represent` of a small image with the model in `dir`.
fn represent(dir: &Path, root: &Path) -> Attempt {
    let img = root.join("in.png");
    if !img.exists() {
        let (a, _) = comir_testkit::phantom_pair(32, 32, 1);
        comir_image::save_png(&img, &a).expect("save");
    }
    attempt(
        &[
            "represent",
            "--model",
            s(dir),
            "--modality",
            "a",
            "--input",
            s(&img),
            "--out",
            s(&root.join("rep.tif")),
        ],
        &[],
        root,
    )
}

#[test]
fn hostile_model_folders_are_refused_within_the_memory_limit() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    let keep = |p: NetworkPair| p;
    let cases: Vec<(&str, DenseUNetConfig, Vec<&str>)> = vec![
        (
            "widths 10⁹ (init_filters, growth_rate)",
            DenseUNetConfig {
                init_filters: 1_000_000_000,
                growth_rate: 1_000_000_000,
                ..tiny()
            },
            vec![
                "model.json",
                "init_filters is 1000000000, more than the limit of 1024",
            ],
        ),
        (
            "depth 60",
            DenseUNetConfig {
                down_blocks: vec![1; 60],
                up_blocks: vec![1; 60],
                ..tiny()
            },
            vec![
                "model.json",
                "at most 16 pooling levels are supported, got 60",
            ],
        ),
        (
            "input channels 10⁶",
            DenseUNetConfig {
                in_channels: 1_000_000,
                ..tiny()
            },
            vec![
                "model.json",
                "in_channels is 1000000, more than the limit of 1024",
            ],
        ),
        (
            "representation channels 10⁶",
            DenseUNetConfig {
                out_channels: 1_000_000,
                ..tiny()
            },
            vec!["model.json", "out_channels is 1000000"],
        ),
        (
            "every field in bounds, 30 GB of parameters",
            DenseUNetConfig {
                init_filters: 1024,
                growth_rate: 1024,
                down_blocks: vec![128; 16],
                up_blocks: vec![128; 16],
                ..tiny()
            },
            vec![
                "model.json",
                "more than the limit of 1024.0 MiB",
                "COMIR_MAX_MODEL_MIB",
            ],
        ),
        (
            "weights of another width (growth 4, card says 5)",
            DenseUNetConfig {
                growth_rate: 5,
                ..tiny()
            },
            vec![
                "weights.bpk",
                "tensor `a.bottleneck.layers.0.conv.bias` has shape [4]; \
                 the networks need [5]",
            ],
        ),
    ];
    for (i, (what, card_a, needles)) in cases.into_iter().enumerate() {
        let m = model_folder(root, &format!("m{i}"), card_a, &tiny(), keep);
        refused(what, &represent(&m, root), &needles);
    }

    // NaN weights, named by their tensor.
    let nan = model_folder(root, "nan", tiny(), &tiny(), |mut p| {
        p.a = nan_head(p.a);
        p
    });
    refused(
        "NaN weights",
        &represent(&nan, root),
        &[
            "weights.bpk",
            "tensor `a.head.weight` holds a NaN or infinite value",
        ],
    );

    // A weights file of 8 GiB (sparse: no disk used) is refused unread.
    let big = model_folder(root, "big", tiny(), &tiny(), keep);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(big.join("weights.bpk"))
        .expect("open");
    f.set_len(8 << 30).expect("grow");
    refused(
        "weights.bpk of 8 GiB for a tiny network",
        &represent(&big, root),
        &["weights.bpk", "the file is 8192.0 MiB, more than the"],
    );

    // A card of 100 MiB (sparse) is refused unread.
    let card = model_folder(root, "card", tiny(), &tiny(), keep);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(card.join("model.json"))
        .expect("open");
    f.set_len(100 << 20).expect("grow");
    refused(
        "model.json of 100 MiB",
        &represent(&card, root),
        &["model.json", "more than the 64.0 MiB a model card may take"],
    );
}

/// Sets every value of the head's weight to NaN.
fn nan_head(net: comir_model::DenseUNet) -> comir_model::DenseUNet {
    use burn::module::{Module, ModuleMapper, Param};
    use burn::tensor::Tensor;
    struct NanHead(Vec<String>);
    impl ModuleMapper for NanHead {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if self.0.join(".") == "head.weight" {
                p.map(|t| t.mul_scalar(f32::NAN))
            } else {
                p
            }
        }
    }
    net.map(&mut NanHead(Vec::new()))
}

fn torch_fixture() -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../comir-model/tests/fixtures/torch-tiny/a.safetensors");
    std::fs::read(p).expect("fixture")
}

/// `comir import-torch` of `file` as both networks, with the fixture's architecture.
fn import(file: &Path, root: &Path) -> Attempt {
    let cfg = root.join("tiny.toml");
    std::fs::write(
        &cfg,
        "[network]\ninit_filters = 4\ndown_blocks = [1, 1]\nup_blocks = [1, 1]\n\
         bottleneck_layers = 1\ngrowth_rate = 4\ncompression = 0.75\n",
    )
    .expect("config");
    attempt(
        &[
            "import-torch",
            "--a",
            s(file),
            "--b",
            s(file),
            "--config",
            s(&cfg),
            "--out",
            s(&root.join("imported")),
        ],
        &[],
        root,
    )
}

#[test]
fn hostile_safetensors_are_refused_within_the_memory_limit() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    let ok = torch_fixture();
    let header_len = u64::from_le_bytes(ok[..8].try_into().expect("8 bytes")) as usize;
    let header = std::str::from_utf8(&ok[8..8 + header_len]).expect("utf-8");

    let mut claims = ok.clone();
    claims[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let p = root.join("header-2e40.safetensors");
    std::fs::write(&p, &claims).expect("write");
    refused(
        "safetensors header claiming 2⁴⁰ bytes",
        &import(&p, root),
        &[
            "header-2e40.safetensors",
            "its header claims 1099511627776 bytes",
        ],
    );

    // A tensor whose data claims 2⁴⁰ bytes (the header's own length unchanged).
    let meta: serde_json::Value = serde_json::from_str(header).expect("header");
    let end = meta["conv_init.weight"]["data_offsets"][1]
        .as_u64()
        .expect("end");
    let from = format!(
        "\"data_offsets\":[{}",
        meta["conv_init.weight"]["data_offsets"][0]
    );
    let tensor_2e40 = header.replacen(
        &format!("{from},{end}]"),
        &format!("{from},{}]", 1u64 << 40),
        1,
    );
    assert_ne!(tensor_2e40, header);
    let mut bytes = ((tensor_2e40.len()) as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(tensor_2e40.as_bytes());
    bytes.extend_from_slice(&ok[8 + header_len..]);
    let p = root.join("tensor-2e40.safetensors");
    std::fs::write(&p, &bytes).expect("write");
    refused(
        "safetensors tensor claiming 2⁴⁰ bytes",
        &import(&p, root),
        &["tensor-2e40.safetensors", "not a safetensors file"],
    );

    // Same element count, another shape.
    let transposed = header.replace("\"shape\":[4,6,3,3]", "\"shape\":[6,4,3,3]");
    let mut shapes = ok.clone();
    shapes[8..8 + header_len].copy_from_slice(transposed.as_bytes());
    let p = root.join("shapes.safetensors");
    std::fs::write(&p, &shapes).expect("write");
    refused(
        "safetensors shapes that disagree with the config",
        &import(&p, root),
        &[
            "shapes.safetensors",
            "has shape [6, 4, 3, 3]; this configuration needs [4, 6, 3, 3]",
        ],
    );

    let start = meta["conv_init.bias"]["data_offsets"][0]
        .as_u64()
        .expect("start") as usize;
    let mut nan = ok.clone();
    let at = 8 + header_len + start;
    nan[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let p = root.join("nan.safetensors");
    std::fs::write(&p, &nan).expect("write");
    refused(
        "NaN in a safetensors tensor",
        &import(&p, root),
        &[
            "nan.safetensors",
            "`conv_init.bias` holds a NaN or infinite value",
        ],
    );

    // conv_init claiming 10⁶ input channels without the data for them.
    let wide = header.replace("\"shape\":[4,1,3,3]", "\"shape\":[4,1000000,3,3]");
    let mut bytes = (wide.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(wide.as_bytes());
    bytes.extend_from_slice(&ok[8 + header_len..]);
    let p = root.join("channels-1e6.safetensors");
    std::fs::write(&p, &bytes).expect("write");
    refused(
        "safetensors claiming 10⁶ input channels (with the data of 1)",
        &import(&p, root),
        &["channels-1e6.safetensors"],
    );

    // A file beyond the budget is not read.
    let p = root.join("huge.safetensors");
    std::fs::File::create(&p)
        .expect("create")
        .set_len(8 << 30)
        .expect("grow");
    refused(
        "safetensors file of 8 GiB",
        &import(&p, root),
        &[
            "huge.safetensors",
            "the file is 8192.0 MiB",
            "COMIR_MAX_MODEL_MIB",
        ],
    );
}

#[test]
fn hostile_manifests_transforms_and_grids_are_refused_within_the_memory_limit() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();

    // 10⁶ rows naming images that do not exist (6 MB of CSV).
    let manifest = root.join("pairs.csv");
    let mut csv = String::with_capacity(7_000_000);
    csv.push_str("fixed,moving,output\n");
    for _ in 0..1_000_000 {
        csv.push_str("a,b,t\n");
    }
    std::fs::write(&manifest, csv).expect("manifest");
    let register = |env: &[(&str, &str)]| {
        attempt(
            &["register", "--manifest", s(&manifest), "--method", "mi"],
            env,
            root,
        )
    };
    refused(
        "manifest of 10⁶ rows naming missing images",
        &register(&[]),
        &[
            "pairs.csv",
            "row 0: the fixed image a does not exist",
            "1000000 rows of the shard name missing images",
        ],
    );
    refused(
        "manifest of more rows than COMIR_MAX_MANIFEST_ROWS",
        &register(&[("COMIR_MAX_MANIFEST_ROWS", "1000")]),
        &[
            "pairs.csv",
            "more than 1000 rows",
            "COMIR_MAX_MANIFEST_ROWS",
        ],
    );

    // B-spline grids of 10⁹ nodes, as a JSON record and as an ITK .tfm.
    let points = root.join("points.csv");
    std::fs::write(&points, "x,y\n1,2\n").expect("points");
    let field = comir_transform::BSpline2::new(20, 20, 8.0).expect("field");
    let c = comir_transform::Composite2 {
        linear: comir_transform::Transform2::Rigid(comir_transform::Rigid2::new(
            0.0,
            [0.0, 0.0],
            [10.0, 10.0],
        )),
        deformation: Some(field),
    };
    let rec = comir_transform::TransformRecord::from_composite(&c, "mi-bspline", 0.0, 0.0);
    let mut v = serde_json::to_value(&rec).expect("json");
    v["bspline"]["grid_size"] = serde_json::json!([31623, 31623]);
    let json = root.join("grid-1e9.json");
    std::fs::write(&json, v.to_string()).expect("write");
    let tfm = root.join("grid-1e9.tfm");
    std::fs::write(
        &tfm,
        "#Insight Transform File V1.0\n#Transform 0\nTransform: BSplineTransform_double_2_2\n\
         Parameters: 0 0\nFixedParameters: 31623 31623 0 0 1 1 1 0 0 1\n",
    )
    .expect("write");
    for (what, file) in [
        ("B-spline grid of 10⁹ nodes (JSON)", &json),
        ("B-spline grid of 10⁹ nodes (.tfm)", &tfm),
    ] {
        let a = attempt(
            &[
                "transform-points",
                "--transform",
                s(file),
                "--points",
                s(&points),
                "--out",
                s(&root.join("mapped.csv")),
            ],
            &[],
            root,
        );
        refused(
            what,
            &a,
            &[
                file.file_name().and_then(|n| n.to_str()).expect("name"),
                "31623 × 31623 has 1000014129 nodes, more than the limit of 4000000",
                "COMIR_MAX_GRID_NODES",
            ],
        );
    }
    // A transform file of 8 GiB (sparse) is refused unread.
    let huge = root.join("huge.json");
    std::fs::File::create(&huge)
        .expect("create")
        .set_len(8 << 30)
        .expect("grow");
    let a = attempt(
        &[
            "transform-points",
            "--transform",
            s(&huge),
            "--points",
            s(&points),
            "--out",
            s(&root.join("mapped.csv")),
        ],
        &[],
        root,
    );
    refused(
        "transform JSON of 8 GiB",
        &a,
        &["huge.json", "COMIR_MAX_GRID_NODES"],
    );

    // An experiment grid of 10⁵ cells.
    let grid = root.join("grid.toml");
    let seeds: Vec<String> = (0..100_000).map(|i| i.to_string()).collect();
    std::fs::write(
        &grid,
        format!(
            "out = \"out\"\nsteps = 1\nseeds = [{}]\n[[datasets]]\nname = \"d\"\npairs = \"p\"\n",
            seeds.join(",")
        ),
    )
    .expect("grid");
    refused(
        "experiment grid of 10⁵ cells",
        &attempt(&["experiment", s(&grid)], &[], root),
        &["grid.toml", "100000 cells", "COMIR_MAX_EXPERIMENT_CELLS"],
    );
}

#[test]
fn oversized_checkpoints_and_recipes_are_refused_within_the_memory_limit() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    let pairs = root.join("pairs");
    comir_testkit::write_phantom_pairs(&pairs, 0..2, 48);
    let out = root.join("run");
    std::fs::create_dir(&out).expect("mkdir");
    std::fs::File::create(out.join("checkpoint.bin"))
        .expect("create")
        .set_len(8 << 30)
        .expect("grow");
    let a = attempt(
        &[
            "train",
            "--a",
            s(&pairs.join("A")),
            "--b",
            s(&pairs.join("B")),
            "--out",
            s(&out),
            "--resume",
        ],
        &[],
        root,
    );
    refused(
        "checkpoint.bin of 8 GiB",
        &a,
        &[
            "checkpoint.bin",
            "the file is 8192.0 MiB",
            "COMIR_MAX_MODEL_MIB",
        ],
    );

    // A training recipe asking for networks of width 10⁹.
    let cfg = root.join("wide.toml");
    std::fs::write(
        &cfg,
        "[network]\ninit_filters = 1000000000\ngrowth_rate = 1000000000\n",
    )
    .expect("config");
    let a = attempt(
        &[
            "train",
            "--a",
            s(&pairs.join("A")),
            "--b",
            s(&pairs.join("B")),
            "--out",
            s(&root.join("wide")),
            "--config",
            s(&cfg),
        ],
        &[],
        root,
    );
    refused(
        "training recipe with widths 10⁹",
        &a,
        &["init_filters is 1000000000, more than the limit of 1024"],
    );
}

#[test]
fn a_killed_write_leaves_nothing_behind_for_the_next_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let (a, b) = comir_testkit::phantom_pair(48, 48, 2);
    comir_image::save_png(d.join("a.png"), &a).expect("save");
    comir_image::save_png(d.join("b.png"), &b).expect("save");
    let out = d.join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let register = || {
        common::comir(&[
            "register",
            "--fixed",
            s(&d.join("a.png")),
            "--moving",
            s(&d.join("b.png")),
            "--method",
            "mi",
            "--out",
            s(&out.join("t.json")),
        ])
    };
    // A process that has ended (as one killed while writing would have).
    let mut child = Command::new(env!("CARGO_BIN_EXE_comir"))
        .arg("--version")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    child.wait().expect("wait");
    common::ok(&register());
    let names = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    // The temporaries of this machine are named `.comir-HOST-PID-XXXXXX.tmp`; learn HOST from
    // one made by a write of this test process.
    let probe = d.join("probe");
    std::fs::create_dir(&probe).expect("mkdir");
    let host = {
        let mut host = String::new();
        comir_fs::write_atomically_with(&probe.join("x"), |_| {
            let name = names(&probe).remove(0);
            host = name.split('-').nth(1).expect("host").to_string();
            Ok(())
        })
        .expect("write");
        host
    };
    let leftover = format!(".comir-{host}-{pid}-AbC123.tmp");
    for name in [
        leftover.as_str(),
        ".tmpAbC123",
        "notes.tmp",
        ".comir-AbC123.tmp.keep",
    ] {
        std::fs::write(out.join(name), b"x").expect("write");
    }
    common::ok(&register());
    assert_eq!(
        names(&out),
        [
            ".comir-AbC123.tmp.keep",
            ".tmpAbC123",
            "notes.tmp",
            "t.json"
        ]
    );
}
