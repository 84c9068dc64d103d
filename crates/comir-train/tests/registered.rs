//! Training through a transform (`train_registered`) against training on pre-warped copies
//! (`train`): with a whole-pixel shift that keeps every patch inside B the two draw the same
//! patches, so they must make the same steps.

use comir_data::RegisteredPair;
use comir_image::ops::{warp, Border};
use comir_model::record::DataFolders;
use comir_train::run::{train, train_registered, RegisteredData, RunPaths, Silent, TrainConfig};
use comir_transform::{Affine2, Composite2, Transform2};

fn config() -> TrainConfig {
    let mut c = TrainConfig::default();
    c.patches.size = 32;
    c.schedule.steps = 6;
    c.schedule.batch = 4;
    c.schedule.validate_every = 0;
    c.schedule.checkpoint_every = 3;
    c.split.test_fraction = 0.0;
    c.split.validation_fraction = 0.0;
    // Stretching each image's percentiles would see the shifted copies' borders: off, so the
    // two runs see the same values.
    c.patches.normalize_a = false;
    c.patches.normalize_b = false;
    c
}

#[test]
fn training_through_a_shift_equals_training_on_the_shifted_copies() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    for sub in ["A", "B"] {
        std::fs::create_dir_all(d.join(sub)).expect("mkdir");
    }
    let shift: Transform2 = Affine2 {
        matrix: [[1.0, 0.0], [0.0, 1.0]],
        translation: [9.0, 7.0],
        center: [0.0, 0.0],
    }
    .into();
    let shift = Composite2::linear(shift);
    let mut registered = Vec::new();
    for k in 0..3u64 {
        let (a, _) = comir_testkit::phantom_pair(64, 64, 30 + k);
        let (_, b) = comir_testkit::phantom_pair(80, 76, 40 + k);
        // The copy a registration tool would write: B resampled into A's frame.
        let copy = warp(&b, 64, 64, Border::Zero, |p| shift.apply(p));
        let name = format!("p{k}.tif");
        comir_image::save_tiff_f32(d.join("A").join(&name), &a).expect("save");
        comir_image::save_tiff_f32(d.join("B").join(&name), &copy).expect("save");
        registered.push(RegisteredPair {
            name,
            a,
            b,
            fixed_to_moving: shift.clone(),
        });
    }
    let factory = comir_train::engine_trainer_factory();
    let on_copies = train(
        &config(),
        &RunPaths::for_pairs(d, d.join("copies")),
        false,
        &factory,
        &mut Silent,
    )
    .expect("train on copies");
    let through = train_registered(
        &config(),
        RegisteredData {
            train: registered,
            validation: Vec::new(),
            folders: DataFolders {
                a: d.join("A"),
                b: d.join("B"),
            },
        },
        &d.join("through"),
        &factory,
        &mut Silent,
    )
    .expect("train through the shift");
    assert_eq!(on_copies.steps, 6);
    assert_eq!(through.steps, 6);
    for (x, y) in on_copies.history.iter().zip(&through.history) {
        assert!(
            x.loss == y.loss,
            "step {}: {} vs {}",
            x.step,
            x.loss,
            y.loss
        );
    }
    // And the weights: the two model files are the same bytes.
    let weights = |m: &str| std::fs::read(d.join(m).join("weights.bpk")).expect("weights");
    assert!(weights("copies") == weights("through"));

    // Continued from its checkpoint on other pairs, a run keeps its steps and goes on.
    let mut more = config();
    more.schedule.steps = 9;
    let (a, b) = comir_testkit::phantom_pair(64, 64, 50);
    let again = train_registered(
        &more,
        RegisteredData {
            train: vec![RegisteredPair {
                name: "other.tif".into(),
                a,
                b,
                fixed_to_moving: Composite2::linear(Transform2::Affine(Affine2::identity([
                    31.5, 31.5,
                ]))),
            }],
            validation: Vec::new(),
            folders: DataFolders {
                a: d.join("A"),
                b: d.join("B"),
            },
        },
        &d.join("through"),
        &factory,
        &mut Silent,
    )
    .expect("continue");
    assert_eq!((again.steps, again.steps_this_run), (9, 3));
    assert_eq!(again.history.len(), 9);
}
