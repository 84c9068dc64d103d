//! A trained CoMIR model on disk: one folder that inference needs nothing else to use.
//!
//! ```text
//! MODEL_DIR/
//!   model.json     what the networks are (ModelCard: format version, both configurations,
//!                  the input transforms, and how they were made: the training recipe, split
//!                  and summary, or the import; see `crate::record`)
//!   weights.bpk    both networks' parameters and batch-norm statistics (burn's burnpack
//!                  format; parameter paths `a.*` and `b.*`)
//! ```
//!
//! Both files are written to a temporary file in the folder and renamed, so a crash leaves the
//! old or the new file, never a torn one. A model folder from another format version is refused
//! with a message that says which version it is.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::record::{SplitNames, TrainingRecord, TrainingRun};
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
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
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

/// Per-modality intensity transform applied before the network (docs/method.md §1.5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputTransform {
    /// `log(1 + x)` on modality A (the reference does it for SHG).
    pub log_a: bool,
    /// `log(1 + x)` on modality B.
    pub log_b: bool,
    /// Per-image stretch of the 1st–99th percentiles to [0, 1] on modality A, after the log
    /// (`comir_image::ops::network_input`). Absent in older model folders: off.
    pub normalize_a: bool,
    /// The same on modality B.
    pub normalize_b: bool,
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
    /// How the networks were made: the training run (recipe, split, summary) or the import
    /// ([`TrainingRecord`]); absent in a card means [`TrainingRecord::Unrecorded`].
    #[serde(default)]
    pub training: TrainingRecord,
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
            training: TrainingRecord::Unrecorded,
        }
    }

    /// The training run, for a model trained by comir (`None` for imported models and cards
    /// that record nothing).
    pub fn training_run(&self) -> Option<&TrainingRun> {
        self.training.run()
    }

    /// The pairs of each part of the run's split (`None` when the card records no run).
    pub fn split(&self) -> Option<&SplitNames> {
        self.training_run().map(|run| &run.split)
    }

    /// The names of the pairs the networks were trained or validated on: train ∪ validation of
    /// the split. Empty when the card records no run (an imported model's training pairs are
    /// not known).
    pub fn seen_pairs(&self) -> HashSet<String> {
        self.split()
            .map(|s| s.train.iter().chain(&s.validation).cloned().collect())
            .unwrap_or_default()
    }

    /// The float values both networks store (weights, biases, batch-norm statistics).
    ///
    /// # Errors
    /// A network configuration that does not validate.
    pub fn param_count(&self) -> Result<u64, String> {
        let count = |c: &DenseUNetConfig| c.param_count().map_err(|e| e.to_string());
        Ok(count(&self.network_a)?.saturating_add(count(&self.network_b)?))
    }

    /// The names of the pairs the run validated on (empty when the card records no run).
    pub fn validation_pairs(&self) -> HashSet<String> {
        self.split()
            .map(|s| s.validation.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The side of the square training patches: the run's `patches.size`; for a card that
    /// records no run (an imported model), the reference recipe's patch side, 128
    /// (`PatchConfig::default().size`).
    pub fn patch_size(&self) -> usize {
        self.training_run().map_or_else(
            || crate::recipe::PatchConfig::default().size,
            |run| run.config.patches.size,
        )
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
        // burn keeps a batch norm's latest running-statistics update aside (per thread) until
        // the next read, and a record takes the value without it: a checkpoint written right
        // after a training step would miss that step's update, and a run resumed from it would
        // drift from one never interrupted. `valid()` folds the pending updates in, into the
        // state `self` shares.
        let _ = (self.a.valid(), self.b.valid());
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
        check_weights(bytes, &self.tensor_shapes())?;
        let record = ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes.to_vec()))
            .map_err(|e| e.to_string())?;
        self.try_load_record(record).map_err(|e| e.to_string())
    }

    /// Every float tensor of both networks, as `(path, shape)` in the record's naming
    /// (`a.conv_init.weight`, ...), without materialising any of them.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        struct Shapes {
            path: Vec<String>,
            out: Vec<(String, Vec<usize>)>,
        }
        impl burn::module::ModuleVisitor for Shapes {
            fn enter_module(&mut self, name: &str, _container_type: &str) {
                self.path.push(name.to_string());
            }
            fn exit_module(&mut self, _name: &str, _container_type: &str) {
                self.path.pop();
            }
            fn visit_float<const D: usize>(
                &mut self,
                param: &burn::module::Param<burn::tensor::Tensor<D>>,
            ) {
                self.out
                    .push((self.path.join("."), param.lazy_shape().to_vec()));
            }
        }
        let mut shapes = Shapes {
            path: Vec::new(),
            out: Vec::new(),
        };
        self.visit(&mut shapes);
        shapes.out
    }
}

/// Checks a burnpack buffer against the tensors the networks need before burn loads any of it:
/// the same names, the same shapes, f32 values, every value finite. The messages name the
/// tensor.
///
/// # Errors
/// Not a burnpack buffer, a missing, unexpected, mis-shaped or non-f32 tensor, or a NaN or
/// infinite value.
pub fn check_weights(bytes: &[u8], expected: &[(String, Vec<usize>)]) -> Result<(), String> {
    let reader = burn_pack::Reader::from_bytes(burn_pack::Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| format!("not a comir weights file: {e}"))?;
    let names: HashSet<&str> = reader.tensor_names().into_iter().collect();
    if let Some((name, _)) = expected.iter().find(|(n, _)| !names.contains(n.as_str())) {
        return Err(format!("no tensor `{name}`, which the networks have"));
    }
    let wanted: std::collections::HashMap<&str, &[usize]> = expected
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_slice()))
        .collect();
    let tensors = reader
        .into_tensors()
        .map_err(|e| format!("not a comir weights file: {e}"))?;
    for t in &tensors {
        let Some(&shape) = wanted.get(t.name.as_str()) else {
            return Err(format!(
                "tensor `{}`, which the networks do not have",
                t.name
            ));
        };
        if t.shape.as_slice() != shape {
            return Err(format!(
                "tensor `{}` has shape {:?}; the networks need {shape:?}",
                t.name,
                t.shape.as_slice()
            ));
        }
        if t.dtype != burn::tensor::DType::F32 {
            return Err(format!(
                "tensor `{}` holds {:?} values; comir's weights are f32",
                t.name, t.dtype
            ));
        }
        let data = t
            .to_bytes()
            .map_err(|e| format!("tensor `{}`: {e}", t.name))?;
        if let Some(i) = data
            .chunks_exact(4)
            .position(|c| !f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite())
        {
            return Err(format!(
                "tensor `{}` holds a NaN or infinite value (element {i})",
                t.name
            ));
        }
    }
    Ok(())
}

/// Renumbers the parameter ids in a burnpack buffer 1, 2, 3, ... (with the top bit set) in the
/// order they appear. burn draws the ids at random in every process and stores them, so without
/// this two runs that end with the same weights write different `weights.bpk` bytes; inference
/// never looks at the ids. The ids are fixed-width numbers in the file's CBOR header
/// (`"param_id"` followed by an 8-byte integer), so the layout does not change. A buffer that
/// does not look as expected is left alone.
fn canonical_param_ids(mut bytes: Vec<u8>) -> Vec<u8> {
    const KEY: &[u8] = b"\x68param_id\x1b";
    if bytes.len() < 10 || &bytes[..4] != b"NRUB" {
        return bytes;
    }
    let header_len = u32::from_le_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]) as usize;
    let end = (10 + header_len).min(bytes.len());
    let mut next: u64 = 1 << 63;
    let mut i = 10;
    while i + KEY.len() + 8 <= end {
        if &bytes[i..i + KEY.len()] == KEY {
            let at = i + KEY.len();
            bytes[at..at + 8].copy_from_slice(&next.to_be_bytes());
            next += 1;
            i = at + 8;
        } else {
            i += 1;
        }
    }
    bytes
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
    comir_fs::write_atomically(path, bytes).map_err(|error| StoreError::Io {
        path: path.to_path_buf(),
        error,
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
        // A file far larger than the networks' parameters is refused before it is read.
        let params = card.param_count().map_err(&invalid)?;
        let size = std::fs::metadata(&weights)
            .map_err(|error| StoreError::Io {
                path: weights.clone(),
                error,
            })?
            .len();
        // Beyond 4 bytes a value, a burnpack file holds a header and 256-byte alignment per
        // tensor: kilobytes, far below the 16 MiB allowed.
        let most = params.saturating_mul(4).saturating_add(16 << 20);
        if size > most {
            return Err(invalid(format!(
                "the file is {}, more than the {} the networks of model.json can hold",
                crate::limits::mib(size),
                crate::limits::mib(most)
            )));
        }
        let bytes = std::fs::read(&weights).map_err(|error| StoreError::Io {
            path: weights.clone(),
            error,
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
    std::fs::create_dir_all(dir).map_err(|error| StoreError::Io {
        path: dir.to_path_buf(),
        error,
    })?;
    let weights = dir.join(WEIGHTS_FILE);
    let bytes = networks.to_bytes().map_err(|reason| StoreError::Invalid {
        path: weights.clone(),
        reason,
    })?;
    // The same weights give the same file.
    write_atomically(&weights, &canonical_param_ids(bytes))?;
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
    let invalid = |reason: String| StoreError::Invalid {
        path: path.clone(),
        reason,
    };
    let io = |error| StoreError::Io {
        path: path.clone(),
        error,
    };
    // A card lists at most a split's pair names: megabytes, not gigabytes.
    let size = std::fs::metadata(&path).map_err(io)?.len();
    if size > MAX_CARD_BYTES {
        return Err(invalid(format!(
            "the file is {}, more than the {} a model card may take",
            crate::limits::mib(size),
            crate::limits::mib(MAX_CARD_BYTES)
        )));
    }
    let text = std::fs::read_to_string(&path).map_err(io)?;
    parse_card(&text).map_err(invalid)
}

/// Largest `model.json` read: 64 MiB.
pub const MAX_CARD_BYTES: u64 = 64 << 20;

/// Parses and checks the text of a `model.json`: the format and version, the schema, both
/// network configurations against the limits of [`crate::limits`].
///
/// # Errors
/// What is wrong, in one line.
pub fn parse_card(text: &str) -> Result<ModelCard, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(MODEL_FORMAT) {
        return Err(format!(
            "not a comir model card (no \"format\": \"{MODEL_FORMAT}\")"
        ));
    }
    let version = value.get("format_version").and_then(|v| v.as_u64());
    if version != Some(u64::from(MODEL_FORMAT_VERSION)) {
        return Err(format!(
            "model format version {} is not supported by this comir (it reads version {MODEL_FORMAT_VERSION})",
            version.map_or("?".to_string(), |v| v.to_string())
        ));
    }
    let card: ModelCard =
        serde_json::from_value(value).map_err(|e| format!("malformed card: {e}"))?;
    for c in [&card.network_a, &card.network_b] {
        c.validate().map_err(|e| e.to_string())?;
    }
    // Each network fits the budget; both together must too.
    crate::limits::check_budget("the networks have", card.param_count()?)?;
    if card.network_a.out_channels != card.network_b.out_channels {
        return Err("the two networks have different representation channel counts".to_string());
    }
    Ok(card)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> DenseUNetConfig {
        DenseUNetConfig {
            growth_rate: 2,
            ..DenseUNetConfig::tiny()
        }
    }

    #[test]
    fn the_same_weights_give_the_same_file() {
        use burn::module::{ModuleMapper, Param, ParamId};
        use burn::tensor::Tensor;
        /// Gives every parameter a new random id, as another process would have drawn.
        struct NewIds;
        impl ModuleMapper for NewIds {
            fn map_float<const D: usize>(&mut self, mut p: Param<Tensor<D>>) -> Param<Tensor<D>> {
                p.id = ParamId::new();
                p
            }
        }
        let device = Device::flex();
        let model = Model {
            card: ModelCard::new(tiny(), tiny(), InputTransform::default()),
            networks: NetworkPair {
                a: tiny().init(&device),
                b: tiny().init(&device),
            },
        };
        let other = Model {
            card: model.card.clone(),
            networks: NetworkPair {
                a: model.networks.a.clone().map(&mut NewIds),
                b: model.networks.b.clone().map(&mut NewIds),
            },
        };
        // The same weights under other ids: burn's own records differ ...
        assert_ne!(
            model.networks.to_bytes().expect("bytes"),
            other.networks.to_bytes().expect("bytes")
        );
        // ... the files do not.
        let (d1, d2) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        model.save(d1.path()).expect("save");
        other.save(d2.path()).expect("save");
        let read = |d: &Path| std::fs::read(d.join(WEIGHTS_FILE)).expect("weights");
        assert_eq!(read(d1.path()), read(d2.path()));
        // ... and the file still loads.
        Model::load(d2.path(), &device).expect("load");
    }

    /// Found by the kill/resume test of the CLI: a record taken right after a training-mode
    /// forward pass held the batch-norm running statistics of the pass before.
    #[test]
    fn records_hold_the_latest_batch_norm_statistics() {
        let device = Device::flex().autodiff();
        let pair = NetworkPair {
            a: tiny().init(&device),
            b: tiny().init(&device),
        };
        let x = burn::tensor::Tensor::<4>::random(
            [2, 1, 8, 8],
            burn::tensor::Distribution::Default,
            &device,
        );
        for _ in 0..2 {
            let _ = pair.a.forward(x.clone());
        }
        let bytes = pair.to_bytes().expect("record");
        // What the network itself uses from now on (inference mode reads the synced state).
        let current = pair.a.valid();
        let restored = NetworkPair {
            a: tiny().init(&device),
            b: tiny().init(&device),
        }
        .load_bytes(&bytes)
        .expect("load")
        .a
        .valid();
        let probe = x.without_autodiff();
        let out = |n: &DenseUNet| -> Vec<f32> {
            n.forward(probe.clone())
                .representation
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32")
        };
        assert_eq!(out(&restored), out(&current));
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
