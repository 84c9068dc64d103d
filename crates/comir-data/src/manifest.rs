//! A manifest: the CSV of pairs that `comir register --manifest` registers, with the columns
//! `fixed,moving,output` (paths relative to the manifest's folder unless absolute).
//!
//! Rows are read one at a time, so checking a manifest costs no more memory than one row. A
//! manifest may hold at most [`DEFAULT_MAX_MANIFEST_ROWS`] rows; the environment variable
//! `COMIR_MAX_MANIFEST_ROWS` raises the limit.

use std::path::PathBuf;

use serde::Deserialize;

/// Default limit on the rows of a manifest.
pub const DEFAULT_MAX_MANIFEST_ROWS: usize = 1_000_000;

/// The limit on the rows of a manifest: `COMIR_MAX_MANIFEST_ROWS` when set to a number, else
/// [`DEFAULT_MAX_MANIFEST_ROWS`].
pub fn max_manifest_rows() -> usize {
    std::env::var("COMIR_MAX_MANIFEST_ROWS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(DEFAULT_MAX_MANIFEST_ROWS)
}

/// One row of a manifest.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestRow {
    /// The fixed image.
    pub fixed: PathBuf,
    /// The moving image.
    pub moving: PathBuf,
    /// Where the transform JSON goes.
    pub output: PathBuf,
}

/// Reads the rows of a manifest from `reader` in order and hands each to `visit` with its
/// 0-based index (header not counted); returns how many rows there were.
///
/// # Errors
/// Other columns than `fixed,moving,output`, a malformed row (named by its number), no rows,
/// more than `max_rows` rows, or what `visit` returns.
pub fn for_each_row(
    reader: impl std::io::Read,
    max_rows: usize,
    mut visit: impl FnMut(usize, ManifestRow) -> Result<(), String>,
) -> Result<usize, String> {
    let mut csv = csv::Reader::from_reader(reader);
    let mut count = 0;
    for (i, row) in csv.deserialize::<ManifestRow>().enumerate() {
        if i >= max_rows {
            return Err(format!(
                "more than {max_rows} rows; split it into several manifests (or raise \
                 COMIR_MAX_MANIFEST_ROWS)"
            ));
        }
        let row =
            row.map_err(|e| format!("not a manifest with the columns fixed,moving,output: {e}"))?;
        visit(i, row)?;
        count += 1;
    }
    if count == 0 {
        return Err("the manifest lists no pairs".into());
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, max_rows: usize) -> Result<Vec<ManifestRow>, String> {
        let mut rows = Vec::new();
        for_each_row(text.as_bytes(), max_rows, |_, r| {
            rows.push(r);
            Ok(())
        })?;
        Ok(rows)
    }

    #[test]
    fn rows_are_read_and_bad_manifests_refused() {
        let rows = read("fixed,moving,output\na.png,b.png,t.json\n", 10).expect("ok");
        assert_eq!(rows[0].moving, PathBuf::from("b.png"));
        for (text, needle) in [
            ("fixed,moving,output\n", "lists no pairs"),
            ("", "lists no pairs"),
            ("fixed,moving\na,b\n", "fixed,moving,output"),
            ("fixed,moving,output\na,b\n", "fixed,moving,output"),
            (
                "fixed,moving,output,extra\na,b,c,d\n",
                "fixed,moving,output",
            ),
        ] {
            let e = read(text, 10).expect_err(text);
            assert!(e.contains(needle), "{text:?}: {e}");
        }
        let many = format!("fixed,moving,output\n{}", "a,b,c\n".repeat(4));
        assert_eq!(read(&many, 4).expect("at the limit").len(), 4);
        let e = read(&many, 3).expect_err("over the limit");
        assert!(e.contains("more than 3 rows"), "{e}");
        assert!(e.contains("COMIR_MAX_MANIFEST_ROWS"), "{e}");
    }
}
