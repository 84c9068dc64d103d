//! Cubic B-spline free-form deformation ([`BSpline2`]), bit-compatible with ITK's
//! `BSplineTransform<double, 2, 3>`.
//!
//! # Model
//! A [`BSpline2`] is a displacement field on the **fixed** frame; like [`crate::Rigid2`] it maps
//! fixed points to moving points:
//!
//! ```text
//! B(p) = p + d(p),   d(p) = Σ_{i,j} c_ij · β³(u − i) · β³(v − j),
//! u = (x − o_x) / s_x,   v = (y − o_y) / s_y,
//! ```
//!
//! with `β³` the centred uniform cubic B-spline (support `[−2, 2]`), `o` the grid origin (the
//! position of control point `(0, 0)`), `s` the grid spacing and `c_ij = (c^x_ij, c^y_ij)` the
//! control-point displacements in pixels. Points are `(x, y)` = (column, row) with pixel centres
//! at integers, unit pixel spacing and zero image origin, as everywhere in comir.
//!
//! # Grid layout (ITK's)
//! The field is defined on a rectangular *transform domain* `[a_x, a_x + M_x s_x] × [a_y, a_y +
//! M_y s_y]` cut into a mesh of `M_x × M_y` cells. The control grid has `M + 3` points per axis and
//! starts one spacing before the domain: `o = a − s`. So the domain is `1 ≤ u ≤ M + 1` in grid
//! units and every domain point is influenced by exactly 4 × 4 control points. This is ITK's rule
//! `GridOrigin = DomainOrigin − ½·(SplineOrder − 1)·GridSpacing` for order 3.
//!
//! [`BSpline2::new`] uses the domain `[0, w − 1] × [0, h − 1]` (the pixel centres of a `w × h`
//! fixed image), mesh size `M = ceil((side − 1) / spacing_px)` (at least 1) and grid spacing
//! `(side − 1) / M`: the requested spacing is an upper bound, and the mesh fits the domain
//! exactly. ITK builds the same grid from `SetTransformDomainOrigin((0, 0))`,
//! `SetTransformDomainPhysicalDimensions((w − 1, h − 1))` and `SetTransformDomainMeshSize(M)`.
//! SimpleITK's `BSplineTransformInitializer` does not: for a 50 × 37 image and mesh (5, 4) it
//! chooses the domain origin (−0.625, −0.625) and size (50.25, 37.25), a box a little larger than
//! the pixels, so its fixed parameters differ from ours.
//!
//! ITK's fixed parameters are `[n_x, n_y, o_x, o_y, s_x, s_y, 1, 0, 0, 1]` (grid size, grid
//! origin, grid spacing, identity direction); the parameters are all x-coefficients in raster
//! order (x fastest), then all y-coefficients. [`BSpline2::params`] uses exactly that order.
//!
//! # Outside the domain
//! ITK returns the point unchanged (zero displacement, zero parameter Jacobian) outside the closed
//! domain, even where the control grid would still give a value; [`BSpline2`] does the same. The
//! field is therefore discontinuous across the domain border unless the border coefficients
//! vanish. At the domain edges themselves the spline is evaluated (up to 10⁻¹² grid units of
//! rounding slack, where ITK has a few ULPs).
//!
//! # Choices
//! - The bending energy is the exact integral over the domain divided by its area (a mean per
//!   square pixel), so a regularisation weight means the same for any control spacing.
//! - [`BSpline2::refine`] halves the spacing by exact dyadic subdivision: the refined field equals
//!   the original on the domain up to rounding.
//! - [`BSpline2::inverse_apply`] is a fixed-point iteration; it converges when the field is a
//!   contraction (`‖∂d/∂p‖ < 1`) and reports its residual so callers can judge the result.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The smallest control-point spacing [`BSpline2::new`] accepts, in pixels.
pub const MIN_SPACING_PX: f64 = 4.0;

/// The ITK class name of [`BSpline2`] in `.tfm` files (`BSplineTransform<double, 2, 3>`).
pub const ITK_BSPLINE_NAME: &str = "BSplineTransform_double_2_2";

/// Slack, in grid units, allowed when deciding whether a point lies on the domain edge.
const EDGE_SLACK: f64 = 1e-12;

/// The four cubic B-spline weights of a point at fraction `t ∈ [0, 1]` of its cell, for the
/// control points `start .. start + 4`.
#[inline]
fn basis(t: f64) -> [f64; 4] {
    let s = 1.0 - t;
    let t2 = t * t;
    let t3 = t2 * t;
    [
        s * s * s / 6.0,
        (3.0 * t3 - 6.0 * t2 + 4.0) / 6.0,
        (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) / 6.0,
        t3 / 6.0,
    ]
}

/// First derivatives of [`basis`] with respect to `t`.
#[inline]
fn basis_d1(t: f64) -> [f64; 4] {
    let s = 1.0 - t;
    [
        -0.5 * s * s,
        1.5 * t * t - 2.0 * t,
        -1.5 * t * t + t + 0.5,
        0.5 * t * t,
    ]
}

/// Second derivatives of [`basis`] with respect to `t`.
#[inline]
fn basis_d2(t: f64) -> [f64; 4] {
    [1.0 - t, 3.0 * t - 2.0, 1.0 - 3.0 * t, t]
}

#[inline]
fn basis_order(t: f64, order: usize) -> [f64; 4] {
    match order {
        0 => basis(t),
        1 => basis_d1(t),
        _ => basis_d2(t),
    }
}

/// The sparse parameter Jacobian of [`BSpline2`] at one point: `len` (16 inside the domain, 0
/// outside) pairs `(index[m], weight[m])` with
/// `∂B(p)_x / ∂params[index[m]] = ∂B(p)_y / ∂params[index[m] + n] = weight[m]`, where `n` is the
/// number of control points ([`BSpline2::n_params`]` / 2`). Every other derivative is zero
/// (`B_x` does not depend on the y-coefficients and vice versa).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct JacobianTerms {
    /// Control-point indices `k = j·n_x + i` (the x-coefficient's parameter index).
    pub index: [usize; 16],
    /// The B-spline weights; they sum to 1 inside the domain.
    pub weight: [f64; 16],
    /// How many of the pairs are valid: 16 inside the domain, 0 outside.
    pub len: usize,
}

impl JacobianTerms {
    /// An empty set of terms, to be filled by [`BSpline2::jacobian`].
    pub fn new() -> JacobianTerms {
        JacobianTerms::default()
    }

    /// The valid `(control-point index, weight)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (usize, f64)> + '_ {
        self.index[..self.len]
            .iter()
            .copied()
            .zip(self.weight[..self.len].iter().copied())
    }
}

/// The serialised fields, validated before they become a [`BSpline2`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BSpline2Fields {
    grid_size: [usize; 2],
    grid_origin: [f64; 2],
    grid_spacing: [f64; 2],
    coefficients: Vec<f64>,
}

impl TryFrom<BSpline2Fields> for BSpline2 {
    type Error = String;

    fn try_from(f: BSpline2Fields) -> Result<BSpline2, String> {
        BSpline2::from_parts(f.grid_size, f.grid_origin, f.grid_spacing, f.coefficients)
    }
}

/// A cubic B-spline free-form deformation mapping fixed points to moving points (see the
/// [module documentation](self) for the model and its ITK correspondence).
///
/// Serialises as `{grid_size, grid_origin, grid_spacing, coefficients}`, the coefficients in ITK
/// parameter order; deserialisation validates them as [`BSpline2::from_itk_parameters`] does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "BSpline2Fields")]
pub struct BSpline2 {
    /// Control points per axis `[n_x, n_y]` (mesh size + 3).
    grid_size: [usize; 2],
    /// Position of control point `(0, 0)`, in pixels.
    grid_origin: [f64; 2],
    /// Distance between control points per axis, in pixels.
    grid_spacing: [f64; 2],
    /// All x-displacements in raster order (x fastest), then all y-displacements: ITK's order.
    coefficients: Vec<f64>,
}

impl BSpline2 {
    /// The zero (identity) field whose domain is the pixel centres `[0, w − 1] × [0, h − 1]` of a
    /// `domain_width × domain_height` fixed image, with control points at most `spacing_px` apart.
    ///
    /// Per axis the mesh has `M = ceil((side − 1) / spacing_px)` cells (at least 1), the grid
    /// spacing is `(side − 1) / M` (≤ `spacing_px`), the grid has `M + 3` points and its origin is
    /// `−(side − 1) / M`, i.e. one spacing before the domain (ITK's layout).
    ///
    /// # Errors
    /// When `spacing_px` is not finite, below [`MIN_SPACING_PX`], or larger than the smaller
    /// side of the image.
    pub fn new(
        domain_width: usize,
        domain_height: usize,
        spacing_px: f64,
    ) -> Result<BSpline2, String> {
        if !spacing_px.is_finite() || spacing_px < MIN_SPACING_PX {
            return Err(format!(
                "B-spline control-point spacing must be a finite number of at least \
                 {MIN_SPACING_PX} px, got {spacing_px}"
            ));
        }
        let side = domain_width.min(domain_height);
        if spacing_px > side as f64 {
            return Err(format!(
                "B-spline control-point spacing {spacing_px} px is larger than the image side \
                 ({domain_width} × {domain_height} px)"
            ));
        }
        let mut grid_size = [0; 2];
        let mut grid_origin = [0.0; 2];
        let mut grid_spacing = [0.0; 2];
        for (axis, len) in [domain_width, domain_height].into_iter().enumerate() {
            let extent = (len - 1) as f64;
            // The relative slack keeps an exact ratio such as 99 / 4.95 from rounding up a cell.
            let mesh = ((extent / spacing_px) * (1.0 - 1e-12)).ceil().max(1.0) as usize;
            let spacing = extent / mesh as f64;
            grid_size[axis] = mesh + 3;
            grid_spacing[axis] = spacing;
            grid_origin[axis] = -spacing;
        }
        let n = 2 * grid_size[0] * grid_size[1];
        Ok(BSpline2 {
            grid_size,
            grid_origin,
            grid_spacing,
            coefficients: vec![0.0; n],
        })
    }

    /// Builds a field from its grid and ITK-ordered coefficients, validating them.
    fn from_parts(
        grid_size: [usize; 2],
        grid_origin: [f64; 2],
        grid_spacing: [f64; 2],
        coefficients: Vec<f64>,
    ) -> Result<BSpline2, String> {
        if grid_size.iter().any(|&n| n < 4) {
            return Err(format!(
                "B-spline grid size {grid_size:?} has fewer than 4 control points on an axis"
            ));
        }
        if !grid_origin.iter().all(|v| v.is_finite()) {
            return Err(format!(
                "B-spline grid origin {grid_origin:?} is not finite"
            ));
        }
        if !grid_spacing.iter().all(|v| v.is_finite() && *v > 0.0) {
            return Err(format!(
                "B-spline grid spacing {grid_spacing:?} is not finite and positive"
            ));
        }
        let nodes = grid_size[0]
            .checked_mul(grid_size[1])
            .ok_or_else(|| format!("B-spline grid size {grid_size:?} is too large"))?;
        let max_nodes = max_grid_nodes();
        if nodes > max_nodes {
            return Err(format!(
                "B-spline grid {} × {} has {nodes} nodes, more than the limit of {max_nodes} \
                 (raise COMIR_MAX_GRID_NODES to allow it)",
                grid_size[0], grid_size[1]
            ));
        }
        let expected = 2 * nodes;
        if coefficients.len() != expected {
            return Err(format!(
                "B-spline grid {} × {} needs {expected} parameters, got {}",
                grid_size[0],
                grid_size[1],
                coefficients.len()
            ));
        }
        if !coefficients.iter().all(|v| v.is_finite()) {
            return Err("B-spline parameters contain a non-finite value".into());
        }
        Ok(BSpline2 {
            grid_size,
            grid_origin,
            grid_spacing,
            coefficients,
        })
    }

    /// Control points per axis `[n_x, n_y]` (ITK's GridSize: mesh size + 3).
    pub fn grid_size(&self) -> [usize; 2] {
        self.grid_size
    }

    /// Position of control point `(0, 0)` in pixels (ITK's GridOrigin).
    pub fn grid_origin(&self) -> [f64; 2] {
        self.grid_origin
    }

    /// Distance between neighbouring control points per axis, in pixels (ITK's GridSpacing).
    pub fn grid_spacing(&self) -> [f64; 2] {
        self.grid_spacing
    }

    /// Cells of the mesh per axis (ITK's TransformDomainMeshSize): `grid_size − 3`.
    pub fn mesh_size(&self) -> [usize; 2] {
        [self.grid_size[0] - 3, self.grid_size[1] - 3]
    }

    /// The first corner of the transform domain: `grid_origin + grid_spacing`.
    pub fn domain_origin(&self) -> [f64; 2] {
        [
            self.grid_origin[0] + self.grid_spacing[0],
            self.grid_origin[1] + self.grid_spacing[1],
        ]
    }

    /// The size of the transform domain per axis: `mesh_size · grid_spacing` (ITK's
    /// TransformDomainPhysicalDimensions; `[w − 1, h − 1]` for [`BSpline2::new`]).
    pub fn domain_extent(&self) -> [f64; 2] {
        let m = self.mesh_size();
        [
            m[0] as f64 * self.grid_spacing[0],
            m[1] as f64 * self.grid_spacing[1],
        ]
    }

    /// The x-displacements of the control points, raster order (x fastest).
    pub fn coefficients_x(&self) -> &[f64] {
        &self.coefficients[..self.n_control_points()]
    }

    /// The y-displacements of the control points, raster order (x fastest).
    pub fn coefficients_y(&self) -> &[f64] {
        &self.coefficients[self.n_control_points()..]
    }

    /// Number of control points, `n_x · n_y`.
    pub fn n_control_points(&self) -> usize {
        self.grid_size[0] * self.grid_size[1]
    }

    /// Number of parameters, `2 · n_x · n_y`.
    pub fn n_params(&self) -> usize {
        self.coefficients.len()
    }

    /// The parameters in ITK order: all x-coefficients (raster order, x fastest), then all
    /// y-coefficients.
    pub fn params(&self) -> &[f64] {
        &self.coefficients
    }

    /// Replaces the parameters (ITK order, see [`BSpline2::params`]).
    ///
    /// # Errors
    /// When the length differs from [`BSpline2::n_params`] or a value is not finite; the field
    /// is then unchanged.
    pub fn set_params(&mut self, params: &[f64]) -> Result<(), String> {
        if params.len() != self.coefficients.len() {
            return Err(format!(
                "B-spline needs {} parameters, got {}",
                self.coefficients.len(),
                params.len()
            ));
        }
        if !params.iter().all(|v| v.is_finite()) {
            return Err("B-spline parameters contain a non-finite value".into());
        }
        self.coefficients.copy_from_slice(params);
        Ok(())
    }

    /// The cell of coordinate `v` on `axis`: the first of its 4 control points and the fraction
    /// `t ∈ [0, 1]` within the cell; `None` outside the closed domain (or for NaN).
    #[inline]
    fn locate_axis(&self, v: f64, axis: usize) -> Option<(usize, f64)> {
        let n = self.grid_size[axis];
        let u = (v - self.grid_origin[axis]) / self.grid_spacing[axis];
        let hi = (n - 2) as f64;
        if !(u >= 1.0 - EDGE_SLACK && u <= hi + EDGE_SLACK) {
            return None;
        }
        let u = u.clamp(1.0, hi);
        let start = ((u - 1.0).floor() as usize).min(n - 4);
        Some((start, u - 1.0 - start as f64))
    }

    #[inline]
    fn locate(&self, p: [f64; 2]) -> Option<([usize; 2], [f64; 2])> {
        let (sx, tx) = self.locate_axis(p[0], 0)?;
        let (sy, ty) = self.locate_axis(p[1], 1)?;
        Some(([sx, sy], [tx, ty]))
    }

    /// `∂^(ox+oy) d / ∂x^ox ∂y^oy` at `p` (orders 0 to 2), zero outside the domain.
    #[inline]
    fn derivative(&self, p: [f64; 2], ox: usize, oy: usize) -> [f64; 2] {
        let Some((start, t)) = self.locate(p) else {
            return [0.0, 0.0];
        };
        let wx = basis_order(t[0], ox);
        let wy = basis_order(t[1], oy);
        let nx = self.grid_size[0];
        let (cx, cy) = self.coefficients.split_at(self.n_control_points());
        let mut d = [0.0, 0.0];
        for (b, wyb) in wy.iter().enumerate() {
            let row = (start[1] + b) * nx + start[0];
            let (mut ax, mut ay) = (0.0, 0.0);
            for (a, wxa) in wx.iter().enumerate() {
                ax += wxa * cx[row + a];
                ay += wxa * cy[row + a];
            }
            d[0] += wyb * ax;
            d[1] += wyb * ay;
        }
        let scale = self.grid_spacing[0].powi(ox as i32).recip()
            * self.grid_spacing[1].powi(oy as i32).recip();
        [d[0] * scale, d[1] * scale]
    }

    /// The displacement `d(p)` in pixels; zero outside the domain (as ITK).
    #[inline]
    pub fn displacement(&self, p: [f64; 2]) -> [f64; 2] {
        self.derivative(p, 0, 0)
    }

    /// Maps a fixed-image point to the moving image: `B(p) = p + d(p)`.
    #[inline]
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        let d = self.displacement(p);
        [p[0] + d[0], p[1] + d[1]]
    }

    /// Fills `out` with the sparse derivative of `B(p)` with respect to the parameters (see
    /// [`JacobianTerms`]); no allocation. Outside the domain `out.len` is 0.
    pub fn jacobian(&self, p: [f64; 2], out: &mut JacobianTerms) {
        let Some((start, t)) = self.locate(p) else {
            out.len = 0;
            return;
        };
        let wx = basis(t[0]);
        let wy = basis(t[1]);
        let nx = self.grid_size[0];
        let mut m = 0;
        for (b, wyb) in wy.iter().enumerate() {
            let row = (start[1] + b) * nx + start[0];
            for (a, wxa) in wx.iter().enumerate() {
                out.index[m] = row + a;
                out.weight[m] = wyb * wxa;
                m += 1;
            }
        }
        out.len = 16;
    }

    /// The spatial Jacobian `∂B/∂p` at `p`: `[[∂B_x/∂x, ∂B_x/∂y], [∂B_y/∂x, ∂B_y/∂y]]`. The
    /// identity outside the domain.
    pub fn spatial_jacobian(&self, p: [f64; 2]) -> [[f64; 2]; 2] {
        let dx = self.derivative(p, 1, 0);
        let dy = self.derivative(p, 0, 1);
        [[1.0 + dx[0], dy[0]], [dx[1], 1.0 + dy[1]]]
    }

    /// `det ∂B/∂p` at `p`: negative where the warp folds.
    pub fn jacobian_determinant(&self, p: [f64; 2]) -> f64 {
        let j = self.spatial_jacobian(p);
        j[0][0] * j[1][1] - j[0][1] * j[1][0]
    }

    /// Sample positions along `axis` of the domain: every `step` pixels from its first edge,
    /// plus the far edge.
    fn axis_samples(&self, axis: usize, step: usize) -> Vec<f64> {
        let a = self.domain_origin()[axis];
        let len = self.domain_extent()[axis];
        let step = step.max(1) as f64;
        let count = (len / step).floor() as usize;
        let mut v: Vec<f64> = (0..=count).map(|k| a + k as f64 * step).collect();
        if count as f64 * step < len - 1e-9 {
            v.push(a + len);
        }
        v
    }

    /// The smallest `det ∂B/∂p` over a grid of the domain sampled every `step` pixels (0 counts
    /// as 1) from its first corner, the far edges included. Below 0 the warp folds.
    pub fn min_jacobian_determinant(&self, step: usize) -> f64 {
        let xs = self.axis_samples(0, step);
        let ys = self.axis_samples(1, step);
        let mut min = f64::INFINITY;
        for &y in &ys {
            for &x in &xs {
                min = min.min(self.jacobian_determinant([x, y]));
            }
        }
        min
    }

    /// Approximately inverts the map: finds `p` with `B(p) ≈ q` by the fixed-point iteration
    /// `p ← q − d(p)` from `p = q`, stopping after `max_iter` steps or once `‖B(p) − q‖ ≤ tol`.
    /// Returns the best `p` found and its residual `‖B(p) − q‖` in pixels. The iteration
    /// converges when `d` is a contraction (`‖∂d/∂p‖ < 1`, true for gentle fields); otherwise
    /// the residual says how far off the answer is.
    pub fn inverse_apply(&self, q: [f64; 2], max_iter: usize, tol: f64) -> ([f64; 2], f64) {
        let residual = |p: [f64; 2]| {
            let b = self.apply(p);
            ((b[0] - q[0]).powi(2) + (b[1] - q[1]).powi(2)).sqrt()
        };
        let mut p = q;
        let mut r = residual(p);
        let mut best = (p, r);
        for _ in 0..max_iter {
            if r <= tol {
                break;
            }
            let d = self.displacement(p);
            p = [q[0] - d[0], q[1] - d[1]];
            r = residual(p);
            if r < best.1 {
                best = (p, r);
            }
        }
        best
    }

    /// Banded 1-D Gram matrices `G_a[i][i + δ] = ∫ B_i^(a) B_{i+δ}^(a) dx` (`δ ∈ −3..=3` stored at
    /// `δ + 3`) over the domain of `axis`, for derivative orders `a = 0, 1, 2`. Exact: 4-point
    /// Gauss–Legendre integrates the degree-6 products on each cell.
    fn gram(&self, axis: usize) -> [Vec<[f64; 7]>; 3] {
        const NODES: [f64; 4] = [
            -0.861_136_311_594_052_6,
            -0.339_981_043_584_856_3,
            0.339_981_043_584_856_3,
            0.861_136_311_594_052_6,
        ];
        const WEIGHTS: [f64; 4] = [
            0.347_854_845_137_453_8,
            0.652_145_154_862_546_1,
            0.652_145_154_862_546_1,
            0.347_854_845_137_453_8,
        ];
        let n = self.grid_size[axis];
        let s = self.grid_spacing[axis];
        let mut g = [vec![[0.0; 7]; n], vec![[0.0; 7]; n], vec![[0.0; 7]; n]];
        for (order, ga) in g.iter_mut().enumerate() {
            // dx = s·du and each derivative brings 1/s.
            let scale = s / s.powi(2 * order as i32);
            for cell in 0..n - 3 {
                for (node, w) in NODES.iter().zip(WEIGHTS) {
                    let t = 0.5 * (node + 1.0);
                    let b = basis_order(t, order);
                    for (alpha, ba) in b.iter().enumerate() {
                        for (beta, bb) in b.iter().enumerate() {
                            ga[cell + alpha][beta + 3 - alpha] += 0.5 * w * scale * ba * bb;
                        }
                    }
                }
            }
        }
        g
    }

    /// The bending energy
    /// `E = (1/|Ω|) ∫_Ω ‖∂²d/∂x²‖² + 2‖∂²d/∂x∂y‖² + ‖∂²d/∂y²‖² dp` over the transform domain
    /// `Ω` (exact integral, divided by the domain area so it is a mean per square pixel and a
    /// weight on it means the same for every control spacing). Zero for affine fields. Units:
    /// px⁻² (displacements in px, second derivatives in px⁻¹).
    pub fn bending_energy(&self) -> f64 {
        self.bending_energy_and_gradient_impl(false).0
    }

    /// [`BSpline2::bending_energy`] and its gradient with respect to [`BSpline2::params`] (same
    /// order and length).
    pub fn bending_energy_and_gradient(&self) -> (f64, Vec<f64>) {
        self.bending_energy_and_gradient_impl(true)
    }

    fn bending_energy_and_gradient_impl(&self, want_grad: bool) -> (f64, Vec<f64>) {
        let [gx0, gx1, gx2] = self.gram(0);
        let [gy0, gy1, gy2] = self.gram(1);
        let [nx, ny] = self.grid_size;
        let ext = self.domain_extent();
        let inv_area = 1.0 / (ext[0] * ext[1]);
        let n = self.n_control_points();
        let mut grad = if want_grad {
            vec![0.0; 2 * n]
        } else {
            Vec::new()
        };
        let mut energy = 0.0;
        for comp in 0..2 {
            let c = &self.coefficients[comp * n..(comp + 1) * n];
            for j in 0..ny {
                for i in 0..nx {
                    // (H c)[j, i] with H = G2x ⊗ G0y + 2 G1x ⊗ G1y + G0x ⊗ G2y.
                    let mut hc = 0.0;
                    for l in j.saturating_sub(3)..(j + 4).min(ny) {
                        let dl = l + 3 - j;
                        for k in i.saturating_sub(3)..(i + 4).min(nx) {
                            let dk = k + 3 - i;
                            let h = gx2[i][dk] * gy0[j][dl]
                                + 2.0 * gx1[i][dk] * gy1[j][dl]
                                + gx0[i][dk] * gy2[j][dl];
                            hc += h * c[l * nx + k];
                        }
                    }
                    let idx = j * nx + i;
                    energy += c[idx] * hc;
                    if want_grad {
                        grad[comp * n + idx] = 2.0 * hc * inv_area;
                    }
                }
            }
        }
        (energy * inv_area, grad)
    }

    /// The same field on a grid of half the spacing (mesh `2M`, `2M + 3` points per axis, same
    /// domain), by exact dyadic subdivision of the cubic B-spline: on the domain the refined
    /// field equals this one up to rounding. For coarse-to-fine registration.
    pub fn refine(&self) -> BSpline2 {
        const W: [f64; 5] = [0.125, 0.5, 0.75, 0.5, 0.125];
        let [nx, ny] = self.grid_size;
        let m = self.mesh_size();
        let fnx = 2 * m[0] + 3;
        let fny = 2 * m[1] + 3;
        let n = self.n_control_points();
        let fnn = fnx * fny;
        let mut coefficients = vec![0.0; 2 * fnn];
        // Coarse point i sits at (i − 1)s from the domain corner; fine point J at (J − 1)s/2, so
        // its share W[k] goes to J = 2i + k − 3. Fine points outside the grid vanish on the domain.
        let targets = |i: usize, len: usize| {
            (0..5).filter_map(move |k| {
                let j = (2 * i + k).checked_sub(3)?;
                (j < len).then_some((j, W[k]))
            })
        };
        for comp in 0..2 {
            let c = &self.coefficients[comp * n..(comp + 1) * n];
            let f = &mut coefficients[comp * fnn..(comp + 1) * fnn];
            for j in 0..ny {
                for i in 0..nx {
                    let v = c[j * nx + i];
                    if v == 0.0 {
                        continue;
                    }
                    for (fj, wj) in targets(j, fny) {
                        for (fi, wi) in targets(i, fnx) {
                            f[fj * fnx + fi] += wj * wi * v;
                        }
                    }
                }
            }
        }
        let s = [self.grid_spacing[0] * 0.5, self.grid_spacing[1] * 0.5];
        let a = self.domain_origin();
        BSpline2 {
            grid_size: [fnx, fny],
            grid_origin: [a[0] - s[0], a[1] - s[1]],
            grid_spacing: s,
            coefficients,
        }
    }

    /// A seeded smooth random field for elastic evaluation: the grid of
    /// [`BSpline2::new`]`(domain_width, domain_height, spacing_px)`, coefficients drawn uniformly
    /// in `[−1, 1)` from `ChaCha8Rng::seed_from_u64(seed)` (x-coefficients then y-coefficients,
    /// raster order, each `2·(next_u64 >> 11)·2⁻⁵³ − 1`), then scaled so that the largest
    /// displacement length `‖d(p)‖` over the pixel centres of the domain is exactly
    /// `max_displacement_px`. The same arguments always give the same field.
    ///
    /// # Errors
    /// As [`BSpline2::new`], or when `max_displacement_px` is negative or not finite.
    pub fn random_smooth(
        domain_width: usize,
        domain_height: usize,
        spacing_px: f64,
        max_displacement_px: f64,
        seed: u64,
    ) -> Result<BSpline2, String> {
        if !max_displacement_px.is_finite() || max_displacement_px < 0.0 {
            return Err(format!(
                "maximum displacement must be finite and non-negative, got {max_displacement_px}"
            ));
        }
        let mut t = BSpline2::new(domain_width, domain_height, spacing_px)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for c in &mut t.coefficients {
            *c = 2.0 * ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) - 1.0;
        }
        let mut max = 0f64;
        for y in 0..domain_height {
            for x in 0..domain_width {
                let d = t.displacement([x as f64, y as f64]);
                max = max.max(d[0].hypot(d[1]));
            }
        }
        let scale = if max > 0.0 {
            max_displacement_px / max
        } else {
            0.0
        };
        for c in &mut t.coefficients {
            *c *= scale;
        }
        Ok(t)
    }

    /// ITK's fixed parameters: `[n_x, n_y, o_x, o_y, s_x, s_y, 1, 0, 0, 1]` (grid size, grid
    /// origin, grid spacing, identity direction).
    pub fn itk_fixed_parameters(&self) -> [f64; 10] {
        [
            self.grid_size[0] as f64,
            self.grid_size[1] as f64,
            self.grid_origin[0],
            self.grid_origin[1],
            self.grid_spacing[0],
            self.grid_spacing[1],
            1.0,
            0.0,
            0.0,
            1.0,
        ]
    }

    /// The transform's block of an ITK `.tfm` file (without the `#Insight Transform File` and
    /// `#Transform k` header lines), at full precision:
    /// `Transform: BSplineTransform_double_2_2`, `Parameters: …`, `FixedParameters: …`.
    pub fn itk_tfm_block(&self) -> String {
        let join = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.17e}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        format!(
            "Transform: {ITK_BSPLINE_NAME}\nParameters: {}\nFixedParameters: {}\n",
            join(&self.coefficients),
            join(&self.itk_fixed_parameters())
        )
    }

    /// A complete single-transform ITK `.tfm` file text (header and [`BSpline2::itk_tfm_block`]).
    pub fn itk_tfm_text(&self) -> String {
        format!(
            "#Insight Transform File V1.0\n#Transform 0\n{}",
            self.itk_tfm_block()
        )
    }

    /// The field of an ITK `BSplineTransform_double_2_2` from its parameters and fixed
    /// parameters (see [`BSpline2::itk_fixed_parameters`]).
    ///
    /// # Errors
    /// When there are not 10 fixed parameters, a value is not finite, a grid size is not an
    /// integer of at least 4, a spacing is not positive, the direction is not the identity, or
    /// the number of parameters is not `2 · n_x · n_y`.
    pub fn from_itk_parameters(params: &[f64], fixed: &[f64]) -> Result<BSpline2, String> {
        let fixed: &[f64; 10] = fixed.try_into().map_err(|_| {
            format!(
                "a 2-D B-spline has 10 fixed parameters (size, origin, spacing, direction), got {}",
                fixed.len()
            )
        })?;
        if !fixed.iter().all(|v| v.is_finite()) {
            return Err("B-spline fixed parameters contain a non-finite value".into());
        }
        let mut grid_size = [0usize; 2];
        for (n, &v) in grid_size.iter_mut().zip(&fixed[..2]) {
            if v.fract() != 0.0 || !(4.0..=1e9).contains(&v) {
                return Err(format!(
                    "B-spline grid size must be whole numbers of at least 4, got {} {}",
                    fixed[0], fixed[1]
                ));
            }
            *n = v as usize;
        }
        let direction = &fixed[6..];
        let identity = [1.0, 0.0, 0.0, 1.0];
        if direction
            .iter()
            .zip(identity)
            .any(|(d, e)| (d - e).abs() > 1e-9)
        {
            return Err(format!(
                "B-spline grid direction must be the identity, got {direction:?}"
            ));
        }
        BSpline2::from_parts(
            grid_size,
            [fixed[2], fixed[3]],
            [fixed[4], fixed[5]],
            params.to_vec(),
        )
    }
}

/// Default limit on the control points of a B-spline grid read from a file: 4 × 10⁶ (a
/// 2000 × 2000 grid, 64 MB of coefficients).
pub const DEFAULT_MAX_GRID_NODES: usize = 4_000_000;

/// The limit on the control points of a B-spline grid read from a file: the environment
/// variable `COMIR_MAX_GRID_NODES` when set to a number, else [`DEFAULT_MAX_GRID_NODES`].
pub fn max_grid_nodes() -> usize {
    std::env::var("COMIR_MAX_GRID_NODES")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(DEFAULT_MAX_GRID_NODES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(a: [f64; 2], b: [f64; 2]) -> f64 {
        (a[0] - b[0]).hypot(a[1] - b[1])
    }

    /// A reproducible field with all coefficients non-zero, including the border ones.
    fn field() -> BSpline2 {
        BSpline2::random_smooth(61, 47, 12.0, 3.0, 7).expect("field")
    }

    fn probe_points(t: &BSpline2) -> Vec<[f64; 2]> {
        let a = t.domain_origin();
        let e = t.domain_extent();
        let mut v = Vec::new();
        for j in 0..7 {
            for i in 0..9 {
                // Irrational-ish fractions keep points off cell boundaries.
                let fx = (i as f64 + 0.37) / 9.0;
                let fy = (j as f64 + 0.61) / 7.0;
                v.push([a[0] + fx * e[0], a[1] + fy * e[1]]);
            }
        }
        v
    }

    #[test]
    fn new_follows_itk_layout_and_validates() {
        let t = BSpline2::new(50, 37, 10.0).expect("grid");
        // Mesh ceil(49/10) = 5 and ceil(36/10) = 4 cells; spacing 9.8 and 9; origin −spacing.
        assert_eq!(t.grid_size(), [8, 7]);
        assert_eq!(t.mesh_size(), [5, 4]);
        assert!((t.grid_spacing()[0] - 9.8).abs() < 1e-12);
        assert!((t.grid_spacing()[1] - 9.0).abs() < 1e-12);
        assert_eq!(t.grid_origin(), [-t.grid_spacing()[0], -9.0]);
        assert_eq!(t.domain_origin(), [0.0, 0.0]);
        assert!(norm(t.domain_extent(), [49.0, 36.0]) < 1e-12);
        assert_eq!(t.n_params(), 2 * 8 * 7);
        assert_eq!(t.params().len(), t.n_params());
        // An exact ratio does not round up to an extra cell.
        assert_eq!(
            BSpline2::new(100, 100, 4.95).expect("grid").mesh_size(),
            [20, 20]
        );
        // A spacing as large as the side gives the single-cell mesh.
        assert_eq!(BSpline2::new(9, 20, 9.0).expect("grid").mesh_size(), [1, 3]);
        for bad in [3.9, f64::NAN, f64::INFINITY, 38.0, -5.0] {
            let e = BSpline2::new(50, 37, bad).expect_err("bad spacing");
            assert!(e.contains("spacing"), "{e}");
        }
    }

    #[test]
    fn zero_field_is_the_identity() {
        let t = BSpline2::new(40, 30, 8.0).expect("grid");
        let mut jac = JacobianTerms::new();
        for p in [[0.0, 0.0], [12.3, 7.7], [39.0, 29.0], [-5.0, 100.0]] {
            assert_eq!(t.apply(p), p);
            assert_eq!(t.spatial_jacobian(p), [[1.0, 0.0], [0.0, 1.0]]);
            t.jacobian(p, &mut jac);
            let inside = p[0] >= 0.0 && p[1] <= 29.0;
            assert_eq!(jac.len, if inside { 16 } else { 0 });
        }
        assert_eq!(t.bending_energy(), 0.0);
        assert_eq!(t.min_jacobian_determinant(1), 1.0);
        let (p, r) = t.inverse_apply([3.0, 4.0], 10, 1e-12);
        assert_eq!((p, r), ([3.0, 4.0], 0.0));
    }

    #[test]
    fn outside_the_domain_is_the_identity_and_edges_are_inside() {
        let t = field();
        let mut jac = JacobianTerms::new();
        for p in [
            [-0.01, 10.0],
            [60.01, 10.0],
            [10.0, -1e-6],
            [10.0, 46.5],
            [f64::NAN, 3.0],
        ] {
            let q = t.apply(p);
            assert!(q == p || (p[0].is_nan() && q[1] == p[1]), "{p:?} -> {q:?}");
            t.jacobian(p, &mut jac);
            assert_eq!(jac.len, 0);
            assert_eq!(jac.iter().count(), 0);
        }
        // The domain edges are evaluated (and are continuous with the inside).
        for p in [[0.0, 0.0], [60.0, 46.0], [60.0, 20.0], [30.0, 46.0]] {
            assert!(norm(t.displacement(p), [0.0, 0.0]) > 0.0, "{p:?}");
            let inner = [p[0].clamp(1e-7, 60.0 - 1e-7), p[1].clamp(1e-7, 46.0 - 1e-7)];
            assert!(norm(t.displacement(p), t.displacement(inner)) < 1e-5);
            t.jacobian(p, &mut jac);
            assert_eq!(jac.len, 16);
        }
    }

    #[test]
    fn parameter_jacobian_matches_finite_differences() {
        let mut t = field();
        let n = t.n_control_points();
        let base = t.params().to_vec();
        let mut jac = JacobianTerms::new();
        let h = 1e-6;
        for p in probe_points(&t).into_iter().step_by(5) {
            t.jacobian(p, &mut jac);
            assert_eq!(jac.len, 16);
            let total: f64 = jac.iter().map(|(_, w)| w).sum();
            assert!((total - 1.0).abs() < 1e-12, "partition of unity: {total}");
            let mut dense = vec![0.0; n];
            for (k, w) in jac.iter() {
                dense[k] += w;
            }
            // Every parameter, x and y: the sparse terms must be the whole derivative.
            for k in 0..2 * n {
                let mut q = base.clone();
                q[k] += h;
                t.set_params(&q).expect("params");
                let up = t.apply(p);
                q[k] -= 2.0 * h;
                t.set_params(&q).expect("params");
                let down = t.apply(p);
                let fd = [(up[0] - down[0]) / (2.0 * h), (up[1] - down[1]) / (2.0 * h)];
                let (axis, ctrl) = (k / n, k % n);
                let want = [
                    if axis == 0 { dense[ctrl] } else { 0.0 },
                    if axis == 1 { dense[ctrl] } else { 0.0 },
                ];
                assert!(
                    norm(fd, want) < 1e-8,
                    "param {k} at {p:?}: fd {fd:?}, jac {want:?}"
                );
            }
            t.set_params(&base).expect("params");
        }
    }

    #[test]
    fn spatial_jacobian_matches_finite_differences() {
        let t = field();
        let h = 1e-5;
        for p in probe_points(&t) {
            let j = t.spatial_jacobian(p);
            for axis in 0..2 {
                let mut up = p;
                let mut down = p;
                up[axis] += h;
                down[axis] -= h;
                let (u, d) = (t.apply(up), t.apply(down));
                for row in 0..2 {
                    let fd = (u[row] - d[row]) / (2.0 * h);
                    assert!(
                        (fd - j[row][axis]).abs() < 1e-7,
                        "∂B{row}/∂{axis} at {p:?}: fd {fd}, analytic {}",
                        j[row][axis]
                    );
                }
            }
            let det = t.jacobian_determinant(p);
            assert!((det - (j[0][0] * j[1][1] - j[0][1] * j[1][0])).abs() < 1e-15);
        }
    }

    #[test]
    fn bending_energy_is_the_mean_over_the_domain() {
        let t = field();
        // Midpoint rule on a fine grid with the analytic second derivatives.
        let e = t.domain_extent();
        let (nx, ny) = (600, 460);
        let mut sum = 0.0;
        for j in 0..ny {
            for i in 0..nx {
                let p = [
                    (i as f64 + 0.5) * e[0] / nx as f64,
                    (j as f64 + 0.5) * e[1] / ny as f64,
                ];
                let xx = t.derivative(p, 2, 0);
                let xy = t.derivative(p, 1, 1);
                let yy = t.derivative(p, 0, 2);
                sum += xx[0] * xx[0]
                    + xx[1] * xx[1]
                    + 2.0 * (xy[0] * xy[0] + xy[1] * xy[1])
                    + yy[0] * yy[0]
                    + yy[1] * yy[1];
            }
        }
        let mean = sum / (nx * ny) as f64;
        let exact = t.bending_energy();
        assert!(exact > 0.0);
        assert!(
            ((exact - mean) / exact).abs() < 1e-4,
            "exact {exact}, sampled {mean}"
        );
        // Refining does not change the field, hence not its energy.
        let fine = t.refine().bending_energy();
        assert!(((fine - exact) / exact).abs() < 1e-10, "{fine} vs {exact}");
    }

    #[test]
    fn bending_energy_vanishes_for_affine_fields() {
        let mut t = BSpline2::new(50, 40, 10.0).expect("grid");
        let [nx, ny] = t.grid_size();
        let (o, s) = (t.grid_origin(), t.grid_spacing());
        let mut p = vec![0.0; t.n_params()];
        for j in 0..ny {
            for i in 0..nx {
                let (x, y) = (o[0] + i as f64 * s[0], o[1] + j as f64 * s[1]);
                p[j * nx + i] = 0.02 * x - 0.01 * y + 1.5;
                p[nx * ny + j * nx + i] = 0.015 * x + 0.03 * y - 2.0;
            }
        }
        t.set_params(&p).expect("params");
        // Cubic B-splines reproduce linear functions exactly.
        let q = [17.3, 22.9];
        let want = [
            q[0] + 0.02 * q[0] - 0.01 * q[1] + 1.5,
            q[1] + 0.015 * q[0] + 0.03 * q[1] - 2.0,
        ];
        assert!(norm(t.apply(q), want) < 1e-12);
        assert!(t.bending_energy().abs() < 1e-15, "{}", t.bending_energy());
    }

    #[test]
    fn bending_energy_gradient_matches_finite_differences() {
        let mut t = field();
        let (e0, grad) = t.bending_energy_and_gradient();
        assert_eq!(grad.len(), t.n_params());
        assert_eq!(e0, t.bending_energy());
        let base = t.params().to_vec();
        let h = 1e-4;
        let mut worst = 0f64;
        for k in 0..t.n_params() {
            let mut q = base.clone();
            q[k] += h;
            t.set_params(&q).expect("params");
            let up = t.bending_energy();
            q[k] -= 2.0 * h;
            t.set_params(&q).expect("params");
            let down = t.bending_energy();
            let fd = (up - down) / (2.0 * h);
            worst = worst.max((fd - grad[k]).abs());
        }
        let scale = grad.iter().fold(0f64, |m, g| m.max(g.abs()));
        assert!(scale > 0.0);
        assert!(
            worst < 1e-8 * scale.max(1.0),
            "worst {worst}, scale {scale}"
        );
        // E is a quadratic form: E(c) = ½ c·∇E(c).
        let half_dot: f64 = 0.5 * base.iter().zip(&grad).map(|(c, g)| c * g).sum::<f64>();
        assert!(((half_dot - e0) / e0).abs() < 1e-12);
    }

    #[test]
    fn folding_is_detected() {
        let t = field();
        let det = t.min_jacobian_determinant(1);
        assert!(det > 0.0 && det < 1.0, "gentle field: {det}");
        // A large random field on a fine grid folds.
        let wild = BSpline2::random_smooth(61, 47, 6.0, 15.0, 1).expect("field");
        assert!(wild.min_jacobian_determinant(1) < 0.0);
        // A coarser sampling cannot find a smaller minimum than the dense one.
        assert!(t.min_jacobian_determinant(4) >= det);
        assert_eq!(t.min_jacobian_determinant(0), det);
    }

    #[test]
    fn inverse_round_trip_is_accurate_for_a_moderate_field() {
        let t = BSpline2::random_smooth(128, 96, 24.0, 5.0, 3).expect("field");
        let mut worst = 0f64;
        for j in 0..10 {
            for i in 0..10 {
                // Interior points, so their preimages stay inside the domain.
                let p = [15.0 + i as f64 * 10.3, 12.0 + j as f64 * 7.4];
                let q = t.apply(p);
                let (back, residual) = t.inverse_apply(q, 100, 1e-10);
                assert!(residual <= 1e-10, "residual {residual} at {p:?}");
                worst = worst.max(norm(back, p));
            }
        }
        assert!(worst < 1e-8, "round-trip error {worst} px");
        // Too few iterations: the residual reports the remaining error.
        let q = t.apply([64.0, 48.0]);
        let (_, r1) = t.inverse_apply(q, 1, 0.0);
        assert!(r1 > 1e-6);
    }

    #[test]
    fn refine_preserves_the_field() {
        let t = field();
        let f = t.refine();
        assert_eq!(f.mesh_size(), [2 * t.mesh_size()[0], 2 * t.mesh_size()[1]]);
        assert_eq!(
            f.grid_spacing(),
            [t.grid_spacing()[0] / 2.0, t.grid_spacing()[1] / 2.0]
        );
        assert!(norm(f.domain_origin(), t.domain_origin()) < 1e-12);
        assert!(norm(f.domain_extent(), t.domain_extent()) < 1e-12);
        let mut worst = 0f64;
        let mut worst_jac = 0f64;
        for y in 0..47 {
            for x in 0..61 {
                let p = [x as f64 + 0.25 * (y % 3) as f64, y as f64];
                let p = [p[0].min(60.0), p[1]];
                worst = worst.max(norm(f.apply(p), t.apply(p)));
                let (a, b) = (f.spatial_jacobian(p), t.spatial_jacobian(p));
                for r in 0..2 {
                    worst_jac = worst_jac.max(norm(a[r], b[r]));
                }
            }
        }
        // Exact subdivision: only rounding remains.
        eprintln!("refine: field differs by {worst:.1e} px, Jacobian by {worst_jac:.1e}");
        assert!(worst < 1e-12, "refined field differs by {worst} px");
        assert!(worst_jac < 1e-12, "refined Jacobian differs by {worst_jac}");
        // Twice refined as well.
        let ff = f.refine();
        assert!(norm(ff.apply([33.3, 21.7]), t.apply([33.3, 21.7])) < 1e-12);
    }

    #[test]
    fn random_smooth_is_scaled_and_deterministic() {
        let a = BSpline2::random_smooth(80, 60, 16.0, 4.5, 42).expect("field");
        let b = BSpline2::random_smooth(80, 60, 16.0, 4.5, 42).expect("field");
        let c = BSpline2::random_smooth(80, 60, 16.0, 4.5, 43).expect("field");
        assert_eq!(a, b);
        assert_ne!(a.params(), c.params());
        let mut max = 0f64;
        for y in 0..60 {
            for x in 0..80 {
                let d = a.displacement([x as f64, y as f64]);
                max = max.max(d[0].hypot(d[1]));
            }
        }
        assert!((max - 4.5).abs() < 1e-12, "max displacement {max}");
        // The documented draws, all scaled by one factor.
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let draws: Vec<f64> = (0..a.n_params())
            .map(|_| 2.0 * ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) - 1.0)
            .collect();
        assert!(draws.iter().all(|d| (-1.0..1.0).contains(d)));
        let scale = a.params()[0] / draws[0];
        assert!(scale > 0.0);
        for (c, d) in a.params().iter().zip(&draws) {
            assert!((c - scale * d).abs() < 1e-12, "{c} vs {scale}·{d}");
        }
        let zero = BSpline2::random_smooth(80, 60, 16.0, 0.0, 42).expect("field");
        assert!(zero.params().iter().all(|&v| v == 0.0));
        assert!(BSpline2::random_smooth(80, 60, 16.0, -1.0, 42).is_err());
        assert!(BSpline2::random_smooth(80, 60, 16.0, f64::NAN, 42).is_err());
    }

    #[test]
    fn itk_text_round_trips_and_parser_validates() {
        let t = field();
        let block = t.itk_tfm_block();
        let mut lines = block.lines();
        assert_eq!(lines.next(), Some("Transform: BSplineTransform_double_2_2"));
        let parse = |line: Option<&str>, prefix: &str| -> Vec<f64> {
            line.and_then(|l| l.strip_prefix(prefix))
                .expect("line")
                .split_whitespace()
                .map(|v| v.parse().expect("float"))
                .collect()
        };
        let params = parse(lines.next(), "Parameters: ");
        let fixed = parse(lines.next(), "FixedParameters: ");
        assert_eq!(fixed.len(), 10);
        assert_eq!(fixed, t.itk_fixed_parameters().to_vec());
        let back = BSpline2::from_itk_parameters(&params, &fixed).expect("parse");
        assert_eq!(back, t);
        assert!(t
            .itk_tfm_text()
            .starts_with("#Insight Transform File V1.0\n#Transform 0\n"));

        let err = |p: &[f64], f: &[f64]| BSpline2::from_itk_parameters(p, f).expect_err("bad");
        assert!(err(&params, &fixed[..9]).contains("10 fixed"));
        assert!(err(&params[1..], &fixed).contains("parameters"));
        let mut f = fixed.clone();
        f[7] = 0.5;
        assert!(err(&params, &f).contains("identity"));
        let mut f = fixed.clone();
        f[0] = 8.5;
        assert!(err(&params, &f).contains("whole"));
        let mut f = fixed.clone();
        f[4] = 0.0;
        assert!(err(&params, &f).contains("spacing"));
        let mut f = fixed.clone();
        f[2] = f64::NAN;
        assert!(err(&params, &f).contains("non-finite"));
        let mut p = params.clone();
        p[3] = f64::INFINITY;
        assert!(err(&p, &fixed).contains("non-finite"));
        let mut u = t.clone();
        assert!(u.set_params(&p).is_err());
        assert!(u.set_params(&params[1..]).is_err());
        assert_eq!(u, t);
    }

    #[test]
    fn serde_round_trip_validates() {
        let t = field();
        let json = serde_json::to_string(&t).expect("json");
        let back: BSpline2 = serde_json::from_str(&json).expect("back");
        assert_eq!(back, t);
        let bad = json.replacen("\"grid_size\":[8,", "\"grid_size\":[9,", 1);
        assert_ne!(bad, json);
        let e = serde_json::from_str::<BSpline2>(&bad).expect_err("bad size");
        assert!(e.to_string().contains("parameters"), "{e}");
    }
}
