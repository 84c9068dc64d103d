//! The grid of a study: its datasets and the cells (dataset × variant × critic × seed) it runs,
//! read from TOML.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use comir_model::loss::Critic;
use comir_train::BottleneckMode;
use serde::Deserialize;

use crate::methods::MethodName;

/// Default limit on the cells of a grid.
pub const DEFAULT_MAX_EXPERIMENT_CELLS: usize = 10_000;

/// The limit on the cells of a grid: the environment variable `COMIR_MAX_EXPERIMENT_CELLS`
/// when set to a number, else [`DEFAULT_MAX_EXPERIMENT_CELLS`].
pub fn max_experiment_cells() -> usize {
    std::env::var("COMIR_MAX_EXPERIMENT_CELLS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(DEFAULT_MAX_EXPERIMENT_CELLS)
}

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
        // A grid is a page of TOML; a file of megabytes is not one, and parsing it would take
        // many times its size.
        const MAX_GRID_BYTES: u64 = 1 << 20;
        let size = std::fs::metadata(path)
            .with_context(|| format!("{}", path.display()))?
            .len();
        if size > MAX_GRID_BYTES {
            bail!(
                "{}: invalid grid: the file is {size} bytes, more than the {MAX_GRID_BYTES} a grid may take",
                path.display()
            );
        }
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
        // Every cell trains a model: a grid of more is a typo, and its list of cells alone
        // could take gigabytes.
        let cells = [
            self.seeds.len(),
            self.datasets.len(),
            self.variants.len(),
            self.critics.len(),
        ]
        .iter()
        .fold(1usize, |n, &k| n.saturating_mul(k));
        let max_cells = max_experiment_cells();
        if cells > max_cells {
            return Err(format!(
                "{cells} cells (seeds × datasets × variants × critics), more than the limit of \
                 {max_cells} (raise COMIR_MAX_EXPERIMENT_CELLS to allow it)"
            ));
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

/// `p` relative to `base` unless it is absolute.
pub(crate) fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
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
