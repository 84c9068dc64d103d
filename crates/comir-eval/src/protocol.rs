use comir_image::ops::{warp, Border};
use comir_image::Image;
use comir_transform::{
    corner_error, dense_error, Affine2, BSpline2, Composite2, Rigid2, Transform2,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::Error;

/// Settings of the protocol.
#[derive(Clone, Debug, PartialEq)]
pub struct Protocol {
    /// Transformation levels to run (1..=4 in MultiRegEval; higher levels extend the ranges).
    pub levels: Vec<u32>,
    /// Seed of the random displacements.
    pub seed: u64,
    /// Rotation step per level in degrees (5 in MultiRegEval).
    pub rotation_step_deg: f64,
    /// Translation step per level as a fraction of the width (7/300 in MultiRegEval).
    pub translation_step_frac: f64,
    /// Success threshold as a fraction of the width (0.02).
    pub success_frac: f64,
    /// How the displaced image is filled outside B: MultiRegEval reflects whole tiles.
    pub border: Border,
    /// Which displacements are drawn: rigid (MultiRegEval's), or affine on top of them.
    pub displacement: DisplacementKind,
}

/// The family of displacements of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DisplacementKind {
    /// MultiRegEval's rotation and translation.
    #[default]
    Rigid,
    /// The rigid draw, plus per-axis scales and a shear, each of magnitude in
    /// `[2.5(L − 1), 2.5L) %` at level L with a random sign.
    Affine,
    /// The affine draw, plus a smooth random deformation ([`BSpline2::random_smooth`], control
    /// points a quarter of the width apart) whose largest displacement is L % of the width.
    Elastic,
}

impl DisplacementKind {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DisplacementKind::Rigid => "rigid",
            DisplacementKind::Affine => "affine",
            DisplacementKind::Elastic => "elastic",
        }
    }
}

impl Default for Protocol {
    fn default() -> Protocol {
        Protocol {
            levels: vec![1, 2, 3, 4],
            seed: 0,
            rotation_step_deg: 5.0,
            translation_step_frac: 7.0 / 300.0,
            success_frac: 0.02,
            border: Border::Reflect,
            displacement: DisplacementKind::Rigid,
        }
    }
}

impl Protocol {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for empty or zero levels or non-positive fractions.
    pub fn validate(&self) -> Result<(), Error> {
        if self.levels.is_empty() || self.levels.contains(&0) {
            return Err(Error::InvalidConfig(
                "levels must be a non-empty list of integers ≥ 1".into(),
            ));
        }
        if !(self.success_frac > 0.0 && self.rotation_step_deg >= 0.0) {
            return Err(Error::InvalidConfig(
                "success fraction must be > 0 and rotation step ≥ 0".into(),
            ));
        }
        Ok(())
    }
}

/// The displacement applied to B: rotation θ and translation t, as in MultiRegEval, and for the
/// affine protocol per-axis scales and a shear (1, 1 and 0 for the rigid one).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Displacement {
    /// θ in degrees.
    pub angle_deg: f64,
    /// t = (tx, ty) in pixels.
    pub translation: [f64; 2],
    /// Scale along x and y.
    pub scale: [f64; 2],
    /// Shear `k` of `[[sx, k], [0, sy]]`.
    pub shear: f64,
    /// Largest length of the elastic deformation, in pixels (0 without one).
    pub elastic_px: f64,
    /// Seed of the elastic deformation's coefficients.
    pub elastic_seed: u64,
}

impl Displacement {
    /// The linear part `R(θ)·[[sx, k], [0, sy]]` of G.
    fn linear(&self) -> [[f64; 2]; 2] {
        let (s, c) = self.angle_deg.to_radians().sin_cos();
        let u = [[self.scale[0], self.shear], [0.0, self.scale[1]]];
        [
            [c * u[0][0] - s * u[1][0], c * u[0][1] - s * u[1][1]],
            [s * u[0][0] + c * u[1][0], s * u[0][1] + c * u[1][1]],
        ]
    }

    fn is_rigid(&self) -> bool {
        self.scale == [1.0, 1.0] && self.shear == 0.0 && self.elastic_px == 0.0
    }
}

/// Largest elastic displacement per level, as a fraction of the width.
const ELASTIC_FRAC_PER_LEVEL: f64 = 0.01;

/// Control-point spacing of the elastic displacement, as a fraction of the smaller side.
const ELASTIC_SPACING_FRAC: f64 = 0.25;

/// FNV-1a, so that case seeds do not depend on the standard library's hasher.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// Draws the displacement of one pair at one level for an image of width `width`.
pub fn draw_displacement(
    protocol: &Protocol,
    pair: &str,
    level: u32,
    width: usize,
) -> Displacement {
    let seed = protocol.seed ^ fnv1a(pair) ^ (level as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let l = level as f64;
    let mut signed = |step: f64| {
        let mag = if step > 0.0 {
            rng.gen_range(step * (l - 1.0)..step * l)
        } else {
            0.0
        };
        if rng.gen_bool(0.5) {
            -mag
        } else {
            mag
        }
    };
    let s = protocol.translation_step_frac * width as f64;
    let angle_deg = signed(protocol.rotation_step_deg);
    let tx = signed(s);
    let ty = signed(s);
    // Drawn after the rigid part, so the rigid draws are the same in both protocols.
    let (scale, shear) = match protocol.displacement {
        DisplacementKind::Rigid => ([1.0, 1.0], 0.0),
        DisplacementKind::Affine | DisplacementKind::Elastic => {
            let sx = 1.0 + signed(0.025);
            let sy = 1.0 + signed(0.025);
            ([sx, sy], signed(0.025))
        }
    };
    let (elastic_px, elastic_seed) = match protocol.displacement {
        DisplacementKind::Elastic => (ELASTIC_FRAC_PER_LEVEL * l * width as f64, rng.gen()),
        _ => (0.0, 0),
    };
    Displacement {
        angle_deg,
        translation: [tx, ty],
        scale,
        shear,
        elastic_px,
        elastic_seed,
    }
}

/// One evaluation case: the fixed image, the displaced moving image and the true transform.
#[derive(Clone, Debug)]
pub struct Case {
    /// Modality A, untouched.
    pub fixed: Image,
    /// Modality B displaced by `G`.
    pub moving: Image,
    /// The displacement drawn.
    pub displacement: Displacement,
    /// The true fixed-to-moving transform (G⁻¹): rigid for the rigid protocol, affine for the
    /// affine one, an affine transform after a B-spline deformation for the elastic one.
    pub truth: Composite2,
    /// Error before registration, in pixels (see [`Case::error`]).
    pub initial_error_px: f64,
}

/// Builds the case for a pair: `moving(p) = B(G(p))` with `G(p) = R(θ)(p + t − c) + c`.
pub fn make_case(a: &Image, b: &Image, d: Displacement) -> Case {
    make_case_with_border(a, b, d, Border::Reflect)
}

pub(crate) fn make_case_with_border(a: &Image, b: &Image, d: Displacement, border: Border) -> Case {
    let c = b.center();
    let theta = d.angle_deg.to_radians();
    let (s, co) = theta.sin_cos();
    let [tx, ty] = d.translation;
    // G(p) = R(p − c) + c + R t, as a comir transform about c (R·U for the affine protocol).
    let g = Rigid2::new(theta, [co * tx - s * ty, s * tx + co * ty], c);
    let (moving, truth) = if d.is_rigid() {
        let moving = warp(b, b.width(), b.height(), border, |p| g.apply(p));
        (moving, Composite2::linear(Transform2::Rigid(g.inverse())))
    } else if d.elastic_px > 0.0 {
        let g = Affine2 {
            matrix: d.linear(),
            translation: g.translation,
            center: c,
        };
        let inv = g.inverse().unwrap_or(g);
        let (w, h) = (a.width(), a.height());
        let spacing = (ELASTIC_SPACING_FRAC * w.min(h) as f64).max(4.0);
        let field = BSpline2::random_smooth(w, h, spacing, d.elastic_px, d.elastic_seed).ok();
        let truth = Composite2 {
            linear: Transform2::Affine(inv),
            deformation: field,
        };
        // moving(q) = B(T⁻¹(q)); the field is gentle (≤ 4 % of the width over a quarter of it),
        // so the fixed-point inverse converges.
        let moving = warp(b, b.width(), b.height(), border, |q| {
            truth.inverse_apply(q).map_or(q, |(p, _)| p)
        });
        (moving, truth)
    } else {
        let g = Affine2 {
            matrix: d.linear(),
            translation: g.translation,
            center: c,
        };
        let moving = warp(b, b.width(), b.height(), border, |p| g.apply(p));
        // Scales stay within ±25 % and shears below 0.25, so G is always invertible.
        let inv = g.inverse().unwrap_or(g);
        (moving, Composite2::linear(Transform2::Affine(inv)))
    };
    let (w, h) = (a.width() as f64, a.height() as f64);
    let initial_error_px = error_of(&Transform2::from(Rigid2::identity(c)).into(), &truth, w, h);
    Case {
        fixed: a.clone(),
        moving,
        displacement: d,
        truth,
        initial_error_px,
    }
}

/// The registration error of `found` against `truth` for a `w × h` fixed image: the mean corner
/// distance for a rigid truth (MultiRegEval's error), the mean distance over a dense grid
/// (comir_transform::dense_error) otherwise, where four corners say too little.
pub fn error_of(found: &Composite2, truth: &Composite2, w: f64, h: f64) -> f64 {
    match (&truth.linear, &truth.deformation) {
        (Transform2::Rigid(_), None) => corner_error(found, truth, w, h),
        _ => dense_error(found, truth, w, h),
    }
}

impl Case {
    /// The error of a registration result on this case (see [`error_of`]).
    pub fn error(&self, found: &Composite2) -> f64 {
        let (w, h) = (self.fixed.width() as f64, self.fixed.height() as f64);
        error_of(found, &self.truth, w, h)
    }
}

impl Protocol {
    /// The case of `pair` at `level` for images `a` and `b`.
    pub fn case(&self, pair: &str, level: u32, a: &Image, b: &Image) -> Case {
        let d = draw_displacement(self, pair, level, a.width());
        make_case_with_border(a, b, d, self.border)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displacements_fall_in_their_level_ranges() {
        let p = Protocol::default();
        for level in 1..=4u32 {
            for i in 0..50 {
                let d = draw_displacement(&p, &format!("pair{i}"), level, 300);
                let l = level as f64;
                assert!(d.angle_deg.abs() >= 5.0 * (l - 1.0) && d.angle_deg.abs() < 5.0 * l);
                for t in d.translation {
                    assert!(t.abs() >= 7.0 * (l - 1.0) && t.abs() < 7.0 * l, "{t}");
                }
            }
        }
        // Same seed, pair and level: same draw; another seed: another draw.
        assert_eq!(
            draw_displacement(&p, "x", 2, 300),
            draw_displacement(&p, "x", 2, 300)
        );
        let q = Protocol {
            seed: 1,
            ..p.clone()
        };
        assert_ne!(
            draw_displacement(&p, "x", 2, 300),
            draw_displacement(&q, "x", 2, 300)
        );
    }

    #[test]
    fn truth_undoes_the_displacement() {
        let b = Image::from_fn(60, 40, |x, y| 2.0 * x as f32 + 3.0 * y as f32); // bilinear is exact on planes
        for (scale, shear) in [([1.0, 1.0], 0.0), ([1.06, 0.93], 0.04)] {
            let d = Displacement {
                angle_deg: 12.0,
                translation: [3.0, -5.0],
                scale,
                shear,
                elastic_px: 0.0,
                elastic_seed: 0,
            };
            let case = make_case_with_border(&b, &b, d, Border::Zero);
            // moving(truth(p)) = b(p) at interior pixel centres.
            for p in [[30.0, 20.0], [25.0, 15.0]] {
                let q = case.truth.apply(p);
                let v =
                    comir_image::ops::sample_bilinear(&case.moving, q[0], q[1], 0).expect("inside");
                let want = b.get(p[0] as usize, p[1] as usize, 0);
                assert!((v - want).abs() < 1e-3, "{scale:?}: {v} vs {want}");
            }
            let rigid = case.truth.linear.kind() == comir_transform::TransformKind::Rigid;
            assert_eq!(rigid, shear == 0.0);
        }
    }

    #[test]
    fn affine_displacements_add_scale_and_shear_to_the_same_rigid_draw() {
        let rigid = Protocol::default();
        let affine = Protocol {
            displacement: DisplacementKind::Affine,
            ..Protocol::default()
        };
        for level in 1..=4u32 {
            let l = level as f64;
            for i in 0..30 {
                let name = format!("pair{i}");
                let (r, a) = (
                    draw_displacement(&rigid, &name, level, 300),
                    draw_displacement(&affine, &name, level, 300),
                );
                assert_eq!((r.angle_deg, r.translation), (a.angle_deg, a.translation));
                assert_eq!((r.scale, r.shear), ([1.0, 1.0], 0.0));
                for v in [a.scale[0] - 1.0, a.scale[1] - 1.0, a.shear] {
                    assert!(v.abs() >= 0.025 * (l - 1.0) && v.abs() < 0.025 * l, "{v}");
                }
            }
        }
    }

    #[test]
    fn elastic_displacements_add_a_deformation_of_l_percent_that_the_truth_undoes() {
        let elastic = Protocol {
            displacement: DisplacementKind::Elastic,
            ..Protocol::default()
        };
        let affine = Protocol {
            displacement: DisplacementKind::Affine,
            ..Protocol::default()
        };
        for level in 1..=4u32 {
            let (e, a) = (
                draw_displacement(&elastic, "p", level, 200),
                draw_displacement(&affine, "p", level, 200),
            );
            assert_eq!(
                (e.angle_deg, e.scale, e.shear),
                (a.angle_deg, a.scale, a.shear)
            );
            assert!((e.elastic_px - 0.01 * level as f64 * 200.0).abs() < 1e-12);
        }
        // A plane: moving(truth(p)) = b(p), up to the bilinear interpolation of the (no longer
        // planar) moving image: 0.01 here is 0.003 px.
        let b = Image::from_fn(80, 64, |x, y| 2.0 * x as f32 + 3.0 * y as f32);
        let d = draw_displacement(&elastic, "p", 3, 80);
        let case = make_case_with_border(&b, &b, d, Border::Zero);
        let field = case.truth.deformation.as_ref().expect("a deformation");
        let largest = (0..64)
            .flat_map(|y| (0..80).map(move |x| [x as f64, y as f64]))
            .map(|p| {
                let u = field.displacement(p);
                u[0].hypot(u[1])
            })
            .fold(0.0, f64::max);
        assert!((largest - 0.03 * 80.0).abs() < 1e-9, "{largest}");
        for p in [[40.0, 30.0], [22.0, 41.0], [60.0, 20.0]] {
            let q = case.truth.apply(p);
            let v = comir_image::ops::sample_bilinear(&case.moving, q[0], q[1], 0).expect("inside");
            let want = b.get(p[0] as usize, p[1] as usize, 0);
            assert!((v - want).abs() < 1e-2, "{p:?}: {v} vs {want}");
        }
        // The error of the affine part alone is the deformation's, on the dense grid.
        let lin = Composite2::linear(case.truth.linear);
        assert!(case.error(&lin) > 0.2);
    }

    #[test]
    fn initial_error_matches_multiregeval_displacement() {
        // MultiRegEval's Displacement is the mean over the corners of |G(corner) − corner|.
        let b = Image::zeros(300, 300, 1);
        let d = Displacement {
            angle_deg: -8.0,
            translation: [10.0, 4.0],
            scale: [1.0, 1.0],
            shear: 0.0,
            elastic_px: 0.0,
            elastic_seed: 0,
        };
        let case = make_case_with_border(&b, &b, d, Border::Zero);
        let c = 149.5;
        let (s, co) = d.angle_deg.to_radians().sin_cos();
        let g = |p: [f64; 2]| {
            let (x, y) = (p[0] + 10.0 - c, p[1] + 4.0 - c);
            [co * x - s * y + c, s * x + co * y + c]
        };
        let corners = comir_transform::corners(300.0, 300.0);
        let expect = corners
            .iter()
            .map(|&p| {
                let q = g(p);
                ((q[0] - p[0]).powi(2) + (q[1] - p[1]).powi(2)).sqrt()
            })
            .sum::<f64>()
            / 4.0;
        assert!((case.initial_error_px - expect).abs() < 1e-9);
    }
}
