//! A model card written by comir's training run, kept as it was written (`fixtures/model-v1.json`,
//! format version 1: `comir_train::run::train`, 3 steps of a tiny network on 10 generated
//! pairs in `pairs/A`, `pairs/B`, with Adam, cosine decay, pooled bottleneck supervision and a
//! test split), still loads: every later reader must read the cards earlier versions wrote.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use comir_model::loss::Critic;
use comir_model::recipe::{BottleneckMode, LrDecay, OptimizerSettings, Preset};
use comir_model::record::{ImportSource, TrainingRecord};
use comir_model::store::{read_card, CARD_FILE};
use comir_model::DenseUNetConfig;

fn fixture_dir(name: &str) -> tempfile::TempDir {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::copy(&src, dir.path().join(CARD_FILE))
        .unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    dir
}

fn card(dir: &Path) -> comir_model::ModelCard {
    read_card(dir).expect("the card loads")
}

#[test]
fn a_version_1_training_card_loads() {
    let dir = fixture_dir("model-v1.json");
    let card = card(dir.path());
    assert_eq!(card.format_version, 1);
    assert_eq!(card.network_a.init_filters, 4);
    assert!(card.input.log_a && !card.input.log_b);
    let run = card.training_run().expect("a training run");
    let c = &run.config;
    assert_eq!(c.network, Some(DenseUNetConfig::tiny()));
    assert_eq!(c.preset, Preset::Fast);
    assert_eq!((c.patches.size, c.patches.log_a), (32, true));
    assert_eq!((c.schedule.steps, c.schedule.batch), (3, 4));
    assert_eq!(c.schedule.lr_decay, LrDecay::Cosine);
    assert_eq!(c.schedule.minutes, None);
    assert_eq!((c.split.seed, c.split.test_fraction), (3, 0.2));
    assert_eq!(c.train.critic, Critic::Mse);
    assert_eq!(
        c.train.optimizer,
        OptimizerSettings::Adam {
            lr: 1e-3,
            weight_decay: 1e-4
        }
    );
    assert_eq!(c.train.bottleneck.mode, BottleneckMode::Pooled);
    assert_eq!(c.train.bottleneck.weight, 0.5);
    assert_eq!(c.train.seed, 7);
    assert_eq!(run.steps, 3);
    assert_eq!(run.data.a, Path::new("pairs/A"));
    let last = run.last.as_ref().expect("a last row");
    assert_eq!(last.step, 3);
    assert!(last.val_loss.is_some());
    assert_eq!(run.split.test, ["p1.png", "p2.png"]);
    // What the CLI reads through the card.
    assert_eq!(card.patch_size(), 32);
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<HashSet<_>>();
    assert_eq!(card.validation_pairs(), names(&["p7.png", "p9.png"]));
    assert_eq!(
        card.seen_pairs(),
        names(&["p0.png", "p3.png", "p4.png", "p5.png", "p6.png", "p8.png", "p7.png", "p9.png"])
    );
}

/// A card is written back byte for byte as the version that wrote it did (the training entry's
/// keys sorted, as its writers produced them).
#[test]
fn version_1_cards_are_written_back_unchanged() {
    for name in ["model-v1.json", "model-v1-imported.json"] {
        let dir = fixture_dir(name);
        let original = std::fs::read(dir.path().join(CARD_FILE)).expect("read");
        let again = serde_json::to_vec_pretty(&card(dir.path())).expect("json");
        assert!(again == original, "{name} changed when written back");
    }
}

#[test]
fn a_training_entry_without_a_key_or_with_an_unknown_one_is_refused_with_its_name() {
    let dir = fixture_dir("model-v1.json");
    let path = dir.path().join(CARD_FILE);
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, text.replace("\"steps\": 3\n", "\"step_count\": 3\n")).expect("write");
    let e = read_card(dir.path()).expect_err("renamed key").to_string();
    assert!(e.contains("step_count"), "{e}");
    std::fs::write(&path, text.replace("\"data\": {", "\"folders\": {")).expect("write");
    let e = read_card(dir.path()).expect_err("missing key").to_string();
    assert!(e.contains("data"), "{e}");
    std::fs::write(&path, text.replace("\"tau\": 0.5", "\"tau\": \"half\"")).expect("write");
    assert!(read_card(dir.path()).is_err());
}

/// `fixtures/model-v1-imported.json`: written by `comir import-torch --a a.safetensors --b
/// b.safetensors --config tiny.toml --log-a` on the `torch-tiny` test weights.
#[test]
fn a_version_1_imported_card_loads() {
    let dir = fixture_dir("model-v1-imported.json");
    let card = card(dir.path());
    assert_eq!(card.network_b.in_channels, 3);
    assert_eq!(
        card.training,
        TrainingRecord::Imported(ImportSource {
            a: "a.safetensors".into(),
            b: "b.safetensors".into(),
            format: ImportSource::PYTORCH_FORMAT.into(),
        })
    );
    assert!(card.training_run().is_none());
    assert!(card.seen_pairs().is_empty());
    // No recipe recorded: the reference recipe's patch side.
    assert_eq!(card.patch_size(), 128);
}
