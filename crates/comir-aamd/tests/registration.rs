//! End-to-end checks of α-AMD through the `Registrar` interface.

use comir_aamd::{AlphaAmd, AlphaAmdConfig};
use comir_image::ops::{gaussian_blur, Border};
use comir_image::Image;
use comir_register::{centered_identity, Outcome, Registrar};
use comir_testkit::{moved_by, phantom_pair};
use comir_transform::{corner_error, Rigid2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Short schedule so the tests stay fast in the dev profile; one start (the truth is close).
fn quick() -> AlphaAmdConfig {
    AlphaAmdConfig {
        iteration_factor: 0.3,
        starts_rad: vec![0.0],
        ..AlphaAmdConfig::default()
    }
}

fn truth(img: &Image) -> Rigid2 {
    Rigid2::new(6f64.to_radians(), [5.0, -3.0], img.center())
}

/// "Representation-like": both images show the same structures with matching intensities (up
/// to a gain), different blur and independent noise, like learned CoMIR
/// representations. (α-AMD compares quantised intensities, so it is not meant for pairs whose
/// intensities differ non-linearly; that is what the representations are for.)
fn representation_pair(w: usize, seed: u64) -> (Image, Image) {
    let (a, _) = phantom_pair(w, w, seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 100);
    let mut r1 = gaussian_blur(&a, 1.5);
    let mut r2 = gaussian_blur(&a, 2.5);
    for v in r1.data_mut() {
        *v += rng.gen_range(-0.05..0.05);
    }
    for v in r2.data_mut() {
        *v = 0.9 * *v + rng.gen_range(-0.05..0.05);
    }
    (r1, r2)
}

/// Registers `source` moved by [`truth`] to `fixed`, from the centred identity, and checks that
/// the corner error is within 30 % of MultiRegEval's success threshold.
fn registers_to_the_truth(fixed: &Image, source: &Image) -> Outcome {
    let t = truth(fixed);
    let moving = moved_by(source, &t, Border::Zero);
    let reg = AlphaAmd::new(quick()).expect("config");
    let o = reg
        .register(fixed, &moving, &centered_identity(fixed, &moving))
        .expect("register");
    let w = fixed.width() as f64;
    let err = corner_error(&o.transform, &t, w, w);
    assert!(
        err < 0.3 * 0.02 * w,
        "corner error {err} px, {:?}",
        o.transform
    );
    o
}

#[test]
fn recovers_rotation_and_translation_monomodal() {
    let (a, _) = phantom_pair(112, 112, 3);
    let o = registers_to_the_truth(&a, &a);
    assert_eq!(o.transform.center(), a.center());
}

#[test]
fn recovers_rotation_and_translation_on_representation_like_pair() {
    let (fixed, m0) = representation_pair(112, 6);
    registers_to_the_truth(&fixed, &m0);
}

#[test]
fn identity_gives_near_zero_error() {
    let (a, _) = phantom_pair(96, 96, 4);
    let reg = AlphaAmd::new(quick()).expect("config");
    let init = centered_identity(&a, &a);
    let o = reg.register(&a, &a, &init).expect("register");
    let err = corner_error(&o.transform, &init, 96.0, 96.0);
    assert!(err < 0.3, "corner error {err} px");
    assert!(o.metric_value < 0.2, "value {}", o.metric_value);
}

#[test]
fn default_multi_start_is_deterministic_and_picks_a_good_start() {
    let (a, _) = phantom_pair(96, 96, 6);
    let t = Rigid2::new(0.3, [2.0, 4.0], a.center());
    let moving = moved_by(&a, &t, Border::Zero);
    let cfg = AlphaAmdConfig {
        iteration_factor: 0.2,
        ..AlphaAmdConfig::default()
    };
    let reg = AlphaAmd::new(cfg).expect("config");
    let init = centered_identity(&a, &moving);
    let o1 = reg.register(&a, &moving, &init).expect("register");
    let o2 = reg.register(&a, &moving, &init).expect("register");
    assert_eq!(o1, o2);
    // Same result on a one-thread pool.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let o3 = pool.install(|| reg.register(&a, &moving, &init).expect("register"));
    assert_eq!(o1, o3);
    let err = corner_error(&o1.transform, &t, 96.0, 96.0);
    assert!(err < 0.02 * 96.0, "corner error {err} px");
    assert_eq!(
        o1.iterations % 3,
        0,
        "{} iterations from 3 starts",
        o1.iterations
    );
}

#[test]
fn init_centre_is_kept_and_respected() {
    // An initial transform about another centre, already at the truth: the result stays there.
    let (a, _) = phantom_pair(96, 96, 8);
    let t = Rigid2::new(0.1, [3.0, 1.0], a.center());
    let moving = moved_by(&a, &t, Border::Zero);
    let init = t.with_center([10.0, 20.0]);
    let reg = AlphaAmd::new(quick()).expect("config");
    let o = reg.register(&a, &moving, &init.into()).expect("register");
    assert_eq!(o.transform.center(), [10.0, 20.0]);
    assert!(corner_error(&o.transform, &t, 96.0, 96.0) < 0.5);
}

#[test]
fn config_is_validated_and_round_trips() {
    let ok = AlphaAmdConfig::default();
    ok.validate().expect("default is valid");
    let json = serde_json::to_string(&ok).expect("json");
    let back: AlphaAmdConfig = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, ok);
    assert!(serde_json::from_str::<AlphaAmdConfig>(r#"{"alpha_level": 7}"#).is_err());
    for (bad, what) in [
        (
            AlphaAmdConfig {
                sampling_fraction: 0.0,
                ..ok.clone()
            },
            "sampling_fraction",
        ),
        (
            AlphaAmdConfig {
                iterations: vec![1, 2],
                ..ok.clone()
            },
            "same length",
        ),
        (
            AlphaAmdConfig {
                starts_rad: vec![],
                ..ok.clone()
            },
            "starts_rad",
        ),
        (
            AlphaAmdConfig {
                momentum: 1.0,
                ..ok.clone()
            },
            "momentum",
        ),
    ] {
        let e = AlphaAmd::new(bad).expect_err(what);
        assert!(e.to_string().contains(what), "{e}");
    }
}

#[test]
fn rejects_bad_images() {
    let reg = AlphaAmd::new(quick()).expect("config");
    let good = Image::from_fn(32, 32, |x, y| (x * y) as f32);
    let flat = Image::from_fn(32, 32, |_, _| 1.0);
    assert!(reg
        .register(&good, &flat, &centered_identity(&good, &flat))
        .is_err());
}
