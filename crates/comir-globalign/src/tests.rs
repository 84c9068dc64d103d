use super::*;
use comir_image::ops::{warp, Border};
use comir_testkit::{moved_by, phantom_pair};
use comir_transform::corner_error;

fn quantised(img: &Image, q: usize) -> LabelMap {
    labels_of(img, &Quantizer::fit(img.data(), q))
}

/// Direct MI and overlap of fixed labels vs the nearest-neighbour rotated moving labels at one
/// translation, by counting pixels.
fn direct_mi(
    f: &LabelMap,
    m: &LabelMap,
    q: usize,
    angle: f64,
    c: [f64; 2],
    u: [i64; 2],
) -> (f64, u32) {
    let mut joint = vec![0f64; q * q];
    let (s, co) = angle.sin_cos();
    let mut n = 0u32;
    for y in 0..f.h {
        for x in 0..f.w {
            let qx = (x as i64 + u[0]) as f64 - c[0];
            let qy = (y as i64 + u[1]) as f64 - c[1];
            // Nearest neighbour, ties rounded up.
            let mx = (co * qx - s * qy + c[0] + 0.5).floor();
            let my = (s * qx + co * qy + c[1] + 0.5).floor();
            if mx < 0.0 || my < 0.0 || mx >= m.w as f64 || my >= m.h as f64 {
                continue;
            }
            let a = f.data[y * f.w + x] as usize;
            let b = m.data[my as usize * m.w + mx as usize] as usize;
            joint[a * q + b] += 1.0;
            n += 1;
        }
    }
    let nf = n as f64;
    let mut pa = vec![0f64; q];
    let mut pb = vec![0f64; q];
    let mut mi = 0.0;
    for a in 0..q {
        for b in 0..q {
            let p = joint[a * q + b] / nf;
            pa[a] += p;
            pb[b] += p;
            if p > 0.0 {
                mi += p * p.ln();
            }
        }
    }
    for p in pa.iter().chain(&pb) {
        if *p > 0.0 {
            mi -= p * p.ln();
        }
    }
    (mi, n)
}

#[test]
fn fft_mi_equals_direct_mi_at_every_shift() {
    let (a, b) = phantom_pair(40, 36, 3);
    let b = warp(&b, 44, 41, Border::Zero, |p| [p[0] - 2.0, p[1] - 1.0]);
    let q = 5;
    let (fl, ml) = (quantised(&a, q), quantised(&b, q));
    let (lx, ly) = (9, 7);
    let plan = Plan::new(&fl, &ml, q, lx, ly, 0.5);
    let mut ws = plan.workspace();
    let c = [19.5, 17.0];
    let mut compared = 0;
    for (angle, origin) in [(0.0, [-4i64, -3i64]), (0.37, [-2, -5]), (-2.1, [-6, 0])] {
        plan.surface(angle, c, origin, &mut ws);
        for j in 0..ly {
            for i in 0..lx {
                let u = [origin[0] + i as i64, origin[1] + j as i64];
                let (mi, n) = direct_mi(&fl, &ml, q, angle, c, u);
                let idx = j * lx + i;
                assert_eq!(ws.n[idx], n, "overlap at angle {angle}, u {u:?}");
                if n >= plan.min_count {
                    assert!(
                        (ws.mi[idx] - mi).abs() < 1e-9,
                        "angle {angle} u {u:?}: fft {} direct {mi}",
                        ws.mi[idx]
                    );
                    compared += 1;
                } else {
                    assert_eq!(ws.mi[idx], f64::NEG_INFINITY);
                }
            }
        }
    }
    assert!(compared > 100, "only {compared} valid shifts compared");
}

fn recover(w: usize, angle_deg: f64, t: [f64; 2], cfg: GlobalSearchConfig) -> (f64, Outcome) {
    let (a, b) = phantom_pair(w, w, 7);
    let truth = Rigid2::new(angle_deg.to_radians(), t, a.center());
    let moving = moved_by(&b, &truth, Border::Zero);
    let g = GlobalSearch::new(cfg).expect("valid");
    let init = comir_register::centered_identity(&a, &moving);
    let o = g.register(&a, &moving, &init).expect("registers");
    assert_eq!(o.transform.center(), init.center());
    assert_eq!(o.stop, StopReason::SearchComplete);
    (corner_error(&o.transform, &truth, w as f64, w as f64), o)
}

#[test]
fn recovers_a_large_transform() {
    let (err, o) = recover(128, 100.0, [14.0, -9.0], GlobalSearchConfig::default());
    assert!(
        err < 0.02 * 128.0,
        "corner error {err}, got {:?}",
        o.transform
    );
}

#[test]
fn recovers_a_large_negative_rotation() {
    let (err, o) = recover(128, -150.0, [-10.0, 12.0], GlobalSearchConfig::default());
    assert!(
        err < 0.02 * 128.0,
        "corner error {err}, got {:?}",
        o.transform
    );
}

#[test]
fn recovers_a_small_transform() {
    let (err, o) = recover(128, 6.0, [5.0, -3.0], GlobalSearchConfig::default());
    assert!(
        err < 0.5 * 0.02 * 128.0,
        "corner error {err}, got {:?}",
        o.transform
    );
    assert!(
        o.metric_value < 0.0,
        "MI must be positive: {}",
        o.metric_value
    );
}

#[test]
fn identity_gives_near_zero_error() {
    // MI of nearest-neighbour-rotated label maps is flat for rotations that move no pixel and
    // slightly biased by the changing overlap, so "near zero" is a fraction of the 0.02·w
    // success threshold rather than exactly zero.
    for w in [96, 128] {
        let (err, o) = recover(w, 0.0, [0.0, 0.0], GlobalSearchConfig::default());
        assert!(
            err < 0.6 * 0.02 * w as f64,
            "{w}: corner error {err}, got {:?}",
            o.transform
        );
        let r = o.transform.as_rigid().expect("rigid");
        assert!(r.translation[0].abs() < 0.5 && r.translation[1].abs() < 0.5);
    }
}

#[test]
fn different_image_sizes_and_centres() {
    // Moving is larger than fixed and its pixels are those of fixed under T.
    let (a, b) = phantom_pair(100, 90, 11);
    let truth = Rigid2::new(0.5, [7.0, 4.0], a.center());
    let inv = truth.inverse();
    let moving = warp(&b, 130, 120, Border::Zero, |p| inv.apply(p));
    let g = GlobalSearch::new(GlobalSearchConfig::default()).expect("valid");
    let init = comir_register::centered_identity(&a, &moving);
    let o = g.register(&a, &moving, &init).expect("registers");
    let err = corner_error(
        &o.transform
            .as_rigid()
            .expect("rigid")
            .with_center(truth.center),
        &truth,
        100.0,
        90.0,
    );
    assert!(
        err < 0.02 * 100.0,
        "corner error {err}, got {:?}",
        o.transform
    );
}

#[test]
fn deterministic_across_runs_and_thread_counts() {
    let (a, b) = phantom_pair(96, 96, 5);
    let truth = Rigid2::new(0.8, [3.0, -6.0], a.center());
    let moving = moved_by(&b, &truth, Border::Zero);
    let cfg = GlobalSearchConfig {
        refinement: AngleRefinement::Random,
        refine_angles: 16,
        seed: 42,
        ..GlobalSearchConfig::default()
    };
    let g = GlobalSearch::new(cfg).expect("valid");
    let init = comir_register::centered_identity(&a, &moving);
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool")
            .install(|| g.register(&a, &moving, &init).expect("registers"))
    };
    let (o1, o2, o3) = (run(1), run(2), run(3));
    assert_eq!(o1, o2);
    assert_eq!(o1, o3);
    assert_eq!(
        o1.transform.angle_rad().to_bits(),
        o3.transform.angle_rad().to_bits()
    );
    assert!(corner_error(&o1.transform, &truth, 96.0, 96.0) < 0.02 * 96.0);
}

#[test]
fn use_init_restricts_the_search() {
    let (a, b) = phantom_pair(96, 96, 9);
    let truth = Rigid2::new(1.2, [6.0, 2.0], a.center());
    let moving = moved_by(&b, &truth, Border::Zero);
    let restricted = GlobalSearchConfig {
        use_init: true,
        angle_range_deg: 10.0,
        angles: 11,
        ..GlobalSearchConfig::default()
    };
    let g = GlobalSearch::new(restricted).expect("valid");
    // Around the truth: found.
    let near = Rigid2::new(1.25, [4.0, 3.0], a.center());
    let o = g.register(&a, &moving, &near.into()).expect("registers");
    assert!(
        corner_error(&o.transform, &truth, 96.0, 96.0) < 0.02 * 96.0,
        "{:?}",
        o.transform
    );
    // Far from the truth: the angle stays within the range around init.
    let far = Rigid2::new(-1.0, [0.0, 0.0], a.center());
    let o = g.register(&a, &moving, &far.into()).expect("registers");
    assert!(
        (o.transform.angle_rad() + 1.0).abs() <= 10f64.to_radians() + 0.05,
        "{:?}",
        o.transform
    );
}

#[test]
fn config_validation_and_serde() {
    assert!(GlobalSearchConfig::default().validate().is_ok());
    let e = GlobalSearch::new(GlobalSearchConfig {
        labels: 1,
        ..GlobalSearchConfig::default()
    })
    .expect_err("labels");
    assert!(e.to_string().contains("labels"), "{e}");
    let e = GlobalSearchConfig {
        refine_angles: 8,
        ..GlobalSearchConfig::default()
    }
    .validate()
    .expect_err("even grid");
    assert!(e.to_string().contains("odd"), "{e}");
    for bad in [
        GlobalSearchConfig {
            angle_range_deg: 0.0,
            ..Default::default()
        },
        GlobalSearchConfig {
            min_overlap: 1.5,
            ..Default::default()
        },
        GlobalSearchConfig {
            max_shift_fraction: f64::NAN,
            ..Default::default()
        },
        GlobalSearchConfig {
            finest_side: 8,
            ..Default::default()
        },
        GlobalSearchConfig {
            candidates: 0,
            ..Default::default()
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
}

/// Found by the `register` fuzz target: with 3 grid angles (or fewer than 3 random ones) the
/// refinement step never shrank and the finest level was repeated forever.
#[test]
fn refinements_that_never_narrow_the_step_are_refused() {
    for (refinement, n) in [
        (AngleRefinement::Grid, 3),
        (AngleRefinement::Random, 1),
        (AngleRefinement::Random, 2),
    ] {
        let e = GlobalSearch::new(GlobalSearchConfig {
            refinement,
            refine_angles: n,
            ..GlobalSearchConfig::default()
        })
        .expect_err("a refinement that never ends");
        assert!(e.to_string().contains("never narrow"), "{e}");
    }
    // The smallest accepted settings end, on a small image and from the coarse level up.
    let (a, b) = phantom_pair(40, 40, 3);
    for (refinement, n) in [(AngleRefinement::Grid, 5), (AngleRefinement::Random, 3)] {
        let g = GlobalSearch::new(GlobalSearchConfig {
            refinement,
            refine_angles: n,
            angles: 8,
            coarse_side: 16,
            finest_side: 32,
            ..GlobalSearchConfig::default()
        })
        .expect("valid");
        g.register(&a, &b, &comir_register::centered_identity(&a, &b))
            .expect("ends");
    }
}

#[test]
fn config_serde() {
    let json = serde_json::to_string(&GlobalSearchConfig::default()).expect("ser");
    let back: GlobalSearchConfig = serde_json::from_str(&json).expect("de");
    assert_eq!(back, GlobalSearchConfig::default());
    let partial: GlobalSearchConfig =
        serde_json::from_str(r#"{"angles": 36, "refinement": "random"}"#).expect("partial");
    assert_eq!(partial.angles, 36);
    assert_eq!(partial.refinement, AngleRefinement::Random);
    assert!(serde_json::from_str::<GlobalSearchConfig>(r#"{"anglez": 3}"#).is_err());
    assert_eq!(
        GlobalSearch::new(GlobalSearchConfig::default())
            .expect("ok")
            .name(),
        "global"
    );
}

#[test]
fn rejects_bad_inputs() {
    let g = GlobalSearch::new(GlobalSearchConfig::default()).expect("ok");
    let img = Image::from_fn(32, 32, |x, y| (x * y) as f32);
    let flat = Image::from_fn(32, 32, |_, _| 1.0);
    let init = comir_register::centered_identity(&img, &flat);
    assert!(matches!(
        g.register(&img, &flat, &init),
        Err(Error::Constant { which: "moving" })
    ));
}

#[test]
fn helpers() {
    for v in [-3.5, -2.5000001, -0.5, -0.2, 0.0, 0.49, 0.5, 7.5, 1e6 + 0.3] {
        assert_eq!(cmif::nearest(v), (v + 0.5f64).floor(), "{v}");
    }
    assert_eq!(pow2_factor(512, 80), 8);
    assert_eq!(pow2_factor(128, 80), 2);
    assert_eq!(pow2_factor(64, 80), 1);
    assert!((parabola_vertex(1.0, 2.0, 1.0)).abs() < 1e-12);
    assert!((parabola_vertex(0.0, 2.0, 1.0) - (1.0 / 6.0)).abs() < 1e-12);
    assert_eq!(parabola_vertex(1.0, 0.0, 1.0), 0.0);
    assert!((wrap(3.5 * PI) + 0.5 * PI).abs() < 1e-12);
    let v = rot_t(0.3, rot(0.3, [1.0, 2.0]));
    assert!((v[0] - 1.0).abs() < 1e-12 && (v[1] - 2.0).abs() < 1e-12);
}
