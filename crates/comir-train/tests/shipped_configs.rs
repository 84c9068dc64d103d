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

#[test]
fn the_defaults_are_the_best_recipe_and_a_config_inherits_them_key_by_key() {
    let d = TrainConfig::default();
    assert_eq!(d.preset, Preset::Fast);
    assert_eq!(d.patches.size, 64);
    assert!(d.patches.normalize_a && d.patches.normalize_b);
    assert_eq!(
        (d.schedule.batch, d.schedule.lr_decay),
        (12, LrDecay::Cosine)
    );
    assert_eq!(d.train.l2_decay, 0.1);
    // An empty file is the defaults; a section with one key keeps the others' defaults.
    assert_eq!(TrainConfig::from_toml_str("").expect("empty"), d);
    let c = TrainConfig::from_toml_str("[patches]\nsize = 32\n[schedule]\nsteps = 7\n")
        .expect("partial");
    assert_eq!((c.patches.size, c.schedule.steps), (32, 7));
    assert!(c.patches.normalize_a && c.patches.normalize_b);
    assert_eq!(
        (c.schedule.batch, c.schedule.lr_decay),
        (12, LrDecay::Cosine)
    );
    assert_eq!(c.train.l2_decay, 0.1);
    // A whole optimiser replaces the default one (no SGD momentum leaks into Adam).
    let adam = TrainConfig::from_toml_str(
        "[train]\noptimizer = { kind = \"adam\", lr = 0.001, weight_decay = 0.0001 }\n",
    )
    .expect("adam");
    assert_eq!(adam.train.optimizer.lr(), 0.001);
    assert_eq!(adam.train.l2_decay, 0.1);
    // Errors still name the line.
    let e = TrainConfig::from_toml_str("[patches]\nsize = 32\nsizee = 3\n").expect_err("typo");
    assert!(e.starts_with("line 3:") && e.contains("sizee"), "{e}");
}

#[test]
fn the_reference_recipe_keeps_the_papers_settings() {
    let r = TrainConfig::from_toml_file(&configs_dir().join("reference-2020.toml"))
        .expect("config parses");
    assert_eq!(r.preset, Preset::Histology);
    assert_eq!((r.patches.size, r.schedule.batch), (128, 8));
    assert!(!r.patches.normalize_a && !r.patches.normalize_b);
    assert_eq!(r.schedule.lr_decay, LrDecay::Constant);
    assert_eq!((r.train.l1_decay, r.train.l2_decay), (1e-4, 1e-4));
    assert_eq!(r.train.optimizer.lr(), 0.01);
    // The study's frozen recipe and the MNI152 recipe still train as they did.
    for name in ["histology-study-2023.toml", "mni152-30min.toml"] {
        let c = TrainConfig::from_toml_file(&configs_dir().join(name)).expect("parses");
        assert!(!c.patches.normalize_a && !c.patches.normalize_b, "{name}");
    }
}
