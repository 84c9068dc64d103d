//! `comir import-torch`: a comir model folder from the weights of the official PyTorch CoMIR
//! (one DenseUNet `state_dict` per modality, saved as safetensors).

use std::path::PathBuf;

use anyhow::Result;
use comir_pipeline::import_torch::{import_torch, ImportOptions};
use comir_pipeline::Preset;

/// Arguments of `comir import-torch`.
#[derive(clap::Args)]
#[command(
    after_help = "Example (in Python, with the official CoMIR networks modelA, modelB):\n  \
    from safetensors.torch import save_file\n  \
    save_file(modelA.state_dict(), 'a.safetensors'); save_file(modelB.state_dict(), 'b.safetensors')\n\
then:\n  \
    comir import-torch --a a.safetensors --b b.safetensors --preset histology --log-a --out shg-he-model\n  \
    comir represent --model shg-he-model --modality a --input shg.tif --out shg_comir.tif\n\n\
The architecture (preset, or the [network] section of --config) must be the one the weights \
were trained with; input and representation channels are read from the files."
)]
pub struct ImportTorchArgs {
    /// state_dict of the modality-A network (safetensors).
    #[arg(long)]
    pub a: PathBuf,
    /// state_dict of the modality-B network (safetensors).
    #[arg(long)]
    pub b: PathBuf,
    /// Model folder to write (weights.bpk + model.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Architecture of both networks: the reference histology DenseUNet or the small one.
    #[arg(long, default_value = "histology")]
    pub preset: Preset,
    /// A training config (TOML) whose [network] section gives another architecture.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The networks were trained on log(1 + x) of modality A (the reference does so for SHG).
    #[arg(long)]
    pub log_a: bool,
    /// The same for modality B.
    #[arg(long)]
    pub log_b: bool,
}

/// Runs `comir import-torch`.
pub fn run(args: ImportTorchArgs) -> Result<()> {
    let options = ImportOptions {
        a: args.a,
        b: args.b,
        out: args.out,
        preset: args.preset,
        config: args.config,
        log_a: args.log_a,
        log_b: args.log_b,
    };
    let imported = import_torch(&options)?;
    println!(
        "imported: {} (A: {} → {} channels, B: {} → {}; {} parameters each)",
        options.out.display(),
        imported.a.in_channels,
        imported.a.out_channels,
        imported.b.in_channels,
        imported.b.out_channels,
        imported.parameters
    );
    Ok(())
}
