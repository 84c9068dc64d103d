//! Registration evaluation with the MultiRegEval protocol (Lu et al., PLOS ONE 2022).
//!
//! For each aligned pair (A, B) and each transformation level L ∈ {1, 2, 3, 4}, a random rigid
//! transform G is drawn — rotation in ±[5(L−1), 5L)°, translations in ±[s(L−1), sL) px with
//! s = 7·w/300 — and applied to B about its centre c = (w/2 − 0.5, h/2 − 0.5):
//! `I_init(p) = B(G(p))`, `G(p) = R(θ)(p + t − c) + c`. B (moving) is then registered to A (fixed).
//! The error is the mean distance between the true and the recovered positions of the four corners
//! (0,0), (w,0), (w,h), (0,h); a registration succeeds when the error is at most 2 % of the width.
//!
//! Cases depend only on the pair name, the level and the seed, never on the method, so every
//! method sees the same displaced images.
//!
//! [`runner`] evaluates methods on every pair × level (resumably, with a split filter, exported
//! cases and sample cases for pictures); a caller supplies learned representations through
//! [`Representations`].

mod protocol;
mod results;

pub use comir_data::{find_pairs, Pair};
pub use protocol::{
    draw_displacement, error_of, make_case, Case, Displacement, DisplacementKind, Protocol,
};
pub use results::{
    read_csv, summarize, summarize_confidence, write_csv, CaseResult, ConfidenceSummary,
    LevelSummary, Summary,
};

use std::path::PathBuf;

/// Errors of the evaluation layer; each names the file or pair involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A folder could not be listed, or a results file read or written.
    #[error("{path}: {error}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// A results file could not be written.
    #[error(transparent)]
    Image(#[from] comir_image::Error),
    /// The pairs could not be listed or loaded.
    #[error(transparent)]
    Data(#[from] comir_data::Error),
    /// A results CSV is malformed.
    #[error("{path}: {reason}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A protocol setting is out of range.
    #[error("invalid setting: {0}")]
    InvalidConfig(String),
}

use comir_image::Image;
use comir_register::Registrar;
use comir_transform::Composite2;

/// Turns a case's two images into what the method registers (e.g. learned representations).
/// The default is the identity.
pub type Prepare<'a> = dyn Fn(&Image, &Image) -> Result<(Image, Image), String> + Sync + 'a;

/// Registers one case and scores it. A method error becomes a failed row whose `status` says why.
pub fn evaluate_case(
    protocol: &Protocol,
    pair: &str,
    level: u32,
    case: &Case,
    registrar: &dyn Registrar,
    prepare: &Prepare<'_>,
) -> CaseResult {
    evaluate_case_with_transform(protocol, pair, level, case, registrar, prepare).0
}

/// [`evaluate_case`], also returning the transform found (fixed → moving coordinates), `None`
/// when the method failed: for pictures of the result. The row is not assessed (no confidence).
pub fn evaluate_case_with_transform(
    protocol: &Protocol,
    pair: &str,
    level: u32,
    case: &Case,
    registrar: &dyn Registrar,
    prepare: &Prepare<'_>,
) -> (CaseResult, Option<Composite2>) {
    evaluate_case_assessed(protocol, pair, level, case, registrar, prepare, false)
}

/// [`evaluate_case_with_transform`], and with `assess` the row's `confidence` and `flag` from
/// [`comir_confidence::assess`] on the case's images, also when the method registered their
/// representations (confidence 0, `doubtful`, when it failed). The assessment's time is not part
/// of `seconds`.
pub fn evaluate_case_assessed(
    protocol: &Protocol,
    pair: &str,
    level: u32,
    case: &Case,
    registrar: &dyn Registrar,
    prepare: &Prepare<'_>,
    assess: bool,
) -> (CaseResult, Option<Composite2>) {
    let start = std::time::Instant::now();
    let prepared = prepare(&case.fixed, &case.moving);
    let outcome = prepared
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|(fixed, moving)| {
            let init = comir_register::centered_identity(fixed, moving);
            registrar
                .register(fixed, moving, &init)
                .map_err(|e| e.to_string())
        });
    let seconds = start.elapsed().as_secs_f64();
    let assessment = match (&prepared, &outcome) {
        _ if !assess => None,
        (Ok(_), Ok(o)) => {
            let a = comir_confidence::assess(&case.fixed, &case.moving, &o.transform);
            // A folding deformation is doubtful whatever its linear part looks like.
            let flag = match o.composite().folds() {
                true => comir_confidence::Flag::Doubtful,
                false => a.flag,
            };
            Some((a.confidence, flag))
        }
        _ => Some((0.0, comir_confidence::Flag::Doubtful)),
    };
    let w = case.fixed.width() as f64;
    let h = case.fixed.height() as f64;
    let corner = |t: &Composite2| comir_transform::corner_error(t, &case.truth, w, h);
    let (error_px, found, metric, status) = match outcome {
        Ok(o) => (
            case.error(&o.composite()),
            Some(o.composite()),
            o.metric_value,
            "ok".to_string(),
        ),
        Err(e) => (f64::NAN, None, f64::NAN, e),
    };
    let row = CaseResult {
        pair: pair.to_string(),
        level,
        method: registrar.name().to_string(),
        error_px,
        width: case.fixed.width(),
        success: error_px <= protocol.success_frac * w,
        seconds,
        initial_error_px: case.initial_error_px,
        true_angle_deg: case.displacement.angle_deg,
        true_tx: case.displacement.translation[0],
        true_ty: case.displacement.translation[1],
        found_angle_deg: found
            .as_ref()
            .map_or(f64::NAN, |t| t.linear.angle_rad().to_degrees()),
        metric_value: metric,
        status,
        confidence: assessment.map(|(c, _)| c),
        flag: assessment.map(|(_, f)| f.as_str().to_string()),
        corner_error_px: Some(found.as_ref().map_or(f64::NAN, corner)),
    };
    let found = found.filter(|t| t.linear.angle_rad().is_finite());
    (row, found)
}

mod export;
pub mod runner;

pub use export::CaseExporter;
pub use runner::{EvalObserver, Representations, SampleCase};

#[cfg(test)]
mod tests {
    use super::*;
    use comir_register::{Outcome, StopReason};
    use comir_transform::Transform2;

    /// An oracle that returns the truth it was told: the protocol must score it 0.
    struct Oracle(Composite2);
    impl Registrar for Oracle {
        fn name(&self) -> &'static str {
            "oracle"
        }
        fn register(
            &self,
            _: &Image,
            _: &Image,
            _: &Transform2,
        ) -> Result<Outcome, comir_register::Error> {
            Ok(Outcome {
                transform: self.0.linear,
                deformation: self.0.deformation.clone(),
                metric_value: 0.0,
                iterations: 0,
                stop: StopReason::Converged,
            })
        }
    }

    #[test]
    fn perfect_registration_scores_zero_and_identity_scores_the_displacement() {
        let (a, b) = comir_testkit::phantom_pair(64, 64, 3);
        let p = Protocol::default();
        let case = p.case("x.png", 3, &a, &b);
        let id: &Prepare<'_> = &|f: &Image, m: &Image| Ok((f.clone(), m.clone()));
        let r = evaluate_case(&p, "x.png", 3, &case, &Oracle(case.truth.clone()), id);
        assert!(r.error_px < 1e-9 && r.success);
        let r = evaluate_case(
            &p,
            "x.png",
            3,
            &case,
            &Oracle(Transform2::from(comir_transform::Rigid2::identity(a.center())).into()),
            id,
        );
        assert!((r.error_px - case.initial_error_px).abs() < 1e-9);
        assert!(!r.success);
        // For a rigid displacement the corner error is the error.
        assert_eq!(r.corner_error_px, Some(r.error_px));
    }
}
