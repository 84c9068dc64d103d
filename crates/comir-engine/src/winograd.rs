//! Winograd F(2×2, 3×3) convolution (Lavin & Gray, "Fast Algorithms for Convolutional Neural
//! Networks", CVPR 2016) for the 3×3 layers on CPUs with the direct kernels.
//!
//! Why: the direct kernels run at about 90 % of the FMA peak already, so the 3×3 layers get
//! faster only with fewer multiplies. A 2 × 2 tile of outputs is computed from the 4 × 4
//! inputs around it as `Aᵀ [Σ_ci (G g Gᵀ) ⊙ (Bᵀ d B)] A`: 16 multiplies per input channel
//! where the direct convolution needs 36, 2.25× fewer. The sums over input channels are 16
//! matrix products, one per position of the 4 × 4 transformed tile ("frequency"), computed
//! as the direct kernel computes a tap (6 outputs × 16 positions in registers, the weights
//! broadcast); the transforms around them are additions only. The same band computes the
//! input gradient (the output gradient convolved with the flipped kernel). The weight
//! gradient is `Gᵀ [Σ_tiles (A dy Aᵀ) ⊙ (Bᵀ d B)] G`: 16 products per tile for each input and
//! output channel where the direct weight gradient needs 36, summed over the tiles in the
//! transformed domain.
//!
//! The transforms multiply by 0, ±1 and ½ only, so the result differs from the direct sum by
//! f32 rounding (a few ulps of the largest term), and each output is computed the same way
//! whichever band or window it falls in: tiles lie on the plane's even rows and columns.
//!
//! Where a plane's sides are multiples of 4 and its rows hold 8 tiles or more, the forward
//! convolutions and input gradients use 4 × 4 tiles instead ([`f4`], F(4×4, 3×3)): 2.25
//! multiplies per output instead of 4, with the same products kernel. [`Weights::tile`] says
//! which a convolution's weights were prepared for.

use std::cell::RefCell;

use crate::direct::CO_BLOCK;
use crate::grow;

mod f4;
#[cfg(target_arch = "x86_64")]
mod vectors;

pub(crate) use f4::{bn_relu_split as bn_relu_split4, split as split4};

/// Positions of the transformed 4 × 4 tile.
const FREQS: usize = 16;
/// Tiles per AVX2 vector. The 2 × 2 transforms use AVX2's 8 lanes on every CPU that has the
/// direct kernels; the 4 × 4 ones use AVX-512's 16 where the CPU has them (see [`f4`]).
const LANES: usize = 8;
/// Tiles of one step along a tile row: two vectors.
const SEGMENT: usize = 2 * LANES;
/// Input channels transformed at a time: 16 KiB of transformed tiles (32 KiB when two blocks
/// are transformed at once).
const IN_BLOCK: usize = 16;
/// Output channels summed at a time: 12 KiB of products.
const OUT_BLOCK: usize = 2 * CO_BLOCK;
/// The weight gradient's register tile: outputs × input channels.
const GRAD_OUTPUTS: usize = 4;
const GRAD_CHANNELS: usize = 3;

/// Whether Winograd computes a 3×3 convolution from `inputs` to `outputs` channels on planes
/// `width` wide at least 10 % faster than the direct kernel. Its time relative to the direct
/// kernel's, measured on a 2-core Xeon (AVX2 forced) for 6–300 channels either way, is about
/// `0.42 + 3.6 k / outputs + 1.3 / inputs`: the products (0.42: 4/9 of the multiplies, a little
/// less efficiently), the input transform shared by the outputs (done `k` times when the
/// inputs come in several blocks: once per block of outputs), and the output transform shared
/// by the inputs. Rows of fewer than 8 tiles leave vectors half empty and never pay. The
/// same rule admits 4 × 4 tiles, which save more of the multiplies for transforms that cost
/// about the same.
pub(crate) fn pays(inputs: usize, outputs: usize, width: usize) -> bool {
    if width < 2 * LANES || inputs == 0 || outputs == 0 {
        return false;
    }
    let k = if inputs <= 2 * IN_BLOCK {
        1
    } else {
        outputs.div_ceil(OUT_BLOCK)
    };
    let cost = 0.42 + 3.6 * k as f64 / outputs as f64 + 1.3 / inputs as f64;
    cost < 0.9
}

/// The transformed kernels `G g Gᵀ` (16 for 2 × 2 tiles, 36 for 4 × 4), each packed as the
/// direct kernel packs a tap.
pub(crate) struct Weights {
    /// The side of the output tiles: 2 or 4.
    tile: usize,
    /// Whether the products, and the 4 × 4 transforms, run on AVX-512's 16 lanes (a segment
    /// of tiles per vector).
    wide: bool,
    inputs: usize,
    outputs: usize,
    /// A block of `block` floats per frequency.
    packed: Vec<f32>,
    block: usize,
}

thread_local! {
    // Buffers of dropped `Weights`, reused: a convolution is run for each sample and layer,
    // and a fresh buffer of a few hundred KiB would come with page faults every time.
    static BUFFERS: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

impl Weights {
    /// Transforms the 3×3 kernels `g(output, input, tap)` (taps row-major) for output tiles
    /// of side `tile` (2 or 4).
    pub(crate) fn new(
        tile: usize,
        outputs: usize,
        inputs: usize,
        g: impl Fn(usize, usize, usize) -> f32,
    ) -> Weights {
        assert!(
            tile == 2 || tile == 4,
            "winograd: tiles of 2 or 4, not {tile}"
        );
        let freqs = freqs_of(tile);
        let padded = outputs.div_ceil(CO_BLOCK) * CO_BLOCK;
        let block = padded * inputs;
        let mut packed = BUFFERS.with(|b| b.borrow_mut().pop()).unwrap_or_default();
        packed.clear();
        packed.resize(freqs * block, 0.0);
        // Block f as `direct::pack_weights` lays out one tap: `[o / 6][i][o % 6]`, the padding
        // outputs zero.
        for o in 0..outputs {
            let (ob, oj) = (o / CO_BLOCK, o % CO_BLOCK);
            for i in 0..inputs {
                let k: [f64; 9] = std::array::from_fn(|t| f64::from(g(o, i, t)));
                let u = if tile == 2 {
                    transform_kernel(&k).to_vec()
                } else {
                    f4::transform_kernel(&k).to_vec()
                };
                for (f, u) in u.iter().enumerate() {
                    packed[f * block + (ob * inputs + i) * CO_BLOCK + oj] = *u as f32;
                }
            }
        }
        Weights {
            tile,
            wide: false,
            inputs,
            outputs,
            packed,
            block,
        }
    }

    /// The side of the output tiles: bands and windows come in multiples of it, and the
    /// input rows split in as many parts.
    pub(crate) fn tile(&self) -> usize {
        self.tile
    }

    /// With `wide`, the products of whole segments, and the 4 × 4 transforms, run on
    /// AVX-512's 16 lanes (the CPU must have AVX-512F); the numbers are the same, lane for
    /// lane.
    pub(crate) fn with_wide_products(mut self, wide: bool) -> Weights {
        self.wide = wide;
        self
    }
}

/// The products of one [`Step`]: on 16 lanes where the weights ask for it and the segment is
/// whole, else on 8.
///
/// # Safety
/// The CPU has AVX2 and FMA, and AVX-512F where the weights ask for it.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
unsafe fn products(weights: &Weights, step: &Step, v: &[f32], m: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if weights.wide && step.vecs == 2 && step.segment == 2 * LANES {
        return avx512::products(step, v, m);
    }
    avx2::products(step, v, m)
}

/// The frequencies of tiles of side `tile`: 16 for 2 × 2, 36 for 4 × 4.
fn freqs_of(tile: usize) -> usize {
    if tile == 4 {
        f4::FREQS
    } else {
        FREQS
    }
}

/// The side of the output tiles Winograd uses for a convolution's forward or input gradient
/// on `h × w` planes (both even): 4 where both are multiples of 4 and a row holds 8 tiles or
/// more, else 2.
pub(crate) fn tile_for(h: usize, w: usize) -> usize {
    if h.is_multiple_of(4) && w.is_multiple_of(4) && w >= 4 * LANES {
        4
    } else {
        2
    }
}

impl Drop for Weights {
    fn drop(&mut self) {
        let packed = std::mem::take(&mut self.packed);
        BUFFERS.with(|b| b.borrow_mut().push(packed));
    }
}

/// The gradient w.r.t. a 3×3 kernel (row-major) of a loss whose gradient w.r.t. `G g Gᵀ` is
/// `u`: `Gᵀ u G`, the adjoint of [`transform_kernel`].
fn kernel_gradient(u: &[f64; FREQS]) -> [f64; 9] {
    // Gᵀ applied to a column (a, b, c, d) of four.
    let col =
        |a: f64, b: f64, c: f64, d: f64| [a + (b + c) / 2.0, (b - c) / 2.0, (b + c) / 2.0 + d];
    // Gᵀ u: 3 × 4, column by column.
    let gu: [[f64; 3]; 4] = std::array::from_fn(|j| col(u[j], u[4 + j], u[8 + j], u[12 + j]));
    let mut g = [0.0; 9];
    for k in 0..3 {
        let row = col(gu[0][k], gu[1][k], gu[2][k], gu[3][k]);
        g[3 * k..3 * k + 3].copy_from_slice(&row);
    }
    g
}

/// `G g Gᵀ` of one 3×3 kernel (row-major), with `G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1]`.
fn transform_kernel(g: &[f64; 9]) -> [f64; FREQS] {
    let col = |a: f64, b: f64, c: f64| [a, (a + b + c) / 2.0, (a - b + c) / 2.0, c];
    // G g: 4 × 3, column by column.
    let gg: [[f64; 4]; 3] = std::array::from_fn(|j| col(g[j], g[3 + j], g[6 + j]));
    let mut u = [0.0; FREQS];
    for i in 0..4 {
        let row = col(gg[0][i], gg[1][i], gg[2][i]);
        u[4 * i..4 * i + 4].copy_from_slice(&row);
    }
    u
}

/// Scratch of [`band`], reused across calls.
#[derive(Default)]
pub(crate) struct Scratch {
    /// Transformed input: in [`band`], of a segment, `[FREQS][inputs of a block][SEGMENT]`;
    /// in [`weight_grad_band`], of 3 channels over the band, `[FREQS][3][tiles]`.
    v: Vec<f32>,
    /// In [`band`], the products of a segment, `[FREQS][OUT_BLOCK][SEGMENT]`; in
    /// [`weight_grad_band`], the transformed output gradient of the band,
    /// `[FREQS][outputs rounded up to 12][tiles]`.
    m: Vec<f32>,
    /// Two rows of the output gradient, split: even and odd elements of each.
    rows: Vec<f32>,
    /// The weight gradient of a convolution in the transformed domain,
    /// `[frequencies][outputs][inputs]` (see [`weight_grad_band`]).
    sums: Vec<f32>,
    /// The side of the tiles `sums` are for.
    sums_tile: usize,
    /// Whether the 4 × 4 transforms of [`weight_grad_band`] run on AVX-512's 16 lanes.
    sums_wide: bool,
}

impl Scratch {
    /// Clears the sums of [`weight_grad_band`] for a convolution from `inputs` to `outputs`
    /// channels on tiles of side `tile` (2 or 4); with `wide`, the 4 × 4 transforms run on
    /// AVX-512's 16 lanes (the CPU must have AVX-512F; the same bits).
    pub(crate) fn start_weight_grad(
        &mut self,
        tile: usize,
        wide: bool,
        outputs: usize,
        inputs: usize,
    ) {
        assert!(
            tile == 2 || tile == 4,
            "winograd: tiles of 2 or 4, not {tile}"
        );
        assert!(
            !wide || comir_cpu::Isa::Avx512.supported(),
            "winograd: CPU lacks AVX-512"
        );
        let freqs = freqs_of(tile);
        self.sums_tile = tile;
        self.sums_wide = wide;
        self.sums.clear();
        self.sums.resize(freqs * outputs * inputs, 0.0);
    }

    /// Adds the 3×3 weight gradient of the bands summed since [`Scratch::start_weight_grad`]
    /// into `dw` (`[tap][outputs][inputs]`), back from the transformed domain once for all
    /// bands ([`kernel_gradient`]).
    pub(crate) fn add_weight_grad(&self, outputs: usize, inputs: usize, dw: &mut [f32]) {
        let n = outputs * inputs;
        let freqs = freqs_of(self.sums_tile);
        assert!(
            self.sums.len() >= freqs * n && dw.len() >= 9 * n,
            "winograd: sizes"
        );
        for k in 0..n {
            let g = if self.sums_tile == 4 {
                f4::kernel_gradient(&std::array::from_fn(|f| f64::from(self.sums[f * n + k])))
            } else {
                kernel_gradient(&std::array::from_fn(|f| f64::from(self.sums[f * n + k])))
            };
            for (t, g) in g.iter().enumerate() {
                dw[t * n + k] += *g as f32;
            }
        }
    }
}

/// A band of the convolution on the zero-padded input band `input` (channel `c` at
/// `c · plane`, `rows + 2` rows of `wp` floats, each split in as many parts as the tiles' side
/// by [`split`] or [`split4`]): writes `out[o · stride + r · wp + x]` for output rows
/// `r < rows` and columns `x` in `xa..xb` (all three multiples of the tiles' side) and returns
/// `stride`. Other positions of `out` are not written.
///
/// The tiles are taken 16 at a time along a tile row, and the channels in blocks, so that
/// the transformed input and the products of a step stay in L1: written to L2, the
/// transformed input (4× the input) cost as much as the multiplies it saved.
///
/// Runs on AVX2, and on AVX-512 where the weights ask for it ([`Weights::with_wide_products`]).
/// Panics if the CPU lacks those or the band is shorter than described.
#[allow(clippy::too_many_arguments)]
pub(crate) fn band(
    weights: &Weights,
    input: &[f32],
    plane: usize,
    wp: usize,
    rows: usize,
    (xa, xb): (usize, usize),
    out: &mut Vec<f32>,
    scratch: &mut Scratch,
) -> usize {
    assert!(
        !weights.wide || comir_cpu::Isa::Avx512.supported(),
        "winograd: CPU lacks AVX-512"
    );
    let (inputs, outputs) = (weights.inputs, weights.outputs);
    // The side of the tiles, and their frequencies.
    let t = weights.tile;
    let freqs = freqs_of(t);
    assert!(
        rows.is_multiple_of(t)
            && xa.is_multiple_of(t)
            && xb.is_multiple_of(t)
            && (wp - 2).is_multiple_of(t)
            && xa < xb,
        "winograd: rows {rows}, columns {xa}..{xb} and width {} must be multiples of {t}",
        wp - 2
    );
    assert!(
        xb + 2 <= wp,
        "winograd: columns {xa}..{xb} outside the band"
    );
    assert!(
        inputs == 0 || (inputs - 1) * plane + (rows + 2) * wp + 2 * LANES <= input.len(),
        "winograd: input band too short"
    );
    assert!(comir_cpu::Isa::Avx2.supported(), "winograd: CPU lacks AVX2");
    let stride = rows * wp;
    let og = grow(out, outputs * stride);
    let tw = (xb - xa) / t;
    let padded = outputs.div_ceil(CO_BLOCK) * CO_BLOCK;
    // Up to two blocks of inputs (the input gradient's 12) are transformed once per segment
    // for all blocks of outputs when there are several; more are transformed block by block,
    // again for each block of outputs (half as many channels a block with 4 × 4 tiles, whose
    // 36 frequencies take more room).
    let hoist = inputs <= IN_BLOCK || (inputs <= 2 * IN_BLOCK && padded > OUT_BLOCK);
    let in_block = match (hoist, t) {
        (true, _) => inputs,
        (false, 4) => IN_BLOCK / 2,
        (false, _) => IN_BLOCK,
    };
    let v = grow(&mut scratch.v, freqs * in_block * SEGMENT);
    let m = grow(&mut scratch.m, freqs * OUT_BLOCK * SEGMENT);
    let fv = in_block * SEGMENT;
    let fm = OUT_BLOCK * SEGMENT;
    let transform = |v: &mut [f32], ci0: usize, n: usize, ty: usize, s0: usize, seg: usize| {
        for c in 0..n {
            let tile = &input[(ci0 + c) * plane + t * ty * wp + xa / t + s0..];
            let v = &mut v[c * SEGMENT..];
            // SAFETY: AVX2 is present (asserted); the reads stay in the band (asserted: the
            // last row's overrun is within the vector of slack after it), the writes in `v`
            // (a whole segment per channel and frequency).
            unsafe {
                if t == 4 {
                    f4::input_transform_rows(tile, wp, 1, seg, v, fv, weights.wide);
                } else {
                    avx2::input_transform(tile, wp, 1, seg, v, fv);
                }
            }
        }
    };
    for ty in 0..rows / t {
        for s0 in (0..tw).step_by(SEGMENT) {
            let seg = SEGMENT.min(tw - s0);
            let vecs = seg.div_ceil(LANES);
            if hoist {
                transform(v, 0, inputs, ty, s0, seg);
            }
            for ob in (0..padded).step_by(OUT_BLOCK) {
                let nob = OUT_BLOCK.min(padded - ob);
                for ib in (0..inputs).step_by(in_block) {
                    let nib = in_block.min(inputs - ib);
                    if !hoist {
                        transform(v, ib, nib, ty, s0, seg);
                    }
                    let step = Step {
                        u: &weights.packed[(ob / CO_BLOCK * inputs + ib) * CO_BLOCK..],
                        freqs,
                        ufreq: weights.block,
                        ublock: inputs * CO_BLOCK,
                        inputs: nib,
                        blocks: nob / CO_BLOCK,
                        vecs,
                        segment: SEGMENT,
                        fv,
                        fm,
                        first: ib == 0,
                    };
                    // SAFETY: AVX2 is present (asserted; AVX-512F where asked for, checked
                    // above); the sizes are checked inside.
                    unsafe { products(weights, &step, v, m) };
                }
                for o in ob..(ob + nob).min(outputs) {
                    let dst = &mut og[o * stride + t * (ty * wp + s0) + xa..(o + 1) * stride];
                    let m = &m[(o - ob) * SEGMENT..];
                    // SAFETY: as above; `seg` tiles give `t · seg` outputs on each of `t` rows.
                    unsafe {
                        if t == 4 {
                            f4::output_transform_segment(m, fm, seg, dst, wp, weights.wide);
                        } else {
                            avx2::output_transform(m, fm, seg, dst, wp);
                        }
                    }
                }
            }
        }
    }
    stride
}

/// One step of the products of a segment: `m[f][o][t] (+)= Σ_i U_f[o][i] · v[f][i][t]` for
/// every frequency, a block of inputs and a block of outputs.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Step<'a> {
    /// The packed weights of frequency 0 from the first output block and input.
    u: &'a [f32],
    /// Frequencies: 16 or 36.
    freqs: usize,
    /// Floats from one frequency's weights to the next, and from one block of 6 outputs to
    /// the next.
    ufreq: usize,
    ublock: usize,
    /// Inputs summed, blocks of 6 outputs, vectors of tiles.
    inputs: usize,
    blocks: usize,
    vecs: usize,
    /// Tiles from one input or output to the next in `v` and `m`.
    segment: usize,
    /// Floats from one frequency to the next in `v` and `m`.
    fv: usize,
    fm: usize,
    /// Whether `m` is overwritten rather than added to.
    first: bool,
}

/// The output gradient of a band: rows `y0..` of `[outputs][h · w]` planes.
pub(crate) struct OutputGrad<'a> {
    pub dout: &'a [f32],
    pub hw: usize,
    pub w: usize,
    pub y0: usize,
}

/// Adds the weight gradient of one band in the transformed domain,
/// `Σ_tiles (A dy Aᵀ) ⊙ (Bᵀ d B)` with `A = [1 0; 1 1; 1 −1; 0 −1]` for 2 × 2 tiles (for 4 × 4
/// ones, `[1 0 0 0; 1 1 1 1; 1 −1 1 −1; 1 2 4 8; 1 −2 4 −8; 0 0 0 1]`), into the sums that
/// [`Scratch::start_weight_grad`] cleared; [`Scratch::add_weight_grad`] then gives the 3×3
/// gradient. `input` is the split padded band of `rows` rows, as for [`band`] over the whole
/// width. The tiles are those the sums were started for: with 4 × 4 tiles ([`f4`]), `rows`
/// and the width are multiples of 4 and the rows split in 4.
///
/// The transformed output gradient of the band is computed once; the input is transformed
/// three channels at a time over the whole band (so that it stays near L1), and their
/// products with each 4 outputs are summed over all the band's tiles in registers.
#[allow(clippy::too_many_arguments)]
pub(crate) fn weight_grad_band(
    input: &[f32],
    plane: usize,
    wp: usize,
    rows: usize,
    dy: &OutputGrad,
    inputs: usize,
    outputs: usize,
    scratch: &mut Scratch,
) {
    // The side of the tiles, and their frequencies.
    let (t, wide) = (scratch.sums_tile, scratch.sums_wide);
    let freqs = freqs_of(t);
    let w = wp - 2;
    assert!(
        rows.is_multiple_of(t) && w.is_multiple_of(t) && w == dy.w,
        "winograd: rows {rows} and width {w} must be multiples of {t}"
    );
    assert!(
        inputs == 0 || (inputs - 1) * plane + (rows + 2) * wp + 2 * LANES <= input.len(),
        "winograd: input band too short"
    );
    assert!(
        outputs == 0 || (outputs - 1) * dy.hw + (dy.y0 + rows) * dy.w <= dy.dout.len(),
        "winograd: output gradient too short"
    );
    assert!(
        scratch.sums.len() >= freqs * outputs * inputs,
        "winograd: gradient sums too short"
    );
    assert!(comir_cpu::Isa::Avx2.supported(), "winograd: CPU lacks AVX2");
    let tw = w / t;
    let tile_rows = rows / t;
    let count = tile_rows * tw;
    // The products on AVX-512's 16 lanes where the band's tiles fill them.
    let wide_products = wide && count.is_multiple_of(2 * LANES);
    let vecs = count.div_ceil(LANES);
    // Room for the last tile row's last vector.
    let tiles = (count + tw.next_multiple_of(LANES) - tw).next_multiple_of(LANES);
    let blocks = outputs.next_multiple_of(GRAD_OUTPUTS * GRAD_CHANNELS);
    // The output gradient, transformed: `[freqs][blocks][tiles]`, zero past the band's tiles
    // and in the padding outputs.
    let z = grow(&mut scratch.m, freqs * blocks * tiles);
    // The `t` rows of a tile row of the output gradient, each split in its columns
    // `t·j + p` (`p < t`), zero past `tw` so that the tiles past a row's end are zero.
    let ew = tw.next_multiple_of(LANES);
    let split = grow(&mut scratch.rows, t * t * ew);
    split.fill(0.0);
    for o in 0..blocks {
        for f in 0..freqs {
            let row = &mut z[(f * blocks + o) * tiles..][..tiles];
            if o >= outputs {
                row.fill(0.0);
            } else {
                row[count..].fill(0.0);
            }
        }
        if o >= outputs {
            continue;
        }
        for ty in 0..tile_rows {
            let y = dy.y0 + t * ty;
            for (r, parts) in split.chunks_exact_mut(t * ew).enumerate() {
                let src = &dy.dout[o * dy.hw + (y + r) * dy.w..][..w];
                if t == 4 {
                    split_columns::<4>(src, parts, ew);
                } else {
                    split_columns::<2>(src, parts, ew);
                }
            }
            let z = &mut z[o * tiles + ty * tw..];
            // SAFETY: AVX2 is present (asserted), and AVX-512F where `wide` (asserted when the
            // sums were started); `split` holds `t · t` rows of `ew` (whole
            // vectors), the writes stay in `z` (rows of `tiles`, with room for the last
            // vector of the last tile row). Rows of tiles in order: a row's last vector runs
            // into the next row's first tiles (with zeros), which that row then overwrites.
            unsafe {
                if t == 4 {
                    f4::output_grad_transform(split, ew, tw, z, blocks * tiles, wide);
                } else {
                    avx2::output_grad_transform(split, ew, tw, z, blocks * tiles);
                }
            }
        }
    }
    let v = grow(&mut scratch.v, freqs * GRAD_CHANNELS * tiles);
    for i0 in (0..inputs).step_by(GRAD_CHANNELS) {
        let n = GRAD_CHANNELS.min(inputs - i0);
        for c in 0..n {
            let (band, v) = (&input[(i0 + c) * plane..], &mut v[c * tiles..]);
            let fstride = GRAD_CHANNELS * tiles;
            // SAFETY: as in `band`; the writes stay in `v` (`GRAD_CHANNELS` channels of
            // `tiles` per frequency).
            unsafe {
                if t == 4 {
                    f4::input_transform_rows(band, wp, tile_rows, tw, v, fstride, wide);
                } else {
                    avx2::input_transform(band, wp, tile_rows, tw, v, fstride);
                }
            }
        }
        // SAFETY: as above; `v` holds `n` channels and `z` every output, `vecs` vectors of
        // tiles each; AVX-512F is present where `wide` (asserted when the sums were started).
        unsafe {
            let products = match wide_products {
                #[cfg(target_arch = "x86_64")]
                true => avx512::grad_products,
                _ => avx2::grad_products,
            };
            products(
                freqs,
                v,
                z,
                tiles,
                vecs,
                (i0, n),
                inputs,
                outputs,
                &mut scratch.sums,
            );
        }
    }
}

/// Element `T·k + p` of `row` to `parts[p · ew + k]` (`T` known when compiled, so that the
/// loop unrolls).
fn split_columns<const T: usize>(row: &[f32], parts: &mut [f32], ew: usize) {
    for (k, group) in row.chunks_exact(T).enumerate() {
        for (p, &value) in group.iter().enumerate() {
            parts[p * ew + k] = value;
        }
    }
}

/// [`split`] of the padded row `[0, relu(a · x + b), 0]`, computed as `simd::bn_relu` computes
/// it (a product, then a sum, each rounded), without writing the row first.
pub(crate) fn bn_relu_split(x: &[f32], a: f32, b: f32, dst: &mut [f32]) {
    let w = x.len();
    assert!(
        w.is_multiple_of(2) && dst.len() == w + 2,
        "bn_relu_split: lengths"
    );
    #[cfg(target_arch = "x86_64")]
    if comir_cpu::Isa::Avx2.supported() {
        // SAFETY: the CPU has AVX2 (checked); lengths checked.
        unsafe { avx2::bn_relu_split(x, a, b, dst) };
        return;
    }
    let half = w / 2 + 1;
    let (even, odd) = dst.split_at_mut(half);
    even[0] = 0.0;
    odd[half - 1] = 0.0;
    for (k, pair) in x.chunks_exact(2).enumerate() {
        let relu = |v: f32| {
            let y = a * v + b;
            if y > 0.0 {
                y
            } else {
                0.0
            }
        };
        // Image column x is padded column x + 1.
        odd[k] = relu(pair[0]);
        even[k + 1] = relu(pair[1]);
    }
}

/// Stores a padded row (even length) as its even elements, then its odd ones:
/// `[p0 p1 p2 p3 …] → [p0 p2 … | p1 p3 …]`. Winograd's tiles start on even columns, so its
/// input transform then reads 8 tiles' columns as whole vectors.
pub(crate) fn split(row: &[f32], dst: &mut [f32]) {
    let half = row.len() / 2;
    assert!(
        row.len() == 2 * half && dst.len() == row.len(),
        "split: lengths"
    );
    #[cfg(target_arch = "x86_64")]
    if comir_cpu::Isa::Avx2.supported() {
        // SAFETY: the CPU has AVX2 (checked).
        unsafe { avx2::split(row, dst) };
        return;
    }
    for k in 0..half {
        dst[k] = row[2 * k];
        dst[half + k] = row[2 * k + 1];
    }
}

/// Elsewhere there are no direct kernels, so nothing asks for Winograd.
#[cfg(not(target_arch = "x86_64"))]
mod avx2 {
    pub(super) unsafe fn input_transform(
        _: &[f32],
        _: usize,
        _: usize,
        _: usize,
        _: &mut [f32],
        _: usize,
    ) {
        unreachable!("Winograd runs with the direct kernels, on x86-64 only")
    }

    pub(super) unsafe fn output_transform(_: &[f32], _: usize, _: usize, _: &mut [f32], _: usize) {
        unreachable!("Winograd runs with the direct kernels, on x86-64 only")
    }

    pub(super) unsafe fn products(_: &super::Step, _: &[f32], _: &mut [f32]) {
        unreachable!("Winograd runs with the direct kernels, on x86-64 only")
    }

    pub(super) unsafe fn output_grad_transform(
        _: &[f32],
        _: usize,
        _: usize,
        _: &mut [f32],
        _: usize,
    ) {
        unreachable!("Winograd runs with the direct kernels, on x86-64 only")
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn grad_products(
        _: usize,
        _: &[f32],
        _: &[f32],
        _: usize,
        _: usize,
        _: (usize, usize),
        _: usize,
        _: usize,
        _: &mut [f32],
    ) {
        unreachable!("Winograd runs with the direct kernels, on x86-64 only")
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::vectors::F32s;
    use super::{Step, CO_BLOCK, FREQS, GRAD_CHANNELS, GRAD_OUTPUTS, LANES};
    use std::arch::x86_64::*;

    /// [`super::bn_relu_split`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn bn_relu_split(x: &[f32], a: f32, b: f32, dst: &mut [f32]) {
        let w = x.len();
        let half = w / 2 + 1;
        assert!(dst.len() == 2 * half);
        let (s, d) = (x.as_ptr(), dst.as_mut_ptr());
        // Image column x is padded column x + 1: even columns go to the odd half, odd ones to
        // the even half one place on.
        let (even, odd) = (d, d.add(half));
        *even = 0.0;
        *odd.add(half - 1) = 0.0;
        let (va, vb, zero) = (_mm256_set1_ps(a), _mm256_set1_ps(b), _mm256_setzero_ps());
        // `if y > 0 { y } else { 0 }`, as max(y, 0) returns its second operand unless y > 0.
        let relu = |v: __m256| _mm256_max_ps(_mm256_add_ps(_mm256_mul_ps(va, v), vb), zero);
        let vecs = w / (2 * LANES);
        for j in 0..vecs {
            let p = relu(_mm256_loadu_ps(s.add(2 * LANES * j)));
            let q = relu(_mm256_loadu_ps(s.add(2 * LANES * j + LANES)));
            let e = _mm256_shuffle_ps::<0b10_00_10_00>(p, q);
            let o = _mm256_shuffle_ps::<0b11_01_11_01>(p, q);
            let e = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(e)));
            let o = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(o)));
            _mm256_storeu_ps(odd.add(LANES * j), e);
            _mm256_storeu_ps(even.add(LANES * j + 1), o);
        }
        for k in vecs * LANES..w / 2 {
            for (i, dst) in [(2 * k, odd.add(k)), (2 * k + 1, even.add(k + 1))] {
                let y = a * *s.add(i) + b;
                *dst = if y > 0.0 { y } else { 0.0 };
            }
        }
    }

    /// [`super::split`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn split(row: &[f32], dst: &mut [f32]) {
        let half = row.len() / 2;
        let vecs = half / LANES;
        assert!(row.len() == 2 * half && dst.len() == row.len());
        let (s, d) = (row.as_ptr(), dst.as_mut_ptr());
        for j in 0..vecs {
            let a = _mm256_loadu_ps(s.add(2 * LANES * j));
            let b = _mm256_loadu_ps(s.add(2 * LANES * j + LANES));
            // [a0 a2 b0 b2 | a4 a6 b4 b6] → [a0 a2 a4 a6 b0 b2 b4 b6], and the odd ones.
            let e = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
            let o = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
            let e = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(e)));
            let o = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(o)));
            _mm256_storeu_ps(d.add(LANES * j), e);
            _mm256_storeu_ps(d.add(half + LANES * j), o);
        }
        for k in vecs * LANES..half {
            dst[k] = row[2 * k];
            dst[half + k] = row[2 * k + 1];
        }
    }

    /// Row transform of one split input row at tiles `tx..tx + 8`: `d0 − d2, d1 + d2, d2 − d1,
    /// d1 − d3` with `d0, d1, d2, d3` the row's elements `2tx, 2tx + 1, 2tx + 2, 2tx + 3`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn row_transform(even: *const f32, odd: *const f32) -> [__m256; 4] {
        let (d0, d1) = (_mm256_loadu_ps(even), _mm256_loadu_ps(odd));
        let (d2, d3) = (_mm256_loadu_ps(even.add(1)), _mm256_loadu_ps(odd.add(1)));
        [
            _mm256_sub_ps(d0, d2),
            _mm256_add_ps(d1, d2),
            _mm256_sub_ps(d2, d1),
            _mm256_sub_ps(d1, d3),
        ]
    }

    /// `Bᵀ d B` of the tiles of `tr` tile rows of `tw` tiles, `Bᵀ = [1 0 −1 0; 0 1 1 0;
    /// 0 −1 1 0; 0 1 0 −1]`, from split rows `wp` apart (even elements at `band[r · wp]`, odd
    /// ones `wp / 2` further): frequency `f` of tile `t = ty · tw + tx` to `v[f · fstride + t]`,
    /// whole vectors of tiles per row (the last vector of a row runs into the next row's
    /// tiles, which are written later, or past the chunk). Rows of tiles in order and each
    /// from left to right, so that every store continues the one before it in its frequency.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn input_transform(
        band: &[f32],
        wp: usize,
        tr: usize,
        tw: usize,
        v: &mut [f32],
        fstride: usize,
    ) {
        let vecs = tw.div_ceil(LANES);
        let half = wp / 2;
        assert!((2 * tr + 1) * wp + half + vecs * LANES < band.len());
        assert!((FREQS - 1) * fstride + (tr - 1) * tw + vecs * LANES <= v.len());
        let (e, d) = (band.as_ptr(), v.as_mut_ptr());
        let f4 = 4 * fstride;
        for ty in 0..tr {
            for j in 0..vecs {
                let tx = LANES * j;
                let row = |i: usize| {
                    let r = (2 * ty + i) * wp + tx;
                    row_transform(e.add(r), e.add(r + half))
                };
                let [r0, r1, r2, r3] = [row(0), row(1), row(2), row(3)];
                // The same down the columns. One pointer walks the frequencies (a, c) at
                // fixed multiples of `fstride` (16 pointers would not stay in registers).
                let mut p = d.add(ty * tw + tx);
                for c in 0..4 {
                    _mm256_storeu_ps(p, _mm256_sub_ps(r0[c], r2[c]));
                    _mm256_storeu_ps(p.add(f4), _mm256_add_ps(r1[c], r2[c]));
                    _mm256_storeu_ps(p.add(2 * f4), _mm256_sub_ps(r2[c], r1[c]));
                    _mm256_storeu_ps(p.add(3 * f4), _mm256_sub_ps(r1[c], r3[c]));
                    p = p.add(fstride);
                }
            }
        }
    }

    /// The products of one [`super::Step`], on segments of `v` and `m` rows apart.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn products(step: &Step, v: &[f32], m: &mut [f32]) {
        let (freqs, seg) = (step.freqs, step.segment);
        let last_u = (freqs - 1) * step.ufreq + step.blocks.saturating_sub(1) * step.ublock;
        assert!(step.blocks == 0 || last_u + step.inputs * CO_BLOCK <= step.u.len());
        assert!((freqs - 1) * step.fv + step.inputs * seg <= v.len());
        assert!((freqs - 1) * step.fm + step.blocks * CO_BLOCK * seg <= m.len());
        assert!((1..=2).contains(&step.vecs) && step.vecs * LANES <= seg);
        for f in 0..freqs {
            let x = v.as_ptr().add(f * step.fv);
            let mut b = 0;
            while b < step.blocks {
                let u = step.u.as_ptr().add(f * step.ufreq + b * step.ublock);
                let d = m.as_mut_ptr().add(f * step.fm + b * CO_BLOCK * seg);
                // 12 accumulators either way: 6 outputs × 2 vectors, or 12 outputs × 1.
                if step.vecs == 2 {
                    products_of::<1, 2>(u, step.ublock, x, seg, step.inputs, d, step.first);
                    b += 1;
                } else if b + 1 < step.blocks {
                    products_of::<2, 1>(u, step.ublock, x, seg, step.inputs, d, step.first);
                    b += 2;
                } else {
                    products_of::<1, 1>(u, step.ublock, x, seg, step.inputs, d, step.first);
                    b += 1;
                }
            }
        }
    }

    /// `B` blocks of 6 outputs (weights `ublock` apart) × `V` vectors of tiles, summed over
    /// `inputs` in registers; inputs and outputs `seg` tiles apart in `v` and `d`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn products_of<const B: usize, const V: usize>(
        u: *const f32,
        ublock: usize,
        v: *const f32,
        seg: usize,
        inputs: usize,
        d: *mut f32,
        first: bool,
    ) {
        let mut acc = [[[_mm256_setzero_ps(); V]; CO_BLOCK]; B];
        if !first {
            for (b, acc) in acc.iter_mut().enumerate() {
                for (j, acc) in acc.iter_mut().enumerate() {
                    for (k, a) in acc.iter_mut().enumerate() {
                        *a = _mm256_loadu_ps(d.add((b * CO_BLOCK + j) * seg + k * LANES));
                    }
                }
            }
        }
        for i in 0..inputs {
            let x: [__m256; V] =
                std::array::from_fn(|k| _mm256_loadu_ps(v.add(i * seg + k * LANES)));
            for (b, acc) in acc.iter_mut().enumerate() {
                for (j, acc) in acc.iter_mut().enumerate() {
                    let w = _mm256_broadcast_ss(&*u.add(b * ublock + i * CO_BLOCK + j));
                    for (a, x) in acc.iter_mut().zip(&x) {
                        *a = _mm256_fmadd_ps(w, *x, *a);
                    }
                }
            }
        }
        for (b, acc) in acc.iter().enumerate() {
            for (j, acc) in acc.iter().enumerate() {
                for (k, a) in acc.iter().enumerate() {
                    _mm256_storeu_ps(d.add((b * CO_BLOCK + j) * seg + k * LANES), *a);
                }
            }
        }
    }

    /// `Aᵀ m A` of a segment of `seg` tiles of one tile row, `Aᵀ = [1 1 1 0; 0 1 −1 −1]`,
    /// from `m[f · fstride + tx]`: the 2 × 2 outputs of tile `tx` to
    /// `out[a · wp + 2tx + b]`. Exactly those are written (the last vector's through a mask).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn output_transform(
        m: &[f32],
        fstride: usize,
        seg: usize,
        out: &mut [f32],
        wp: usize,
    ) {
        let vecs = seg.div_ceil(LANES);
        assert!((FREQS - 1) * fstride + vecs * LANES <= m.len());
        assert!(wp + 2 * seg <= out.len());
        let (s, d) = (m.as_ptr(), out.as_mut_ptr());
        for j in 0..vecs {
            let tx = LANES * j;
            // Row pass: per row i of the tile, (m0 + m1 + m2, m1 − m2 − m3).
            let mut a = [[_mm256_setzero_ps(); 2]; 4];
            let mut q = s.add(tx);
            for ai in a.iter_mut() {
                let m0 = _mm256_loadu_ps(q);
                let m1 = _mm256_loadu_ps(q.add(fstride));
                let m2 = _mm256_loadu_ps(q.add(2 * fstride));
                let m3 = _mm256_loadu_ps(q.add(3 * fstride));
                q = q.add(4 * fstride);
                *ai = [
                    _mm256_add_ps(_mm256_add_ps(m0, m1), m2),
                    _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3),
                ];
            }
            // Outputs of this vector on each row: 2 per tile.
            let valid = 2 * (seg - tx).min(LANES);
            for row in 0..2 {
                // Column pass for output row `row`: even and odd columns.
                let y: [__m256; 2] = std::array::from_fn(|b| {
                    if row == 0 {
                        _mm256_add_ps(_mm256_add_ps(a[0][b], a[1][b]), a[2][b])
                    } else {
                        _mm256_sub_ps(_mm256_sub_ps(a[1][b], a[2][b]), a[3][b])
                    }
                });
                // Interleave: [e0 o0 e1 o1 … e7 o7].
                let lo = _mm256_unpacklo_ps(y[0], y[1]);
                let hi = _mm256_unpackhi_ps(y[0], y[1]);
                let halves = [
                    _mm256_permute2f128_ps::<0x20>(lo, hi),
                    _mm256_permute2f128_ps::<0x31>(lo, hi),
                ];
                let p = d.add(row * wp + 2 * tx);
                for (h, half) in halves.iter().enumerate() {
                    let n = valid.saturating_sub(h * LANES).min(LANES);
                    if n == LANES {
                        _mm256_storeu_ps(p.add(h * LANES), *half);
                    } else if n > 0 {
                        _mm256_maskstore_ps(p.add(h * LANES), first_lanes(n), *half);
                    }
                }
            }
        }
    }

    /// A mask of the first `n` of 8 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn first_lanes(n: usize) -> __m256i {
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), lanes)
    }

    /// `A y Aᵀ` of the 2 × 2 output gradients of one row of `tw` tiles, `A = [1 0; 1 1;
    /// 1 −1; 0 −1]`, from the split rows `split` (`[row 0 even, row 0 odd, row 1 even,
    /// row 1 odd]`, `ew` each, zero past `tw`): frequency `f` of tile `tx` to
    /// `z[f · fstride + tx]`, whole vectors of tiles (the last one runs past the row).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn output_grad_transform(
        split: &[f32],
        ew: usize,
        tw: usize,
        z: &mut [f32],
        fstride: usize,
    ) {
        let vecs = tw.div_ceil(LANES);
        assert!(4 * ew <= split.len() && vecs * LANES <= ew);
        assert!((FREQS - 1) * fstride + vecs * LANES <= z.len());
        let (s, d) = (split.as_ptr(), z.as_mut_ptr());
        let zero = _mm256_setzero_ps();
        for j in 0..vecs {
            let tx = LANES * j;
            let y00 = _mm256_loadu_ps(s.add(tx));
            let y01 = _mm256_loadu_ps(s.add(ew + tx));
            let y10 = _mm256_loadu_ps(s.add(2 * ew + tx));
            let y11 = _mm256_loadu_ps(s.add(3 * ew + tx));
            // A y: four rows of two; then each row (a, b) times Aᵀ: (a, a + b, a − b, −b).
            let u = [
                (y00, y01),
                (_mm256_add_ps(y00, y10), _mm256_add_ps(y01, y11)),
                (_mm256_sub_ps(y00, y10), _mm256_sub_ps(y01, y11)),
                (_mm256_sub_ps(zero, y10), _mm256_sub_ps(zero, y11)),
            ];
            let mut p = d.add(tx);
            for (a, b) in u {
                _mm256_storeu_ps(p, a);
                _mm256_storeu_ps(p.add(fstride), _mm256_add_ps(a, b));
                _mm256_storeu_ps(p.add(2 * fstride), _mm256_sub_ps(a, b));
                _mm256_storeu_ps(p.add(3 * fstride), _mm256_sub_ps(zero, b));
                p = p.add(4 * fstride);
            }
        }
    }

    /// The sums of the lanes of each accumulator, in a fixed order: `[4c + j]` of `acc[c][j]`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn lane_sums(acc: &[[__m256; GRAD_OUTPUTS]; GRAD_CHANNELS]) -> [f32; 12] {
        // Pairwise horizontal adds reduce 8 vectors to a vector of their 8 sums (and 4 to 4)
        // in 9 instructions instead of 5 each.
        let h = |a: __m256, b: __m256| _mm256_hadd_ps(a, b);
        let (u0, u1) = (
            h(h(acc[0][0], acc[0][1]), h(acc[0][2], acc[0][3])),
            h(h(acc[1][0], acc[1][1]), h(acc[1][2], acc[1][3])),
        );
        let eight = _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(u0, u1),
            _mm256_permute2f128_ps::<0x31>(u0, u1),
        );
        let u2 = h(h(acc[2][0], acc[2][1]), h(acc[2][2], acc[2][3]));
        let four = _mm_add_ps(_mm256_castps256_ps128(u2), _mm256_extractf128_ps::<1>(u2));
        let mut out = [0.0; 12];
        _mm256_storeu_ps(out.as_mut_ptr(), eight);
        _mm_storeu_ps(out.as_mut_ptr().add(8), four);
        out
    }

    /// `sums[f][o][i0 + c] += Σ_t z[f][o][t] · v[f][c][t]`, for each of `freqs` frequencies
    /// and the `n` (1 to 3) channels of
    /// `v` and every output, over `vecs` vectors of tiles (rows `tiles` apart; `z` has its
    /// outputs padded to a multiple of 12 with zero rows), in tiles of 4 outputs × 3 channels
    /// summed in registers: 7 loads for 12 multiply-adds.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn grad_products(
        freqs: usize,
        v: &[f32],
        z: &[f32],
        tiles: usize,
        vecs: usize,
        channels: (usize, usize),
        inputs: usize,
        outputs: usize,
        sums: &mut [f32],
    ) {
        grad_products_of::<__m256>(freqs, v, z, tiles, vecs, channels, inputs, outputs, sums)
    }

    /// [`grad_products`] on vectors of `V::LANES` tiles: `vecs` vectors of 8 tiles (a multiple
    /// of `V::LANES / 8`). Wider accumulators are folded to 8 lanes before the sums across
    /// lanes.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) unsafe fn grad_products_of<V: F32s>(
        freqs: usize,
        v: &[f32],
        z: &[f32],
        tiles: usize,
        vecs: usize,
        (i0, n): (usize, usize),
        inputs: usize,
        outputs: usize,
        sums: &mut [f32],
    ) {
        let padded = outputs.next_multiple_of(GRAD_OUTPUTS * GRAD_CHANNELS);
        let per = V::LANES / LANES;
        assert!((1..=GRAD_CHANNELS).contains(&n) && i0 + n <= inputs && vecs * LANES <= tiles);
        assert!(
            vecs.is_multiple_of(per),
            "winograd: vectors of 8 tiles not whole vectors of {}",
            V::LANES
        );
        assert!(freqs * GRAD_CHANNELS * tiles <= v.len());
        assert!(freqs * padded * tiles <= z.len());
        assert!(freqs * outputs * inputs <= sums.len());
        for f in 0..freqs {
            // Missing channels read the first one again; their sums are dropped.
            let mut x = [v.as_ptr(); GRAD_CHANNELS];
            for (c, x) in x.iter_mut().enumerate() {
                *x = v
                    .as_ptr()
                    .add((f * GRAD_CHANNELS + if c < n { c } else { 0 }) * tiles);
            }
            for o0 in (0..outputs).step_by(GRAD_OUTPUTS) {
                let zb = z.as_ptr().add((f * padded + o0) * tiles);
                let mut acc = [[V::zero(); GRAD_OUTPUTS]; GRAD_CHANNELS];
                for k in 0..vecs / per {
                    let t = V::LANES * k;
                    let mut xs = [V::zero(); GRAD_CHANNELS];
                    for (xs, x) in xs.iter_mut().zip(&x) {
                        *xs = V::load(x.add(t));
                    }
                    for j in 0..GRAD_OUTPUTS {
                        let g = V::load(zb.add(j * tiles + t));
                        for (acc, x) in acc.iter_mut().zip(&xs) {
                            acc[j] = g.mul_add(*x, acc[j]);
                        }
                    }
                }
                let mut folded = [[_mm256_setzero_ps(); GRAD_OUTPUTS]; GRAD_CHANNELS];
                for (folded, acc) in folded.iter_mut().zip(&acc) {
                    for (folded, acc) in folded.iter_mut().zip(acc) {
                        *folded = acc.fold8();
                    }
                }
                let total = lane_sums(&folded);
                for j in 0..GRAD_OUTPUTS.min(outputs - o0) {
                    let row = &mut sums[(f * outputs + o0 + j) * inputs + i0..];
                    for (c, r) in row.iter_mut().enumerate().take(n) {
                        *r += total[GRAD_OUTPUTS * c + j];
                    }
                }
            }
        }
    }
}

/// The products on AVX-512: a whole segment of 16 tiles per vector.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{avx2, Step, CO_BLOCK, LANES};
    use std::arch::x86_64::*;

    /// [`avx2::grad_products`] on 16 lanes: `vecs` vectors of 8 tiles (an even number) taken
    /// two at a time. Each accumulator's two halves are added before the sums across lanes,
    /// so the sums come in another order than on 8 lanes.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn grad_products(
        freqs: usize,
        v: &[f32],
        z: &[f32],
        tiles: usize,
        vecs: usize,
        channels: (usize, usize),
        inputs: usize,
        outputs: usize,
        sums: &mut [f32],
    ) {
        avx2::grad_products_of::<__m512>(freqs, v, z, tiles, vecs, channels, inputs, outputs, sums)
    }

    /// [`super::avx2::products`] for steps of two vectors of tiles (a whole segment), each
    /// output's sum formed lane by lane in the same order, so with the same bits.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn products(step: &Step, v: &[f32], m: &mut [f32]) {
        let (freqs, seg) = (step.freqs, step.segment);
        let last_u = (freqs - 1) * step.ufreq + step.blocks.saturating_sub(1) * step.ublock;
        assert!(step.blocks == 0 || last_u + step.inputs * CO_BLOCK <= step.u.len());
        assert!((freqs - 1) * step.fv + step.inputs * seg <= v.len());
        assert!((freqs - 1) * step.fm + step.blocks * CO_BLOCK * seg <= m.len());
        assert!(step.vecs == 2 && seg == 2 * LANES);
        for f in 0..freqs {
            let x = v.as_ptr().add(f * step.fv);
            let mut b = 0;
            while b < step.blocks {
                let u = step.u.as_ptr().add(f * step.ufreq + b * step.ublock);
                let d = m.as_mut_ptr().add(f * step.fm + b * CO_BLOCK * seg);
                if b + 1 < step.blocks {
                    products_of::<2>(u, step.ublock, x, seg, step.inputs, d, step.first);
                    b += 2;
                } else {
                    products_of::<1>(u, step.ublock, x, seg, step.inputs, d, step.first);
                    b += 1;
                }
            }
        }
    }

    /// `B` blocks of 6 outputs × one vector of 16 tiles.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn products_of<const B: usize>(
        u: *const f32,
        ublock: usize,
        v: *const f32,
        seg: usize,
        inputs: usize,
        d: *mut f32,
        first: bool,
    ) {
        let mut acc = [[_mm512_setzero_ps(); CO_BLOCK]; B];
        if !first {
            for (b, acc) in acc.iter_mut().enumerate() {
                for (j, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_loadu_ps(d.add((b * CO_BLOCK + j) * seg));
                }
            }
        }
        for i in 0..inputs {
            let x = _mm512_loadu_ps(v.add(i * seg));
            for (b, acc) in acc.iter_mut().enumerate() {
                for (j, a) in acc.iter_mut().enumerate() {
                    let w = _mm512_set1_ps(*u.add(b * ublock + i * CO_BLOCK + j));
                    *a = _mm512_fmadd_ps(w, x, *a);
                }
            }
        }
        for (b, acc) in acc.iter().enumerate() {
            for (j, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(d.add((b * CO_BLOCK + j) * seg), *a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batch norm + ReLU written straight into the split row gives the bits of the row
    /// written whole by `simd::bn_relu` and then split, at every width (whole vectors and
    /// tails).
    #[test]
    fn bn_relu_split_is_the_split_of_bn_relu() {
        for w in [2, 6, 14, 16, 18, 30, 32, 64, 130] {
            let x: Vec<f32> = (0..w)
                .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.37)
                .collect();
            let (a, b) = (1.3f32, -0.2f32);
            let mut whole = vec![0.0; w + 2];
            crate::simd::bn_relu(&mut whole[1..=w], &x, a, b);
            let mut want = vec![f32::NAN; w + 2];
            split(&whole, &mut want);
            let mut got = vec![f32::NAN; w + 2];
            bn_relu_split(&x, a, b, &mut got);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "width {w}");
        }
    }

    /// The kernel gradient is the adjoint of the kernel transform:
    /// `⟨G g Gᵀ, u⟩ = ⟨g, Gᵀ u G⟩` for every kernel `g` and every `u`, for both tile sides.
    #[test]
    fn the_kernel_gradient_is_the_adjoint_of_the_transform() {
        fn check<const F: usize>(
            transform: fn(&[f64; 9]) -> [f64; F],
            gradient: fn(&[f64; F]) -> [f64; 9],
        ) {
            for seed in 0..5 {
                let g: [f64; 9] = std::array::from_fn(|i| ((i + 9 * seed) as f64 * 1.3).cos());
                let u: [f64; F] = std::array::from_fn(|i| ((i + F * seed) as f64 * 0.9).sin());
                let left: f64 = transform(&g).iter().zip(&u).map(|(a, b)| a * b).sum();
                let right: f64 = g.iter().zip(&gradient(&u)).map(|(a, b)| a * b).sum();
                assert!((left - right).abs() < 1e-12, "{left} against {right}");
            }
        }
        check(transform_kernel, kernel_gradient);
        check(f4::transform_kernel, f4::kernel_gradient);
    }

    /// `G g Gᵀ` against the matrices multiplied out, for both tile sides.
    #[test]
    fn the_kernel_transform_is_g_g_gt() {
        fn check<const F: usize>(transform: fn(&[f64; 9]) -> [f64; F], gm: &[[f64; 3]]) {
            let n = gm.len();
            let g: [f64; 9] = std::array::from_fn(|i| (i as f64 * 0.7 - 2.0).sin());
            let u = transform(&g);
            for i in 0..n {
                for j in 0..n {
                    let mut want = 0.0;
                    for k in 0..3 {
                        for l in 0..3 {
                            want += gm[i][k] * g[3 * k + l] * gm[j][l];
                        }
                    }
                    assert!((u[n * i + j] - want).abs() < 1e-12, "{n}: ({i}, {j})");
                }
            }
        }
        check(
            transform_kernel,
            &[
                [1.0, 0.0, 0.0],
                [0.5, 0.5, 0.5],
                [0.5, -0.5, 0.5],
                [0.0, 0.0, 1.0],
            ],
        );
        check(
            f4::transform_kernel,
            &[
                [0.25, 0.0, 0.0],
                [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
                [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
                [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
                [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
                [0.0, 0.0, 1.0],
            ],
        );
    }
}
