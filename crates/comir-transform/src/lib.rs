//! Rigid 2-D transforms, the contract between registration, evaluation and other tools.
//!
//! # Convention
//! Points are `(x, y)`: `x` is the column, `y` the row, pixel centres at integer coordinates.
//! A [`Rigid2`] maps a point of the **fixed** image to the **moving** image:
//!
//! ```text
//! T(p) = R(θ)·(p − c) + c + t,     R(θ) = [[cos θ, −sin θ], [sin θ, cos θ]]
//! ```
//!
//! so the moving image warped into the fixed frame is `moving(T(p))`. With unit spacing and zero
//! origin this is exactly ITK's `Euler2DTransform` (parameters `θ, tx, ty`, fixed parameters
//! `cx, cy`), which also maps fixed points to moving points; [`write_itk_tfm`] writes it so that
//! SimpleITK and 3D Slicer read the same mapping. Because `y` points down, a positive θ turns
//! clockwise on screen.

use std::path::Path;

use serde::{Deserialize, Serialize};

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

/// A rigid transform (rotation about a centre, then translation) mapping fixed to moving points.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rigid2 {
    /// Rotation angle θ in radians.
    pub angle_rad: f64,
    /// Translation `t = (tx, ty)` in pixels.
    pub translation: [f64; 2],
    /// Rotation centre `c = (cx, cy)` in pixels.
    pub center: [f64; 2],
}

impl Rigid2 {
    /// The identity, with rotation centre `center`.
    pub fn identity(center: [f64; 2]) -> Rigid2 {
        Rigid2 {
            angle_rad: 0.0,
            translation: [0.0, 0.0],
            center,
        }
    }

    /// A transform from its parts.
    pub fn new(angle_rad: f64, translation: [f64; 2], center: [f64; 2]) -> Rigid2 {
        Rigid2 {
            angle_rad,
            translation,
            center,
        }
    }

    /// Maps a fixed-image point to the moving image.
    #[inline]
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        let (s, c) = self.angle_rad.sin_cos();
        let dx = p[0] - self.center[0];
        let dy = p[1] - self.center[1];
        [
            c * dx - s * dy + self.center[0] + self.translation[0],
            s * dx + c * dy + self.center[1] + self.translation[1],
        ]
    }

    /// The homogeneous 3×3 matrix of [`Rigid2::apply`] (the `fixed_to_moving` field of the JSON).
    pub fn matrix(&self) -> [[f64; 3]; 3] {
        let (s, c) = self.angle_rad.sin_cos();
        let o = self.apply([0.0, 0.0]);
        [[c, -s, o[0]], [s, c, o[1]], [0.0, 0.0, 1.0]]
    }

    /// The inverse map (moving to fixed), expressed about the same centre.
    pub fn inverse(&self) -> Rigid2 {
        // T⁻¹(q) = R(−θ)(q − c − t) + c = R(−θ)(q − c) + c − R(−θ)t.
        let (s, c) = (-self.angle_rad).sin_cos();
        let [tx, ty] = self.translation;
        Rigid2 {
            angle_rad: -self.angle_rad,
            translation: [-(c * tx - s * ty), -(s * tx + c * ty)],
            center: self.center,
        }
    }

    /// The same map expressed about another rotation centre.
    pub fn with_center(&self, center: [f64; 2]) -> Rigid2 {
        // Keep T(center_new) unchanged: t' = T(c') − c'.
        let m = self.apply(center);
        Rigid2 {
            angle_rad: self.angle_rad,
            translation: [m[0] - center[0], m[1] - center[1]],
            center,
        }
    }

    /// `self ∘ other`: first `other`, then `self`. The result uses `other`'s centre.
    pub fn compose(&self, other: &Rigid2) -> Rigid2 {
        let c = other.center;
        let m = self.apply(other.apply(c));
        Rigid2 {
            angle_rad: self.angle_rad + other.angle_rad,
            translation: [m[0] - c[0], m[1] - c[1]],
            center: c,
        }
    }
}

/// The four corners used by the MultiRegEval protocol for a `width × height` image:
/// `(0,0), (w,0), (w,h), (0,h)` (the protocol uses `w`, not `w − 1`).
pub fn corners(width: f64, height: f64) -> [[f64; 2]; 4] {
    [[0.0, 0.0], [width, 0.0], [width, height], [0.0, height]]
}

/// Mean distance between where two transforms send the four corners of a `width × height` image.
/// This is the MultiRegEval registration error when one of them is the ground truth.
pub fn corner_error(a: &Rigid2, b: &Rigid2, width: f64, height: f64) -> f64 {
    corners(width, height)
        .iter()
        .map(|&p| {
            let (u, v) = (a.apply(p), b.apply(p));
            ((u[0] - v[0]).powi(2) + (u[1] - v[1]).powi(2)).sqrt()
        })
        .sum::<f64>()
        / 4.0
}

/// The registration result as written to JSON (the file contract of `comir register`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformRecord {
    /// `"rigid"`: the only kind comir writes and reads.
    pub kind: String,
    /// Homogeneous matrix mapping fixed `(x, y, 1)` to moving coordinates.
    pub fixed_to_moving: [[f64; 3]; 3],
    /// Rotation in degrees.
    pub angle_deg: f64,
    /// Translation `(tx, ty)` in pixels.
    pub translation: [f64; 2],
    /// Rotation centre `(cx, cy)` in pixels.
    pub center: [f64; 2],
    /// The registration method that produced it.
    pub method: String,
    /// The method's quality value at the result (see the method's docs for its meaning).
    pub metric_value: f64,
    /// Wall-clock seconds the registration took.
    pub seconds: f64,
}

impl TransformRecord {
    /// Wraps a transform with its provenance.
    pub fn new(t: &Rigid2, method: &str, metric_value: f64, seconds: f64) -> TransformRecord {
        TransformRecord {
            kind: "rigid".into(),
            fixed_to_moving: t.matrix(),
            angle_deg: t.angle_rad.to_degrees(),
            translation: t.translation,
            center: t.center,
            method: method.into(),
            metric_value,
            seconds,
        }
    }

    /// The transform the record describes.
    pub fn rigid(&self) -> Rigid2 {
        Rigid2::new(self.angle_deg.to_radians(), self.translation, self.center)
    }
}

fn write_atomically(path: &Path, text: &str) -> Result<(), Error> {
    comir_fs::write_atomically(path, text.as_bytes()).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        error,
    })
}

/// Writes a record as pretty JSON (atomically: temporary file, then rename).
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn write_json(path: impl AsRef<Path>, rec: &TransformRecord) -> Result<(), Error> {
    let path = path.as_ref();
    let text = serde_json::to_string_pretty(rec).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_atomically(path, &(text + "\n"))
}

/// Reads a record written by [`write_json`].
///
/// # Errors
/// [`Error::Io`] or [`Error::Parse`] naming the file.
pub fn read_json(path: impl AsRef<Path>) -> Result<TransformRecord, Error> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        error,
    })?;
    parse_json(&text, path)
}

/// Parses the text of a record as [`read_json`] does a file; `name` only labels the errors.
/// The record must be `"rigid"` with a finite angle, translation and centre.
///
/// # Errors
/// [`Error::Parse`] naming `name`.
pub fn parse_json(text: &str, name: impl AsRef<Path>) -> Result<TransformRecord, Error> {
    let parse = |reason: String| Error::Parse {
        path: name.as_ref().to_path_buf(),
        reason,
    };
    let rec: TransformRecord = serde_json::from_str(text).map_err(|e| parse(e.to_string()))?;
    if rec.kind != "rigid" {
        return Err(parse(format!(
            "kind is '{}'; only \"rigid\" is supported",
            rec.kind
        )));
    }
    let finite = rec.angle_deg.is_finite()
        && rec
            .translation
            .iter()
            .chain(&rec.center)
            .all(|v| v.is_finite());
    if !finite {
        return Err(parse("non-finite angle, translation or centre".into()));
    }
    Ok(rec)
}

/// The ITK transform-file text (`Euler2DTransform_double_2_2`) of a transform.
pub fn itk_tfm_text(t: &Rigid2) -> String {
    format!(
        "#Insight Transform File V1.0\n#Transform 0\nTransform: Euler2DTransform_double_2_2\n\
         Parameters: {:.17e} {:.17e} {:.17e}\nFixedParameters: {:.17e} {:.17e}\n",
        t.angle_rad, t.translation[0], t.translation[1], t.center[0], t.center[1]
    )
}

/// Writes a transform as an ITK `.tfm` file (atomically).
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn write_itk_tfm(path: impl AsRef<Path>, t: &Rigid2) -> Result<(), Error> {
    write_atomically(path.as_ref(), &itk_tfm_text(t))
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
        write_json(&p, &TransformRecord::new(&t, "mi", -0.5, 0.01)).expect("write");
        let back = read_json(&p).expect("read").rigid();
        assert!(close(back.apply([3.0, 4.0]), t.apply([3.0, 4.0])));
        std::fs::write(&p, "{\"kind\": 3}").expect("write");
        let msg = read_json(&p).expect_err("bad").to_string();
        assert!(msg.contains("t.json"), "{msg}");
    }

    #[test]
    fn tfm_text_has_itk_layout() {
        let t = Rigid2::new(0.25, [1.0, 2.0], [3.0, 4.0]);
        let text = itk_tfm_text(&t);
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
}
