//! Per-level precomputation for one image: quantisation into α-levels, the point sets that are
//! sampled, and the alpha distance-and-gradient tables that are looked up.
//!
//! For a target image with quantised map `q ∈ {0..Q}` and `k = 1..Q`:
//! `D⁺_k` is the distance to `{q ≥ k}` and `D⁻_k` the distance to `{q ≤ Q − k}` (both clipped at
//! `dmax`, gradients by central differences and zero inside the set). With cumulative sums
//! `U_i = (1/Q) Σ_{k≤i} D⁺_k` and `V_j = (1/Q) Σ_{k≤j} D⁻_k`, the table a source point of level `i`
//! reads is `DT_i = U_i + V_{Q−i}` (distance and gradient together).

use comir_image::Image;
use rayon::prelude::*;

use crate::edt::{edt_sq_into, EdtScratch};
use crate::hugepages;

/// One table entry: the distance and its gradient (per full-resolution pixel) at one pixel.
///
/// Kept as one 8-byte record per pixel (not one array per component) because every lookup
/// reads all three values at the same four pixels: the two pixels of a row then share a cache
/// line, where separate arrays would touch three times as many lines. The lookups are random
/// reads bound by memory, so the record is as small as the values allow: the distance stays
/// `f32`, and the gradient components are fixed-point `i16` in units of `1/GRAD_SCALE`. They
/// cannot exceed 1 in magnitude: a distance map is 1-Lipschitz, so a central (or one-sided)
/// difference per pixel is at most 1, and a table sums exactly `Q` maps, each weighted `1/Q`. The
/// resolution, 3·10⁻⁵, is far below the sampling noise of 1 % of the points per iteration.
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub(crate) struct Entry {
    /// The distance (full-resolution pixels).
    pub d: f32,
    /// `∂d/∂x · GRAD_SCALE`, rounded.
    pub gx: i16,
    /// `∂d/∂y · GRAD_SCALE`, rounded.
    pub gy: i16,
}

/// Fixed-point scale of the gradient components: `|g| ≤ 1` maps onto the `i16` range.
pub(crate) const GRAD_SCALE: f32 = 32767.0;

impl Entry {
    /// An entry from a distance and a gradient, which is clamped to `[−1, 1]` (it only exceeds
    /// it by float rounding) and rounded to the fixed-point grid.
    #[inline]
    pub(crate) fn new(d: f32, gx: f32, gy: f32) -> Entry {
        // Round to nearest (ties to even) by the float-addition trick, exact for |v| < 2²²:
        // `f32::round` is a library call on baseline x86-64.
        const MAGIC: f32 = 12_582_912.0; // 1.5 · 2²³
        let fix = |g: f32| ((g.clamp(-1.0, 1.0) * GRAD_SCALE + MAGIC) - MAGIC) as i16;
        Entry {
            d,
            gx: fix(gx),
            gy: fix(gy),
        }
    }
}

/// Everything the measure needs from one image at one pyramid level.
pub(crate) struct LevelImage {
    /// Pixel spacing in full-resolution pixels (the pyramid factor).
    pub spacing: f64,
    /// Level width.
    pub width: usize,
    /// Level height.
    pub height: usize,
    /// Full-resolution image centre `((W − 1)/2, (H − 1)/2)`, the origin of point coordinates.
    pub center: [f64; 2],
    /// `Q + 1` tables of `width × height` entries, one per source α-level, concatenated
    /// (table `i` starts at `i·width·height`).
    pub table: Vec<Entry>,
    /// α-level of every pixel. Every pixel is a sample point (all weights one); pixel
    /// `j = y·width + x` sits at `(x·spacing, y·spacing) − center`, computed when sampled rather
    /// than stored, because reading stored coordinates at random costs a cache miss each.
    pub levels: Vec<u8>,
    /// Restricts the sample points to these pixel indices; `None` (always, outside tests) means
    /// every pixel.
    pub subset: Option<Vec<u32>>,
    /// The distance clip, also the largest value a table can hold.
    pub dmax: f32,
}

/// Quantises a value in `[0, 1]` into `0..=q`: `1 + floor(v·Q − 0.5)`, clamped.
#[inline]
pub(crate) fn quantise(v: f32, q: usize) -> u8 {
    let l = 1.0 + (v as f64 * q as f64 - 0.5).floor();
    l.clamp(0.0, q as f64) as u8
}

/// One row of `scale·(d, ∂d/∂x, ∂d/∂y)` for distance map `d` (`w × h`) at row `y`; gradients as
/// numpy's `np.gradient(d, spacing)` (central inside, one-sided at the borders) and zero where
/// `d == 0` (inside the set).
#[allow(clippy::too_many_arguments)]
fn feature_row(
    d: &[f32],
    y: usize,
    w: usize,
    h: usize,
    inv_spacing: f32,
    scale: f32,
    out_d: &mut [f32],
    out_gx: &mut [f32],
    out_gy: &mut [f32],
) {
    let row = &d[y * w..(y + 1) * w];
    let (up, down, cy) = if h < 2 {
        (row, row, 0.0)
    } else if y == 0 {
        (row, &d[w..2 * w], inv_spacing)
    } else if y + 1 == h {
        (&d[(y - 1) * w..y * w], row, inv_spacing)
    } else {
        (
            &d[(y - 1) * w..y * w],
            &d[(y + 1) * w..(y + 2) * w],
            0.5 * inv_spacing,
        )
    };
    let (cy, cx) = (cy * scale, 0.5 * inv_spacing * scale);
    for x in 0..w {
        let v = row[x];
        let keep = if v == 0.0 { 0.0 } else { 1.0 };
        out_d[x] = scale * v;
        out_gy[x] = keep * cy * (down[x] - up[x]);
        if x >= 1 && x + 1 < w {
            out_gx[x] = keep * cx * (row[x + 1] - row[x - 1]);
        }
    }
    if w >= 2 {
        let e = inv_spacing * scale;
        out_gx[0] = if row[0] == 0.0 {
            0.0
        } else {
            e * (row[1] - row[0])
        };
        out_gx[w - 1] = if row[w - 1] == 0.0 {
            0.0
        } else {
            e * (row[w - 1] - row[w - 2])
        };
    } else {
        out_gx[0] = 0.0;
    }
}

impl LevelImage {
    /// Builds the level data of an image already smoothed and subsampled by `spacing`
    /// (`level`), whose full-resolution centre is `center`, with `q` α-levels.
    pub(crate) fn build(level: &Image, spacing: usize, center: [f64; 2], q: usize) -> LevelImage {
        let (w, h) = (level.width(), level.height());
        let n = w * h;
        let qmap: Vec<u8> = level.data().iter().map(|&v| quantise(v, q)).collect();
        let sp = spacing as f64;
        // The clip: the level's diagonal in index units (as the reference), applied to distances
        // measured in full-resolution pixels.
        let dmax = (((w - 1) * (w - 1) + (h - 1) * (h - 1)) as f64).sqrt() as f32;
        // Distance maps D⁺_1..D⁺_Q, then D⁻_1..D⁻_Q.
        // One buffer for all 2Q maps, so that it is large enough for huge pages.
        let mut maps_buf: Vec<f32> = hugepages::zeroed(2 * q * n);
        maps_buf.par_chunks_mut(n).enumerate().for_each_init(
            || (EdtScratch::new(w), vec![false; n]),
            |(scratch, inside), (j, d)| {
                let k = (j % q + 1) as u8;
                if j < q {
                    inside.iter_mut().zip(&qmap).for_each(|(b, &l)| *b = l >= k);
                } else {
                    let top = q as u8 - k;
                    inside
                        .iter_mut()
                        .zip(&qmap)
                        .for_each(|(b, &l)| *b = l <= top);
                }
                edt_sq_into(inside, w, h, d, scratch);
                for v in d.iter_mut() {
                    *v = (v.sqrt() * spacing as f32).min(dmax);
                }
            },
        );
        let maps: Vec<&[f32]> = maps_buf.chunks(n).collect();
        // Row by row: the 2Q feature rows, then their prefix sums U_i and V_j, and
        // DT_i = U_i + V_{Q−i} written to every table. Blocks of rows run in parallel.
        let scale = 1.0 / q as f32;
        let inv_sp = 1.0 / spacing as f32;
        let mut table: Vec<Entry> = hugepages::zeroed((q + 1) * n);
        const BLOCK_ROWS: usize = 32;
        let mut blocks: Vec<Vec<&mut [Entry]>> =
            (0..h.div_ceil(BLOCK_ROWS)).map(|_| Vec::new()).collect();
        for level_table in table.chunks_mut(n) {
            for (b, rows) in level_table.chunks_mut(BLOCK_ROWS * w).enumerate() {
                blocks[b].push(rows);
            }
        }
        blocks
            .into_par_iter()
            .enumerate()
            .for_each(|(b, mut outs)| {
                let (mut fd, mut fgx, mut fgy) = (
                    vec![0f32; 2 * q * w],
                    vec![0f32; 2 * q * w],
                    vec![0f32; 2 * q * w],
                );
                // V_0..V_Q of one image row (V_0 = 0), and the running U_i.
                let (mut vd, mut vgx, mut vgy) = (
                    vec![0f32; (q + 1) * w],
                    vec![0f32; (q + 1) * w],
                    vec![0f32; (q + 1) * w],
                );
                let (mut ud, mut ugx, mut ugy) = (vec![0f32; w], vec![0f32; w], vec![0f32; w]);
                let y0 = b * BLOCK_ROWS;
                let rows = outs[0].len() / w;
                for y in y0..y0 + rows {
                    for (m, map) in maps.iter().enumerate() {
                        let r = m * w..(m + 1) * w;
                        feature_row(
                            map,
                            y,
                            w,
                            h,
                            inv_sp,
                            scale,
                            &mut fd[r.clone()],
                            &mut fgx[r.clone()],
                            &mut fgy[r],
                        );
                    }
                    // Whole rows at a time, so that the sums vectorise.
                    for j in 1..=q {
                        let f = (q + j - 1) * w;
                        for (v, src) in [(&mut vd, &fd), (&mut vgx, &fgx), (&mut vgy, &fgy)] {
                            let (prev, cur) = v.split_at_mut(j * w);
                            let prev = &prev[(j - 1) * w..];
                            for ((c, p), s) in cur[..w].iter_mut().zip(prev).zip(&src[f..f + w]) {
                                *c = p + s;
                            }
                        }
                    }
                    ud.fill(0.0);
                    ugx.fill(0.0);
                    ugy.fill(0.0);
                    let row_off = (y - y0) * w;
                    for (i, out) in outs.iter_mut().enumerate() {
                        if i > 0 {
                            let f = (i - 1) * w;
                            for (u, src) in [(&mut ud, &fd), (&mut ugx, &fgx), (&mut ugy, &fgy)] {
                                u.iter_mut().zip(&src[f..f + w]).for_each(|(u, s)| *u += s);
                            }
                        }
                        let r = (q - i) * w..(q - i + 1) * w;
                        let (vd, vgx, vgy) = (&vd[r.clone()], &vgx[r.clone()], &vgy[r]);
                        for (x, o) in out[row_off..row_off + w].iter_mut().enumerate() {
                            let (gx, gy) = (ugx[x] + vgx[x], ugy[x] + vgy[x]);
                            debug_assert!(gx.abs() <= 1.0 + 1e-5 && gy.abs() <= 1.0 + 1e-5);
                            *o = Entry::new(ud[x] + vd[x], gx, gy);
                        }
                    }
                }
            });
        LevelImage {
            spacing: sp,
            width: w,
            height: h,
            center,
            table,
            levels: qmap,
            subset: None,
            dmax,
        }
    }

    /// Number of sample points.
    pub(crate) fn len(&self) -> usize {
        self.subset.as_ref().map_or(self.levels.len(), Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edt::edt_sq;

    #[test]
    fn quantisation_matches_the_reference_formula() {
        assert_eq!(quantise(0.0, 7), 0);
        assert_eq!(quantise(1.0, 7), 7);
        assert_eq!(quantise(0.5, 7), 4); // 1 + floor(3.0)
        assert_eq!(quantise(0.07, 7), 0); // 1 + floor(−0.01)
        assert_eq!(quantise(0.08, 7), 1);
    }

    #[test]
    fn entries_keep_the_gradient_to_half_a_fixed_point_step() {
        let half = 0.5 / GRAD_SCALE;
        for k in 0..=2000 {
            let g = -1.0 + k as f32 / 1000.0;
            let e = Entry::new(3.25, g, -g);
            assert_eq!(e.d, 3.25);
            assert!((e.gx as f32 / GRAD_SCALE - g).abs() <= half * 1.0001, "{g}");
            assert!((e.gy as f32 / GRAD_SCALE + g).abs() <= half * 1.0001, "{g}");
        }
        assert_eq!(Entry::new(0.0, 0.0, -0.0), Entry::default());
        // Float rounding past the bound saturates instead of wrapping.
        let e = Entry::new(1.0, 1.000_01, -1.000_01);
        assert_eq!((e.gx, e.gy), (32767, -32767));
    }

    #[test]
    fn tables_are_the_two_sided_alpha_cut_sums() {
        // A small image with all levels present; check DT_i directly against its definition.
        let (w, h, q) = (13, 9, 4);
        let data: Vec<f32> = (0..w * h)
            .map(|i| (((i * 37) % 23) as f32 / 22.0).clamp(0.0, 1.0))
            .collect();
        let lvl = Image::from_vec(w, h, 1, data.clone()).expect("level");
        let li = LevelImage::build(&lvl, 2, [12.0, 8.0], q);
        let qm: Vec<u8> = data.iter().map(|&v| quantise(v, q)).collect();
        let dist = |pred: &dyn Fn(u8) -> bool| -> Vec<f32> {
            let inside: Vec<bool> = qm.iter().map(|&l| pred(l)).collect();
            edt_sq(&inside, w, h)
                .iter()
                .map(|v| (v.sqrt() * 2.0).min(li.dmax))
                .collect()
        };
        for i in 0..=q {
            let mut expect = vec![0f32; w * h];
            for k in 1..=i {
                let d = dist(&|l| l as usize >= k);
                expect
                    .iter_mut()
                    .zip(&d)
                    .for_each(|(e, v)| *e += v / q as f32);
            }
            for k in 1..=q - i {
                let d = dist(&|l| l as usize <= q - k);
                expect
                    .iter_mut()
                    .zip(&d)
                    .for_each(|(e, v)| *e += v / q as f32);
            }
            for (p, e) in expect.iter().enumerate() {
                assert!(
                    (li.table[i * w * h + p].d - e).abs() < 1e-4,
                    "level {i} pixel {p}"
                );
            }
            // A pixel of level i is inside every cut its own table sums, so it pays nothing.
            for (p, &l) in qm.iter().enumerate() {
                if l as usize == i {
                    assert_eq!(li.table[i * w * h + p].d, 0.0);
                }
            }
        }
    }
}
