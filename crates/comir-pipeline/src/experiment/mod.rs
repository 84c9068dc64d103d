//! The 2023 study as one resumable run (the entry point behind `comir experiment GRID.toml`).
//! Every cell of datasets × variants (bottleneck supervision) × critics × seeds is trained,
//! evaluated with the MultiRegEval protocol on pairs it never saw, and (optionally) analysed; a
//! finished cell leaves `cell.json` and is skipped when the experiment runs again, and an
//! interrupted one resumes its training from the checkpoint and its evaluation from its CSV.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use comir_model::loss::Critic;
use comir_report::study::{markdown, parse_markdown, CellResult};
use comir_train::run::{has_checkpoint, RunPaths, TrainConfig};

use crate::analyze::{analyze, AnalyzeOptions};
use crate::eval::{evaluate, EvalOptions};
use crate::methods::MethodName;
use crate::model::ModelOptions;
use crate::train::{train_with_progress, TrainerChoice};
use crate::Console;

mod grid;
use grid::resolve;
pub use grid::{Cell, Dataset, Grid};

/// How to run a study.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExperimentOptions {
    /// The grid (TOML).
    pub grid: PathBuf,
    /// Also write a visual report (index.html + PNGs) to this folder.
    pub report: Option<PathBuf>,
    /// Run nothing: gather the cells finished so far into the tables (and the report).
    pub tables_only: bool,
}

/// A study's tables.
#[derive(Clone, Debug)]
pub struct ExperimentOutcome {
    /// Every finished cell's rows.
    pub rows: Vec<CellResult>,
    /// The Markdown table (also in `results.md`).
    pub table: String,
    /// `results.csv`.
    pub results: PathBuf,
    /// The report's page, when one was written.
    pub report: Option<PathBuf>,
}

/// Runs (or resumes) every cell of the grid, then writes `OUT/results.csv`, `OUT/results.md`
/// and the report. Each cell's progress, each analysis table and the final table go to
/// `console`.
///
/// # Errors
/// An invalid grid, or the first cell that fails (training, evaluation or analysis).
pub fn run_experiment(
    options: &ExperimentOptions,
    console: &mut dyn Console,
) -> Result<ExperimentOutcome> {
    let grid = Grid::load(&options.grid)?;
    let base = options
        .grid
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let out = resolve(&base, &grid.out);
    std::fs::create_dir_all(&out).with_context(|| format!("{}", out.display()))?;
    let methods: Vec<MethodName> = grid.methods.iter().filter_map(|m| m.parse().ok()).collect();
    let cells = grid.cells();
    let mut all: Vec<CellResult> = Vec::new();
    let total = cells.len();
    // Time left: the mean time of the cells run so far (in this invocation) × cells to go.
    let started = std::time::Instant::now();
    let mut ran = 0usize;
    for (i, cell) in cells.into_iter().enumerate() {
        let dir = cell.dir(&out);
        let done = dir.join("cell.json");
        let label = cell.label();
        if let Ok(text) = std::fs::read_to_string(&done) {
            if let Ok(rows) = serde_json::from_str::<Vec<CellResult>>(&text) {
                console.say(&format!(
                    "cell {}/{total}: {label}: finished, skipped",
                    i + 1
                ));
                all.extend(rows);
                continue;
            }
        }
        if options.tables_only {
            console.say(&format!("cell {}/{total}: {label}: not finished", i + 1));
            continue;
        }
        let left = if ran == 0 {
            String::new()
        } else {
            let per = started.elapsed().as_secs_f64() / ran as f64;
            format!(
                " (≈{:.0} min left at {:.1} min per cell)",
                per * (total - i) as f64 / 60.0,
                per / 60.0
            )
        };
        console.say(&format!("cell {}/{total}: {label}{left}", i + 1));
        ran += 1;
        let results = run_cell(&grid, &base, &cell, &dir, &methods, console)?;
        comir_fs::write_atomically(&done, &serde_json::to_vec_pretty(&results)?)
            .with_context(|| format!("{}", done.display()))?;
        all.extend(results);
    }
    crate::write_csv(&out.join("results.csv"), &all)?;
    let table = markdown(&all);
    comir_fs::write_atomically(&out.join("results.md"), table.as_bytes())
        .with_context(|| format!("{}", out.join("results.md").display()))?;
    console.say(&format!("\n{table}"));
    let report = options
        .report
        .as_deref()
        .map(|dir| write_report(dir, &options.grid, &grid, &out, &all))
        .transpose()?;
    Ok(ExperimentOutcome {
        rows: all,
        table,
        results: out.join("results.csv"),
        report,
    })
}

/// Trains, evaluates and (if the grid says so) analyses one cell in `dir`; returns its rows.
fn run_cell(
    grid: &Grid,
    base: &Path,
    cell: &Cell,
    dir: &Path,
    methods: &[MethodName],
    console: &mut dyn Console,
) -> Result<Vec<CellResult>> {
    let dataset = &cell.dataset;
    let pairs = resolve(base, &dataset.pairs);
    let mut config = match &dataset.config {
        Some(p) => TrainConfig::from_toml_file(&resolve(base, p))?,
        None => TrainConfig::default(),
    };
    config.train.critic = cell.critic.parse::<Critic>()?;
    config.train.bottleneck.mode = cell
        .variant
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    config.train.seed = cell.seed;
    config.schedule.minutes = dataset.minutes.or(grid.minutes);
    if let Some(s) = dataset.steps.or(grid.steps) {
        config.schedule.steps = s;
    } else {
        config.schedule.steps = config.schedule.steps.max(100_000);
    }
    let model = dir.join("model");
    let summary = train_with_progress(
        &config,
        &RunPaths::for_pairs(&pairs, model.clone()),
        has_checkpoint(&model),
        TrainerChoice::Auto,
        "cpu",
        console,
    )?;
    let eval = EvalOptions {
        levels: grid.levels.clone(),
        limit: dataset.eval_pairs,
        resume: true,
        model: Some(ModelOptions::new(model.clone())),
        // The paper registered the representations with the reference α-AMD settings.
        reference_aamd: true,
        ..EvalOptions::new(pairs.clone(), methods.to_vec(), dir.join("results.csv"))
    };
    let rows = evaluate(&eval, console)?.rows;
    let mut results = Vec::new();
    for m in eval.method_labels() {
        let mine: Vec<_> = rows.iter().filter(|r| r.method == m).collect();
        let successes = mine.iter().filter(|r| r.success).count();
        results.push(CellResult {
            dataset: dataset.name.clone(),
            variant: cell.variant.clone(),
            critic: cell.critic.clone(),
            seed: cell.seed,
            steps: summary.steps,
            method: m.clone(),
            cases: mine.len(),
            successes,
            rate: successes as f64 / mine.len().max(1) as f64,
        });
    }
    if grid.analyze {
        let analysis = AnalyzeOptions {
            patches: grid.analysis_patches,
            seed: 0,
            angle_step: 90.0,
            ..AnalyzeOptions::new(model, pairs, dir.join("analysis"))
        };
        let outcome =
            analyze(&analysis, console).with_context(|| format!("analysing {}", cell.label()))?;
        for line in outcome.lines() {
            console.say(&line);
        }
    }
    Ok(results)
}

/// The study's visual report: the table of `results.md` and each cell's analysis plots.
fn write_report(
    dir: &Path,
    grid_path: &Path,
    grid: &Grid,
    out: &Path,
    rows: &[CellResult],
) -> Result<PathBuf> {
    // The Markdown table, parsed back into cells: one source for both.
    let (header, table) = parse_markdown(&markdown(rows));
    let mut cells = Vec::new();
    for cell in grid.cells() {
        let analysis = cell.dir(out).join("analysis");
        let pictures: Vec<(String, PathBuf)> = [
            ("MDS of the representations", "mds-representation.png"),
            ("MDS of the bottleneck", "mds-bottleneck.png"),
            (
                "spectrum of the representations",
                "spectrum-representation.png",
            ),
            (
                "spectrum of the bottleneck (pooled)",
                "spectrum-bottleneck-pooled.png",
            ),
        ]
        .iter()
        .map(|(caption, f)| (caption.to_string(), analysis.join(f)))
        .filter(|(_, p)| p.is_file())
        .collect();
        if !pictures.is_empty() {
            cells.push(comir_report::StudyCell {
                label: cell.label(),
                pictures,
            });
        }
    }
    let facts = vec![
        ("grid".to_string(), grid_path.display().to_string()),
        (
            "results".to_string(),
            out.join("results.csv").display().to_string(),
        ),
        (
            "budget per cell".to_string(),
            grid.datasets
                .iter()
                .map(|d| {
                    let steps = d.steps.or(grid.steps);
                    let minutes = d.minutes.or(grid.minutes);
                    format!(
                        "{}: {}{}",
                        d.name,
                        steps.map_or(String::new(), |s| format!("{s} steps")),
                        minutes.map_or(String::new(), |m| format!(" (≤ {m} min)"))
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
    ];
    let page = comir_report::write_study_report(
        dir,
        &comir_report::StudyReport {
            title: "comir: bottleneck supervision study".into(),
            facts,
            header,
            rows: table,
            cells,
        },
    )?;
    Ok(page)
}
