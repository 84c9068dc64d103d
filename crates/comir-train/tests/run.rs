//! Whole training runs on generated pairs written to disk: the model folder, validation,
//! refusing bad settings, and resuming a stopped run to the same weights.
//!
//! Its own test binary because burn's weight RNG is process-wide: runs that must be
//! bit-identical cannot share a process with other tests building networks at the same time.

use std::path::Path;

use comir_train::run::{train, RunPaths, Silent};

mod common;

use common::{run_paths as paths, tiny_run_config as tiny_config};

#[test]
fn a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one() {
    let data = tempfile::tempdir().expect("tmp");
    comir_testkit::write_phantom_pairs(data.path(), 0..10, 48);
    let factory = comir_train::burn_trainer_factory(burn::tensor::Device::flex());

    // Same weights: both models give bit-identical representations (the weight files differ in
    // their parameter ids, which are random per process).
    let outputs = |dir: &Path| {
        let m = comir_model::Model::load(dir, &burn::tensor::Device::flex()).expect("model loads");
        let x = burn::tensor::Tensor::<4>::from_data(
            burn::tensor::TensorData::new(
                (0..2 * 32 * 32)
                    .map(|i| ((i * 37) % 101) as f32 / 101.0)
                    .collect::<Vec<f32>>(),
                [2, 1, 32, 32],
            ),
            &burn::tensor::Device::flex(),
        );
        let mut all: Vec<f32> = Vec::new();
        for net in [&m.networks.a, &m.networks.b] {
            let y: Vec<f32> = net
                .forward(x.clone())
                .representation
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32");
            all.extend(y);
        }
        all
    };
    let whole = tempfile::tempdir().expect("tmp");
    // The uninterrupted run also keeps snapshots (they do not change the training).
    let mut with_snapshots = tiny_config(6);
    with_snapshots.schedule.snapshot_every = 3;
    let full = train(
        &with_snapshots,
        &paths(data.path(), whole.path()),
        false,
        &factory,
        &mut Silent,
    )
    .expect("uninterrupted run");
    assert_eq!(full.steps, 6);
    // 10 pairs: 2 held out for testing, 2 of the remaining 8 for validation.
    assert_eq!(full.split.test.len(), 2);
    assert_eq!(full.split.validation.len(), 2);
    assert!(full.history.iter().any(|r| r.val_loss.is_some()));

    // The same run stopped after 3 steps (its last checkpoint is at step 3, the end of that
    // run), then resumed to 6.
    let parts = tempfile::tempdir().expect("tmp");
    let first = train(
        &tiny_config(3),
        &paths(data.path(), parts.path()),
        false,
        &factory,
        &mut Silent,
    )
    .expect("first part");
    assert_eq!(first.steps, 3);
    let after_first_part = outputs(parts.path());
    let second = train(
        &tiny_config(6),
        &paths(data.path(), parts.path()),
        true,
        &factory,
        &mut Silent,
    )
    .expect("resumed part");
    assert_eq!((second.steps, second.steps_this_run), (6, 3));

    let losses = |h: &[comir_train::run::HistoryRow]| h.iter().map(|r| r.loss).collect::<Vec<_>>();
    assert_eq!(losses(&full.history), losses(&second.history));
    let (o1, o2) = (outputs(whole.path()), outputs(parts.path()));
    assert!(
        o1 == o2,
        "resumed weights differ from the uninterrupted run's"
    );

    // Snapshots at steps 3 and 6 are complete models with the weights of those steps.
    let snap = |step: usize| whole.path().join(format!("snapshots/step-{step:06}"));
    assert!(
        outputs(&snap(6)) == o1,
        "the last snapshot is not the final model"
    );
    assert!(
        outputs(&snap(3)) == after_first_part,
        "the step-3 snapshot differs from a 3-step run"
    );
    assert!(
        after_first_part != o1,
        "3 and 6 steps gave the same weights"
    );
    assert!(!snap(2).exists() && !snap(4).exists());

    // The folder is a complete model: inference loads it.
    let model =
        comir_model::Model::load(whole.path(), &burn::tensor::Device::flex()).expect("model loads");
    assert_eq!(model.card.network_a.init_filters, 4);
    assert_eq!(model.card.split().map(|s| s.test.len()), Some(2));
    let history = std::fs::read_to_string(whole.path().join("history.csv")).expect("history");
    assert_eq!(history.lines().count(), 7, "header + one row per step");

    // Resuming with other settings is refused; so is a missing checkpoint.
    let mut other = tiny_config(8);
    other.train.tau = 0.1;
    let e = train(
        &other,
        &paths(data.path(), parts.path()),
        true,
        &factory,
        &mut Silent,
    )
    .expect_err("changed settings");
    assert!(e.to_string().contains("other settings"), "{e}");
    let empty = tempfile::tempdir().expect("tmp");
    let e = train(
        &tiny_config(2),
        &paths(data.path(), empty.path()),
        true,
        &factory,
        &mut Silent,
    )
    .expect_err("nothing to resume");
    assert!(e.to_string().contains("checkpoint.bin"), "{e}");
}

#[test]
fn bad_folders_and_settings_give_clear_errors() {
    let factory = comir_train::burn_trainer_factory(burn::tensor::Device::flex());
    let data = tempfile::tempdir().expect("tmp");
    comir_testkit::write_phantom_pairs(data.path(), 0..3, 40);
    let out = tempfile::tempdir().expect("tmp");
    let mut c = tiny_config(2);
    c.schedule.batch = 0;
    let e = train(
        &c,
        &paths(data.path(), out.path()),
        false,
        &factory,
        &mut Silent,
    )
    .expect_err("zero batch");
    assert!(e.to_string().contains("batch"), "{e}");
    let missing = RunPaths {
        a: data.path().join("nope"),
        b: data.path().join("B"),
        out: out.path().to_path_buf(),
    };
    let e = train(&tiny_config(2), &missing, false, &factory, &mut Silent).expect_err("missing");
    assert!(e.to_string().contains("nope"), "{e}");
}
