//! Training on generated multimodal patches: the loss falls; bad settings are refused.
//! (Determinism has its own test binary: burn's weight RNG is per device and shared by threads.)

use burn::tensor::Device;
mod common;

use comir_model::DenseUNetConfig;
use comir_train::{OptimizerSettings, TrainSettings, Trainer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn tiny(in_channels: usize) -> DenseUNetConfig {
    DenseUNetConfig {
        in_channels,
        out_channels: 1,
        init_filters: 6,
        down_blocks: vec![2, 2],
        up_blocks: vec![2, 2],
        bottleneck_layers: 2,
        growth_rate: 4,
        compression: 0.75,
        dropout: 0.0,
    }
}

fn settings(seed: u64) -> TrainSettings {
    TrainSettings {
        optimizer: OptimizerSettings::Adam {
            lr: 1e-2,
            weight_decay: 0.0,
        },
        seed,
        ..TrainSettings::default()
    }
}

fn run(steps: usize, seed: u64) -> Vec<comir_train::StepStats> {
    let s = common::phantom_sampler(4, 64, 16);
    let mut trainer =
        Trainer::new(&tiny(1), &tiny(1), settings(seed), &Device::flex()).expect("trainer");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..steps)
        .map(|_| trainer.step(&s.batch(6, &mut rng)).expect("step"))
        .collect()
}

#[test]
fn training_lowers_the_loss_and_aligns_the_modalities() {
    let stats = run(40, 1);
    let mean = |v: &[comir_train::StepStats], f: fn(&comir_train::StepStats) -> f64| {
        v.iter().map(f).sum::<f64>() / v.len() as f64
    };
    let (first, last) = (&stats[..8], &stats[stats.len() - 8..]);
    let (l0, l1) = (
        mean(first, |s| s.contrastive),
        mean(last, |s| s.contrastive),
    );
    assert!(stats.iter().all(|s| s.loss.is_finite()));
    // At the start the loss is about ln(2N − 1) = ln 11 ≈ 2.40.
    assert!(
        l1 < 0.8 * l0,
        "contrastive loss {l0:.3} -> {l1:.3}: {stats:?}"
    );
}

#[test]
fn bad_settings_are_refused() {
    let mut s = settings(0);
    s.tau = -0.5;
    let e = Trainer::new(&tiny(1), &tiny(1), s, &Device::flex()).err();
    assert!(e.expect("refused").to_string().contains("tau"));
    let mut b = tiny(1);
    b.out_channels = 3;
    assert!(Trainer::new(&tiny(1), &b, settings(0), &Device::flex()).is_err());
}
