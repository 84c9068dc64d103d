//! Registering a whole collection of unaligned pairs while learning a representation from the
//! collection itself: the entry point behind `comir align`.
//!
//! 1. **Round 0**: every pair is registered on the raw images with Mattes MI and the chosen
//!    transform chain, from the centred identity and from the global FFT search; the result with
//!    the higher confidence is kept. With `auto` (the default) each start fits a rigid and a
//!    `similarity,affine` result and keeps the rigid one unless the affine one is clearly better
//!    ([`crate::select`]): where MI's affine optimum drifts (strongly shrunk on PET vs MR), the
//!    rigid result is a near miss that still teaches, where the drifted one would not.
//! 2. **Learning**: a CoMIR is trained on the pairs the collection registered confidently, each
//!    pair used *through its transform* (patches drawn in A's frame, B resampled on the fly, what
//!    falls outside B masked out of the loss). A seeded subset of pairs (by name) only validates.
//! 3. **Round r**: every pair is registered again through the model (NCC on the representations,
//!    with the chain, `similarity,affine` for `auto`, from the identity, and with its last linear
//!    stage from the pair's current result); per pair, the result with the
//!    highest confidence so far is kept. The model is fine-tuned round after round; the last of
//!    several rounds learns a fresh one from the pairs the earlier rounds registered, and a
//!    current result that this model moves by more than the success tolerance no longer
//!    competes with its new ones.
//! 4. Rounds go on while the collection's mean confidence rises, up to `rounds`, within the time
//!    budget.
//!
//! Every confidence is judged on the raw images (gray), so that raw and learned results compare.
//! State is saved after each round and the training checkpoints as it trains: a killed run
//! resumed with `resume` ends with the same transforms as one never killed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use comir_confidence::Flag;
use comir_data::RegisteredPair;
use comir_image::Image;
use comir_model::record::DataFolders;
use comir_register::Registrar;
use comir_train::run::{has_checkpoint, train_registered, Preset, RegisteredData, TrainConfig};
use comir_transform::{dense_error, write_itk_composite, write_json, Transform2, TransformRecord};
use serde::{Deserialize, Serialize};

use crate::methods::{build, MethodName, MethodsConfig};
use crate::model::{ModelOptions, RegistrationModel};
use crate::register::judge;
use crate::stages::{TransformStages, BSPLINE_STAGE};
use crate::train::{trainer_factory, Bar, TrainerChoice};
use crate::{write_csv, Console};

/// File (in the output folder) that records the settings and every finished round.
pub const STATE_FILE: &str = "align-state.json";
/// Folder (in the output folder) of the model learned from the collection.
pub const MODEL_DIR: &str = "model";
/// Folder (in the output folder) where the last round's fresh model trains before it replaces
/// [`MODEL_DIR`].
const FRESH_MODEL_DIR: &str = "model.fresh";

/// How far (a fraction of the width, the success tolerance of the evaluation) the fresh model
/// may move a pair's current result before it counts as contradicted.
const CONTRADICTION: f64 = 0.02;

/// How a collection is aligned.
#[derive(Clone, Debug, PartialEq)]
pub struct AlignOptions {
    /// Folder holding `A/` (fixed) and `B/` (moving) images matched by file name.
    pub pairs: PathBuf,
    /// Output folder.
    pub out: PathBuf,
    /// The transform chain of every registration.
    pub stages: TransformStages,
    /// The method of the raw registrations (round 0, and the raw candidate kept per pair):
    /// [`MethodName::Mi`], or [`MethodName::Ngf`] for modalities whose edges coincide but
    /// whose intensities MI pairs wrongly (CT and MR).
    pub raw_method: MethodName,
    /// Control-point spacing of a bspline stage.
    pub grid_spacing: Option<f64>,
    /// Learned rounds at most (after round 0).
    pub rounds: usize,
    /// Time budget in minutes: training stops when its steps of every round so far have taken
    /// it, and no round starts that would, by the last round's duration, end after it. (The
    /// steps then depend on the clock: only runs without a budget repeat to the bit.)
    pub minutes: Option<f64>,
    /// Network size (replaces the recipe's).
    pub preset: Option<Preset>,
    /// Training recipe (TOML of `comir train --config`); without it, [`default_recipe`].
    pub config: Option<PathBuf>,
    /// Training steps of the first learned round (later rounds add half as many).
    pub steps: Option<usize>,
    /// Seed of every random choice.
    pub seed: u64,
    /// Continue a killed run from the output folder.
    pub resume: bool,
    /// Also write each pair's moving image resampled into the fixed frame.
    pub warped: bool,
    /// Also write an HTML report (`report/index.html`).
    pub report: bool,
    /// Compute device of training and representations.
    pub device: String,
}

/// The training recipe of `align` when none is given: the histology recipe's network and
/// patches (`fast`, 64² patches, batch 12, every image's percentiles stretched), without its
/// SHG-specific log, 1600 steps in the first round.
pub fn default_recipe() -> TrainConfig {
    let mut c = TrainConfig {
        preset: Preset::Fast,
        ..TrainConfig::default()
    };
    c.train.tau = 0.5;
    c.train.l2_decay = 0.1;
    c.patches.size = 64;
    c.patches.normalize_a = true;
    c.patches.normalize_b = true;
    c.schedule.steps = 1600;
    c.schedule.batch = 12;
    c.schedule.lr_decay = comir_train::run::LrDecay::Cosine;
    c.schedule.validate_every = 100;
    c.schedule.validation_batches = 2;
    c.schedule.checkpoint_every = 50;
    c.split.test_fraction = 0.0;
    c.split.validation_fraction = 0.15;
    c
}

/// One pair's kept result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairResult {
    /// The pair's file name.
    pub name: String,
    /// The round that found the result.
    pub round: usize,
    /// `raw mi`, `raw mi global`, `comir ncc`, `comir ncc refine`.
    pub pipeline: String,
    /// The transform, its metric, seconds, confidence and flag.
    pub record: TransformRecord,
}

impl PairResult {
    fn confidence(&self) -> f64 {
        self.record.confidence.unwrap_or(0.0)
    }
    fn is_ok(&self) -> bool {
        self.record.flag.as_deref() == Some(Flag::Ok.as_str())
    }
}

/// What a round did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundRecord {
    /// 0 for the raw round.
    pub round: usize,
    /// The kept result of every pair after the round, by name.
    pub results: BTreeMap<String, PairResult>,
    /// Mean confidence over the pairs.
    pub mean_confidence: f64,
    /// Pairs flagged `ok`.
    pub confident: usize,
    /// Pairs whose kept result this round replaced.
    pub changed: Vec<String>,
    /// Pairs the model of this round was trained on (none in round 0).
    pub trained_on: Vec<String>,
    /// Seconds the round took.
    pub seconds: f64,
}

/// The settings a run is tied to (a resumed run must ask for the same).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Settings {
    pairs: PathBuf,
    transform: String,
    /// Runs saved before the raw method could be chosen used MI.
    #[serde(default = "raw_method_mi")]
    raw_method: String,
    grid_spacing: Option<f64>,
    rounds: usize,
    seed: u64,
    recipe: TrainConfig,
    steps_first: usize,
}

fn raw_method_mi() -> String {
    MethodName::Mi.as_str().to_string()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct State {
    settings: Settings,
    skipped: BTreeMap<String, String>,
    rounds: Vec<RoundRecord>,
    finished: bool,
}

/// One row of `results.csv`: a pair's kept result after a round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    /// The pair's file name.
    pub pair: String,
    /// The round after which this is the kept result.
    pub round: usize,
    /// The pipeline that found it.
    pub pipeline: String,
    /// In `[0, 1]`.
    pub confidence: f64,
    /// `ok` or `doubtful`.
    pub flag: String,
    /// The pipeline's metric at the result (lower is better).
    pub metric: f64,
    /// Seconds the registration took.
    pub seconds: f64,
    /// Whether this round replaced the pair's result.
    pub changed: bool,
}

/// What a run returns.
#[derive(Clone, Debug)]
pub struct AlignSummary {
    /// Every round, round 0 first.
    pub rounds: Vec<RoundRecord>,
    /// Pairs left out, with why.
    pub skipped: BTreeMap<String, String>,
    /// Why the rounds stopped.
    pub stop: String,
}

/// A pair as loaded: the images as given (for training and warping) and gray (for
/// registration and confidence).
struct LoadedPair {
    name: String,
    a: Image,
    b: Image,
    a_gray: Image,
    b_gray: Image,
}

fn load_pair(p: &comir_data::Pair) -> Result<LoadedPair, String> {
    let (a, b) = rayon::join(|| comir_image::load(&p.a), || comir_image::load(&p.b));
    let a = a.map_err(|e| e.to_string())?;
    let b = b.map_err(|e| e.to_string())?;
    for (img, path) in [(&a, &p.a), (&b, &p.b)] {
        if img.is_constant() {
            return Err(format!(
                "{}: the image is constant; there is nothing to register",
                path.display()
            ));
        }
    }
    let (a_gray, b_gray) = (a.to_gray(), b.to_gray());
    Ok(LoadedPair {
        name: p.name.clone(),
        a,
        b,
        a_gray,
        b_gray,
    })
}

/// One network per modality needs one channel count per modality: where a collection mixes
/// gray and colour images of a modality, that modality is learned and represented in gray.
fn unify_channels(pairs: &mut [LoadedPair], console: &mut dyn Console) {
    let mixed = |channels: Vec<usize>| channels.windows(2).any(|w| w[0] != w[1]);
    if mixed(pairs.iter().map(|p| p.a.channels()).collect()) {
        console.note("A/ mixes gray and colour images: A is learned in gray");
        for p in pairs.iter_mut() {
            p.a = p.a_gray.clone();
        }
    }
    if mixed(pairs.iter().map(|p| p.b.channels()).collect()) {
        console.note("B/ mixes gray and colour images: B is learned in gray");
        for p in pairs.iter_mut() {
            p.b = p.b_gray.clone();
        }
    }
}

/// A registration result judged on the raw images.
fn judged(
    pair: &LoadedPair,
    round: usize,
    pipeline: &str,
    outcome: &comir_register::Outcome,
    seconds: f64,
) -> PairResult {
    let transform = outcome.composite();
    let mut record =
        TransformRecord::from_composite(&transform, pipeline, outcome.metric_value, seconds);
    judge(&mut record, &pair.a_gray, &pair.b_gray, outcome);
    PairResult {
        name: pair.name.clone(),
        round,
        pipeline: pipeline.to_string(),
        record,
    }
}

/// Runs `registrar` from `init` on `fixed`/`moving` and judges the result; `None` when the method
/// fails (the other candidates may still succeed).
#[allow(clippy::too_many_arguments)]
fn candidate(
    registrar: &dyn Registrar,
    pair: &LoadedPair,
    fixed: &Image,
    moving: &Image,
    init: &Transform2,
    round: usize,
    pipeline: &str,
    extra_seconds: f64,
) -> Option<PairResult> {
    let start = Instant::now();
    let outcome = registrar.register(fixed, moving, init).ok()?;
    let seconds = extra_seconds + start.elapsed().as_secs_f64();
    Some(judged(pair, round, pipeline, &outcome, seconds))
}

/// Whether `refined`, a refinement of `current` through the fresh model, moved the points of the
/// fixed image (`width` × `height`) by more than the success tolerance ([`CONTRADICTION`] of the
/// width, mean over a dense grid).
fn contradicts(
    refined: &TransformRecord,
    current: &TransformRecord,
    width: usize,
    height: usize,
) -> bool {
    let (w, h) = (width as f64, height as f64);
    dense_error(&refined.composite(), &current.composite(), w, h) > CONTRADICTION * w
}

/// The result a learned round keeps for a pair whose fixed image is `size` (width, height): the
/// most confident of its `current` result and the round's new ones (`current` on ties). Where
/// the model `overrules` (a fresh model that learned from the collection's best pairs for all
/// the rounds' steps), `current` no longer competes if the refinement from it contradicts it:
/// the confidence, judged on the raw images, can rank MI's own wrong optima above the model's
/// right results.
fn keep(
    current: &PairResult,
    from_identity: Option<PairResult>,
    refined: Option<PairResult>,
    overrules: bool,
    (width, height): (usize, usize),
) -> Option<PairResult> {
    let contradicted = overrules
        && refined
            .as_ref()
            .is_some_and(|r| contradicts(&r.record, &current.record, width, height));
    let current = (!contradicted).then(|| current.clone());
    best(current.into_iter().chain(from_identity).chain(refined))
}

/// The best of `candidates` by confidence (the first on ties).
fn best(candidates: impl IntoIterator<Item = PairResult>) -> Option<PairResult> {
    candidates.into_iter().fold(None, |kept, c| match kept {
        Some(k) if k.confidence() >= c.confidence() => Some(k),
        _ => Some(c),
    })
}

fn summarize_round(
    round: usize,
    results: BTreeMap<String, PairResult>,
    previous: Option<&RoundRecord>,
    trained_on: Vec<String>,
    seconds: f64,
) -> RoundRecord {
    let n = results.len().max(1) as f64;
    let mean_confidence = results.values().map(PairResult::confidence).sum::<f64>() / n;
    let confident = results.values().filter(|r| r.is_ok()).count();
    let changed = results
        .iter()
        .filter(|(name, r)| previous.is_none_or(|p| p.results.get(*name) != Some(*r)))
        .map(|(name, _)| name.clone())
        .collect();
    RoundRecord {
        round,
        results,
        mean_confidence,
        confident,
        changed,
        trained_on,
        seconds,
    }
}

/// The stem of a pair's file name: what its output files are named after.
pub fn output_stem(name: &str) -> String {
    Path::new(name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(name)
        .to_string()
}

fn write_state(out: &Path, state: &State) -> Result<()> {
    let path = out.join(STATE_FILE);
    let bytes = serde_json::to_vec_pretty(state)?;
    comir_fs::write_atomically(&path, &bytes).with_context(|| format!("{}", path.display()))
}

fn read_state(out: &Path) -> Result<State> {
    let path = out.join(STATE_FILE);
    let bytes = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not a comir align state file", path.display()))
}

/// Writes the kept transforms (JSON and `.tfm`) and `results.csv` (every round's kept results).
fn write_outputs(out: &Path, state: &State) -> Result<()> {
    let Some(last) = state.rounds.last() else {
        return Ok(());
    };
    let dir = out.join("transforms");
    std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
    for r in last.results.values() {
        let stem = output_stem(&r.name);
        write_json(dir.join(format!("{stem}.json")), &r.record)?;
        write_itk_composite(dir.join(format!("{stem}.tfm")), &r.record.composite())?;
    }
    let rows: Vec<ResultRow> = state
        .rounds
        .iter()
        .flat_map(|round| {
            round.results.values().map(|r| ResultRow {
                pair: r.name.clone(),
                round: round.round,
                pipeline: r.pipeline.clone(),
                confidence: r.confidence(),
                flag: r.record.flag.clone().unwrap_or_default(),
                metric: r.record.metric_value,
                seconds: r.record.seconds,
                changed: round.changed.contains(&r.name),
            })
        })
        .collect();
    write_csv(&out.join("results.csv"), &rows)
}

fn write_warped(out: &Path, pairs: &[LoadedPair], last: &RoundRecord) -> Result<()> {
    let dir = out.join("warped");
    std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
    for p in pairs {
        let Some(r) = last.results.get(&p.name) else {
            continue;
        };
        let t = r.record.composite();
        let warped = comir_image::ops::warp(
            &p.b,
            p.a.width(),
            p.a.height(),
            comir_image::ops::Border::Zero,
            |q| t.apply(q),
        );
        let (lo, hi) = warped.min_max();
        let warped = if lo < 0.0 || hi > 1.0 {
            warped.normalized()
        } else {
            warped
        };
        comir_image::save_png(dir.join(format!("{}.png", output_stem(&p.name))), &warped)?;
    }
    Ok(())
}

fn write_report(
    options: &AlignOptions,
    state: &State,
    pairs: &[LoadedPair],
    stop: &str,
) -> Result<()> {
    use comir_report::align::{write_align_report, AlignPair, AlignReport, AlignRound};
    let (Some(first), Some(last)) = (state.rounds.first(), state.rounds.last()) else {
        return Ok(());
    };
    let report = AlignReport {
        facts: vec![
            ("pairs".into(), options.pairs.display().to_string()),
            ("transform".into(), options.stages.spec()),
            ("rounds".into(), format!("{} ({stop})", state.rounds.len())),
            ("seed".into(), options.seed.to_string()),
        ],
        rounds: state
            .rounds
            .iter()
            .map(|r| AlignRound {
                round: r.round,
                confidences: r.results.values().map(PairResult::confidence).collect(),
                confident: r.confident,
                changed: r.changed.clone(),
                trained_on: r.trained_on.len(),
                seconds: r.seconds,
            })
            .collect(),
        pairs: pairs
            .iter()
            .filter_map(|p| {
                let (f, k) = (first.results.get(&p.name)?, last.results.get(&p.name)?);
                Some(AlignPair {
                    name: p.name.clone(),
                    fixed: &p.a_gray,
                    moving: &p.b_gray,
                    first: f.record.composite(),
                    kept: k.record.composite(),
                    confidence: k.confidence(),
                    flag: k.record.flag.clone().unwrap_or_default(),
                    found_by: format!("{}, round {}", k.pipeline, k.round),
                })
            })
            .collect(),
        skipped: state
            .skipped
            .iter()
            .map(|(n, w)| (n.clone(), w.clone()))
            .collect(),
    };
    write_align_report(&options.out.join("report"), &report)?;
    Ok(())
}

/// The training recipe of a run: `--config` or [`default_recipe`], with the preset, seed and
/// steps on top.
fn recipe(options: &AlignOptions) -> Result<TrainConfig> {
    let mut config = match &options.config {
        Some(p) => TrainConfig::from_toml_file(p)?,
        None => default_recipe(),
    };
    if let Some(p) = options.preset {
        config.preset = p;
        config.network = None;
    }
    if let Some(s) = options.steps {
        config.schedule.steps = s;
    }
    // Every run with one seed draws the same; the split is align's own (below).
    config.train.seed = options.seed;
    config.split.seed = options.seed;
    config.split.test_fraction = 0.0;
    config.schedule.minutes = None;
    config.validate()?;
    Ok(config)
}

/// Aligns the collection in `options.pairs`, writing into `options.out`.
///
/// # Errors
/// A folder that is not a collection of pairs (naming it), fewer than two usable pairs, an output
/// folder that holds another run (without `resume`) or a run with other settings, an invalid
/// recipe, or unwritable outputs. A single pair that cannot be read or registered is skipped
/// and reported, not an error.
pub fn align(options: &AlignOptions, console: &mut dyn Console) -> Result<AlignSummary> {
    let clock = Instant::now();
    let pairs = comir_data::find_pairs(&options.pairs)?;
    if pairs.len() < 2 {
        bail!(
            "{}: holds {} pair; align learns from a collection (at least 2 pairs): register a \
             single pair with comir register",
            options.pairs.display(),
            pairs.len()
        );
    }
    if !matches!(options.raw_method, MethodName::Mi | MethodName::Ngf) {
        bail!(
            "align registers the raw images with mi or ngf, not {}",
            options.raw_method.as_str()
        );
    }
    let recipe = recipe(options)?;
    let settings = Settings {
        pairs: options.pairs.clone(),
        transform: options.stages.spec(),
        raw_method: options.raw_method.as_str().to_string(),
        grid_spacing: options.grid_spacing,
        rounds: options.rounds,
        seed: options.seed,
        steps_first: recipe.schedule.steps,
        recipe: recipe.clone(),
    };
    let model_dir = options.out.join(MODEL_DIR);
    let mut state = if options.resume {
        let state = read_state(&options.out).context("nothing to resume")?;
        if state.settings != settings {
            bail!(
                "{}: the run was started with other settings or pairs; resume with the same ones",
                options.out.join(STATE_FILE).display()
            );
        }
        state
    } else {
        if options.out.join(STATE_FILE).exists() || has_checkpoint(&model_dir) {
            bail!(
                "{}: holds an alignment run already; pass --resume to continue it or choose \
                 another --out",
                options.out.display()
            );
        }
        std::fs::create_dir_all(&options.out)
            .with_context(|| format!("{}", options.out.display()))?;
        State {
            settings: settings.clone(),
            skipped: BTreeMap::new(),
            rounds: Vec::new(),
            finished: false,
        }
    };

    let mut loaded = Vec::new();
    for p in &pairs {
        match load_pair(p) {
            Ok(l) => loaded.push(l),
            Err(why) => {
                console.note(&format!("skipping pair '{}': {why}", p.name));
                state.skipped.insert(p.name.clone(), why);
            }
        }
    }
    if loaded.len() < 2 {
        bail!(
            "{}: fewer than 2 usable pairs ({} skipped); nothing to learn from",
            options.pairs.display(),
            state.skipped.len()
        );
    }
    unify_channels(&mut loaded, console);
    let (_, validation) =
        comir_data::split_by_name(&pairs, recipe.split.validation_fraction, options.seed);
    let validation: Vec<String> = validation.into_iter().map(|p| p.name).collect();

    let raw_cfg = MethodsConfig::load(None)?
        .with_seed(options.seed)
        .with_grid_spacing(options.grid_spacing)?;
    let learned_cfg = raw_cfg.clone().for_representations();
    // Through a model both images are one modality and NCC has no bias to guard against, so
    // `auto` registers the representations with its flexible chain.
    let learned_stages = options.stages.flexible();
    let refine_stages: TransformStages = {
        let mut spec = options.stages.last().name().to_string();
        if options.stages.bspline() {
            spec.push(',');
            spec.push_str(BSPLINE_STAGE);
        }
        spec.parse()?
    };

    let mut stop = String::from("finished by an earlier run");
    let mut last_round_seconds = 0.0f64;
    let spent_before: f64 = state.rounds.iter().map(|r| r.seconds).sum();
    while !state.finished {
        let round = state.rounds.len();
        let started = Instant::now();
        let previous = state.rounds.last().cloned();
        if round > options.rounds {
            stop = format!("the last learned round ({}) done", options.rounds);
            break;
        }
        if let (Some(m), Some(_)) = (options.minutes, &previous) {
            let spent = spent_before + clock.elapsed().as_secs_f64();
            let estimate = last_round_seconds.max(previous.as_ref().map_or(0.0, |p| p.seconds));
            if spent + estimate > m * 60.0 {
                stop = format!("another round would end after the time budget of {m} minutes");
                break;
            }
        }
        let record = if round == 0 {
            let raw = options.raw_method;
            // `auto`'s choice is MI's; NGF is itself the guard against MI's drifting scale.
            let raw_stages = if raw == MethodName::Mi {
                options.stages.clone()
            } else {
                options.stages.flexible()
            };
            let from_identity = build(raw, &raw_cfg, false, &raw_stages)?;
            let from_global = build(raw, &raw_cfg, true, &raw_stages)?;
            let (label, label_global) = (
                format!("raw {}", raw.as_str()),
                format!("raw {} global", raw.as_str()),
            );
            let bar = console.bar(
                loaded.len() as u64,
                &format!("round 0: raw {}", raw.as_str().to_uppercase()),
            );
            let mut results = BTreeMap::new();
            for p in &loaded {
                let init = comir_register::centered_identity(&p.a_gray, &p.b_gray);
                let kept = best(
                    [
                        candidate(
                            from_identity.as_ref(),
                            p,
                            &p.a_gray,
                            &p.b_gray,
                            &init,
                            0,
                            &label,
                            0.0,
                        ),
                        candidate(
                            from_global.as_ref(),
                            p,
                            &p.a_gray,
                            &p.b_gray,
                            &init,
                            0,
                            &label_global,
                            0.0,
                        ),
                    ]
                    .into_iter()
                    .flatten(),
                );
                match kept {
                    Some(r) => {
                        results.insert(p.name.clone(), r);
                    }
                    None => {
                        console.note(&format!(
                            "skipping pair '{}': no method registered it",
                            p.name
                        ));
                        state
                            .skipped
                            .insert(p.name.clone(), "no method registered it".into());
                    }
                }
                bar.inc(1);
            }
            bar.finish_and_clear();
            summarize_round(
                0,
                results,
                None,
                Vec::new(),
                started.elapsed().as_secs_f64(),
            )
        } else {
            let Some(previous) = previous.as_ref() else {
                unreachable!("round {round} follows round 0")
            };
            let by_name: BTreeMap<&str, &LoadedPair> =
                loaded.iter().map(|p| (p.name.as_str(), p)).collect();
            let registered = |names: &mut dyn Iterator<Item = &PairResult>| -> Vec<RegisteredPair> {
                names
                    .filter_map(|r| {
                        let p = by_name.get(r.name.as_str())?;
                        Some(RegisteredPair {
                            name: r.name.clone(),
                            a: p.a.clone(),
                            b: p.b.clone(),
                            fixed_to_moving: r.record.composite(),
                        })
                    })
                    .collect()
            };
            let confident: Vec<&PairResult> =
                previous.results.values().filter(|r| r.is_ok()).collect();
            let train: Vec<RegisteredPair> = registered(
                &mut confident
                    .iter()
                    .copied()
                    .filter(|r| !validation.contains(&r.name)),
            );
            if train.is_empty() {
                stop = "no confidently registered pair to learn from".into();
                break;
            }
            let val = registered(
                &mut confident
                    .iter()
                    .copied()
                    .filter(|r| validation.contains(&r.name)),
            );
            let trained_on: Vec<String> = train.iter().map(|p| p.name.clone()).collect();
            // The last of several learned rounds learns afresh, for as many steps as all rounds
            // together, from the pairs the earlier rounds registered: a fine-tuned model still
            // carries what it first learned from round 0's wrong pairs (method.md §11.4).
            let fresh = round > 1 && round == options.rounds;
            let train_dir = if fresh {
                options.out.join(FRESH_MODEL_DIR)
            } else {
                model_dir.clone()
            };
            let mut config = recipe.clone();
            config.schedule.steps =
                recipe.schedule.steps + (round - 1) * (recipe.schedule.steps / 2);
            // The budget also caps the training, counted over every round's steps so far (a
            // fresh model counts its own steps only: it gets what is left of the budget).
            config.schedule.minutes = match options.minutes {
                Some(m) if fresh => {
                    let spent = spent_before + clock.elapsed().as_secs_f64();
                    Some((m - spent / 60.0).max(0.0))
                }
                m => m,
            };
            let factory = trainer_factory(
                &config,
                has_checkpoint(&train_dir).then_some(train_dir.as_path()),
                TrainerChoice::Auto,
                &options.device,
            )?;
            let trained = {
                let mut bar = Bar::new(
                    console,
                    config.schedule.steps,
                    &format!("round {round}: learn"),
                );
                let summary = train_registered(
                    &config,
                    RegisteredData {
                        train,
                        validation: val,
                        folders: DataFolders {
                            a: options.pairs.join("A"),
                            b: options.pairs.join("B"),
                        },
                    },
                    &train_dir,
                    factory.as_ref(),
                    &mut bar,
                )?;
                bar.finish();
                summary.steps
            };
            // A fresh model that the time budget cut short does not overrule anything.
            let overrules = fresh && trained >= config.schedule.steps;
            if fresh {
                // Killed in between, a resumed run finds the fresh model finished and moves it.
                if model_dir.exists() {
                    std::fs::remove_dir_all(&model_dir)
                        .with_context(|| format!("{}", model_dir.display()))?;
                }
                std::fs::rename(&train_dir, &model_dir)
                    .with_context(|| format!("{}", model_dir.display()))?;
            }
            let model = RegistrationModel::load(&ModelOptions {
                device: options.device.clone(),
                ..ModelOptions::new(model_dir.clone())
            })?;
            let from_identity = build(MethodName::Ncc, &learned_cfg, false, &learned_stages)?;
            let refine = build(MethodName::Ncc, &learned_cfg, false, &refine_stages)?;
            let bar = console.bar(loaded.len() as u64, &format!("round {round}: register"));
            let mut results = BTreeMap::new();
            for p in &loaded {
                let Some(current) = previous.results.get(&p.name) else {
                    bar.inc(1);
                    continue;
                };
                let start = Instant::now();
                let reps = model.prepare(&p.a, &p.b);
                let represent_seconds = start.elapsed().as_secs_f64();
                let (mut identity_result, mut refined) = (None, None);
                if let Ok((f, m)) = &reps {
                    let init = comir_register::centered_identity(f, m);
                    identity_result = candidate(
                        from_identity.as_ref(),
                        p,
                        f,
                        m,
                        &init,
                        round,
                        "comir ncc",
                        represent_seconds,
                    );
                    let init = current.record.transform();
                    refined = candidate(
                        refine.as_ref(),
                        p,
                        f,
                        m,
                        &init,
                        round,
                        "comir ncc refine",
                        represent_seconds,
                    );
                } else if let Err(e) = reps {
                    console.note(&format!("pair '{}': {e:#}; keeping its result", p.name));
                }
                let size = (p.a_gray.width(), p.a_gray.height());
                if let Some(kept) = keep(current, identity_result, refined, overrules, size) {
                    results.insert(p.name.clone(), kept);
                }
                bar.inc(1);
            }
            bar.finish_and_clear();
            summarize_round(
                round,
                results,
                Some(previous),
                trained_on,
                started.elapsed().as_secs_f64(),
            )
        };
        last_round_seconds = record.seconds;
        console.say(&format!(
            "round {}: mean confidence {:.3}, {} of {} pairs ok, {} changed, {:.0} s",
            record.round,
            record.mean_confidence,
            record.confident,
            record.results.len(),
            record.changed.len(),
            record.seconds
        ));
        let rose = previous
            .as_ref()
            .is_none_or(|p| record.mean_confidence > p.mean_confidence + 1e-3);
        state.rounds.push(record);
        if !rose {
            stop = "the mean confidence stopped rising".into();
            state.finished = true;
        }
        write_outputs(&options.out, &state)?;
        write_state(&options.out, &state)?;
    }
    state.finished = true;
    write_state(&options.out, &state)?;
    write_outputs(&options.out, &state)?;
    if options.warped {
        if let Some(last) = state.rounds.last() {
            write_warped(&options.out, &loaded, last)?;
        }
    }
    if options.report {
        write_report(options, &state, &loaded, &stop)?;
    }
    Ok(AlignSummary {
        rounds: state.rounds,
        skipped: state.skipped,
        stop,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use comir_transform::Rigid2;

    fn shifted(dx: f64, angle_deg: f64) -> TransformRecord {
        let t = Transform2::Rigid(Rigid2 {
            angle_rad: angle_deg.to_radians(),
            translation: [dx, 0.0],
            center: [50.0, 25.0],
        });
        TransformRecord::new(&t, "test", 0.0, 0.0)
    }

    #[test]
    fn a_result_is_contradicted_when_the_refinement_moves_it_beyond_the_success_tolerance() {
        // 2 % of a width of 100 is 2 px: a shift of 1.9 px stays, 2.1 px contradicts.
        let current = shifted(0.0, 0.0);
        assert!(!contradicts(&shifted(1.9, 0.0), &current, 100, 50));
        assert!(contradicts(&shifted(2.1, 0.0), &current, 100, 50));
        // A rotation about the centre moves the points by θ times their mean distance from it
        // (30 px in a 100 × 50 image): 5° by 2.6 px, 1° by 0.5 px, though the centre stays.
        assert!(contradicts(&shifted(0.0, 5.0), &current, 100, 50));
        assert!(!contradicts(&shifted(0.0, 1.0), &current, 100, 50));
        // Symmetric: which one is the refinement does not matter.
        assert!(contradicts(&current, &shifted(2.1, 0.0), 100, 50));
    }

    fn result(round: usize, pipeline: &str, dx: f64, confidence: f64) -> PairResult {
        let mut record = shifted(dx, 0.0);
        record.confidence = Some(confidence);
        PairResult {
            name: "p.png".into(),
            round,
            pipeline: pipeline.into(),
            record,
        }
    }

    #[test]
    fn the_fresh_model_overrules_a_more_confident_result_only_where_it_contradicts_it() {
        let size = (100, 50);
        let current = result(0, "raw mi", 0.0, 0.9);
        let far = || Some(result(3, "comir ncc refine", 8.0, 0.5));
        let near = || Some(result(3, "comir ncc refine", 1.0, 0.5));
        let identity = || Some(result(3, "comir ncc", 8.0, 0.6));
        let kept =
            |id, refined, fresh| keep(&current, id, refined, fresh, size).map(|r| r.pipeline);
        // Fine-tuned rounds keep the most confident result, whatever the model says.
        assert_eq!(kept(identity(), far(), false).as_deref(), Some("raw mi"));
        // The fresh model moved the current result by 8 px (> 2 % of 100): the new results
        // compete alone, the more confident of them wins.
        assert_eq!(kept(identity(), far(), true).as_deref(), Some("comir ncc"));
        assert_eq!(kept(None, far(), true).as_deref(), Some("comir ncc refine"));
        // Moved by 1 px, within the tolerance: the current result still competes, and wins.
        assert_eq!(kept(identity(), near(), true).as_deref(), Some("raw mi"));
        // No new result (the representations failed): the current result stays.
        assert_eq!(kept(None, None, true).as_deref(), Some("raw mi"));
        // Ties go to the current result.
        let tie = || Some(result(3, "comir ncc", 0.0, 0.9));
        assert_eq!(kept(tie(), None, false).as_deref(), Some("raw mi"));
    }
}
