//! Mapping landmark or annotation coordinates through a registration result: the entry point
//! behind `comir transform-points`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use comir_transform::Composite2;

/// Which way points go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointDirection {
    /// Fixed-image coordinates to moving-image coordinates (the transform as stored).
    FixedToMoving,
    /// Moving-image coordinates to fixed-image coordinates (through the inverse).
    MovingToFixed,
}

/// Largest residual (pixels) accepted when mapping a point back through a deformation.
const INVERSE_RESIDUAL_PX: f64 = 0.01;

/// Maps `p` through `t` in `direction`; `None` where the inverse does not reach the point to
/// within 0.01 px (a singular linear part, or a deformation that folds there).
pub fn map_point(t: &Composite2, p: [f64; 2], direction: PointDirection) -> Option<[f64; 2]> {
    match direction {
        PointDirection::FixedToMoving => Some(t.apply(p)),
        PointDirection::MovingToFixed => match t.inverse_apply(p) {
            Some((q, residual)) if residual <= INVERSE_RESIDUAL_PX => Some(q),
            _ => None,
        },
    }
}

/// Reads a transform from `comir register`'s JSON or from an ITK `.tfm` file (by extension):
/// linear, or linear after a B-spline deformation.
///
/// # Errors
/// An unreadable or invalid file, named in the message.
pub fn read_transform(path: &Path) -> Result<Composite2> {
    let is_tfm = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("tfm"));
    Ok(if is_tfm {
        comir_transform::read_itk_composite(path)?
    } else {
        comir_transform::read_json(path)?.composite()
    })
}

/// Maps the `x`, `y` columns of the CSV file `points` through the transform in `transform` and
/// writes `out`: the same rows and columns, with `x` and `y` replaced by the mapped coordinates.
/// Returns the number of points.
///
/// Coordinates are pixels, `x` the column and `y` the row, pixel centres at integers (the
/// convention of every comir transform). Other columns (labels, ids) pass through unchanged.
///
/// # Errors
/// An unreadable transform; a points file without `x` and `y` columns, with a row that does not
/// have them or with a value that is not a finite number (naming the file and line); a
/// transform that cannot be inverted (a singular linear part, or a point the deformation cannot
/// be inverted at to within 0.01 px, which happens where it folds); an unwritable output.
pub fn transform_points(
    transform: &Path,
    points: &Path,
    out: &Path,
    direction: PointDirection,
) -> Result<usize> {
    let t = read_transform(transform)?;
    if direction == PointDirection::MovingToFixed && t.linear.inverse().is_none() {
        bail!("{}: the transform cannot be inverted", transform.display());
    }
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(points)
        .with_context(|| format!("{}: cannot read points", points.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{}: cannot read the header", points.display()))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(ix), Some(iy)) = (column("x"), column("y")) else {
        bail!(
            "{}: the points file needs columns named x and y (found: {})",
            points.display(),
            headers.iter().collect::<Vec<_>>().join(", ")
        );
    };
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        // Line numbers as an editor shows them: the header is line 1.
        let line = i + 2;
        let record = record.with_context(|| format!("{}: line {line}", points.display()))?;
        let number = |k: usize, name: &str| -> Result<f64> {
            let text = record.get(k).unwrap_or("");
            match text.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(v),
                _ => bail!(
                    "{}: line {line}: {name} is '{text}', not a finite number",
                    points.display()
                ),
            }
        };
        let p = [number(ix, "x")?, number(iy, "y")?];
        let Some(q) = map_point(&t, p, direction) else {
            bail!(
                "{}: line {line}: the point ({}, {}) cannot be mapped back through {} (the \
                 deformation folds there)",
                points.display(),
                p[0],
                p[1],
                transform.display()
            );
        };
        let mut fields: Vec<String> = record.iter().map(str::to_string).collect();
        fields[ix] = format!("{}", q[0]);
        fields[iy] = format!("{}", q[1]);
        rows.push(fields);
    }
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(&headers)?;
    for row in &rows {
        writer.write_record(row)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
    comir_fs::write_atomically(out, &bytes)
        .with_context(|| format!("{}: cannot write", out.display()))?;
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use comir_transform::{write_json, Affine2, TransformRecord};

    #[test]
    fn points_go_there_and_back_and_bad_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Affine2 {
            matrix: [[0.8, 0.1], [-0.05, 1.1]],
            translation: [12.0, -4.0],
            center: [50.0, 40.0],
        };
        let tj = dir.path().join("t.json");
        write_json(&tj, &TransformRecord::new(&a.into(), "mi", 0.0, 0.0)).expect("json");
        let pts = dir.path().join("p.csv");
        std::fs::write(&pts, "id,x,y\nA,10,20\nB,55.5,3\n").expect("write");
        let fwd = dir.path().join("fwd.csv");
        let n = transform_points(&tj, &pts, &fwd, PointDirection::FixedToMoving).expect("map");
        assert_eq!(n, 2);
        let text = std::fs::read_to_string(&fwd).expect("read");
        let second: Vec<&str> = text.lines().nth(2).expect("row").split(',').collect();
        assert_eq!(second[0], "B");
        let q = a.apply([55.5, 3.0]);
        assert!((second[1].parse::<f64>().expect("x") - q[0]).abs() < 1e-9);
        assert!((second[2].parse::<f64>().expect("y") - q[1]).abs() < 1e-9);
        // And back through the inverse.
        let back = dir.path().join("back.csv");
        transform_points(&tj, &fwd, &back, PointDirection::MovingToFixed).expect("inverse");
        let text = std::fs::read_to_string(&back).expect("read");
        let first: Vec<&str> = text.lines().nth(1).expect("row").split(',').collect();
        assert!((first[1].parse::<f64>().expect("x") - 10.0).abs() < 1e-9);
        assert!((first[2].parse::<f64>().expect("y") - 20.0).abs() < 1e-9);
        // Bad files.
        std::fs::write(&pts, "id,col,row\nA,1,2\n").expect("write");
        let e = transform_points(&tj, &pts, &fwd, PointDirection::FixedToMoving).expect_err("cols");
        assert!(e.to_string().contains("columns named x and y"), "{e}");
        std::fs::write(&pts, "x,y\n1,2\n3,abc\n").expect("write");
        let e = transform_points(&tj, &pts, &fwd, PointDirection::FixedToMoving).expect_err("num");
        assert!(e.to_string().contains("line 3: y is 'abc'"), "{e}");
    }
}
