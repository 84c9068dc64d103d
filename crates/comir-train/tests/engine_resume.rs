//! `comir_train::run::train` with the engine's trainer: it starts from the weights burn's
//! trainer starts from, and a stopped and resumed run (SGD and Adam) ends bit-identical to an
//! uninterrupted one.
//!
//! One test function: burn's weight RNG is process-wide, so runs that must be identical cannot
//! build networks concurrently.

use std::path::Path;

use comir_engine::FastDenseUNet;
use comir_model::DenseUNetConfig;
use comir_train::run::{train, Silent, TrainConfig};
use comir_train::{
    engine_trainer_factory, BottleneckMode, FastTrainer, OptimizerSettings, TrainSettings, Trainer,
};

mod common;

use common::run_paths as paths;

fn tiny_network() -> DenseUNetConfig {
    DenseUNetConfig::tiny()
}

fn tiny_config(steps: usize, optimizer: &OptimizerSettings) -> TrainConfig {
    tiny_config_with(steps, optimizer, BottleneckMode::Off)
}

fn tiny_config_with(
    steps: usize,
    optimizer: &OptimizerSettings,
    bottleneck: BottleneckMode,
) -> TrainConfig {
    let mut c = common::tiny_run_config(steps);
    c.train.optimizer = optimizer.clone();
    c.train.bottleneck.mode = bottleneck;
    c
}

/// The saved networks' parameters and running statistics, as flat engine buffers.
fn saved_weights(dir: &Path) -> Vec<f32> {
    let m = comir_model::Model::load(dir, &burn::tensor::Device::flex()).expect("model loads");
    let mut all = Vec::new();
    for (net, cfg) in [
        (&m.networks.a, &m.card.network_a),
        (&m.networks.b, &m.card.network_b),
    ] {
        let e = FastDenseUNet::from_burn(net, cfg).expect("convert");
        all.extend_from_slice(e.params());
        all.extend_from_slice(e.running_stats());
    }
    all
}

#[test]
fn engine_runs_start_like_burn_and_resume_bit_identically() {
    // Same initial weights as burn's trainer from the same seed.
    let cfg = tiny_network();
    let settings = TrainSettings {
        seed: 11,
        ..TrainSettings::default()
    };
    let burn = Trainer::new(&cfg, &cfg, settings.clone(), &burn::tensor::Device::flex())
        .expect("burn trainer");
    let fast = FastTrainer::from_configs(&cfg, &cfg, settings).expect("engine trainer");
    let (ba, bb) = burn.networks();
    let (fa, fb) = fast.networks();
    assert!(FastDenseUNet::from_burn(ba, &cfg).expect("a").params() == fa.params());
    assert!(FastDenseUNet::from_burn(bb, &cfg).expect("b").params() == fb.params());

    let data = tempfile::tempdir().expect("tmp");
    comir_testkit::write_phantom_pairs(data.path(), 0..10, 48);
    let factory = engine_trainer_factory();
    for (optimizer, mode) in [
        (OptimizerSettings::default(), BottleneckMode::Off),
        (
            OptimizerSettings::Adam {
                lr: 1e-3,
                weight_decay: 1e-4,
            },
            BottleneckMode::Off,
        ),
        // Projection heads and their optimiser states travel in the checkpoint too.
        (OptimizerSettings::default(), BottleneckMode::Projection),
    ] {
        let tiny_config = |steps: usize, o: &OptimizerSettings| tiny_config_with(steps, o, mode);
        let whole = tempfile::tempdir().expect("tmp");
        let full = train(
            &tiny_config(6, &optimizer),
            &paths(data.path(), whole.path()),
            false,
            &factory,
            &mut Silent,
        )
        .expect("uninterrupted run");
        assert_eq!(full.steps, 6);
        assert!(full.history.iter().all(|r| r.loss.is_finite()));
        assert!(full.history.iter().any(|r| r.val_loss.is_some()));
        assert_eq!(
            full.history.iter().all(|r| r.bottleneck > 0.0),
            mode != BottleneckMode::Off
        );

        let parts = tempfile::tempdir().expect("tmp");
        let first = train(
            &tiny_config(3, &optimizer),
            &paths(data.path(), parts.path()),
            false,
            &factory,
            &mut Silent,
        )
        .expect("first part");
        assert_eq!(first.steps, 3);
        let second = train(
            &tiny_config(6, &optimizer),
            &paths(data.path(), parts.path()),
            true,
            &factory,
            &mut Silent,
        )
        .expect("resumed part");
        assert_eq!((second.steps, second.steps_this_run), (6, 3));
        let losses =
            |h: &[comir_train::run::HistoryRow]| h.iter().map(|r| r.loss).collect::<Vec<_>>();
        assert_eq!(
            losses(&full.history),
            losses(&second.history),
            "{optimizer:?}"
        );
        let (w1, w2) = (saved_weights(whole.path()), saved_weights(parts.path()));
        assert!(w1 == w2, "{optimizer:?}: resumed weights differ");

        // A checkpoint of the engine cannot be resumed by burn's trainer (other optimiser state).
        let burn_factory = comir_train::burn_trainer_factory(burn::tensor::Device::flex());
        let e = train(
            &tiny_config(8, &optimizer),
            &paths(data.path(), parts.path()),
            true,
            &burn_factory,
            &mut Silent,
        )
        .expect_err("other trainer refused");
        assert!(e.to_string().contains("engine trainer"), "{e}");
    }

    // A time budget stops the run early with a checkpoint at the last step; resuming with the
    // budget spent does no step, and a larger --steps without the budget continues.
    let timed = tempfile::tempdir().expect("tmp");
    let mut config = tiny_config(1000, &OptimizerSettings::default());
    config.schedule.minutes = Some(0.5 / 60.0);
    let run = train(
        &config,
        &paths(data.path(), timed.path()),
        false,
        &factory,
        &mut Silent,
    )
    .expect("timed run");
    assert!(run.steps >= 1 && run.steps < 1000, "{} steps", run.steps);
    let again = train(
        &config,
        &paths(data.path(), timed.path()),
        true,
        &factory,
        &mut Silent,
    )
    .expect("resume with the budget spent");
    assert_eq!((again.steps, again.steps_this_run), (run.steps, 0));
    let mut more = config.clone();
    more.schedule.minutes = None;
    more.schedule.steps = run.steps + 2;
    let longer = train(
        &more,
        &paths(data.path(), timed.path()),
        true,
        &factory,
        &mut Silent,
    )
    .expect("resume without the budget");
    assert_eq!(longer.steps, run.steps + 2);
    assert_eq!(longer.history.len(), run.steps + 2);
}
