//! CMIF: mutual information of two label maps for every integer translation of a window at once,
//! from FFT cross-correlations of the label indicator images.

use crate::fft2::{fast_len, Fft2, C};

/// Marks a rotated moving pixel that falls outside the moving image.
pub(crate) const NO_LABEL: u8 = u8::MAX;

/// The nearest integer, ties rounded up (`floor(v + 0.5)`); values below −2³⁰ map to −2³⁰.
/// Written with a truncating cast because `f64::round` is a library call without SSE4.1.
#[inline]
pub(crate) fn nearest(v: f64) -> f64 {
    const OFFSET: f64 = (1u64 << 30) as f64;
    ((v + 0.5 + OFFSET).max(0.0) as u64) as f64 - OFFSET
}

/// A quantised image: `data[y·w + x]` in `0..q`.
#[derive(Clone, Debug)]
pub(crate) struct LabelMap {
    pub(crate) w: usize,
    pub(crate) h: usize,
    pub(crate) data: Vec<u8>,
}

/// Everything that depends only on the level and the window size, shared by all angles.
///
/// The translation `u` (in level pixels, fixed frame) pairs fixed pixel `p` with the rotated
/// moving label map `G(p + u)`, where `G(q) = M(round(R(θ)(q − c) + c))` (nearest neighbour,
/// `NO_LABEL` outside). In fixed-to-moving terms the pair `(θ, u)` is the transform
/// `T(p) = R(θ)(p − c) + c + R(θ)u`.
pub(crate) struct Plan<'a> {
    moving: &'a LabelMap,
    q: usize,
    /// Window size (number of translations per axis).
    pub(crate) lx: usize,
    pub(crate) ly: usize,
    /// Size of the rotated moving label map that the window can reach.
    gx: usize,
    gy: usize,
    fft: Fft2,
    /// `conj(FFT([F = a]))` per fixed label, transposed layout.
    fixed_spec: Vec<Vec<C>>,
    /// `n ln n` for every possible count.
    table: Vec<f64>,
    /// Translations whose overlap is below this count are invalid.
    pub(crate) min_count: u32,
}

/// Per-worker buffers, reused across angles.
pub(crate) struct Workspace {
    glab: Vec<u8>,
    gspec: Vec<Vec<C>>,
    buf: Vec<C>,
    out: Vec<C>,
    scratch: Vec<C>,
    /// Rounded joint counts, `[(a·q + b)·wl + idx]`.
    counts: Vec<u32>,
    /// Overlap count per translation of the last surface.
    pub(crate) n: Vec<u32>,
    /// MI (nats) per translation of the last surface; `-inf` where invalid.
    pub(crate) mi: Vec<f64>,
}

/// The best translation of one angle.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AngleEval {
    /// MI at the best translation (`-inf` if no translation was valid).
    pub(crate) mi: f64,
    /// Best translation `u`, level pixels.
    pub(crate) u: [i64; 2],
    /// MI on the 3×3 neighbourhood of `u` (row-major, `-inf` where invalid or outside).
    pub(crate) nbhd: [f64; 9],
}

impl<'a> Plan<'a> {
    /// A plan for windows of `lx × ly` translations. `min_overlap` is the fraction of the largest
    /// attainable overlap (the smaller image's pixel count) below which a translation is invalid.
    pub(crate) fn new(
        fixed: &'a LabelMap,
        moving: &'a LabelMap,
        q: usize,
        lx: usize,
        ly: usize,
        min_overlap: f64,
    ) -> Plan<'a> {
        let gx = lx + fixed.w - 1;
        let gy = ly + fixed.h - 1;
        let fft = Fft2::new(fast_len(gx), fast_len(gy));
        let len = fft.len();
        let mut scratch = vec![C::new(0.0, 0.0); fft.scratch_len];
        let mut buf = vec![C::new(0.0, 0.0); len];
        let fixed_spec = (0..q)
            .map(|a| {
                buf.fill(C::new(0.0, 0.0));
                for y in 0..fixed.h {
                    for x in 0..fixed.w {
                        if fixed.data[y * fixed.w + x] as usize == a {
                            buf[y * fft.px + x] = C::new(1.0, 0.0);
                        }
                    }
                }
                let mut spec = vec![C::new(0.0, 0.0); len];
                fft.forward(&mut buf, fixed.h, &mut spec, &mut scratch);
                spec.iter_mut().for_each(|v| *v = v.conj());
                spec
            })
            .collect();
        let nf = fixed.w * fixed.h;
        let table = (0..=nf)
            .map(|n| {
                let n = n as f64;
                if n > 0.0 {
                    n * n.ln()
                } else {
                    0.0
                }
            })
            .collect();
        let largest = nf.min(moving.w * moving.h) as f64;
        let min_count = ((min_overlap * largest).ceil() as u32).max(1);
        Plan {
            moving,
            q,
            lx,
            ly,
            gx,
            gy,
            fft,
            fixed_spec,
            table,
            min_count,
        }
    }

    pub(crate) fn workspace(&self) -> Workspace {
        let len = self.fft.len();
        let wl = self.lx * self.ly;
        let z = C::new(0.0, 0.0);
        Workspace {
            glab: vec![NO_LABEL; self.gx * self.gy],
            gspec: vec![vec![z; len]; self.q.div_ceil(2)],
            buf: vec![z; len],
            out: vec![z; self.ly * self.fft.px],
            scratch: vec![z; self.fft.scratch_len],
            counts: vec![0; wl * self.q * self.q],
            n: vec![0; wl],
            mi: vec![0.0; wl],
        }
    }

    /// Fills `ws.mi` and `ws.n` for the translations `u = origin + (i, j)`, `i < lx`, `j < ly`
    /// (row-major, `j·lx + i`), with the moving label map rotated by `angle` about `center`
    /// (level coordinates).
    pub(crate) fn surface(
        &self,
        angle: f64,
        center: [f64; 2],
        origin: [i64; 2],
        ws: &mut Workspace,
    ) {
        let (px, py) = (self.fft.px, self.fft.py);
        let (lx, ly, q) = (self.lx, self.ly, self.q);
        let wl = lx * ly;
        // 1. Rotated moving label map over the reachable domain, nearest neighbour.
        let (s, c) = angle.sin_cos();
        let m = self.moving;
        for j in 0..self.gy {
            let dy = (origin[1] + j as i64) as f64 - center[1];
            let row = &mut ws.glab[j * self.gx..(j + 1) * self.gx];
            for (i, g) in row.iter_mut().enumerate() {
                let dx = (origin[0] + i as i64) as f64 - center[0];
                let mx = nearest(c * dx - s * dy + center[0]);
                let my = nearest(s * dx + c * dy + center[1]);
                *g = if mx >= 0.0 && my >= 0.0 && (mx as usize) < m.w && (my as usize) < m.h {
                    m.data[my as usize * m.w + mx as usize]
                } else {
                    NO_LABEL
                };
            }
        }
        // 2. Spectra of the moving indicator images, two labels per complex FFT
        //    ([G = 2k] in the real part, [G = 2k + 1] in the imaginary part).
        for (k, spec) in ws.gspec.iter_mut().enumerate() {
            let (b0, b1) = ((2 * k) as u8, (2 * k + 1) as u8);
            ws.buf.fill(C::new(0.0, 0.0));
            for j in 0..self.gy {
                let src = &ws.glab[j * self.gx..(j + 1) * self.gx];
                let dst = &mut ws.buf[j * px..j * px + self.gx];
                for (d, &g) in dst.iter_mut().zip(src) {
                    if g == b0 {
                        d.re = 1.0;
                    } else if g == b1 {
                        d.im = 1.0;
                    }
                }
            }
            self.fft
                .forward(&mut ws.buf, self.gy, spec, &mut ws.scratch);
        }
        // 3. Joint counts C_ab(u) = Σ_p [F(p)=a][G(p+u)=b]: since F is real,
        //    IFFT(conj(F̂_a)·FFT(g_b + i·g_b')) = (F_a ⋆ g_b) + i(F_a ⋆ g_b'), two count maps
        //    per inverse FFT. Counts are rounded to integers (as in globalign).
        let norm = 1.0 / (px * py) as f32;
        let tmax = self.table.len() - 1;
        // Non-negative values round half up; small negative round-off truncates to 0.
        let count = |v: f32| -> u32 { ((v * norm + 0.5) as u32).min(tmax as u32) };
        for (a, fa) in self.fixed_spec.iter().enumerate() {
            for (k, gs) in ws.gspec.iter().enumerate() {
                for ((b, &f), &g) in ws.buf.iter_mut().zip(fa).zip(gs) {
                    *b = f * g;
                }
                self.fft
                    .inverse_rows(&mut ws.buf, ly, &mut ws.out, &mut ws.scratch);
                let (b0, b1) = (2 * k, 2 * k + 1);
                let (lo, hi) = ws.counts.split_at_mut((a * q + b1) * wl);
                let c0 = &mut lo[(a * q + b0) * wl..];
                for y in 0..ly {
                    let row = &ws.out[y * px..y * px + lx];
                    for (d, v) in c0[y * lx..(y + 1) * lx].iter_mut().zip(row) {
                        *d = count(v.re);
                    }
                    if b1 < q {
                        for (d, v) in hi[y * lx..(y + 1) * lx].iter_mut().zip(row) {
                            *d = count(v.im);
                        }
                    }
                }
            }
        }
        // 4. MI = Σ p_ab ln p_ab − Σ p_a ln p_a − Σ p_b ln p_b
        //       = (S_ab − S_a − S_b)/N + ln N with S = Σ c ln c; the marginals and the overlap
        //    N(u) are sums of the joint counts (each moving pixel inside the image has a label).
        // Positions are processed in blocks so that the running sums stay in L1 cache.
        const BLOCK: usize = 128;
        let tab = &self.table[..];
        let counts = &ws.counts[..];
        let mut s_ab = [0f64; BLOCK];
        let mut s_a = [0f64; BLOCK];
        let mut ca = [0u32; BLOCK];
        let mut n = [0u32; BLOCK];
        let mut cb = vec![0u32; q * BLOCK];
        for i0 in (0..wl).step_by(BLOCK) {
            let bl = BLOCK.min(wl - i0);
            s_ab[..bl].fill(0.0);
            s_a[..bl].fill(0.0);
            n[..bl].fill(0);
            cb.fill(0);
            for a in 0..q {
                ca[..bl].fill(0);
                for b in 0..q {
                    let src = &counts[(a * q + b) * wl + i0..(a * q + b) * wl + i0 + bl];
                    let cbb = &mut cb[b * BLOCK..b * BLOCK + bl];
                    for (i, &c) in src.iter().enumerate() {
                        s_ab[i] += tab[c as usize];
                        ca[i] += c;
                        cbb[i] += c;
                    }
                }
                for i in 0..bl {
                    s_a[i] += tab[(ca[i] as usize).min(tmax)];
                    n[i] += ca[i];
                }
            }
            for i in 0..bl {
                let idx = i0 + i;
                ws.n[idx] = n[i];
                ws.mi[idx] = if n[i] == 0 || n[i] < self.min_count {
                    f64::NEG_INFINITY
                } else {
                    let s_b: f64 = (0..q)
                        .map(|b| tab[(cb[b * BLOCK + i] as usize).min(tmax)])
                        .sum();
                    let nf = n[i] as f64;
                    (s_ab[i] - s_a[i] - s_b) / nf + nf.ln()
                };
            }
        }
    }

    /// The best translation in the window for one angle (ties: first in row-major order).
    pub(crate) fn eval(
        &self,
        angle: f64,
        center: [f64; 2],
        origin: [i64; 2],
        ws: &mut Workspace,
    ) -> AngleEval {
        self.surface(angle, center, origin, ws);
        let (lx, ly) = (self.lx, self.ly);
        let mut best = f64::NEG_INFINITY;
        let mut bi = (lx / 2, ly / 2);
        for y in 0..ly {
            for x in 0..lx {
                let v = ws.mi[y * lx + x];
                if v > best {
                    best = v;
                    bi = (x, y);
                }
            }
        }
        let mut nbhd = [f64::NEG_INFINITY; 9];
        for (k, nb) in nbhd.iter_mut().enumerate() {
            let x = bi.0 as i64 + (k % 3) as i64 - 1;
            let y = bi.1 as i64 + (k / 3) as i64 - 1;
            if x >= 0 && y >= 0 && (x as usize) < lx && (y as usize) < ly {
                *nb = ws.mi[y as usize * lx + x as usize];
            }
        }
        AngleEval {
            mi: best,
            u: [origin[0] + bi.0 as i64, origin[1] + bi.1 as i64],
            nbhd,
        }
    }
}
