//! The report of `comir align`: per round the collection's confidence histogram and the pairs
//! that changed; per pair an overlay of the first and of the kept registration, doubtful pairs
//! first.

use std::path::{Path, PathBuf};

use comir_image::Image;
use comir_transform::Composite2;

use crate::visuals::{moving_in_fixed_frame, overlay, shrink};
use crate::{create_dir, html, write_text, Error};

/// One round of an alignment.
#[derive(Clone, Debug, PartialEq)]
pub struct AlignRound {
    /// 0 for the raw round.
    pub round: usize,
    /// The kept confidence of every pair after the round.
    pub confidences: Vec<f64>,
    /// Pairs flagged `ok`.
    pub confident: usize,
    /// Pairs whose result the round replaced.
    pub changed: Vec<String>,
    /// Pairs the round's model was trained on.
    pub trained_on: usize,
    /// Seconds the round took.
    pub seconds: f64,
}

/// One pair: its images, its first result (round 0) and the kept one.
#[derive(Clone, Debug)]
pub struct AlignPair<'a> {
    /// The pair's file name.
    pub name: String,
    /// The fixed image.
    pub fixed: &'a Image,
    /// The moving image.
    pub moving: &'a Image,
    /// Round 0's result.
    pub first: Composite2,
    /// The kept result.
    pub kept: Composite2,
    /// The kept result's confidence.
    pub confidence: f64,
    /// `ok` or `doubtful`.
    pub flag: String,
    /// The pipeline and round that found it.
    pub found_by: String,
}

/// What the page shows.
#[derive(Clone, Debug)]
pub struct AlignReport<'a> {
    /// Facts at the top (pairs, transform, rounds, why they stopped, …).
    pub facts: Vec<(String, String)>,
    /// Every round, round 0 first.
    pub rounds: Vec<AlignRound>,
    /// Every aligned pair.
    pub pairs: Vec<AlignPair<'a>>,
    /// Pairs left out, with why.
    pub skipped: Vec<(String, String)>,
}

/// A histogram of confidences in tenths, as rows of bars (plain HTML).
fn histogram(confidences: &[f64]) -> String {
    let mut counts = [0usize; 10];
    for &c in confidences {
        counts[((c * 10.0).floor() as usize).min(9)] += 1;
    }
    let most = counts.iter().copied().max().unwrap_or(0).max(1);
    let mut out = String::from("<table class=\"hist\">\n");
    for (k, &n) in counts.iter().enumerate().rev() {
        out.push_str(&format!(
            "<tr><td>{:.1}–{:.1}</td><td><div style=\"background:{};width:{}px;height:0.9em\"></div></td><td>{n}</td></tr>\n",
            k as f64 / 10.0,
            (k + 1) as f64 / 10.0,
            if k >= 4 { "#4a8" } else { "#c64" },
            (240 * n) / most
        ));
    }
    out.push_str("</table>\n");
    out
}

/// A file name made of the pair's name: letters and digits kept, the rest `_`.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Writes `dir/index.html` and the overlays it shows; returns the page's path.
///
/// # Errors
/// An unwritable folder or picture.
pub fn write_align_report(dir: &Path, report: &AlignReport<'_>) -> Result<PathBuf, Error> {
    create_dir(dir)?;
    let mut body = html::facts(&report.facts);

    body.push_str("<h2>Rounds</h2>\n");
    let rows: Vec<Vec<String>> = report
        .rounds
        .iter()
        .map(|r| {
            let n = r.confidences.len().max(1) as f64;
            vec![
                r.round.to_string(),
                if r.round == 0 {
                    "raw MI".into()
                } else {
                    format!("learned on {} pairs", r.trained_on)
                },
                format!("{:.3}", r.confidences.iter().sum::<f64>() / n),
                format!("{}/{}", r.confident, r.confidences.len()),
                r.changed.len().to_string(),
                format!("{:.0}", r.seconds),
            ]
        })
        .collect();
    body.push_str(&html::table(
        &[
            "round",
            "model",
            "mean confidence",
            "ok",
            "changed",
            "seconds",
        ],
        &rows,
    ));
    for r in &report.rounds {
        body.push_str(&format!(
            "<h3>Round {}: confidence of every pair</h3>\n",
            r.round
        ));
        body.push_str(&histogram(&r.confidences));
        if r.round > 0 {
            let changed = if r.changed.is_empty() {
                "none".to_string()
            } else {
                html::escape(&r.changed.join(", "))
            };
            body.push_str(&format!("<p>Changed: {changed}</p>\n"));
        }
    }

    body.push_str("<h2>Pairs, doubtful first</h2>\n");
    body.push_str(
        "<p class=\"note\">Overlays: fixed image in magenta, moving image resampled into the \
         fixed frame in green; gray where they agree.</p>\n",
    );
    let mut order: Vec<&AlignPair<'_>> = report.pairs.iter().collect();
    order.sort_by(|a, b| {
        (a.flag == "ok")
            .cmp(&(b.flag == "ok"))
            .then(a.confidence.total_cmp(&b.confidence))
    });
    for p in order {
        let stem = file_safe(&p.name);
        let picture = |t: &Composite2, suffix: &str| -> Result<String, Error> {
            let moved = moving_in_fixed_frame(p.fixed, p.moving, t);
            let file = format!("{stem}-{suffix}.png");
            comir_image::save_png(dir.join(&file), &shrink(&overlay(p.fixed, &moved)))?;
            Ok(file)
        };
        let first = picture(&p.first, "round0")?;
        let kept = picture(&p.kept, "kept")?;
        body.push_str(&format!(
            "<h3>{} — {} ({:.2}), {}</h3>\n<div class=\"grid\">{}{}</div>\n",
            html::escape(&p.name),
            html::escape(&p.flag),
            p.confidence,
            html::escape(&p.found_by),
            html::figure(&first, "round 0"),
            html::figure(&kept, "kept")
        ));
    }
    if !report.skipped.is_empty() {
        body.push_str("<h2>Skipped pairs</h2>\n");
        let rows: Vec<Vec<String>> = report
            .skipped
            .iter()
            .map(|(n, why)| vec![n.clone(), why.clone()])
            .collect();
        body.push_str(&html::table(&["pair", "why"], &rows));
    }
    let path = dir.join("index.html");
    write_text(&path, &html::page("comir align", &body))?;
    Ok(path)
}
