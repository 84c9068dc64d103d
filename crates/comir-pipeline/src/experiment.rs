//! The 2023 study as one resumable run (the entry point behind `comir experiment GRID.toml`).
//! Every cell of datasets × variants (bottleneck supervision) × critics × seeds is trained,
//! evaluated with the MultiRegEval protocol on pairs it never saw, and (optionally) analysed; a
//! finished cell leaves `cell.json` and is skipped when the experiment runs again, and an
//! interrupted one resumes its training from the checkpoint and its evaluation from its CSV.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use comir_model::loss::Critic;
use comir_report::study::{markdown, parse_markdown, CellResult};
use comir_train::run::{has_checkpoint, RunPaths, TrainConfig};
use comir_train::BottleneckMode;
use serde::Deserialize;

use crate::analyze::{analyze, AnalyzeOptions};
use crate::eval::{evaluate, EvalOptions};
use crate::methods::MethodName;
use crate::model::ModelOptions;
use crate::train::{train_with_progress, TrainerChoice};
use crate::Console;

/// One dataset of the grid.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// Its name in tables and folders.
    pub name: String,
    /// Folder with A/ and B/ aligned pairs.
    pub pairs: PathBuf,
    /// Base training recipe (TOML of `comir train --config`); the grid overrides the critic,
    /// the bottleneck supervision, the seed and the budget.
    pub config: Option<PathBuf>,
    /// This dataset's training budget in steps (overrides the grid's).
    pub steps: Option<usize>,
    /// This dataset's training budget in minutes (overrides the grid's).
    pub minutes: Option<f64>,
    /// Evaluate on the first N test pairs only (all when absent): the evaluation of a large
    /// test split can cost more than the training.
    pub eval_pairs: Option<usize>,
}

fn default_variants() -> Vec<String> {
    vec!["off".into()]
}
fn default_critics() -> Vec<String> {
    vec!["mse".into()]
}
fn default_seeds() -> Vec<u64> {
    vec![0]
}
fn default_methods() -> Vec<String> {
    vec!["aamd".into()]
}
fn default_levels() -> Vec<u32> {
    vec![1, 2, 3, 4]
}
fn default_true() -> bool {
    true
}
fn default_patches() -> usize {
    100
}

/// The grid file (TOML; paths relative to its folder).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    /// Output folder.
    pub out: PathBuf,
    /// The datasets.
    pub datasets: Vec<Dataset>,
    /// Bottleneck-supervision variants (default `["off"]`).
    #[serde(default = "default_variants")]
    pub variants: Vec<String>,
    /// Similarity critics (default `["mse"]`).
    #[serde(default = "default_critics")]
    pub critics: Vec<String>,
    /// Training seeds (default `[0]`).
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// Registration methods on the representations (default `["aamd"]`).
    #[serde(default = "default_methods")]
    pub methods: Vec<String>,
    /// Transformation levels (default 1–4).
    #[serde(default = "default_levels")]
    pub levels: Vec<u32>,
    /// Training budget per cell, in minutes.
    pub minutes: Option<f64>,
    /// Steps per cell (with `minutes`: an upper bound).
    pub steps: Option<usize>,
    /// Analyse every cell's model (default true).
    #[serde(default = "default_true")]
    pub analyze: bool,
    /// Patch pairs of each analysis (default 100).
    #[serde(default = "default_patches")]
    pub analysis_patches: usize,
}

/// One cell of a grid.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// The dataset.
    pub dataset: Dataset,
    /// Bottleneck-supervision variant.
    pub variant: String,
    /// Similarity critic.
    pub critic: String,
    /// Training seed.
    pub seed: u64,
}

impl Cell {
    /// `dataset · variant · critic · seed N`.
    pub fn label(&self) -> String {
        format!(
            "{} · {} · {} · seed {}",
            self.dataset.name, self.variant, self.critic, self.seed
        )
    }

    /// The cell's folder under the study's output: `DATASET/VARIANT-CRITIC-seedN`.
    pub fn dir(&self, out: &Path) -> PathBuf {
        out.join(&self.dataset.name).join(format!(
            "{}-{}-seed{}",
            self.variant, self.critic, self.seed
        ))
    }
}

impl Grid {
    /// Reads and checks a grid file.
    ///
    /// # Errors
    /// An unreadable or malformed file, unknown variants, critics or methods, empty lists, a
    /// dataset without a training budget or with `eval_pairs = 0`.
    pub fn load(path: &Path) -> Result<Grid> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
        let grid: Grid = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: invalid grid: {}",
                path.display(),
                e.message().lines().collect::<Vec<_>>().join("; ")
            )
        })?;
        if let Err(m) = grid.check() {
            bail!("{}: invalid grid: {m}", path.display());
        }
        Ok(grid)
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.datasets.is_empty() {
            return Err("no [[datasets]]".into());
        }
        for v in &self.variants {
            v.parse::<BottleneckMode>()?;
        }
        for c in &self.critics {
            c.parse::<Critic>().map_err(|e| e.to_string())?;
        }
        for m in &self.methods {
            m.parse::<MethodName>()
                .map_err(|e| format!("method '{m}': {e}"))?;
        }
        if self.seeds.is_empty() || self.variants.is_empty() || self.critics.is_empty() {
            return Err("variants, critics and seeds must not be empty".into());
        }
        for d in &self.datasets {
            let (steps, minutes) = (d.steps.or(self.steps), d.minutes.or(self.minutes));
            if steps.is_none() && minutes.is_none() {
                return Err(format!(
                    "dataset '{}': give a training budget: minutes, steps or both",
                    d.name
                ));
            }
            if d.eval_pairs == Some(0) {
                return Err(format!(
                    "dataset '{}': eval_pairs must be at least 1",
                    d.name
                ));
            }
        }
        Ok(())
    }

    /// Every cell, seeds outermost: the first pass covers every dataset × variant × critic
    /// once, so an experiment stopped part-way (or read while it runs) already has a complete,
    /// if noisier, table; later seeds tighten it.
    pub fn cells(&self) -> Vec<Cell> {
        let mut cells = Vec::new();
        for &seed in &self.seeds {
            for d in &self.datasets {
                for v in &self.variants {
                    for c in &self.critics {
                        cells.push(Cell {
                            dataset: d.clone(),
                            variant: v.clone(),
                            critic: c.clone(),
                            seed,
                        });
                    }
                }
            }
        }
        cells
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

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
        &RunPaths {
            a: pairs.join("A"),
            b: pairs.join("B"),
            out: model.clone(),
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_run_seeds_outermost_in_their_own_folders() {
        let grid: Grid = toml::from_str(
            "out = \"s\"\nsteps = 1\nvariants = [\"off\", \"flat\"]\nseeds = [0, 1]\n\
             [[datasets]]\nname = \"d\"\npairs = \"p\"\n",
        )
        .expect("grid");
        assert_eq!(grid.check(), Ok(()));
        let cells = grid.cells();
        let labels: Vec<String> = cells.iter().map(Cell::label).collect();
        assert_eq!(
            labels,
            [
                "d · off · mse · seed 0",
                "d · flat · mse · seed 0",
                "d · off · mse · seed 1",
                "d · flat · mse · seed 1"
            ]
        );
        assert_eq!(
            cells[1].dir(Path::new("s")),
            Path::new("s/d/flat-mse-seed0")
        );
        let no_budget = Grid {
            steps: None,
            ..grid
        };
        assert_eq!(
            no_budget.check(),
            Err("dataset 'd': give a training budget: minutes, steps or both".into())
        );
    }
}
