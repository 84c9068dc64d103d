//! The common ground of comir's registration methods.
//!
//! A registration method (α-AMD, Mattes mutual information, feature matching, global FFT search)
//! lives in its own crate and implements [`Registrar`]: given a fixed image, a moving image and an
//! initial transform, it returns an [`Outcome`]. Everything above (evaluation, the CLI) talks to
//! methods only through this trait, so each one can be replaced on its own, as in ITK and elastix.
//!
//! Conventions shared by every method:
//! * images are single-channel [`Image`]s; the transform maps fixed to moving points
//!   ([`Transform2`], see `comir-transform`). A method estimates one [`TransformKind`] (its
//!   [`Registrar::kind`]) and starts from an initial transform of that kind or a simpler one, which
//!   it lifts (a rigid start for an affine method);
//! * [`Outcome::metric_value`] is "lower is better" for every method (MI is reported negated), so
//!   [`MultiStart`] can pick the best start without knowing the method;
//! * same inputs and seed give the same result, whatever the number of threads.

pub mod lbfgs;

use comir_image::Image;
use comir_transform::{BSpline2, Composite2, Rigid2, Transform2, TransformKind};

/// Why a method stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The optimiser's convergence test passed.
    Converged,
    /// The iteration budget ran out.
    MaxIterations,
    /// An exhaustive search finished.
    SearchComplete,
    /// Too few sample points fell inside the moving image.
    TooFewSamples,
}

/// The result of one registration.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Fixed-to-moving transform: the whole result of a linear method, the linear part of a
    /// deformable one.
    pub transform: Transform2,
    /// The B-spline deformation applied before `transform` (see
    /// [`comir_transform::Composite2`]); `None` for linear methods.
    pub deformation: Option<BSpline2>,
    /// The method's cost at the result; lower is better.
    pub metric_value: f64,
    /// Optimiser iterations (or candidates evaluated) in total.
    pub iterations: usize,
    /// Why it stopped.
    pub stop: StopReason,
}

impl Outcome {
    /// The full fixed-to-moving transform.
    pub fn composite(&self) -> Composite2 {
        Composite2 {
            linear: self.transform,
            deformation: self.deformation.clone(),
        }
    }
}

/// Errors of registration methods.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An image is too small to register.
    #[error(
        "the {which} image is {width}×{height}; registration needs at least {min}×{min} pixels"
    )]
    TooSmall {
        /// `fixed` or `moving`.
        which: &'static str,
        /// Its width.
        width: usize,
        /// Its height.
        height: usize,
        /// The smallest size accepted.
        min: usize,
    },
    /// An image has the same value everywhere: there is nothing to align.
    #[error("the {which} image is constant: there is no structure to register")]
    Constant {
        /// `fixed` or `moving`.
        which: &'static str,
    },
    /// An image holds NaN or infinite values.
    #[error("the {which} image contains NaN or infinite values")]
    NonFinite {
        /// `fixed` or `moving`.
        which: &'static str,
    },
    /// An image has more than one channel where one is needed.
    #[error("the {which} image has {channels} channels; convert it to gray first")]
    NotGray {
        /// `fixed` or `moving`.
        which: &'static str,
        /// Its channel count.
        channels: usize,
    },
    /// A configuration value is out of range.
    #[error("invalid setting: {0}")]
    InvalidConfig(String),
    /// The method ran but could not produce a transform (e.g. too few feature matches).
    #[error("{method} failed: {reason}")]
    Failed {
        /// The method.
        method: &'static str,
        /// Why.
        reason: String,
    },
}

/// The smallest image side any method accepts.
pub const MIN_SIZE: usize = 16;

/// Checks that both images can be registered: single channel, at least `min`×`min` pixels,
/// finite, not constant.
///
/// # Errors
/// The first problem found, naming the image.
pub fn check_inputs(fixed: &Image, moving: &Image, min: usize) -> Result<(), Error> {
    for (which, img) in [("fixed", fixed), ("moving", moving)] {
        if img.channels() != 1 {
            return Err(Error::NotGray {
                which,
                channels: img.channels(),
            });
        }
        if img.width() < min || img.height() < min {
            return Err(Error::TooSmall {
                which,
                width: img.width(),
                height: img.height(),
                min,
            });
        }
        if !img.is_finite() {
            return Err(Error::NonFinite { which });
        }
        if img.is_constant() {
            return Err(Error::Constant { which });
        }
    }
    Ok(())
}

/// The default starting transform: no rotation, image centres aligned, rotation about the fixed
/// image's centre.
pub fn centered_identity(fixed: &Image, moving: &Image) -> Transform2 {
    Transform2::Rigid(centered_rigid(fixed, moving))
}

/// [`centered_identity`] as a [`Rigid2`], for the methods' rigid-only entry points.
pub fn centered_rigid(fixed: &Image, moving: &Image) -> Rigid2 {
    let (cf, cm) = (fixed.center(), moving.center());
    Rigid2::new(0.0, [cm[0] - cf[0], cm[1] - cf[1]], cf)
}

/// A registration method.
pub trait Registrar: Send + Sync {
    /// Short name, as used on the command line (`aamd`, `mi`, ...).
    fn name(&self) -> &'static str;

    /// The kind of transform it estimates (rigid unless the method says otherwise).
    fn kind(&self) -> TransformKind {
        TransformKind::Rigid
    }

    /// Registers `moving` to `fixed`, starting from `init` (fixed-to-moving).
    ///
    /// # Errors
    /// Unusable inputs (see [`check_inputs`]), a start more flexible than the method's kind (see
    /// [`start_as`]) or a method-specific failure.
    fn register(&self, fixed: &Image, moving: &Image, init: &Transform2) -> Result<Outcome, Error>;
}

impl<R: Registrar + ?Sized> Registrar for Box<R> {
    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn kind(&self) -> TransformKind {
        (**self).kind()
    }

    fn register(&self, fixed: &Image, moving: &Image, init: &Transform2) -> Result<Outcome, Error> {
        (**self).register(fixed, moving, init)
    }
}

/// The start `init` as a transform of `kind`, for a method that estimates `kind`: the same map
/// when `kind` can express it (rigid ⊂ similarity ⊂ affine).
///
/// # Errors
/// [`Error::InvalidConfig`] when `init` is more flexible than `kind` (an affine start for a rigid
/// method), since dropping its scale or shear would silently change the start.
pub fn start_as(init: &Transform2, kind: TransformKind, method: &str) -> Result<Transform2, Error> {
    init.lift(kind).ok_or_else(|| {
        Error::InvalidConfig(format!(
            "{method} estimates {kind} transforms and cannot start from the {} transform it was \
             given",
            init.kind()
        ))
    })
}

/// The start `init` as a rigid transform, for the methods that estimate rigid transforms only.
///
/// # Errors
/// As [`start_as`].
pub fn rigid_start(init: &Transform2, method: &str) -> Result<Rigid2, Error> {
    match start_as(init, TransformKind::Rigid, method)? {
        Transform2::Rigid(r) => Ok(r),
        _ => unreachable!("lift to rigid gives a rigid transform"),
    }
}

/// Runs a method from several initial rotations (about the fixed centre) and keeps the start with
/// the lowest final metric value. The starts run in parallel; ties go to the earlier start, so the
/// result does not depend on the number of threads.
pub struct MultiStart<R> {
    /// The method run from each start.
    pub inner: R,
    /// Rotation offsets in radians added to the initial transform.
    pub angles_rad: Vec<f64>,
}

impl<R: Registrar> MultiStart<R> {
    /// The MultiRegEval / α-AMD reference starts: 0 and ±0.4 rad.
    pub fn reference(inner: R) -> MultiStart<R> {
        MultiStart {
            inner,
            angles_rad: vec![0.0, -0.4, 0.4],
        }
    }
}

impl<R: Registrar> Registrar for MultiStart<R> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn kind(&self) -> TransformKind {
        self.inner.kind()
    }

    fn register(&self, fixed: &Image, moving: &Image, init: &Transform2) -> Result<Outcome, Error> {
        use rayon::prelude::*;
        let results: Vec<Result<Outcome, Error>> = self
            .angles_rad
            .par_iter()
            .map(|&a| self.inner.register(fixed, moving, &init.rotated(a)))
            .collect();
        let mut best: Option<Outcome> = None;
        let mut first_err = None;
        let mut total_iters = 0;
        for r in results {
            match r {
                Ok(o) => {
                    total_iters += o.iterations;
                    if best
                        .as_ref()
                        .is_none_or(|b| o.metric_value < b.metric_value)
                    {
                        best = Some(o);
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match (best, first_err) {
            (Some(mut b), _) => {
                b.iterations = total_iters;
                Ok(b)
            }
            (None, Some(e)) => Err(e),
            (None, None) => Err(Error::InvalidConfig(
                "multi-start needs at least one angle".into(),
            )),
        }
    }
}

/// Runs `first` (typically a global search), then `then` (a local optimiser) starting from the
/// first result. The outcome is the second method's; iterations are added up.
pub struct Chained<A, B> {
    /// The method that finds the starting point.
    pub first: A,
    /// The method that refines it.
    pub then: B,
}

impl<A: Registrar, B: Registrar> Registrar for Chained<A, B> {
    fn name(&self) -> &'static str {
        self.then.name()
    }

    fn kind(&self) -> TransformKind {
        self.then.kind()
    }

    fn register(&self, fixed: &Image, moving: &Image, init: &Transform2) -> Result<Outcome, Error> {
        let start = self.first.register(fixed, moving, init)?;
        let mut out = self.then.register(fixed, moving, &start.transform)?;
        out.iterations += start.iterations;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake method whose cost is the distance of the start angle from 0.35 rad.
    struct Bowl;
    impl Registrar for Bowl {
        fn name(&self) -> &'static str {
            "bowl"
        }
        fn register(&self, _: &Image, _: &Image, init: &Transform2) -> Result<Outcome, Error> {
            let angle = rigid_start(init, "bowl")?.angle_rad;
            Ok(Outcome {
                transform: *init,
                deformation: None,
                metric_value: (angle - 0.35).abs(),
                iterations: 1,
                stop: StopReason::Converged,
            })
        }
    }

    #[test]
    fn multi_start_keeps_the_lowest_cost() {
        let img = Image::from_fn(20, 20, |x, _| x as f32);
        let ms = MultiStart::reference(Bowl);
        let o = ms
            .register(&img, &img, &centered_identity(&img, &img))
            .expect("ok");
        assert!((o.transform.as_rigid().expect("rigid").angle_rad - 0.4).abs() < 1e-12);
        assert_eq!(o.iterations, 3);
    }

    #[test]
    fn chained_starts_the_second_method_where_the_first_ended() {
        struct Jump;
        impl Registrar for Jump {
            fn name(&self) -> &'static str {
                "jump"
            }
            fn register(&self, _: &Image, _: &Image, init: &Transform2) -> Result<Outcome, Error> {
                let mut t = rigid_start(init, "jump")?;
                t.angle_rad = 0.3;
                Ok(Outcome {
                    transform: t.into(),
                    deformation: None,
                    metric_value: 9.0,
                    iterations: 5,
                    stop: StopReason::SearchComplete,
                })
            }
        }
        let img = Image::from_fn(20, 20, |x, _| x as f32);
        let c = Chained {
            first: Jump,
            then: Bowl,
        };
        let o = c
            .register(&img, &img, &centered_identity(&img, &img))
            .expect("ok");
        assert_eq!(c.name(), "bowl");
        assert!((o.metric_value - 0.05).abs() < 1e-12);
        assert_eq!(o.iterations, 6);
    }

    #[test]
    fn bad_inputs_are_named() {
        let good = Image::from_fn(20, 20, |x, y| (x * y) as f32);
        let tiny = Image::from_fn(1, 1, |_, _| 0.0);
        let flat = Image::from_fn(20, 20, |_, _| 3.0);
        let e = check_inputs(&good, &tiny, MIN_SIZE).expect_err("tiny");
        assert!(e.to_string().contains("moving image is 1×1"), "{e}");
        let e = check_inputs(&flat, &good, MIN_SIZE).expect_err("flat");
        assert!(e.to_string().contains("fixed image is constant"), "{e}");
        check_inputs(&good, &good, MIN_SIZE).expect("fine");
    }

    #[test]
    fn centered_identity_aligns_centres() {
        let f = Image::zeros(21, 11, 1);
        let m = Image::zeros(31, 41, 1);
        let t = centered_identity(&f, &m);
        assert_eq!(t.apply(f.center()), m.center());
    }

    #[test]
    fn starts_lift_up_but_never_down() {
        let img = Image::from_fn(20, 20, |x, _| x as f32);
        let rigid = centered_identity(&img, &img);
        let affine = start_as(&rigid, TransformKind::Affine, "mi").expect("lift");
        assert_eq!(affine.kind(), TransformKind::Affine);
        let e = rigid_start(&affine, "aamd").expect_err("down");
        assert!(
            e.to_string()
                .contains("aamd estimates rigid transforms and cannot start from the affine"),
            "{e}"
        );
    }
}
