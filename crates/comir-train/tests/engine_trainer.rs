//! One `FastTrainer` step against one `comir_train::Trainer` step from the same weights,
//! batch and rotations.

use burn::tensor::Device;
use comir_data::Batch;
use comir_engine::FastDenseUNet;
use comir_model::DenseUNetConfig;
use comir_train::{
    BottleneckMode, BottleneckSettings, Clipping, ContrastiveTrainer, FastTrainer,
    OptimizerSettings, TrainSettings, Trainer,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn tiny() -> DenseUNetConfig {
    DenseUNetConfig {
        in_channels: 1,
        out_channels: 2,
        init_filters: 5,
        down_blocks: vec![2, 1],
        up_blocks: vec![1, 2],
        bottleneck_layers: 2,
        growth_rate: 3,
        compression: 0.75,
        dropout: 0.0,
    }
}

fn batch(seed: u64) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (n, s) = (3, 16);
    let mut v = || {
        (0..n * s * s)
            .map(|_| rng.gen_range(-1.0f32..1.0))
            .collect::<Vec<_>>()
    };
    let (a, b) = (v(), v());
    Batch {
        n,
        size: s,
        channels_a: 1,
        channels_b: 1,
        a,
        b,
        mask: None,
    }
}

fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let err = a
        .iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(err <= tol * scale, "{what}: max error {err} (tol {tol})");
}

/// burn's weight RNG is process-wide: trainers (networks, projection heads) are built one at a
/// time so that both trainers of a test draw the same heads.
static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn compare(settings: TrainSettings, clipping: Clipping) {
    compare_scaled((settings.clone(), 1.0), (settings, 1.0), clipping);
}

/// Like [`compare`], with each trainer's own settings and learning-rate scale.
fn compare_scaled(burn: (TrainSettings, f64), engine: (TrainSettings, f64), clipping: Clipping) {
    let cfg = tiny();
    let guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let mut trainer = Trainer::new(&cfg, &cfg, burn.0, &Device::flex()).expect("trainer");
    let (a, b) = trainer.networks();
    let ea = FastDenseUNet::from_burn(a, &cfg).expect("a");
    let eb = FastDenseUNet::from_burn(b, &cfg).expect("b");
    let mut fast = FastTrainer::new(ea, eb, engine.0, clipping).expect("fast trainer");
    drop(guard);
    ContrastiveTrainer::set_lr_scale(&mut trainer, burn.1);
    ContrastiveTrainer::set_lr_scale(&mut fast, engine.1);
    for step in 0..2 {
        let batch = batch(step);
        let slow = trainer.step(&batch).expect("burn step");
        let quick = fast.step(&batch).expect("engine step");
        assert!(
            (slow.bottleneck - quick.bottleneck).abs() <= 1e-4 * slow.bottleneck.abs().max(1.0),
            "bottleneck loss: burn {} engine {}",
            slow.bottleneck,
            quick.bottleneck
        );
        assert!(
            (slow.loss - quick.loss).abs() <= 1e-4 * slow.loss.abs().max(1.0),
            "loss: burn {} engine {}",
            slow.loss,
            quick.loss
        );
        let (a, b) = trainer.networks();
        let (fa, fb) = fast.networks();
        let ra = FastDenseUNet::from_burn(a, &cfg).expect("a");
        let rb = FastDenseUNet::from_burn(b, &cfg).expect("b");
        assert_close("net A weights", fa.params(), ra.params(), 2e-4);
        assert_close("net B weights", fb.params(), rb.params(), 2e-4);
        assert_close(
            "net A running stats",
            fa.running_stats(),
            ra.running_stats(),
            1e-4,
        );
    }
}

#[test]
fn fast_trainer_step_matches_burn_trainer_sgd() {
    compare(
        TrainSettings {
            seed: 3,
            ..TrainSettings::default()
        },
        Clipping::PerParameter(1.0),
    );
}

#[test]
fn fast_trainer_step_matches_burn_trainer_without_clipping() {
    compare(
        TrainSettings {
            seed: 4,
            grad_clip_norm: None,
            optimizer: OptimizerSettings::Sgd {
                lr: 1e-2,
                momentum: 0.9,
                weight_decay: 1e-4,
            },
            ..TrainSettings::default()
        },
        Clipping::None,
    );
}

fn sgd(lr: f64, seed: u64) -> TrainSettings {
    TrainSettings {
        seed,
        optimizer: OptimizerSettings::Sgd {
            lr,
            momentum: 0.9,
            weight_decay: 1e-4,
        },
        ..TrainSettings::default()
    }
}

/// A schedule's factor on the rate is the same as that rate: checked across the two trainers,
/// each side scaled once, so neither trainer can ignore the factor.
#[test]
fn learning_rate_scale_equals_the_scaled_rate_in_both_trainers() {
    compare_scaled(
        (sgd(2e-2, 5), 0.25),
        (sgd(5e-3, 5), 1.0),
        Clipping::PerParameter(1.0),
    );
    compare_scaled(
        (sgd(5e-3, 6), 1.0),
        (sgd(2e-2, 6), 0.25),
        Clipping::PerParameter(1.0),
    );
}

/// A zero factor (the last step of a cosine schedule) leaves the weights where they are.
#[test]
fn zero_learning_rate_scale_leaves_the_weights() {
    let cfg = tiny();
    let guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let trainer = Trainer::new(&cfg, &cfg, sgd(1e-2, 7), &Device::flex()).expect("trainer");
    let (a, b) = trainer.networks();
    let ea = FastDenseUNet::from_burn(a, &cfg).expect("a");
    let eb = FastDenseUNet::from_burn(b, &cfg).expect("b");
    drop(guard);
    let before = ea.params().to_vec();
    let mut fast = FastTrainer::new(ea, eb, sgd(1e-2, 7), Clipping::None).expect("trainer");
    ContrastiveTrainer::set_lr_scale(&mut fast, 0.0);
    fast.step(&batch(1)).expect("step");
    assert_eq!(fast.networks().0.params(), &before[..]);
    ContrastiveTrainer::set_lr_scale(&mut fast, 1.0);
    fast.step(&batch(2)).expect("step");
    assert_ne!(fast.networks().0.params(), &before[..]);
}

fn with_bottleneck(mode: BottleneckMode, seed: u64) -> TrainSettings {
    TrainSettings {
        seed,
        bottleneck: BottleneckSettings {
            mode,
            weight: 0.7,
            projection_hidden: 6,
            projection_out: 4,
        },
        ..TrainSettings::default()
    }
}

#[test]
fn fast_trainer_matches_burn_with_flat_bottleneck_supervision() {
    compare(
        with_bottleneck(BottleneckMode::Flat, 5),
        Clipping::PerParameter(1.0),
    );
}

#[test]
fn fast_trainer_matches_burn_with_pooled_bottleneck_supervision() {
    compare(
        with_bottleneck(BottleneckMode::Pooled, 6),
        Clipping::PerParameter(1.0),
    );
}

#[test]
fn fast_trainer_matches_burn_with_projection_bottleneck_supervision() {
    compare(
        with_bottleneck(BottleneckMode::Projection, 7),
        Clipping::PerParameter(1.0),
    );
}

fn with_alignment(weight: f64, seed: u64) -> TrainSettings {
    TrainSettings {
        seed,
        align_weight: weight,
        l1_decay: 0.0,
        l2_decay: 0.0,
        grad_clip_norm: None,
        ..TrainSettings::default()
    }
}

#[test]
fn fast_trainer_step_matches_burn_trainer_with_alignment() {
    compare(with_alignment(2.0, 8), Clipping::None);
}

#[test]
fn alignment_term_adds_to_the_loss_and_pulls_the_modalities_together() {
    let cfg = tiny();
    let guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let trainer = Trainer::new(&cfg, &cfg, with_alignment(0.0, 9), &Device::flex()).expect("t");
    let (a, b) = trainer.networks();
    let engine = |w: f64| {
        let ea = FastDenseUNet::from_burn(a, &cfg).expect("a");
        let eb = FastDenseUNet::from_burn(b, &cfg).expect("b");
        FastTrainer::new(ea, eb, with_alignment(w, 9), Clipping::None).expect("fast")
    };
    let (mut plain, mut aligned) = (engine(0.0), engine(10.0));
    drop(guard);
    let first = batch(7);
    let (p, q) = (
        plain.step(&first).expect("step"),
        aligned.step(&first).expect("step"),
    );
    // Same weights, same batch: the loss differs by exactly w · mean squared difference.
    assert!((p.positive_mse - q.positive_mse).abs() < 1e-9);
    assert!((p.contrastive - q.contrastive).abs() < 1e-6);
    let expected = q.contrastive + 10.0 * q.positive_mse;
    assert!(
        (q.loss - expected).abs() <= 1e-5 * expected.abs(),
        "loss {} vs contrastive + 10 · mse {}",
        q.loss,
        expected
    );
    for step in 1..4 {
        plain.step(&batch(7 + step)).expect("step");
        aligned.step(&batch(7 + step)).expect("step");
    }
    let held_out = batch(99);
    let (p, q) = (
        plain.evaluate(&held_out).expect("eval"),
        aligned.evaluate(&held_out).expect("eval"),
    );
    assert!(
        q.positive_mse < 0.75 * p.positive_mse,
        "corresponding outputs: mean squared difference {} with the term, {} without",
        q.positive_mse,
        p.positive_mse
    );
}
