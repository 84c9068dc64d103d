//! `comir import-torch`: a comir model folder from the weights of the official PyTorch CoMIR
//! (one DenseUNet `state_dict` per modality, saved as safetensors).

use std::path::PathBuf;

use anyhow::{Context, Result};
use comir_engine::FastDenseUNet;
use comir_model::store::{save_parts, InputTransform, ModelCard, NetworkPair};
use comir_train::run::{Preset, TrainConfig};

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
    let mut base = match &args.config {
        Some(p) => TrainConfig::from_toml_file(p)?,
        None => TrainConfig::default(),
    };
    if args.config.is_none() || base.network.is_none() {
        base.preset = args.preset;
    }
    let mut networks = Vec::new();
    let mut configs = Vec::new();
    for path in [&args.a, &args.b] {
        let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
        let (cin, d) =
            comir_engine::torch_channels(&bytes).with_context(|| format!("{}", path.display()))?;
        base.out_channels = d;
        let config = base.network_for(cin);
        let net = FastDenseUNet::from_torch_safetensors(&bytes, &config)
            .with_context(|| format!("{}", path.display()))?;
        networks.push(net.to_burn(&Default::default())?);
        configs.push(config);
    }
    if configs[0].out_channels != configs[1].out_channels {
        anyhow::bail!(
            "{} and {}: the networks give {} and {} representation channels; they must agree",
            args.a.display(),
            args.b.display(),
            configs[0].out_channels,
            configs[1].out_channels
        );
    }
    let b = networks.pop().context("two networks")?;
    let a = networks.pop().context("two networks")?;
    let mut card = ModelCard::new(
        configs[0].clone(),
        configs[1].clone(),
        InputTransform {
            log_a: args.log_a,
            log_b: args.log_b,
            normalize_a: false,
            normalize_b: false,
        },
    );
    card.training = serde_json::json!({
        "imported_from": {
            "a": args.a.display().to_string(),
            "b": args.b.display().to_string(),
            "format": "PyTorch state_dict (safetensors), official CoMIR DenseUNet key names",
        }
    });
    save_parts(&args.out, &card, &NetworkPair { a, b })
        .with_context(|| format!("{}", args.out.display()))?;
    println!(
        "imported: {} (A: {} → {} channels, B: {} → {}; {} parameters each)",
        args.out.display(),
        configs[0].in_channels,
        configs[0].out_channels,
        configs[1].in_channels,
        configs[1].out_channels,
        FastDenseUNet::new(&configs[0], 0)?.params().len()
    );
    Ok(())
}
