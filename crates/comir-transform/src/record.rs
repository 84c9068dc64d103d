//! The registration result as a JSON file: the file contract of `comir register`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Affine2, BSpline2, Composite2, Error, Rigid2, Similarity2, Transform2, TransformKind};

/// The registration result as written to JSON.
///
/// Every kind has `fixed_to_moving` (the homogeneous 3×3 matrix), `translation` and `center` (ITK's
/// parameters, `T(p) = M·(p − c) + c + t`); rigid and similarity add `angle_deg`, similarity adds
/// `scale`. Reading takes a rigid or similarity transform from its angle (and scale), translation
/// and centre, and an affine one from `fixed_to_moving` and `center`. A rigid record has exactly the
/// fields it always had, plus the optional `confidence` and `flag` of the registration.
///
/// A `bspline` record is a [`Composite2`]: its linear part is written as an affine one
/// (`fixed_to_moving`, `translation`, `center`) and `bspline` holds the deformation applied before
/// it (grid size, origin and spacing in pixels, and the coefficients in ITK's order: every
/// x-displacement in raster order, then every y-displacement).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformRecord {
    /// `"rigid"`, `"similarity"`, `"affine"` or `"bspline"`.
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
    /// The deformation of a `bspline` record, applied before the linear part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bspline: Option<BSpline2>,
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
            bspline: None,
        }
    }

    /// Wraps a registration result (linear or deformable) with its provenance.
    pub fn from_composite(
        c: &Composite2,
        method: &str,
        metric_value: f64,
        seconds: f64,
    ) -> TransformRecord {
        let Some(field) = &c.deformation else {
            return TransformRecord::new(&c.linear, method, metric_value, seconds);
        };
        let linear = Transform2::Affine(c.linear.to_affine());
        let mut rec = TransformRecord::new(&linear, method, metric_value, seconds);
        rec.kind = "bspline".into();
        rec.bspline = Some(field.clone());
        rec
    }

    /// The full transform the record describes (with its deformation for a `bspline` record).
    pub fn composite(&self) -> Composite2 {
        Composite2 {
            linear: self.transform(),
            deformation: self.bspline.clone(),
        }
    }

    /// The linear transform the record describes (the linear part of a `bspline` record). Only
    /// meaningful for a record that [`parse_json`] accepted (or that [`TransformRecord::new`]
    /// made).
    pub fn transform(&self) -> Transform2 {
        let angle = self.angle_deg.unwrap_or(0.0).to_radians();
        match TransformKind::from_name(&self.kind) {
            Some(TransformKind::Similarity) => Transform2::Similarity(Similarity2 {
                scale: self.scale.unwrap_or(1.0),
                angle_rad: angle,
                translation: self.translation,
                center: self.center,
            }),
            Some(TransformKind::Rigid) => {
                Transform2::Rigid(Rigid2::new(angle, self.translation, self.center))
            }
            // Affine, and the linear part of a B-spline record.
            _ => Transform2::Affine(Affine2::from_matrix(&self.fixed_to_moving, self.center)),
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
    let io = |error| Error::Io {
        path: path.to_path_buf(),
        error,
    };
    // The largest grid allowed, written at full precision (two numbers of at most 32
    // characters per node), and room for the rest: anything larger is refused unread.
    let most = (crate::bspline::max_grid_nodes() as u64)
        .saturating_mul(64)
        .saturating_add(1 << 20);
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > most {
        return Err(Error::Parse {
            path: path.to_path_buf(),
            reason: format!(
                "the file is {size} bytes, more than a transform with the largest B-spline grid \
                 allowed takes ({most} bytes; raise COMIR_MAX_GRID_NODES to allow it)"
            ),
        });
    }
    std::fs::read_to_string(path).map_err(io)
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
    let is_bspline = rec.kind == "bspline";
    let kind = match TransformKind::from_name(&rec.kind) {
        // The linear part of a B-spline record is stored as an affine transform.
        None if is_bspline => TransformKind::Affine,
        Some(kind) => kind,
        None => {
            return Err(parse(format!(
                "kind is '{}'; expected one of rigid, similarity, affine, bspline",
                rec.kind
            )))
        }
    };
    match (is_bspline, rec.bspline.is_some()) {
        (true, false) => return Err(parse("a bspline transform needs \"bspline\"".into())),
        (false, true) => {
            return Err(parse(format!(
                "a {} transform has no \"bspline\" field",
                rec.kind
            )))
        }
        _ => {}
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bspline_record_round_trips_and_needs_its_field() {
        let linear = Transform2::Similarity(Similarity2 {
            scale: 0.9,
            angle_rad: 0.1,
            translation: [3.0, -2.0],
            center: [20.0, 15.0],
        });
        let field = BSpline2::random_smooth(41, 31, 10.0, 1.5, 2).expect("field");
        let c = Composite2 {
            linear,
            deformation: Some(field),
        };
        let rec = TransformRecord::from_composite(&c, "mi", -0.5, 1.0);
        assert_eq!(rec.kind, "bspline");
        let text = serde_json::to_string(&rec).expect("json");
        let back = parse_json(&text, "b.json").expect("parse").composite();
        for p in [[0.0, 0.0], [12.5, 7.25], [40.0, 30.0]] {
            let (a, b) = (c.apply(p), back.apply(p));
            assert!((a[0] - b[0]).hypot(a[1] - b[1]) < 1e-12, "{a:?} {b:?}");
        }
        // A linear record stays as it was.
        let lin = TransformRecord::from_composite(&Composite2::linear(linear), "mi", 0.0, 0.0);
        assert_eq!(lin, TransformRecord::new(&linear, "mi", 0.0, 0.0));
        // The field is required by the kind, and refused by the other kinds.
        let mut v: serde_json::Value = serde_json::from_str(&text).expect("value");
        let field = v["bspline"].take();
        let e = parse_json(&v.to_string(), "b.json").expect_err("no field");
        assert!(e.to_string().contains("needs \"bspline\""), "{e}");
        v["bspline"] = field;
        v["kind"] = "affine".into();
        let e = parse_json(&v.to_string(), "b.json").expect_err("affine with field");
        assert!(e.to_string().contains("has no \"bspline\""), "{e}");
        // A grid that does not match its coefficients.
        v["kind"] = "bspline".into();
        v["bspline"]["grid_size"] = serde_json::json!([5, 5]);
        let e = parse_json(&v.to_string(), "b.json").expect_err("grid");
        assert!(e.to_string().contains("needs 50 parameters"), "{e}");
        // A grid of 10⁹ nodes with a handful of coefficients is refused before anything of
        // that size exists; so is one whose node count overflows.
        v["bspline"]["grid_size"] = serde_json::json!([31623, 31623]);
        let e = parse_json(&v.to_string(), "b.json").expect_err("huge grid");
        assert!(
            e.to_string()
                .contains("1000014129 nodes, more than the limit"),
            "{e}"
        );
        assert!(e.to_string().contains("COMIR_MAX_GRID_NODES"), "{e}");
        v["bspline"]["grid_size"] = serde_json::json!([usize::MAX, 4]);
        let e = parse_json(&v.to_string(), "b.json").expect_err("overflow");
        assert!(e.to_string().contains("too large"), "{e}");
        let tfm =
            "#Insight Transform File V1.0\n#Transform 0\nTransform: BSplineTransform_double_2_2\n\
                   Parameters: 0 0\nFixedParameters: 1e9 1e9 0 0 1 1 1 0 0 1\n";
        let e = crate::parse_itk_composite(tfm, "b.tfm").expect_err("huge tfm grid");
        assert!(
            e.to_string().contains("b.tfm") && e.to_string().contains("nodes, more than the limit"),
            "{e}"
        );
    }
}
