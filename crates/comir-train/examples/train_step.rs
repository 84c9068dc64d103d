//! Times CoMIR training steps on synthetic patches and prints one JSON line (the comir half of
//! `bench/train-step`, which compares it with PyTorch). The trainer is the one `comir train`
//! uses on the CPU, the engine ([`comir_train::FastTrainer`]); `--trainer burn` times
//! [`comir_train::Trainer`] on burn's `flex` backend instead.
//!
//! ```text
//! cargo run --release -p comir-train --example train_step -- [--trainer engine|burn] \
//!     [--preset histology|small|fast] [--batch 8] [--size 128] [--steps 5] [--warmup 1] [--threads 2]
//! ```
//!
//! One step is what both trainers do with `TrainSettings::default()`: both networks
//! (modality A and B) forward on C4-rotated patches, InfoNCE (mse critic, τ = 0.5), L1 + L2
//! activation decay, one backward pass, and SGD (lr 1e-2, momentum 0.9, weight decay 1e-5) with
//! gradient-norm clipping 1.0 for each network.
//!
//! `--threads N` sets `RAYON_NUM_THREADS` (burn's `flex` backend parallelises with rayon) before
//! the first tensor operation. Progress goes to stderr; stdout gets a single JSON object with the
//! median and every timed step in seconds, the median CPU time per step (user + system, all
//! threads), the resident memory before the first step and at its peak (`VmRSS` / `VmHWM` of
//! `/proc/self/status`, in MiB), the losses and the trainable parameter count of one network;
//! the instruction set the kernels ran (`COMIR_ISA` forces one) and the one detected, the
//! machine's FP32 peak for the detected one and for the one run, estimated (`comir_cpu::Peak`;
//! `PEAK_GFLOPS` overrides) and measured after the steps (`comir_cpu::MeasuredPeak`), and the
//! median CPU time per step inside the convolution kernels.

use comir_data::Batch;
use comir_engine::FastDenseUNet;
use comir_model::DenseUNetConfig;
use comir_train::run::Preset;
use comir_train::{ContrastiveTrainer, FastTrainer, TrainSettings, Trainer};
use std::process::ExitCode;
use std::time::Instant;

/// Command-line options.
struct Options {
    trainer: String,
    preset: String,
    batch: usize,
    size: usize,
    steps: usize,
    warmup: usize,
    threads: usize,
}

const USAGE: &str = "usage: train_step [--trainer engine|burn] [--preset histology|small|fast] \
                     [--batch N] [--size S] [--steps N] [--warmup N] [--threads N]";

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        trainer: "engine".into(),
        preset: "histology".into(),
        batch: 8,
        size: 128,
        steps: 5,
        warmup: 1,
        threads: 2,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{flag} needs a non-negative integer, got {value:?}"))
        };
        match flag.as_str() {
            "--preset" => o.preset = value.clone(),
            "--trainer" => o.trainer = value.clone(),
            "--batch" => o.batch = number()?,
            "--size" => o.size = number()?,
            "--steps" => o.steps = number()?,
            "--warmup" => o.warmup = number()?,
            "--threads" => o.threads = number()?,
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    if o.batch < 2 {
        return Err("--batch must be at least 2 (InfoNCE needs negatives)".into());
    }
    if o.steps == 0 || o.threads == 0 {
        return Err("--steps and --threads must be positive".into());
    }
    Ok(o)
}

/// The network configuration of a preset name (one input channel, D = 1).
fn preset(name: &str) -> Result<DenseUNetConfig, String> {
    name.parse::<Preset>()
        .map(|p| p.network(1))
        .map_err(|e| format!("{e}\n{USAGE}"))
}

/// A memory field of `/proc/self/status` in MiB (`VmHWM`: peak resident set, `VmRSS`: current),
/// if `/proc` is there.
fn proc_status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// A MiB value as JSON (`null` when unknown).
fn json_mib(v: Option<f64>) -> String {
    v.map_or("null".to_string(), |m| format!("{m:.1}"))
}

/// CPU time (user + system, all threads) of this process in seconds, from `/proc/self/stat`
/// (clock ticks of `USER_HZ` = 100 per second, Linux's fixed userspace unit).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Deterministic, image-like patch pairs in [0, 1] (B is an inverted, shifted copy of A).
fn synthetic_batch(n: usize, size: usize) -> Batch {
    let mut a = Vec::with_capacity(n * size * size);
    for k in 0..n {
        for y in 0..size {
            for x in 0..size {
                let (fx, fy) = (x as f32 / size as f32, y as f32 / size as f32);
                let v = 0.5
                    + 0.25 * (6.0 * fx + k as f32).sin() * (4.0 * fy).cos()
                    + 0.2 * (((x * 7919 + y * 104_729 + k * 31) % 101) as f32 / 101.0 - 0.5);
                a.push(v.clamp(0.0, 1.0));
            }
        }
    }
    let b = a.iter().map(|v| 1.0 - v * v).collect();
    Batch {
        n,
        size,
        channels_a: 1,
        channels_b: 1,
        a,
        b,
        mask: None,
    }
}

fn run(o: &Options) -> Result<String, String> {
    let cfg = preset(&o.preset)?;
    if !o.size.is_multiple_of(cfg.required_multiple()) {
        return Err(format!(
            "--size must be a multiple of {} for the {} preset",
            cfg.required_multiple(),
            o.preset
        ));
    }
    let params = FastDenseUNet::new(&cfg, 0)
        .map_err(|e| format!("{e}"))?
        .params()
        .len();
    let (mut trainer, backend): (Box<dyn ContrastiveTrainer>, &str) = match o.trainer.as_str() {
        "engine" => (
            Box::new(
                FastTrainer::from_configs(&cfg, &cfg, TrainSettings::default())
                    .map_err(|e| format!("cannot build the trainer: {e}"))?,
            ),
            "comir-engine",
        ),
        "burn" => (
            Box::new(
                Trainer::new(
                    &cfg,
                    &cfg,
                    TrainSettings::default(),
                    &burn::tensor::Device::flex(),
                )
                .map_err(|e| format!("cannot build the trainer: {e}"))?,
            ),
            "burn-flex",
        ),
        other => {
            return Err(format!(
                "unknown trainer {other:?} (engine or burn)\n{USAGE}"
            ))
        }
    };
    let batch = synthetic_batch(o.batch, o.size);
    let rss_before = json_mib(proc_status_mib("VmRSS"));
    let mut times = Vec::with_capacity(o.steps);
    let mut cpu_times = Vec::with_capacity(o.steps);
    let mut losses = Vec::with_capacity(o.warmup + o.steps);
    let mut kernel_times = Vec::with_capacity(o.steps);
    comir_engine::set_kernel_timing(true);
    for i in 0..o.warmup + o.steps {
        let k0 = comir_engine::kernel_time();
        let (t0, c0) = (Instant::now(), cpu_seconds());
        let stats = trainer.step(&batch).map_err(|e| format!("step {i}: {e}"))?;
        let dt = t0.elapsed().as_secs_f64();
        let cpu = c0.zip(cpu_seconds()).map(|(a, b)| b - a);
        let kind = if i < o.warmup { "warm-up" } else { "timed" };
        eprintln!("comir {kind} step {i}: {dt:.3} s, loss {:.5}", stats.loss);
        losses.push(stats.loss);
        if i >= o.warmup {
            kernel_times.push((comir_engine::kernel_time() - k0).as_secs_f64());
            times.push(dt);
            cpu_times.extend(cpu);
        }
    }
    let list = |v: &[f64]| {
        v.iter()
            .map(|t| format!("{t:.6}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rss = json_mib(proc_status_mib("VmHWM"));
    let cpu_median = if cpu_times.len() == times.len() {
        format!("{:.3}", median(&cpu_times))
    } else {
        "null".to_string()
    };
    let (isa, detected) = (comir_cpu::active(), comir_cpu::Isa::detected());
    let machine = comir_cpu::Peak::estimate(detected, o.threads);
    let (peak, peak_source) = (machine.gflops, machine.source);
    let path_peak = comir_cpu::Peak::estimate(isa, o.threads).gflops;
    // Measured after the steps, so that it cannot warm or cool the CPU for them.
    let measured = comir_cpu::MeasuredPeak::measure(detected, o.threads).gflops;
    let path_measured = comir_cpu::MeasuredPeak::measure(isa, o.threads).gflops;
    Ok(format!(
        "{{\"impl\": \"comir\", \"version\": \"{}\", \"backend\": \"{backend}\", \
         \"preset\": \"{}\", \"batch\": {}, \"size\": {}, \"threads\": {}, \"warmup\": {}, \
         \"steps\": {}, \"params\": {params}, \"median_s\": {:.6}, \"step_s\": [{}], \
         \"cpu_median_s\": {cpu_median}, \"conv_kernel_cpu_s\": {:.6}, \"isa\": \"{isa}\", \"isa_detected\": \"{detected}\", \
         \"peak_gflops\": {peak:.1}, \"path_peak_gflops\": {path_peak:.1}, \"peak_source\": \"{peak_source}\", \
         \"measured_peak_gflops\": {measured:.1}, \"path_measured_peak_gflops\": {path_measured:.1}, \
         \"losses\": [{}], \"rss_before_mib\": {rss_before}, \"peak_rss_mib\": {rss}}}",
        env!("CARGO_PKG_VERSION"),
        o.preset,
        o.batch,
        o.size,
        o.threads,
        o.warmup,
        o.steps,
        median(&times),
        list(&times),
        median(&kernel_times),
        list(&losses),
    ))
}

/// Large buffers start on a cache line, as in the `comir` program.
#[global_allocator]
static ALLOC: comir_cpu::CacheLineAlloc = comir_cpu::CacheLineAlloc;

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = comir_cpu::requested() {
        eprintln!("train_step: {e}");
        return ExitCode::from(2);
    }
    // Must happen before rayon's global pool is first used (the first parallel tensor op).
    std::env::set_var("RAYON_NUM_THREADS", options.threads.to_string());
    match run(&options) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("train_step: {e}");
            ExitCode::FAILURE
        }
    }
}
