//! Exact squared Euclidean distance transform (Felzenszwalb & Huttenlocher, "Distance Transforms
//! of Sampled Functions", Theory of Computing 8, 2012), for binary sets on a unit grid.
//!
//! Pass 1 finds, for every pixel, the vertical distance to the nearest set pixel in its column
//! (two linear scans run row by row, so they stream through memory). Pass 2 runs the 1-D lower
//! envelope of parabolas on every row with `f(x) = g(x)²`. Both passes are O(n).

/// Squared distance from every pixel of a `width × height` grid to the nearest pixel where
/// `inside` is true; `f32::INFINITY` everywhere when the set is empty.
///
/// # Panics
/// If `inside.len() != width * height`.
pub fn edt_sq(inside: &[bool], width: usize, height: usize) -> Vec<f32> {
    assert_eq!(inside.len(), width * height);
    let mut out = vec![0f32; width * height];
    let mut scratch = EdtScratch::new(width);
    edt_sq_into(inside, width, height, &mut out, &mut scratch);
    out
}

/// Reusable buffers for [`edt_sq_into`].
pub(crate) struct EdtScratch {
    g: Vec<u32>,
    v: Vec<i64>,
    f: Vec<i64>,
}

impl EdtScratch {
    pub(crate) fn new(width: usize) -> EdtScratch {
        EdtScratch {
            g: Vec::new(),
            v: vec![0; width],
            f: vec![0; width],
        }
    }
}

/// [`edt_sq`] writing into `out`, with caller-owned scratch space.
///
/// The row pass keeps the envelope as a stack of parabola apexes `(v, F = g² + v²)` and pops the
/// top `r` (below it `p`) when the new parabola `q` overtakes it no later than `r` overtakes `p`:
/// `(F_q − F_r)(r − p) ≤ (F_r − F_p)(q − r)`, the division-free, exact integer form of
/// Felzenszwalb–Huttenlocher's intersection test.
pub(crate) fn edt_sq_into(
    inside: &[bool],
    width: usize,
    height: usize,
    out: &mut [f32],
    s: &mut EdtScratch,
) {
    const NONE: u32 = u32::MAX;
    let n = width * height;
    // Pass 1a writes every entry, so a reused buffer needs no clearing.
    s.g.resize(n, NONE);
    let g = &mut s.g[..n];
    // Pass 1a: distance to the nearest set pixel above (or at) each pixel, row by row.
    for x in 0..width {
        g[x] = if inside[x] { 0 } else { NONE };
    }
    for y in 1..height {
        let (prev, cur) = g.split_at_mut(y * width);
        let prev = &prev[(y - 1) * width..];
        let cur = &mut cur[..width];
        let ins = &inside[y * width..(y + 1) * width];
        for ((c, &p), &i) in cur.iter_mut().zip(prev).zip(ins) {
            *c = if i { 0 } else { p.saturating_add(1) };
        }
    }
    // Pass 1b: the nearest set pixel below, bottom-up.
    for y in (0..height.saturating_sub(1)).rev() {
        let (cur, next) = g.split_at_mut((y + 1) * width);
        let cur = &mut cur[y * width..];
        let next = &next[..width];
        for (c, &nx) in cur.iter_mut().zip(next) {
            *c = (*c).min(nx.saturating_add(1));
        }
    }
    // Pass 2: lower envelope of the parabolas (x − q)² + g(q)² along each row.
    let (v, f) = (&mut s.v, &mut s.f);
    for y in 0..height {
        let grow = &g[y * width..(y + 1) * width];
        let orow = &mut out[y * width..(y + 1) * width];
        let mut k = 0usize; // number of parabolas in the envelope
        for (q, &gq) in grow.iter().enumerate() {
            if gq == NONE {
                continue;
            }
            let q = q as i64;
            let fq = gq as i64 * gq as i64 + q * q;
            while k >= 2 {
                let (r, fr) = (v[k - 1], f[k - 1]);
                let (p, fp) = (v[k - 2], f[k - 2]);
                if (fq - fr) * (r - p) <= (fr - fp) * (q - r) {
                    k -= 1;
                } else {
                    break;
                }
            }
            v[k] = q;
            f[k] = fq;
            k += 1;
        }
        if k == 0 {
            orow.iter_mut().for_each(|o| *o = f32::INFINITY);
            continue;
        }
        // F − 2xv + x² is the parabola's value at x; advance while the next one is no higher.
        let mut j = 0usize;
        for (x, o) in orow.iter_mut().enumerate() {
            let x = x as i64;
            while j + 1 < k && f[j + 1] - 2 * x * v[j + 1] <= f[j] - 2 * x * v[j] {
                j += 1;
            }
            *o = (f[j] - 2 * x * v[j] + x * x) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn brute(inside: &[bool], w: usize, h: usize) -> Vec<f32> {
        let mut out = vec![f32::INFINITY; w * h];
        for y in 0..h {
            for x in 0..w {
                for yy in 0..h {
                    for xx in 0..w {
                        if inside[yy * w + xx] {
                            let d = ((x as i64 - xx as i64).pow(2) + (y as i64 - yy as i64).pow(2))
                                as f32;
                            out[y * w + x] = out[y * w + x].min(d);
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn edt_equals_brute_force_on_random_masks() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for (w, h, p) in [
            (23, 17, 0.05),
            (31, 29, 0.01),
            (16, 40, 0.3),
            (1, 9, 0.2),
            (9, 1, 0.2),
        ] {
            let inside: Vec<bool> = (0..w * h).map(|_| rng.gen_bool(p)).collect();
            assert_eq!(edt_sq(&inside, w, h), brute(&inside, w, h), "{w}×{h} p={p}");
        }
        // A single point far from the rest, and a set touching the border.
        let mut inside = vec![false; 20 * 12];
        inside[11 * 20 + 19] = true;
        inside[3] = true;
        assert_eq!(edt_sq(&inside, 20, 12), brute(&inside, 20, 12));
    }

    #[test]
    fn empty_and_full_sets() {
        assert!(edt_sq(&[false; 12], 4, 3).iter().all(|v| v.is_infinite()));
        assert!(edt_sq(&[true; 12], 4, 3).iter().all(|&v| v == 0.0));
    }
}
