use super::*;
use comir_image::ops::Border;
use comir_transform::{Affine2, Rigid2};

/// A phantom pair whose moving image is the B modality displaced by a known rigid transform.
fn displaced_pair(seed: u64) -> (Image, Image, Transform2) {
    let (a, b) = comir_testkit::phantom_pair(160, 160, seed);
    let truth = Rigid2::new(0.12, [5.0, -4.0], a.center());
    let moving = comir_testkit::moved_by(&b, &truth, Border::Reflect);
    (a, moving, Transform2::Rigid(truth))
}

#[test]
fn a_correct_result_is_trusted_and_a_wrong_one_is_not() {
    for seed in [1, 2, 3] {
        let (fixed, moving, truth) = displaced_pair(seed);
        let good = assess(&fixed, &moving, &truth);
        assert!(
            good.evidence.tile_shift < 0.01,
            "seed {seed}: {:?}",
            good.evidence
        );
        assert_eq!(good.flag, Flag::Ok, "seed {seed}: {good:?}");
        // 14° and 12 px off: beyond the protocol's 2 % tolerance everywhere.
        let wrong = truth.rotated(0.25);
        let wrong = match wrong {
            Transform2::Rigid(r) => Transform2::Rigid(Rigid2::new(
                r.angle_rad,
                [r.translation[0] + 12.0, r.translation[1]],
                r.center,
            )),
            other => other,
        };
        let bad = assess(&fixed, &moving, &wrong);
        assert_eq!(bad.flag, Flag::Doubtful, "seed {seed}: {bad:?}");
        assert!(bad.confidence < good.confidence - 0.3, "seed {seed}");
        assert!(bad.evidence.tile_shift > good.evidence.tile_shift);
    }
}

#[test]
fn an_implausible_affine_result_is_doubtful() {
    let (fixed, moving, truth) = displaced_pair(4);
    let a = truth.to_affine();
    let stretched = Transform2::Affine(Affine2 {
        matrix: [
            [a.matrix[0][0] * 1.35, a.matrix[0][1]],
            [a.matrix[1][0] * 1.35, a.matrix[1][1]],
        ],
        ..a
    });
    let e = assess(&fixed, &moving, &stretched);
    assert!((e.evidence.log_scale - 1.35f64.ln()).abs() < 1e-9);
    assert_eq!(e.flag, Flag::Doubtful, "{e:?}");
    // The same map written as an affine transform keeps its confidence.
    let same = assess(&fixed, &moving, &Transform2::Affine(a));
    assert!(same.evidence.log_scale < 1e-9 && same.flag == Flag::Ok);
}

#[test]
fn confidence_is_a_probability_even_for_degenerate_evidence() {
    let (fixed, moving, truth) = displaced_pair(5);
    // Moved entirely off the moving image: no overlap, no informative tile.
    let off = match truth {
        Transform2::Rigid(r) => {
            Transform2::Rigid(Rigid2::new(r.angle_rad, [1000.0, 1000.0], r.center))
        }
        other => other,
    };
    let e = assess(&fixed, &moving, &off);
    assert_eq!(e.evidence.overlap, 0.0);
    assert_eq!(e.evidence.tiles, 0.0);
    assert_eq!(e.evidence.edge_agreement, 0.0);
    assert!((0.0..=1.0).contains(&e.confidence));
    assert_eq!(e.flag, Flag::Doubtful);
}

#[test]
fn auroc_matches_a_hand_computed_example() {
    // Positives 0.9, 0.4, 0.6; negatives 0.8, 0.6, 0.1. Pairs won: 0.9 beats 3, 0.4 beats 1,
    // 0.6 beats 1 and ties 1 → (3 + 1 + 1.5) / 9.
    let scores = [0.9, 0.8, 0.4, 0.6, 0.1, 0.6];
    let positive = [true, false, true, false, false, true];
    let a = auroc(&scores, &positive).expect("both kinds");
    assert!((a - 5.5 / 9.0).abs() < 1e-12, "{a}");
    // Perfect and reversed rankings.
    assert_eq!(auroc(&[0.9, 0.1], &[true, false]), Some(1.0));
    assert_eq!(auroc(&[0.1, 0.9], &[true, false]), Some(0.0));
    // Undefined without both kinds, or with mismatched lengths.
    assert_eq!(auroc(&[0.3, 0.4], &[true, true]), None);
    assert_eq!(auroc(&[0.3], &[true, false]), None);
}

#[test]
fn flag_counts_split_false_alarms_from_caught_failures() {
    let c = FlagCounts::count([
        (true, false),
        (true, true),
        (false, true),
        (false, false),
        (false, true),
    ]);
    assert_eq!(
        c,
        FlagCounts {
            successes: 2,
            failures: 3,
            flagged_failures: 2,
            false_alarms: 1
        }
    );
}

#[test]
fn edges_measure_how_far_a_result_is_from_the_edges_optimum() {
    let (fixed, moving, truth) = displaced_pair(6);
    let right = evidence(&fixed, &moving, &truth);
    // An affine result 4 % too large about the centre: the kind of optimum MI's intensity
    // pairing can prefer, with every local tile still roughly in place.
    let a = truth.to_affine();
    let scaled = Transform2::Affine(Affine2 {
        matrix: [
            [a.matrix[0][0] * 1.04, a.matrix[0][1] * 1.04],
            [a.matrix[1][0] * 1.04, a.matrix[1][1] * 1.04],
        ],
        ..a
    });
    let wrong = evidence(&fixed, &moving, &scaled);
    let w = fixed.width() as f64;
    let true_error = comir_transform::dense_error(&scaled, &truth, w, fixed.height() as f64) / w;
    // The rigid truth: its own-kind and affine refinements both stay within a pixel (NGF's
    // optimum on the phantom's blurred edges sits up to half a pixel off).
    assert!(right.edge_shift * w < 1.0, "{right:?}");
    assert!(right.edge_shift_affine * w < 1.0, "{right:?}");
    // The scaled result: the refinement walks back most of the way to the truth.
    assert_eq!(wrong.edge_shift, wrong.edge_shift_affine);
    assert!(
        (wrong.edge_shift - true_error).abs() < 0.3 * true_error,
        "moved {} px, error {} px",
        wrong.edge_shift * w,
        true_error * w
    );
    assert!(wrong.features()[3] > right.features()[3] + 1.0);
    // Both refinements end on the phantom's shared edges.
    assert!((0.05..=1.0).contains(&right.edge_agreement), "{right:?}");
}

#[test]
fn edges_that_ran_off_leave_the_confidence_to_the_tiles() {
    let e = Evidence {
        overlap: 0.9,
        mi: 0.5,
        tile_shift: 0.004,
        tile_lost: 0.0,
        tiles: 1.0,
        edge_shift: 0.003,
        edge_shift_affine: 0.004,
        edge_agreement: 0.3,
        log_scale: 0.05,
        shear: 0.0,
    };
    assert!(e.edges_held());
    let sigmoid = |z: f64| 1.0 / (1.0 + (-z).exp());
    let b = COEFFICIENTS;
    let full = sigmoid(
        b[0] + b[1] * (0.004f64 + 0.005).ln()
            + b[2] * 0.9
            + b[4] * (0.003f64 + 0.005).ln()
            + b[5] * (0.004f64 + 0.005).ln(),
    );
    assert!((e.confidence() - full).abs() < 1e-12);
    // The affine refinement ran off: the edges say nothing, the tiles-only model decides.
    let off = Evidence {
        edge_shift_affine: SEARCH_FRAC,
        ..e
    };
    assert!(!off.edges_held());
    let t = TILES_ONLY_COEFFICIENTS;
    let tiles = sigmoid(t[0] + t[1] * (0.004f64 + 0.005).ln() + t[2] * 0.9);
    assert!((off.confidence() - tiles).abs() < 1e-12);
    assert!(off.confidence() != e.confidence());
}

/// The tiles and the edge refinements run side by side: the evidence is the same on one thread
/// as on three, for a rigid result (two refinements) and an affine one (one).
#[test]
fn evidence_does_not_depend_on_the_threads() {
    let (fixed, moving, truth) = displaced_pair(6);
    let affine = Transform2::Affine(truth.to_affine());
    for t in [truth, truth.rotated(0.05), affine] {
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            // Debug text: equal floats print alike, NaN included.
            format!("{:?}", pool.install(|| evidence(&fixed, &moving, &t)))
        };
        assert_eq!(on(1), on(3), "{t:?}");
        // Each part where it belongs: the same numbers as the parts computed one by one.
        let e = evidence(&fixed, &moving, &t);
        let tiles = tile_evidence(&fixed, &moving, &t);
        let own = edge_shift(&fixed, &moving, &t, t.kind());
        let affine = edge_shift(&fixed, &moving, &t, TransformKind::Affine);
        assert_eq!(
            (e.mi, e.overlap, e.tile_shift, e.tile_lost),
            (tiles.mi, tiles.overlap, tiles.shift, tiles.lost)
        );
        assert_eq!(e.edge_shift, own.0);
        assert_eq!((e.edge_shift_affine, e.edge_agreement), affine);
    }
}
