//! A training run killed with SIGKILL at random moments and resumed each time ends with the
//! same weights and history as a run that was never killed; so does an evaluation. Only the
//! `comir` binary is used, so the test holds whatever trainer `comir train` runs.

mod common;

use common::{csv_rows_without_time, s};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_comir"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts")
}

fn as_str(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn run(args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_comir"))
        .args(args)
        .output()
        .expect("the binary runs");
    assert!(
        o.status.success(),
        "comir {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// A small deterministic generator for the kill moments (xorshift64*).
struct Delays(u64);

impl Delays {
    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A delay uniform in `[lo, hi)`.
    fn next(&mut self, lo: Duration, hi: Duration) -> Duration {
        lo + (hi - lo).mul_f64(self.unit())
    }

    /// An integer uniform in `[0, n)`.
    fn below(&mut self, n: usize) -> usize {
        ((self.unit() * n as f64) as usize).min(n.saturating_sub(1))
    }
}

/// Reaps a finished `child`, checking that it succeeded.
fn reap(mut child: Child) {
    let status = child.wait().expect("wait");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "finished with {status}: {err}");
}

/// Data rows of a CSV (`history.csv` of a model, an eval table), 0 when it does not exist yet.
/// comir replaces these files atomically, so a read sees an old or a new version, never a torn one.
fn csv_rows(csv: &Path) -> usize {
    std::fs::read_to_string(csv)
        .map(|t| t.lines().count().saturating_sub(1))
        .unwrap_or(0)
}

/// Lets `child` work until `csv` holds at least `rows` rows, waits `jitter` more (so the kill
/// lands anywhere in a step: mid-computation or mid-write), then kills it (SIGKILL). Returns
/// `true` if it was still running, `false` if it had finished by then.
///
/// Kills are placed by progress, not by wall-clock time, so a loaded CI machine (a slow
/// reference run, a fast resumed run) cannot make them miss.
fn kill_at(mut child: Child, csv: &Path, rows: usize, jitter: Duration) -> bool {
    loop {
        if child.try_wait().expect("wait").is_some() {
            reap(child);
            return false;
        }
        if csv_rows(csv) >= rows {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(jitter);
    child.kill().expect("kill");
    child.wait().expect("reap");
    true
}

fn pairs(root: &Path, n: u64, side: usize) -> PathBuf {
    let d = root.join("pairs");
    comir_testkit::write_phantom_pairs(&d, 0..n, side);
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
validate_every = 3
validation_batches = 1

[split]
validation_fraction = 0.25
"#
);

/// Enough steps that training, not process start-up, takes most of a run (the CPU engine does a
/// tiny step in ~10 ms; with 40 steps a run lasted 0.4 s and kills could miss it).
const STEPS: &str = "300";

#[test]
fn a_training_killed_at_random_moments_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    let data = pairs(root, 6, 40);
    let cfg = root.join("tiny.toml");
    std::fs::write(&cfg, TINY).expect("write");
    let (a, b) = (data.join("A"), data.join("B"));
    let train_args = |out: &Path, resume: bool| -> Vec<String> {
        let mut v: Vec<String> = [
            "train",
            "--a",
            s(&a),
            "--b",
            s(&b),
            "--out",
            s(out),
            "--steps",
            STEPS,
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        if resume {
            v.push("--resume".into());
        } else {
            v.extend(["--config".to_string(), s(&cfg).to_string()]);
        }
        v
    };

    // The run that is never killed.
    let reference = root.join("reference");
    let start = Instant::now();
    run(&as_str(&train_args(&reference, false)));
    let full = start.elapsed();

    let steps: usize = STEPS.parse().expect("a number");
    let killed = root.join("killed");
    let mut random = Delays(0x5EED_CAFE_F00D_1234);
    let (mut kills, mut resumed_kills, mut starts) = (0, 0, 0);
    // Three kills at random steps spread over the run (each after a random part of a step),
    // then a last resume that finishes.
    loop {
        starts += 1;
        let resume = killed.join("checkpoint.bin").is_file();
        let child = spawn(&as_str(&train_args(&killed, resume)));
        if kills >= 3 {
            reap(child);
            break;
        }
        let history = killed.join("history.csv");
        let done = csv_rows(&history);
        let span = (steps * (kills + 1) / 4).saturating_sub(done).max(1);
        let target = (done + 1 + random.below(span)).min(steps - 1);
        let jitter = random.next(Duration::ZERO, Duration::from_millis(15));
        assert!(
            kill_at(child, &history, target, jitter),
            "the run finished before step {target} of {steps}"
        );
        kills += 1;
        if resume {
            resumed_kills += 1;
        }
    }
    assert!(
        kills >= 3 && resumed_kills >= 1,
        "only {kills} kills landed ({resumed_kills} after a resume)"
    );
    eprintln!(
        "{kills} kills ({resumed_kills} of resumed runs) in {starts} starts; uninterrupted run {full:?}"
    );

    let (got, want) = (
        std::fs::read(killed.join("weights.bpk")).expect("weights"),
        std::fs::read(reference.join("weights.bpk")).expect("weights"),
    );
    if got != want {
        let at = got.iter().zip(&want).position(|(a, b)| a != b);
        let kept = dir.keep();
        panic!(
            "the resumed run ends with other weights: {} vs {} bytes, first difference at {at:?} (kept in {})",
            got.len(),
            want.len(),
            kept.display()
        );
    }
    let (h_killed, h_ref) = (
        csv_rows_without_time(&killed.join("history.csv")),
        csv_rows_without_time(&reference.join("history.csv")),
    );
    let steps: usize = STEPS.parse().expect("a number");
    assert_eq!(h_killed.len(), steps + 1, "header + one row per step");
    assert_eq!(h_killed, h_ref);
    // The model folder is usable: model.json describes the same model.
    let card = |d: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("model.json")).expect("card"))
            .expect("json")
    };
    assert_eq!(card(&killed)["network_a"], card(&reference)["network_a"]);
    assert_eq!(
        card(&killed)["training"]["steps"],
        card(&reference)["training"]["steps"]
    );
}

#[test]
fn a_killed_or_cut_eval_resumes_only_the_missing_cases() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    let data = pairs(root, 4, 64);
    let eval_args = |csv: &Path, resume: bool| -> Vec<String> {
        let mut v: Vec<String> = [
            "eval",
            "--pairs",
            s(&data),
            "--method",
            "mi,global",
            "--levels",
            "1,3",
            "--out",
            s(csv),
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        if resume {
            v.push("--resume".into());
        }
        v
    };
    let reference = root.join("reference.csv");
    run(&as_str(&eval_args(&reference, false)));
    let want = csv_rows_without_time(&reference);
    assert_eq!(want.len(), 1 + 4 * 2 * 2);

    // 1. Cut: keep the header and the first k rows, with a mark in their time column that a
    // recomputation would overwrite; resume.
    let text = std::fs::read_to_string(&reference).expect("csv");
    let lines: Vec<&str> = text.lines().collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let time = header
        .iter()
        .position(|c| *c == "seconds")
        .expect("seconds");
    for k in [0usize, 3, 9, 16] {
        let cut = root.join(format!("cut{k}.csv"));
        let kept: Vec<String> = lines[1..=k]
            .iter()
            .map(|l| {
                let mut f: Vec<&str> = l.split(',').collect();
                f[time] = "12345.5";
                f.join(",")
            })
            .collect();
        let mut body = lines[0].to_string() + "\n";
        for l in &kept {
            body += l;
            body += "\n";
        }
        std::fs::write(&cut, body).expect("write");
        run(&as_str(&eval_args(&cut, true)));
        assert_eq!(csv_rows_without_time(&cut), want, "cut at {k} rows");
        let back = std::fs::read_to_string(&cut).expect("csv");
        let marks = back
            .lines()
            .filter(|l| l.split(',').nth(time).and_then(|v| v.parse::<f64>().ok()) == Some(12345.5))
            .count();
        assert_eq!(marks, k, "finished cases were recomputed (cut at {k})");
    }

    // 2. Kill: SIGKILL mid-way at a few moments, resume each time.
    let killed = root.join("killed.csv");
    let mut random = Delays(42);
    let mut kills = 0;
    let cases = want.len() - 1;
    for attempt in 0..20 {
        let resume = killed.is_file();
        let child = spawn(&as_str(&eval_args(&killed, resume)));
        if attempt >= 3 {
            reap(child);
            break;
        }
        // Kills by progress (see `kill_at`): before case 1–4, 5–8, 9–12; cases that finish
        // together may still let a run end first, so a miss ends the loop instead of failing.
        let done = csv_rows(&killed);
        let span = (cases * (attempt + 1) / 4).saturating_sub(done).max(1);
        let target = (done + 1 + random.below(span)).min(cases - 1);
        let jitter = random.next(Duration::ZERO, Duration::from_millis(50));
        if kill_at(child, &killed, target, jitter) {
            kills += 1;
        } else {
            break;
        }
        if killed.is_file() {
            // Whatever the moment, the file is whole: it parses.
            comir_eval::read_csv(&killed).expect("a whole CSV after a kill");
        }
    }
    assert!(kills >= 1);
    assert_eq!(csv_rows_without_time(&killed), want);
}
