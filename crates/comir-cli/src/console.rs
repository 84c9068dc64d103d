//! The terminal as the library's console: the account on standard output, notes on standard
//! error, and progress bars on standard error (drawn only when it is a terminal); and the
//! evaluation tables that `eval` and `demo` print.

use comir_pipeline::eval::Evaluated;
use comir_pipeline::{summarize, summarize_confidence, Console};
use indicatif::{ProgressBar, ProgressStyle};

/// Standard output and error.
pub struct Terminal;

impl Console for Terminal {
    fn say(&mut self, line: &str) {
        println!("{line}");
    }

    fn note(&mut self, line: &str) {
        eprintln!("{line}");
    }

    /// A bar over `len` items showing rate and ETA.
    fn bar(&mut self, len: u64, what: &str) -> ProgressBar {
        let pb = ProgressBar::new(len);
        let style = ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        pb.set_style(style);
        pb.set_prefix(what.to_string());
        pb
    }
}

/// Prints where the report went (if one was written) and one table per method, with how well
/// the confidence told successes from failures when there were both.
pub fn print_evaluation(evaluated: &Evaluated) {
    if let Some(page) = &evaluated.report {
        println!("report: {}", page.display());
    }
    for m in &evaluated.labels {
        println!("{}", summarize(m, &evaluated.rows));
        if let Some(c) = summarize_confidence(m, &evaluated.rows) {
            println!("{c}\n");
        }
    }
}
