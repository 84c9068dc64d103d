//! The demonstration (the entry point behind `comir demo`, the README's first command). It
//! learns a CoMIR on the bundled MR slices for a few minutes, then registers the held-out pairs
//! through it (α-AMD on the representations) and with Mattes MI on the raw images, on the same
//! displaced cases.

use std::path::PathBuf;

use anyhow::{Context, Result};
use comir_model::DenseUNetConfig;
use comir_train::run::{RunPaths, TrainConfig};

use crate::eval::{evaluate, EvalOptions, Evaluated};
use crate::methods::MethodName;
use crate::model::ModelOptions;
use crate::train::{train_with_progress, TrainerChoice};
use crate::Console;

/// How to run the demo.
#[derive(Clone, Debug, PartialEq)]
pub struct DemoOptions {
    /// Folder with A/ and B/ pairs (default: the bundled MNI152 T1/T2 slices in data/demo).
    pub pairs: Option<PathBuf>,
    /// Folder for the model and results.csv.
    pub out: PathBuf,
    /// Training budget in minutes.
    pub minutes: f64,
    /// A short run: a tiny network trained for a few steps, levels 1 and 2.
    pub quick: bool,
    /// No learning: Mattes MI and the global search on the raw images of every pair.
    pub raw: bool,
    /// No learning: register through the bundled model [`PRETRAINED`] (the pairs it has not
    /// seen), in seconds.
    pub pretrained: bool,
    /// Folder of the visual report (default OUT/report).
    pub report: Option<PathBuf>,
}

impl Default for DemoOptions {
    fn default() -> DemoOptions {
        DemoOptions {
            pairs: None,
            out: PathBuf::from("demo-results"),
            minutes: 4.0,
            quick: false,
            raw: false,
            pretrained: false,
            report: None,
        }
    }
}

/// What the demo did.
#[derive(Clone, Debug)]
pub struct DemoOutcome {
    /// The evaluation (its report included).
    pub evaluation: Evaluated,
    /// The learned model's folder (none with `raw`).
    pub model: Option<PathBuf>,
    /// The results CSV.
    pub results: PathBuf,
}

/// The demo's recipe: the MNI152 recipe of `configs/mni152-30min.toml` on a time budget at a
/// constant learning rate (16/16 at 0.17 px in the default 4 minutes), with a third of the
/// pairs held out for the registration table.
pub fn demo_config(minutes: f64, quick: bool) -> TrainConfig {
    let mut c = TrainConfig::default();
    // The MR slices are stretched already, and a budgeted run keeps its full rate: the demo's
    // recipe as measured (docs/results.md), whatever `comir train`'s defaults.
    c.patches.normalize_a = false;
    c.patches.normalize_b = false;
    c.schedule.lr_decay = comir_train::run::LrDecay::Constant;
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
        c.network = Some(DenseUNetConfig::tiny());
        c.patches.size = 32;
        c.schedule.batch = 4;
        c.schedule.steps = 3;
        c.schedule.minutes = None;
    }
    c
}

/// The bundled model of `--pretrained`.
pub const PRETRAINED: &str = "mni152-t1t2";

/// The bundled pairs: `data/demo` under the working folder, else in the source tree.
pub fn bundled_data() -> PathBuf {
    let here = PathBuf::from("data/demo");
    if here.join("A").is_dir() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/demo")
}

/// Runs the demo: learn, then evaluate (or, with `raw`, evaluate on the raw images only);
/// what it does goes to `console`.
///
/// # Errors
/// An unusable pairs folder (checked before any training), an unwritable output folder, or
/// the training's or evaluation's errors.
pub fn run_demo(options: &DemoOptions, console: &mut dyn Console) -> Result<DemoOutcome> {
    let pairs = options.pairs.clone().unwrap_or_else(bundled_data);
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("{}: cannot create folder", options.out.display()))?;
    let levels = if options.quick {
        vec![1, 2]
    } else {
        vec![1, 2, 3, 4]
    };
    let report = Some(
        options
            .report
            .clone()
            .unwrap_or_else(|| options.out.join("report")),
    );
    let results = options.out.join("results.csv");
    if options.raw {
        // α-AMD and feature matching need images whose intensities correspond (learned
        // representations); on raw T1/T2 they mostly fail, so the demo shows the multimodal
        // methods.
        let eval = EvalOptions {
            levels,
            limit: if options.quick { Some(3) } else { None },
            report,
            ..EvalOptions::new(
                pairs.clone(),
                vec![MethodName::Mi, MethodName::Global],
                results.clone(),
            )
        };
        console.say(&format!(
            "comir demo: registering T2 to T1 MR slices from {} (MultiRegEval protocol, raw images)",
            pairs.display()
        ));
        return Ok(DemoOutcome {
            evaluation: evaluate(&eval, console)?,
            model: None,
            results,
        });
    }
    let model = if options.pretrained {
        let model = crate::bundled::resolve(std::path::Path::new(PRETRAINED))?;
        console.say(&format!(
            "comir demo: registering T2 to T1 MR slices from {} through the bundled model \
             {PRETRAINED} (no training; the pairs it was not trained on): α-AMD on the \
             representations vs Mattes MI on the raw images",
            pairs.display()
        ));
        model
    } else {
        // The pairs folder is checked before minutes of training are spent on it.
        comir_eval::runner::checked_pairs(&pairs)?;
        let config = demo_config(options.minutes, options.quick);
        config.validate()?;
        let model = options.out.join("model");
        if comir_train::run::has_checkpoint(&model) {
            // A fresh demo each time: the folder is the demo's own.
            std::fs::remove_dir_all(&model).with_context(|| {
                format!("{}: cannot replace the old demo model", model.display())
            })?;
        }
        console.say(&format!(
            "comir demo 1/2: learning a CoMIR of T1 and T2 MR slices from {} ({})",
            pairs.display(),
            if options.quick {
                "a few steps of a tiny network".to_string()
            } else {
                format!("{} minutes on the CPU", options.minutes)
            }
        ));
        let summary = train_with_progress(
            &config,
            &RunPaths::for_pairs(&pairs, model.clone()),
            false,
            TrainerChoice::Auto,
            "cpu",
            console,
        )?;
        console.say(&format!(
            "trained {} steps on {} pairs; {} pairs held out",
            summary.steps,
            summary.split.train.len(),
            summary.split.test.len()
        ));
        console.say(
            "comir demo 2/2: registering T2 to T1 on the held-out pairs (MultiRegEval protocol): \
             α-AMD on the learned representations vs Mattes MI on the raw images",
        );
        model
    };
    let eval = EvalOptions {
        levels,
        model: Some(ModelOptions::new(model.clone())),
        raw_methods: vec![MethodName::Mi],
        report,
        ..EvalOptions::new(pairs, vec![MethodName::Aamd], results.clone())
    };
    Ok(DemoOutcome {
        evaluation: evaluate(&eval, console)?,
        model: Some(model),
        results,
    })
}
