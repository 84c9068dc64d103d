//! 2-D transforms, the contract between registration, evaluation and other tools.
//!
//! # Convention
//! Points are `(x, y)`: `x` is the column, `y` the row, pixel centres at integer coordinates.
//! Every transform maps a point of the **fixed** image to the **moving** image, so the moving
//! image warped into the fixed frame is `moving(T(p))`. The linear kinds are written about a
//! centre `c`, as ITK writes them:
//!
//! ```text
//! rigid       T(p) = R(θ)·(p − c) + c + t,     R(θ) = [[cos θ, −sin θ], [sin θ, cos θ]]
//! similarity  T(p) = s·R(θ)·(p − c) + c + t
//! affine      T(p) = A·(p − c) + c + t
//! ```
//!
//! With unit spacing and zero origin these are exactly ITK's `Euler2DTransform`,
//! `Similarity2DTransform` and `AffineTransform` (same parameters, same order, fixed parameters
//! `cx, cy`), which also map fixed points to moving points; [`write_itk_tfm`] writes them so that
//! SimpleITK and 3D Slicer read the same mapping. Because `y` points down, a positive θ turns
//! clockwise on screen.
//!
//! [`Transform2`] holds any kind with its parameter vector, Jacobian and parameter scales, the
//! interface optimisers work on; [`TransformRecord`] is the JSON file of a registration result.

mod composite;
mod itk;
mod linear;
mod record;
mod rigid;
mod transform;

pub use composite::Composite2;
pub use itk::{
    itk_tfm_text, parse_itk_composite, parse_itk_tfm, read_itk_composite, read_itk_tfm,
    write_itk_composite, write_itk_tfm,
};
pub use linear::{Affine2, AffineParts, Similarity2};
pub use record::{parse_json, read_json, write_json, TransformRecord};
pub use rigid::Rigid2;
pub use transform::{PointMap, Transform2, TransformKind};

pub mod bspline;
pub use bspline::BSpline2;

/// Errors reading or writing transform files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// The file is not a valid transform.
    #[error("{path}: invalid transform: {reason}")]
    Parse {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The four corners used by the MultiRegEval protocol for a `width × height` image:
/// `(0,0), (w,0), (w,h), (0,h)` (the protocol uses `w`, not `w − 1`).
pub fn corners(width: f64, height: f64) -> [[f64; 2]; 4] {
    [[0.0, 0.0], [width, 0.0], [width, height], [0.0, height]]
}

/// Mean distance between where two transforms send the four corners of a `width × height` image.
/// This is the MultiRegEval registration error when one of them is the ground truth.
pub fn corner_error(a: &impl PointMap, b: &impl PointMap, width: f64, height: f64) -> f64 {
    mean_distance(a, b, &corners(width, height))
}

/// The points of a `n × n` grid spread evenly inside a `width × height` image (cell centres), the
/// points the dense registration error is measured on.
pub fn dense_grid(width: f64, height: f64, n: usize) -> Vec<[f64; 2]> {
    let n = n.max(1);
    let step = [width / n as f64, height / n as f64];
    (0..n * n)
        .map(|i| {
            let (gx, gy) = ((i % n) as f64 + 0.5, (i / n) as f64 + 0.5);
            [gx * step[0] - 0.5, gy * step[1] - 0.5]
        })
        .collect()
}

/// Mean distance between where two transforms send the points of a 32 × 32 [`dense_grid`]: the
/// registration error for transforms that bend the image, where four corners say too little.
pub fn dense_error(a: &impl PointMap, b: &impl PointMap, width: f64, height: f64) -> f64 {
    mean_distance(a, b, &dense_grid(width, height, 32))
}

fn mean_distance(a: &impl PointMap, b: &impl PointMap, points: &[[f64; 2]]) -> f64 {
    points
        .iter()
        .map(|&p| {
            let (u, v) = (a.map_point(p), b.map_point(p));
            ((u[0] - v[0]).powi(2) + (u[1] - v[1]).powi(2)).sqrt()
        })
        .sum::<f64>()
        / points.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: [f64; 2], b: [f64; 2]) -> bool {
        (a[0] - b[0]).abs() < 1e-9 && (a[1] - b[1]).abs() < 1e-9
    }

    #[test]
    fn rotation_turns_x_axis_towards_y() {
        let t = Rigid2::new(std::f64::consts::FRAC_PI_2, [0.0, 0.0], [0.0, 0.0]);
        assert!(close(t.apply([1.0, 0.0]), [0.0, 1.0]));
    }

    #[test]
    fn inverse_and_compose_round_trip() {
        let t = Rigid2::new(0.3, [4.0, -2.5], [10.0, 7.0]);
        let inv = t.inverse();
        for p in [[0.0, 0.0], [3.0, 9.0], [-5.0, 2.0]] {
            assert!(close(inv.apply(t.apply(p)), p));
            assert!(close(t.compose(&inv).apply(p), p));
        }
        let u = Rigid2::new(-0.7, [1.0, 2.0], [3.0, 4.0]);
        let tu = t.compose(&u);
        for p in [[1.0, 1.0], [20.0, -3.0]] {
            assert!(close(tu.apply(p), t.apply(u.apply(p))));
        }
    }

    #[test]
    fn recentering_keeps_the_map() {
        let t = Rigid2::new(0.2, [1.0, -1.0], [5.0, 5.0]);
        let r = t.with_center([0.0, 0.0]);
        for p in [[0.0, 0.0], [7.0, 2.0]] {
            assert!(close(t.apply(p), r.apply(p)));
        }
    }

    #[test]
    fn matrix_agrees_with_apply() {
        let t = Rigid2::new(-0.4, [3.0, 8.0], [50.0, 20.0]);
        let m = t.matrix();
        let p = [12.0, -4.0];
        let q = [
            m[0][0] * p[0] + m[0][1] * p[1] + m[0][2],
            m[1][0] * p[0] + m[1][1] * p[1] + m[1][2],
        ];
        assert!(close(q, t.apply(p)));
    }

    #[test]
    fn corner_error_of_pure_shift_is_its_length() {
        let a = Rigid2::identity([50.0, 50.0]);
        let b = Rigid2::new(0.0, [3.0, 4.0], [50.0, 50.0]);
        assert!((corner_error(&a, &b, 100.0, 100.0) - 5.0).abs() < 1e-12);
        assert_eq!(corner_error(&b, &b, 100.0, 100.0), 0.0);
    }

    #[test]
    fn json_round_trip_and_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("t.json");
        let t = Rigid2::new(0.1, [1.5, -2.0], [10.0, 11.0]);
        write_json(&p, &TransformRecord::new(&t.into(), "mi", -0.5, 0.01)).expect("write");
        let back = read_json(&p).expect("read").transform();
        assert!(close(back.apply([3.0, 4.0]), t.apply([3.0, 4.0])));
        std::fs::write(&p, "{\"kind\": 3}").expect("write");
        let msg = read_json(&p).expect_err("bad").to_string();
        assert!(msg.contains("t.json"), "{msg}");
    }

    #[test]
    fn tfm_text_has_itk_layout() {
        let t = Rigid2::new(0.25, [1.0, 2.0], [3.0, 4.0]);
        let text = itk_tfm_text(&t.into());
        assert!(text.contains("Transform: Euler2DTransform_double_2_2"));
        let params: Vec<f64> = text
            .lines()
            .find_map(|l| l.strip_prefix("Parameters: "))
            .expect("params")
            .split_whitespace()
            .map(|v| v.parse().expect("float"))
            .collect();
        assert_eq!(params, vec![0.25, 1.0, 2.0]);
    }

    #[test]
    fn records_of_every_kind_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("t.json");
        let kinds: [Transform2; 3] = [
            Rigid2::new(0.1, [1.5, -2.0], [10.0, 11.0]).into(),
            Similarity2 {
                scale: 1.2,
                angle_rad: 0.05,
                translation: [4.0, 1.0],
                center: [10.0, 11.0],
            }
            .into(),
            Affine2 {
                matrix: [[0.7, 0.05], [0.02, 0.75]],
                translation: [-30.0, 12.0],
                center: [10.0, 11.0],
            }
            .into(),
        ];
        for t in kinds {
            write_json(&p, &TransformRecord::new(&t, "mi", -0.5, 0.01)).expect("write");
            let back = read_json(&p).expect("read").transform();
            assert_eq!(back.kind(), t.kind());
            assert!(corner_error(&back, &t, 100.0, 100.0) < 1e-9);
            let tfm = parse_itk_tfm(&itk_tfm_text(&t), "t.tfm").expect("tfm");
            assert!(corner_error(&tfm, &t, 100.0, 100.0) < 1e-9);
        }
        let rigid =
            serde_json::to_value(TransformRecord::new(&kinds[0], "mi", 0.0, 0.0)).expect("json");
        let keys: Vec<&String> = rigid.as_object().expect("object").keys().collect();
        assert!(!keys.iter().any(|k| *k == "scale" || *k == "confidence"));
    }

    #[test]
    fn bad_records_and_tfm_files_are_named() {
        let reflect = r#"{"kind":"affine","fixed_to_moving":[[-1,0,5],[0,1,0],[0,0,1]],
            "translation":[0,0],"center":[0,0],"method":"x","metric_value":0,"seconds":0}"#;
        let e = parse_json(reflect, "r.json").expect_err("reflection");
        assert!(e.to_string().contains("r.json") && e.to_string().contains("reflects"));
        let bent = reflect.replace("affine", "bent");
        let e = parse_json(&bent, "b.json").expect_err("kind");
        assert!(e.to_string().contains("'bent'"), "{e}");
        let short =
            "Transform: AffineTransform_double_2_2\nParameters: 1 0 0 1\nFixedParameters: 0 0\n";
        let e = parse_itk_tfm(short, "s.tfm").expect_err("count");
        assert!(e.to_string().contains("s.tfm") && e.to_string().contains("6 parameters"));
        let nan =
            "Transform: Euler2DTransform_double_2_2\nParameters: nan 0 0\nFixedParameters: 0 0\n";
        assert!(parse_itk_tfm(nan, "n.tfm").is_err());
        let other =
            "Transform: VersorRigid3DTransform_double_3_3\nParameters: 0\nFixedParameters: 0\n";
        let e = parse_itk_tfm(other, "o.tfm").expect_err("class");
        assert!(e.to_string().contains("not supported"), "{e}");
    }

    #[test]
    fn dense_error_of_a_shift_is_its_length_and_sees_inner_bending() {
        let a = Rigid2::identity([50.0, 50.0]);
        let b = Rigid2::new(0.0, [3.0, 4.0], [50.0, 50.0]);
        assert!((dense_error(&a, &b, 100.0, 100.0) - 5.0).abs() < 1e-12);
        let grid = dense_grid(64.0, 32.0, 4);
        assert_eq!(grid.len(), 16);
        assert!(grid
            .iter()
            .all(|p| p[0] > 0.0 && p[0] < 63.0 && p[1] > 0.0 && p[1] < 31.0));
    }
}
