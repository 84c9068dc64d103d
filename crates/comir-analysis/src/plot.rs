//! PNG plots a person can read: the MDS scatter of both modalities and log-scale singular-value
//! spectra. Drawn pixel by pixel on an 800 × 600 white canvas with the crate's own 5 × 7 bitmap
//! font, so nothing beyond the PNG encoder is needed (no font files, no system libraries), and
//! written through a temporary file and a rename.

use std::path::Path;

use comir_image::Image;

use crate::{font, Error};

/// Plot width in pixels.
pub const WIDTH: usize = 800;
/// Plot height in pixels.
pub const HEIGHT: usize = 600;
/// Colour of modality A points (blue).
pub const COLOUR_A: [u8; 3] = [31, 119, 180];
/// Colour of modality B points (orange).
pub const COLOUR_B: [u8; 3] = [255, 127, 14];
/// Line colours of spectrum series, in order (repeating after the last).
pub const SERIES_COLOURS: [[u8; 3]; 8] = [
    [31, 119, 180],  // blue
    [255, 127, 14],  // orange
    [44, 160, 44],   // green
    [214, 39, 40],   // red
    [148, 103, 189], // purple
    [140, 86, 75],   // brown
    [227, 119, 194], // pink
    [23, 190, 207],  // cyan
];

const WHITE: [u8; 3] = [255, 255, 255];
const BLACK: [u8; 3] = [0, 0, 0];
const GRID: [u8; 3] = [225, 225, 225];
const PAIR_LINE: [u8; 3] = [185, 185, 185];
const TEXT_SCALE: usize = 2;

/// The plotting rectangle, in pixels, inclusive.
#[derive(Clone, Copy, Debug)]
struct Area {
    left: i64,
    top: i64,
    right: i64,
    bottom: i64,
}

impl Area {
    fn width(&self) -> f64 {
        (self.right - self.left) as f64
    }
    fn height(&self) -> f64 {
        (self.bottom - self.top) as f64
    }
}

/// Where the data go on both plots: room for the title above, tick labels left and below.
const AREA: Area = Area {
    left: 100,
    top: 70,
    right: 770,
    bottom: 520,
};

/// An RGB canvas; drawing outside it is clipped.
struct Canvas {
    w: usize,
    h: usize,
    px: Vec<[u8; 3]>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Canvas {
        Canvas {
            w,
            h,
            px: vec![WHITE; w * h],
        }
    }

    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            self.px[y as usize * self.w + x as usize] = c;
        }
    }

    fn fill_rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3]) {
        for y in y0.min(y1)..=y0.max(y1) {
            for x in x0.min(x1)..=x0.max(x1) {
                self.set(x, y, c);
            }
        }
    }

    fn rect_outline(&mut self, a: Area, c: [u8; 3]) {
        self.fill_rect(a.left, a.top, a.right, a.top, c);
        self.fill_rect(a.left, a.bottom, a.right, a.bottom, c);
        self.fill_rect(a.left, a.top, a.left, a.bottom, c);
        self.fill_rect(a.right, a.top, a.right, a.bottom, c);
    }

    /// A straight line (Bresenham) with a square brush of `thick` pixels.
    fn line(&mut self, p: (f64, f64), q: (f64, f64), c: [u8; 3], thick: i64) {
        let (mut x0, mut y0) = (p.0.round() as i64, p.1.round() as i64);
        let (x1, y1) = (q.0.round() as i64, q.1.round() as i64);
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let mut err = dx + dy;
        let lo = -(thick - 1) / 2;
        let hi = thick / 2;
        loop {
            self.fill_rect(x0 + lo, y0 + lo, x0 + hi, y0 + hi, c);
            if x0 == x1 && y0 == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x0 += sx;
            }
            if e2 <= dx {
                err += dx;
                y0 += sy;
            }
        }
    }

    /// A filled disc of radius `r` pixels, or a ring of the given width when `ring > 0`.
    fn disc(&mut self, cx: f64, cy: f64, r: f64, ring: f64, c: [u8; 3]) {
        let (x0, y0) = (cx.round() as i64, cy.round() as i64);
        let reach = r.ceil() as i64;
        for y in y0 - reach..=y0 + reach {
            for x in x0 - reach..=x0 + reach {
                let d = (((x - x0) * (x - x0) + (y - y0) * (y - y0)) as f64).sqrt();
                if d <= r && (ring <= 0.0 || d > r - ring) {
                    self.set(x, y, c);
                }
            }
        }
    }

    /// Text with its top-left corner at `(x, y)`.
    fn text(&mut self, x: i64, y: i64, text: &str, scale: usize, c: [u8; 3]) {
        let s = scale as i64;
        for (k, ch) in text.chars().enumerate() {
            let ox = x + (k * font::ADVANCE) as i64 * s;
            for gy in 0..font::CELL_HEIGHT {
                for gx in 0..font::WIDTH {
                    if font::ink(ch, gx, gy) {
                        let (px, py) = (ox + gx as i64 * s, y + gy as i64 * s);
                        self.fill_rect(px, py, px + s - 1, py + s - 1, c);
                    }
                }
            }
        }
    }

    /// Text turned a quarter left (reading bottom to top), its bounding box's top-left at
    /// `(x, y)`.
    fn text_up(&mut self, x: i64, y: i64, text: &str, scale: usize, c: [u8; 3]) {
        let s = scale as i64;
        let len = font::text_width(text, 1) as i64;
        for (k, ch) in text.chars().enumerate() {
            for gy in 0..font::CELL_HEIGHT {
                for gx in 0..font::WIDTH {
                    if font::ink(ch, gx, gy) {
                        // Glyph column u runs upward, glyph row v runs rightward.
                        let u = (k * font::ADVANCE + gx) as i64;
                        let v = gy as i64;
                        let (px, py) = (x + v * s, y + (len - 1 - u) * s);
                        self.fill_rect(px, py, px + s - 1, py + s - 1, c);
                    }
                }
            }
        }
    }

    /// Text centred on `cx`, shrunk and then cut to fit the canvas width.
    fn title(&mut self, cx: i64, y: i64, text: &str) {
        let room = self.w.saturating_sub(20);
        let (scale, shown) = if font::text_width(text, TEXT_SCALE) <= room {
            (TEXT_SCALE, text.to_string())
        } else {
            let max_chars = (room + 1) / font::ADVANCE;
            let mut t: String = text.chars().take(max_chars).collect();
            if text.chars().count() > max_chars {
                t = t
                    .chars()
                    .take(max_chars.saturating_sub(3))
                    .collect::<String>()
                    + "...";
            }
            (1, t)
        };
        let w = font::text_width(&shown, scale) as i64;
        self.text(cx - w / 2, y, &shown, scale, BLACK);
    }

    /// A legend box in the top right of [`AREA`]: one row per `(label, dot)` entry in the
    /// colours of [`SERIES_COLOURS`], a line sample (or a dot when `dot`) and the label.
    fn legend(&mut self, entries: &[(&str, bool)]) {
        if entries.is_empty() {
            return;
        }
        let text_w = entries
            .iter()
            .map(|(l, _)| font::text_width(l, TEXT_SCALE))
            .max()
            .unwrap_or(0) as i64;
        let row_h = 22;
        let (box_w, box_h) = (text_w + 50, row_h * entries.len() as i64 + 8);
        let (bx, by) = (AREA.right - 10 - box_w, AREA.top + 10);
        self.fill_rect(bx, by, bx + box_w, by + box_h, WHITE);
        self.rect_outline(
            Area {
                left: bx,
                top: by,
                right: bx + box_w,
                bottom: by + box_h,
            },
            BLACK,
        );
        for (s, (label, dot)) in entries.iter().enumerate() {
            let c = SERIES_COLOURS[s % SERIES_COLOURS.len()];
            let y = by + 8 + row_h * s as i64;
            if *dot {
                self.disc((bx + 22) as f64, (y + 7) as f64, 4.5, 0.0, c);
            } else {
                self.line(
                    ((bx + 8) as f64, (y + 7) as f64),
                    ((bx + 36) as f64, (y + 7) as f64),
                    c,
                    3,
                );
            }
            self.text(bx + 44, y, label, TEXT_SCALE, BLACK);
        }
    }

    fn save(&self, path: &Path) -> Result<(), Error> {
        let data: Vec<f32> = self
            .px
            .iter()
            .flat_map(|p| p.map(|v| v as f32 / 255.0))
            .collect();
        let img = Image::from_vec(self.w, self.h, 3, data)?;
        comir_image::save_png(path, &img)?;
        Ok(())
    }
}

/// Tick positions for `[lo, hi]`: multiples of 1, 2 or 5 × 10^k, at most about `max_ticks`, and
/// the number of decimals their labels need.
fn nice_ticks(lo: f64, hi: f64, max_ticks: usize) -> (Vec<f64>, usize) {
    let span = hi - lo;
    if span.is_nan() || span <= 0.0 || span.is_infinite() {
        return (vec![lo], 0);
    }
    let raw = span / max_ticks.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * mag);
    let decimals = (-(step.log10().floor())).max(0.0) as usize;
    // Ends that are multiples of the step count, whatever the division rounds to.
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    let ticks = (first..=last).map(|k| k as f64 * step).collect();
    (ticks, decimals)
}

fn tick_label(v: f64, decimals: usize) -> String {
    let v = if v == 0.0 { 0.0 } else { v }; // no "-0"
    if v != 0.0 && (v.abs() >= 1e6 || v.abs() < 1e-4) {
        format!("{v:.1e}")
    } else {
        format!("{v:.decimals$}")
    }
}

fn check_points(points: &[[f64; 2]], what: &'static str) -> Result<(), Error> {
    for (i, p) in points.iter().enumerate() {
        if let Some(col) = p.iter().position(|v| !v.is_finite()) {
            return Err(Error::NotFinite { what, row: i, col });
        }
    }
    Ok(())
}

/// Draws the MDS scatter of modality A (`a_points`, blue filled dots) and modality B
/// (`b_points`, orange rings, so that a B point on top of its A partner leaves both visible), with
/// a thin grey line from each `a_points[i]` to `b_points[i]` (for `i` below the shorter length),
/// equal scales on both axes (MDS distances mean the same in every direction), an axes box with
/// tick labels, a legend, the title and, when given, the stress-1.
///
/// # Errors
/// [`Error::NotFinite`] for NaN or ±∞ coordinates; [`Error::Image`] when the file cannot be
/// written.
pub fn mds_scatter_png(
    path: impl AsRef<Path>,
    a_points: &[[f64; 2]],
    b_points: &[[f64; 2]],
    title: &str,
    stress1: Option<f64>,
) -> Result<(), Error> {
    check_points(a_points, "modality A points")?;
    check_points(b_points, "modality B points")?;
    let mut cv = Canvas::new(WIDTH, HEIGHT);
    cv.title(WIDTH as i64 / 2, 12, title);
    if let Some(s) = stress1 {
        let text = format!("stress-1 = {s:.4}");
        cv.text(AREA.left, 42, &text, TEXT_SCALE, BLACK);
    }
    // Legend in the band above the plot, right-aligned.
    let legend_y = 42;
    let lx = AREA.right - 150;
    cv.disc((lx + 6) as f64, (legend_y + 7) as f64, 4.5, 0.0, COLOUR_A);
    cv.text(lx + 18, legend_y, "A", TEXT_SCALE, BLACK);
    cv.disc((lx + 76) as f64, (legend_y + 7) as f64, 5.5, 2.0, COLOUR_B);
    cv.text(lx + 88, legend_y, "B", TEXT_SCALE, BLACK);

    // Data box, padded by 5 %, same scale on both axes, centred.
    let all = a_points.iter().chain(b_points);
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for p in all {
        x0 = x0.min(p[0]);
        x1 = x1.max(p[0]);
        y0 = y0.min(p[1]);
        y1 = y1.max(p[1]);
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (-1.0, 1.0, -1.0, 1.0);
    }
    let (cx, cy) = (0.5 * (x0 + x1), 0.5 * (y0 + y1));
    let span = ((x1 - x0) / AREA.width()).max((y1 - y0) / AREA.height()) * 1.1;
    let per_px = if span > 0.0 {
        span
    } else {
        2.0 / AREA.height()
    };
    let (half_w, half_h) = (0.5 * AREA.width() * per_px, 0.5 * AREA.height() * per_px);
    let (dx0, dx1, dy0, dy1) = (cx - half_w, cx + half_w, cy - half_h, cy + half_h);
    let to_px = |p: &[f64; 2]| {
        (
            AREA.left as f64 + (p[0] - dx0) / per_px,
            AREA.bottom as f64 - (p[1] - dy0) / per_px,
        )
    };

    draw_ticks(&mut cv, (dx0, dx1), (dy0, dy1));
    cv.rect_outline(AREA, BLACK);
    let xl = "MDS 1";
    let xw = font::text_width(xl, TEXT_SCALE) as i64;
    cv.text(
        (AREA.left + AREA.right) / 2 - xw / 2,
        AREA.bottom + 40,
        xl,
        TEXT_SCALE,
        BLACK,
    );
    let yw = font::text_width("MDS 2", TEXT_SCALE) as i64;
    cv.text_up(
        12,
        (AREA.top + AREA.bottom) / 2 - yw / 2,
        "MDS 2",
        TEXT_SCALE,
        BLACK,
    );

    for (a, b) in a_points.iter().zip(b_points) {
        cv.line(to_px(a), to_px(b), PAIR_LINE, 1);
    }
    for a in a_points {
        let (x, y) = to_px(a);
        cv.disc(x, y, 4.5, 0.0, COLOUR_A);
    }
    for b in b_points {
        let (x, y) = to_px(b);
        cv.disc(x, y, 5.5, 2.0, COLOUR_B);
    }
    cv.save(path.as_ref())
}

/// Tick marks, grid lines and labels on both axes of [`AREA`], for data ranges `xr` and `yr`.
fn draw_ticks(cv: &mut Canvas, xr: (f64, f64), yr: (f64, f64)) {
    let (xt, xd) = nice_ticks(xr.0, xr.1, 8);
    for &t in &xt {
        let x = AREA.left + ((t - xr.0) / (xr.1 - xr.0) * AREA.width()).round() as i64;
        cv.fill_rect(x, AREA.top + 1, x, AREA.bottom - 1, GRID);
        cv.fill_rect(x, AREA.bottom, x, AREA.bottom + 5, BLACK);
        let label = tick_label(t, xd);
        let w = font::text_width(&label, TEXT_SCALE) as i64;
        cv.text(x - w / 2, AREA.bottom + 10, &label, TEXT_SCALE, BLACK);
    }
    let (yt, yd) = nice_ticks(yr.0, yr.1, 8);
    for &t in &yt {
        let y = AREA.bottom - ((t - yr.0) / (yr.1 - yr.0) * AREA.height()).round() as i64;
        cv.fill_rect(AREA.left + 1, y, AREA.right - 1, y, GRID);
        cv.fill_rect(AREA.left - 5, y, AREA.left, y, BLACK);
        let label = tick_label(t, yd);
        let w = font::text_width(&label, TEXT_SCALE) as i64;
        cv.text(AREA.left - 10 - w, y - 7, &label, TEXT_SCALE, BLACK);
    }
}

/// Most decades shown below the top of a spectrum plot; smaller values sit on the bottom edge.
pub const MAX_DECADES: i32 = 30;

/// Draws singular-value spectra: `log₁₀ σ_k` against the index k (from 0), one coloured line per
/// `(label, values)` series, a legend with the labels, and y tick labels as powers of ten.
///
/// The y axis runs from the decade at or below the smallest positive value to the decade at or
/// above the largest (at most [`MAX_DECADES`] decades). Values of 0 (a collapsed direction, as
/// [`crate::spectrum::covariance_spectrum`] reports it), negative values and values below those
/// decades are drawn on an extra bottom row labelled `0`, so a collapse shows as a cliff to the
/// floor.
///
/// # Errors
/// [`Error::NotFinite`] for NaN or ±∞ values (`row` is the series, `col` the index; negative
/// values are drawn as 0); [`Error::Image`] when the file cannot be written.
pub fn spectrum_png<S: AsRef<str>>(
    path: impl AsRef<Path>,
    series: &[(S, Vec<f64>)],
    title: &str,
) -> Result<(), Error> {
    for (s, (_, values)) in series.iter().enumerate() {
        if let Some(k) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::NotFinite {
                what: "spectrum",
                row: s,
                col: k,
            });
        }
    }
    let positive = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .filter(|&v| v > 0.0);
    let (lo, hi) = positive.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    // Exact powers of ten must land on their own decade, not one beyond, despite log10 rounding.
    let (top, mut bottom) = if hi > 0.0 {
        (
            (hi.log10() - 1e-9).ceil() as i32,
            (lo.log10() + 1e-9).floor() as i32,
        )
    } else {
        (0, -1)
    };
    bottom = bottom.max(top - MAX_DECADES);
    if bottom >= top {
        bottom = top - 1;
    }
    // Zeros (and values below the shown decades) get a row of their own, one decade below the
    // axis and labelled "0", so that a collapsed direction is not mistaken for a small value.
    let floor = series
        .iter()
        .flat_map(|(_, v)| v.iter())
        .any(|&v| v <= 0.0 || v.log10() < bottom as f64 - 1e-9);
    let axis_bottom = if floor { bottom - 1 } else { bottom };
    let max_len = series.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    let x_max = max_len.saturating_sub(1).max(1) as f64;
    let y_of =
        |e: f64| AREA.top as f64 + (top as f64 - e) / (top - axis_bottom) as f64 * AREA.height();
    let to_px = |k: usize, v: f64| {
        let e = if v > 0.0 && v.log10() >= bottom as f64 - 1e-9 {
            v.log10().min(top as f64)
        } else {
            axis_bottom as f64
        };
        (AREA.left as f64 + k as f64 / x_max * AREA.width(), y_of(e))
    };

    let mut cv = Canvas::new(WIDTH, HEIGHT);
    cv.title(WIDTH as i64 / 2, 12, title);

    // Decade grid and labels "10^e" (exponent raised, smaller), thinned to about 10 labels; the
    // top decade and the "0" row are always labelled.
    let every = ((top - axis_bottom + 9) / 10).max(1);
    for e in axis_bottom..=top {
        let y = y_of(e as f64).round() as i64;
        if e > axis_bottom && e < top {
            cv.fill_rect(AREA.left + 1, y, AREA.right - 1, y, GRID);
        }
        let is_floor = floor && e == axis_bottom;
        let crowds_floor = floor && !is_floor && e - axis_bottom < every;
        if !is_floor && ((top - e) % every != 0 || crowds_floor) {
            continue;
        }
        cv.fill_rect(AREA.left - 5, y, AREA.left, y, BLACK);
        if is_floor {
            let w = font::text_width("0", TEXT_SCALE) as i64;
            cv.text(AREA.left - 10 - w, y - 7, "0", TEXT_SCALE, BLACK);
            continue;
        }
        let exp = e.to_string();
        let w = font::text_width("10", TEXT_SCALE) as i64 + 2 + font::text_width(&exp, 1) as i64;
        let x = AREA.left - 10 - w;
        cv.text(x, y - 5, "10", TEXT_SCALE, BLACK);
        cv.text(
            x + font::text_width("10", TEXT_SCALE) as i64 + 2,
            y - 10,
            &exp,
            1,
            BLACK,
        );
    }
    let (xt, _) = nice_ticks(0.0, x_max, 8);
    for &t in &xt {
        let k = t.round();
        let x = AREA.left + (k / x_max * AREA.width()).round() as i64;
        cv.fill_rect(x, AREA.top + 1, x, AREA.bottom - 1, GRID);
        cv.fill_rect(x, AREA.bottom, x, AREA.bottom + 5, BLACK);
        let label = format!("{k:.0}");
        let w = font::text_width(&label, TEXT_SCALE) as i64;
        cv.text(x - w / 2, AREA.bottom + 10, &label, TEXT_SCALE, BLACK);
    }
    cv.rect_outline(AREA, BLACK);
    let xl = "index k";
    let xw = font::text_width(xl, TEXT_SCALE) as i64;
    cv.text(
        (AREA.left + AREA.right) / 2 - xw / 2,
        AREA.bottom + 40,
        xl,
        TEXT_SCALE,
        BLACK,
    );
    let yl = "singular value";
    let yw = font::text_width(yl, TEXT_SCALE) as i64;
    cv.text_up(
        12,
        (AREA.top + AREA.bottom) / 2 - yw / 2,
        yl,
        TEXT_SCALE,
        BLACK,
    );

    for (s, (_, values)) in series.iter().enumerate() {
        let c = SERIES_COLOURS[s % SERIES_COLOURS.len()];
        let pts: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .map(|(k, &v)| to_px(k, v))
            .collect();
        for w in pts.windows(2) {
            cv.line(w[0], w[1], c, 2);
        }
        // Dots when there are few enough to tell apart; a lone value needs one to show at all.
        if pts.len() <= 64 {
            for &(x, y) in &pts {
                cv.disc(x, y, 3.0, 0.0, c);
            }
        }
    }

    // Legend, top right inside the plot (spectra decay towards the bottom right, so the top right
    // is usually empty).
    let entries: Vec<(&str, bool)> = series.iter().map(|(l, _)| (l.as_ref(), false)).collect();
    cv.legend(&entries);
    cv.save(path.as_ref())
}

/// How an [`XySeries`] is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XyStyle {
    /// Points joined in order by a line, with a dot on each (when there are few).
    Line,
    /// Dots only (a scatter).
    Dots,
}

/// One labelled series of an x–y chart.
#[derive(Clone, Debug)]
pub struct XySeries {
    /// Legend text.
    pub label: String,
    /// `(x, y)` points; non-finite ones are skipped (a failed case has no error to draw).
    pub points: Vec<[f64; 2]>,
    /// Line or dots.
    pub style: XyStyle,
}

/// What an x–y chart shows besides its series.
#[derive(Clone, Debug, Default)]
pub struct XyChart {
    /// Title above the plot.
    pub title: String,
    /// Label under the x axis.
    pub x_label: String,
    /// Label left of the y axis (reading upwards).
    pub y_label: String,
    /// Fixed y range; the data's own range (padded) when absent. Points outside are drawn on
    /// the nearest edge, so a clipped outlier still counts visibly.
    pub y_range: Option<(f64, f64)>,
    /// A dashed horizontal reference line at this y, with its label (e.g. a success threshold).
    pub reference: Option<(f64, String)>,
}

/// Draws an x–y chart (linear axes): lines or scatters per series in the colours of
/// [`SERIES_COLOURS`], a legend, tick labels and an optional dashed reference line. For the
/// report's success-rate, error-scatter and loss-curve plots.
///
/// # Errors
/// [`Error::Image`] when the file cannot be written.
pub fn xy_png(path: impl AsRef<Path>, chart: &XyChart, series: &[XySeries]) -> Result<(), Error> {
    let finite = |p: &&[f64; 2]| p[0].is_finite() && p[1].is_finite();
    let pts = || series.iter().flat_map(|s| s.points.iter().filter(finite));
    let (mut x0, mut x1) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p[0]), b.max(p[0]))
    });
    let (mut y0, mut y1) = match chart.y_range {
        Some(r) => r,
        None => {
            let (a, b) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p[1]), b.max(p[1]))
            });
            let (a, b) = match &chart.reference {
                Some((r, _)) if r.is_finite() => (a.min(*r), b.max(*r)),
                _ => (a, b),
            };
            let pad = 0.05 * (b - a);
            (a - pad, b + pad)
        }
    };
    if !(x0.is_finite() && x1.is_finite()) {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 - x0 <= 0.0 {
        (x0, x1) = (x0 - 0.5, x1 + 0.5);
    }
    if !(y0.is_finite() && y1.is_finite()) {
        (y0, y1) = (0.0, 1.0);
    }
    if y1 - y0 <= 0.0 {
        (y0, y1) = (y0 - 0.5, y1 + 0.5);
    }
    let to_px = |p: &[f64; 2]| {
        let y = p[1].clamp(y0, y1);
        (
            AREA.left as f64 + (p[0] - x0) / (x1 - x0) * AREA.width(),
            AREA.bottom as f64 - (y - y0) / (y1 - y0) * AREA.height(),
        )
    };

    let mut cv = Canvas::new(WIDTH, HEIGHT);
    cv.title(WIDTH as i64 / 2, 12, &chart.title);
    draw_ticks(&mut cv, (x0, x1), (y0, y1));
    cv.rect_outline(AREA, BLACK);
    let xw = font::text_width(&chart.x_label, TEXT_SCALE) as i64;
    cv.text(
        (AREA.left + AREA.right) / 2 - xw / 2,
        AREA.bottom + 40,
        &chart.x_label,
        TEXT_SCALE,
        BLACK,
    );
    let yw = font::text_width(&chart.y_label, TEXT_SCALE) as i64;
    cv.text_up(
        12,
        (AREA.top + AREA.bottom) / 2 - yw / 2,
        &chart.y_label,
        TEXT_SCALE,
        BLACK,
    );
    if let Some((r, label)) = &chart.reference {
        if *r >= y0 && *r <= y1 {
            let (_, y) = to_px(&[x0, *r]);
            let mut x = AREA.left as f64;
            while x < AREA.right as f64 {
                let end = (x + 8.0).min(AREA.right as f64);
                cv.line((x, y), (end, y), BLACK, 1);
                x += 14.0;
            }
            cv.text(
                AREA.left + 6,
                y.round() as i64 - 18,
                label,
                TEXT_SCALE,
                BLACK,
            );
        }
    }
    for (s, sr) in series.iter().enumerate() {
        let c = SERIES_COLOURS[s % SERIES_COLOURS.len()];
        let p: Vec<(f64, f64)> = sr.points.iter().filter(finite).map(to_px).collect();
        if sr.style == XyStyle::Line {
            for w in p.windows(2) {
                cv.line(w[0], w[1], c, 2);
            }
        }
        if sr.style == XyStyle::Dots || p.len() <= 64 {
            for &(x, y) in &p {
                cv.disc(x, y, 3.5, 0.0, c);
            }
        }
    }
    // Legend, top right inside the plot.
    let entries: Vec<(&str, bool)> = series
        .iter()
        .map(|s| (s.label.as_str(), s.style == XyStyle::Dots))
        .collect();
    cv.legend(&entries);
    cv.save(path.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(path: &Path) -> (usize, usize, Vec<[u8; 3]>) {
        let img = comir_image::load(path).expect("decodes as an image");
        assert_eq!(img.channels(), 3);
        let px = img
            .data()
            .chunks_exact(3)
            .map(|p| [0, 1, 2].map(|k| (p[k] * 255.0).round() as u8))
            .collect();
        (img.width(), img.height(), px)
    }

    fn at(px: &[[u8; 3]], x: i64, y: i64) -> [u8; 3] {
        px[y as usize * WIDTH + x as usize]
    }

    /// Whether colour `c` is within `r` pixels of `(x, y)`.
    fn near(px: &[[u8; 3]], x: i64, y: i64, r: i64, c: [u8; 3]) -> bool {
        (y - r..=y + r).any(|yy| (x - r..=x + r).any(|xx| at(px, xx, yy) == c))
    }

    #[test]
    fn mds_scatter_shows_both_modalities_the_title_and_the_pair_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mds.png");
        let a = [[0.0, 0.0], [1.0, 0.5], [2.0, -1.0]];
        let b = [[0.1, 0.1], [1.5, 0.5], [2.0, 1.0]];
        mds_scatter_png(&path, &a, &b, "final representations", Some(0.0123)).expect("plot");
        let (w, h, px) = load(&path);
        assert_eq!((w, h), (WIDTH, HEIGHT));
        let count = |c: [u8; 3]| px.iter().filter(|&&p| p == c).count();
        assert!(count(COLOUR_A) > 50, "A pixels: {}", count(COLOUR_A));
        assert!(count(COLOUR_B) > 50, "B pixels: {}", count(COLOUR_B));
        assert!(
            count(PAIR_LINE) > 20,
            "pair-line pixels: {}",
            count(PAIR_LINE)
        );
        // Title band and stress line have ink.
        let ink =
            |y0: usize, y1: usize| (y0..y1).any(|y| (0..WIDTH).any(|x| px[y * WIDTH + x] == BLACK));
        assert!(ink(10, 30), "title");
        assert!(ink(40, 58), "stress and legend");
        // White background in a corner.
        assert_eq!(px[0], WHITE);
        // Only the plot is left in the folder (written through a renamed temporary file).
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn coincident_pairs_keep_both_colours_visible() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mds_same.png");
        let a = [[0.0, 0.0], [1.0, 1.0]];
        mds_scatter_png(&path, &a, &a, "perfect overlap", None).expect("plot");
        let (_, _, px) = load(&path);
        assert!(px.contains(&COLOUR_A) && px.contains(&COLOUR_B));
    }

    #[test]
    fn mds_scatter_handles_degenerate_and_refuses_bad_points() {
        let dir = tempfile::tempdir().expect("tempdir");
        mds_scatter_png(dir.path().join("empty.png"), &[], &[], "", None).expect("empty");
        mds_scatter_png(dir.path().join("one.png"), &[[3.0, 3.0]], &[], "x", None).expect("one");
        let err = mds_scatter_png(
            dir.path().join("nan.png"),
            &[[0.0, f64::NAN]],
            &[],
            "",
            None,
        )
        .expect_err("nan");
        assert!(matches!(err, Error::NotFinite { row: 0, col: 1, .. }));
        assert!(!dir.path().join("nan.png").exists());
    }

    #[test]
    fn spectrum_points_land_on_their_decades() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spectrum.png");
        // 10^0 … 10^-5: the axis spans exactly these decades, so the first point sits at the top
        // left corner of the plot area, the last at the bottom right, and 10^-2 two fifths down.
        let decay: Vec<f64> = (0..6).map(|k| 10f64.powi(-k)).collect();
        let flat = vec![1e-1; 6];
        spectrum_png(
            &path,
            &[
                ("bottleneck A".to_string(), decay),
                ("flat".to_string(), flat),
            ],
            "spectrum",
        )
        .expect("plot");
        let (w, h, px) = load(&path);
        assert_eq!((w, h), (WIDTH, HEIGHT));
        let c0 = SERIES_COLOURS[0];
        assert!(
            near(&px, AREA.left, AREA.top, 2, c0),
            "first point at top left"
        );
        assert!(
            near(&px, AREA.right, AREA.bottom, 2, c0),
            "last point at bottom right"
        );
        let x2 = AREA.left + (2.0 * AREA.width() / 5.0).round() as i64;
        let y2 = AREA.top + (2.0 * AREA.height() / 5.0).round() as i64;
        assert!(near(&px, x2, y2, 2, c0), "10^-2 at two fifths");
        // Nothing of the first series near the top right (it has decayed by then).
        assert!(!near(&px, AREA.right - 3, AREA.top + 60, 3, c0));
        // The flat series runs along the 10^-1 row.
        let y1 = AREA.top + (AREA.height() / 5.0).round() as i64;
        let c1 = SERIES_COLOURS[1];
        for k in 0..6 {
            let x = AREA.left + (k as f64 * AREA.width() / 5.0).round() as i64;
            assert!(near(&px, x, y1, 2, c1), "flat series at index {k}");
        }
        // Title, legend text and tick labels have ink.
        let ink = |x0: i64, x1: i64, y0: i64, y1: i64| {
            (y0..y1).any(|y| (x0..x1).any(|x| at(&px, x, y) == BLACK))
        };
        assert!(ink(0, WIDTH as i64, 10, 30), "title");
        assert!(
            ink(0, AREA.left - 5, AREA.top - 12, AREA.top + 12),
            "top tick label"
        );
        assert!(
            ink(AREA.left, AREA.right, AREA.bottom + 8, AREA.bottom + 30),
            "x labels"
        );
    }

    #[test]
    fn zeros_go_to_the_floor_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("collapse.png");
        spectrum_png(&path, &[("A", vec![1.0, 1e-3, 0.0, 0.0])], "collapse").expect("plot");
        let (_, _, px) = load(&path);
        let c0 = SERIES_COLOURS[0];
        // Decades 10^0 … 10^-3 plus the "0" row: 10^-3 sits three quarters down, zeros at the
        // bottom.
        let x1 = AREA.left + (AREA.width() / 3.0).round() as i64;
        let y3 = AREA.top + (0.75 * AREA.height()).round() as i64;
        assert!(near(&px, x1, y3, 2, c0), "10^-3 above the floor row");
        assert!(
            near(&px, AREA.right, AREA.bottom, 2, c0),
            "zero on the floor"
        );
        let err = spectrum_png(dir.path().join("x.png"), &[("A", vec![1.0, f64::NAN])], "")
            .expect_err("nan");
        assert!(matches!(err, Error::NotFinite { row: 0, col: 1, .. }));
        // Degenerate inputs still draw.
        spectrum_png(dir.path().join("e.png"), &[] as &[(&str, Vec<f64>)], "").expect("none");
        spectrum_png(dir.path().join("z.png"), &[("z", vec![0.0; 3])], "").expect("zeros");
        spectrum_png(dir.path().join("o.png"), &[("o", vec![2.0])], "").expect("one");
    }

    #[test]
    fn text_draws_ink_where_it_is_put() {
        let mut cv = Canvas::new(100, 40);
        cv.text(10, 10, "Ab1", 2, BLACK);
        let inside = (10..24).any(|y| (10..44).any(|x| cv.px[y * 100 + x] == BLACK));
        let outside = cv
            .px
            .iter()
            .enumerate()
            .any(|(i, &p)| p == BLACK && (i / 100 < 10 || i / 100 >= 24 || i % 100 >= 44));
        assert!(inside && !outside);
        // A long title is shrunk and cut rather than run off the canvas.
        let mut cv = Canvas::new(200, 40);
        cv.title(100, 5, &"x".repeat(100));
        assert!(cv.px.contains(&BLACK));
    }

    #[test]
    fn nice_ticks_are_round_numbers() {
        assert_eq!(
            nice_ticks(0.0, 10.0, 5),
            (vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0], 0)
        );
        let (t, d) = nice_ticks(-0.3, 0.3, 6);
        assert_eq!(d, 1);
        assert_eq!(t.len(), 7);
        assert_eq!(tick_label(-0.0, 1), "0.0");
        assert_eq!(tick_label(0.5, 1), "0.5");
    }

    #[test]
    fn xy_chart_places_points_by_their_values_and_clips_outliers_to_the_edge() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("xy.png");
        let chart = XyChart {
            title: "success".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            y_range: Some((0.0, 100.0)),
            reference: Some((50.0, "half".into())),
        };
        let series = [
            XySeries {
                label: "line".into(),
                points: vec![[0.0, 0.0], [10.0, 100.0]],
                style: XyStyle::Line,
            },
            XySeries {
                label: "dots".into(),
                // (5, 1000) lies above the range: drawn on the top edge; NaN is skipped.
                points: vec![[5.0, 1000.0], [f64::NAN, 3.0]],
                style: XyStyle::Dots,
            },
        ];
        xy_png(&path, &chart, &series).expect("plot");
        let (_, _, px) = load(&path);
        let (blue, orange) = (SERIES_COLOURS[0], SERIES_COLOURS[1]);
        // The line runs from the bottom-left corner of the data area to the top-right one;
        // its middle is at (5, 50), the centre of the area.
        let (cx, cy) = ((AREA.left + AREA.right) / 2, (AREA.top + AREA.bottom) / 2);
        assert!(near(&px, AREA.left, AREA.bottom, 4, blue));
        assert!(near(&px, cx, cy, 3, blue));
        // (7.5, 75), left of the legend box in the top-right corner.
        let (qx, qy) = (
            AREA.left + (0.75 * AREA.width()) as i64,
            AREA.bottom - (0.75 * AREA.height()) as i64,
        );
        assert!(near(&px, qx, qy, 3, blue));
        // The outlier sits on the top edge at x = 5.
        assert!(near(&px, cx, AREA.top, 4, orange));
        assert!(!near(&px, cx, cy + 60, 20, orange));
        // The dashed reference line crosses the middle height.
        let dashes = (AREA.left..AREA.right)
            .filter(|&x| at(&px, x, cy) == BLACK)
            .count();
        assert!(dashes > 100, "{dashes}");
    }
}
