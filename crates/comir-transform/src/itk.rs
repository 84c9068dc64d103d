//! ITK transform files (`.tfm`, "Insight Transform File V1.0"), as SimpleITK, 3D Slicer and
//! elastix's tools read them.
//!
//! With unit spacing and zero origin, ITK's `Euler2DTransform`, `Similarity2DTransform` and
//! `AffineTransform` map fixed points to moving points exactly as [`Transform2::apply`] does, with
//! the same parameters in the same order.

use std::path::Path;

use crate::bspline::{BSpline2, ITK_BSPLINE_NAME};
use crate::record::{read_text, write_text};
use crate::{Affine2, Composite2, Error, Rigid2, Similarity2, Transform2};

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

/// Writes a registration result (linear, or linear with a B-spline) as an ITK `.tfm` file
/// (atomically; see [`Composite2::itk_tfm_text`]).
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn write_itk_composite(path: impl AsRef<Path>, c: &Composite2) -> Result<(), Error> {
    write_text(path.as_ref(), &c.itk_tfm_text())
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
/// [`Error::Parse`] naming `name`: an unknown, B-spline or composite transform, a wrong number of
/// parameters, a number that does not parse or is not finite, a singular or reflecting matrix.
pub fn parse_itk_tfm(text: &str, name: impl AsRef<Path>) -> Result<Transform2, Error> {
    let c = parse_itk_composite(text, &name)?;
    if c.deformation.is_some() {
        return Err(Error::Parse {
            path: name.as_ref().to_path_buf(),
            reason: "a B-spline transform cannot be used here; expected a rigid, similarity or \
                     affine transform"
                .into(),
        });
    }
    Ok(c.linear)
}

/// Reads an ITK `.tfm` file holding a linear transform, a `BSplineTransform_double_2_2`, or a
/// `CompositeTransform_double_2_2` of a linear transform followed by a B-spline (as
/// [`Composite2::itk_tfm_text`] writes it).
///
/// # Errors
/// [`Error::Io`] or [`Error::Parse`] naming the file.
pub fn read_itk_composite(path: impl AsRef<Path>) -> Result<Composite2, Error> {
    let path = path.as_ref();
    parse_itk_composite(&read_text(path)?, path)
}

/// One `Transform:` block of a `.tfm` file.
struct Block<'a> {
    class: &'a str,
    params: Vec<f64>,
    fixed: Vec<f64>,
}

/// Parses the text of an ITK `.tfm` file as [`read_itk_composite`] does; `name` only labels the
/// errors.
///
/// # Errors
/// [`Error::Parse`] naming `name`.
pub fn parse_itk_composite(text: &str, name: impl AsRef<Path>) -> Result<Composite2, Error> {
    let parse = |reason: String| Error::Parse {
        path: name.as_ref().to_path_buf(),
        reason,
    };
    let numbers = |key: &str, line: Option<&str>| -> Result<Vec<f64>, Error> {
        let line = line.ok_or_else(|| parse(format!("no \"{key}\" line")))?;
        let values = line
            .split_whitespace()
            .map(|v| v.parse::<f64>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| parse(format!("{key} {e}")))?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(parse(format!("{key} holds NaN or infinite values")));
        }
        Ok(values)
    };
    // Split into blocks at each "Transform:" line; a block's numbers follow its class line.
    let mut raw: Vec<(&str, Option<&str>, Option<&str>)> = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(class) = line.strip_prefix("Transform:") {
            raw.push((class.trim(), None, None));
        } else if let Some(last) = raw.last_mut() {
            if let Some(v) = line.strip_prefix("Parameters:") {
                last.1 = Some(v);
            } else if let Some(v) = line.strip_prefix("FixedParameters:") {
                last.2 = Some(v);
            }
        }
    }
    let composite = "CompositeTransform_double_2_2";
    let blocks_raw = match raw.as_slice() {
        [] => return Err(parse("no \"Transform:\" line".into())),
        [(c, ..), rest @ ..] if *c == composite => rest,
        all => all,
    };
    let mut blocks = Vec::with_capacity(blocks_raw.len());
    for &(class, p, f) in blocks_raw {
        if class == composite {
            return Err(parse(
                "a composite transform nested in another is not read".into(),
            ));
        }
        blocks.push(Block {
            class,
            params: numbers("Parameters:", p)?,
            fixed: numbers("FixedParameters:", f)?,
        });
    }
    let is_bspline = |b: &Block| b.class == ITK_BSPLINE_NAME;
    let bspline = |b: &Block| BSpline2::from_itk_parameters(&b.params, &b.fixed).map_err(&parse);
    match blocks.as_slice() {
        [one] if is_bspline(one) => Ok(Composite2 {
            linear: Transform2::Rigid(Rigid2::new(0.0, [0.0, 0.0], [0.0, 0.0])),
            deformation: Some(bspline(one)?),
        }),
        [one] => Ok(Composite2::linear(linear_block(one, &parse)?)),
        [lin, def] if !is_bspline(lin) && is_bspline(def) => Ok(Composite2 {
            linear: linear_block(lin, &parse)?,
            deformation: Some(bspline(def)?),
        }),
        _ => Err(parse(format!(
            "expected one transform, or a composite of a linear transform and a B-spline; got \
             {}",
            blocks
                .iter()
                .map(|b| b.class)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// A rigid, similarity or affine transform from its block.
fn linear_block(b: &Block, parse: &impl Fn(String) -> Error) -> Result<Transform2, Error> {
    let (class, p, c) = (b.class, &b.params, &b.fixed);
    let want = match class {
        "Euler2DTransform_double_2_2" => 3,
        "Similarity2DTransform_double_2_2" => 4,
        "AffineTransform_double_2_2" => 6,
        other => {
            return Err(parse(format!(
                "transform '{other}' is not supported (Euler2D, Similarity2D, Affine or BSpline, \
                 2-D, double)"
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
