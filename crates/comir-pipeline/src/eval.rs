//! Evaluating registration methods with the MultiRegEval protocol, on raw images or through a
//! trained model: the entry point behind `comir eval` (and the evaluation step of the demo and
//! of each study cell).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use comir_eval::runner::{self, EvalObserver, Evaluation, Method, PairFilter};
use comir_eval::{CaseResult, DisplacementKind, Protocol};
use comir_image::ops::Border;
use indicatif::ProgressBar;

use crate::methods::{build, MethodName, MethodsConfig};
use crate::model::{ModelOptions, RegistrationModel};
use crate::stages::TransformStages;
use crate::Console;

/// Pairs shown in pictures in a report (the first ones, at the largest level).
const REPORT_SAMPLES: usize = 3;

/// Which of a model's pairs an evaluation with a model uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EvalSplit {
    /// The pairs the model was neither trained nor validated on.
    #[default]
    Test,
    /// The pairs the model was validated on (for choosing settings).
    Validation,
}

/// What to evaluate, and where the results go.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalOptions {
    /// Folder with A/ and B/ holding aligned pairs with matching file names.
    pub pairs: PathBuf,
    /// The methods; all see the same displaced images.
    pub methods: Vec<MethodName>,
    /// Transformation levels.
    pub levels: Vec<u32>,
    /// Seed of the displacements and of the methods.
    pub seed: u64,
    /// Use only the first N pairs (sorted by name).
    pub limit: Option<usize>,
    /// Results CSV, rewritten (atomically) after every pair.
    pub out: PathBuf,
    /// Keep the rows already in `out` and run only the missing cases.
    pub resume: bool,
    /// How the displaced image is filled outside the original.
    pub border: Border,
    /// Start each local method from a global FFT search.
    pub init_global: bool,
    /// The transform models each method runs, in order (`rigid`, `rigid,affine`, …).
    pub stages: TransformStages,
    /// Control-point spacing of a bspline stage (overrides the config's).
    pub grid_spacing: Option<f64>,
    /// The displacements of the protocol: rigid (MultiRegEval's), affine or elastic.
    pub displacement: DisplacementKind,
    /// Method settings (TOML with sections `[aamd]`, `[mi]`, `[features]`, `[global]`).
    pub config: Option<PathBuf>,
    /// Register the learned representations of this model instead of the raw images; pairs
    /// it was trained or validated on are skipped.
    pub model: Option<ModelOptions>,
    /// With a model, which of its pairs.
    pub split: EvalSplit,
    /// Register representations with the reference's α-AMD settings too, instead of
    /// [`MethodsConfig::for_representations`] (the 2023-study replication, which follows the
    /// paper).
    pub reference_aamd: bool,
    /// Methods run on the raw images in the same run, for comparison (with a model).
    pub raw_methods: Vec<MethodName>,
    /// Also write every case (images, true transform) to this folder.
    pub export_cases: Option<PathBuf>,
    /// Write a visual report (index.html and its PNGs) to this folder.
    pub report: Option<PathBuf>,
    /// Judge every result without the truth: the rows' `confidence` and `flag`.
    pub confidence: bool,
}

impl EvalOptions {
    /// `methods` on the pairs in `pairs` into `out`, with the protocol's defaults (levels 1–4,
    /// seed 0, mirrored borders, identity start) and nothing else.
    pub fn new(pairs: PathBuf, methods: Vec<MethodName>, out: PathBuf) -> EvalOptions {
        EvalOptions {
            pairs,
            methods,
            levels: vec![1, 2, 3, 4],
            seed: 0,
            limit: None,
            out,
            resume: false,
            border: Border::Reflect,
            init_global: false,
            stages: TransformStages::rigid(),
            grid_spacing: None,
            displacement: DisplacementKind::Rigid,
            config: None,
            model: None,
            split: EvalSplit::Test,
            reference_aamd: false,
            raw_methods: Vec::new(),
            export_cases: None,
            report: None,
            confidence: true,
        }
    }

    /// Each method's name in the results (`comir+aamd` on representations), with whether it
    /// registers representations.
    fn methods(&self) -> Vec<(String, MethodName, bool)> {
        let on_model = self.model.is_some();
        let mut out: Vec<(String, MethodName, bool)> = self
            .methods
            .iter()
            .map(|&m| {
                let label = if on_model {
                    format!("comir+{}", m.as_str())
                } else {
                    m.as_str().to_string()
                };
                (label, m, on_model)
            })
            .collect();
        if on_model {
            out.extend(
                self.raw_methods
                    .iter()
                    .map(|&m| (m.as_str().to_string(), m, false)),
            );
        }
        out
    }

    /// The names of the methods as they appear in the results.
    pub fn method_labels(&self) -> Vec<String> {
        self.methods().into_iter().map(|(l, ..)| l).collect()
    }
}

/// A finished evaluation.
#[derive(Clone, Debug)]
pub struct Evaluated {
    /// Every row (those kept from a resumed file first).
    pub rows: Vec<CaseResult>,
    /// The methods as named in the rows, in order.
    pub labels: Vec<String>,
    /// The report's page, when one was written.
    pub report: Option<PathBuf>,
}

/// Draws the runner's progress on a console's bar.
struct Progress<'c> {
    console: &'c mut dyn Console,
    bar: Option<ProgressBar>,
}

impl EvalObserver for Progress<'_> {
    fn note(&mut self, line: &str) {
        self.console.say(line);
    }
    fn started(&mut self, cases: u64) {
        self.bar = Some(self.console.bar(cases, "eval"));
    }
    fn case_done(&mut self, row: Option<&CaseResult>) {
        if let Some(pb) = &self.bar {
            if let Some(r) = row {
                pb.set_message(format!(
                    "{} L{} {}: {:.2} px",
                    r.pair, r.level, r.method, r.error_px
                ));
            }
            pb.inc(1);
        }
    }
    fn finished(&mut self) {
        if let Some(pb) = self.bar.take() {
            pb.finish_and_clear();
        }
    }
}

/// Evaluates every requested method on every pair and level, writes the results CSV (and the
/// report), and returns all rows (old and new).
///
/// # Errors
/// Invalid settings or config, unreadable pairs or model, a pair no method could register,
/// unwritable outputs.
pub fn evaluate(options: &EvalOptions, console: &mut dyn Console) -> Result<Evaluated> {
    let protocol = Protocol {
        levels: options.levels.clone(),
        seed: options.seed,
        border: options.border,
        displacement: options.displacement,
        ..Protocol::default()
    };
    protocol.validate()?;
    // The results folder is made up front: better than failing after the first pair.
    if let Some(parent) = options.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create folder", parent.display()))?;
    }
    if !options.raw_methods.is_empty() && options.model.is_none() {
        bail!("--raw-method compares with a model: give --model too (or list the methods in --method)");
    }
    let model = options
        .model
        .as_ref()
        .map(RegistrationModel::load)
        .transpose()?;
    let filter = match (&model, options.split) {
        (None, _) => PairFilter::All,
        (Some(m), EvalSplit::Test) => PairFilter::Unseen(m.seen_pairs()),
        (Some(m), EvalSplit::Validation) => PairFilter::Validation(m.validation_pairs()),
    };
    let mut progress = Progress { console, bar: None };
    let pairs = runner::select_pairs(&options.pairs, &filter, options.limit, &mut progress)?;
    let cfg = MethodsConfig::load(options.config.as_deref())?
        .with_seed(options.seed)
        .with_grid_spacing(options.grid_spacing)?;
    let methods = options
        .methods()
        .into_iter()
        .map(|(label, m, on_representations)| {
            // Learned representations get their own α-AMD pyramid; raw images the reference's.
            let cfg = if on_representations && !options.reference_aamd {
                cfg.clone().for_representations()
            } else {
                cfg.clone()
            };
            Ok(Method {
                label,
                registrar: build(m, &cfg, options.init_global, &options.stages)?,
                on_representations,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let evaluation = Evaluation {
        pairs,
        protocol,
        methods,
        out: options.out.clone(),
        resume: options.resume,
        export_cases: options.export_cases.clone(),
        samples: if options.report.is_some() {
            REPORT_SAMPLES
        } else {
            0
        },
        representations: model
            .as_ref()
            .map(|m| m as &dyn comir_eval::Representations),
        confidence: options.confidence,
    };
    let runner::EvalOutcome { rows, samples } = runner::run(&evaluation, &mut progress)?;
    let report = options
        .report
        .as_deref()
        .map(|dir| write_report(options, dir, &evaluation.protocol, &rows, samples))
        .transpose()?;
    Ok(Evaluated {
        rows,
        labels: options.method_labels(),
        report,
    })
}

/// Writes the visual report of an evaluation; returns its page.
fn write_report(
    options: &EvalOptions,
    dir: &Path,
    protocol: &Protocol,
    rows: &[CaseResult],
    samples: Vec<comir_report::SampleCase>,
) -> Result<PathBuf> {
    let mut facts = vec![
        ("pairs".to_string(), options.pairs.display().to_string()),
        ("methods".to_string(), options.method_labels().join(", ")),
        (
            "levels".to_string(),
            protocol
                .levels
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("seed".to_string(), options.seed.to_string()),
        ("results".to_string(), options.out.display().to_string()),
    ];
    let history = match &options.model {
        Some(model) => {
            facts.push(("model".to_string(), model.dir.display().to_string()));
            let h = model.dir.join("history.csv");
            // A model folder from elsewhere may lack its history: the report goes without.
            h.is_file()
                .then(|| comir_report::read_history(&h))
                .transpose()?
        }
        None => None,
    };
    let page = comir_report::write_eval_report(
        dir,
        &comir_report::EvalReport {
            title: if options.model.is_some() {
                "comir: registration through learned representations".into()
            } else {
                "comir: registration evaluation".into()
            },
            facts,
            rows,
            methods: options.method_labels(),
            samples,
            history,
            success_frac: protocol.success_frac,
        },
    )?;
    Ok(page)
}
