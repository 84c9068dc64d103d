use std::f64::consts::PI;

use comir_image::ops::{gaussian_blur, Border};
use comir_image::Image;
use comir_register::{centered_identity, Error, MultiStart, Registrar};
use comir_testkit::{moved_by, textured};
use comir_transform::{corner_error, Rigid2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

/// Angle difference wrapped to `(−π, π]`.
fn wrap(a: f64) -> f64 {
    let m = a.rem_euclid(2.0 * PI);
    if m > PI {
        m - 2.0 * PI
    } else {
        m
    }
}

fn registrar() -> FeatureRegistrar {
    FeatureRegistrar::new(FeatureConfig::default()).expect("default config is valid")
}

#[test]
fn default_config_is_valid_and_round_trips() {
    let cfg = FeatureConfig::default();
    cfg.validate().expect("valid");
    let json = serde_json::to_string(&cfg).expect("serialise");
    let back: FeatureConfig = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(back, cfg);
    let partial: FeatureConfig = serde_json::from_str(r#"{"ratio": 0.9}"#).expect("partial");
    assert_eq!(partial.ratio, 0.9);
    assert_eq!(partial.max_features, 500);
    assert!(serde_json::from_str::<FeatureConfig>(r#"{"ratoi": 0.9}"#).is_err());
}

#[test]
fn out_of_range_settings_are_rejected() {
    let cases: Vec<(FeatureConfig, &str)> = vec![
        (
            FeatureConfig {
                ratio: 1.5,
                ..Default::default()
            },
            "ratio",
        ),
        (
            FeatureConfig {
                min_inliers: 1,
                ..Default::default()
            },
            "min_inliers",
        ),
        (
            FeatureConfig {
                inlier_threshold_px: f64::NAN,
                ..Default::default()
            },
            "inlier_threshold_px",
        ),
        (
            FeatureConfig {
                scales_per_octave: 0,
                ..Default::default()
            },
            "scales_per_octave",
        ),
        (
            FeatureConfig {
                sigma: 0.3,
                ..Default::default()
            },
            "sigma",
        ),
        (
            FeatureConfig {
                ransac_iterations: 0,
                ..Default::default()
            },
            "ransac_iterations",
        ),
    ];
    for (cfg, field) in cases {
        let e = FeatureRegistrar::new(cfg).expect_err(field);
        assert!(
            matches!(e, Error::InvalidConfig(ref m) if m.contains(field)),
            "{field}: {e}"
        );
    }
}

/// Detection is covariant with an exact 90° rotation (a pixel permutation): nearly every
/// keypoint of the rotated image sits where the rotation sends an original keypoint, with the
/// same scale and its orientation turned by 90°. The odd size keeps every octave's sampling grid
/// invariant under the rotation.
#[test]
fn detection_is_covariant_with_a_90_degree_rotation() {
    let img = textured(129, 3);
    let (w, h) = (img.width(), img.height());
    // Rotated image: old (x, y) goes to new (h − 1 − y, x), a +90° turn with y down.
    let rot = Image::from_fn(h, w, |xn, yn| img.get(yn, h - 1 - xn, 0));
    let cfg = FeatureConfig {
        max_features: 100_000,
        ..Default::default()
    };
    let k0 = detect_and_describe(&img, &cfg);
    let k1 = detect_and_describe(&rot, &cfg);
    assert!(k0.len() >= 40, "only {} keypoints", k0.len());
    let found = k0
        .iter()
        .filter(|a| {
            let (px, py) = ((h - 1) as f64 - a.y, a.x);
            k1.iter().any(|b| {
                (b.x - px).hypot(b.y - py) < 1.0
                    && (b.sigma / a.sigma - 1.0).abs() < 0.05
                    && wrap(b.angle_rad - a.angle_rad - PI / 2.0).abs() < 0.05
            })
        })
        .count();
    let frac = found as f64 / k0.len() as f64;
    eprintln!(
        "90°: {found}/{} keypoints map, rotated has {}",
        k0.len(),
        k1.len()
    );
    assert!(
        frac >= 0.9,
        "{found} of {} keypoints map onto the rotated ones",
        k0.len()
    );
    // The counts agree too (covariance both ways).
    let diff = (k0.len() as f64 - k1.len() as f64).abs() / k0.len() as f64;
    assert!(diff < 0.05, "{} vs {} keypoints", k0.len(), k1.len());
}

/// Descriptors are rotation invariant: under a 30° rotation (bilinear resampling), keypoints
/// found at corresponding places are matched to each other by the ratio test.
#[test]
fn descriptors_of_corresponding_keypoints_match_under_30_degrees() {
    let img = textured(161, 5);
    let t = Rigid2::new(30f64.to_radians(), [0.0, 0.0], img.center());
    let moving = moved_by(&img, &t, Border::Zero);
    let cfg = FeatureConfig::default();
    let kf = detect_and_describe(&img, &cfg);
    let km = detect_and_describe(&moving, &cfg);
    let near = |a: &Keypoint, b: &Keypoint| {
        let p = t.apply([a.x, a.y]);
        (b.x - p[0]).hypot(b.y - p[1]) < 1.5 * a.sigma.max(1.0)
    };
    // Keypoints with a geometric counterpart (position, scale and orientation consistent).
    let corresponding: Vec<usize> = (0..kf.len())
        .filter(|&i| {
            let a = &kf[i];
            km.iter().any(|b| {
                near(a, b)
                    && (b.sigma / a.sigma - 1.0).abs() < 0.25
                    && wrap(b.angle_rad - a.angle_rad - t.angle_rad).abs() < 0.3
            })
        })
        .collect();
    assert!(
        corresponding.len() >= 30,
        "only {} corresponding keypoints of {}",
        corresponding.len(),
        kf.len()
    );
    let matches = match_descriptors(&kf, &km, 0.8, false);
    let good = corresponding
        .iter()
        .filter(|&&i| {
            matches
                .iter()
                .any(|m| m.fixed == i && near(&kf[i], &km[m.moving]))
        })
        .count();
    let frac = good as f64 / corresponding.len() as f64;
    eprintln!(
        "30°: {good}/{} corresponding matched ({} and {} keypoints, {} matches)",
        corresponding.len(),
        kf.len(),
        km.len(),
        matches.len()
    );
    assert!(
        frac >= 0.7,
        "{good} of {} corresponding keypoints matched correctly",
        corresponding.len()
    );
}

/// RANSAC + Procrustes recovers a rigid map exactly from correspondences with 40 % outliers.
#[test]
fn ransac_recovers_a_rigid_map_despite_outliers() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let truth = RigidModel {
        angle_rad: 0.7,
        translation: [15.0, -9.0],
    };
    let n = 100;
    let mut src = Vec::new();
    let mut dst = Vec::new();
    let mut is_inlier = Vec::new();
    for i in 0..n {
        let p = [rng.gen_range(0.0..200.0), rng.gen_range(0.0..200.0)];
        src.push(p);
        if i % 5 < 3 {
            dst.push(truth.apply(p));
            is_inlier.push(true);
        } else {
            dst.push([rng.gen_range(-50.0..250.0), rng.gen_range(-50.0..250.0)]);
            is_inlier.push(false);
        }
    }
    let fit = ransac_rigid(&src, &dst, 2.0, 1000, 7).expect("a model");
    assert!((fit.model.angle_rad - truth.angle_rad).abs() < 1e-9);
    assert!((fit.model.translation[0] - truth.translation[0]).abs() < 1e-7);
    assert!((fit.model.translation[1] - truth.translation[1]).abs() < 1e-7);
    let expected: Vec<usize> = (0..n).filter(|&i| is_inlier[i]).collect();
    // An outlier can fall within 2 px by chance; the true inliers must all be found.
    assert!(expected.iter().all(|i| fit.inliers.contains(i)));
    assert!(fit.inliers.len() <= expected.len() + 2);
    assert!(fit.mean_residual < 0.1);
    // Too few points: no model, no panic.
    assert!(ransac_rigid(&src[..1], &dst[..1], 2.0, 10, 0).is_none());
    // Procrustes alone with noise-free data.
    let m = procrustes(&src[..3], &dst[..3]).expect("fit");
    assert!((m.angle_rad - 0.7).abs() < 1e-12);
}

/// End-to-end: a known rotation + translation on a textured monomodal image.
#[test]
fn recovers_known_rotation_and_translation() {
    for (w, deg, t) in [(160usize, 20.0f64, [12.0, -7.0]), (128, 6.0, [5.0, -3.0])] {
        let fixed = textured(w, 21);
        let truth = Rigid2::new(deg.to_radians(), t, fixed.center());
        let moving = moved_by(&fixed, &truth, Border::Zero);
        let reg = registrar();
        let out = reg
            .register(&fixed, &moving, &centered_identity(&fixed, &moving))
            .expect("registration succeeds");
        let err = corner_error(&out.transform, &truth, w as f64, w as f64);
        eprintln!("{deg}° on {w}: error {err} px, metric {}", out.metric_value);
        assert!(
            err < 0.1 * 0.02 * w as f64,
            "{deg}° {t:?} on {w} px: corner error {err} px, transform {:?}",
            out.transform
        );
        assert_eq!(out.transform.center(), fixed.center());
        assert!(out.metric_value < -5.0, "metric {}", out.metric_value);
    }
}

#[test]
fn identity_gives_near_zero_error() {
    let fixed = textured(128, 8);
    let init = centered_identity(&fixed, &fixed);
    let out = registrar()
        .register(&fixed, &fixed, &init)
        .expect("registration succeeds");
    let err = corner_error(
        &out.transform,
        &Rigid2::identity(fixed.center()),
        128.0,
        128.0,
    );
    eprintln!("identity error {err}, metric {}", out.metric_value);
    assert!(err < 1e-6, "identity error {err}");
}

/// Unrelated or featureless images give `Error::Failed`, not a panic or a bogus transform.
#[test]
fn too_few_matches_is_a_failure() {
    let fixed = textured(128, 4);
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    // Unrelated smooth noise: many keypoints, no consistent geometry.
    let noise = gaussian_blur(&Image::from_fn(128, 128, |_, _| rng.gen::<f32>()), 2.0);
    let ramp = Image::from_fn(128, 128, |x, y| 0.5 + 1e-3 * (x + 2 * y) as f32);
    // Cross-check only (MultiRegEval's matcher) lets many wrong matches through, so RANSAC itself
    // must reject them.
    let cross_only = FeatureRegistrar::new(FeatureConfig {
        ratio: 1.0,
        ..Default::default()
    })
    .expect("valid");
    let reg = registrar();
    for (moving, r) in [(&noise, &reg), (&ramp, &reg), (&noise, &cross_only)] {
        let init = centered_identity(&fixed, moving);
        match r.register(&fixed, moving, &init) {
            Err(Error::Failed { method, reason }) => {
                eprintln!("failure: {reason}");
                assert_eq!(method, "features");
                assert!(!reason.is_empty());
            }
            other => panic!("expected Error::Failed, got {other:?}"),
        }
    }
    // The smallest accepted images do not panic either.
    let tiny = textured(16, 1);
    let r = reg.register(&tiny, &tiny, &centered_identity(&tiny, &tiny));
    assert!(matches!(r, Ok(_) | Err(Error::Failed { .. })), "{r:?}");
}

#[test]
fn result_ignores_the_initial_rotation_and_is_deterministic() {
    let fixed = textured(128, 12);
    let truth = Rigid2::new(0.2, [3.0, 4.0], fixed.center());
    let moving = moved_by(&fixed, &truth, Border::Zero);
    let reg = registrar();
    let init = centered_identity(&fixed, &moving);
    let a = reg.register(&fixed, &moving, &init).expect("ok");
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let b = one_thread
        .install(|| reg.register(&fixed, &moving, &init))
        .expect("ok");
    assert_eq!(a, b, "thread count changed the result");
    let ms = MultiStart::reference(reg.clone());
    let c = ms.register(&fixed, &moving, &init).expect("ok");
    assert_eq!(ms.name(), "features");
    assert_eq!(c.transform, a.transform);
}

#[test]
fn upsampling_option_also_registers() {
    let fixed = textured(96, 2);
    let truth = Rigid2::new(-0.15, [-4.0, 2.5], fixed.center());
    let moving = moved_by(&fixed, &truth, Border::Zero);
    let reg = FeatureRegistrar::new(FeatureConfig {
        upsample: true,
        ..Default::default()
    })
    .expect("valid");
    let out = reg
        .register(&fixed, &moving, &centered_identity(&fixed, &moving))
        .expect("ok");
    let err = corner_error(&out.transform, &truth, 96.0, 96.0);
    assert!(err < 0.5, "corner error {err}");
}

#[test]
fn fast_atan2_is_accurate() {
    let mut worst = 0f32;
    for i in 0..400 {
        let t = i as f32 * 0.0157;
        for r in [1e-3f32, 1.0, 250.0] {
            let (y, x) = (r * t.sin(), r * t.cos());
            worst = worst.max((sift::fast_atan2(y, x) - y.atan2(x)).abs());
        }
    }
    assert!(worst < 1e-5, "max error {worst}");
    assert_eq!(sift::fast_atan2(0.0, 0.0), 0.0);
}
