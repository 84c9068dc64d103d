//! A linear transform composed with an optional B-spline deformation: what a registration returns.
//!
//! ```text
//! T(p) = L(B(p)),   B(p) = p + d(p)   (or T = L when there is no deformation)
//! ```
//!
//! The deformation `B` lives on the **fixed** frame (its control grid covers the fixed image) and
//! the linear transform `L` carries the result on to the moving image. This is ITK's
//! `CompositeTransform` holding `[L, B]`: ITK applies the transform added last first, so a
//! composite file lists `L` and then `B` and SimpleITK maps points exactly as [`Composite2::apply`]
//! does. elastix builds the same chain when a B-spline parameter map follows an affine one.

use crate::bspline::BSpline2;
use crate::{PointMap, Transform2};

/// `T = L ∘ B` (see the [module documentation](self)).
#[derive(Clone, Debug, PartialEq)]
pub struct Composite2 {
    /// The linear part `L`, applied last.
    pub linear: Transform2,
    /// The deformation `B` on the fixed frame, applied first; `None` for a linear result.
    pub deformation: Option<BSpline2>,
}

/// Fixed-point iterations of [`Composite2::inverse_apply`] for the deformation.
const INVERSE_ITERATIONS: usize = 100;

/// Residual (pixels) at which [`Composite2::inverse_apply`] stops iterating.
const INVERSE_TOLERANCE: f64 = 1e-6;

impl Composite2 {
    /// A linear transform without deformation.
    pub fn linear(t: Transform2) -> Composite2 {
        Composite2 {
            linear: t,
            deformation: None,
        }
    }

    /// The kind written in files and tables: `bspline` with a deformation, otherwise the linear
    /// kind (`rigid`, `similarity`, `affine`).
    pub fn kind_name(&self) -> &'static str {
        if self.deformation.is_some() {
            "bspline"
        } else {
            self.linear.kind().name()
        }
    }

    /// Maps a fixed point to the moving image.
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        let q = match &self.deformation {
            Some(b) => b.apply(p),
            None => p,
        };
        self.linear.apply(q)
    }

    /// Maps a moving point back to the fixed image, with the residual `|T(p) − q|` in pixels of
    /// the point found (0 up to rounding for a linear transform; the deformation is inverted by a
    /// fixed-point iteration, which converges when the field does not fold). `None` when the
    /// linear part is singular.
    pub fn inverse_apply(&self, q: [f64; 2]) -> Option<([f64; 2], f64)> {
        let r = self.linear.inverse()?.apply(q);
        let p = match &self.deformation {
            Some(b) => b.inverse_apply(r, INVERSE_ITERATIONS, INVERSE_TOLERANCE).0,
            None => r,
        };
        let back = self.apply(p);
        Some((p, (back[0] - q[0]).hypot(back[1] - q[1])))
    }

    /// The smallest Jacobian determinant of the deformation over its domain, sampled every
    /// `step` pixels (1 without a deformation). At or below 0 the warp folds: some fixed
    /// neighbourhoods map onto others, which no physical deformation of a section does.
    pub fn min_deformation_jacobian(&self, step: usize) -> f64 {
        self.deformation
            .as_ref()
            .map_or(1.0, |b| b.min_jacobian_determinant(step))
    }

    /// Whether the deformation folds: its Jacobian determinant reaches 0 somewhere on the fixed
    /// image (checked every 2 pixels), so two fixed neighbourhoods map onto one, which no
    /// section deformation does.
    pub fn folds(&self) -> bool {
        self.min_deformation_jacobian(2) <= 0.0
    }

    /// The ITK `.tfm` text: a single linear transform, or a `CompositeTransform_double_2_2` of the
    /// linear transform and the B-spline.
    pub fn itk_tfm_text(&self) -> String {
        let Some(b) = &self.deformation else {
            return crate::itk_tfm_text(&self.linear);
        };
        let linear = crate::itk_tfm_text(&self.linear);
        let linear_block = linear
            .split_once("#Transform 0\n")
            .map_or(linear.as_str(), |(_, block)| block);
        format!(
            "#Insight Transform File V1.0\n#Transform 0\nTransform: CompositeTransform_double_2_2\n\
             #Transform 1\n{linear_block}#Transform 2\n{}",
            b.itk_tfm_block()
        )
    }
}

impl From<Transform2> for Composite2 {
    fn from(t: Transform2) -> Composite2 {
        Composite2::linear(t)
    }
}

impl PointMap for Composite2 {
    fn map_point(&self, p: [f64; 2]) -> [f64; 2] {
        self.apply(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Affine2, Rigid2};

    fn composite() -> Composite2 {
        let linear = Transform2::Affine(Affine2 {
            matrix: [[1.07, 0.05], [-0.03, 0.93]],
            translation: [4.0, -2.5],
            center: [30.0, 22.0],
        });
        let field = BSpline2::random_smooth(61, 45, 12.0, 2.0, 3).expect("field");
        Composite2 {
            linear,
            deformation: Some(field),
        }
    }

    #[test]
    fn applies_the_deformation_first_then_the_linear_part() {
        let c = composite();
        let b = c.deformation.clone().expect("field");
        for p in [[3.0, 4.0], [30.5, 22.25], [59.0, 43.0]] {
            let expected = c.linear.apply(b.apply(p));
            assert_eq!(c.apply(p), expected);
            // Not the other order: the field is not a translation.
            let other = b.apply(c.linear.apply(p));
            assert!((other[0] - expected[0]).hypot(other[1] - expected[1]) > 1e-6);
        }
        assert_eq!(c.kind_name(), "bspline");
        let lin = Composite2::linear(Transform2::Rigid(Rigid2::new(0.1, [1.0, 2.0], [5.0, 5.0])));
        assert_eq!(lin.kind_name(), "rigid");
        assert_eq!(lin.min_deformation_jacobian(1), 1.0);
    }

    #[test]
    fn a_gentle_field_does_not_fold_and_a_wild_one_does() {
        let gentle = composite();
        assert!(!gentle.folds());
        assert!(gentle.min_deformation_jacobian(2) > 0.5);
        // 12 px of displacement over a 12 px grid tears the image.
        let wild = Composite2 {
            linear: gentle.linear,
            deformation: Some(BSpline2::random_smooth(61, 45, 12.0, 12.0, 3).expect("field")),
        };
        assert!(wild.folds(), "min det {}", wild.min_deformation_jacobian(2));
        assert!(!Composite2::linear(gentle.linear).folds());
    }

    #[test]
    fn inverse_apply_returns_the_fixed_point_with_its_residual() {
        let c = composite();
        for p in [[10.0, 10.0], [31.3, 20.7], [50.0, 40.0]] {
            let q = c.apply(p);
            let (back, residual) = c.inverse_apply(q).expect("invertible");
            assert!(
                (back[0] - p[0]).hypot(back[1] - p[1]) < 1e-5,
                "{back:?} {p:?}"
            );
            assert!(residual < 1e-5, "{residual}");
        }
    }

    #[test]
    fn the_composite_tfm_lists_the_linear_transform_then_the_bspline() {
        let c = composite();
        let text = c.itk_tfm_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[2], "Transform: CompositeTransform_double_2_2");
        assert_eq!(lines[3], "#Transform 1");
        assert_eq!(lines[4], "Transform: AffineTransform_double_2_2");
        assert_eq!(lines[7], "#Transform 2");
        assert_eq!(lines[8], "Transform: BSplineTransform_double_2_2");
        let back = crate::parse_itk_composite(&text, "c.tfm").expect("parse");
        for p in [[3.0, 4.0], [30.5, 22.25]] {
            let (a, b) = (c.apply(p), back.apply(p));
            assert!((a[0] - b[0]).hypot(a[1] - b[1]) < 1e-12);
        }
    }
}
