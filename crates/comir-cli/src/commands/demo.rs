//! `comir demo`: the README's first command (see [`comir_pipeline::demo`]).

use std::path::PathBuf;

use anyhow::Result;
use comir_pipeline::demo::{run_demo, DemoOptions};

use crate::console::{print_evaluation, Terminal};

/// Arguments of `comir demo`.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  comir demo                 # train ~4 minutes, then register the held-out pairs, levels 1-4\n  \
    comir demo --minutes 10    # train longer\n  \
    comir demo --raw           # no training: mi and global on the raw images of all pairs\n  \
    comir demo --pretrained    # no training: through the bundled model mni152-t1t2, seconds\n  \
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
    /// No learning: register through the bundled model mni152-t1t2 (the pairs it was not
    /// trained on), in seconds.
    #[arg(long, conflicts_with_all = ["raw", "quick", "minutes"])]
    pretrained: bool,
    /// Folder of the visual report (index.html + PNGs); default OUT/report.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<()> {
    let options = DemoOptions {
        pairs: args.pairs,
        out: args.out,
        minutes: args.minutes,
        quick: args.quick,
        raw: args.raw,
        pretrained: args.pretrained,
        report: args.report,
    };
    let outcome = run_demo(&options, &mut Terminal)?;
    print_evaluation(&outcome.evaluation);
    if let Some(model) = &outcome.model {
        println!("model: {}", model.display());
    }
    println!("results: {}", outcome.results.display());
    Ok(())
}
