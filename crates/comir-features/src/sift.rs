//! A compact SIFT detector and descriptor (Lowe, IJCV 60(2), 2004), structured like OpenCV's
//! `cv::SIFT` so that its thresholds mean the same thing.
//!
//! Steps, with the constants of Lowe and OpenCV:
//! 1. the image is rescaled to `[0, 1]` (min–max), optionally upsampled ×2 (bilinear), and blurred
//!    to σ = [`FeatureConfig::sigma`] assuming an input blur of 0.5 px (1.0 px after upsampling);
//! 2. a Gaussian scale space of `s + 3` images per octave (`s` =
//!    [`FeatureConfig::scales_per_octave`]), each octave starting from the image with twice the
//!    octave's base σ of the previous one, subsampled by 2; octaves are added while the smaller
//!    side is at least [`FeatureConfig::min_octave_side`];
//! 3. difference-of-Gaussian (DoG) extrema over 3×3×3 neighbourhoods, 5 px away from the borders,
//!    with a preliminary threshold `0.5·contrast/s`;
//! 4. quadratic sub-pixel / sub-scale refinement (up to 5 steps), rejection when
//!    `|D(x̂)|·s < contrast_threshold` or when the principal-curvature ratio exceeds
//!    [`FeatureConfig::edge_threshold`] (`tr²·r ≥ (r + 1)²·det`);
//! 5. orientation: a 36-bin gradient histogram in a Gaussian window of σ = 1.5·scale (radius
//!    3·1.5·scale), smoothed with `[1 4 6 4 1]/16`; every local peak ≥ 0.8 of the maximum gives a
//!    keypoint, its angle refined by a parabola;
//! 6. the strongest [`FeatureConfig::max_features`] keypoints (by `|D(x̂)|`) get a 128-D
//!    descriptor: 4×4 spatial cells of 3·scale px × 8 orientation bins, Gaussian weight of
//!    σ = 2 cells, trilinear interpolation, normalisation, clipping at 0.2, renormalisation.
//!
//! Departures from OpenCV, all small: angles are measured in the image frame with `y` down (OpenCV
//! flips `y`), which only changes the sign convention; descriptor samples are placed relative to
//! the sub-pixel keypoint position instead of the rounded one; descriptors stay `f32` unit vectors
//! instead of being scaled to bytes; duplicate refined extrema are removed.

use std::f32::consts::PI;

use comir_image::ops::gaussian_blur;
use comir_image::Image;
use rayon::prelude::*;

use crate::FeatureConfig;

/// Length of a SIFT descriptor: 4 × 4 cells × 8 orientation bins.
pub const DESCRIPTOR_LEN: usize = DESCR_WIDTH * DESCR_WIDTH * DESCR_BINS;

/// Pixels at each octave border where no extremum is searched (OpenCV `SIFT_IMG_BORDER`).
const BORDER: usize = 5;
/// Refinement steps before an extremum is given up (OpenCV `SIFT_MAX_INTERP_STEPS`).
const MAX_INTERP_STEPS: usize = 5;
/// Bins of the orientation histogram.
const ORI_BINS: usize = 36;
/// Gaussian σ of the orientation window, in units of the keypoint scale.
const ORI_SIG_FCTR: f32 = 1.5;
/// Radius of the orientation window, in units of the keypoint scale.
const ORI_RADIUS: f32 = 3.0 * ORI_SIG_FCTR;
/// Secondary orientation peaks at least this fraction of the maximum make extra keypoints.
const ORI_PEAK_RATIO: f32 = 0.8;
/// Spatial cells per descriptor side.
const DESCR_WIDTH: usize = 4;
/// Orientation bins per descriptor cell.
const DESCR_BINS: usize = 8;
/// Width of a descriptor cell, in units of the keypoint scale.
const DESCR_SCL_FCTR: f32 = 3.0;
/// Descriptor entries are clipped at this fraction of the norm.
const DESCR_MAG_THR: f32 = 0.2;
/// Assumed blur of the input image, in pixels.
const INIT_SIGMA: f64 = 0.5;
/// Rows per parallel task in the filters.
const ROWS_PER_TASK: usize = 8;

/// One SIFT keypoint with its descriptor.
#[derive(Clone, Debug, PartialEq)]
pub struct Keypoint {
    /// Column in the input image (pixel centres at integers).
    pub x: f64,
    /// Row in the input image.
    pub y: f64,
    /// Scale σ in input-image pixels.
    pub sigma: f64,
    /// Dominant gradient orientation in radians, `[0, 2π)`, measured from the `+x` axis towards
    /// `+y` (clockwise on screen, since `y` points down).
    pub angle_rad: f64,
    /// Contrast `|D(x̂)|` of the refined DoG extremum on the `[0, 1]`-rescaled image.
    pub response: f32,
    /// Octave index: 0 is the input resolution, −1 the ×2 upsampled one.
    pub octave: i32,
    /// The unit-norm 128-D descriptor, ordered (row cell, column cell, orientation bin).
    pub descriptor: [f32; DESCRIPTOR_LEN],
}

/// A single-channel float plane.
#[derive(Clone, Debug)]
struct Plane {
    w: usize,
    h: usize,
    data: Vec<f32>,
}

impl Plane {
    #[inline]
    fn at(&self, x: usize, y: usize) -> f32 {
        self.data[y * self.w + x]
    }
}

/// `atan2(y, x)` in `(−π, π]` by a degree-11 minimax polynomial (error below 2·10⁻⁶ rad), several
/// times faster than libm's and exactly reproducible (plain arithmetic).
#[inline]
pub(crate) fn fast_atan2(y: f32, x: f32) -> f32 {
    let (ax, ay) = (x.abs(), y.abs());
    let (mn, mx) = if ax < ay { (ax, ay) } else { (ay, ax) };
    if mx == 0.0 {
        return 0.0;
    }
    let z = mn / mx;
    let z2 = z * z;
    let mut a = z
        * (0.999_977_26
            + z2 * (-0.332_623_47
                + z2 * (0.193_543_46
                    + z2 * (-0.116_432_87 + z2 * (0.052_653_32 + z2 * -0.011_721_2)))));
    if ay > ax {
        a = std::f32::consts::FRAC_PI_2 - a;
    }
    if x < 0.0 {
        a = PI - a;
    }
    if y < 0.0 {
        -a
    } else {
        a
    }
}

/// Separable Gaussian blur (kernel truncated at 4σ, mirrored edges), through
/// [`gaussian_blur`]: rows are filtered in parallel, and every output value is computed by the
/// same sequence of operations whatever the thread count, so the result is deterministic.
fn blur(src: &Plane, sigma: f64) -> Plane {
    if sigma <= 0.0 || src.w == 0 || src.h == 0 {
        return src.clone();
    }
    let img =
        Image::from_vec(src.w, src.h, 1, src.data.clone()).expect("a plane holds w × h values");
    Plane {
        w: src.w,
        h: src.h,
        data: gaussian_blur(&img, sigma).into_vec(),
    }
}

/// Every other pixel, starting at `(0, 0)`: octave pixel `i` is pixel `2i` of the finer octave.
fn half(src: &Plane) -> Plane {
    let (w, h) = (src.w.div_ceil(2), src.h.div_ceil(2));
    let mut data = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            data.push(src.at(2 * x, 2 * y));
        }
    }
    Plane { w, h, data }
}

/// Bilinear ×2 upsampling with pixel-centre alignment: output pixel `u` samples input position
/// `(u + 0.5)/2 − 0.5`, clamped to the image (OpenCV `resize(INTER_LINEAR)`).
fn double(src: &Plane) -> Plane {
    let (w, h) = (2 * src.w, 2 * src.h);
    let coord = |u: usize, n: usize| -> (usize, usize, f32) {
        let v = ((u as f32 + 0.5) * 0.5 - 0.5).clamp(0.0, (n - 1) as f32);
        let i0 = (v.floor() as usize).min(n - 1);
        let i1 = (i0 + 1).min(n - 1);
        (i0, i1, v - i0 as f32)
    };
    let mut data = Vec::with_capacity(w * h);
    for y in 0..h {
        let (y0, y1, fy) = coord(y, src.h);
        for x in 0..w {
            let (x0, x1, fx) = coord(x, src.w);
            let top = src.at(x0, y0) + fx * (src.at(x1, y0) - src.at(x0, y0));
            let bot = src.at(x0, y1) + fx * (src.at(x1, y1) - src.at(x0, y1));
            data.push(top + fy * (bot - top));
        }
    }
    Plane { w, h, data }
}

/// One octave of the scale space.
struct Octave {
    w: usize,
    h: usize,
    /// `s + 3` Gaussian images.
    gauss: Vec<Plane>,
    /// `s + 2` DoG images.
    dog: Vec<Plane>,
}

impl Octave {
    #[inline]
    fn d(&self, layer: usize, x: usize, y: usize) -> f32 {
        self.dog[layer].data[y * self.w + x]
    }
}

/// Builds the Gaussian and DoG pyramids of the prepared base image.
fn build_pyramid(base: Plane, cfg: &FeatureConfig) -> Vec<Octave> {
    let s = cfg.scales_per_octave;
    let n_layers = s + 3;
    let k = 2f64.powf(1.0 / s as f64);
    // Incremental blur between consecutive layers.
    let mut sig = vec![cfg.sigma; n_layers];
    for (i, v) in sig.iter_mut().enumerate().skip(1) {
        let prev = cfg.sigma * k.powi(i as i32 - 1);
        let total = prev * k;
        *v = (total * total - prev * prev).sqrt();
    }
    let mut octaves: Vec<Octave> = Vec::new();
    let mut first = base;
    loop {
        let (w, h) = (first.w, first.h);
        let mut gauss = Vec::with_capacity(n_layers);
        gauss.push(first);
        for &sg in &sig[1..] {
            let next = blur(&gauss[gauss.len() - 1], sg);
            gauss.push(next);
        }
        let dog = gauss
            .windows(2)
            .map(|p| Plane {
                w,
                h,
                data: p[1]
                    .data
                    .iter()
                    .zip(&p[0].data)
                    .map(|(a, b)| a - b)
                    .collect(),
            })
            .collect();
        let next = half(&gauss[s]);
        octaves.push(Octave { w, h, gauss, dog });
        if next.w.min(next.h) < cfg.min_octave_side || next.w.min(next.h) <= 2 * BORDER {
            break;
        }
        first = next;
    }
    octaves
}

/// A refined DoG extremum, in octave coordinates.
#[derive(Clone, Copy, Debug)]
struct Extremum {
    octave: usize,
    layer: usize,
    r: usize,
    c: usize,
    /// Sub-pixel column in the octave.
    x: f32,
    /// Sub-pixel row in the octave.
    y: f32,
    /// Scale in octave pixels: `σ·2^((layer + ξ)/s)`.
    scale: f32,
    response: f32,
}

/// Solves the symmetric 3×3 system `H x = b` by Cramer's rule; `None` when `H` is singular.
fn solve3(hm: [[f64; 3]; 3], b: [f64; 3]) -> Option<[f64; 3]> {
    let det3 = |m: [[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let det = det3(hm);
    let scale = hm.iter().flatten().fold(0f64, |a, v| a.max(v.abs()));
    if !det.is_finite() || det.abs() <= 1e-12 * scale.powi(3) || scale == 0.0 {
        return None;
    }
    let mut x = [0.0; 3];
    for (col, xv) in x.iter_mut().enumerate() {
        let mut m = hm;
        for row in 0..3 {
            m[row][col] = b[row];
        }
        *xv = det3(m) / det;
    }
    Some(x)
}

/// Gradient and Hessian of the DoG at an integer scale-space position.
fn derivatives(o: &Octave, l: usize, r: usize, c: usize) -> ([f64; 3], [[f64; 3]; 3]) {
    let d = |l: usize, r: usize, c: usize| o.d(l, c, r) as f64;
    let v2 = 2.0 * d(l, r, c);
    let dd = [
        (d(l, r, c + 1) - d(l, r, c - 1)) * 0.5,
        (d(l, r + 1, c) - d(l, r - 1, c)) * 0.5,
        (d(l + 1, r, c) - d(l - 1, r, c)) * 0.5,
    ];
    let dxx = d(l, r, c + 1) + d(l, r, c - 1) - v2;
    let dyy = d(l, r + 1, c) + d(l, r - 1, c) - v2;
    let dss = d(l + 1, r, c) + d(l - 1, r, c) - v2;
    let dxy =
        (d(l, r + 1, c + 1) - d(l, r + 1, c - 1) - d(l, r - 1, c + 1) + d(l, r - 1, c - 1)) * 0.25;
    let dxs =
        (d(l + 1, r, c + 1) - d(l + 1, r, c - 1) - d(l - 1, r, c + 1) + d(l - 1, r, c - 1)) * 0.25;
    let dys =
        (d(l + 1, r + 1, c) - d(l + 1, r - 1, c) - d(l - 1, r + 1, c) + d(l - 1, r - 1, c)) * 0.25;
    (dd, [[dxx, dxy, dxs], [dxy, dyy, dys], [dxs, dys, dss]])
}

/// Quadratic refinement of a DoG extremum (OpenCV `adjustLocalExtrema`): moves to the
/// neighbouring sample while the offset exceeds half a sample, then applies the contrast and edge
/// tests.
fn refine(
    o: &Octave,
    oi: usize,
    mut layer: usize,
    mut r: usize,
    mut c: usize,
    cfg: &FeatureConfig,
) -> Option<Extremum> {
    let s = cfg.scales_per_octave;
    let mut off = [0f64; 3];
    let mut converged = false;
    for _ in 0..MAX_INTERP_STEPS {
        let (dd, hm) = derivatives(o, layer, r, c);
        let x = solve3(hm, dd)?;
        off = [-x[0], -x[1], -x[2]];
        if off.iter().all(|v| v.abs() < 0.5) {
            converged = true;
            break;
        }
        if off.iter().any(|v| v.abs() > 1e6) {
            return None;
        }
        let step = |p: usize, v: f64| p as i64 + v.round() as i64;
        let (nc, nr, nl) = (step(c, off[0]), step(r, off[1]), step(layer, off[2]));
        if nl < 1
            || nl > s as i64
            || nc < BORDER as i64
            || nc >= (o.w - BORDER) as i64
            || nr < BORDER as i64
            || nr >= (o.h - BORDER) as i64
        {
            return None;
        }
        (c, r, layer) = (nc as usize, nr as usize, nl as usize);
    }
    if !converged {
        return None;
    }
    let (dd, hm) = derivatives(o, layer, r, c);
    let t = dd[0] * off[0] + dd[1] * off[1] + dd[2] * off[2];
    let contr = o.d(layer, c, r) as f64 + 0.5 * t;
    if contr.abs() * (s as f64) < cfg.contrast_threshold {
        return None;
    }
    let (dxx, dyy, dxy) = (hm[0][0], hm[1][1], hm[0][1]);
    let tr = dxx + dyy;
    let det = dxx * dyy - dxy * dxy;
    let er = cfg.edge_threshold;
    if det <= 0.0 || tr * tr * er >= (er + 1.0) * (er + 1.0) * det {
        return None;
    }
    Some(Extremum {
        octave: oi,
        layer,
        r,
        c,
        x: (c as f64 + off[0]) as f32,
        y: (r as f64 + off[1]) as f32,
        scale: (cfg.sigma * 2f64.powf((layer as f64 + off[2]) / s as f64)) as f32,
        response: contr.abs() as f32,
    })
}

/// All refined extrema of one octave layer, in row order.
fn layer_extrema(o: &Octave, oi: usize, layer: usize, cfg: &FeatureConfig) -> Vec<Extremum> {
    let s = cfg.scales_per_octave as f64;
    let thr = (0.5 * cfg.contrast_threshold / s) as f32;
    if o.w <= 2 * BORDER || o.h <= 2 * BORDER {
        return Vec::new();
    }
    let rows: Vec<Vec<Extremum>> = (BORDER..o.h - BORDER)
        .into_par_iter()
        .with_min_len(ROWS_PER_TASK)
        .map(|r| {
            let mut found = Vec::new();
            let (prev, cur, next) = (&o.dog[layer - 1], &o.dog[layer], &o.dog[layer + 1]);
            let w = o.w;
            for c in BORDER..o.w - BORDER {
                let i = r * w + c;
                let v = cur.data[i];
                if v.abs() <= thr {
                    continue;
                }
                let nb = [
                    i - w - 1,
                    i - w,
                    i - w + 1,
                    i - 1,
                    i,
                    i + 1,
                    i + w - 1,
                    i + w,
                    i + w + 1,
                ];
                let is_ext = if v > 0.0 {
                    nb.iter().all(|&j| {
                        v >= prev.data[j] && v >= next.data[j] && (j == i || v >= cur.data[j])
                    })
                } else {
                    nb.iter().all(|&j| {
                        v <= prev.data[j] && v <= next.data[j] && (j == i || v <= cur.data[j])
                    })
                };
                if is_ext {
                    if let Some(e) = refine(o, oi, layer, r, c, cfg) {
                        found.push(e);
                    }
                }
            }
            found
        })
        .collect();
    rows.into_iter().flatten().collect()
}

/// The smoothed 36-bin orientation histogram around an integer octave position (OpenCV
/// `calcOrientationHist`), angles measured with `y` down.
fn orientation_hist(img: &Plane, px: i64, py: i64, scale: f32) -> [f32; ORI_BINS] {
    let radius = (ORI_RADIUS * scale).round() as i64;
    let sigma = ORI_SIG_FCTR * scale;
    let exp_scale = -1.0 / (2.0 * sigma * sigma);
    let mut raw = [0f32; ORI_BINS];
    let (w, h) = (img.w as i64, img.h as i64);
    // exp(−(i² + j²)/2σ²) = e(i)·e(j).
    let ew: Vec<f32> = (-radius..=radius)
        .map(|i| (((i * i) as f32) * exp_scale).exp())
        .collect();
    for i in -radius..=radius {
        let y = py + i;
        if y <= 0 || y >= h - 1 {
            continue;
        }
        for j in -radius..=radius {
            let x = px + j;
            if x <= 0 || x >= w - 1 {
                continue;
            }
            let (xu, yu) = (x as usize, y as usize);
            let dx = img.at(xu + 1, yu) - img.at(xu - 1, yu);
            let dy = img.at(xu, yu + 1) - img.at(xu, yu - 1);
            let weight = ew[(i + radius) as usize] * ew[(j + radius) as usize];
            let mag = (dx * dx + dy * dy).sqrt();
            let mut ori = fast_atan2(dy, dx);
            if ori < 0.0 {
                ori += 2.0 * PI;
            }
            // `ori ≥ 0`, so adding 0.5 and truncating rounds to the nearest bin.
            let bin = ((ori * ORI_BINS as f32 / (2.0 * PI) + 0.5) as usize) % ORI_BINS;
            raw[bin] += weight * mag;
        }
    }
    let n = ORI_BINS;
    let mut hist = [0f32; ORI_BINS];
    for (i, hv) in hist.iter_mut().enumerate() {
        *hv = (raw[(i + n - 2) % n] + raw[(i + 2) % n]) * (1.0 / 16.0)
            + (raw[(i + n - 1) % n] + raw[(i + 1) % n]) * (4.0 / 16.0)
            + raw[i] * (6.0 / 16.0);
    }
    hist
}

/// The dominant orientations (radians, `[0, 2π)`) of an extremum.
fn orientations(o: &Octave, e: &Extremum) -> Vec<f32> {
    let hist = orientation_hist(&o.gauss[e.layer], e.c as i64, e.r as i64, e.scale);
    let n = ORI_BINS;
    let maxv = hist.iter().fold(0f32, |a, &v| a.max(v));
    if maxv <= 0.0 {
        return Vec::new();
    }
    let thr = maxv * ORI_PEAK_RATIO;
    let mut out = Vec::new();
    for j in 0..n {
        let (l, c, r) = (hist[(j + n - 1) % n], hist[j], hist[(j + 1) % n]);
        if c > l && c > r && c >= thr {
            let mut bin = j as f32 + 0.5 * (l - r) / (l - 2.0 * c + r);
            if bin < 0.0 {
                bin += n as f32;
            } else if bin >= n as f32 {
                bin -= n as f32;
            }
            let mut a = bin * 2.0 * PI / n as f32;
            if a >= 2.0 * PI {
                a -= 2.0 * PI;
            }
            out.push(a);
        }
    }
    out
}

/// The 128-D descriptor of a keypoint at sub-pixel octave position `(x, y)`, scale `scale` (octave
/// pixels) and orientation `ori` (OpenCV `calcSIFTDescriptor`, with samples placed relative to the
/// sub-pixel position).
fn descriptor(img: &Plane, x: f32, y: f32, ori: f32, scale: f32) -> [f32; DESCRIPTOR_LEN] {
    let d = DESCR_WIDTH;
    let n = DESCR_BINS;
    let bins_per_rad = n as f32 / (2.0 * PI);
    let exp_scale = -1.0 / (d as f32 * d as f32 * 0.5);
    let hist_width = DESCR_SCL_FCTR * scale;
    let diag = ((img.w * img.w + img.h * img.h) as f32).sqrt();
    let radius =
        ((hist_width * std::f32::consts::SQRT_2 * (d as f32 + 1.0) * 0.5).round()).min(diag) as i64;
    let (sin_t, cos_t) = ori.sin_cos();
    let (cos_t, sin_t) = (cos_t / hist_width, sin_t / hist_width);
    let (px, py) = (x.round() as i64, y.round() as i64);
    let (fx, fy) = (px as f32 - x, py as f32 - y);
    let (w, h) = (img.w as i64, img.h as i64);
    // (d + 2) × (d + 2) × (n + 2) histogram with a one-cell margin on every side.
    let stride_r = (d + 2) * (n + 2);
    let stride_c = n + 2;
    let mut hist = [0f32; (DESCR_WIDTH + 2) * (DESCR_WIDTH + 2) * (DESCR_BINS + 2)];
    // The Gaussian weight exp(−(c_rot² + r_rot²)/(d²/2)) depends only on the offset length, so it
    // factorises into a row and a column term.
    let wscale = exp_scale / (hist_width * hist_width);
    let ex: Vec<f32> = (-radius..=radius)
        .map(|j| {
            let v = j as f32 + fx;
            (v * v * wscale).exp()
        })
        .collect();
    for i in -radius..=radius {
        let yy = py + i;
        if yy <= 0 || yy >= h - 1 {
            continue;
        }
        let dyo = i as f32 + fy;
        let ey = (dyo * dyo * wscale).exp();
        for j in -radius..=radius {
            let xx = px + j;
            if xx <= 0 || xx >= w - 1 {
                continue;
            }
            let dxo = j as f32 + fx;
            // Offset in the keypoint frame (x axis along `ori`), in cells.
            let c_rot = dxo * cos_t + dyo * sin_t;
            let r_rot = -dxo * sin_t + dyo * cos_t;
            let rbin = r_rot + d as f32 / 2.0 - 0.5;
            let cbin = c_rot + d as f32 / 2.0 - 0.5;
            if !(rbin > -1.0 && rbin < d as f32 && cbin > -1.0 && cbin < d as f32) {
                continue;
            }
            let (xu, yu) = (xx as usize, yy as usize);
            let gx = img.at(xu + 1, yu) - img.at(xu - 1, yu);
            let gy = img.at(xu, yu + 1) - img.at(xu, yu - 1);
            let mag = (gx * gx + gy * gy).sqrt() * ey * ex[(j + radius) as usize];
            let mut obin = (fast_atan2(gy, gx) - ori) * bins_per_rad;
            while obin < 0.0 {
                obin += n as f32;
            }
            while obin >= n as f32 {
                obin -= n as f32;
            }
            // rbin + 1, cbin + 1 and obin are positive, so truncation is floor (and the +1 is the
            // histogram margin).
            let (rb, cb) = (rbin + 1.0, cbin + 1.0);
            let (r0, c0, o0) = (rb as usize, cb as usize, (obin as usize).min(n - 1));
            let (dr, dc, dor) = (rb - r0 as f32, cb - c0 as f32, obin - o0 as f32);
            let v_r1 = mag * dr;
            let v_r0 = mag - v_r1;
            let v_rc11 = v_r1 * dc;
            let v_rc10 = v_r1 - v_rc11;
            let v_rc01 = v_r0 * dc;
            let v_rc00 = v_r0 - v_rc01;
            let idx = r0 * stride_r + c0 * stride_c + o0;
            for (base, v) in [
                (idx, v_rc00),
                (idx + stride_c, v_rc01),
                (idx + stride_r, v_rc10),
                (idx + stride_r + stride_c, v_rc11),
            ] {
                let v1 = v * dor;
                hist[base] += v - v1;
                hist[base + 1] += v1;
            }
        }
    }
    let mut desc = [0f32; DESCRIPTOR_LEN];
    for i in 0..d {
        for j in 0..d {
            let idx = (i + 1) * stride_r + (j + 1) * stride_c;
            for k in 0..n {
                let wrapped = if k == 0 { hist[idx + n] } else { 0.0 };
                desc[(i * d + j) * n + k] = hist[idx + k] + wrapped;
            }
        }
    }
    let norm = desc.iter().map(|v| v * v).sum::<f32>().sqrt();
    let thr = norm * DESCR_MAG_THR;
    desc.iter_mut().for_each(|v| *v = v.min(thr));
    let norm = desc
        .iter()
        .map(|v| v * v)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    desc.iter_mut().for_each(|v| *v /= norm);
    desc
}

/// The input rescaled to `[0, 1]`, upsampled if asked, and blurred to the base σ.
fn prepare(img: &Image, cfg: &FeatureConfig) -> Plane {
    let norm = img.normalized();
    let mut p = Plane {
        w: norm.width(),
        h: norm.height(),
        data: norm.into_vec(),
    };
    let mut init = INIT_SIGMA;
    if cfg.upsample {
        p = double(&p);
        init *= 2.0;
    }
    let sig_diff = (cfg.sigma * cfg.sigma - init * init).max(0.01).sqrt();
    blur(&p, sig_diff)
}

/// Detects SIFT keypoints in a single-channel image and describes the strongest
/// [`FeatureConfig::max_features`] of them. The result is sorted by decreasing response (ties in
/// a fixed order), so it is deterministic.
pub fn detect_and_describe(img: &Image, cfg: &FeatureConfig) -> Vec<Keypoint> {
    if img.width() == 0 || img.height() == 0 || img.channels() != 1 {
        return Vec::new();
    }
    let octaves = build_pyramid(prepare(img, cfg), cfg);
    let s = cfg.scales_per_octave;
    let per_layer: Vec<Vec<Extremum>> = octaves
        .iter()
        .enumerate()
        .flat_map(|(oi, o)| (1..=s).map(move |l| (oi, o, l)))
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|(oi, o, l)| layer_extrema(o, oi, l, cfg))
        .collect();
    let mut ext: Vec<Extremum> = per_layer.into_iter().flatten().collect();
    // Two starting samples can converge to the same refined extremum.
    ext.sort_by_key(|e| (e.octave, e.layer, e.r, e.c));
    ext.dedup_by_key(|e| (e.octave, e.layer, e.r, e.c));
    // Strongest first. Every orientation of an extremum shares its response, so taking extrema in
    // this order and their orientations in increasing angle until `max_features` keypoints are
    // collected gives exactly the strongest keypoints, without computing the orientations of the
    // many weak extrema that would be discarded.
    ext.sort_by(|a, b| {
        b.response
            .total_cmp(&a.response)
            .then((a.octave, a.layer, a.r, a.c).cmp(&(b.octave, b.layer, b.r, b.c)))
    });
    let mut kps: Vec<(Extremum, f32)> = Vec::with_capacity(cfg.max_features);
    let chunk = cfg.max_features.clamp(16, 1024);
    for batch in ext.chunks(chunk) {
        let oriented: Vec<Vec<f32>> = batch
            .par_iter()
            .map(|e| {
                let mut a = orientations(&octaves[e.octave], e);
                a.sort_by(f32::total_cmp);
                a
            })
            .collect();
        for (e, angles) in batch.iter().zip(oriented) {
            kps.extend(angles.into_iter().map(|a| (*e, a)));
        }
        if kps.len() >= cfg.max_features {
            break;
        }
    }
    kps.truncate(cfg.max_features);
    let up = cfg.upsample;
    kps.par_iter()
        .map(|(e, ori)| {
            let o = &octaves[e.octave];
            let f = (1u64 << e.octave) as f64;
            let (bx, by) = (e.x as f64 * f, e.y as f64 * f);
            let (x, y, sigma, octave) = if up {
                (
                    (bx + 0.5) * 0.5 - 0.5,
                    (by + 0.5) * 0.5 - 0.5,
                    e.scale as f64 * f * 0.5,
                    e.octave as i32 - 1,
                )
            } else {
                (bx, by, e.scale as f64 * f, e.octave as i32)
            };
            Keypoint {
                x,
                y,
                sigma,
                angle_rad: *ori as f64,
                response: e.response,
                octave,
                descriptor: descriptor(&o.gauss[e.layer], e.x, e.y, *ori, e.scale),
            }
        })
        .collect()
}
