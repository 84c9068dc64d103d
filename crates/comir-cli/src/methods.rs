//! Building a registration method from its command-line name and the optional config file.

use std::path::Path;

use anyhow::{Context, Result};
use comir_aamd::{AlphaAmd, AlphaAmdConfig};
use comir_features::{FeatureConfig, FeatureRegistrar};
use comir_globalign::{GlobalSearch, GlobalSearchConfig};
use comir_mi::{MattesMi, MattesMiConfig};
use comir_register::{Chained, MultiStart, Registrar};
use serde::{Deserialize, Serialize};

/// The registration methods, by their command-line names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodName {
    /// α-AMD (Öfverstedt et al. 2019), reference settings, multi-start.
    Aamd,
    /// Mattes mutual information on the raw images, pyramid, multi-start.
    Mi,
    /// SIFT-like keypoints, descriptors and a RANSAC rigid fit.
    Features,
    /// Exhaustive rotation search with all translations at once by FFT (CMIF).
    Global,
}

impl MethodName {
    /// The name used in files and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            MethodName::Aamd => "aamd",
            MethodName::Mi => "mi",
            MethodName::Features => "features",
            MethodName::Global => "global",
        }
    }
}

/// Settings of every method, as read from `--config FILE.toml` (sections `[aamd]`, `[mi]`,
/// `[features]`, `[global]`; every field optional, defaults are the reference settings).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MethodsConfig {
    /// α-AMD settings.
    pub aamd: AlphaAmdConfig,
    /// Mattes MI settings.
    pub mi: MattesMiConfig,
    /// Feature-matching settings.
    pub features: FeatureConfig,
    /// Global-search settings.
    pub global: GlobalSearchConfig,
}

impl MethodsConfig {
    /// Reads a TOML file, or the defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<MethodsConfig> {
        let Some(path) = path else {
            return Ok(MethodsConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read config", path.display()))?;
        let cfg: MethodsConfig = toml::from_str(&text).map_err(|e| {
            // toml's own rendering spans several lines; keep its message and say where.
            let line = e
                .span()
                .and_then(|s| text.get(..s.start))
                .map(|before| format!(" (line {})", before.matches('\n').count() + 1))
                .unwrap_or_default();
            anyhow::anyhow!(
                "{}: invalid config: {}{line}",
                path.display(),
                e.message().trim().replace('\n', "; ")
            )
        })?;
        // Every section is checked, also those of methods this run does not use.
        let invalid =
            |e: comir_register::Error| anyhow::anyhow!("{}: invalid config: {e}", path.display());
        cfg.aamd.validate().map_err(invalid)?;
        cfg.mi.validate().map_err(invalid)?;
        cfg.features.validate().map_err(invalid)?;
        cfg.global.validate().map_err(invalid)?;
        Ok(cfg)
    }

    /// Sets the seed of every method that uses randomness.
    pub fn with_seed(mut self, seed: u64) -> MethodsConfig {
        self.aamd.seed = seed;
        self.mi.seed = seed;
        self.features.seed = seed;
        self.global.seed = seed;
        self
    }
}

/// Builds the registrar for `name`. With `init_global`, a global search runs first and the
/// method refines its result.
pub fn build(
    name: MethodName,
    cfg: &MethodsConfig,
    init_global: bool,
) -> Result<Box<dyn Registrar>> {
    let local: Box<dyn Registrar> = match name {
        MethodName::Aamd => Box::new(AlphaAmd::new(cfg.aamd.clone())?),
        MethodName::Mi => Box::new(MultiStart::reference(MattesMi::new(cfg.mi.clone())?)),
        MethodName::Features => Box::new(FeatureRegistrar::new(cfg.features.clone())?),
        MethodName::Global => Box::new(GlobalSearch::new(cfg.global.clone())?),
    };
    if init_global && name != MethodName::Global {
        let global = GlobalSearch::new(cfg.global.clone())?;
        return Ok(Box::new(Chained {
            first: global,
            then: local,
        }));
    }
    Ok(local)
}
