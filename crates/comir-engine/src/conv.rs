//! Convolution kernels (1×1 and 3×3, stride 1, "same" zero padding) on one sample, in row
//! bands.
//!
//! A band of `R` output rows is computed from a zero-padded copy of the `R + 2` input rows
//! around it (`[cin][(R+2)·(W+2) + 2]`, filled by a [`RowSource`] that can fuse batch norm +
//! ReLU or nearest upsampling into the copy). On the padded grid every tap of the kernel is a
//! constant offset, so the convolution is a sum of plain matrix products (one per tap, no
//! im2col); outputs are computed for all `W + 2` grid columns and the two junk columns
//! dropped. Bands keep the working set in L2 and bound the scratch memory for large images.
//! A convolution can be asked for a [`Window`] of its output only: its rows are the bands', and
//! the direct kernels then run each row's columns in the window. Where [`Kernel::Winograd`]
//! applies, [`crate::winograd`] computes a band from 2 × 2 or 4 × 4 tiles on rows and columns
//! that are multiples of the tiles' side: a band is a multiple of it in rows, its padded rows
//! are stored split in as many parts (columns `t·j + p`), and a window is widened to whole
//! tiles, of which only its part is written.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use crate::{direct, grow, simd, winograd};

/// Writes rows of one input channel of a convolution.
pub(crate) trait RowSource: Sync {
    /// Writes columns `x0 .. x0 + dst.len()` of image row `y` of input channel `c`.
    fn row(&self, c: usize, y: usize, x0: usize, dst: &mut [f32]);

    /// Writes image row `y` of input channel `c` with a zero on each side, split in `parts`
    /// (2 or 4) as Winograd reads it ([`split`]), into `dst`; `whole` is scratch of the same
    /// length whose ends are zero.
    fn split_row(&self, c: usize, y: usize, whole: &mut [f32], dst: &mut [f32], parts: usize) {
        let w = whole.len() - 2;
        self.row(c, y, 0, &mut whole[1..=w]);
        split(whole, dst, parts);
    }

    /// Asks the cache for image row `y` of input channel `c` (nothing by default).
    fn prefetch(&self, _c: usize, _y: usize) {}
}

/// A padded row split in `parts` (2 or 4) as Winograd's tiles of that side read it.
fn split(row: &[f32], dst: &mut [f32], parts: usize) {
    if parts == 4 {
        winograd::split4(row, dst);
    } else {
        winograd::split(row, dst);
    }
}

/// The rectangle of a plane a convolution must compute: rows `y0..y1`, columns `x0..x1`. In
/// inference the layers after the last pooling level need only what the representation's
/// kept part depends on, which is smaller than the tile by its margin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First row.
    pub y0: usize,
    /// One past the last row.
    pub y1: usize,
    /// First column.
    pub x0: usize,
    /// One past the last column.
    pub x1: usize,
}

impl Window {
    /// The whole `h × w` plane.
    pub fn full(h: usize, w: usize) -> Window {
        Window {
            y0: 0,
            y1: h,
            x0: 0,
            x1: w,
        }
    }

    /// `k` more pixels on every side, within the `h × w` plane: what a window needs of the
    /// input of `k` stacked 3×3 convolutions.
    pub(crate) fn grown(self, k: usize, h: usize, w: usize) -> Window {
        Window {
            y0: self.y0.saturating_sub(k),
            y1: (self.y1 + k).min(h),
            x0: self.x0.saturating_sub(k),
            x1: (self.x1 + k).min(w),
        }
    }

    /// The part of the half-resolution `h2 × w2` plane that nearest ×2 upsampling reads for
    /// this window.
    pub(crate) fn halved(self, h2: usize, w2: usize) -> Window {
        Window {
            y0: self.y0 / 2,
            y1: self.y1.div_ceil(2).min(h2),
            x0: self.x0 / 2,
            x1: self.x1.div_ceil(2).min(w2),
        }
    }
}

/// Receives rows of the gradient w.r.t. a convolution's input.
pub(crate) trait RowSink {
    /// Gradient of image row `y` of input channel `c`.
    fn row(&mut self, c: usize, y: usize, grad: &[f32]);
}

/// Plain copy of `[c][h·w]` planes.
pub(crate) struct Plain<'a> {
    pub x: &'a [f32],
    pub hw: usize,
    pub w: usize,
}

impl RowSource for Plain<'_> {
    fn row(&self, c: usize, y: usize, x0: usize, dst: &mut [f32]) {
        let s = c * self.hw + y * self.w + x0;
        dst.copy_from_slice(&self.x[s..s + dst.len()]);
    }

    fn prefetch(&self, c: usize, y: usize) {
        let s = c * self.hw + y * self.w;
        simd::prefetch(&self.x[s..s + self.w]);
    }
}

/// `relu(a_c · x + b_c)`: batch norm folded into a per-channel affine map, then ReLU.
pub(crate) struct BnRelu<'a> {
    pub x: &'a [f32],
    pub a: &'a [f32],
    pub b: &'a [f32],
    pub hw: usize,
    pub w: usize,
}

impl RowSource for BnRelu<'_> {
    fn row(&self, c: usize, y: usize, x0: usize, dst: &mut [f32]) {
        let s = c * self.hw + y * self.w + x0;
        simd::bn_relu(dst, &self.x[s..s + dst.len()], self.a[c], self.b[c]);
    }

    fn split_row(&self, c: usize, y: usize, _: &mut [f32], dst: &mut [f32], parts: usize) {
        let s = c * self.hw + y * self.w;
        let (x, a, b) = (&self.x[s..s + self.w], self.a[c], self.b[c]);
        if parts == 4 {
            winograd::bn_relu_split4(x, a, b, dst);
        } else {
            winograd::bn_relu_split(x, a, b, dst);
        }
    }

    fn prefetch(&self, c: usize, y: usize) {
        let s = c * self.hw + y * self.w;
        simd::prefetch(&self.x[s..s + self.w]);
    }
}

/// [`BnRelu`] over planes that other tasks write elsewhere meanwhile (the parts of a fused
/// group): each row is read on its own.
pub(crate) struct SharedBnRelu<'a> {
    /// Rows read here are not written meanwhile (the fused group's schedule).
    pub x: SharedPlanes,
    pub a: &'a [f32],
    pub b: &'a [f32],
    pub hw: usize,
    pub w: usize,
}

impl SharedBnRelu<'_> {
    fn row_of(&self, c: usize, y: usize, x0: usize, len: usize) -> &[f32] {
        // SAFETY: the schedule reads only rows that are complete and no longer written.
        unsafe { self.x.slice(c * self.hw + y * self.w + x0, len) }
    }
}

impl RowSource for SharedBnRelu<'_> {
    fn row(&self, c: usize, y: usize, x0: usize, dst: &mut [f32]) {
        simd::bn_relu(dst, self.row_of(c, y, x0, dst.len()), self.a[c], self.b[c]);
    }

    fn split_row(&self, c: usize, y: usize, _: &mut [f32], dst: &mut [f32], parts: usize) {
        let (x, a, b) = (self.row_of(c, y, 0, self.w), self.a[c], self.b[c]);
        if parts == 4 {
            winograd::bn_relu_split4(x, a, b, dst);
        } else {
            winograd::bn_relu_split(x, a, b, dst);
        }
    }

    fn prefetch(&self, c: usize, y: usize) {
        simd::prefetch(self.row_of(c, y, 0, self.w));
    }
}

/// Nearest ×2 upsampling of `[c][(h/2)·(w/2)]` planes (`w` is the upsampled width).
pub(crate) struct Upsample<'a> {
    pub x: &'a [f32],
    pub hw_low: usize,
    pub w: usize,
}

impl RowSource for Upsample<'_> {
    fn row(&self, c: usize, y: usize, x0: usize, dst: &mut [f32]) {
        let wl = self.w / 2;
        let s = c * self.hw_low + (y / 2) * wl;
        let src = &self.x[s..s + wl];
        // An odd first column is the second copy of its source pixel; then whole pairs, and
        // a last single column if one is left.
        let start = usize::from(x0 % 2 == 1 && !dst.is_empty());
        if start == 1 {
            dst[0] = src[x0 / 2];
        }
        let first = x0.div_ceil(2);
        let body = &mut dst[start..];
        let whole = body.len() / 2;
        let mut pairs = body.chunks_exact_mut(2);
        for (pair, &v) in (&mut pairs).zip(&src[first..]) {
            pair[0] = v;
            pair[1] = v;
        }
        if let [last] = pairs.into_remainder() {
            *last = src[first + whole];
        }
    }
}

/// Target size of a padded input band (bytes); see [`set_band_bytes`].
static BAND_BYTES: AtomicUsize = AtomicUsize::new(384 * 1024);

/// Sets the target size in bytes of the padded input band a convolution works on (default
/// 384 KiB, about what stays in a 512 KiB–1 MiB L2 cache next to the other operands; at least
/// two image rows are always used). A tuning knob: results do not depend on it beyond f32
/// rounding. Global for the process.
pub fn set_band_bytes(bytes: usize) {
    BAND_BYTES.store(bytes.max(1), Ordering::Relaxed);
}

/// The target size of a padded input band ([`set_band_bytes`]).
pub(crate) fn band_bytes() -> usize {
    BAND_BYTES.load(Ordering::Relaxed)
}

/// Geometry of a convolution.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvShape {
    pub cin: usize,
    pub cout: usize,
    /// Kernel size, 1 or 3.
    pub k: usize,
    pub h: usize,
    pub w: usize,
}

const TAPS3: [(usize, usize); 9] = [
    (0, 0),
    (0, 1),
    (0, 2),
    (1, 0),
    (1, 1),
    (1, 2),
    (2, 0),
    (2, 1),
    (2, 2),
];
const TAPS1: [(usize, usize); 1] = [(1, 1)];

impl ConvShape {
    fn taps(&self) -> &'static [(usize, usize)] {
        if self.k == 3 {
            &TAPS3
        } else {
            &TAPS1
        }
    }

    /// Rows per band: keeps the padded input band near `BAND_BYTES`.
    fn band_rows(&self) -> usize {
        let per_row = self.cin.max(self.cout * self.k * self.k) * (self.w + 2) * 4;
        (band_bytes() / per_row).clamp(2, self.h.max(2)).min(self.h)
    }

    fn bands(&self) -> Vec<(usize, usize)> {
        self.bands_of(0, self.h)
    }

    /// The bands of output rows `y0..y1`.
    fn bands_of(&self, y0: usize, y1: usize) -> Vec<(usize, usize)> {
        let r = self.band_rows();
        (y0..y1).step_by(r).map(|y| (y, r.min(y1 - y))).collect()
    }

    /// The bands of output rows `y0..y1` (multiples of `tile`) in multiples of `tile` rows
    /// each, for Winograd's `tile × tile` tiles.
    fn tiled_bands_of(&self, tile: usize, y0: usize, y1: usize) -> Vec<(usize, usize)> {
        self.tiled_bands_at_least(tile, tile, y0, y1)
    }

    /// [`ConvShape::tiled_bands_of`] with at least `min` rows a band (a multiple of `tile`).
    fn tiled_bands_at_least(
        &self,
        tile: usize,
        min: usize,
        y0: usize,
        y1: usize,
    ) -> Vec<(usize, usize)> {
        let r = (self.band_rows() / tile * tile).max(min);
        (y0..y1).step_by(r).map(|y| (y, r.min(y1 - y))).collect()
    }
}

#[derive(Default)]
struct Scratch {
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
    wino: winograd::Scratch,
}

thread_local! {
    // Per-thread scratch reused across layers and steps (no page faults in the hot loop).
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// The previous band a padded-band buffer holds, when the next band continues it: its output
/// rows and plane stride.
#[derive(Clone, Copy)]
struct Carried {
    rows: usize,
    ps: usize,
}

/// Fills the zero-padded band for output rows `y0 .. y0 + rows` (plane stride `ps`) in `buf`
/// (grown as needed) and returns it, `cin · ps` floats. Only what output columns `x0..x1` read
/// is written (the rest of the band is left as it was).
///
/// With `carried`, `buf` holds the band that ends at `y0` (same source, channels and width),
/// whose last two padded rows are this band's first two: they are moved instead of read from
/// `src` again. Bands of a few rows read each source row `(rows + 2) / rows` times otherwise,
/// from memory, since a layer's input planes are larger than the cache. Same values either way.
///
/// With `split` of 2 or 4, each padded row is stored in that many parts (see [`split`]), as
/// Winograd reads them; 1 stores it whole.
#[allow(clippy::too_many_arguments)]
fn fill_band<'b>(
    src: &dyn RowSource,
    cin: usize,
    h: usize,
    w: usize,
    y0: usize,
    rows: usize,
    buf: &'b mut Vec<f32>,
    ps: usize,
    (x0, x1): (usize, usize),
    carried: Option<Carried>,
    parts: usize,
) -> &'b [f32] {
    let split = parts > 1;
    // The carried band may have a longer plane stride (the last band is shorter).
    let xp = grow(buf, cin * ps.max(carried.map_or(0, |p| p.ps)));
    let wp = w + 2;
    // Image columns the outputs read, and where they lie on the padded grid.
    let (xa, xb) = (x0.saturating_sub(1), (x1 + 1).min(w));
    let (pa, pb) = (
        if x0 == 0 { 0 } else { xa + 1 },
        if x1 == w { wp } else { xb + 1 },
    );
    // Channel c moves from c·prev.ps to c·ps ≤ c·prev.ps, in channel order: a later channel's
    // rows are never overwritten before they are moved.
    let carried = carried.filter(|prev| ps <= prev.ps);
    // A split row is first written whole here.
    let mut whole = if split { vec![0.0; wp] } else { Vec::new() };
    for c in 0..cin {
        let first = match carried {
            Some(prev) => {
                let from = c * prev.ps + prev.rows * wp;
                xp.copy_within(from..from + 2 * wp, c * ps);
                2
            }
            None => 0,
        };
        let plane = &mut xp[c * ps..(c + 1) * ps];
        for r in first..rows + 2 {
            let row = &mut plane[r * wp..(r + 1) * wp];
            let y = (y0 + r).wrapping_sub(1);
            // The next channel's row, while this one's is worked on.
            if c + 1 < cin && y < h {
                src.prefetch(c + 1, y);
            }
            if y >= h {
                // A split row's columns are spread over the whole row.
                row[if split { 0..wp } else { pa..pb }].fill(0.0);
            } else if split && x0 == 0 && x1 == w {
                src.split_row(c, y, &mut whole, row, parts);
            } else if split {
                src.row(c, y, xa, &mut whole[xa + 1..=xb]);
                self::split(&whole, row, parts);
            } else {
                row[0] = 0.0;
                row[wp - 1] = 0.0;
                src.row(c, y, xa, &mut row[xa + 1..=xb]);
            }
        }
        plane[(rows + 2) * wp..].fill(0.0);
    }
    &xp[..cin * ps]
}

/// `dst[m×n] (+)= lhs[m×k] · rhs[k×n]`, all row-major with the given row / column strides.
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: isize,
    dst_cs: isize,
    accumulate: bool,
    lhs: *const f32,
    lhs_rs: isize,
    lhs_cs: isize,
    rhs: *const f32,
    rhs_rs: isize,
    rhs_cs: isize,
) {
    gemm(
        m,
        n,
        k,
        dst,
        dst_cs,
        dst_rs,
        accumulate,
        lhs,
        lhs_cs,
        lhs_rs,
        rhs,
        rhs_cs,
        rhs_rs,
        1.0,
        1.0,
        false,
        false,
        false,
        Parallelism::None,
    );
}

/// `[c][h·w]` planes that several tasks read and write at once, each in rows the others do not
/// touch meanwhile: the bands of one convolution, or the parts of a fused group of
/// convolutions (`fused.rs`). Borrowed slices would claim whole planes; this hands out one
/// row at a time, and the callers keep the rows apart.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SharedPlanes {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: the users of a SharedPlanes read and write disjoint elements from each task (the
// contract of `slice` and `row_ptr`).
unsafe impl Send for SharedPlanes {}
unsafe impl Sync for SharedPlanes {}

impl SharedPlanes {
    /// The planes of `x`, which stays borrowed by the caller while they are used.
    pub(crate) fn new(x: &mut [f32]) -> Self {
        SharedPlanes {
            ptr: x.as_mut_ptr(),
            len: x.len(),
        }
    }

    /// Elements in all.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Elements `start..start + len` to read.
    ///
    /// # Safety
    /// The planes' buffer outlives the slice, and no task writes these elements meanwhile.
    pub(crate) unsafe fn slice(&self, start: usize, len: usize) -> &[f32] {
        assert!(start + len <= self.len, "shared planes: read outside");
        // SAFETY: inside the buffer (asserted); no writer meanwhile (the caller's contract).
        unsafe { std::slice::from_raw_parts(self.ptr.add(start), len) }
    }

    /// Elements `start..start + len` to write.
    ///
    /// # Safety
    /// The planes' buffer outlives the slice, and no other task reads or writes these
    /// elements meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut(&self, start: usize, len: usize) -> &mut [f32] {
        assert!(start + len <= self.len, "shared planes: write outside");
        // SAFETY: inside the buffer (asserted); exclusive meanwhile (the caller's contract).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }

    /// Elements `start..start + len` as planes of their own.
    pub(crate) fn part(&self, start: usize, len: usize) -> SharedPlanes {
        assert!(start + len <= self.len, "shared planes: part outside");
        SharedPlanes {
            ptr: self.at(start),
            len,
        }
    }

    /// The address of element `at`, for a kernel that writes through it.
    fn at(&self, at: usize) -> *mut f32 {
        assert!(at <= self.len, "shared planes: address outside");
        // SAFETY: inside the buffer or one past it (asserted).
        unsafe { self.ptr.add(at) }
    }
}

/// How [`conv_forward`] and [`conv_backward`] compute a band.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// One `gemm` matrix product per tap (portable).
    Gemm,
    /// The direct kernels of [`crate::direct`] at one vector width.
    Direct(direct::Simd),
    /// The direct kernels, and [`crate::winograd`] for the 3×3 convolutions it speeds up.
    Winograd(direct::Simd),
}

impl Kernel {
    /// The kernels of an instruction set: the direct ones, and Winograd where it pays
    /// ([`Kernel::winograd_tile`]; docs/benchmarks.md).
    pub(crate) fn of(isa: comir_cpu::Isa) -> Self {
        match direct::Simd::of(isa) {
            Some(simd) => Kernel::Winograd(simd),
            None => Kernel::Gemm,
        }
    }

    /// Whether Winograd could run a convolution of `s`'s geometry from `inputs` to `outputs`
    /// channels: 3×3, even height and width (2 × 2 tiles cover the plane), and enough
    /// channels to pay for the transforms.
    fn winograd_fits(self, s: ConvShape, inputs: usize, outputs: usize) -> bool {
        matches!(self, Kernel::Winograd(_))
            && s.k == 3
            && s.h.is_multiple_of(2)
            && s.w.is_multiple_of(2)
            && winograd::pays(inputs, outputs, s.w)
    }

    /// The side of the Winograd tiles this kernel computes a forward convolution (or an input
    /// gradient, as the forward convolution of the output gradient) from `inputs` to `outputs`
    /// channels on `s`'s planes with, and its weight gradient; `None` for the direct kernel.
    fn winograd_tile(self, s: ConvShape, inputs: usize, outputs: usize) -> Option<usize> {
        if !self.winograd_fits(s, inputs, outputs) {
            return None;
        }
        let tile = winograd::tile_for(s.h, s.w);
        match self {
            Kernel::Winograd(direct::Simd::Avx2) => Some(tile),
            // The AVX-512 direct kernel's multiplies are twice as wide: only 4 × 4 tiles
            // save enough of them.
            _ => (tile == 4).then_some(4),
        }
    }

    /// Whether this is the portable path, whose windows compute (and write) whole planes.
    pub(crate) fn is_portable(self) -> bool {
        self == Kernel::Gemm
    }

    /// Whether this kernel's vectors are AVX-512's.
    fn is_avx512(self) -> bool {
        matches!(
            self,
            Kernel::Direct(direct::Simd::Avx512) | Kernel::Winograd(direct::Simd::Avx512)
        )
    }

    /// The kernel for what Winograd does not compute.
    fn direct(self) -> Self {
        match self {
            Kernel::Winograd(simd) => Kernel::Direct(simd),
            k => k,
        }
    }
}

/// Runs the direct kernel on a padded band of `q` grid positions into `out` (grown as
/// needed); returns the output's channel stride.
#[allow(clippy::too_many_arguments)]
fn direct_band(
    simd: direct::Simd,
    inputs: usize,
    outputs: usize,
    input: &[f32],
    plane: usize,
    offsets: &[usize],
    weights: &[f32],
    q: usize,
    out: &mut Vec<f32>,
) -> usize {
    let stride = q.next_multiple_of(direct::PX_BLOCK);
    let og = grow(out, outputs.next_multiple_of(direct::CO_BLOCK) * stride);
    let band = direct::Band {
        cin: inputs,
        input,
        plane,
        offsets,
        weights,
        positions: stride,
    };
    direct::conv_band(simd, &band, og, stride);
    stride
}

/// A convolution's weights in the layouts its kernels read, prepared once for all the samples
/// of a batch (preparing them for every sample cost about 1 % of a training step).
pub(crate) struct ConvWeights<'w> {
    /// As given: `[cout][cin][k][k]` for a forward convolution, [`transpose_weight`]'s
    /// layout for an input gradient (the portable path reads these).
    raw: &'w [f32],
    /// Winograd's transformed kernels, where Winograd runs.
    wino: Option<winograd::Weights>,
    /// The direct kernel's packing, where the direct kernel runs.
    packed: Vec<f32>,
}

impl<'w> ConvWeights<'w> {
    /// The side of the Winograd tiles these weights are for (1 for the direct kernel): the
    /// rows a window of [`conv_forward`] computes are rounded to its multiples.
    pub(crate) fn tile(&self) -> usize {
        self.wino.as_ref().map_or(1, winograd::Weights::tile)
    }

    /// The weights of a forward convolution of geometry `s` with `kernel`, from
    /// `[cout][cin][k][k]`.
    pub(crate) fn forward(kernel: Kernel, s: ConvShape, weight: &'w [f32]) -> Self {
        assert_eq!(
            weight.len(),
            s.cout * s.cin * s.k * s.k,
            "conv_forward: weight size"
        );
        let kk = s.k * s.k;
        let wino = kernel.winograd_tile(s, s.cin, s.cout).map(|tile| {
            winograd::Weights::new(tile, s.cout, s.cin, |co, ci, t| {
                weight[(co * s.cin + ci) * kk + t]
            })
        });
        Self::prepared(kernel, weight, wino, || {
            direct::pack_weights(s.cout, s.cin, kk, weight)
        })
    }

    /// The weights of the input gradient of a convolution of geometry `s` with `kernel`, from
    /// [`transpose_weight`]'s layout.
    pub(crate) fn input_grad(kernel: Kernel, s: ConvShape, wt: &'w [f32]) -> Self {
        let kk = s.k * s.k;
        assert_eq!(wt.len(), s.cin * kk * s.cout, "conv_backward: weight size");
        // Winograd's kernel for the input gradient is the flipped transposed one.
        let wino = kernel.winograd_tile(s, s.cout, s.cin).map(|tile| {
            winograd::Weights::new(tile, s.cin, s.cout, |ci, co, t| {
                wt[ci * kk * s.cout + (kk - 1 - t) * s.cout + co]
            })
        });
        Self::prepared(kernel, wt, wino, || {
            direct::pack_transposed(s.cout, s.cin, kk, wt)
        })
    }

    /// The weights for `kernel`: Winograd's where given (their products on AVX-512's lanes
    /// with AVX-512), else the direct kernel's packing where it runs.
    fn prepared(
        kernel: Kernel,
        raw: &'w [f32],
        wino: Option<winograd::Weights>,
        pack: impl FnOnce() -> Vec<f32>,
    ) -> Self {
        let wino = wino.map(|w| w.with_wide_products(kernel.is_avx512()));
        let packed = match kernel.direct() {
            Kernel::Direct(_) if wino.is_none() => pack(),
            _ => Vec::new(),
        };
        ConvWeights { raw, wino, packed }
    }
}

/// Forward convolution of one sample with `kernel`: `out[cout][h·w] = conv(src) (+ bias)
/// (→ ReLU)`. `weights` from [`ConvWeights::forward`]. With `parallel`, bands run as parallel tasks.
///
/// With a `window`, only the outputs inside it are computed and the rest of `out` is not
/// written: the direct kernels compute each of them exactly as the whole convolution does (the
/// same sums in the same order); the portable path computes the whole plane anyway.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_forward(
    kernel: Kernel,
    s: ConvShape,
    src: &dyn RowSource,
    weights: &ConvWeights,
    bias: Option<&[f32]>,
    relu: bool,
    out: &mut [f32],
    parallel: bool,
    window: Option<Window>,
) {
    let out = SharedPlanes::new(out);
    // SAFETY: `out` is borrowed exclusively for the call.
    unsafe { conv_forward_shared(kernel, s, src, weights, bias, relu, out, parallel, window) }
}

/// [`conv_forward`] into planes that other tasks use meanwhile: it writes only the window's
/// rows and columns of its `cout` planes (the whole planes on the portable path).
///
/// # Safety
/// `out` stays valid for the call, and no other task reads or writes those elements
/// meanwhile.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn conv_forward_shared(
    kernel: Kernel,
    s: ConvShape,
    src: &dyn RowSource,
    weights: &ConvWeights,
    bias: Option<&[f32]>,
    relu: bool,
    out: SharedPlanes,
    parallel: bool,
    window: Option<Window>,
) {
    assert_eq!(out.len(), s.cout * s.h * s.w, "conv_forward: output size");
    let (weight, wino, packed) = (weights.raw, &weights.wino, &weights.packed);
    assert_eq!(
        weight.len(),
        s.cout * s.cin * s.k * s.k,
        "conv_forward: weight size"
    );
    assert_eq!(
        wino.as_ref().map(winograd::Weights::tile),
        kernel.winograd_tile(s, s.cin, s.cout),
        "conv_forward: weights prepared for another kernel or shape"
    );
    // Winograd's tiles: bands and windows in multiples of their side, rows split in as many.
    let tile = wino.as_ref().map_or(1, winograd::Weights::tile);
    let kk = s.k * s.k;
    let wp = s.w + 2;
    let offsets: Vec<usize> = s.taps().iter().map(|&(ky, kx)| ky * wp + kx).collect();
    let kernel = kernel.direct();
    let window = match kernel {
        Kernel::Gemm => Window::full(s.h, s.w),
        _ => window.unwrap_or(Window::full(s.h, s.w)),
    };
    assert!(
        window.y0 < window.y1 && window.y1 <= s.h && window.x0 < window.x1 && window.x1 <= s.w,
        "conv_forward: window {window:?} outside {}×{}",
        s.h,
        s.w
    );

    let (x0, x1) = (window.x0, window.x1);
    // Winograd computes the 2 × 2 tiles the window touches.
    let (xa, xb) = (x0 / tile * tile, x1.next_multiple_of(tile));
    // A band continuing the one before it on the same thread reuses its last two rows.
    let band = |(y0, rows): (usize, usize), carried: Option<Carried>| -> Carried {
        SCRATCH.with(|cell| {
            let mut scratch = cell.borrow_mut();
            let Scratch { a, b, wino: ws, .. } = &mut *scratch;
            // The direct kernel computes whole tiles of grid positions: slack for the last.
            let ps = (rows + 2) * wp + 2 + direct::PX_BLOCK;
            let q = rows * wp;
            let xp = fill_band(
                src,
                s.cin,
                s.h,
                s.w,
                y0,
                rows,
                a,
                ps,
                (xa, xb),
                carried,
                tile,
            );
            let hw = s.h * s.w;
            // Winograd's bands may start a row before the window or end a row after it.
            let (ra, rb) = (
                window.y0.saturating_sub(y0).min(rows),
                (window.y1 - y0).min(rows),
            );
            let stride = match (&wino, kernel) {
                (Some(weights), _) => {
                    direct::timed(|| winograd::band(weights, xp, ps, wp, rows, (xa, xb), b, ws))
                }
                (None, Kernel::Direct(simd)) => {
                    // Row by row straight into the output planes, bias and ReLU included.
                    let store = direct::Store {
                        channels: s.cout,
                        bias,
                        relu,
                    };
                    for r in ra..rb {
                        let band = direct::Band {
                            cin: s.cin,
                            input: &xp[r * wp + x0..],
                            plane: ps,
                            offsets: &offsets,
                            weights: packed,
                            positions: x1 - x0,
                        };
                        // SAFETY: row y0 + r, columns x0..x1 of every channel plane belong
                        // to this band only, and lie inside `out` (`cout` planes of `hw`).
                        unsafe {
                            let at = out.at((y0 + r) * s.w + x0);
                            direct::conv_band_into(simd, &band, at, hw, store);
                        }
                    }
                    return Carried { rows, ps };
                }
                (None, Kernel::Gemm) => {
                    let og = grow(b, s.cout * q);
                    for (t, &off) in offsets.iter().enumerate() {
                        // SAFETY: og is cout×q; weight tap t of row co at co·cin·kk + ci·kk + t;
                        // the shifted band reads stay inside the plane (slack elements).
                        unsafe {
                            matmul(
                                s.cout,
                                q,
                                s.cin,
                                og.as_mut_ptr(),
                                q as isize,
                                1,
                                t > 0,
                                weight.as_ptr().add(t),
                                (s.cin * kk) as isize,
                                kk as isize,
                                xp.as_ptr().add(off),
                                ps as isize,
                                1,
                            );
                        }
                    }
                    q
                }
                (None, Kernel::Winograd(_)) => unreachable!("resolved to Direct above"),
            };
            let og = &b[..];
            for co in 0..s.cout {
                let bco = bias.map_or(0.0, |b| b[co]);
                for r in ra..rb {
                    let g = &og[co * stride + r * wp + x0..co * stride + r * wp + x1];
                    // SAFETY: row y0 + r of channel co belongs to this band only.
                    let o = unsafe { out.slice_mut(co * hw + (y0 + r) * s.w + x0, x1 - x0) };
                    simd::add_bias(o, g, bco, relu);
                }
            }
            Carried { rows, ps }
        })
    };
    // Consecutive bands in order, carrying the halo from one to the next.
    let run = |bands: &[(usize, usize)]| {
        let mut carried = None;
        for &b in bands {
            carried = Some(band(b, carried));
        }
    };
    let bands = match wino {
        Some(_) => s.tiled_bands_of(
            tile,
            window.y0 / tile * tile,
            window.y1.next_multiple_of(tile),
        ),
        None => s.bands_of(window.y0, window.y1),
    };
    if parallel && bands.len() > 1 {
        // Two runs of consecutive bands per thread: few halos recomputed, and a thread that
        // finishes early still finds work.
        let runs = 2 * rayon::current_num_threads();
        bands.par_chunks(bands.len().div_ceil(runs)).for_each(run);
    } else {
        run(&bands);
    }
}

/// Output channels up to which [`conv1x1_few`] replaces [`conv_forward`] for a 1×1 convolution
/// without bias.
pub(crate) const FEW_OUTPUTS: usize = 4;

/// A 1×1 convolution without bias into a few output channels (a network's head: one output
/// channel from a hundred), straight from the `[cin][h·w]` planes: `out[co] = Σ_c w[co][c] · x[c]`,
/// channels summed in order. The general path would copy every input channel into a padded band
/// and compute a kernel tile of six output channels for the one wanted. Rows are split across
/// threads; each pixel's sum is the same whatever the split. With a `window`, only its pixels
/// are computed and the rest of `out` is not written.
pub(crate) fn conv1x1_few(
    weight: &[f32],
    cin: usize,
    x: &[f32],
    (h, w): (usize, usize),
    out: &mut [f32],
    window: Option<Window>,
) {
    let hw = h * w;
    assert_eq!(x.len(), cin * hw, "conv1x1_few: input size");
    assert_eq!(out.len() % hw.max(1), 0, "conv1x1_few: output size");
    assert_eq!(
        weight.len(),
        out.len() / hw.max(1) * cin,
        "conv1x1_few: weight size"
    );
    let window = window.unwrap_or(Window::full(h, w));
    assert!(
        window.y1 <= h && window.x1 <= w,
        "conv1x1_few: window outside the plane"
    );
    let (x0, x1) = (window.x0, window.x1);
    for (plane, wt) in out
        .chunks_exact_mut(hw.max(1))
        .zip(weight.chunks_exact(cin.max(1)))
    {
        plane
            .par_chunks_mut(w.max(1))
            .enumerate()
            .skip(window.y0)
            .take(window.y1.saturating_sub(window.y0))
            .for_each(|(y, row)| {
                let o = &mut row[x0..x1];
                let len = o.len();
                few_outputs_row(o, wt, |c| &x[c * hw + y * w + x0..][..len]);
            });
    }
}

/// Rows `rows.y0..rows.y1`, columns `rows.x0..rows.x1` of [`conv1x1_few`] on the calling
/// thread, from and into planes other tasks use meanwhile: the same sums in the same order.
///
/// # Safety
/// No task writes the rows read here meanwhile, and no other task reads or writes the rows
/// written.
pub(crate) unsafe fn conv1x1_few_rows(
    weight: &[f32],
    cin: usize,
    x: SharedPlanes,
    (h, w): (usize, usize),
    out: SharedPlanes,
    rows: Window,
) {
    let hw = h * w;
    assert_eq!(x.len(), cin * hw, "conv1x1_few_rows: input size");
    assert_eq!(
        weight.len(),
        out.len() / hw.max(1) * cin,
        "conv1x1_few_rows: weight size"
    );
    assert!(
        rows.y1 <= h && rows.x1 <= w,
        "conv1x1_few_rows: rows outside the plane"
    );
    let (x0, len) = (rows.x0, rows.x1.saturating_sub(rows.x0));
    for (co, wt) in weight.chunks_exact(cin.max(1)).enumerate() {
        for y in rows.y0..rows.y1 {
            // SAFETY: the caller's contract.
            let o = unsafe { out.slice_mut(co * hw + y * w + x0, len) };
            // SAFETY: the caller's contract.
            few_outputs_row(o, wt, |c| unsafe { x.slice(c * hw + y * w + x0, len) });
        }
    }
}

/// One output row of [`conv1x1_few`]: `o = Σ_c wt[c] · input(c)`, channels summed in order
/// (both ways of running it give these bits).
fn few_outputs_row<'x>(o: &mut [f32], wt: &[f32], input: impl Fn(usize) -> &'x [f32]) {
    o.fill(0.0);
    for (c, &wc) in wt.iter().enumerate() {
        simd::mul_add_assign(o, input(c), wc);
    }
}

/// Weights rearranged for the input gradient: `wt[ci][t·cout + co] = w[co][ci][t]`.
pub(crate) fn transpose_weight(s: ConvShape, weight: &[f32]) -> Vec<f32> {
    let kk = s.k * s.k;
    let mut wt = vec![0.0; s.cin * kk * s.cout];
    for co in 0..s.cout {
        for ci in 0..s.cin {
            for t in 0..kk {
                wt[ci * kk * s.cout + t * s.cout + co] = weight[(co * s.cin + ci) * kk + t];
            }
        }
    }
    wt
}

/// Backward of [`conv_forward`] with `kernel` (without the ReLU: `dout` is the gradient
/// w.r.t. the pre-bias-added output, already masked by the caller) for one sample.
///
/// Accumulates the weight gradient into `dw` (layout `[t][cout][cin]`, tap-major) and the
/// bias gradient into `db`; passes the input gradient row by row to `sink` (`wt` from
/// [`ConvWeights::input_grad`] is then required).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_backward(
    kernel: Kernel,
    s: ConvShape,
    src: &dyn RowSource,
    wt: Option<&ConvWeights>,
    dout: &[f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    mut sink: Option<&mut dyn RowSink>,
) {
    let hw = s.h * s.w;
    let kk = s.k * s.k;
    assert_eq!(dout.len(), s.cout * hw, "conv_backward: gradient size");
    assert_eq!(dw.len(), kk * s.cout * s.cin, "conv_backward: dw size");
    // The bias gradient is summed from the rows as they are copied into the bands.
    let mut db_sums = db.as_ref().map(|_| vec![0.0f64; s.cout]);
    let wp = s.w + 2;
    let offsets: Vec<usize> = s.taps().iter().map(|&(ky, kx)| ky * wp + kx).collect();
    // The input gradient is a convolution of the padded output gradient with the flipped
    // taps; the direct kernel runs it as a forward convolution (cout → cin channels).
    let flipped: Vec<usize> = s
        .taps()
        .iter()
        .map(|&(ky, kx)| (2 - ky) * wp + (2 - kx))
        .collect();
    let wino = wt.and_then(|w| w.wino.as_ref());
    if let Some(wt) = wt {
        assert_eq!(
            wt.wino.as_ref().map(winograd::Weights::tile),
            kernel.winograd_tile(s, s.cout, s.cin),
            "conv_backward: weights prepared for another kernel or shape"
        );
    }
    // The weight gradient runs Winograd on the tiles of the forward convolution.
    let wgrad_tile = kernel.winograd_tile(s, s.cin, s.cout);
    let wgrad = wgrad_tile.is_some();
    let kernel = kernel.direct();
    // Bands in multiples of the tiles' sides (the same for both on one plane).
    let tile = wino
        .map(winograd::Weights::tile)
        .or(wgrad_tile)
        .unwrap_or(1);
    let bands = if tile > 1 {
        // The 4 × 4 weight gradient sums each band's tiles in registers, then across lanes:
        // bands of 128 tiles or more keep those lane sums rare.
        let min_rows = match wgrad_tile {
            Some(4) => (128 * 16 / s.w).next_multiple_of(4),
            _ => tile,
        };
        s.tiled_bands_at_least(tile, min_rows, 0, s.h)
    } else {
        s.bands()
    };
    SCRATCH.with(|cell| {
        let mut scratch = cell.borrow_mut();
        let Scratch { a, b, c, wino: ws } = &mut *scratch;
        if let Some(t) = wgrad_tile {
            ws.start_weight_grad(t, kernel.is_avx512(), s.cout, s.cin);
        }
        let mut carried: Option<Carried> = None;
        for (y0, rows) in bands {
            let ps = (rows + 2) * wp + 2 + direct::PX_BLOCK;
            let q = rows * wp;
            // Direct: whole vectors and tiles of positions, zero past the band.
            let (stride, co_rows) = match kernel {
                Kernel::Direct(_) | Kernel::Winograd(_) => (
                    q.next_multiple_of(direct::PX_BLOCK),
                    s.cout.next_multiple_of(direct::GRAD_CO_BLOCK),
                ),
                Kernel::Gemm => (q, s.cout),
            };
            let xp = fill_band(
                src,
                s.cin,
                s.h,
                s.w,
                y0,
                rows,
                a,
                ps,
                (0, s.w),
                carried,
                wgrad_tile.unwrap_or(1),
            );
            carried = Some(Carried { rows, ps });
            if wgrad {
                if let Some(sums) = db_sums.as_mut() {
                    for (co, sum) in sums.iter_mut().enumerate() {
                        for r in 0..rows {
                            let d = co * hw + (y0 + r) * s.w;
                            *sum += simd::sum_f64(&dout[d..d + s.w]);
                        }
                    }
                }
                let dy = winograd::OutputGrad {
                    dout,
                    hw,
                    w: s.w,
                    y0,
                };
                direct::timed(|| {
                    winograd::weight_grad_band(xp, ps, wp, rows, &dy, s.cin, s.cout, ws)
                });
            } else {
                // The output gradient on the grid, junk columns zero (they must not reach dw).
                // Each value is written once: rows copied, their junk columns, the tail past the
                // band and the padding channels zeroed (not the whole buffer first).
                let og = grow(b, co_rows * stride);
                for (co, plane) in og.chunks_exact_mut(stride).enumerate() {
                    if co >= s.cout {
                        plane.fill(0.0);
                        continue;
                    }
                    for r in 0..rows {
                        let (g, junk) = plane[r * wp..(r + 1) * wp].split_at_mut(s.w);
                        let d = co * hw + (y0 + r) * s.w;
                        g.copy_from_slice(&dout[d..d + s.w]);
                        junk.fill(0.0);
                        if let Some(sums) = db_sums.as_mut() {
                            sums[co] += simd::sum_f64(g);
                        }
                    }
                    plane[rows * wp..].fill(0.0);
                }
                match kernel {
                    Kernel::Direct(simd) | Kernel::Winograd(simd) => {
                        let band = direct::GradBand {
                            cin: s.cin,
                            input: xp,
                            plane: ps,
                            offsets: &offsets,
                            cout: s.cout,
                            dout: og,
                            stride,
                        };
                        direct::weight_grad_band(simd, &band, dw);
                    }
                    Kernel::Gemm => {
                        for (t, &off) in offsets.iter().enumerate() {
                            // SAFETY: dw tap block is cout×cin; rhs element (q, ci) at
                            // xp[ci·ps + q + off].
                            unsafe {
                                matmul(
                                    s.cout,
                                    s.cin,
                                    q,
                                    dw.as_mut_ptr().add(t * s.cout * s.cin),
                                    s.cin as isize,
                                    1,
                                    true,
                                    og.as_ptr(),
                                    q as isize,
                                    1,
                                    xp.as_ptr().add(off),
                                    1,
                                    ps as isize,
                                );
                            }
                        }
                    }
                }
            }
            let (Some(sink), Some(wt)) = (sink.as_deref_mut(), wt) else {
                continue;
            };
            // Padded output gradient rows y0 − 1 .. y0 + rows (zero outside the image).
            let dps = (rows + 2) * wp + 2 + direct::PX_BLOCK;
            let dsrc = Plain {
                x: dout,
                hw,
                w: s.w,
            };
            let dp = fill_band(
                &dsrc,
                s.cout,
                s.h,
                s.w,
                y0,
                rows,
                b,
                dps,
                (0, s.w),
                None,
                wino.map_or(1, winograd::Weights::tile),
            );
            let (da, da_stride) = match (&wino, kernel) {
                (Some(weights), _) => {
                    let da_stride = direct::timed(|| {
                        winograd::band(weights, dp, dps, wp, rows, (0, s.w), c, ws)
                    });
                    (&c[..], da_stride)
                }
                (None, Kernel::Direct(simd) | Kernel::Winograd(simd)) => {
                    let da_stride =
                        direct_band(simd, s.cout, s.cin, dp, dps, &flipped, &wt.packed, q, c);
                    (&c[..], da_stride)
                }
                (None, Kernel::Gemm) => {
                    // col[t·cout + co][q] = dp[co][q + flipped[t]].
                    let kc = kk * s.cout;
                    let (col, da) = {
                        let buf = grow(c, kc * q + s.cin * q);
                        buf.split_at_mut(kc * q)
                    };
                    for (t, &off) in flipped.iter().enumerate() {
                        for co in 0..s.cout {
                            col[(t * s.cout + co) * q..(t * s.cout + co + 1) * q]
                                .copy_from_slice(&dp[co * dps + off..co * dps + off + q]);
                        }
                    }
                    // SAFETY: da is cin×q, wt is cin×kc, col is kc×q.
                    unsafe {
                        matmul(
                            s.cin,
                            q,
                            kc,
                            da.as_mut_ptr(),
                            q as isize,
                            1,
                            false,
                            wt.raw.as_ptr(),
                            kc as isize,
                            1,
                            col.as_ptr(),
                            q as isize,
                            1,
                        );
                    }
                    (&*da, q)
                }
            };
            for ci in 0..s.cin {
                for r in 0..rows {
                    let o = ci * da_stride + r * wp;
                    sink.row(ci, y0 + r, &da[o..o + s.w]);
                }
            }
        }
        if wgrad {
            ws.add_weight_grad(s.cout, s.cin, dw);
        }
    });
    if let (Some(db), Some(sums)) = (db, db_sums) {
        for (d, sum) in db.iter_mut().zip(sums) {
            *d += sum as f32;
        }
    }
}

/// Adds `[t][cout][cin]` tap-major weight gradients into a `[cout][cin][t]` buffer.
pub(crate) fn add_tap_major(s: ConvShape, src: &[f32], dst: &mut [f32]) {
    let kk = s.k * s.k;
    for t in 0..kk {
        for co in 0..s.cout {
            for ci in 0..s.cin {
                dst[(co * s.cin + ci) * kk + t] += src[(t * s.cout + co) * s.cin + ci];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The convolution written out: zero padding, f64 sums.
    fn naive(s: ConvShape, x: &[f32], w: &[f32], bias: Option<&[f32]>, relu: bool) -> Vec<f32> {
        let (h, wd, k) = (s.h as isize, s.w as isize, s.k as isize);
        let mut out = vec![0.0; s.cout * s.h * s.w];
        for co in 0..s.cout {
            for y in 0..h {
                for xx in 0..wd {
                    let mut sum = bias.map_or(0.0, |b| f64::from(b[co]));
                    for ci in 0..s.cin {
                        for ky in 0..k {
                            for kx in 0..k {
                                let (iy, ix) = (y + ky - k / 2, xx + kx - k / 2);
                                if iy < 0 || iy >= h || ix < 0 || ix >= wd {
                                    continue;
                                }
                                let wi =
                                    ((co * s.cin + ci) * s.k + ky as usize) * s.k + kx as usize;
                                let xi = (ci as isize * h + iy) * wd + ix;
                                sum += f64::from(w[wi]) * f64::from(x[xi as usize]);
                            }
                        }
                    }
                    let v = if relu { sum.max(0.0) } else { sum };
                    out[(co * s.h + y as usize) * s.w + xx as usize] = v as f32;
                }
            }
        }
        out
    }

    /// `(cin, cout, k, h, w)`: channel counts off the kernels' tile sizes, widths off the
    /// 16-position tile, heights of one band and of several (odd remainders included), and wide
    /// images cut into bands of a few rows. The even 3×3 ones run Winograd too: in one band
    /// and in several, on rows of one vector of tiles and on rows that end in part of one,
    /// with the inputs in one block and in several (forward and input gradient both), and
    /// with numbers of them that leave 1 and 2 over (the weight gradient takes them in threes).
    const SHAPES: [(usize, usize, usize, usize, usize); 16] = [
        (30, 12, 3, 24, 40),
        (24, 12, 3, 8, 96),
        (40, 24, 3, 12, 64),
        (13, 12, 3, 4, 48),
        (20, 12, 3, 18, 200),
        (64, 12, 3, 8, 16),
        (12, 40, 3, 6, 18),
        (1, 16, 3, 9, 13),
        (30, 6, 3, 23, 700),
        (30, 6, 1, 40, 700),
        (5, 12, 3, 17, 30),
        (28, 12, 3, 33, 25),
        (13, 3, 3, 4, 47),
        (40, 41, 1, 21, 19),
        (88, 1, 1, 6, 11),
        (7, 5, 1, 2, 2),
    ];

    /// The kernels this CPU runs: each instruction set's direct kernels, alone and with
    /// Winograd, and the portable path.
    fn kernels() -> Vec<Kernel> {
        let mut kernels = Vec::new();
        for isa in comir_cpu::Isa::available() {
            match direct::Simd::of(isa) {
                Some(simd) => kernels.extend([Kernel::Direct(simd), Kernel::Winograd(simd)]),
                None => kernels.push(Kernel::Gemm),
            }
        }
        kernels
    }

    fn max_difference(got: &[f32], want: &[f32]) -> f32 {
        got.iter()
            .zip(want)
            .fold(0.0f32, |m, (g, w)| m.max((g - w).abs()))
    }

    fn uniform(rng: &mut impl Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
    }

    #[test]
    fn upsampled_rows_from_any_column() {
        let (w, h) = (12, 4);
        let low: Vec<f32> = (0..(w / 2) * (h / 2)).map(|v| v as f32).collect();
        let up = Upsample {
            x: &low,
            hw_low: (w / 2) * (h / 2),
            w,
        };
        for y in 0..h {
            for x0 in 0..w {
                for len in 0..=w - x0 {
                    let mut got = vec![f32::NAN; len];
                    up.row(0, y, x0, &mut got);
                    let want: Vec<f32> = (x0..x0 + len)
                        .map(|x| low[(y / 2) * (w / 2) + x / 2])
                        .collect();
                    assert_eq!(got, want, "row {y}, columns {x0}..{}", x0 + len);
                }
            }
        }
    }

    #[test]
    fn every_kernel_matches_the_convolution_written_out() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for &(cin, cout, k, h, w) in &SHAPES {
            let s = ConvShape { cin, cout, k, h, w };
            let x = uniform(&mut rng, cin * h * w);
            let wt = uniform(&mut rng, cout * cin * k * k);
            let bias = uniform(&mut rng, cout);
            for relu in [false, true] {
                let want = naive(s, &x, &wt, Some(&bias), relu);
                let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                for kernel in kernels() {
                    for parallel in [false, true] {
                        let mut got = vec![f32::NAN; cout * h * w];
                        let src = Plain {
                            x: &x,
                            hw: h * w,
                            w,
                        };
                        conv_forward(
                            kernel,
                            s,
                            &src,
                            &ConvWeights::forward(kernel, s, &wt),
                            Some(&bias),
                            relu,
                            &mut got,
                            parallel,
                            None,
                        );
                        let err = max_difference(&got, &want);
                        assert!(
                            err <= 1e-5 * scale,
                            "{kernel:?} {s:?} relu {relu}: max error {err} (scale {scale})"
                        );
                    }
                }
            }
        }
    }

    /// Winograd's products on AVX-512's 16 lanes give the bits of the same products on 8 (the
    /// input gradient runs the same bands as the forward convolution).
    #[test]
    fn winograd_gives_the_same_bits_on_both_instruction_sets() {
        if !comir_cpu::Isa::Avx512.supported() {
            eprintln!("skipped: this CPU lacks AVX-512");
            return;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(29);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let wide = Kernel::Winograd(direct::Simd::Avx512);
        let narrow = Kernel::Winograd(direct::Simd::Avx2);
        let mut wide_runs = 0;
        for &(cin, cout, k, h, w) in &SHAPES {
            let s = ConvShape { cin, cout, k, h, w };
            if wide.winograd_tile(s, cin, cout).is_none() {
                continue;
            }
            wide_runs += 1;
            let x = uniform(&mut rng, cin * h * w);
            let wt = uniform(&mut rng, cout * cin * k * k);
            let src = Plain {
                x: &x,
                hw: h * w,
                w,
            };
            let run = |kernel: Kernel| {
                let mut out = vec![f32::NAN; cout * h * w];
                let weights = ConvWeights::forward(kernel, s, &wt);
                conv_forward(kernel, s, &src, &weights, None, false, &mut out, true, None);
                out
            };
            assert_eq!(bits(&run(wide)), bits(&run(narrow)), "{s:?}");
        }
        assert!(wide_runs >= 3, "too few shapes for AVX-512 Winograd");
    }

    /// A window of a convolution holds exactly what the whole convolution has there; the
    /// direct kernels leave everything outside it untouched.
    #[test]
    fn a_window_of_the_convolution_is_that_part_of_the_whole() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        for &(cin, cout, k, h, w) in &SHAPES {
            let s = ConvShape { cin, cout, k, h, w };
            let x = uniform(&mut rng, cin * h * w);
            let wt = uniform(&mut rng, cout * cin * k * k);
            let bias = uniform(&mut rng, cout);
            let src = Plain {
                x: &x,
                hw: h * w,
                w,
            };
            let windows = [
                Window::full(h, w),
                Window {
                    y0: h / 3,
                    y1: h - h / 4,
                    x0: w / 5,
                    x1: w - w / 3,
                },
                Window {
                    y0: h - 1,
                    y1: h,
                    x0: w - 1,
                    x1: w,
                },
                Window {
                    y0: 0,
                    y1: h.min(3),
                    x0: 1.min(w - 1),
                    x1: w,
                },
            ];
            for kernel in kernels() {
                for parallel in [false, true] {
                    // Untouched outputs stay NaN.
                    let run = |window: Option<Window>| {
                        let mut out = vec![f32::NAN; cout * h * w];
                        let b = Some(bias.as_slice());
                        let weights = ConvWeights::forward(kernel, s, &wt);
                        conv_forward(
                            kernel, s, &src, &weights, b, true, &mut out, parallel, window,
                        );
                        out
                    };
                    let whole = run(None);
                    for win in windows {
                        let got = run(Some(win));
                        let (mut inside, mut want) = (Vec::new(), Vec::new());
                        for co in 0..cout {
                            for y in win.y0..win.y1 {
                                let r = co * h * w + y * w;
                                inside.extend_from_slice(&got[r + win.x0..r + win.x1]);
                                want.extend_from_slice(&whole[r + win.x0..r + win.x1]);
                            }
                        }
                        assert_eq!(bits(&inside), bits(&want), "{kernel:?} {s:?} {win:?}");
                        if kernel != Kernel::Gemm {
                            let written = got.iter().filter(|v| !v.is_nan()).count();
                            let area = (win.y1 - win.y0) * (win.x1 - win.x0);
                            assert_eq!(written, cout * area, "{kernel:?} {s:?} {win:?}");
                        }
                    }
                }
            }
            if k == 1 && cout <= FEW_OUTPUTS {
                let mut whole = vec![0.0; cout * h * w];
                conv1x1_few(&wt, cin, &x, (h, w), &mut whole, None);
                for win in windows {
                    let mut got = vec![f32::NAN; cout * h * w];
                    conv1x1_few(&wt, cin, &x, (h, w), &mut got, Some(win));
                    for (i, (g, v)) in got.iter().zip(&whole).enumerate() {
                        let (y, xx) = ((i % (h * w)) / w, i % w);
                        let inside =
                            (win.y0..win.y1).contains(&y) && (win.x0..win.x1).contains(&xx);
                        assert!(
                            if inside {
                                g.to_bits() == v.to_bits()
                            } else {
                                g.is_nan()
                            },
                            "few outputs {s:?} {win:?} at {i}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_few_outputs_convolution_matches_the_convolution_written_out() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        // A plane longer than one pixel chunk and not a multiple of it, and a tiny one.
        for (cin, h, w) in [(88, 37, 61), (13, 3, 5)] {
            for cout in 1..=FEW_OUTPUTS {
                let s = ConvShape {
                    cin,
                    cout,
                    k: 1,
                    h,
                    w,
                };
                let x = uniform(&mut rng, cin * h * w);
                let wt = uniform(&mut rng, cout * cin);
                let want = naive(s, &x, &wt, None, false);
                let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                let mut got = vec![f32::NAN; cout * h * w];
                conv1x1_few(&wt, cin, &x, (h, w), &mut got, None);
                let err = max_difference(&got, &want);
                assert!(
                    err <= 1e-5 * scale,
                    "{s:?}: max error {err} (scale {scale})"
                );
            }
        }
    }

    /// Collects the input gradient.
    struct Collect {
        dx: Vec<f32>,
        hw: usize,
        w: usize,
    }

    impl RowSink for Collect {
        fn row(&mut self, c: usize, y: usize, grad: &[f32]) {
            let s = c * self.hw + y * self.w;
            self.dx[s..s + self.w].copy_from_slice(grad);
        }
    }

    #[test]
    fn every_backward_kernel_matches_the_gradients_written_out() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for &(cin, cout, k, h, w) in &SHAPES {
            let s = ConvShape { cin, cout, k, h, w };
            let (hi, wi, ki) = (h as isize, w as isize, k as isize);
            let x = uniform(&mut rng, cin * h * w);
            let wt = uniform(&mut rng, cout * cin * k * k);
            let dout = uniform(&mut rng, cout * h * w);
            // Written out in f64: dw[t][co][ci], db[co], dx[ci][y][x].
            let mut dw_want = vec![0.0f64; k * k * cout * cin];
            let mut dx_want = vec![0.0f64; cin * h * w];
            for co in 0..cout {
                for ci in 0..cin {
                    for ky in 0..ki {
                        for kx in 0..ki {
                            let t = (ky * ki + kx) as usize;
                            let wv = f64::from(wt[(co * cin + ci) * k * k + t]);
                            for y in 0..hi {
                                for xx in 0..wi {
                                    let (iy, ix) = (y + ky - ki / 2, xx + kx - ki / 2);
                                    if iy < 0 || iy >= hi || ix < 0 || ix >= wi {
                                        continue;
                                    }
                                    let g = f64::from(
                                        dout[((co as isize * hi + y) * wi + xx) as usize],
                                    );
                                    let xi = ((ci as isize * hi + iy) * wi + ix) as usize;
                                    dw_want[(t * cout + co) * cin + ci] += g * f64::from(x[xi]);
                                    dx_want[xi] += g * wv;
                                }
                            }
                        }
                    }
                }
            }
            let db_want: Vec<f64> = (0..cout)
                .map(|co| {
                    dout[co * h * w..(co + 1) * h * w]
                        .iter()
                        .map(|&v| f64::from(v))
                        .sum()
                })
                .collect();
            let tw = transpose_weight(s, &wt);
            for kernel in kernels() {
                // Accumulates onto what is there.
                let mut dw = vec![1.0f32; k * k * cout * cin];
                let mut db = vec![1.0f32; cout];
                let mut sink = Collect {
                    dx: vec![f32::NAN; cin * h * w],
                    hw: h * w,
                    w,
                };
                let src = Plain {
                    x: &x,
                    hw: h * w,
                    w,
                };
                conv_backward(
                    kernel,
                    s,
                    &src,
                    Some(&ConvWeights::input_grad(kernel, s, &tw)),
                    &dout,
                    &mut dw,
                    Some(&mut db),
                    Some(&mut sink),
                );
                let check = |name: &str, got: &[f32], want: &[f64], base: f64| {
                    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                    let err = got
                        .iter()
                        .zip(want)
                        .fold(0.0f64, |m, (&g, &w)| m.max((f64::from(g) - base - w).abs()));
                    assert!(
                        err <= 2e-5 * scale,
                        "{kernel:?} {s:?} {name}: max error {err} (scale {scale})"
                    );
                };
                check("dw", &dw, &dw_want, 1.0);
                check("db", &db, &db_want, 1.0);
                check("dx", &sink.dx, &dx_want, 0.0);
            }
        }
    }
}
