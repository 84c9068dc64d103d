//! A trained CoMIR model on disk: one folder that inference needs nothing else to use.
//!
//! ```text
//! MODEL_DIR/
//!   model.json     what the networks are (ModelCard: format version, both configurations,
//!                  the input transforms, and the training recipe and summary as written by
//!                  comir-train)
//!   weights.bpk    both networks' parameters and batch-norm statistics (burn's burnpack
//!                  format; parameter paths `a.*` and `b.*`)
//! ```
//!
//! Both files are written to a temporary file in the folder and renamed, so a crash leaves the
//! old or the new file, never a torn one. A model folder from another format version is refused
//! with a message that says which version it is.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::{DenseUNet, DenseUNetConfig};

/// `format` field of every `model.json`.
pub const MODEL_FORMAT: &str = "comir-model";
/// Version of the folder layout; bumped when an old reader could misread a new folder.
pub const MODEL_FORMAT_VERSION: u32 = 1;
/// File name of the card.
pub const CARD_FILE: &str = "model.json";
/// File name of the weights.
pub const WEIGHTS_FILE: &str = "weights.bpk";

/// Errors of loading or saving a model folder; each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file exists but is not what it should be.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Per-modality intensity transform applied before the network (method-notes §1.6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputTransform {
    /// `log(1 + x)` on modality A (the reference does it for SHG).
    pub log_a: bool,
    /// `log(1 + x)` on modality B.
    pub log_b: bool,
}

/// What a model folder holds, as `model.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// Always [`MODEL_FORMAT`].
    pub format: String,
    /// [`MODEL_FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// Version of comir that wrote the folder.
    pub comir_version: String,
    /// Network of modality A.
    pub network_a: DenseUNetConfig,
    /// Network of modality B.
    pub network_b: DenseUNetConfig,
    /// Intensity transforms applied to the inputs.
    pub input: InputTransform,
    /// Training recipe and summary (free-form, written by the trainer; kept for provenance).
    #[serde(default)]
    pub training: serde_json::Value,
}

impl ModelCard {
    /// A card for two networks, stamped with this version of comir.
    pub fn new(
        network_a: DenseUNetConfig,
        network_b: DenseUNetConfig,
        input: InputTransform,
    ) -> ModelCard {
        ModelCard {
            format: MODEL_FORMAT.to_string(),
            format_version: MODEL_FORMAT_VERSION,
            comir_version: env!("CARGO_PKG_VERSION").to_string(),
            network_a,
            network_b,
            input,
            training: serde_json::Value::Null,
        }
    }
}

/// Both networks as one module, so that their weights travel in one file.
#[derive(Module, Debug)]
pub struct NetworkPair {
    /// Network of modality A.
    pub a: DenseUNet,
    /// Network of modality B.
    pub b: DenseUNet,
}

impl NetworkPair {
    /// Serialises both networks' parameters (burnpack bytes).
    ///
    /// # Errors
    /// burn could not encode the record.
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let bytes = self
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| e.to_string())?;
        Ok(bytes.to_vec())
    }

    /// Loads parameters written by [`NetworkPair::to_bytes`] into networks built from the same
    /// configurations (parameter ids are restored too, so optimiser state keyed by id still
    /// matches).
    ///
    /// # Errors
    /// The bytes are not a burnpack record or do not fit the networks (shape or name mismatch).
    pub fn load_bytes(self, bytes: &[u8]) -> Result<NetworkPair, String> {
        let record = ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes.to_vec()))
            .map_err(|e| e.to_string())?;
        self.try_load_record(record).map_err(|e| e.to_string())
    }
}

/// A loaded model: its card and both networks.
#[derive(Debug)]
pub struct Model {
    /// What the folder says about the model.
    pub card: ModelCard,
    /// The two networks.
    pub networks: NetworkPair,
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
///
/// # Errors
/// The folder is not writable.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    comir_image::io::write_file_atomically(path, bytes).map_err(|source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl Model {
    /// Writes `model.json` and `weights.bpk` into `dir` (created if missing), weights first.
    ///
    /// # Errors
    /// The folder or a file cannot be written.
    pub fn save(&self, dir: &Path) -> Result<(), StoreError> {
        save_parts(dir, &self.card, &self.networks)
    }

    /// Reads a model folder and builds both networks on `device`.
    ///
    /// # Errors
    /// Missing or unreadable files, a card of another format or version, configurations that do
    /// not validate, or weights that do not fit them — each names the file.
    pub fn load(dir: &Path, device: &Device) -> Result<Model, StoreError> {
        let card = read_card(dir)?;
        let weights = dir.join(WEIGHTS_FILE);
        let invalid = |reason: String| StoreError::Invalid {
            path: weights.clone(),
            reason,
        };
        let bytes = std::fs::read(&weights).map_err(|source| StoreError::Io {
            path: weights.clone(),
            source,
        })?;
        let card_path = dir.join(CARD_FILE);
        let build = |c: &DenseUNetConfig| {
            c.try_init(device).map_err(|e| StoreError::Invalid {
                path: card_path.clone(),
                reason: e.to_string(),
            })
        };
        let networks = NetworkPair {
            a: build(&card.network_a)?,
            b: build(&card.network_b)?,
        }
        .load_bytes(&bytes)
        .map_err(|e| {
            invalid(format!(
                "weights do not fit the networks of model.json: {e}"
            ))
        })?;
        Ok(Model { card, networks })
    }
}

/// Writes a model folder from its parts (see [`Model::save`]).
///
/// # Errors
/// The folder or a file cannot be written.
pub fn save_parts(dir: &Path, card: &ModelCard, networks: &NetworkPair) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let weights = dir.join(WEIGHTS_FILE);
    let bytes = networks.to_bytes().map_err(|reason| StoreError::Invalid {
        path: weights.clone(),
        reason,
    })?;
    write_atomically(&weights, &bytes)?;
    let card_path = dir.join(CARD_FILE);
    let json = serde_json::to_vec_pretty(card).map_err(|e| StoreError::Invalid {
        path: card_path.clone(),
        reason: e.to_string(),
    })?;
    write_atomically(&card_path, &json)
}

/// Reads and checks `model.json`.
///
/// # Errors
/// Missing file, not JSON, another format or version.
pub fn read_card(dir: &Path) -> Result<ModelCard, StoreError> {
    let path = dir.join(CARD_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| StoreError::Io {
        path: path.clone(),
        source,
    })?;
    let invalid = |reason: String| StoreError::Invalid {
        path: path.clone(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(MODEL_FORMAT) {
        return Err(invalid(format!(
            "not a comir model card (no \"format\": \"{MODEL_FORMAT}\")"
        )));
    }
    let version = value.get("format_version").and_then(|v| v.as_u64());
    if version != Some(u64::from(MODEL_FORMAT_VERSION)) {
        return Err(invalid(format!(
            "model format version {} is not supported by this comir (it reads version {MODEL_FORMAT_VERSION})",
            version.map_or("?".to_string(), |v| v.to_string())
        )));
    }
    let card: ModelCard =
        serde_json::from_value(value).map_err(|e| invalid(format!("malformed card: {e}")))?;
    for c in [&card.network_a, &card.network_b] {
        c.validate().map_err(|e| invalid(e.to_string()))?;
    }
    if card.network_a.out_channels != card.network_b.out_channels {
        return Err(invalid(
            "the two networks have different representation channel counts".to_string(),
        ));
    }
    Ok(card)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> DenseUNetConfig {
        DenseUNetConfig {
            init_filters: 4,
            down_blocks: vec![1, 1],
            up_blocks: vec![1, 1],
            bottleneck_layers: 1,
            growth_rate: 2,
            ..DenseUNetConfig::small(1)
        }
    }

    #[test]
    fn a_saved_model_loads_with_identical_outputs() {
        let device = Device::flex();
        device.seed(3);
        let card = ModelCard::new(tiny(), tiny(), InputTransform::default());
        let model = Model {
            card: card.clone(),
            networks: NetworkPair {
                a: tiny().init(&device),
                b: tiny().init(&device),
            },
        };
        let dir = tempfile::tempdir().expect("tempdir");
        model.save(dir.path()).expect("save");
        device.seed(99); // different init: only the loaded weights can make the outputs agree
        let loaded = Model::load(dir.path(), &device).expect("load");
        assert_eq!(loaded.card, card);
        let x = burn::tensor::Tensor::<4>::random(
            [1, 1, 8, 8],
            burn::tensor::Distribution::Default,
            &device,
        );
        for (n1, n2) in [
            (&model.networks.a, &loaded.networks.a),
            (&model.networks.b, &loaded.networks.b),
        ] {
            let y1: Vec<f32> = n1
                .forward(x.clone())
                .representation
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32");
            let y2: Vec<f32> = n2
                .forward(x.clone())
                .representation
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32");
            assert_eq!(y1, y2);
        }
    }

    #[test]
    fn cards_of_other_versions_and_torn_weights_are_refused_with_the_file_name() {
        let device = Device::flex();
        let dir = tempfile::tempdir().expect("tempdir");
        let model = Model {
            card: ModelCard::new(tiny(), tiny(), InputTransform::default()),
            networks: NetworkPair {
                a: tiny().init(&device),
                b: tiny().init(&device),
            },
        };
        model.save(dir.path()).expect("save");
        // Truncated weights.
        let w = dir.path().join(WEIGHTS_FILE);
        let bytes = std::fs::read(&w).expect("read");
        std::fs::write(&w, &bytes[..bytes.len() / 2]).expect("write");
        let e = Model::load(dir.path(), &device).expect_err("torn weights");
        assert!(e.to_string().contains("weights.bpk"), "{e}");
        // Another format version.
        let card = dir.path().join(CARD_FILE);
        let text = std::fs::read_to_string(&card).expect("read");
        std::fs::write(
            &card,
            text.replace("\"format_version\": 1", "\"format_version\": 99"),
        )
        .expect("write");
        let e = Model::load(dir.path(), &device).expect_err("version");
        assert!(e.to_string().contains("version 99"), "{e}");
        assert!(e.to_string().contains("model.json"), "{e}");
        // Not a card at all.
        std::fs::write(&card, "[1, 2]").expect("write");
        assert!(Model::load(dir.path(), &device).is_err());
    }
}
