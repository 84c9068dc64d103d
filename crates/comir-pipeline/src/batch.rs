//! Registering many pairs listed in a manifest, split into shards (e.g. the jobs of a Slurm
//! array), and merging the shards' results: the entry points behind
//! `comir register --manifest … [--shard K/N | --merge]`.
//!
//! A manifest is a CSV with the columns `fixed,moving,output` (paths relative to its folder;
//! `output` is the transform JSON). Shard K of N takes the rows i with i mod N = K − 1 and
//! writes `STEM.results.K-of-N.csv` beside the manifest; a row whose output already holds a
//! transform is not registered again, so a killed job resumes. [`merge`] gathers the shards'
//! CSVs into `STEM.results.csv`, every manifest row exactly once.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use comir_transform::{write_json, TransformRecord};
use serde::{Deserialize, Serialize};

use crate::register::{PairRegistrar, RegisterOptions};
use crate::{write_csv, Console};

pub use comir_data::manifest::ManifestRow;

/// One row of a shard's (and the merged) results CSV.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestResult {
    /// Row of the manifest (0-based, header not counted).
    pub index: usize,
    /// The fixed image, as the manifest names it.
    pub fixed: String,
    /// The moving image, as the manifest names it.
    pub moving: String,
    /// The transform JSON, as the manifest names it.
    pub output: String,
    /// The method that registered the pair.
    pub method: String,
    /// Rotation in degrees.
    pub angle_deg: f64,
    /// x translation in pixels.
    pub tx: f64,
    /// y translation in pixels.
    pub ty: f64,
    /// The method's metric at the result.
    pub metric_value: f64,
    /// Seconds the registration took.
    pub seconds: f64,
    /// How far the result can be trusted, in `[0, 1]` (empty when not assessed).
    #[serde(default)]
    pub confidence: Option<f64>,
    /// `ok` or `doubtful` (empty when not assessed).
    #[serde(default)]
    pub flag: Option<String>,
}

impl ManifestResult {
    fn new(index: usize, row: &ManifestRow, r: &TransformRecord) -> ManifestResult {
        ManifestResult {
            index,
            fixed: row.fixed.display().to_string(),
            moving: row.moving.display().to_string(),
            output: row.output.display().to_string(),
            method: r.method.clone(),
            angle_deg: r
                .angle_deg
                .unwrap_or_else(|| r.transform().angle_rad().to_degrees()),
            tx: r.translation[0],
            ty: r.translation[1],
            metric_value: r.metric_value,
            seconds: r.seconds,
            confidence: r.confidence,
            flag: r.flag.clone(),
        }
    }
}

/// Share K of N of a manifest, 1 ≤ K ≤ N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// K, from 1.
    pub index: usize,
    /// N.
    pub count: usize,
}

impl FromStr for Shard {
    type Err = anyhow::Error;

    /// `K/N`, e.g. `3/10`.
    fn from_str(s: &str) -> Result<Shard> {
        let parsed = s
            .split_once('/')
            .and_then(|(k, n)| Some((k.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((k, n)) if k >= 1 && k <= n => Ok(Shard { index: k, count: n }),
            _ => bail!("--shard must be K/N with 1 ≤ K ≤ N (e.g. 3/10), got '{s}'"),
        }
    }
}

/// Reads a manifest.
///
/// # Errors
/// An unreadable file, other columns than `fixed,moving,output`, no rows, or more rows than
/// [`comir_data::manifest::max_manifest_rows`].
pub fn read_manifest(path: &Path) -> Result<Vec<ManifestRow>> {
    let mut rows = Vec::new();
    visit_manifest(path, |_, row| {
        rows.push(row);
        Ok(())
    })?;
    Ok(rows)
}

/// Reads a manifest one row at a time (see [`comir_data::manifest::for_each_row`]).
fn visit_manifest(
    path: &Path,
    visit: impl FnMut(usize, ManifestRow) -> std::result::Result<(), String>,
) -> Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let max_rows = comir_data::manifest::max_manifest_rows();
    comir_data::manifest::for_each_row(std::io::BufReader::new(file), max_rows, visit)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(())
}

/// The rows of shard `k` of `n` of a manifest, with their indices, once every image they name
/// is known to exist: a manifest naming missing images is refused as a whole before anything
/// is registered, in one message (rows are checked as they are read, so a huge manifest of
/// missing files costs no memory).
fn shard_rows(manifest: &Path, base: &Path, shard: Shard) -> Result<Vec<(usize, ManifestRow)>> {
    let mut rows = Vec::new();
    let mut first_missing: Option<String> = None;
    let mut missing = 0usize;
    visit_manifest(manifest, |i, row| {
        if i % shard.count != shard.index - 1 {
            return Ok(());
        }
        for (role, p) in [("fixed", &row.fixed), ("moving", &row.moving)] {
            if !at(base, p).is_file() {
                missing += 1;
                first_missing.get_or_insert_with(|| {
                    format!("row {i}: the {role} image {} does not exist", p.display())
                });
                break;
            }
        }
        if first_missing.is_none() {
            rows.push((i, row));
        }
        Ok(())
    })?;
    if let Some(first) = first_missing {
        bail!(
            "{}: {first} ({missing} row{} of the shard name missing images)",
            manifest.display(),
            if missing == 1 { "" } else { "s" }
        );
    }
    Ok(rows)
}

/// `p` relative to `base` unless it is absolute.
fn at(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// `DIR/STEM.results[.K-of-N].csv` next to the manifest.
pub fn results_path(manifest: &Path, shard: Option<Shard>) -> PathBuf {
    let stem = manifest
        .file_stem()
        .map_or_else(|| "manifest".into(), |s| s.to_string_lossy().into_owned());
    let name = match shard {
        Some(Shard { index, count }) => format!("{stem}.results.{index}-of-{count}.csv"),
        None => format!("{stem}.results.csv"),
    };
    manifest.with_file_name(name)
}

/// What a shard did.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardRun {
    /// The shard.
    pub shard: Shard,
    /// Rows with a result (registered now or before).
    pub registered: usize,
    /// Of those, rows whose output existed already.
    pub done_before: usize,
    /// Rows that failed (reported on the console and left out).
    pub failed: usize,
    /// The shard's results CSV.
    pub results: PathBuf,
}

/// Registers `shard`'s rows of `manifest`; a row whose output already holds a transform is kept
/// (so a killed job resumes). A row that fails is noted on `console` and left out: one bad pair
/// does not stop a batch.
///
/// # Errors
/// An unreadable manifest, an invalid method config or model, or an unwritable output.
pub fn register_shard(
    options: &RegisterOptions,
    manifest: &Path,
    shard: Shard,
    console: &mut dyn Console,
) -> Result<ShardRun> {
    let base = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
    let mine = shard_rows(manifest, &base, shard)?;
    let at = |p: &Path| at(&base, p);
    let registrar = PairRegistrar::new(options)?;
    let results_file = results_path(manifest, Some(shard));
    let pb = console.bar(mine.len() as u64, "register");
    let mut results = Vec::new();
    let (mut done_before, mut failed) = (0, 0);
    for (i, row) in mine {
        let out = at(&row.output);
        let record = match comir_transform::read_json(&out) {
            Ok(r) => {
                done_before += 1;
                r
            }
            Err(_) => match registrar.register(&at(&row.fixed), &at(&row.moving)) {
                Ok(reg) => {
                    if let Some(dir) = out.parent() {
                        std::fs::create_dir_all(dir)
                            .with_context(|| format!("{}", dir.display()))?;
                    }
                    write_json(&out, &reg.record)?;
                    reg.record
                }
                Err(e) => {
                    pb.suspend(|| console.note(&format!("row {i}: {e:#}")));
                    failed += 1;
                    pb.inc(1);
                    continue;
                }
            },
        };
        results.push(ManifestResult::new(i, &row, &record));
        write_csv(&results_file, &results)?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    write_csv(&results_file, &results)?;
    Ok(ShardRun {
        shard,
        registered: results.len(),
        done_before,
        failed,
        results: results_file,
    })
}

/// What a merge gathered.
#[derive(Clone, Debug, PartialEq)]
pub struct Merged {
    /// Rows in the merged CSV (every manifest row once).
    pub rows: usize,
    /// Shard CSVs read.
    pub files: usize,
    /// The merged CSV.
    pub out: PathBuf,
}

/// Gathers `STEM.results.K-of-N.csv` of every shard into `STEM.results.csv`, in manifest order;
/// every manifest row must appear exactly once.
///
/// # Errors
/// An unreadable manifest or shard CSV, shards that overlap, or rows without a result.
pub fn merge(manifest: &Path) -> Result<Merged> {
    let rows = read_manifest(manifest)?;
    let dir = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    let prefix = results_path(manifest, Some(Shard { index: 1, count: 1 }))
        .file_name()
        .map(|f| f.to_string_lossy().replace("1-of-1.csv", ""))
        .unwrap_or_default();
    let mut merged: Vec<ManifestResult> = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with(&prefix) && name.contains("-of-") && name.ends_with(".csv") {
            files += 1;
            let mut r =
                csv::Reader::from_path(&path).with_context(|| format!("{}", path.display()))?;
            for row in r.deserialize() {
                merged.push(row.with_context(|| format!("{}", path.display()))?);
            }
        }
    }
    merged.sort_by_key(|r| r.index);
    let before = merged.len();
    merged.dedup_by_key(|r| r.index);
    if merged.len() != before {
        bail!(
            "{}: shards overlap (a row appears in more than one shard's CSV); merge shards of one split",
            dir.display()
        );
    }
    let missing: Vec<usize> = (0..rows.len())
        .filter(|i| merged.binary_search_by_key(i, |r| r.index).is_err())
        .collect();
    if let Some(first) = missing.first() {
        bail!(
            "{}: {} of {} rows have no result in the {files} shard file(s) (first missing: row {first}); run the missing shards first",
            manifest.display(),
            missing.len(),
            rows.len(),
        );
    }
    let out = results_path(manifest, None);
    write_csv(&out, &merged)?;
    Ok(Merged {
        rows: merged.len(),
        files,
        out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_name_their_results() {
        let s: Shard = " 3 / 10".parse().expect("shard");
        assert_eq!(
            s,
            Shard {
                index: 3,
                count: 10
            }
        );
        for bad in ["0/2", "3/2", "1", "a/b"] {
            let e = bad.parse::<Shard>().expect_err(bad).to_string();
            assert!(e.starts_with("--shard must be K/N"), "{e}");
        }
        let m = Path::new("runs/pairs.csv");
        assert_eq!(
            results_path(m, Some(s)),
            Path::new("runs/pairs.results.3-of-10.csv")
        );
        assert_eq!(results_path(m, None), Path::new("runs/pairs.results.csv"));
    }
}
