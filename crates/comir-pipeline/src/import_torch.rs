//! A comir model folder from the weights of the official PyTorch CoMIR (one DenseUNet
//! `state_dict` per modality, saved as safetensors): the entry point behind
//! `comir import-torch`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use comir_model::record::{ImportSource, TrainingRecord};
use comir_model::store::{save_parts, InputTransform, ModelCard, NetworkPair};
use comir_model::torch_import::{dense_unet_from_torch, torch_channels};
use comir_model::DenseUNetConfig;
use comir_train::run::{Preset, TrainConfig};

/// What to import, and how.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportOptions {
    /// state_dict of the modality-A network (safetensors).
    pub a: PathBuf,
    /// state_dict of the modality-B network (safetensors).
    pub b: PathBuf,
    /// Model folder to write (weights.bpk + model.json).
    pub out: PathBuf,
    /// Architecture of both networks, unless `config` gives one.
    pub preset: Preset,
    /// A training config (TOML) whose `[network]` section gives another architecture.
    pub config: Option<PathBuf>,
    /// The networks were trained on log(1 + x) of modality A (the reference does so for SHG).
    pub log_a: bool,
    /// The same for modality B.
    pub log_b: bool,
}

/// What [`import_torch`] wrote.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The network of modality A.
    pub a: DenseUNetConfig,
    /// The network of modality B.
    pub b: DenseUNetConfig,
    /// Parameters of each network.
    pub parameters: usize,
}

/// Reads both state_dicts (input and representation channels from the files), converts them
/// and writes the model folder.
///
/// # Errors
/// Unreadable or mismatching weights, networks that disagree on the representation channels,
/// or an unwritable folder.
pub fn import_torch(options: &ImportOptions) -> Result<Imported> {
    let mut base = match &options.config {
        Some(p) => TrainConfig::from_toml_file(p)?,
        None => TrainConfig::default(),
    };
    if options.config.is_none() || base.network.is_none() {
        base.preset = options.preset;
    }
    let mut networks = Vec::new();
    let mut configs = Vec::new();
    for path in [&options.a, &options.b] {
        let bytes = comir_model::torch_import::read_limited(path)?;
        let (cin, d) = torch_channels(&bytes).with_context(|| format!("{}", path.display()))?;
        base.out_channels = d;
        let config = base.network_for(cin);
        let net = dense_unet_from_torch(&bytes, &config, &Default::default())
            .with_context(|| format!("{}", path.display()))?;
        networks.push(net);
        configs.push(config);
    }
    if configs[0].out_channels != configs[1].out_channels {
        anyhow::bail!(
            "{} and {}: the networks give {} and {} representation channels; they must agree",
            options.a.display(),
            options.b.display(),
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
            log_a: options.log_a,
            log_b: options.log_b,
            normalize_a: false,
            normalize_b: false,
        },
    );
    card.training = TrainingRecord::Imported(ImportSource {
        a: options.a.display().to_string(),
        b: options.b.display().to_string(),
        format: ImportSource::PYTORCH_FORMAT.to_string(),
    });
    let parameters = comir_model::trainable_param_count(&a);
    save_parts(&options.out, &card, &NetworkPair { a, b })
        .with_context(|| format!("{}", options.out.display()))?;
    let b = configs.pop().context("two networks")?;
    let a = configs.pop().context("two networks")?;
    Ok(Imported { a, b, parameters })
}
