//! Tables for programs: rows serialised as CSV and written atomically (temporary file + rename).

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// Writes `rows` (a header from the first row's field names) to `path` atomically.
pub fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    comir_fs::write_atomically(path, &bytes).with_context(|| format!("{}", path.display()))
}
