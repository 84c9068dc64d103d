//! The registration result as a JSON file: the file contract of `comir register`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Affine2, Error, Rigid2, Similarity2, Transform2, TransformKind};

/// The registration result as written to JSON.
///
/// Every kind has `fixed_to_moving` (the homogeneous 3×3 matrix), `translation` and `center` (ITK's
/// parameters, `T(p) = M·(p − c) + c + t`); rigid and similarity add `angle_deg`, similarity adds
/// `scale`. Reading takes a rigid or similarity transform from its angle (and scale), translation
/// and centre, and an affine one from `fixed_to_moving` and `center`. A rigid record has exactly the
/// fields it always had, plus the optional `confidence` and `flag` of the registration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformRecord {
    /// `"rigid"`, `"similarity"` or `"affine"`.
    pub kind: String,
    /// Homogeneous matrix mapping fixed `(x, y, 1)` to moving coordinates.
    pub fixed_to_moving: [[f64; 3]; 3],
    /// Isotropic scale (similarity only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    /// Rotation in degrees (rigid and similarity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub angle_deg: Option<f64>,
    /// Translation `(tx, ty)` in pixels.
    pub translation: [f64; 2],
    /// Centre `(cx, cy)` in pixels.
    pub center: [f64; 2],
    /// The registration method that produced it.
    pub method: String,
    /// The method's quality value at the result (see the method's docs for its meaning).
    pub metric_value: f64,
    /// Wall-clock seconds the registration took.
    pub seconds: f64,
    /// How sure the registration is of its result, in [0, 1] (absent when not assessed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// `"ok"` or `"doubtful"` (absent when not assessed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
}

impl TransformRecord {
    /// Wraps a transform with its provenance.
    pub fn new(t: &Transform2, method: &str, metric_value: f64, seconds: f64) -> TransformRecord {
        let (scale, angle_deg, translation) = match t {
            Transform2::Rigid(r) => (None, Some(r.angle_rad.to_degrees()), r.translation),
            Transform2::Similarity(s) => {
                (Some(s.scale), Some(s.angle_rad.to_degrees()), s.translation)
            }
            Transform2::Affine(a) => (None, None, a.translation),
        };
        TransformRecord {
            kind: t.kind().name().into(),
            fixed_to_moving: t.matrix3(),
            scale,
            angle_deg,
            translation,
            center: t.center(),
            method: method.into(),
            metric_value,
            seconds,
            confidence: None,
            flag: None,
        }
    }

    /// The transform the record describes. Only meaningful for a record that [`parse_json`]
    /// accepted (or that [`TransformRecord::new`] made).
    pub fn transform(&self) -> Transform2 {
        let angle = self.angle_deg.unwrap_or(0.0).to_radians();
        match TransformKind::from_name(&self.kind) {
            Some(TransformKind::Similarity) => Transform2::Similarity(Similarity2 {
                scale: self.scale.unwrap_or(1.0),
                angle_rad: angle,
                translation: self.translation,
                center: self.center,
            }),
            Some(TransformKind::Affine) => {
                Transform2::Affine(Affine2::from_matrix(&self.fixed_to_moving, self.center))
            }
            _ => Transform2::Rigid(Rigid2::new(angle, self.translation, self.center)),
        }
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

/// Writes any text atomically, naming the file in the error.
pub(crate) fn write_text(path: &Path, text: &str) -> Result<(), Error> {
    write_atomically(path, text)
}

/// Reads a whole text file, naming it in the error.
pub(crate) fn read_text(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        error,
    })
}

/// Reads a record written by [`write_json`].
///
/// # Errors
/// [`Error::Io`] or [`Error::Parse`] naming the file.
pub fn read_json(path: impl AsRef<Path>) -> Result<TransformRecord, Error> {
    let path = path.as_ref();
    parse_json(&read_text(path)?, path)
}

/// Parses the text of a record as [`read_json`] does a file; `name` only labels the errors.
///
/// The kind must be known and every number finite; a rigid or similarity record needs its
/// angle, a similarity a positive scale, and an affine record an invertible matrix that does not
/// reflect (determinant > 0): a mirror image is never a registration result.
///
/// # Errors
/// [`Error::Parse`] naming `name`.
pub fn parse_json(text: &str, name: impl AsRef<Path>) -> Result<TransformRecord, Error> {
    let parse = |reason: String| Error::Parse {
        path: name.as_ref().to_path_buf(),
        reason,
    };
    let rec: TransformRecord = serde_json::from_str(text).map_err(|e| parse(e.to_string()))?;
    let Some(kind) = TransformKind::from_name(&rec.kind) else {
        return Err(parse(format!(
            "kind is '{}'; expected one of rigid, similarity, affine",
            rec.kind
        )));
    };
    let finite = rec
        .translation
        .iter()
        .chain(&rec.center)
        .chain(rec.fixed_to_moving.iter().flatten())
        .chain(rec.angle_deg.iter())
        .chain(rec.scale.iter())
        .all(|v| v.is_finite());
    if !finite {
        return Err(parse("a number is NaN or infinite".into()));
    }
    match kind {
        TransformKind::Rigid | TransformKind::Similarity if rec.angle_deg.is_none() => {
            return Err(parse(format!("a {kind} transform needs \"angle_deg\"")));
        }
        TransformKind::Similarity if !rec.scale.is_some_and(|s| s > 0.0) => {
            return Err(parse(
                "a similarity transform needs a positive \"scale\"".into(),
            ));
        }
        TransformKind::Affine => {
            let det = Affine2::from_matrix(&rec.fixed_to_moving, rec.center).determinant();
            if det <= 1e-9 {
                return Err(parse(format!(
                    "the affine matrix has determinant {det:.3e}: it is singular or reflects the \
                     image"
                )));
            }
        }
        _ => {}
    }
    Ok(rec)
}
