//! The training recipes shipped in `configs/` parse and validate: a typo in a key or a value
//! would otherwise surface only when someone starts a 30-minute run.

use std::path::Path;

use comir_train::run::{LrDecay, Preset, TrainConfig};

fn configs_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

#[test]
fn every_shipped_training_config_parses_and_validates() {
    let mut checked = 0;
    let entries = std::fs::read_dir(configs_dir()).expect("configs/ exists");
    for entry in entries {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // study-2023.toml describes a study (`comir experiment`), not one training run.
        if !name.ends_with(".toml") || name == "study-2023.toml" {
            continue;
        }
        let config = TrainConfig::from_toml_file(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        config
            .validate()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} training configs found");
}

#[test]
fn the_histology_recipe_anneals_and_the_frozen_study_recipe_does_not() {
    let load =
        |name: &str| TrainConfig::from_toml_file(&configs_dir().join(name)).expect("config parses");
    assert_eq!(
        load("histology-30min.toml").schedule.lr_decay,
        LrDecay::Cosine
    );
    assert_eq!(
        load("histology-study-2023.toml").schedule.lr_decay,
        LrDecay::Constant
    );
    // The time-to-quality recipe trains the default network (docs/results.md, "Time to quality").
    assert_eq!(load("histology-30min.toml").preset, Preset::default());
    assert_eq!(Preset::default(), Preset::Fast);
}
