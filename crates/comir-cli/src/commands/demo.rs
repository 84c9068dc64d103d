//! `comir demo`: the README's first command. It learns a CoMIR on the bundled MR slices for a
//! few minutes, then registers the held-out pairs through it (α-AMD on the representations)
//! and with Mattes MI on the raw images, on the same displaced cases.

use std::path::PathBuf;

use anyhow::{Context, Result};
use comir_model::DenseUNetConfig;
use comir_train::run::{RunPaths, TrainConfig};

use super::eval::{evaluate, print_summaries, EvalArgs, EvalSplit};
use super::train::{train_with_progress, TrainerChoice};
use crate::methods::MethodName;

/// Arguments of `comir demo`.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  comir demo                 # train ~4 minutes, then register the held-out pairs, levels 1-4\n  \
    comir demo --minutes 10    # train longer\n  \
    comir demo --raw           # no training: mi and global on the raw images of all pairs\n  \
    comir demo --quick         # seconds: a tiny network, levels 1-2 (for tests)\n\n\
    Writes OUT/results.csv and a visual report, OUT/report/index.html."
)]
pub struct DemoArgs {
    /// Folder with A/ and B/ pairs (default: the bundled MNI152 T1/T2 slices in data/demo).
    #[arg(long)]
    pairs: Option<PathBuf>,
    /// Folder for the model and results.csv.
    #[arg(long, default_value = "demo-results")]
    out: PathBuf,
    /// Training budget in minutes.
    #[arg(long, default_value_t = 4.0)]
    minutes: f64,
    /// A short run: a tiny network trained for a few steps, levels 1 and 2.
    #[arg(long)]
    quick: bool,
    /// No learning: Mattes MI and the global search on the raw images of every pair.
    #[arg(long)]
    raw: bool,
    /// Folder of the visual report (index.html + PNGs); default OUT/report.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// The demo's recipe: the MNI152 recipe of `configs/mni152-30min.toml` on a time budget at a
/// constant learning rate (16/16 at 0.17 px in the default 4 minutes), with a third of the
/// pairs held out for the registration table.
fn demo_config(minutes: f64, quick: bool) -> TrainConfig {
    let mut c = TrainConfig::default();
    c.train.l2_decay = 0.1;
    c.patches.size = 64;
    c.schedule.batch = 12;
    c.schedule.steps = 2000;
    c.schedule.minutes = Some(minutes);
    c.schedule.validate_every = 50;
    c.schedule.validation_batches = 1;
    c.schedule.checkpoint_every = 25;
    c.split.test_fraction = 0.34;
    c.split.validation_fraction = 0.15;
    if quick {
        c.network = Some(DenseUNetConfig {
            init_filters: 4,
            down_blocks: vec![1, 1],
            up_blocks: vec![1, 1],
            bottleneck_layers: 1,
            growth_rate: 4,
            ..DenseUNetConfig::small(1)
        });
        c.patches.size = 32;
        c.schedule.batch = 4;
        c.schedule.steps = 3;
        c.schedule.minutes = None;
    }
    c
}

fn bundled_data() -> PathBuf {
    let here = PathBuf::from("data/demo");
    if here.join("A").is_dir() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/demo")
}

fn report_dir(args: &DemoArgs) -> PathBuf {
    args.report
        .clone()
        .unwrap_or_else(|| args.out.join("report"))
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<()> {
    let pairs = args.pairs.clone().unwrap_or_else(bundled_data);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create folder", args.out.display()))?;
    if args.raw {
        return run_raw(&args, pairs);
    }
    // The pairs folder is checked before minutes of training are spent on it.
    super::eval::checked_pairs(&pairs)?;
    let config = demo_config(args.minutes, args.quick);
    config.validate()?;
    let model = args.out.join("model");
    if comir_train::run::has_checkpoint(&model) {
        // A fresh demo each time: the folder is the demo's own.
        std::fs::remove_dir_all(&model)
            .with_context(|| format!("{}: cannot replace the old demo model", model.display()))?;
    }
    println!(
        "comir demo 1/2: learning a CoMIR of T1 and T2 MR slices from {} ({})",
        pairs.display(),
        if args.quick {
            "a few steps of a tiny network".to_string()
        } else {
            format!("{} minutes on the CPU", args.minutes)
        }
    );
    let summary = train_with_progress(
        &config,
        &RunPaths {
            a: pairs.join("A"),
            b: pairs.join("B"),
            out: model.clone(),
        },
        false,
        TrainerChoice::Auto,
        "cpu",
    )?;
    println!(
        "trained {} steps on {} pairs; {} pairs held out",
        summary.steps,
        summary.split.train.len(),
        summary.split.test.len()
    );
    println!(
        "comir demo 2/2: registering T2 to T1 on the held-out pairs (MultiRegEval protocol): \
         α-AMD on the learned representations vs Mattes MI on the raw images"
    );
    let eval = EvalArgs {
        pairs,
        method: vec![MethodName::Aamd],
        levels: if args.quick {
            vec![1, 2]
        } else {
            vec![1, 2, 3, 4]
        },
        seed: 0,
        limit: None,
        out: args.out.join("results.csv"),
        resume: false,
        border: "reflect".into(),
        init: "identity".into(),
        config: None,
        export_cases: None,
        model: Some(model.clone()),
        split: EvalSplit::Test,
        reference_aamd: false,
        fixed_modality: comir_represent::Modality::A,
        no_histogram_match: false,
        rotation_average: false,
        raw_method: vec![MethodName::Mi],
        device: "cpu".into(),
        report: Some(report_dir(&args)),
    };
    let rows = evaluate(&eval)?;
    print_summaries(&super::eval::method_labels(&eval), &rows);
    println!("model: {}", model.display());
    println!("results: {}", eval.out.display());
    Ok(())
}

/// The demo without learning: Mattes MI and the global FFT search on the raw T1/T2 pairs.
fn run_raw(args: &DemoArgs, pairs: PathBuf) -> Result<()> {
    // α-AMD and feature matching need images whose intensities correspond (learned
    // representations); on raw T1/T2 they mostly fail, so the demo shows the multimodal methods.
    let methods = vec![MethodName::Mi, MethodName::Global];
    let eval = EvalArgs {
        pairs: pairs.clone(),
        method: methods.clone(),
        levels: if args.quick {
            vec![1, 2]
        } else {
            vec![1, 2, 3, 4]
        },
        seed: 0,
        limit: if args.quick { Some(3) } else { None },
        out: args.out.join("results.csv"),
        resume: false,
        border: "reflect".into(),
        init: "identity".into(),
        config: None,
        export_cases: None,
        model: None,
        split: EvalSplit::Test,
        reference_aamd: false,
        fixed_modality: comir_represent::Modality::A,
        no_histogram_match: false,
        rotation_average: false,
        raw_method: Vec::new(),
        device: "cpu".into(),
        report: Some(report_dir(args)),
    };
    println!(
        "comir demo: registering T2 to T1 MR slices from {} (MultiRegEval protocol, raw images)",
        pairs.display()
    );
    let rows = evaluate(&eval)?;
    print_summaries(&super::eval::method_labels(&eval), &rows);
    println!("results: {}", eval.out.display());
    Ok(())
}
