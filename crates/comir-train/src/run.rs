//! A whole training run: data split, patch sampling, steps, validation, checkpoints, resume, and
//! the model folder that inference reads.
//!
//! The model folder (see `comir_model::store`) gets, besides `model.json` and `weights.bpk`:
//! * `checkpoint.bin`: weights, optimiser states, RNG positions, the configuration and the
//!   history — everything to continue a killed run so that it ends with the same weights as a
//!   run that was never killed (same machine and thread count);
//! * `history.csv`: one row per step (loss, positive-pair error; validation where measured).
//!
//! Every file is written to a temporary file and renamed. `model.json` and `weights.bpk` are
//! refreshed at every checkpoint, so a killed run still leaves a usable model.

use std::path::{Path, PathBuf};
use std::time::Instant;

use comir_data::{find_pairs_in, split_by_name, Batch, Pair, PatchSampler, RegisteredPair};
use comir_model::record::{DataFolders, TrainingRecord, TrainingRun};
use comir_model::store::{save_parts, write_atomically};
use comir_model::{InputTransform, ModelCard};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{ContrastiveTrainer, Error, StepStats, TrainerFactory, TrainerState};

/// The recipe and the record of a run live in `comir_model` (a model card holds them); they
/// are re-exported here under their old paths.
pub use comir_model::recipe::{LrDecay, Preset, Schedule, SplitSettings, TrainConfig};
pub use comir_model::record::{HistoryRow, SplitNames};

/// Splits the pairs as `settings` says: first the test set, then validation from the rest.
pub fn split_pairs(pairs: &[Pair], settings: &SplitSettings) -> (Vec<Pair>, Vec<Pair>, Vec<Pair>) {
    let (rest, test) = if settings.test_fraction > 0.0 {
        split_by_name(pairs, settings.test_fraction, settings.seed)
    } else {
        (pairs.to_vec(), Vec::new())
    };
    let (train, val) = if settings.validation_fraction > 0.0 {
        split_by_name(
            &rest,
            settings.validation_fraction,
            settings.seed.wrapping_add(1),
        )
    } else {
        (rest, Vec::new())
    };
    (train, val, test)
}

/// What a run reports as it goes (the CLI draws a progress bar from this).
pub trait Observer {
    /// Called once before the first step with the step to start from and the total.
    fn start(&mut self, _first_step: usize, _total_steps: usize) {}
    /// Called after every step.
    fn step(&mut self, _row: &HistoryRow) {}
    /// Called after every checkpoint.
    fn checkpoint(&mut self, _step: usize) {}
}

/// An observer that does nothing.
pub struct Silent;
impl Observer for Silent {}

/// Where the data and the model are.
#[derive(Clone, Debug)]
pub struct RunPaths {
    /// Folder of modality-A images.
    pub a: PathBuf,
    /// Folder of modality-B images (file names matching A's).
    pub b: PathBuf,
    /// Model folder to write.
    pub out: PathBuf,
}

impl RunPaths {
    /// The pairs of a folder holding `A/` and `B/` (the layout `comir eval` and the study use),
    /// trained into `out`.
    pub fn for_pairs(pairs: &Path, out: PathBuf) -> RunPaths {
        RunPaths {
            a: pairs.join("A"),
            b: pairs.join("B"),
            out,
        }
    }
}

/// What a finished run returns.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// Steps done in total.
    pub steps: usize,
    /// Steps done by this call (less than `steps` after a resume).
    pub steps_this_run: usize,
    /// The split used.
    pub split: SplitNames,
    /// The history of every run of this model, resumed ones included.
    pub history: Vec<HistoryRow>,
}

const CHECKPOINT_FILE: &str = "checkpoint.bin";
const HISTORY_FILE: &str = "history.csv";
/// Folder (inside the output) of the `snapshot_every` model copies.
pub const SNAPSHOT_DIR: &str = "snapshots";
const CHECKPOINT_MAGIC: &[u8; 8] = b"COMIRCKP";
/// Version 2 added the projection heads' state (a fifth part); version 1 files still load.
const CHECKPOINT_VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
struct CheckpointHeader {
    config: TrainConfig,
    split: SplitNames,
    steps: usize,
    /// Which trainer wrote the optimiser states ("burn" when absent: older checkpoints).
    #[serde(default = "burn_kind")]
    trainer: String,
    trainer_rng_word_pos: String,
    sampler_rng_word_pos: String,
    history: Vec<HistoryRow>,
}

struct Checkpoint {
    header: CheckpointHeader,
    state: TrainerState,
}

fn burn_kind() -> String {
    "burn".into()
}

fn encode_checkpoint(c: &Checkpoint) -> Result<Vec<u8>, Error> {
    let header = serde_json::to_vec(&c.header).map_err(|e| Error::State(e.to_string()))?;
    let mut out = Vec::new();
    out.extend_from_slice(CHECKPOINT_MAGIC);
    out.extend_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
    for part in [
        &header,
        &c.state.weights,
        &c.state.optimizer_a,
        &c.state.optimizer_b,
        &c.state.bottleneck,
    ] {
        out.extend_from_slice(&(part.len() as u64).to_le_bytes());
        out.extend_from_slice(part);
    }
    Ok(out)
}

/// The bytes of a checkpoint file, refused unread when larger than a checkpoint of networks
/// within the model budget can be (weights, two optimiser states of twice their size, and the
/// heads and history: five times the budget, plus 64 MiB).
fn read_checkpoint(path: &Path) -> Result<Vec<u8>, String> {
    let size = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    let most = comir_model::limits::max_model_bytes()
        .saturating_mul(5)
        .saturating_add(64 << 20);
    if size > most {
        return Err(format!(
            "the file is {}, more than the {} a checkpoint of networks within the model budget \
             takes (raise COMIR_MAX_MODEL_MIB to allow it)",
            comir_model::limits::mib(size),
            comir_model::limits::mib(most)
        ));
    }
    std::fs::read(path).map_err(|e| e.to_string())
}

fn decode_checkpoint(bytes: &[u8]) -> Result<Checkpoint, String> {
    if bytes.len() < 12 || &bytes[..8] != CHECKPOINT_MAGIC {
        return Err("not a comir checkpoint".into());
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != CHECKPOINT_VERSION && version != 1 {
        return Err(format!(
            "checkpoint version {version} is not supported (this comir reads {CHECKPOINT_VERSION})"
        ));
    }
    let mut rest = &bytes[12..];
    let count = if version == 1 { 4 } else { 5 };
    let mut parts = Vec::with_capacity(count);
    for _ in 0..count {
        if rest.len() < 8 {
            return Err("truncated checkpoint".into());
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&rest[..8]);
        let len = u64::from_le_bytes(len) as usize;
        rest = &rest[8..];
        if rest.len() < len {
            return Err("truncated checkpoint".into());
        }
        parts.push(rest[..len].to_vec());
        rest = &rest[len..];
    }
    let header: CheckpointHeader =
        serde_json::from_slice(&parts[0]).map_err(|e| format!("bad checkpoint header: {e}"))?;
    let word_pos = header
        .trainer_rng_word_pos
        .parse::<u128>()
        .map_err(|e| format!("bad RNG position: {e}"))?;
    let bottleneck = if version == 1 {
        Vec::new()
    } else {
        parts.pop().unwrap_or_default()
    };
    let optimizer_b = parts.pop().unwrap_or_default();
    let optimizer_a = parts.pop().unwrap_or_default();
    let weights = parts.pop().unwrap_or_default();
    Ok(Checkpoint {
        state: TrainerState {
            steps: header.steps,
            weights,
            optimizer_a,
            optimizer_b,
            rng_word_pos: word_pos,
            bottleneck,
        },
        header,
    })
}

/// The configuration a checkpointed run in `dir` was started with (to resume it with changes
/// on top, e.g. more steps).
///
/// # Errors
/// No readable checkpoint in `dir`.
pub fn saved_config(dir: &Path) -> Result<TrainConfig, Error> {
    let path = dir.join(CHECKPOINT_FILE);
    let bytes =
        read_checkpoint(&path).map_err(|e| Error::State(format!("{}: {e}", path.display())))?;
    decode_checkpoint(&bytes)
        .map(|c| c.header.config)
        .map_err(|e| Error::State(format!("{}: {e}", path.display())))
}

/// The kind of trainer (`"burn"`, `"engine"`) that wrote the checkpoint in `dir`: a resumed
/// run must use the same one.
///
/// # Errors
/// No readable checkpoint in `dir`.
pub fn saved_trainer(dir: &Path) -> Result<String, Error> {
    let path = dir.join(CHECKPOINT_FILE);
    let bytes =
        read_checkpoint(&path).map_err(|e| Error::State(format!("{}: {e}", path.display())))?;
    decode_checkpoint(&bytes)
        .map(|c| c.header.trainer)
        .map_err(|e| Error::State(format!("{}: {e}", path.display())))
}

/// `true` when `dir` holds a checkpoint to resume from.
pub fn has_checkpoint(dir: &Path) -> bool {
    dir.join(CHECKPOINT_FILE).is_file()
}

fn write_history(path: &Path, rows: &[HistoryRow]) -> Result<(), Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r).map_err(|e| Error::State(e.to_string()))?;
    }
    let bytes = w.into_inner().map_err(|e| Error::State(e.to_string()))?;
    write_atomically(path, &bytes).map_err(|e| Error::State(e.to_string()))
}

fn sampler_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ 0x5A3B_1E5D)
}

/// Trains a CoMIR on the pairs in `paths.a` / `paths.b` and writes the model folder.
///
/// With `resume`, the run continues from `paths.out/checkpoint.bin`; the configuration saved
/// there is used, except that `config.schedule.steps` may extend the run. The result is
/// bit-identical to an uninterrupted run on the same machine with the same thread count.
///
/// # Errors
/// Bad folders or images (naming them), an invalid configuration, a checkpoint that does not
/// fit, a diverging loss ([`Error::Diverged`]; the last checkpoint is kept), unwritable output.
pub fn train(
    config: &TrainConfig,
    paths: &RunPaths,
    resume: bool,
    make_trainer: &TrainerFactory<'_>,
    observer: &mut dyn Observer,
) -> Result<RunSummary, Error> {
    let data_err = |e: comir_data::Error| Error::Data(e.to_string());
    let checkpoint = if resume {
        let path = paths.out.join(CHECKPOINT_FILE);
        let bytes = read_checkpoint(&path)
            .map_err(|e| Error::State(format!("{}: {e} (nothing to resume)", path.display())))?;
        Some(
            decode_checkpoint(&bytes)
                .map_err(|e| Error::State(format!("{}: {e}", path.display())))?,
        )
    } else {
        None
    };
    let config = merged_config(config, checkpoint.as_ref(), &paths.out)?;

    let pairs = find_pairs_in(&paths.a, &paths.b).map_err(data_err)?;
    let (train_pairs, val_pairs, test_pairs) = split_pairs(&pairs, &config.split);
    let split = SplitNames {
        train: train_pairs.iter().map(|p| p.name.clone()).collect(),
        validation: val_pairs.iter().map(|p| p.name.clone()).collect(),
        test: test_pairs.iter().map(|p| p.name.clone()).collect(),
    };
    if let Some(c) = &checkpoint {
        if c.header.split != split {
            return Err(Error::InvalidConfig(
                "the image folders changed since the run started (the split differs); resume needs the same pairs".into(),
            ));
        }
    }
    if train_pairs.is_empty() {
        return Err(Error::InvalidConfig(format!(
            "{}: no pairs left to train on after the split",
            paths.a.display()
        )));
    }
    let sampler = PatchSampler::load(&train_pairs, config.patches.clone()).map_err(data_err)?;
    let validation = if val_pairs.is_empty() {
        None
    } else {
        Some(PatchSampler::load(&val_pairs, config.patches.clone()).map_err(data_err)?)
    };
    let data = DataFolders {
        a: paths.a.clone(),
        b: paths.b.clone(),
    };
    run_steps(
        &config,
        checkpoint,
        &sampler,
        validation.as_ref(),
        (split, data),
        &paths.out,
        make_trainer,
        observer,
    )
}

/// Registered pairs to train on (see [`train_registered`]).
pub struct RegisteredData {
    /// The pairs patches are drawn from.
    pub train: Vec<RegisteredPair>,
    /// The pairs validation batches are drawn from (may be empty).
    pub validation: Vec<RegisteredPair>,
    /// Where the images came from (recorded in the model card).
    pub folders: DataFolders,
}

/// Trains a CoMIR on pairs that are registered, not aligned: patches are drawn in A's frame and
/// B is resampled through each pair's transform as they are drawn, with what falls outside B
/// masked out of the loss ([`PatchSampler::registered`]).
///
/// When `out` already holds a checkpoint the run continues from it — its weights, optimiser
/// states and random positions — up to `config.schedule.steps` in all, on these pairs (which
/// may differ from the ones it was trained on so far): the caller fine-tunes a model round after
/// round this way, and a killed round resumes the same way, to the same weights.
///
/// # Errors
/// As [`train`]; a checkpoint started with other settings (the step count aside).
pub fn train_registered(
    config: &TrainConfig,
    data: RegisteredData,
    out: &Path,
    make_trainer: &TrainerFactory<'_>,
    observer: &mut dyn Observer,
) -> Result<RunSummary, Error> {
    let data_err = |e: comir_data::Error| Error::Data(e.to_string());
    let checkpoint = if has_checkpoint(out) {
        let path = out.join(CHECKPOINT_FILE);
        let bytes =
            std::fs::read(&path).map_err(|e| Error::State(format!("{}: {e}", path.display())))?;
        Some(
            decode_checkpoint(&bytes)
                .map_err(|e| Error::State(format!("{}: {e}", path.display())))?,
        )
    } else {
        None
    };
    let config = merged_config(config, checkpoint.as_ref(), out)?;
    let split = SplitNames {
        train: data.train.iter().map(|p| p.name.clone()).collect(),
        validation: data.validation.iter().map(|p| p.name.clone()).collect(),
        test: Vec::new(),
    };
    let sampler = PatchSampler::registered(data.train, config.patches.clone()).map_err(data_err)?;
    let validation = if data.validation.is_empty() {
        None
    } else {
        Some(PatchSampler::registered(data.validation, config.patches.clone()).map_err(data_err)?)
    };
    run_steps(
        &config,
        checkpoint,
        &sampler,
        validation.as_ref(),
        (split, data.folders),
        out,
        make_trainer,
        observer,
    )
}

/// The configuration of a run: `config` when starting, the checkpoint's when continuing (only
/// the step count and the time budget may change).
fn merged_config(
    config: &TrainConfig,
    checkpoint: Option<&Checkpoint>,
    out: &Path,
) -> Result<TrainConfig, Error> {
    let config = match checkpoint {
        Some(c) => {
            let mut saved = c.header.config.clone();
            let mut asked = config.clone();
            asked.schedule.steps = saved.schedule.steps;
            asked.schedule.minutes = saved.schedule.minutes;
            if asked != saved {
                return Err(Error::InvalidConfig(format!(
                    "{}: the run was started with other settings; resume with the same ones (only the step count may change)",
                    out.join(CHECKPOINT_FILE).display()
                )));
            }
            saved.schedule.steps = config.schedule.steps.max(c.header.steps);
            saved.schedule.minutes = config.schedule.minutes;
            saved
        }
        None => config.clone(),
    };
    config.validate()?;
    Ok(config)
}

/// The steps of a run from `checkpoint` (or from scratch) to `config.schedule.steps`, with
/// validation, checkpoints and the model files written into `out`.
#[allow(clippy::too_many_arguments)]
fn run_steps(
    config: &TrainConfig,
    checkpoint: Option<Checkpoint>,
    sampler: &PatchSampler,
    validation: Option<&PatchSampler>,
    (split, data): (SplitNames, DataFolders),
    out: &Path,
    make_trainer: &TrainerFactory<'_>,
    observer: &mut dyn Observer,
) -> Result<RunSummary, Error> {
    let config = config.clone();
    let (ca, cb) = sampler.channels();
    let validation: Vec<Batch> = match validation {
        Some(vs) if config.schedule.validate_every > 0 => {
            let mut rng = ChaCha8Rng::seed_from_u64(config.split.seed ^ 0x7A11_DA7E);
            (0..config.schedule.validation_batches)
                .map(|_| vs.batch(config.schedule.batch, &mut rng))
                .collect()
        }
        _ => Vec::new(),
    };
    let (net_a, net_b) = (config.network_for(ca), config.network_for(cb));
    let mut trainer = make_trainer(&net_a, &net_b, &config.train)?;
    let mut rng = sampler_rng(config.train.seed);
    let mut history = Vec::new();
    if let Some(c) = checkpoint {
        if c.header.trainer != trainer.kind() {
            return Err(Error::State(format!(
                "{}: written by the {} trainer, but this run uses the {} trainer (their optimiser states differ); resume with the same one",
                out.join(CHECKPOINT_FILE).display(),
                c.header.trainer,
                trainer.kind()
            )));
        }
        trainer.restore(&c.state)?;
        let pos = c
            .header
            .sampler_rng_word_pos
            .parse::<u128>()
            .map_err(|e| Error::State(format!("bad RNG position: {e}")))?;
        rng.set_word_pos(pos);
        history = c.header.history;
    }
    let mut card = ModelCard::new(
        net_a,
        net_b,
        InputTransform {
            log_a: config.patches.log_a,
            log_b: config.patches.log_b,
            normalize_a: config.patches.normalize_a,
            normalize_b: config.patches.normalize_b,
        },
    );
    std::fs::create_dir_all(out).map_err(|e| Error::State(format!("{}: {e}", out.display())))?;

    let first = trainer.steps();
    let total = config.schedule.steps;
    observer.start(first, total);
    let offset = history.last().map_or(0.0, |r: &HistoryRow| r.seconds);
    let clock = Instant::now();
    // model.json + weights.bpk into `dir`: what `--model` needs.
    let save_model = |dir: &Path,
                      trainer: &dyn ContrastiveTrainer,
                      history: &[HistoryRow],
                      card: &mut ModelCard|
     -> Result<(), Error> {
        card.training = TrainingRecord::Run(Box::new(TrainingRun {
            config: config.clone(),
            split: split.clone(),
            steps: trainer.steps(),
            data: data.clone(),
            last: history.last().cloned(),
        }));
        save_parts(dir, card, &trainer.inference_networks()?)
            .map_err(|e| Error::State(format!("{}: {e}", dir.display())))
    };
    let save = |trainer: &dyn ContrastiveTrainer,
                rng: &ChaCha8Rng,
                history: &[HistoryRow],
                card: &mut ModelCard|
     -> Result<(), Error> {
        let state = trainer.state()?;
        let header = CheckpointHeader {
            config: config.clone(),
            split: split.clone(),
            steps: state.steps,
            trainer: trainer.kind().to_string(),
            trainer_rng_word_pos: state.rng_word_pos.to_string(),
            sampler_rng_word_pos: rng.get_word_pos().to_string(),
            history: history.to_vec(),
        };
        let bytes = encode_checkpoint(&Checkpoint { header, state })?;
        write_atomically(&out.join(CHECKPOINT_FILE), &bytes)
            .map_err(|e| Error::State(e.to_string()))?;
        save_model(out, trainer, history, card)?;
        write_history(&out.join(HISTORY_FILE), history)
    };
    let mut last_saved = None;
    // The next step's batch and the sampler's RNG after it, drawn while a step runs.
    let mut next: Option<(Batch, ChaCha8Rng)> = None;
    for step in first..total {
        if config.schedule.minutes.is_some_and(|m| offset >= m * 60.0) {
            break;
        }
        let batch = match next.take() {
            Some((batch, after)) => {
                rng = after;
                batch
            }
            None => sampler.batch(config.schedule.batch, &mut rng),
        };
        let lr_scale = config
            .schedule
            .lr_scale(step, offset + clock.elapsed().as_secs_f64());
        trainer.set_lr_scale(lr_scale);
        // The next batch is cut from the images on another thread while this step runs: the
        // same batches in the same order, and `rng` stays where this step's batch left it (what
        // a checkpoint records).
        let stats: StepStats = rayon::in_place_scope(|s| {
            if step + 1 < total {
                let (n, rng) = (config.schedule.batch, &rng);
                let next = &mut next;
                s.spawn(move |_| {
                    let mut ahead = rng.clone();
                    *next = Some((sampler.batch(n, &mut ahead), ahead));
                });
            }
            trainer.step(&batch)
        })?;
        let mut row = HistoryRow {
            step: step + 1,
            seconds: offset + clock.elapsed().as_secs_f64(),
            loss: stats.loss,
            contrastive: stats.contrastive,
            positive_mse: stats.positive_mse,
            val_loss: None,
            val_positive_mse: None,
            bottleneck: stats.bottleneck,
            lr: config.train.optimizer.lr() * lr_scale,
        };
        let every = config.schedule.validate_every;
        if !validation.is_empty() && (row.step.is_multiple_of(every) || row.step == total) {
            let (mut l, mut p) = (0.0, 0.0);
            for b in &validation {
                let s = trainer.evaluate(b)?;
                l += s.contrastive;
                p += s.positive_mse;
            }
            row.val_loss = Some(l / validation.len() as f64);
            row.val_positive_mse = Some(p / validation.len() as f64);
        }
        // Judged on the row's time, so that a resumed run sees the same budget as spent.
        let out_of_time = config
            .schedule
            .minutes
            .is_some_and(|m| row.seconds >= m * 60.0);
        history.push(row);
        observer.step(history.last().expect("just pushed"));
        if out_of_time {
            break;
        }
        let snapshot_every = config.schedule.snapshot_every;
        if snapshot_every > 0 && (step + 1) % snapshot_every == 0 {
            let dir = out.join(SNAPSHOT_DIR).join(format!("step-{:06}", step + 1));
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::State(format!("{}: {e}", dir.display())))?;
            save_model(&dir, trainer.as_ref(), &history, &mut card)?;
        }
        if row_is_checkpoint(step + 1, total, config.schedule.checkpoint_every) {
            save(trainer.as_ref(), &rng, &history, &mut card)?;
            last_saved = Some(step + 1);
            observer.checkpoint(step + 1);
        }
    }
    if last_saved != Some(trainer.steps()) {
        // Stopped by the time budget between checkpoints, or nothing to do (already trained
        // that far): the checkpoint and the model files reflect the last step.
        save(trainer.as_ref(), &rng, &history, &mut card)?;
        observer.checkpoint(trainer.steps());
    }
    Ok(RunSummary {
        steps: trainer.steps(),
        steps_this_run: trainer.steps() - first,
        split,
        history,
    })
}

fn row_is_checkpoint(step: usize, total: usize, every: usize) -> bool {
    step.is_multiple_of(every) || step == total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_and_torn_ones_are_refused() {
        let c = Checkpoint {
            header: CheckpointHeader {
                config: TrainConfig::default(),
                split: SplitNames::default(),
                steps: 7,
                trainer: "burn".into(),
                trainer_rng_word_pos: "123".into(),
                sampler_rng_word_pos: "456".into(),
                history: Vec::new(),
            },
            state: TrainerState {
                steps: 7,
                weights: vec![1, 2, 3],
                optimizer_a: vec![4],
                optimizer_b: vec![5, 6],
                rng_word_pos: 123,
                bottleneck: vec![7, 8, 9],
            },
        };
        let bytes = encode_checkpoint(&c).expect("encode");
        let back = decode_checkpoint(&bytes).expect("decode");
        assert_eq!(back.state, c.state);
        // A version-1 file (four parts, no heads) still loads.
        let mut v1 = bytes[..bytes.len() - 8 - 3].to_vec();
        v1[8..12].copy_from_slice(&1u32.to_le_bytes());
        let old = decode_checkpoint(&v1).expect("decode v1");
        assert_eq!(old.state.optimizer_b, vec![5, 6]);
        assert!(old.state.bottleneck.is_empty());
        for cut in [0, 5, 12, bytes.len() - 1] {
            assert!(decode_checkpoint(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn cosine_decay_follows_steps_or_the_clock_whichever_is_further() {
        let mut s = Schedule {
            steps: 100,
            lr_decay: LrDecay::Cosine,
            ..Schedule::default()
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(s.lr_scale(0, 0.0), 1.0));
        assert!(close(s.lr_scale(50, 0.0), 0.5));
        assert!(close(
            s.lr_scale(25, 0.0),
            0.5 + 0.5 * std::f64::consts::FRAC_1_SQRT_2
        ));
        assert!(close(s.lr_scale(100, 0.0), 0.0));
        assert!(close(s.lr_scale(150, 0.0), 0.0));
        s.minutes = Some(10.0);
        assert!(close(s.lr_scale(10, 300.0), 0.5), "half the time budget");
        assert!(close(s.lr_scale(50, 60.0), 0.5), "half the steps");
        assert!(close(s.lr_scale(10, 900.0), 0.0), "past the budget");
        s.lr_decay = LrDecay::Constant;
        assert!(close(s.lr_scale(99, 599.0), 1.0));
    }

    #[test]
    fn invalid_configs_are_refused_with_the_value() {
        let mut c = TrainConfig::default();
        c.schedule.batch = 1;
        assert!(c
            .validate()
            .expect_err("invalid")
            .to_string()
            .contains("batch"));
        let mut c = TrainConfig::default();
        c.patches.size = 100; // small preset needs multiples of 8
        assert!(c
            .validate()
            .expect_err("invalid")
            .to_string()
            .contains("multiple of 8"));
        let mut c = TrainConfig::default();
        c.train.tau = -1.0;
        assert!(c
            .validate()
            .expect_err("invalid")
            .to_string()
            .contains("tau"));
        let mut c = TrainConfig::default();
        c.split.test_fraction = 1.0;
        assert!(c.validate().is_err());
        assert!(TrainConfig::default().validate().is_ok());
    }

    #[test]
    fn the_split_never_shares_a_pair_between_parts() {
        let pairs: Vec<Pair> = (0..30)
            .map(|i| Pair {
                name: format!("p{i:02}.png"),
                a: PathBuf::from("a"),
                b: PathBuf::from("b"),
            })
            .collect();
        let s = SplitSettings {
            test_fraction: 0.3,
            validation_fraction: 0.2,
            seed: 4,
        };
        let (tr, va, te) = split_pairs(&pairs, &s);
        assert_eq!(tr.len() + va.len() + te.len(), 30);
        assert_eq!(te.len(), 9);
        for p in &tr {
            assert!(!va.contains(p) && !te.contains(p));
        }
        for p in &va {
            assert!(!te.contains(p));
        }
    }
}
