//! The evaluation runner: every pair × level × method, with resume, a split filter, exported
//! cases and sample cases for pictures.
//!
//! Methods come in as [`Registrar`] trait objects. A method may register learned
//! representations instead of the raw images; the caller supplies them through
//! [`Representations`], so this crate needs no model. A case's representations are computed once
//! and their time is added to every method that registers them.
//!
//! ```no_run
//! use comir_eval::runner::{run, select_pairs, Evaluation, Method, PairFilter, Silent};
//! # fn registrar() -> Box<dyn comir_register::Registrar> { unimplemented!() }
//! let pairs = select_pairs("data/demo".as_ref(), &PairFilter::All, Some(3), &mut Silent)?;
//! let evaluation = Evaluation {
//!     methods: vec![Method { label: "mi".into(), registrar: registrar(), on_representations: false }],
//!     ..Evaluation::new(pairs, "results.csv".into())
//! };
//! let outcome = run(&evaluation, &mut Silent)?;
//! println!("{} cases", outcome.rows.len());
//! # Ok::<(), comir_eval::runner::RunError>(())
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use comir_image::Image;
use comir_register::Registrar;
use comir_transform::Composite2;

use crate::export::CaseExporter;
use crate::{evaluate_case_assessed, find_pairs, write_csv, Case, CaseResult, Pair, Protocol};

/// What can stop an evaluation. (A method's failure on a case does not: it becomes a failed
/// row.)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A protocol setting, or a results file.
    #[error(transparent)]
    Eval(#[from] crate::Error),
    /// The pairs could not be listed.
    #[error(transparent)]
    Data(#[from] comir_data::Error),
    /// An exported case could not be written.
    #[error(transparent)]
    Image(#[from] comir_image::Error),
    /// A pair could not be loaded.
    #[error("loading pair '{pair}'")]
    LoadPair {
        /// The pair's name.
        pair: String,
        /// Why.
        #[source]
        source: comir_data::Error,
    },
    /// An image of a pair is smaller than any method can register.
    #[error(
        "pair '{pair}': {} is {width}×{height}; registration needs at least {min}×{min} pixels",
        path.display()
    )]
    TooSmall {
        /// The pair's name.
        pair: String,
        /// The image.
        path: PathBuf,
        /// Its width.
        width: usize,
        /// Its height.
        height: usize,
        /// The smallest side a method takes.
        min: usize,
    },
    /// An image of a pair is constant.
    #[error("pair '{pair}': {} is constant: there is no structure to register", path.display())]
    Constant {
        /// The pair's name.
        pair: String,
        /// The image.
        path: PathBuf,
    },
    /// A limit of zero pairs.
    #[error("--limit must be at least 1")]
    ZeroLimit,
    /// Every pair of the folder was used to train or validate the model.
    #[error("{}: every pair was used to train the model; evaluate on other pairs", dir.display())]
    AllSeen {
        /// The pairs folder.
        dir: PathBuf,
    },
    /// None of the model's validation pairs is in the folder.
    #[error("{}: none of the model's validation pairs is here", dir.display())]
    NoValidationPairs {
        /// The pairs folder.
        dir: PathBuf,
    },
    /// A folder could not be made.
    #[error("{}: cannot create folder", path.display())]
    CreateFolder {
        /// The folder.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}

/// Which pairs of a folder are evaluated, for a model that has seen some of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PairFilter {
    /// Every pair.
    #[default]
    All,
    /// The pairs not named here: those the model was neither trained nor validated on.
    Unseen(HashSet<String>),
    /// Only the pairs named here: the model's validation pairs.
    Validation(HashSet<String>),
}

/// What an evaluation reports as it goes (a caller draws a progress bar from it). Every method
/// does nothing by default.
pub trait EvalObserver {
    /// A line for the person running the evaluation, e.g. how many pairs a filter left out.
    fn note(&mut self, _line: &str) {}
    /// Called once before the first case with the number of cases (pairs × levels × methods).
    fn started(&mut self, _cases: u64) {}
    /// Called after every case: its new row, or `None` when the row was kept from a resumed
    /// results file.
    fn case_done(&mut self, _row: Option<&CaseResult>) {}
    /// Called once after the last case.
    fn finished(&mut self) {}
}

/// An observer that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;
impl EvalObserver for Silent {}

/// Supplies the images a method registers instead of a case's own: e.g. the learned
/// representations of the fixed and the moving image. Any
/// `Fn(&Image, &Image) -> Result<(Image, Image), String>` is one.
pub trait Representations {
    /// The images to register for `fixed` and `moving`, or why they could not be made (the
    /// case then counts as failed, with this as its status).
    fn represent(&self, fixed: &Image, moving: &Image) -> Result<(Image, Image), String>;
}

impl<F> Representations for F
where
    F: Fn(&Image, &Image) -> Result<(Image, Image), String>,
{
    fn represent(&self, fixed: &Image, moving: &Image) -> Result<(Image, Image), String> {
        self(fixed, moving)
    }
}

/// One method of an evaluation.
pub struct Method {
    /// Its name in the results (e.g. `comir+aamd` for α-AMD on representations).
    pub label: String,
    /// The registration method.
    pub registrar: Box<dyn Registrar>,
    /// Whether it registers the [`Representations`] of the images (else their gray levels).
    pub on_representations: bool,
}

/// Everything an evaluation run needs.
pub struct Evaluation<'a> {
    /// The pairs, in order (see [`select_pairs`]).
    pub pairs: Vec<Pair>,
    /// Levels, seed, border and success threshold.
    pub protocol: Protocol,
    /// The methods; all see the same displaced images.
    pub methods: Vec<Method>,
    /// Results CSV, rewritten (atomically) after every pair.
    pub out: PathBuf,
    /// Keep the rows already in `out` and run only the missing cases.
    pub resume: bool,
    /// Also write every case (images and true transform) to this folder.
    pub export_cases: Option<PathBuf>,
    /// How many cases to keep for pictures (the first method's first pairs at the largest
    /// level).
    pub samples: usize,
    /// The representations for methods with `on_representations`. With them the pairs are
    /// loaded with their channels (a network may take colour); without, as gray images.
    pub representations: Option<&'a dyn Representations>,
    /// Judge every result without the truth (the rows' `confidence` and `flag`).
    pub confidence: bool,
}

impl<'a> Evaluation<'a> {
    /// An evaluation of `pairs` into `out` with the default protocol, no methods yet, no
    /// resume, export, samples or representations, and every result assessed.
    pub fn new(pairs: Vec<Pair>, out: PathBuf) -> Evaluation<'a> {
        Evaluation {
            pairs,
            protocol: Protocol::default(),
            methods: Vec::new(),
            out,
            resume: false,
            export_cases: None,
            samples: 0,
            representations: None,
            confidence: true,
        }
    }
}

/// One evaluated case kept for pictures.
#[derive(Clone, Debug)]
pub struct SampleCase {
    /// Pair name.
    pub pair: String,
    /// Displacement level.
    pub level: u32,
    /// Method whose result is shown.
    pub method: String,
    /// Fixed image (as evaluated).
    pub fixed: Image,
    /// Moving image, displaced.
    pub moving: Image,
    /// Representations of the fixed and moving images, when a model was used.
    pub representations: Option<(Image, Image)>,
    /// The transform found (fixed → moving coordinates); `None` when the method failed.
    pub found: Option<Composite2>,
    /// Corner error of the result, in pixels.
    pub error_px: f64,
    /// Whether it counts as a success.
    pub success: bool,
}

/// What an evaluation returns.
#[derive(Clone, Debug)]
pub struct EvalOutcome {
    /// Every row, those kept from a resumed file first.
    pub rows: Vec<CaseResult>,
    /// The cases kept for pictures.
    pub samples: Vec<SampleCase>,
}

/// The pairs of `dir` that `filter` keeps (saying on `observer` how many it left out), at most
/// the first `limit`.
///
/// # Errors
/// An unreadable folder, a filter that keeps nothing, or a zero limit.
pub fn select_pairs(
    dir: &Path,
    filter: &PairFilter,
    limit: Option<usize>,
    observer: &mut dyn EvalObserver,
) -> Result<Vec<Pair>, RunError> {
    let mut pairs = find_pairs(dir)?;
    let before = pairs.len();
    match filter {
        PairFilter::All => {}
        PairFilter::Unseen(seen) => {
            pairs.retain(|p| !seen.contains(&p.name));
            if before != pairs.len() {
                observer.note(&format!(
                    "skipping {} of {} pairs: the model was trained or validated on them",
                    before - pairs.len(),
                    before
                ));
            }
            if pairs.is_empty() {
                return Err(RunError::AllSeen {
                    dir: dir.to_path_buf(),
                });
            }
        }
        PairFilter::Validation(validation) => {
            pairs.retain(|p| validation.contains(&p.name));
            observer.note(&format!(
                "evaluating the model's {} validation pairs (of {}); its test results are elsewhere",
                pairs.len(),
                before
            ));
            if pairs.is_empty() {
                return Err(RunError::NoValidationPairs {
                    dir: dir.to_path_buf(),
                });
            }
        }
    }
    if let Some(n) = limit {
        if n == 0 {
            return Err(RunError::ZeroLimit);
        }
        pairs.truncate(n);
    }
    Ok(pairs)
}

/// The pairs of `dir`, every one loaded and checked as [`run`] checks them (sizes match, at
/// least [`comir_register::MIN_SIZE`] pixels a side, not constant): for callers about to spend
/// minutes before evaluating.
///
/// # Errors
/// The first pair that cannot be loaded or registered.
pub fn checked_pairs(dir: &Path) -> Result<Vec<Pair>, RunError> {
    let pairs = find_pairs(dir)?;
    for pair in &pairs {
        let (a, b) = pair.load_gray().map_err(|source| RunError::LoadPair {
            pair: pair.name.clone(),
            source,
        })?;
        check_pair(pair, &a, &b)?;
    }
    Ok(pairs)
}

/// Refuses a pair that no method could register — too small or constant — before any work,
/// naming the file (a method error later only marks the case as failed).
fn check_pair(pair: &Pair, a: &Image, b: &Image) -> Result<(), RunError> {
    let min = comir_register::MIN_SIZE;
    for (img, path) in [(a, &pair.a), (b, &pair.b)] {
        if img.width() < min || img.height() < min {
            return Err(RunError::TooSmall {
                pair: pair.name.clone(),
                path: path.clone(),
                width: img.width(),
                height: img.height(),
                min,
            });
        }
        if img.is_constant() {
            return Err(RunError::Constant {
                pair: pair.name.clone(),
                path: path.clone(),
            });
        }
    }
    Ok(())
}

/// A case's representations (or why they could not be made) and the seconds they took.
type Represented = (Result<(Image, Image), String>, f64);

/// Evaluates every method on every pair and level; returns all rows (old and new) and the
/// sample cases. The results file is rewritten after every pair, so a killed run resumes.
///
/// # Errors
/// Invalid protocol settings, an unreadable resumed file, a pair that cannot be loaded or
/// registered at all, or an unwritable output.
pub fn run(
    evaluation: &Evaluation<'_>,
    observer: &mut dyn EvalObserver,
) -> Result<EvalOutcome, RunError> {
    let Evaluation {
        pairs,
        protocol,
        methods,
        out,
        ..
    } = evaluation;
    protocol.validate()?;
    let mut rows: Vec<CaseResult> = if evaluation.resume && out.exists() {
        crate::read_csv(out)?
    } else {
        Vec::new()
    };
    let done: HashSet<(String, u32, String)> = rows
        .iter()
        .map(|r| (r.pair.clone(), r.level, r.method.clone()))
        .collect();
    let mut exporter = evaluation
        .export_cases
        .as_deref()
        .map(CaseExporter::create)
        .transpose()?;
    observer.started((pairs.len() * protocol.levels.len() * methods.len()) as u64);
    let sample_level = protocol.levels.iter().copied().max().unwrap_or(1);
    let mut samples: Vec<SampleCase> = Vec::new();
    for pair in pairs {
        let (a, b) = match evaluation.representations {
            Some(_) => pair.load(),
            None => pair.load_gray(),
        }
        .map_err(|source| RunError::LoadPair {
            pair: pair.name.clone(),
            source,
        })?;
        check_pair(pair, &a, &b)?;
        for &level in &protocol.levels {
            let case = protocol.case(&pair.name, level, &a, &b);
            if let Some(ex) = exporter.as_mut() {
                ex.add(&pair.name, level, &case)?;
            }
            let mut reps: Option<Represented> = None;
            let gray = Case {
                fixed: case.fixed.to_gray(),
                moving: case.moving.to_gray(),
                ..case.clone()
            };
            for method in methods {
                if done.contains(&(pair.name.clone(), level, method.label.clone())) {
                    observer.case_done(None);
                    continue;
                }
                let (r, found, extra) = match evaluation.representations {
                    Some(hook) if method.on_representations => {
                        let (prepared, secs) = reps.get_or_insert_with(|| {
                            let t = std::time::Instant::now();
                            let p = hook.represent(&case.fixed, &case.moving);
                            (p, t.elapsed().as_secs_f64())
                        });
                        let prepared = prepared.clone();
                        let prep = move |_: &Image, _: &Image| prepared.clone();
                        let (r, found) = evaluate_case_assessed(
                            protocol,
                            &pair.name,
                            level,
                            &case,
                            method.registrar.as_ref(),
                            &prep,
                            evaluation.confidence,
                        );
                        (r, found, *secs)
                    }
                    _ => {
                        let identity = |f: &Image, m: &Image| Ok((f.clone(), m.clone()));
                        let (r, found) = evaluate_case_assessed(
                            protocol,
                            &pair.name,
                            level,
                            &gray,
                            method.registrar.as_ref(),
                            &identity,
                            evaluation.confidence,
                        );
                        (r, found, 0.0)
                    }
                };
                // The first method's result on the first pairs at the largest level: pictures.
                let first_method = methods.first().is_some_and(|m| m.label == method.label);
                if first_method && level == sample_level && samples.len() < evaluation.samples {
                    let representations = match &reps {
                        Some((Ok(p), _)) if method.on_representations => Some(p.clone()),
                        _ => None,
                    };
                    samples.push(SampleCase {
                        pair: pair.name.clone(),
                        level,
                        method: method.label.clone(),
                        fixed: case.fixed.clone(),
                        moving: case.moving.clone(),
                        representations,
                        found,
                        error_px: r.error_px,
                        success: r.success,
                    });
                }
                let r = CaseResult {
                    method: method.label.clone(),
                    seconds: r.seconds + extra,
                    ..r
                };
                observer.case_done(Some(&r));
                rows.push(r);
            }
        }
        write_csv(out, &rows)?;
    }
    observer.finished();
    write_csv(out, &rows)?;
    Ok(EvalOutcome { rows, samples })
}

#[cfg(test)]
mod tests {
    use super::*;
    use comir_register::{Outcome, StopReason};
    use std::cell::Cell;

    /// Returns its start: the identity about the centre.
    struct Identity;
    impl Registrar for Identity {
        fn name(&self) -> &'static str {
            "identity"
        }
        fn register(
            &self,
            _: &Image,
            _: &Image,
            init: &comir_transform::Transform2,
        ) -> Result<Outcome, comir_register::Error> {
            Ok(Outcome {
                transform: *init,
                deformation: None,
                metric_value: 0.0,
                iterations: 0,
                stop: StopReason::Converged,
            })
        }
    }

    fn method(label: &str, on_representations: bool) -> Method {
        Method {
            label: label.into(),
            registrar: Box::new(Identity),
            on_representations,
        }
    }

    /// Counts what the runner reports.
    #[derive(Default)]
    struct Counts {
        notes: Vec<String>,
        new: usize,
        kept: usize,
    }
    impl EvalObserver for Counts {
        fn note(&mut self, line: &str) {
            self.notes.push(line.to_string());
        }
        fn case_done(&mut self, row: Option<&CaseResult>) {
            match row {
                Some(_) => self.new += 1,
                None => self.kept += 1,
            }
        }
    }

    #[test]
    fn filters_and_limits_pick_the_pairs() {
        let dir = tempfile::tempdir().expect("tempdir");
        comir_testkit::write_phantom_pairs(dir.path(), 0..4, 32);
        let all = select_pairs(dir.path(), &PairFilter::All, None, &mut Silent).expect("pairs");
        assert_eq!(all.len(), 4);
        let seen: HashSet<String> = [all[0].name.clone()].into();
        let mut counts = Counts::default();
        let unseen = select_pairs(
            dir.path(),
            &PairFilter::Unseen(seen.clone()),
            Some(2),
            &mut counts,
        )
        .expect("unseen");
        assert_eq!(unseen, all[1..3].to_vec());
        assert_eq!(
            counts.notes,
            ["skipping 1 of 4 pairs: the model was trained or validated on them"]
        );
        let validation = select_pairs(dir.path(), &PairFilter::Validation(seen), None, &mut Silent)
            .expect("validation");
        assert_eq!(validation, all[..1].to_vec());
        assert!(matches!(
            select_pairs(dir.path(), &PairFilter::All, Some(0), &mut Silent),
            Err(RunError::ZeroLimit)
        ));
        let every: HashSet<String> = all.iter().map(|p| p.name.clone()).collect();
        assert!(matches!(
            select_pairs(dir.path(), &PairFilter::Unseen(every), None, &mut Silent),
            Err(RunError::AllSeen { .. })
        ));
    }

    #[test]
    fn representations_are_made_once_per_case_and_a_resumed_run_adds_only_missing_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        comir_testkit::write_phantom_pairs(&dir.path().join("pairs"), 0..2, 32);
        let pairs = select_pairs(
            &dir.path().join("pairs"),
            &PairFilter::All,
            None,
            &mut Silent,
        )
        .expect("pairs");
        let out = dir.path().join("results.csv");
        let calls = Cell::new(0);
        let hook = |f: &Image, m: &Image| {
            calls.set(calls.get() + 1);
            Ok((f.to_gray(), m.to_gray()))
        };
        let evaluation = Evaluation {
            protocol: Protocol {
                levels: vec![1, 2],
                ..Protocol::default()
            },
            methods: vec![method("a", true), method("b", true), method("raw", false)],
            samples: 1,
            representations: Some(&hook),
            ..Evaluation::new(pairs.clone(), out.clone())
        };
        let mut counts = Counts::default();
        let first = run(&evaluation, &mut counts).expect("run");
        // 2 pairs × 2 levels × 3 methods; representations once per case.
        assert_eq!((first.rows.len(), counts.new, calls.get()), (12, 12, 4));
        assert_eq!(first.samples.len(), 1);
        assert_eq!(
            (first.samples[0].level, first.samples[0].method.as_str()),
            (2, "a")
        );
        assert!(first.samples[0].representations.is_some());

        // Drop the last pair's rows: a resumed run computes only those.
        let kept: Vec<CaseResult> = first.rows.iter().take(6).cloned().collect();
        crate::write_csv(&out, &kept).expect("write");
        let resumed = Evaluation {
            pairs,
            protocol: evaluation.protocol.clone(),
            methods: vec![method("a", true), method("b", true), method("raw", false)],
            out: out.clone(),
            resume: true,
            export_cases: None,
            samples: 0,
            representations: Some(&hook),
            confidence: true,
        };
        let mut counts = Counts::default();
        let second = run(&resumed, &mut counts).expect("resume");
        assert_eq!((counts.kept, counts.new), (6, 6));
        assert_eq!(calls.get(), 4 + 2);
        let strip = |rows: &[CaseResult]| {
            rows.iter()
                .map(|r| CaseResult {
                    seconds: 0.0,
                    ..r.clone()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&second.rows), strip(&first.rows));
        assert_eq!(
            strip(&crate::read_csv(&out).expect("read")),
            strip(&first.rows)
        );
    }
}
