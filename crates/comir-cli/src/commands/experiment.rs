//! `comir experiment GRID.toml`: the 2023 study as one resumable run. Every cell of
//! datasets × variants (bottleneck supervision) × critics × seeds is trained, evaluated with the
//! MultiRegEval protocol on pairs it never saw, and (optionally) analysed; a finished cell
//! leaves `cell.json` and is skipped when the experiment runs again, and an interrupted one
//! resumes its training from the checkpoint and its evaluation from its CSV.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use comir_model::loss::Critic;
use comir_train::run::{has_checkpoint, RunPaths, TrainConfig};
use comir_train::BottleneckMode;
use serde::{Deserialize, Serialize};

use super::analyze::AnalyzeArgs;
use super::eval::{evaluate, EvalArgs, EvalSplit};
use super::train::{train_with_progress, TrainerChoice};
use crate::methods::MethodName;

/// Arguments of `comir experiment`.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  comir experiment configs/study-2023.toml\n\n\
    GRID.toml (paths relative to its folder):\n  \
    out = \"study\"\n  minutes = 5            # training budget per cell (steps = upper bound)\n  \
    variants = [\"off\", \"flat\", \"pooled\", \"projection\"]\n  critics = [\"mse\", \"cosine\", \"l1\"]\n  \
    seeds = [0, 1, 2]\n  methods = [\"aamd\", \"features\"]\n  \
    [[datasets]]\n  name = \"histology\"\n  pairs = \"../shared/datasets/histology-shg-he\"\n  \
    config = \"histology-30min.toml\"\n  \
    steps = 150            # optional: this dataset's budget\n  \
    eval_pairs = 20        # optional: evaluate on the first 20 test pairs\n\n\
    Writes OUT/results.csv (one row per cell and method) and OUT/results.md (mean ± std over seeds)."
)]
pub struct ExperimentArgs {
    /// The grid (TOML).
    pub grid: PathBuf,
    /// Also write a visual report (index.html + PNGs) to this folder: the results table and
    /// every cell's MDS and spectrum plots.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Run nothing: gather the cells finished so far into the tables (and --report), e.g. to
    /// look at a study while it runs.
    #[arg(long)]
    pub tables_only: bool,
}

/// One dataset of the grid.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Dataset {
    name: String,
    pairs: PathBuf,
    /// Base training recipe (TOML of `comir train --config`); the grid overrides the critic,
    /// the bottleneck supervision, the seed and the budget.
    config: Option<PathBuf>,
    /// This dataset's training budget (overrides the grid's `steps` / `minutes`).
    steps: Option<usize>,
    minutes: Option<f64>,
    /// Evaluate on the first N test pairs only (all when absent): the evaluation of a large
    /// test split can cost more than the training.
    eval_pairs: Option<usize>,
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

/// The grid file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Grid {
    out: PathBuf,
    datasets: Vec<Dataset>,
    #[serde(default = "default_variants")]
    variants: Vec<String>,
    #[serde(default = "default_critics")]
    critics: Vec<String>,
    #[serde(default = "default_seeds")]
    seeds: Vec<u64>,
    #[serde(default = "default_methods")]
    methods: Vec<String>,
    #[serde(default = "default_levels")]
    levels: Vec<u32>,
    /// Training budget per cell, in minutes.
    minutes: Option<f64>,
    /// Steps per cell (with `minutes`: an upper bound).
    steps: Option<usize>,
    #[serde(default = "default_true")]
    analyze: bool,
    #[serde(default = "default_patches")]
    analysis_patches: usize,
}

/// One cell's numbers: written as `cell.json`, gathered into the tables.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CellResult {
    dataset: String,
    variant: String,
    critic: String,
    seed: u64,
    steps: usize,
    method: String,
    cases: usize,
    successes: usize,
    rate: f64,
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn load_grid(path: &Path) -> Result<Grid> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let grid: Grid = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: invalid grid: {}",
            path.display(),
            e.message().lines().collect::<Vec<_>>().join("; ")
        )
    })?;
    let bad = |m: String| -> Result<Grid> { bail!("{}: invalid grid: {m}", path.display()) };
    if grid.datasets.is_empty() {
        return bad("no [[datasets]]".into());
    }
    for v in &grid.variants {
        if let Err(e) = v.parse::<BottleneckMode>() {
            return bad(e);
        }
    }
    for c in &grid.critics {
        if let Err(e) = c.parse::<Critic>() {
            return bad(e.to_string());
        }
    }
    for m in &grid.methods {
        if let Err(e) = MethodName::from_str(m, true) {
            return bad(format!("method '{m}': {e}"));
        }
    }
    if grid.seeds.is_empty() || grid.variants.is_empty() || grid.critics.is_empty() {
        return bad("variants, critics and seeds must not be empty".into());
    }
    for d in &grid.datasets {
        let (steps, minutes) = (d.steps.or(grid.steps), d.minutes.or(grid.minutes));
        if steps.is_none() && minutes.is_none() {
            return bad(format!(
                "dataset '{}': give a training budget: minutes, steps or both",
                d.name
            ));
        }
        if d.eval_pairs == Some(0) {
            return bad(format!(
                "dataset '{}': eval_pairs must be at least 1",
                d.name
            ));
        }
    }
    Ok(grid)
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// The Markdown table: success rate (mean ± std over seeds) per dataset × variant × critic ×
/// method.
fn markdown(rows: &[CellResult]) -> String {
    let mut keys: Vec<(String, String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r.dataset.clone(),
                r.variant.clone(),
                r.critic.clone(),
                r.method.clone(),
            )
        })
        .collect();
    keys.sort();
    keys.dedup();
    let mut out = String::from(
        "| dataset | variant | critic | method | success % (mean ± std) | seeds | cases |\n|---|---|---|---|---|---|---|\n",
    );
    for (d, v, c, m) in keys {
        let cell: Vec<&CellResult> = rows
            .iter()
            .filter(|r| r.dataset == d && r.variant == v && r.critic == c && r.method == m)
            .collect();
        let rates: Vec<f64> = cell.iter().map(|r| 100.0 * r.rate).collect();
        let (mean, std) = mean_std(&rates);
        out.push_str(&format!(
            "| {d} | {v} | {c} | {m} | {mean:.1} ± {std:.1} | {} | {} |\n",
            cell.len(),
            cell.iter().map(|r| r.cases).sum::<usize>()
        ));
    }
    out
}

/// Runs `comir experiment`.
pub fn run(args: ExperimentArgs) -> Result<()> {
    let grid = load_grid(&args.grid)?;
    let base = args
        .grid
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let out = resolve(&base, &grid.out);
    std::fs::create_dir_all(&out).with_context(|| format!("{}", out.display()))?;
    let methods: Vec<MethodName> = grid
        .methods
        .iter()
        .filter_map(|m| MethodName::from_str(m, true).ok())
        .collect();
    // Seeds outermost: the first pass covers every dataset × variant × critic once, so an
    // experiment stopped part-way (or read while it runs) already has a complete, if noisier,
    // table; later seeds tighten it.
    let mut cells = Vec::new();
    for &s in &grid.seeds {
        for d in &grid.datasets {
            for v in &grid.variants {
                for c in &grid.critics {
                    cells.push((d.clone(), v.clone(), c.clone(), s));
                }
            }
        }
    }
    let mut all: Vec<CellResult> = Vec::new();
    let total = cells.len();
    // Time left: the mean time of the cells run so far (in this invocation) × cells to go.
    let started = std::time::Instant::now();
    let mut ran = 0usize;
    for (i, (dataset, variant, critic, seed)) in cells.into_iter().enumerate() {
        let dir = out
            .join(&dataset.name)
            .join(format!("{variant}-{critic}-seed{seed}"));
        let done = dir.join("cell.json");
        let label = format!("{} · {variant} · {critic} · seed {seed}", dataset.name);
        if let Ok(text) = std::fs::read_to_string(&done) {
            if let Ok(rows) = serde_json::from_str::<Vec<CellResult>>(&text) {
                println!("cell {}/{total}: {label}: finished, skipped", i + 1);
                all.extend(rows);
                continue;
            }
        }
        if args.tables_only {
            println!("cell {}/{total}: {label}: not finished", i + 1);
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
        println!("cell {}/{total}: {label}{left}", i + 1);
        ran += 1;
        let pairs = resolve(&base, &dataset.pairs);
        let mut config = match &dataset.config {
            Some(p) => TrainConfig::from_toml_file(&resolve(&base, p))?,
            None => TrainConfig::default(),
        };
        config.train.critic = critic.parse::<Critic>()?;
        config.train.bottleneck.mode = variant.parse().map_err(|e: String| anyhow::anyhow!(e))?;
        config.train.seed = seed;
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
        )?;
        let eval = EvalArgs {
            pairs: pairs.clone(),
            method: methods.clone(),
            levels: grid.levels.clone(),
            seed: 0,
            limit: dataset.eval_pairs,
            out: dir.join("results.csv"),
            resume: true,
            border: "reflect".into(),
            init: "identity".into(),
            config: None,
            export_cases: None,
            model: Some(model.clone()),
            split: EvalSplit::Test,
            // The paper registered the representations with the reference α-AMD settings.
            reference_aamd: true,
            fixed_modality: comir_represent::Modality::A,
            no_histogram_match: false,
            rotation_average: false,
            raw_method: Vec::new(),
            device: "cpu".into(),
            report: None,
        };
        let rows = evaluate(&eval)?;
        let mut results = Vec::new();
        for m in super::eval::method_labels(&eval) {
            let mine: Vec<_> = rows.iter().filter(|r| r.method == m).collect();
            let successes = mine.iter().filter(|r| r.success).count();
            results.push(CellResult {
                dataset: dataset.name.clone(),
                variant: variant.clone(),
                critic: critic.clone(),
                seed,
                steps: summary.steps,
                method: m.clone(),
                cases: mine.len(),
                successes,
                rate: successes as f64 / mine.len().max(1) as f64,
            });
        }
        if grid.analyze {
            super::analyze::run(AnalyzeArgs {
                model: model.clone(),
                pairs: pairs.clone(),
                out: dir.join("analysis"),
                patches: grid.analysis_patches,
                patch_size: None,
                seed: 0,
                angle_step: 90.0,
            })
            .with_context(|| format!("analysing {label}"))?;
        }
        comir_fs::write_atomically(&done, &serde_json::to_vec_pretty(&results)?)
            .with_context(|| format!("{}", done.display()))?;
        all.extend(results);
    }
    crate::csv_out::write_csv(&out.join("results.csv"), &all)?;
    let table = markdown(&all);
    comir_fs::write_atomically(&out.join("results.md"), table.as_bytes())
        .with_context(|| format!("{}", out.join("results.md").display()))?;
    println!("\n{table}");
    if let Some(dir) = &args.report {
        let page = write_report(dir, &args.grid, &grid, &out, &all)?;
        println!("report: {}", page.display());
    }
    println!(
        "results: {} and results.md",
        out.join("results.csv").display()
    );
    Ok(())
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
    let md = markdown(rows);
    let mut lines = md
        .lines()
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|r| !r.iter().all(|c| c.chars().all(|ch| ch == '-')));
    let header = lines.next().unwrap_or_default();
    let table: Vec<Vec<String>> = lines.collect();
    let mut cells = Vec::new();
    for &seed in &grid.seeds {
        for d in &grid.datasets {
            for v in &grid.variants {
                for c in &grid.critics {
                    let analysis = out
                        .join(&d.name)
                        .join(format!("{v}-{c}-seed{seed}"))
                        .join("analysis");
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
                            label: format!("{} · {v} · {c} · seed {seed}", d.name),
                            pictures,
                        });
                    }
                }
            }
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
    fn the_table_averages_over_seeds() {
        let row = |seed, rate| CellResult {
            dataset: "d".into(),
            variant: "off".into(),
            critic: "mse".into(),
            seed,
            steps: 1,
            method: "comir+aamd".into(),
            cases: 4,
            successes: 0,
            rate,
        };
        let t = markdown(&[row(0, 0.5), row(1, 1.0), row(2, 0.75)]);
        // mean 75, sample std 25
        assert!(
            t.contains("| d | off | mse | comir+aamd | 75.0 ± 25.0 | 3 | 12 |"),
            "{t}"
        );
    }
}
