//! The library entry points behind each `comir` command: what the command-line tool calls, and
//! what a Python binding would call. Each entry point takes a plain options struct and a
//! [`Console`] (where its account of the run goes) and returns what it did; the caller prints.
//!
//! | command | entry point |
//! | --- | --- |
//! | `comir align` | [`align::align`] |
//! | `comir register` | [`register::register_pair`], [`batch::register_shard`], [`batch::merge`] |
//! | `comir eval` | [`eval::evaluate`] |
//! | `comir train` | [`train::train`] |
//! | `comir represent` | [`represent::represent_file`] |
//! | `comir analyze` | [`analyze::analyze`] |
//! | `comir experiment` | [`experiment::run_experiment`] |
//! | `comir demo` | [`demo::run_demo`] |
//! | `comir import-torch` | [`import_torch::import_torch`] |
//!
//! This crate is where several layers meet: registration methods built from their names and a
//! TOML config ([`methods`]), a trained model loaded to represent images for registration
//! ([`model`]), and the flows that train, then evaluate, then analyse. The layers themselves
//! (`comir-eval`, `comir-analysis`, `comir-report`, …) know nothing of each other's inputs;
//! nothing below depends on this crate. Errors are [`anyhow`] errors whose chain names the file
//! or pair involved.

pub mod align;
pub mod analyze;
pub mod batch;
pub mod bundled;
pub mod demo;
pub mod device;
pub mod eval;
pub mod experiment;
pub mod import_torch;
pub mod methods;
pub mod model;
pub mod points;
pub mod register;
pub mod represent;
pub mod select;
pub mod stages;
pub mod train;

use std::path::Path;

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use serde::Serialize;

pub use comir_eval::{
    summarize, summarize_confidence, CaseResult, ConfidenceSummary, DisplacementKind, Summary,
};
pub use comir_image::ops::Border;
pub use comir_model::loss::Critic;
pub use comir_represent::Modality;
pub use comir_train::run::{Preset, RunSummary};
pub use comir_train::BottleneckMode;
pub use methods::{MethodName, MethodsConfig};
pub use stages::TransformStages;

/// Where a run's account goes: lines for the person who started it, side notes, and progress
/// bars. The command-line tool prints lines on standard output, notes on standard error, and
/// draws bars on a terminal.
pub trait Console {
    /// One line of the run's account (what it does, what it found).
    fn say(&mut self, line: &str);
    /// A side note that does not belong in the account: a row that failed and was left out, a
    /// training checkpoint when no bar is drawn.
    fn note(&mut self, line: &str);
    /// A progress bar over `len` steps named `what`. The default draws nothing.
    fn bar(&mut self, len: u64, what: &str) -> ProgressBar {
        let _ = (len, what);
        ProgressBar::hidden()
    }
}

/// A console that drops everything and draws no bars.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quiet;

impl Console for Quiet {
    fn say(&mut self, _line: &str) {}
    fn note(&mut self, _line: &str) {}
}

/// Writes `rows` as CSV (a header from the first row's field names) to `path`, atomically.
///
/// # Errors
/// A row that cannot be serialised, or an unwritable file (named).
pub fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    comir_fs::write_atomically(path, &bytes).with_context(|| format!("{}", path.display()))
}
