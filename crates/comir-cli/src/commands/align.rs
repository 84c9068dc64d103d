//! `comir align`.

use std::path::PathBuf;

use anyhow::Result;
use comir_pipeline::align::{align, AlignOptions};
use comir_pipeline::{Preset, TransformStages};

use crate::console::Terminal;
use crate::values::MethodArg;

/// Arguments of `comir align`.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  comir align --pairs raw/ --out aligned/ --report\n  \
    comir align --pairs raw/ --out aligned/ --transform similarity,affine,bspline --minutes 15\n\n\
    PAIRS holds A/ (fixed) and B/ (moving) images matched by file name, of any size, RGB allowed, \
    not aligned. OUT gets transforms/NAME.json and .tfm per pair, results.csv (the kept result of \
    every pair after every round, with its confidence), model/ (the CoMIR learned from the \
    collection), align-state.json, and with --warped warped/NAME.png, with --report report/index.html."
)]
pub struct AlignArgs {
    /// Folder holding A/ and B/ with the images of each pair under the same file name.
    #[arg(long)]
    pub pairs: PathBuf,
    /// Output folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// The transform of every registration: auto (the default: on the raw images MI fits a rigid
    /// and a similarity,affine result and keeps the rigid one unless the affine one is clearly
    /// better, as comir register does; through the model, similarity,affine) or a chain (e.g.
    /// affine or rigid,affine,bspline).
    #[arg(long, default_value = "auto")]
    pub transform: TransformStages,
    /// The method of the raw registrations: mi (default) or ngf (MI refined by normalised
    /// gradient fields, for CT vs MR).
    #[arg(long, value_enum, default_value = "mi")]
    pub raw_method: MethodArg,
    /// Control-point spacing in pixels of a bspline stage.
    #[arg(long)]
    pub grid_spacing: Option<f64>,
    /// Learned rounds at most, after the raw round; they also stop when the collection's mean
    /// confidence stops rising.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Time budget: training stops once it has taken this long, and no round starts that
    /// would, going by the last one, end after it (the result then depends on the machine's
    /// speed).
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Network size: fast (default), small or histology.
    #[arg(long)]
    pub preset: Option<Preset>,
    /// Training recipe (TOML, as comir train --config); default: fast network, 64² patches,
    /// batch 12, percentile normalisation, 1600 steps in the first round.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Training steps of the first learned round (later rounds add half as many).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue a killed run from OUT (same arguments).
    #[arg(long)]
    pub resume: bool,
    /// Also write each moving image resampled into its fixed image's frame.
    #[arg(long)]
    pub warped: bool,
    /// Also write an HTML report: OUT/report/index.html (per round the confidence histogram and
    /// the pairs that changed; per pair overlays of the first and the kept result, doubtful
    /// pairs first).
    #[arg(long)]
    pub report: bool,
    /// Compute device of training and representations: cpu (default), wgpu or cuda.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Runs `comir align`.
pub fn run(args: AlignArgs) -> Result<()> {
    let options = AlignOptions {
        pairs: args.pairs,
        out: args.out,
        stages: args.transform,
        raw_method: args.raw_method.into(),
        grid_spacing: args.grid_spacing,
        rounds: args.rounds,
        minutes: args.minutes,
        preset: args.preset,
        config: args.config,
        steps: args.steps,
        seed: args.seed,
        resume: args.resume,
        warped: args.warped,
        report: args.report,
        device: args.device,
    };
    let summary = align(&options, &mut Terminal)?;
    for (name, why) in &summary.skipped {
        eprintln!("skipped '{name}': {why}");
    }
    if let Some(last) = summary.rounds.last() {
        let doubtful: Vec<&str> = last
            .results
            .values()
            .filter(|r| r.record.flag.as_deref() != Some("ok"))
            .map(|r| r.name.as_str())
            .collect();
        println!(
            "aligned {} pairs in {} rounds ({}): {} ok, {} doubtful{}",
            last.results.len(),
            summary.rounds.len(),
            summary.stop,
            last.confident,
            doubtful.len(),
            if doubtful.is_empty() {
                String::new()
            } else {
                format!(" ({})", doubtful.join(", "))
            }
        );
    }
    println!("results: {}", options.out.join("results.csv").display());
    if options.report {
        println!(
            "report: {}",
            options.out.join("report").join("index.html").display()
        );
    }
    Ok(())
}
