//! What a model card says about how its networks were made: the `training` entry of
//! `model.json` ([`crate::ModelCard::training`]), typed.
//!
//! Three forms occur in format version 1 (`crate::store::MODEL_FORMAT_VERSION`), and all three
//! are read and written with the same JSON as before the record was typed:
//!
//! * `null` (or the key absent): nothing recorded ([`TrainingRecord::Unrecorded`]), e.g. a card
//!   made by [`crate::ModelCard::new`] and saved as it is;
//! * `{"config", "split", "steps", "data", "last"}`: a comir training run
//!   ([`TrainingRecord::Run`], written by `comir_train::run::train`);
//! * `{"imported_from": {"a", "b", "format"}}`: weights imported from the PyTorch reference
//!   ([`TrainingRecord::Imported`], written by `comir import-torch`).
//!
//! A run's entry must have all five keys and no others (`last` may be `null`); inside the
//! recipe, missing keys take the defaults documented in [`crate::recipe`]. Anything else is an
//! error that names the key, never a silent fallback.

use std::path::PathBuf;

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::recipe::TrainConfig;

/// The pairs of each part of the split (by pair name).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitNames {
    /// Trained on.
    pub train: Vec<String>,
    /// Validated on.
    pub validation: Vec<String>,
    /// Held out.
    pub test: Vec<String>,
}

/// One row of `history.csv`: the numbers of one training step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryRow {
    /// Step number (1-based: the row after the first step is step 1).
    pub step: usize,
    /// Wall-clock seconds of training so far (summed over resumed runs).
    pub seconds: f64,
    /// Training loss.
    pub loss: f64,
    /// Its InfoNCE part.
    pub contrastive: f64,
    /// Mean squared difference of corresponding representations in the batch.
    pub positive_mse: f64,
    /// Validation InfoNCE, where measured.
    pub val_loss: Option<f64>,
    /// Validation positive-pair error, where measured.
    pub val_positive_mse: Option<f64>,
    /// The bottleneck InfoNCE (unweighted; 0 without bottleneck supervision, and 0 when absent:
    /// rows written before bottleneck supervision existed).
    #[serde(default)]
    pub bottleneck: f64,
    /// The learning rate of this step (the optimiser's, times the schedule's decay; 0 when
    /// absent: rows written before the schedule had a decay).
    #[serde(default)]
    pub lr: f64,
}

/// The image folders a run trained on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataFolders {
    /// Folder of modality-A images.
    pub a: PathBuf,
    /// Folder of modality-B images.
    pub b: PathBuf,
}

/// A comir training run as its model card records it: the recipe, the split and a summary of
/// where the run stands (steps done, the last history row).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingRun {
    /// The recipe the run used (its `schedule.steps` is the run's target step count).
    pub config: TrainConfig,
    /// Which pairs were trained on, validated on and held out.
    pub split: SplitNames,
    /// Steps done when the card was written.
    pub steps: usize,
    /// The image folders trained on.
    pub data: DataFolders,
    /// The last row of the history (`null` when the card was written before the first step).
    pub last: Option<HistoryRow>,
}

/// Where imported weights came from (`imported_from` in the card).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportSource {
    /// The file of the modality-A network, as given on the command line.
    pub a: String,
    /// The file of the modality-B network.
    pub b: String,
    /// What the files are ([`ImportSource::PYTORCH_FORMAT`] for `comir import-torch`).
    pub format: String,
}

impl ImportSource {
    /// `format` of weights imported by `comir import-torch`.
    pub const PYTORCH_FORMAT: &'static str =
        "PyTorch state_dict (safetensors), official CoMIR DenseUNet key names";
}

/// How the networks of a model were made: the `training` entry of `model.json` (see the
/// module documentation for its three JSON forms).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum TrainingRecord {
    /// Nothing recorded (`null`, or no `training` key).
    #[default]
    Unrecorded,
    /// A comir training run.
    Run(Box<TrainingRun>),
    /// Weights imported from another implementation.
    Imported(ImportSource),
}

/// The key of an imported model's record.
const IMPORTED_FROM: &str = "imported_from";

impl Serialize for TrainingRecord {
    /// Goes through `serde_json::Value`, whose objects keep their keys sorted: the entry comes
    /// out byte for byte as format version 1 writers (which built it as a JSON value) wrote it.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value = match self {
            TrainingRecord::Unrecorded => serde_json::Value::Null,
            TrainingRecord::Run(run) => serde_json::to_value(run).map_err(S::Error::custom)?,
            TrainingRecord::Imported(source) => {
                let mut map = serde_json::Map::new();
                map.insert(
                    IMPORTED_FROM.to_string(),
                    serde_json::to_value(source).map_err(S::Error::custom)?,
                );
                serde_json::Value::Object(map)
            }
        };
        value.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for TrainingRecord {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        match value {
            serde_json::Value::Null => Ok(TrainingRecord::Unrecorded),
            serde_json::Value::Object(mut map) if map.contains_key(IMPORTED_FROM) => {
                if let Some(other) = map.keys().find(|k| *k != IMPORTED_FROM) {
                    return Err(D::Error::custom(format!(
                        "training: unknown field `{other}` next to `{IMPORTED_FROM}`"
                    )));
                }
                let source = map.remove(IMPORTED_FROM).unwrap_or_default();
                ImportSource::deserialize(source)
                    .map(TrainingRecord::Imported)
                    .map_err(|e| D::Error::custom(format!("training.{IMPORTED_FROM}: {e}")))
            }
            other => TrainingRun::deserialize(other)
                .map(|run| TrainingRecord::Run(Box::new(run)))
                .map_err(|e| D::Error::custom(format!("training: {e}"))),
        }
    }
}

impl TrainingRecord {
    /// The training run, for a model trained by comir.
    pub fn run(&self) -> Option<&TrainingRun> {
        match self {
            TrainingRecord::Run(run) => Some(run),
            _ => None,
        }
    }
}
