//! A small 2-D complex FFT on top of `rustfft`, with the spectrum kept in transposed layout and
//! an inverse that only produces the top-left window of the output.

use std::sync::Arc;

use rustfft::num_complex::Complex32;
use rustfft::{Fft, FftPlanner};

/// Complex sample type of all FFT buffers.
pub(crate) type C = Complex32;

/// The smallest length ≥ `n` whose only prime factors are 2, 3 and 5.
pub(crate) fn fast_len(n: usize) -> usize {
    let mut m = n.max(1);
    loop {
        let mut r = m;
        for p in [2, 3, 5] {
            while r.is_multiple_of(p) {
                r /= p;
            }
        }
        if r == 1 {
            return m;
        }
        m += 1;
    }
}

/// Plans for a `px × py` 2-D transform.
///
/// Spatial buffers are row-major, `[y·px + x]`; spectra are transposed, `[kx·py + ky]`, which
/// saves the transpose back after the forward pass and before the inverse one.
pub(crate) struct Fft2 {
    pub(crate) px: usize,
    pub(crate) py: usize,
    fx: Arc<dyn Fft<f32>>,
    fy: Arc<dyn Fft<f32>>,
    ix: Arc<dyn Fft<f32>>,
    iy: Arc<dyn Fft<f32>>,
    pub(crate) scratch_len: usize,
}

impl Fft2 {
    pub(crate) fn new(px: usize, py: usize) -> Fft2 {
        let mut planner = FftPlanner::<f32>::new();
        let fx = planner.plan_fft_forward(px);
        let fy = planner.plan_fft_forward(py);
        let ix = planner.plan_fft_inverse(px);
        let iy = planner.plan_fft_inverse(py);
        let scratch_len = [&fx, &fy, &ix, &iy]
            .iter()
            .map(|f| f.get_inplace_scratch_len())
            .max()
            .unwrap_or(0);
        Fft2 {
            px,
            py,
            fx,
            fy,
            ix,
            iy,
            scratch_len,
        }
    }

    /// Number of samples of a full buffer.
    pub(crate) fn len(&self) -> usize {
        self.px * self.py
    }

    /// Forward transform of `buf` (spatial, only its first `rows` rows may be non-zero; it is
    /// clobbered) into `spec` (transposed layout).
    pub(crate) fn forward(&self, buf: &mut [C], rows: usize, spec: &mut [C], scratch: &mut [C]) {
        let (px, py) = (self.px, self.py);
        if rows > 0 {
            self.fx.process_with_scratch(&mut buf[..rows * px], scratch);
        }
        for (x, dst) in spec.chunks_exact_mut(py).enumerate() {
            for (y, d) in dst[..rows].iter_mut().enumerate() {
                *d = buf[y * px + x];
            }
            dst[rows..].fill(C::new(0.0, 0.0));
        }
        self.fy.process_with_scratch(spec, scratch);
    }

    /// Unnormalised inverse transform of `spec` (transposed layout; clobbered), producing only the
    /// first `ly` output rows, written row-major into `out[..ly·px]`.
    pub(crate) fn inverse_rows(&self, spec: &mut [C], ly: usize, out: &mut [C], scratch: &mut [C]) {
        let (px, py) = (self.px, self.py);
        self.iy.process_with_scratch(spec, scratch);
        for (kx, col) in spec.chunks_exact(py).enumerate() {
            for (y, &v) in col[..ly].iter().enumerate() {
                out[y * px + kx] = v;
            }
        }
        self.ix.process_with_scratch(&mut out[..ly * px], scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_len_has_small_factors() {
        assert_eq!(fast_len(127), 128);
        assert_eq!(fast_len(131), 135);
        assert_eq!(fast_len(7), 8);
        assert_eq!(fast_len(1), 1);
    }

    #[test]
    fn round_trip_matches_direct_correlation() {
        // Circular cross-correlation via conj(F)·G against a direct sum.
        let (px, py) = (12, 10);
        let f2 = Fft2::new(px, py);
        let mut scratch = vec![C::new(0.0, 0.0); f2.scratch_len];
        let a: Vec<f32> = (0..px * py).map(|i| ((i * 7) % 5) as f32).collect();
        let b: Vec<f32> = (0..px * py).map(|i| ((i * 3) % 4) as f32).collect();
        let mut buf: Vec<C> = a.iter().map(|&v| C::new(v, 0.0)).collect();
        let mut sa = vec![C::new(0.0, 0.0); px * py];
        f2.forward(&mut buf, py, &mut sa, &mut scratch);
        let mut buf: Vec<C> = b.iter().map(|&v| C::new(v, 0.0)).collect();
        let mut sb = vec![C::new(0.0, 0.0); px * py];
        f2.forward(&mut buf, py, &mut sb, &mut scratch);
        let mut prod: Vec<C> = sa.iter().zip(&sb).map(|(x, y)| x.conj() * y).collect();
        let ly = 4;
        let mut out = vec![C::new(0.0, 0.0); ly * px];
        f2.inverse_rows(&mut prod, ly, &mut out, &mut scratch);
        for uy in 0..ly {
            for ux in 0..px {
                let mut s = 0.0;
                for y in 0..py {
                    for x in 0..px {
                        s += a[y * px + x] * b[((y + uy) % py) * px + (x + ux) % px];
                    }
                }
                let got = out[uy * px + ux].re / (px * py) as f32;
                assert!((got - s).abs() < 1e-3, "{got} vs {s}");
            }
        }
    }
}
