//! A run with a cosine learning-rate decay applies it step by step and records it in the
//! history (its own binary: it builds networks, which the resume test must not share).

use comir_model::DenseUNetConfig;
use comir_train::run::{train, LrDecay, RunPaths, Silent, TrainConfig};

#[test]
fn a_cosine_run_decays_the_rate_from_full_to_near_zero() {
    let data = tempfile::tempdir().expect("tmp");
    comir_testkit::write_phantom_pairs(data.path(), 0..6, 40);
    let out = tempfile::tempdir().expect("tmp");
    let mut c = TrainConfig {
        network: Some(DenseUNetConfig {
            down_blocks: vec![1],
            up_blocks: vec![1],
            ..DenseUNetConfig::tiny()
        }),
        ..TrainConfig::default()
    };
    c.patches.size = 32;
    c.schedule.steps = 4;
    c.schedule.batch = 3;
    c.schedule.validate_every = 0;
    c.schedule.lr_decay = LrDecay::Cosine;
    let factory = comir_train::burn_trainer_factory(burn::tensor::Device::flex());
    let paths = RunPaths {
        a: data.path().join("A"),
        b: data.path().join("B"),
        out: out.path().to_path_buf(),
    };
    let summary = train(&c, &paths, false, &factory, &mut Silent).expect("run");
    let base = c.train.optimizer.lr();
    let lrs: Vec<f64> = summary.history.iter().map(|r| r.lr).collect();
    // Step k (0-based) starts after k of 4 steps: 0.5 (1 + cos(pi k / 4)).
    let expected: Vec<f64> = (0..4)
        .map(|k| base * 0.5 * (1.0 + (std::f64::consts::PI * k as f64 / 4.0).cos()))
        .collect();
    for (got, want) in lrs.iter().zip(&expected) {
        assert!(
            (got - want).abs() < 1e-12,
            "rates {lrs:?}, expected {expected:?}"
        );
    }
    assert_eq!(lrs.len(), 4);
    let csv = std::fs::read_to_string(out.path().join("history.csv")).expect("history");
    assert!(
        csv.lines().next().is_some_and(|h| h.ends_with(",lr")),
        "{csv}"
    );
}
