//! The tables of a study (an experiment grid): one row per cell and method, and the Markdown
//! table of success rates as mean ± std over seeds.

use serde::{Deserialize, Serialize};

/// One cell's result for one method: a row of the study's `results.csv` (and of a cell's
/// `cell.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    /// Dataset name.
    pub dataset: String,
    /// Bottleneck-supervision variant.
    pub variant: String,
    /// Similarity critic.
    pub critic: String,
    /// Training seed.
    pub seed: u64,
    /// Training steps done.
    pub steps: usize,
    /// Method, as named in the evaluation results.
    pub method: String,
    /// Cases evaluated.
    pub cases: usize,
    /// Successful cases.
    pub successes: usize,
    /// `successes / cases` (0 without cases).
    pub rate: f64,
}

/// Mean and sample standard deviation (0 for a single value).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// The Markdown table: success rate (mean ± std over seeds) per dataset × variant × critic ×
/// method, sorted by them.
pub fn markdown(rows: &[CellResult]) -> String {
    let mut keys: Vec<(String, String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r.dataset.clone(),
                r.variant.clone(),
                r.critic.clone(),
                r.method.clone(),
            )
        })
        .collect();
    keys.sort();
    keys.dedup();
    let mut out = String::from(
        "| dataset | variant | critic | method | success % (mean ± std) | seeds | cases |\n|---|---|---|---|---|---|---|\n",
    );
    for (d, v, c, m) in keys {
        let cell: Vec<&CellResult> = rows
            .iter()
            .filter(|r| r.dataset == d && r.variant == v && r.critic == c && r.method == m)
            .collect();
        let rates: Vec<f64> = cell.iter().map(|r| 100.0 * r.rate).collect();
        let (mean, std) = mean_std(&rates);
        out.push_str(&format!(
            "| {d} | {v} | {c} | {m} | {mean:.1} ± {std:.1} | {} | {} |\n",
            cell.len(),
            cell.iter().map(|r| r.cases).sum::<usize>()
        ));
    }
    out
}

/// A Markdown table parsed back into its header and rows of cells (the separator line
/// dropped): the study report shows the same table as `results.md`.
pub fn parse_markdown(md: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = md
        .lines()
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|r| !r.iter().all(|c| c.chars().all(|ch| ch == '-')));
    let header = lines.next().unwrap_or_default();
    (header, lines.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_averages_over_seeds() {
        let row = |seed, rate| CellResult {
            dataset: "d".into(),
            variant: "off".into(),
            critic: "mse".into(),
            seed,
            steps: 1,
            method: "comir+aamd".into(),
            cases: 4,
            successes: 0,
            rate,
        };
        let t = markdown(&[row(0, 0.5), row(1, 1.0), row(2, 0.75)]);
        // mean 75, sample std 25
        assert!(
            t.contains("| d | off | mse | comir+aamd | 75.0 ± 25.0 | 3 | 12 |"),
            "{t}"
        );
    }
}
