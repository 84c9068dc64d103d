//! A model card written by comir's training run, kept as it was written (`fixtures/model-v1.json`,
//! format version 1: `comir_train::run::train`, 3 steps of a tiny network on 10 generated
//! pairs in `pairs/A`, `pairs/B`, with Adam, cosine decay, pooled bottleneck supervision and a
//! test split), still loads: every later reader must read the cards earlier versions wrote.

use std::path::{Path, PathBuf};

use comir_model::store::{read_card, CARD_FILE};

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
    assert_eq!(card.training["config"]["patches"]["size"], 32);
    assert_eq!(
        card.training["split"]["test"].as_array().map(Vec::len),
        Some(2)
    );
}

/// `fixtures/model-v1-imported.json`: written by `comir import-torch --a a.safetensors --b
/// b.safetensors --config tiny.toml --log-a` on the `torch-tiny` test weights.
#[test]
fn a_version_1_imported_card_loads() {
    let dir = fixture_dir("model-v1-imported.json");
    let card = card(dir.path());
    assert_eq!(card.network_b.in_channels, 3);
    assert_eq!(card.training["imported_from"]["a"], "a.safetensors");
}
