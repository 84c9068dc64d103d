//! `comir eval`.

use std::path::PathBuf;

use anyhow::Result;
use comir_pipeline::eval::{evaluate, EvalOptions};
use comir_pipeline::{Border, DisplacementKind, TransformStages};

use crate::console::{print_evaluation, Terminal};
use crate::values::{methods, MethodArg, ModelArgs, SplitArg};

/// Arguments of `comir eval`.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  comir eval --pairs data/demo --method mi,aamd --levels 1,2,3,4 --seed 0 --out results.csv\n  \
    comir eval --pairs data/demo --model demo-results/model --method aamd --raw-method mi \\\n      \
    --out results.csv --report report   # then open report/index.html"
)]
pub struct EvalArgs {
    /// Folder with A/ and B/ holding aligned pairs with matching file names.
    #[arg(long)]
    pub pairs: PathBuf,
    /// Method(s), comma-separated; all see the same displaced images.
    #[arg(long, value_enum, value_delimiter = ',', required = true)]
    pub method: Vec<MethodArg>,
    /// Transformation levels (rotation ±[5(L−1), 5L)°, translation ±[s(L−1), sL) px, s = 7w/300).
    #[arg(long, value_delimiter = ',', default_values_t = [1u32, 2, 3, 4])]
    pub levels: Vec<u32>,
    /// Seed of the displacements and of the methods.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Use only the first N pairs (sorted by name).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Results CSV, rewritten (atomically) after every pair.
    #[arg(long)]
    pub out: PathBuf,
    /// Keep the rows already in --out and run only the missing cases.
    #[arg(long)]
    pub resume: bool,
    /// Fill outside the displaced image by mirroring (MultiRegEval, default) or with zeros.
    #[arg(long, value_parser = ["reflect", "zero"], default_value = "reflect")]
    pub border: String,
    /// Start each local method from a global FFT search.
    #[arg(long, value_parser = ["identity", "global"], default_value = "identity")]
    pub init: String,
    /// The transform each method estimates: rigid, similarity or affine, or a chain run in
    /// order (e.g. rigid,affine; later stages use MI), optionally ending in bspline; or auto
    /// (comir register's default: MI chooses between rigid and similarity,affine per case).
    #[arg(long, default_value = "rigid")]
    pub transform: TransformStages,
    /// Largest control-point spacing of a bspline stage, in pixels (default 64).
    #[arg(long)]
    pub grid_spacing: Option<f64>,
    /// The displacements: rigid (MultiRegEval's rotation and translation), affine (plus
    /// per-axis scale and shear of 2.5 % per level; the error is then the mean over a dense grid)
    /// or elastic (the affine draw plus a smooth deformation of up to 1 % of the width per level).
    #[arg(long, value_parser = ["rigid", "affine", "elastic"], default_value = "rigid")]
    pub displacement: String,
    /// Method settings (TOML with sections [aamd], [mi], [bspline], [features], [global]).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// With --model, which pairs: `test` (default), those the model was neither trained nor
    /// validated on; or `validation`, only those it was validated on, to choose settings
    /// without looking at the test pairs.
    #[arg(long, value_enum, default_value = "test", requires = "model")]
    pub split: SplitArg,
    /// Method(s) run on the raw images in the same run, for comparison (with --model).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub raw_method: Vec<MethodArg>,
    /// Also write every case (fixed and displaced moving image as float TIFF, true transform in
    /// cases.csv) to this folder, so that other tools can be run on exactly the same cases.
    #[arg(long)]
    pub export_cases: Option<PathBuf>,
    /// Write a visual report (index.html and its PNGs) to this folder: tables, success against
    /// displacement, error scatter, loss curve (with --model) and pictures of sample pairs.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Do not judge the results: leave the confidence and flag columns empty (saves a few
    /// milliseconds per case).
    #[arg(long)]
    pub no_confidence: bool,
}

/// Runs `comir eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let options = EvalOptions {
        levels: args.levels,
        seed: args.seed,
        limit: args.limit,
        resume: args.resume,
        border: if args.border == "zero" {
            Border::Zero
        } else {
            Border::Reflect
        },
        init_global: args.init == "global",
        stages: args.transform,
        grid_spacing: args.grid_spacing,
        displacement: match args.displacement.as_str() {
            "affine" => DisplacementKind::Affine,
            "elastic" => DisplacementKind::Elastic,
            _ => DisplacementKind::Rigid,
        },
        config: args.config,
        model: args.model.options(),
        split: args.split.into(),
        raw_methods: methods(&args.raw_method),
        export_cases: args.export_cases,
        report: args.report,
        confidence: !args.no_confidence,
        ..EvalOptions::new(args.pairs, methods(&args.method), args.out)
    };
    let evaluated = evaluate(&options, &mut Terminal)?;
    print_evaluation(&evaluated);
    println!("results: {}", options.out.display());
    Ok(())
}
