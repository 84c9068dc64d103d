//! Similarity and affine transforms, both written about a centre as ITK writes them:
//! `T(p) = M·(p − c) + c + t`.

use serde::{Deserialize, Serialize};

use crate::Rigid2;

/// A similarity transform: isotropic scale and rotation about a centre, then translation.
///
/// `T(p) = s·R(θ)·(p − c) + c + t`: ITK's `Similarity2DTransform` (parameters `s, θ, tx, ty`,
/// fixed parameters `cx, cy`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Similarity2 {
    /// Isotropic scale `s` (> 0).
    pub scale: f64,
    /// Rotation angle θ in radians.
    pub angle_rad: f64,
    /// Translation `t = (tx, ty)` in pixels.
    pub translation: [f64; 2],
    /// Centre `c = (cx, cy)` in pixels.
    pub center: [f64; 2],
}

impl Similarity2 {
    /// The similarity with scale 1 that equals a rigid transform.
    pub fn from_rigid(r: &Rigid2) -> Similarity2 {
        Similarity2 {
            scale: 1.0,
            angle_rad: r.angle_rad,
            translation: r.translation,
            center: r.center,
        }
    }

    /// The 2×2 part `s·R(θ)`.
    pub fn linear(&self) -> [[f64; 2]; 2] {
        let (s, c) = self.angle_rad.sin_cos();
        let k = self.scale;
        [[k * c, -k * s], [k * s, k * c]]
    }

    /// Maps a fixed-image point to the moving image.
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        self.to_affine().apply(p)
    }

    /// The same map as an affine transform about the same centre.
    pub fn to_affine(&self) -> Affine2 {
        Affine2 {
            matrix: self.linear(),
            translation: self.translation,
            center: self.center,
        }
    }
}

/// A general affine transform about a centre: `T(p) = A·(p − c) + c + t`.
///
/// ITK's `AffineTransform<double, 2>` (parameters `a11 a12 a21 a22 tx ty`, fixed parameters
/// `cx, cy`). The centre changes nothing about the map; it only makes the parameters better
/// conditioned for an optimiser (a change of `A` then moves the image about its middle).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Affine2 {
    /// The 2×2 matrix `A`, rows first: `[[a11, a12], [a21, a22]]`.
    pub matrix: [[f64; 2]; 2],
    /// Translation `t = (tx, ty)` in pixels.
    pub translation: [f64; 2],
    /// Centre `c = (cx, cy)` in pixels.
    pub center: [f64; 2],
}

impl Affine2 {
    /// The identity, with centre `center`.
    pub fn identity(center: [f64; 2]) -> Affine2 {
        Affine2 {
            matrix: [[1.0, 0.0], [0.0, 1.0]],
            translation: [0.0, 0.0],
            center,
        }
    }

    /// The affine transform that equals a rigid one.
    pub fn from_rigid(r: &Rigid2) -> Affine2 {
        let (s, c) = r.angle_rad.sin_cos();
        Affine2 {
            matrix: [[c, -s], [s, c]],
            translation: r.translation,
            center: r.center,
        }
    }

    /// The transform whose homogeneous matrix is `m` (rows `[a11 a12 ox]`, `[a21 a22 oy]`, and
    /// anything as the last row), expressed about `center`.
    pub fn from_matrix(m: &[[f64; 3]; 3], center: [f64; 2]) -> Affine2 {
        let a = [[m[0][0], m[0][1]], [m[1][0], m[1][1]]];
        // T(c) = A·c + o = c + t.
        let tc = [
            a[0][0] * center[0] + a[0][1] * center[1] + m[0][2],
            a[1][0] * center[0] + a[1][1] * center[1] + m[1][2],
        ];
        Affine2 {
            matrix: a,
            translation: [tc[0] - center[0], tc[1] - center[1]],
            center,
        }
    }

    /// Maps a fixed-image point to the moving image.
    #[inline]
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        let a = &self.matrix;
        let dx = p[0] - self.center[0];
        let dy = p[1] - self.center[1];
        [
            a[0][0] * dx + a[0][1] * dy + self.center[0] + self.translation[0],
            a[1][0] * dx + a[1][1] * dy + self.center[1] + self.translation[1],
        ]
    }

    /// The homogeneous 3×3 matrix of [`Affine2::apply`].
    pub fn matrix3(&self) -> [[f64; 3]; 3] {
        let o = self.apply([0.0, 0.0]);
        let a = &self.matrix;
        [
            [a[0][0], a[0][1], o[0]],
            [a[1][0], a[1][1], o[1]],
            [0.0, 0.0, 1.0],
        ]
    }

    /// The determinant of `A`: the area ratio, negative for a reflection, zero when singular.
    pub fn determinant(&self) -> f64 {
        let a = &self.matrix;
        a[0][0] * a[1][1] - a[0][1] * a[1][0]
    }

    /// The inverse map (moving to fixed) about the same centre; `None` when `A` is singular.
    pub fn inverse(&self) -> Option<Affine2> {
        let det = self.determinant();
        if det.is_nan() || det.abs() <= 1e-12 || !det.is_finite() {
            return None;
        }
        let a = &self.matrix;
        let inv = [
            [a[1][1] / det, -a[0][1] / det],
            [-a[1][0] / det, a[0][0] / det],
        ];
        // T⁻¹(q) = A⁻¹(q − c − t) + c.
        let [tx, ty] = self.translation;
        Some(Affine2 {
            matrix: inv,
            translation: [
                -(inv[0][0] * tx + inv[0][1] * ty),
                -(inv[1][0] * tx + inv[1][1] * ty),
            ],
            center: self.center,
        })
    }

    /// `self ∘ other`: first `other`, then `self`. The result uses `other`'s centre.
    pub fn compose(&self, other: &Affine2) -> Affine2 {
        let (a, b) = (&self.matrix, &other.matrix);
        let mut m = [[0.0; 2]; 2];
        for (i, row) in m.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = a[i][0] * b[0][j] + a[i][1] * b[1][j];
            }
        }
        let c = other.center;
        let tc = self.apply(other.apply(c));
        Affine2 {
            matrix: m,
            translation: [tc[0] - c[0], tc[1] - c[1]],
            center: c,
        }
    }

    /// Scale along x and y, rotation (radians) and shear of `A = R(θ)·[[sx, k·sy], [0, sy]]`
    /// (a QR decomposition): the quantities people read off an affine transform.
    pub fn decompose(&self) -> AffineParts {
        let a = &self.matrix;
        let sx = (a[0][0] * a[0][0] + a[1][0] * a[1][0]).sqrt();
        let angle = a[1][0].atan2(a[0][0]);
        let (s, c) = angle.sin_cos();
        // Rᵀ·A = [[sx, k·sy], [0, sy]].
        let r01 = c * a[0][1] + s * a[1][1];
        let r11 = -s * a[0][1] + c * a[1][1];
        AffineParts {
            scale: [sx, r11],
            angle_rad: angle,
            shear: if r11 != 0.0 { r01 / r11 } else { 0.0 },
        }
    }
}

/// The readable parts of an affine matrix (see [`Affine2::decompose`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AffineParts {
    /// Scale along x and y (y negative for a reflection).
    pub scale: [f64; 2],
    /// Rotation in radians.
    pub angle_rad: f64,
    /// Shear factor.
    pub shear: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: [f64; 2], b: [f64; 2]) -> bool {
        (a[0] - b[0]).abs() < 1e-9 && (a[1] - b[1]).abs() < 1e-9
    }

    fn sample() -> Affine2 {
        Affine2 {
            matrix: [[1.1, 0.2], [-0.15, 0.8]],
            translation: [3.0, -7.0],
            center: [40.0, 25.0],
        }
    }

    #[test]
    fn rigid_and_similarity_agree_with_their_affine_forms() {
        let r = Rigid2::new(0.3, [2.0, -1.0], [10.0, 20.0]);
        let s = Similarity2 {
            scale: 1.3,
            ..Similarity2::from_rigid(&r)
        };
        for p in [[0.0, 0.0], [5.0, 9.0], [-3.0, 40.0]] {
            assert!(close(Affine2::from_rigid(&r).apply(p), r.apply(p)));
            let d = [p[0] - 10.0, p[1] - 20.0];
            let rot = Rigid2::new(0.3, [0.0, 0.0], [0.0, 0.0]).apply(d);
            let want = [1.3 * rot[0] + 12.0, 1.3 * rot[1] + 19.0];
            assert!(close(s.apply(p), want), "{:?} {want:?}", s.apply(p));
        }
    }

    #[test]
    fn inverse_compose_and_matrix_round_trip() {
        let a = sample();
        let inv = a.inverse().expect("invertible");
        let b = Affine2::from_matrix(&a.matrix3(), [0.0, 0.0]);
        for p in [[0.0, 0.0], [12.0, 30.0], [-8.0, 3.5]] {
            assert!(close(inv.apply(a.apply(p)), p));
            assert!(close(a.compose(&inv).apply(p), p));
            assert!(close(b.apply(p), a.apply(p)));
        }
        let singular = Affine2 {
            matrix: [[1.0, 2.0], [2.0, 4.0]],
            ..sample()
        };
        assert!(singular.inverse().is_none());
    }

    #[test]
    fn decomposition_rebuilds_the_matrix() {
        let a = sample();
        let parts = a.decompose();
        let (s, c) = parts.angle_rad.sin_cos();
        let u = [
            [parts.scale[0], parts.shear * parts.scale[1]],
            [0.0, parts.scale[1]],
        ];
        let rebuilt = [
            [c * u[0][0] - s * u[1][0], c * u[0][1] - s * u[1][1]],
            [s * u[0][0] + c * u[1][0], s * u[0][1] + c * u[1][1]],
        ];
        for (row, want) in rebuilt.iter().zip(&a.matrix) {
            for (v, w) in row.iter().zip(want) {
                assert!((v - w).abs() < 1e-12);
            }
        }
    }
}
