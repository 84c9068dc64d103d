//! ITK transform files (`.tfm`, "Insight Transform File V1.0"), as SimpleITK, 3D Slicer and
//! elastix's tools read them.
//!
//! With unit spacing and zero origin, ITK's `Euler2DTransform`, `Similarity2DTransform` and
//! `AffineTransform` map fixed points to moving points exactly as [`Transform2::apply`] does, with
//! the same parameters in the same order.

use std::path::Path;

use crate::record::{read_text, write_text};
use crate::{Affine2, Error, Rigid2, Similarity2, Transform2};

/// The ITK class name of a transform.
fn itk_class(t: &Transform2) -> &'static str {
    match t {
        Transform2::Rigid(_) => "Euler2DTransform_double_2_2",
        Transform2::Similarity(_) => "Similarity2DTransform_double_2_2",
        Transform2::Affine(_) => "AffineTransform_double_2_2",
    }
}

fn join(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.17e}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The ITK transform-file text of a transform.
pub fn itk_tfm_text(t: &Transform2) -> String {
    let c = t.center();
    format!(
        "#Insight Transform File V1.0\n#Transform 0\nTransform: {}\nParameters: {}\n\
         FixedParameters: {}\n",
        itk_class(t),
        join(&t.params()),
        join(&c)
    )
}

/// Writes a transform as an ITK `.tfm` file (atomically).
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn write_itk_tfm(path: impl AsRef<Path>, t: &Transform2) -> Result<(), Error> {
    write_text(path.as_ref(), &itk_tfm_text(t))
}

/// Reads an ITK `.tfm` file holding one rigid (`Euler2DTransform`), similarity or affine transform.
///
/// # Errors
/// [`Error::Io`] or [`Error::Parse`] naming the file.
pub fn read_itk_tfm(path: impl AsRef<Path>) -> Result<Transform2, Error> {
    let path = path.as_ref();
    parse_itk_tfm(&read_text(path)?, path)
}

/// Parses the text of an ITK `.tfm` file as [`read_itk_tfm`] does; `name` only labels the errors.
///
/// # Errors
/// [`Error::Parse`] naming `name`: an unknown or composite transform, a wrong number of
/// parameters, a number that does not parse or is not finite, a singular or reflecting matrix.
pub fn parse_itk_tfm(text: &str, name: impl AsRef<Path>) -> Result<Transform2, Error> {
    let parse = |reason: String| Error::Parse {
        path: name.as_ref().to_path_buf(),
        reason,
    };
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key).map(str::trim))
            .ok_or_else(|| parse(format!("no \"{key}\" line")))
    };
    let numbers = |key: &str| -> Result<Vec<f64>, Error> {
        let values = field(key)?
            .split_whitespace()
            .map(|v| v.parse::<f64>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| parse(format!("{key} {e}")))?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(parse(format!("{key} holds NaN or infinite values")));
        }
        Ok(values)
    };
    if text.matches("Transform:").count() != 1 {
        return Err(parse(
            "expected exactly one transform; composite files are not read".into(),
        ));
    }
    let class = field("Transform:")?;
    let p = numbers("Parameters:")?;
    let c = numbers("FixedParameters:")?;
    let want = match class {
        "Euler2DTransform_double_2_2" => 3,
        "Similarity2DTransform_double_2_2" => 4,
        "AffineTransform_double_2_2" => 6,
        other => {
            return Err(parse(format!(
                "transform '{other}' is not supported (Euler2D, Similarity2D or Affine, 2-D, \
                 double)"
            )))
        }
    };
    if p.len() != want || c.len() != 2 {
        return Err(parse(format!(
            "{class} needs {want} parameters and 2 fixed parameters, got {} and {}",
            p.len(),
            c.len()
        )));
    }
    let center = [c[0], c[1]];
    let t = match want {
        3 => Transform2::Rigid(Rigid2::new(p[0], [p[1], p[2]], center)),
        4 => {
            if p[0] <= 0.0 {
                return Err(parse(format!("similarity scale {} is not positive", p[0])));
            }
            Transform2::Similarity(Similarity2 {
                scale: p[0],
                angle_rad: p[1],
                translation: [p[2], p[3]],
                center,
            })
        }
        _ => {
            let a = Affine2 {
                matrix: [[p[0], p[1]], [p[2], p[3]]],
                translation: [p[4], p[5]],
                center,
            };
            if a.determinant() <= 1e-9 {
                return Err(parse(format!(
                    "the affine matrix has determinant {:.3e}: it is singular or reflects the \
                     image",
                    a.determinant()
                )));
            }
            Transform2::Affine(a)
        }
    };
    Ok(t)
}
