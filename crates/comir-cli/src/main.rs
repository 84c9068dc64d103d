//! `comir`: register multimodal images and evaluate registration.
//!
//! This binary is glue: each command parses its flags, calls one entry point of
//! `comir-pipeline`, and prints what it returns; progress bars are drawn by [`console`]. All
//! the work happens in the `comir-*` library crates. Errors are printed once, on one
//! line, and the process exits with status 2.

mod commands;
mod console;
mod values;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Multimodal image registration through learned contrastive representations (CoMIR).
#[derive(Parser)]
#[command(name = "comir", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Register a moving image to a fixed image (rigid, similarity or affine) and write the
    /// transform.
    Register(commands::register::RegisterArgs),
    /// Register a whole collection of unaligned pairs, learning a CoMIR from the collection
    /// itself: raw MI first, then rounds of learning and registering through the model, with a
    /// confidence per pair.
    Align(commands::align::AlignArgs),
    /// Map point coordinates (landmarks, annotations) through a registration's transform.
    TransformPoints(commands::transform_points::TransformPointsArgs),
    /// Evaluate a method on aligned pairs with the MultiRegEval protocol.
    Eval(commands::eval::EvalArgs),
    /// Train a CoMIR (one network per modality) on aligned image pairs.
    Train(commands::train::TrainArgs),
    /// Map an image to its learned representation with a trained model.
    Represent(commands::represent::RepresentArgs),
    /// Analyse a trained model on held-out pairs: MDS maps, covariance spectra, modality gap,
    /// rotation equivariance.
    Analyze(commands::analyze::AnalyzeArgs),
    /// Run the 2023 study (or any grid of datasets × bottleneck variants × critics × seeds):
    /// train, evaluate and analyse every cell, resumably.
    Experiment(commands::experiment::ExperimentArgs),
    /// Run the demonstration on the bundled MR pairs: learn a CoMIR for a few minutes, then
    /// register the held-out pairs through it and with MI on the raw images.
    Demo(commands::demo::DemoArgs),
    /// Import the weights of the official PyTorch CoMIR (state_dicts as safetensors) into a
    /// model folder.
    ImportTorch(commands::import_torch::ImportTorchArgs),
    /// List the models that ship with comir (usable by name: `--model mni152-t1t2`).
    Models(commands::models::ModelsArgs),
}

/// `--version`: the version and the instruction set of the kernels.
fn long_version() -> &'static str {
    let isa = comir_cpu::active();
    let available: Vec<&str> = comir_cpu::Isa::available()
        .iter()
        .map(|i| i.name())
        .collect();
    let text = format!(
        "{} (kernels: {isa}; this CPU runs {}; {} chooses)",
        env!("CARGO_PKG_VERSION"),
        available.join(", "),
        comir_cpu::ENV
    );
    Box::leak(text.into_boxed_str())
}

/// Large buffers start on a cache line: the kernels' row accesses then never straddle two.
#[global_allocator]
static ALLOC: comir_cpu::CacheLineAlloc = comir_cpu::CacheLineAlloc;

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Register(args) => commands::register::run(args),
        Command::Align(args) => commands::align::run(args),
        Command::TransformPoints(args) => commands::transform_points::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Demo(args) => commands::demo::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Represent(args) => commands::represent::run(args),
        Command::Analyze(args) => commands::analyze::run(args),
        Command::Experiment(args) => commands::experiment::run(args),
        Command::ImportTorch(args) => commands::import_torch::run(args),
        Command::Models(args) => commands::models::run(args),
    }
}

fn main() -> ExitCode {
    // A bad COMIR_ISA is refused before anything runs, instead of silently falling back.
    if let Err(e) = comir_cpu::requested() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let parsed = Cli::command()
        .version(long_version())
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        // --help and --version print and exit 0 as clap does.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // A bad flag or value: one line, like every other error, without clap's
            // "For more information, try '--help'" tail.
            let text = e.render().to_string();
            let line = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
                .collect::<Vec<_>>()
                .join(" ");
            let line = line.strip_prefix("error: ").unwrap_or(&line).to_string();
            eprintln!("error: {line}");
            return ExitCode::from(2);
        }
    };
    // The command runs on the thread pool (with a main thread's stack), so that its parallel
    // loops start there instead of each being handed over from this thread.
    if let Err(e) = comir_cpu::build_pool() {
        eprintln!("error: cannot start the worker threads: {e}");
        return ExitCode::from(2);
    }
    let result = comir_cpu::on_pool(|| run(cli.command));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
