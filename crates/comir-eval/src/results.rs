use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The result of registering one case. These are the columns of `results.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    /// Pair name (the shared file name).
    pub pair: String,
    /// Transformation level.
    pub level: u32,
    /// Registration method.
    pub method: String,
    /// Error after registration in pixels: the mean corner error for rigid displacements, the
    /// mean over a dense grid for affine ones (NaN when the method failed).
    pub error_px: f64,
    /// Image width (the success threshold is a fraction of it).
    pub width: usize,
    /// Error ≤ threshold.
    pub success: bool,
    /// Wall-clock seconds of the registration (including representation, if any).
    pub seconds: f64,
    /// Mean corner displacement before registration in pixels.
    pub initial_error_px: f64,
    /// The applied rotation in degrees.
    pub true_angle_deg: f64,
    /// The applied x translation in pixels.
    pub true_tx: f64,
    /// The applied y translation in pixels.
    pub true_ty: f64,
    /// The rotation the method found, in degrees (NaN on failure).
    pub found_angle_deg: f64,
    /// The method's metric value at the result (lower is better; NaN on failure).
    pub metric_value: f64,
    /// `ok`, or why the method failed.
    pub status: String,
    /// How far the result can be trusted, in `[0, 1]`, judged without the truth
    /// (`comir_confidence`); 0 when the method failed, empty when not assessed.
    #[serde(default)]
    pub confidence: Option<f64>,
    /// `ok` or `doubtful` (see `comir_confidence::Flag`); empty when not assessed.
    #[serde(default)]
    pub flag: Option<String>,
    /// The mean corner error in pixels (MultiRegEval's measure), reported also for affine and
    /// elastic displacements, whose `error_px` is the dense-grid error; NaN when the method
    /// failed, empty in files written before the column existed.
    #[serde(default)]
    pub corner_error_px: Option<f64>,
}

/// Writes results as CSV, atomically.
///
/// # Errors
/// [`Error::Io`] or [`Error::Csv`] naming the file.
pub fn write_csv(path: impl AsRef<Path>, rows: &[CaseResult]) -> Result<(), Error> {
    let path = path.as_ref();
    let csv_err = |e: csv::Error| Error::Csv {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r).map_err(csv_err)?;
    }
    let bytes = w.into_inner().map_err(|e| Error::Csv {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    comir_fs::write_atomically(path, &bytes).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(())
}

/// Reads results written by [`write_csv`].
///
/// # Errors
/// [`Error::Io`] or [`Error::Csv`] naming the file and the bad row.
pub fn read_csv(path: impl AsRef<Path>) -> Result<Vec<CaseResult>, Error> {
    let path = path.as_ref();
    let mut r = csv::Reader::from_path(path).map_err(|e| Error::Csv {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    r.deserialize()
        .map(|row| {
            row.map_err(|e| Error::Csv {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Success and error statistics of a group of cases.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LevelSummary {
    /// The level, or `None` for all levels together.
    pub level: Option<u32>,
    /// Number of cases.
    pub cases: usize,
    /// Successful cases.
    pub successes: usize,
    /// Median corner error in pixels (failures count as +∞).
    pub median_error_px: f64,
    /// Median seconds per case.
    pub median_seconds: f64,
}

impl LevelSummary {
    /// Success rate in percent.
    pub fn success_rate(&self) -> f64 {
        if self.cases == 0 {
            0.0
        } else {
            100.0 * self.successes as f64 / self.cases as f64
        }
    }
}

/// Per-level and overall statistics of one method's results.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// The method.
    pub method: String,
    /// One row per level, in increasing order.
    pub levels: Vec<LevelSummary>,
    /// All levels together.
    pub overall: LevelSummary,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn group(level: Option<u32>, rows: &[&CaseResult]) -> LevelSummary {
    LevelSummary {
        level,
        cases: rows.len(),
        successes: rows.iter().filter(|r| r.success).count(),
        // A failed registration has no error: count it as infinitely wrong.
        median_error_px: median(
            rows.iter()
                .map(|r| {
                    if r.error_px.is_nan() {
                        f64::INFINITY
                    } else {
                        r.error_px
                    }
                })
                .collect(),
        ),
        median_seconds: median(rows.iter().map(|r| r.seconds).collect()),
    }
}

/// Summarises the results of one method (rows of other methods are ignored).
pub fn summarize(method: &str, rows: &[CaseResult]) -> Summary {
    let mine: Vec<&CaseResult> = rows.iter().filter(|r| r.method == method).collect();
    let mut levels: Vec<u32> = mine.iter().map(|r| r.level).collect();
    levels.sort_unstable();
    levels.dedup();
    Summary {
        method: method.to_string(),
        levels: levels
            .iter()
            .map(|&l| {
                let rows: Vec<&CaseResult> =
                    mine.iter().copied().filter(|r| r.level == l).collect();
                group(Some(l), &rows)
            })
            .collect(),
        overall: group(None, &mine),
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "method: {}", self.method)?;
        writeln!(
            f,
            "{:<7} {:>6} {:>9} {:>9} {:>16} {:>11}",
            "level", "cases", "success", "rate %", "median error px", "median s"
        )?;
        for s in self.levels.iter().chain(std::iter::once(&self.overall)) {
            let name = s.level.map_or("all".to_string(), |l| l.to_string());
            writeln!(
                f,
                "{:<7} {:>6} {:>9} {:>9.1} {:>16.2} {:>11.3}",
                name,
                s.cases,
                s.successes,
                s.success_rate(),
                s.median_error_px,
                s.median_seconds
            )?;
        }
        Ok(())
    }
}

/// How well one method's confidences told its successes from its failures.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfidenceSummary {
    /// The method.
    pub method: String,
    /// Area under the ROC curve of the confidence for predicting success.
    pub auroc: f64,
    /// Successes, failures, failures flagged doubtful and successes flagged doubtful.
    pub counts: comir_confidence::FlagCounts,
}

/// The confidence summary of one method's assessed rows; `None` unless there are both
/// successes and failures among them.
pub fn summarize_confidence(method: &str, rows: &[CaseResult]) -> Option<ConfidenceSummary> {
    let assessed: Vec<(&CaseResult, f64)> = rows
        .iter()
        .filter(|r| r.method == method)
        .filter_map(|r| r.confidence.map(|c| (r, c)))
        .collect();
    let scores: Vec<f64> = assessed.iter().map(|(_, c)| *c).collect();
    let success: Vec<bool> = assessed.iter().map(|(r, _)| r.success).collect();
    let auroc = comir_confidence::auroc(&scores, &success)?;
    let counts = comir_confidence::FlagCounts::count(
        assessed
            .iter()
            .map(|(r, _)| (r.success, r.flag.as_deref() == Some("doubtful"))),
    );
    Some(ConfidenceSummary {
        method: method.to_string(),
        auroc,
        counts,
    })
}

impl fmt::Display for ConfidenceSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        write!(
            f,
            "confidence: AUROC {:.3}; {} of {} failures flagged doubtful, {} of {} successes \
             (false alarms)",
            self.auroc, c.flagged_failures, c.failures, c.false_alarms, c.successes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(level: u32, err: f64, ok: bool) -> CaseResult {
        CaseResult {
            pair: format!("p{level}{err}"),
            level,
            method: "mi".into(),
            error_px: err,
            width: 100,
            success: ok,
            seconds: 0.5,
            initial_error_px: 10.0,
            true_angle_deg: 1.0,
            true_tx: 2.0,
            true_ty: 3.0,
            found_angle_deg: 1.0,
            metric_value: -0.3,
            status: "ok".into(),
            confidence: Some(if ok { 0.9 } else { 0.2 }),
            flag: Some(if ok { "ok" } else { "doubtful" }.into()),
            corner_error_px: None,
        }
    }

    #[test]
    fn summary_counts_failures_as_worst() {
        let rows = vec![
            row(1, 0.5, true),
            row(1, f64::NAN, false),
            row(2, 3.0, false),
        ];
        let s = summarize("mi", &rows);
        assert_eq!(s.overall.cases, 3);
        assert_eq!(s.overall.successes, 1);
        assert!((s.overall.success_rate() - 100.0 / 3.0).abs() < 1e-9);
        assert_eq!(s.levels[0].median_error_px, f64::INFINITY); // median of {0.5, ∞}
        assert_eq!(s.overall.median_error_px, 3.0);
        assert!(s.to_string().contains("all"));
    }

    #[test]
    fn csv_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("r.csv");
        let rows = vec![row(1, 0.25, true), row(3, 7.0, false)];
        write_csv(&p, &rows).expect("write");
        let text = std::fs::read_to_string(&p).expect("read");
        assert!(text.starts_with("pair,level,method,error_px,width,success,seconds"));
        assert!(text
            .lines()
            .next()
            .is_some_and(|h| h.ends_with(",status,confidence,flag,corner_error_px")));
        assert_eq!(read_csv(&p).expect("read"), rows);
    }

    #[test]
    fn confidence_summary_counts_flags_and_ranks() {
        let rows = vec![
            row(1, 0.5, true),
            row(2, 0.7, true),
            row(3, 9.0, false),
            CaseResult {
                confidence: Some(0.95),
                flag: Some("ok".into()),
                corner_error_px: None,
                ..row(4, 8.0, false)
            },
        ];
        let s = summarize_confidence("mi", &rows).expect("both kinds");
        // Successes 0.9, 0.9; failures 0.2, 0.95: 2 of 4 pairs won.
        assert!((s.auroc - 0.5).abs() < 1e-12);
        assert_eq!(
            (
                s.counts.failures,
                s.counts.flagged_failures,
                s.counts.false_alarms
            ),
            (2, 1, 0)
        );
        assert!(s.to_string().contains("1 of 2 failures flagged doubtful"));
        assert!(summarize_confidence("mi", &rows[..2]).is_none());
        assert!(summarize_confidence("aamd", &rows).is_none());
    }

    #[test]
    fn results_without_confidence_columns_still_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("r.csv");
        // Unassessed rows leave the three columns empty.
        let unassessed = CaseResult {
            confidence: None,
            flag: None,
            corner_error_px: None,
            ..row(2, 1.0, true)
        };
        write_csv(&p, std::slice::from_ref(&unassessed)).expect("write");
        assert_eq!(read_csv(&p).expect("read"), vec![unassessed.clone()]);
        // A file written before the columns existed.
        let text = std::fs::read_to_string(&p).expect("read");
        let old: String = text
            .lines()
            .map(|l| {
                l.trim_end_matches(",confidence,flag,corner_error_px")
                    .trim_end_matches(",,,")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(!old.contains("confidence") && !old.contains("corner"));
        std::fs::write(&p, old).expect("write");
        assert_eq!(read_csv(&p).expect("read"), vec![unassessed]);
    }
}
