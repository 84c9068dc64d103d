//! Shared by the test binaries of comir-train.
// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::path::Path;

use comir_data::{PatchConfig, PatchSampler};
use comir_model::DenseUNetConfig;
use comir_train::run::{RunPaths, TrainConfig};

/// A sampler over `pairs` generated phantom pairs of `side × side` px, drawing `patch × patch`
/// patches with the reference augmentation.
pub fn phantom_sampler(pairs: u64, side: usize, patch: usize) -> PatchSampler {
    let pairs = (0..pairs)
        .map(|i| {
            let (a, b) = comir_testkit::phantom_pair(side, side, i);
            (format!("p{i}"), a, b)
        })
        .collect();
    let cfg = PatchConfig {
        size: patch,
        ..PatchConfig::default()
    };
    PatchSampler::new(pairs, cfg).expect("sampler")
}

/// A whole run of `steps` steps on the tiny network, 32² patches, batches of 4: a checkpoint and
/// a validation every 2 steps, a quarter of the pairs for validation, a fifth held out.
pub fn tiny_run_config(steps: usize) -> TrainConfig {
    let mut c = TrainConfig {
        network: Some(DenseUNetConfig::tiny()),
        ..TrainConfig::default()
    };
    c.patches.size = 32;
    c.schedule.steps = steps;
    c.schedule.batch = 4;
    c.schedule.checkpoint_every = 2;
    c.schedule.validate_every = 2;
    c.schedule.validation_batches = 1;
    c.split.validation_fraction = 0.25;
    // Resume tests extend runs (3 steps, then on to 6): a constant rate makes that the same as
    // one run of 6 (a cosine decay plans over the steps it is given).
    c.schedule.lr_decay = comir_train::run::LrDecay::Constant;
    c.split.test_fraction = 0.2;
    c
}

/// The pairs in `data/A`, `data/B` (as `comir_testkit::write_phantom_pairs` writes them), the
/// model in `out`.
pub fn run_paths(data: &Path, out: &Path) -> RunPaths {
    RunPaths {
        a: data.join("A"),
        b: data.join("B"),
        out: out.to_path_buf(),
    }
}
