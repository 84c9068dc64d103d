//! Any transform comir estimates, as one type with a parameter vector.

use serde::{Deserialize, Serialize};

use crate::{Affine2, Rigid2, Similarity2};

/// The transform models, from the most constrained to the most flexible.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransformKind {
    /// Rotation and translation (3 parameters).
    Rigid,
    /// Isotropic scale, rotation and translation (4 parameters).
    Similarity,
    /// General linear map and translation (6 parameters).
    Affine,
}

impl TransformKind {
    /// Every kind, in order of flexibility.
    pub const ALL: [TransformKind; 3] = [
        TransformKind::Rigid,
        TransformKind::Similarity,
        TransformKind::Affine,
    ];

    /// The name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            TransformKind::Rigid => "rigid",
            TransformKind::Similarity => "similarity",
            TransformKind::Affine => "affine",
        }
    }

    /// The kind with this name.
    pub fn from_name(name: &str) -> Option<TransformKind> {
        TransformKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Number of parameters.
    pub fn n_params(self) -> usize {
        match self {
            TransformKind::Rigid => 3,
            TransformKind::Similarity => 4,
            TransformKind::Affine => 6,
        }
    }
}

impl std::fmt::Display for TransformKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Anything that maps fixed-image points to moving-image points.
pub trait PointMap {
    /// Maps a fixed-image point `(x, y)` to the moving image.
    fn map_point(&self, p: [f64; 2]) -> [f64; 2];
}

impl PointMap for Rigid2 {
    fn map_point(&self, p: [f64; 2]) -> [f64; 2] {
        self.apply(p)
    }
}

impl PointMap for Similarity2 {
    fn map_point(&self, p: [f64; 2]) -> [f64; 2] {
        self.apply(p)
    }
}

impl PointMap for Affine2 {
    fn map_point(&self, p: [f64; 2]) -> [f64; 2] {
        self.apply(p)
    }
}

/// A transform of any kind, mapping fixed to moving points.
///
/// Its parameters are ITK's, in ITK's order, so a parameter vector means the same here, in a
/// `.tfm` file and in SimpleITK:
///
/// | kind | parameters | fixed parameters |
/// |---|---|---|
/// | rigid | `θ tx ty` | `cx cy` |
/// | similarity | `s θ tx ty` | `cx cy` |
/// | affine | `a11 a12 a21 a22 tx ty` | `cx cy` |
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Transform2 {
    /// A rigid transform.
    Rigid(Rigid2),
    /// A similarity transform.
    Similarity(Similarity2),
    /// An affine transform.
    Affine(Affine2),
}

impl From<Rigid2> for Transform2 {
    fn from(t: Rigid2) -> Self {
        Transform2::Rigid(t)
    }
}

impl From<Similarity2> for Transform2 {
    fn from(t: Similarity2) -> Self {
        Transform2::Similarity(t)
    }
}

impl From<Affine2> for Transform2 {
    fn from(t: Affine2) -> Self {
        Transform2::Affine(t)
    }
}

impl PointMap for Transform2 {
    fn map_point(&self, p: [f64; 2]) -> [f64; 2] {
        self.apply(p)
    }
}

impl Transform2 {
    /// Its kind.
    pub fn kind(&self) -> TransformKind {
        match self {
            Transform2::Rigid(_) => TransformKind::Rigid,
            Transform2::Similarity(_) => TransformKind::Similarity,
            Transform2::Affine(_) => TransformKind::Affine,
        }
    }

    /// Maps a fixed-image point to the moving image.
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        match self {
            Transform2::Rigid(t) => t.apply(p),
            Transform2::Similarity(t) => t.apply(p),
            Transform2::Affine(t) => t.apply(p),
        }
    }

    /// The rigid transform, when it is one.
    pub fn as_rigid(&self) -> Option<&Rigid2> {
        match self {
            Transform2::Rigid(t) => Some(t),
            _ => None,
        }
    }

    /// The rotation in radians: the angle of a rigid or similarity transform, the rotation of an
    /// affine one's decomposition ([`Affine2::decompose`]).
    pub fn angle_rad(&self) -> f64 {
        match self {
            Transform2::Rigid(t) => t.angle_rad,
            Transform2::Similarity(t) => t.angle_rad,
            Transform2::Affine(t) => t.decompose().angle_rad,
        }
    }

    /// The centre the parameters are expressed about.
    pub fn center(&self) -> [f64; 2] {
        match self {
            Transform2::Rigid(t) => t.center,
            Transform2::Similarity(t) => t.center,
            Transform2::Affine(t) => t.center,
        }
    }

    /// The same map as an affine transform about the same centre.
    pub fn to_affine(&self) -> Affine2 {
        match self {
            Transform2::Rigid(t) => Affine2::from_rigid(t),
            Transform2::Similarity(t) => t.to_affine(),
            Transform2::Affine(t) => *t,
        }
    }

    /// The homogeneous 3×3 fixed-to-moving matrix.
    pub fn matrix3(&self) -> [[f64; 3]; 3] {
        match self {
            Transform2::Rigid(t) => t.matrix(),
            _ => self.to_affine().matrix3(),
        }
    }

    /// The inverse map (moving to fixed), of the same kind; `None` when it does not exist.
    pub fn inverse(&self) -> Option<Transform2> {
        match self {
            Transform2::Rigid(t) => Some(Transform2::Rigid(t.inverse())),
            Transform2::Similarity(t) if t.scale != 0.0 && t.scale.is_finite() => {
                let a = t.to_affine().inverse()?;
                // s·R(θ) inverts to (1/s)·R(−θ); the translation comes from the affine inverse.
                Some(Transform2::Similarity(Similarity2 {
                    scale: 1.0 / t.scale,
                    angle_rad: -t.angle_rad,
                    translation: a.translation,
                    center: t.center,
                }))
            }
            Transform2::Similarity(_) => None,
            Transform2::Affine(t) => t.inverse().map(Transform2::Affine),
        }
    }

    /// The same map as a transform of `kind`, when `kind` can express it exactly: rigid ⊂
    /// similarity ⊂ affine. Going down (affine to rigid) gives `None`.
    pub fn lift(&self, kind: TransformKind) -> Option<Transform2> {
        if kind == self.kind() {
            return Some(*self);
        }
        match (self, kind) {
            (Transform2::Rigid(r), TransformKind::Similarity) => {
                Some(Transform2::Similarity(Similarity2::from_rigid(r)))
            }
            (_, TransformKind::Affine) => Some(Transform2::Affine(self.to_affine())),
            _ => None,
        }
    }

    /// The parameter vector, in ITK's order (see the type's docs).
    pub fn params(&self) -> Vec<f64> {
        match self {
            Transform2::Rigid(t) => vec![t.angle_rad, t.translation[0], t.translation[1]],
            Transform2::Similarity(t) => {
                vec![t.scale, t.angle_rad, t.translation[0], t.translation[1]]
            }
            Transform2::Affine(t) => vec![
                t.matrix[0][0],
                t.matrix[0][1],
                t.matrix[1][0],
                t.matrix[1][1],
                t.translation[0],
                t.translation[1],
            ],
        }
    }

    /// Sets the parameters from a vector in ITK's order; its length must be the kind's
    /// [`TransformKind::n_params`].
    ///
    /// # Panics
    /// When the length is wrong (a programming error, not a user's).
    pub fn set_params(&mut self, p: &[f64]) {
        assert_eq!(p.len(), self.kind().n_params(), "parameter count");
        match self {
            Transform2::Rigid(t) => {
                t.angle_rad = p[0];
                t.translation = [p[1], p[2]];
            }
            Transform2::Similarity(t) => {
                t.scale = p[0];
                t.angle_rad = p[1];
                t.translation = [p[2], p[3]];
            }
            Transform2::Affine(t) => {
                t.matrix = [[p[0], p[1]], [p[2], p[3]]];
                t.translation = [p[4], p[5]];
            }
        }
    }

    /// `∂T(p)/∂μₖ` for each parameter `k` (ITK's order), written to `out[k] = [∂x, ∂y]`.
    ///
    /// # Panics
    /// When `out` is shorter than the parameter count.
    pub fn jacobian(&self, p: [f64; 2], out: &mut [[f64; 2]]) {
        let c = self.center();
        let (dx, dy) = (p[0] - c[0], p[1] - c[1]);
        match self {
            Transform2::Rigid(t) => {
                let (s, co) = t.angle_rad.sin_cos();
                out[0] = [-s * dx - co * dy, co * dx - s * dy];
                out[1] = [1.0, 0.0];
                out[2] = [0.0, 1.0];
            }
            Transform2::Similarity(t) => {
                let (s, co) = t.angle_rad.sin_cos();
                out[0] = [co * dx - s * dy, s * dx + co * dy];
                out[1] = [t.scale * (-s * dx - co * dy), t.scale * (co * dx - s * dy)];
                out[2] = [1.0, 0.0];
                out[3] = [0.0, 1.0];
            }
            Transform2::Affine(_) => {
                out[0] = [dx, 0.0];
                out[1] = [dy, 0.0];
                out[2] = [0.0, dx];
                out[3] = [0.0, dy];
                out[4] = [1.0, 0.0];
                out[5] = [0.0, 1.0];
            }
        }
    }

    /// How far a unit change of each parameter moves points, roughly, for points at distance
    /// `radius` from the centre: `radius` for the rotation, scale and matrix entries, 1 for the
    /// translations. Optimisers divide steps by these so every parameter moves points alike.
    pub fn parameter_scales(&self, radius: f64) -> Vec<f64> {
        let n = self.kind().n_params();
        (0..n)
            .map(|k| if k + 2 >= n { 1.0 } else { radius })
            .collect()
    }

    /// Adds a rotation of `angle_rad` about the centre before the transform (the multi-start
    /// offsets). For a rigid transform this is exactly an increase of its angle.
    pub fn rotated(&self, angle_rad: f64) -> Transform2 {
        match self {
            Transform2::Rigid(t) => {
                let mut r = *t;
                r.angle_rad += angle_rad;
                Transform2::Rigid(r)
            }
            Transform2::Similarity(t) => {
                let mut r = *t;
                r.angle_rad += angle_rad;
                Transform2::Similarity(r)
            }
            Transform2::Affine(t) => {
                let rot = Affine2::from_rigid(&Rigid2::new(angle_rad, [0.0, 0.0], t.center));
                Transform2::Affine(t.compose(&rot))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Transform2> {
        vec![
            Rigid2::new(0.2, [3.0, -1.0], [20.0, 15.0]).into(),
            Similarity2 {
                scale: 0.8,
                angle_rad: -0.1,
                translation: [2.0, 5.0],
                center: [20.0, 15.0],
            }
            .into(),
            Affine2 {
                matrix: [[1.05, 0.1], [-0.07, 0.9]],
                translation: [-4.0, 2.0],
                center: [20.0, 15.0],
            }
            .into(),
        ]
    }

    #[test]
    fn jacobian_matches_finite_differences() {
        for t in all() {
            let n = t.kind().n_params();
            let mut jac = vec![[0.0; 2]; n];
            let p = [31.0, -7.0];
            t.jacobian(p, &mut jac);
            let base = t.params();
            for k in 0..n {
                let h = 1e-6;
                let (mut plus, mut minus) = (t, t);
                let mut v = base.clone();
                v[k] += h;
                plus.set_params(&v);
                v[k] -= 2.0 * h;
                minus.set_params(&v);
                let (a, b) = (plus.apply(p), minus.apply(p));
                for axis in 0..2 {
                    let fd = (a[axis] - b[axis]) / (2.0 * h);
                    assert!(
                        (fd - jac[k][axis]).abs() < 1e-6,
                        "{} parameter {k} axis {axis}: {fd} vs {}",
                        t.kind(),
                        jac[k][axis]
                    );
                }
            }
        }
    }

    #[test]
    fn inverse_lift_and_rotation_keep_the_map() {
        for t in all() {
            let inv = t.inverse().expect("invertible");
            assert_eq!(inv.kind(), t.kind());
            let lifted = t.lift(TransformKind::Affine).expect("lift");
            let turned = t.rotated(0.3);
            let rot = Rigid2::new(0.3, [0.0, 0.0], t.center());
            for p in [[0.0, 0.0], [17.0, 40.0]] {
                let q = inv.apply(t.apply(p));
                assert!((q[0] - p[0]).abs() < 1e-9 && (q[1] - p[1]).abs() < 1e-9);
                let (a, b) = (lifted.apply(p), t.apply(p));
                assert!((a[0] - b[0]).abs() < 1e-9 && (a[1] - b[1]).abs() < 1e-9);
                let (a, b) = (turned.apply(p), t.apply(rot.apply(p)));
                assert!((a[0] - b[0]).abs() < 1e-9 && (a[1] - b[1]).abs() < 1e-9);
            }
        }
        let affine = all()[2];
        assert!(affine.lift(TransformKind::Rigid).is_none());
        assert_eq!(
            TransformKind::from_name("similarity"),
            Some(TransformKind::Similarity)
        );
        assert_eq!(TransformKind::from_name("bent"), None);
    }
}
