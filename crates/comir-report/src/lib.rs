//! Visual reports a person opens in a browser: one self-contained HTML page (`index.html`, no
//! scripts, nothing fetched from the network) plus the PNG files it shows, in one folder.
//!
//! * [`write_eval_report`]: an evaluation (`comir eval`, `comir demo`) — a summary table per
//!   method; for sample pairs the fixed and moving images, their representations, a
//!   checkerboard and a colour overlay before and after registration; success rate against the
//!   initial displacement; the error scatter; the training loss curve when a model was used.
//! * [`write_study_report`]: an experiment grid (`comir experiment`) — the results table and each
//!   cell's analysis plots; [`study`] makes that table (success rate, mean ± std over seeds).
//!
//! * [`align::write_align_report`]: an alignment (`comir align`) — per round the confidence
//!   histogram and the pairs that changed; per pair the first and the kept overlay.
//!
//! Data flow one way: the report reads results and images, it never computes a registration.

#![warn(missing_docs)]

pub mod align;
pub mod html;
pub mod study;
pub mod visuals;

use std::path::{Path, PathBuf};

use comir_analysis::plot::{xy_png, XyChart, XySeries, XyStyle};
use comir_eval::CaseResult;
use comir_image::Image;
use comir_transform::Rigid2;

/// What can go wrong while writing a report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The report folder or a file in it cannot be written.
    #[error("{path}: {reason}")]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A picture cannot be written.
    #[error(transparent)]
    Image(#[from] comir_image::Error),
    /// A plot cannot be drawn.
    #[error(transparent)]
    Plot(#[from] comir_analysis::Error),
    /// A training history cannot be read.
    #[error("{path}: {reason}")]
    History {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// One evaluated case shown in pictures (kept by the evaluation runner).
pub use comir_eval::SampleCase;

/// One row of a training history (`history.csv` of a model folder).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HistoryPoint {
    /// Step (1-based).
    pub step: f64,
    /// Training loss.
    pub loss: f64,
    /// Validation loss, where measured.
    pub val_loss: Option<f64>,
}

/// Reads `history.csv` (columns `step`, `loss` and, optionally, `val_loss`).
///
/// # Errors
/// [`Error::History`] when the file cannot be read or lacks the columns.
pub fn read_history(path: &Path) -> Result<Vec<HistoryPoint>, Error> {
    let bad = |reason: String| Error::History {
        path: path.to_path_buf(),
        reason,
    };
    let mut r = csv::Reader::from_path(path).map_err(|e| bad(e.to_string()))?;
    let header = r.headers().map_err(|e| bad(e.to_string()))?.clone();
    let col = |name: &str| header.iter().position(|h| h == name);
    let (step, loss) = match (col("step"), col("loss")) {
        (Some(s), Some(l)) => (s, l),
        _ => return Err(bad("no 'step' and 'loss' columns".into())),
    };
    let val = col("val_loss");
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        let num = |k: usize| rec.get(k).and_then(|v| v.trim().parse::<f64>().ok());
        let (Some(s), Some(l)) = (num(step), num(loss)) else {
            return Err(bad(format!("row {}: step or loss is not a number", i + 2)));
        };
        out.push(HistoryPoint {
            step: s,
            loss: l,
            val_loss: val.and_then(num),
        });
    }
    Ok(out)
}

/// Everything an evaluation report shows.
#[derive(Clone, Debug)]
pub struct EvalReport<'a> {
    /// Page title.
    pub title: String,
    /// What was run: `(what, value)` lines under the title.
    pub facts: Vec<(String, String)>,
    /// Every case's result.
    pub rows: &'a [CaseResult],
    /// The methods, in the order of the tables and legends.
    pub methods: Vec<String>,
    /// Cases shown in pictures.
    pub samples: Vec<SampleCase>,
    /// Training history of the model, if one was used.
    pub history: Option<Vec<HistoryPoint>>,
    /// Success threshold as a fraction of the image width (MultiRegEval: 0.02).
    pub success_frac: f64,
}

fn write_text(path: &Path, text: &str) -> Result<(), Error> {
    comir_fs::write_atomically(path, text.as_bytes()).map_err(|e| Error::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn create_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Write {
        path: dir.to_path_buf(),
        reason: format!("cannot create folder: {e}"),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn fmt_px(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "–".into()
    }
}

/// A file-name-safe version of `s`.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Per method and level: (cases, successes, median initial error, median final error).
fn by_level(rows: &[CaseResult], method: &str) -> Vec<(u32, usize, usize, f64, f64)> {
    let mut levels: Vec<u32> = rows
        .iter()
        .filter(|r| r.method == method)
        .map(|r| r.level)
        .collect();
    levels.sort_unstable();
    levels.dedup();
    levels
        .into_iter()
        .map(|l| {
            let cases: Vec<&CaseResult> = rows
                .iter()
                .filter(|r| r.method == method && r.level == l)
                .collect();
            let ok = cases.iter().filter(|r| r.success).count();
            (
                l,
                cases.len(),
                ok,
                median(cases.iter().map(|r| r.initial_error_px).collect()),
                median(cases.iter().map(|r| r.error_px).collect()),
            )
        })
        .collect()
}

/// Writes `dir/index.html` and its PNGs for an evaluation; returns the page's path.
///
/// # Errors
/// [`Error`] when a file cannot be written.
pub fn write_eval_report(dir: &Path, report: &EvalReport<'_>) -> Result<PathBuf, Error> {
    create_dir(dir)?;
    let mut body = html::facts(&report.facts);

    // Summary table.
    body.push_str("<h2>Success rate</h2>\n");
    let mut rows = Vec::new();
    for m in &report.methods {
        let mine: Vec<&CaseResult> = report.rows.iter().filter(|r| &r.method == m).collect();
        let ok = mine.iter().filter(|r| r.success).count();
        let mut row = vec![m.clone()];
        for (_, n, s, _, _) in by_level(report.rows, m) {
            row.push(format!("{s}/{n}"));
        }
        row.push(format!("{ok}/{}", mine.len()));
        row.push(format!(
            "{:.1} %",
            100.0 * ok as f64 / mine.len().max(1) as f64
        ));
        row.push(fmt_px(median(mine.iter().map(|r| r.error_px).collect())));
        row.push(format!(
            "{:.2}",
            median(mine.iter().map(|r| r.seconds).collect())
        ));
        rows.push(row);
    }
    let mut levels: Vec<u32> = report.rows.iter().map(|r| r.level).collect();
    levels.sort_unstable();
    levels.dedup();
    let level_heads: Vec<String> = levels.iter().map(|l| format!("level {l}")).collect();
    let mut header: Vec<&str> = vec!["method"];
    header.extend(level_heads.iter().map(String::as_str));
    header.extend(["all", "success", "median error (px)", "median time (s)"]);
    body.push_str(&html::table(&header, &rows));
    body.push_str(&format!(
        "<p class=\"note\">Success: the mean corner error is at most {:.0} % of the image width \
         (MultiRegEval protocol). Level L: rotation ±[5(L−1), 5L)°, translation up to {:.1} % of \
         the width per level.</p>\n",
        100.0 * report.success_frac,
        100.0 * 7.0 / 300.0
    ));

    // Success rate against the initial displacement, and the error scatter.
    let success_series: Vec<XySeries> = report
        .methods
        .iter()
        .map(|m| XySeries {
            label: m.clone(),
            points: by_level(report.rows, m)
                .into_iter()
                .map(|(_, n, s, init, _)| [init, 100.0 * s as f64 / n.max(1) as f64])
                .collect(),
            style: XyStyle::Line,
        })
        .collect();
    xy_png(
        dir.join("success-vs-displacement.png"),
        &XyChart {
            title: "Success rate against initial displacement".into(),
            x_label: "median initial corner error of the level (px)".into(),
            y_label: "success (%)".into(),
            y_range: Some((0.0, 100.0)),
            reference: None,
        },
        &success_series,
    )?;
    let width = median(report.rows.iter().map(|r| r.width as f64).collect());
    let threshold = report.success_frac * width;
    let max_init = report
        .rows
        .iter()
        .map(|r| r.initial_error_px)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let scatter: Vec<XySeries> = report
        .methods
        .iter()
        .map(|m| XySeries {
            label: m.clone(),
            points: report
                .rows
                .iter()
                .filter(|r| &r.method == m)
                .map(|r| [r.initial_error_px, r.error_px])
                .collect(),
            style: XyStyle::Dots,
        })
        .collect();
    xy_png(
        dir.join("error-scatter.png"),
        &XyChart {
            title: "Error after registration against error before".into(),
            x_label: "initial corner error (px)".into(),
            y_label: "final corner error (px)".into(),
            // Up to the largest initial error: a failure that made things worse sits on the top
            // edge; a threshold line separates successes below it.
            y_range: Some((0.0, max_init.max(2.0 * threshold).max(1.0))),
            reference: threshold
                .is_finite()
                .then(|| (threshold, format!("success threshold {threshold:.1} px"))),
        },
        &scatter,
    )?;
    body.push_str("<h2>Against the displacement</h2>\n<div class=\"plots\">\n");
    body.push_str(&html::figure(
        "success-vs-displacement.png",
        "Success rate per displacement level (x: the level's median initial error)",
    ));
    body.push_str(&html::figure(
        "error-scatter.png",
        "Every case: final against initial corner error (failures above the line)",
    ));
    body.push_str("</div>\n");

    // Training.
    if let Some(history) = &report.history {
        let mut series = vec![XySeries {
            label: "training loss".into(),
            points: history.iter().map(|h| [h.step, h.loss]).collect(),
            style: XyStyle::Line,
        }];
        let val: Vec<[f64; 2]> = history
            .iter()
            .filter_map(|h| h.val_loss.map(|v| [h.step, v]))
            .collect();
        if !val.is_empty() {
            series.push(XySeries {
                label: "validation loss".into(),
                points: val,
                style: XyStyle::Line,
            });
        }
        xy_png(
            dir.join("loss.png"),
            &XyChart {
                title: "Training loss (InfoNCE + decay)".into(),
                x_label: "step".into(),
                y_label: "loss".into(),
                y_range: None,
                reference: None,
            },
            &series,
        )?;
        body.push_str("<h2>Training</h2>\n<div class=\"plots\">\n");
        body.push_str(&html::figure(
            "loss.png",
            &format!("Loss over {} steps", history.len()),
        ));
        body.push_str("</div>\n");
    }

    // Sample pairs.
    if !report.samples.is_empty() {
        body.push_str("<h2>Sample pairs</h2>\n");
        body.push_str(
            "<p class=\"note\">Checkerboard: squares alternate between the fixed and the moving \
             image. Overlay (of the representations, when a model was used): fixed in magenta, \
             moving in green; aligned structure is gray.</p>\n",
        );
    }
    for (i, s) in report.samples.iter().enumerate() {
        let id = format!("sample{}-{}", i + 1, slug(&s.pair));
        body.push_str(&format!(
            "<h3>{} · level {} · {}: {} ({} px)</h3>\n<div class=\"grid\">\n",
            html::escape(&s.pair),
            s.level,
            html::escape(&s.method),
            if s.success { "success" } else { "failure" },
            fmt_px(s.error_px)
        ));
        let pic =
            |body: &mut String, name: &str, img: &Image, caption: &str| -> Result<(), Error> {
                let file = format!("{id}-{name}.png");
                comir_image::save_png(dir.join(&file), &visuals::shrink(img))?;
                body.push_str(&html::figure(&file, caption));
                Ok(())
            };
        pic(&mut body, "fixed", &visuals::display(&s.fixed), "fixed")?;
        pic(
            &mut body,
            "moving",
            &visuals::display(&s.moving),
            "moving (displaced)",
        )?;
        if let Some((rf, rm)) = &s.representations {
            pic(
                &mut body,
                "rep-fixed",
                &visuals::display(rf),
                "representation of fixed",
            )?;
            pic(
                &mut body,
                "rep-moving",
                &visuals::display(rm),
                "representation of moving",
            )?;
        }
        body.push_str("<br>\n");
        // The overlay compares like with like: the representations when there are some
        // (aligned structure then turns gray), else the images; the checkerboard always shows
        // the images themselves (edges continue across squares when aligned).
        let (ov_fixed, ov_moving, ov_what) = match &s.representations {
            Some((rf, rm)) => (rf, rm, "representations"),
            None => (&s.fixed, &s.moving, "images"),
        };
        let identity = Rigid2::identity(s.fixed.center());
        let before = visuals::moving_in_fixed_frame(&s.fixed, &s.moving, &identity);
        pic(
            &mut body,
            "checker-before",
            &visuals::checkerboard(&s.fixed, &before, 8),
            "checkerboard before",
        )?;
        let ov_before = visuals::moving_in_fixed_frame(ov_fixed, ov_moving, &identity);
        pic(
            &mut body,
            "overlay-before",
            &visuals::overlay(ov_fixed, &ov_before),
            &format!("overlay of the {ov_what} before"),
        )?;
        match &s.found {
            Some(t) if t.linear.angle_rad().is_finite() => {
                let after = visuals::moving_in_fixed_frame(&s.fixed, &s.moving, t);
                pic(
                    &mut body,
                    "checker-after",
                    &visuals::checkerboard(&s.fixed, &after, 8),
                    "checkerboard after",
                )?;
                let ov_after = visuals::moving_in_fixed_frame(ov_fixed, ov_moving, t);
                pic(
                    &mut body,
                    "overlay-after",
                    &visuals::overlay(ov_fixed, &ov_after),
                    &format!("overlay of the {ov_what} after"),
                )?;
            }
            _ => body.push_str("<p>The method failed on this case: nothing to show after.</p>\n"),
        }
        body.push_str("</div>\n");
    }
    let path = dir.join("index.html");
    write_text(&path, &html::page(&report.title, &body))?;
    Ok(path)
}

/// One cell of a study, with the pictures of its analysis.
#[derive(Clone, Debug)]
pub struct StudyCell {
    /// Heading, e.g. `histology · pooled · mse · seed 0`.
    pub label: String,
    /// `(caption, existing PNG)`: copied into the report folder.
    pub pictures: Vec<(String, PathBuf)>,
}

/// Everything a study report shows.
#[derive(Clone, Debug)]
pub struct StudyReport {
    /// Page title.
    pub title: String,
    /// What was run.
    pub facts: Vec<(String, String)>,
    /// The results table: header and rows.
    pub header: Vec<String>,
    /// Rows of the table.
    pub rows: Vec<Vec<String>>,
    /// Cells with pictures.
    pub cells: Vec<StudyCell>,
}

/// Writes `dir/index.html` for a study, copying each cell's pictures beside it; returns the
/// page's path.
///
/// # Errors
/// [`Error`] when a file cannot be read or written.
pub fn write_study_report(dir: &Path, report: &StudyReport) -> Result<PathBuf, Error> {
    create_dir(dir)?;
    let mut body = html::facts(&report.facts);
    body.push_str("<h2>Results</h2>\n");
    let header: Vec<&str> = report.header.iter().map(String::as_str).collect();
    body.push_str(&html::table(&header, &report.rows));
    if !report.cells.is_empty() {
        body.push_str("<h2>Analysis of each cell</h2>\n");
    }
    for cell in &report.cells {
        body.push_str(&format!(
            "<h3>{}</h3>\n<div class=\"grid\">\n",
            html::escape(&cell.label)
        ));
        for (caption, src) in &cell.pictures {
            let name = src
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("picture.png");
            let file = format!("{}-{}", slug(&cell.label), name);
            let bytes = std::fs::read(src).map_err(|e| Error::Write {
                path: src.clone(),
                reason: format!("cannot read: {e}"),
            })?;
            comir_fs::write_atomically(&dir.join(&file), &bytes).map_err(|e| Error::Write {
                path: dir.join(&file),
                reason: e.to_string(),
            })?;
            body.push_str(&html::figure(&file, caption));
        }
        body.push_str("</div>\n");
    }
    let path = dir.join("index.html");
    write_text(&path, &html::page(&report.title, &body))?;
    Ok(path)
}
