//! The rigid transform: rotation about a centre, then translation.

use serde::{Deserialize, Serialize};

/// A rigid transform (rotation about a centre, then translation) mapping fixed to moving points.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rigid2 {
    /// Rotation angle θ in radians.
    pub angle_rad: f64,
    /// Translation `t = (tx, ty)` in pixels.
    pub translation: [f64; 2],
    /// Rotation centre `c = (cx, cy)` in pixels.
    pub center: [f64; 2],
}

impl Rigid2 {
    /// The identity, with rotation centre `center`.
    pub fn identity(center: [f64; 2]) -> Rigid2 {
        Rigid2 {
            angle_rad: 0.0,
            translation: [0.0, 0.0],
            center,
        }
    }

    /// A transform from its parts.
    pub fn new(angle_rad: f64, translation: [f64; 2], center: [f64; 2]) -> Rigid2 {
        Rigid2 {
            angle_rad,
            translation,
            center,
        }
    }

    /// Maps a fixed-image point to the moving image.
    #[inline]
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        let (s, c) = self.angle_rad.sin_cos();
        let dx = p[0] - self.center[0];
        let dy = p[1] - self.center[1];
        [
            c * dx - s * dy + self.center[0] + self.translation[0],
            s * dx + c * dy + self.center[1] + self.translation[1],
        ]
    }

    /// The homogeneous 3×3 matrix of [`Rigid2::apply`] (the `fixed_to_moving` field of the JSON).
    pub fn matrix(&self) -> [[f64; 3]; 3] {
        let (s, c) = self.angle_rad.sin_cos();
        let o = self.apply([0.0, 0.0]);
        [[c, -s, o[0]], [s, c, o[1]], [0.0, 0.0, 1.0]]
    }

    /// The inverse map (moving to fixed), expressed about the same centre.
    pub fn inverse(&self) -> Rigid2 {
        // T⁻¹(q) = R(−θ)(q − c − t) + c = R(−θ)(q − c) + c − R(−θ)t.
        let (s, c) = (-self.angle_rad).sin_cos();
        let [tx, ty] = self.translation;
        Rigid2 {
            angle_rad: -self.angle_rad,
            translation: [-(c * tx - s * ty), -(s * tx + c * ty)],
            center: self.center,
        }
    }

    /// The same map expressed about another rotation centre.
    pub fn with_center(&self, center: [f64; 2]) -> Rigid2 {
        // Keep T(center_new) unchanged: t' = T(c') − c'.
        let m = self.apply(center);
        Rigid2 {
            angle_rad: self.angle_rad,
            translation: [m[0] - center[0], m[1] - center[1]],
            center,
        }
    }

    /// `self ∘ other`: first `other`, then `self`. The result uses `other`'s centre.
    pub fn compose(&self, other: &Rigid2) -> Rigid2 {
        let c = other.center;
        let m = self.apply(other.apply(c));
        Rigid2 {
            angle_rad: self.angle_rad + other.angle_rad,
            translation: [m[0] - c[0], m[1] - c[1]],
            center: c,
        }
    }
}
