//! `comir experiment GRID.toml`: the 2023 study as one resumable run (see
//! [`comir_pipeline::experiment`]).

use std::path::PathBuf;

use anyhow::Result;
use comir_pipeline::experiment::{run_experiment, ExperimentOptions};

use crate::console::Terminal;

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

/// Runs `comir experiment`.
pub fn run(args: ExperimentArgs) -> Result<()> {
    let options = ExperimentOptions {
        grid: args.grid,
        report: args.report,
        tables_only: args.tables_only,
    };
    let outcome = run_experiment(&options, &mut Terminal)?;
    if let Some(page) = &outcome.report {
        println!("report: {}", page.display());
    }
    println!("results: {} and results.md", outcome.results.display());
    Ok(())
}
