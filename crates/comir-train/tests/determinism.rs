//! The same seed gives the same training run, bit for bit. Alone in its test binary because
//! burn draws initial weights from a per-device generator that concurrent tests would share.

use burn::tensor::Device;
mod common;

use comir_model::DenseUNetConfig;
use comir_train::{StepStats, TrainSettings, Trainer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn run(seed: u64) -> Vec<StepStats> {
    let sampler = common::phantom_sampler(2, 48, 16);
    let net = DenseUNetConfig::tiny();
    let settings = TrainSettings {
        seed,
        ..TrainSettings::default()
    };
    let mut trainer = Trainer::new(&net, &net, settings, &Device::flex()).expect("trainer");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..3)
        .map(|_| trainer.step(&sampler.batch(4, &mut rng)).expect("step"))
        .collect()
}

#[test]
fn same_seed_same_run_other_seed_other_run() {
    let a = run(5);
    assert_eq!(a, run(5));
    assert_ne!(a, run(6));
}
