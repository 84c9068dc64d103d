//! Forward (training and inference mode) and backward passes of [`FastDenseUNet`].
//!
//! Activations are `[N][C][H·W]` per level. A dense block owns one buffer holding its input
//! and every new layer's output (channels appended in place: no concatenation copies), and
//! the batch statistics of each channel are computed once, when the channel is written, and
//! shared by all batch norms that read it (they see the same data; only γ and β differ).
//! Batch norm + ReLU are folded into the convolutions' input copy; the backward recomputes
//! them from the cached block buffers instead of storing normalised activations.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use crate::conv::{
    add_tap_major, band_bytes, conv1x1_few, conv1x1_few_rows, conv_backward, conv_forward,
    conv_forward_shared, transpose_weight, BnRelu, ConvShape, ConvWeights, Kernel, Plain, RowSink,
    SharedBnRelu, SharedPlanes, Upsample, Window, FEW_OUTPUTS,
};
use crate::fused::{self, Step};
use crate::net::{BnConv, BnP, ConvP, FastDenseUNet};
use crate::simd;
use crate::Error;

/// Activations of one dense block (or other cached tensor) with per-channel batch statistics.
#[derive(Debug, Default, Clone)]
struct Act {
    c: usize,
    hw: usize,
    data: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
}

impl Act {
    fn reset(&mut self, n: usize, c: usize, hw: usize) {
        self.reset_with_room(n, c, hw, c);
    }

    /// [`Act::reset`] with room for `room ≥ c` channels, so that growing to them later moves
    /// nothing. With `room > c` (one sample, whose block grows in place) the buffer keeps the
    /// room's length: the channels past `c` hold whatever the last tile left there until the
    /// layers that own them write them, instead of being zeroed again for every tile. Only
    /// its first `n · c · hw` values are this activation ([`Act::samples_mut`]).
    fn reset_with_room(&mut self, n: usize, c: usize, hw: usize, room: usize) {
        self.c = c;
        self.hw = hw;
        // Reuse the allocation across steps; the contents are overwritten by the forward.
        let want = n * room.max(c) * hw;
        self.data.reserve(want.saturating_sub(self.data.len()));
        let len = if room > c { want } else { n * c * hw };
        resize_in_parallel(&mut self.data, len);
        self.mean.resize(c, 0.0);
        self.var.resize(c, 1.0);
    }

    /// The `n` samples' activations (the buffer may hold room for more channels).
    fn samples_mut(&mut self, n: usize) -> &mut [f32] {
        let len = n * self.stride();
        &mut self.data[..len]
    }

    fn stride(&self) -> usize {
        self.c * self.hw
    }

    /// Grows one sample's activations to `c` channels, keeping the ones there.
    fn grow_single(&mut self, c: usize) {
        self.c = c;
        if self.data.len() < c * self.hw {
            resize_in_parallel(&mut self.data, c * self.hw);
        }
        self.mean.resize(c, 0.0);
        self.var.resize(c, 1.0);
    }
}

/// `v.resize(len, 0.0)` with the new zeros written by every thread: the first touch of fresh
/// pages is what costs, and done by the calling thread alone it left the other cores idle
/// between the layers of an inference.
fn resize_in_parallel(v: &mut Vec<f32>, len: usize) {
    if len <= v.len() {
        v.truncate(len);
    } else {
        let extra = len - v.len();
        v.par_extend(rayon::iter::repeat_n(0.0f32, extra));
    }
}

/// Buffers of a training forward pass (activations and batch statistics the backward needs)
/// and of the backward pass (activation gradients). Reuse one workspace across steps: its
/// buffers keep their allocations.
#[derive(Debug, Default, Clone)]
pub struct Workspace {
    n: usize,
    h: usize,
    w: usize,
    ready: bool,
    bott_start: usize,
    input: Vec<f32>,
    down: Vec<Act>,
    td: Vec<Vec<f32>>,
    bott: Act,
    up: Vec<Act>,
    repr: Vec<f32>,
    g_down: Vec<Vec<f32>>,
    g_bott: Vec<f32>,
    g_up: Vec<Vec<f32>>,
    dtd: Vec<f32>,
}

impl Workspace {
    /// An empty workspace (buffers are allocated by the first forward).
    pub fn new() -> Self {
        Self::default()
    }

    /// `[N, H, W]` of the last forward.
    pub fn dims(&self) -> [usize; 3] {
        [self.n, self.h, self.w]
    }

    /// The representation of the last forward, `[N][D][H·W]`.
    pub fn representation(&self) -> &[f32] {
        &self.repr
    }

    /// A copy of the bottleneck features of the last forward, `[N][C_b][h·w]` with
    /// `h = H / 2^depth`.
    pub fn bottleneck(&self) -> Vec<f32> {
        bottleneck_of(&self.bott, self.n, self.bott_start)
    }
}

fn bottleneck_of(bott: &Act, n: usize, start: usize) -> Vec<f32> {
    let stride = bott.stride();
    let mut out = Vec::with_capacity(n * (bott.c - start) * bott.hw);
    for i in 0..n {
        out.extend_from_slice(&bott.data[i * stride + start * bott.hw..(i + 1) * stride]);
    }
    out
}

/// Output of [`FastDenseUNet::forward_inference`].
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The representation, `[N][D][H·W]`.
    pub representation: Vec<f32>,
    /// The bottleneck features, `[N][C_b][h·w]`, `h = H / 2^depth`.
    pub bottleneck: Vec<f32>,
}

/// Per-channel mean and biased variance over the batch of channels `cs` (f64 sums).
fn channel_stats(act: &mut Act, n: usize, cs: Range<usize>) {
    let (c_total, hw) = (act.c, act.hw);
    let data = &act.data;
    let stats: Vec<(f32, f32)> = cs
        .clone()
        .into_par_iter()
        .map(|c| {
            let planes = (0..n).map(|i| &data[(i * c_total + c) * hw..(i * c_total + c + 1) * hw]);
            let count = (n * hw) as f64;
            let s: f64 = planes.clone().map(simd::sum_f64).sum();
            let m = s / count;
            let v: f64 = planes.map(|p| simd::sum_squared_deviations(p, m)).sum();
            (m as f32, (v / count) as f32)
        })
        .collect();
    for (c, (m, v)) in cs.zip(stats) {
        act.mean[c] = m;
        act.var[c] = v;
    }
}

/// Folds a batch norm into `relu(a·x + b)`: batch statistics (and a running-statistics
/// update, as burn does in training) or running statistics.
#[allow(clippy::too_many_arguments)]
fn bn_affine(
    params: &[f32],
    running: &mut [f32],
    bn: BnP,
    mean: &[f32],
    var: &[f32],
    train: bool,
    momentum: f32,
    eps: f32,
) -> (Vec<f32>, Vec<f32>) {
    let c = bn.c;
    let gamma = &params[bn.gamma..bn.gamma + c];
    let beta = &params[bn.beta..bn.beta + c];
    let (m, v): (Vec<f32>, Vec<f32>) = if train {
        for k in 0..c {
            let rm = &mut running[bn.mean + k];
            *rm = *rm * (1.0 - momentum) + mean[k] * momentum;
            let rv = &mut running[bn.var + k];
            *rv = *rv * (1.0 - momentum) + var[k] * momentum;
        }
        (mean[..c].to_vec(), var[..c].to_vec())
    } else {
        (
            running[bn.mean..bn.mean + c].to_vec(),
            running[bn.var..bn.var + c].to_vec(),
        )
    };
    let a: Vec<f32> = (0..c).map(|k| gamma[k] / (v[k] + eps).sqrt()).collect();
    let b: Vec<f32> = (0..c).map(|k| beta[k] - m[k] * a[k]).collect();
    (a, b)
}

fn conv_w(params: &[f32], conv: ConvP) -> &[f32] {
    &params[conv.w..conv.w + conv.cout * conv.cin * conv.k * conv.k]
}

fn conv_b(params: &[f32], conv: ConvP) -> Option<&[f32]> {
    conv.b.map(|b| &params[b..b + conv.cout])
}

fn shape(conv: ConvP, h: usize, w: usize) -> ConvShape {
    ConvShape {
        cin: conv.cin,
        cout: conv.cout,
        k: conv.k,
        h,
        w,
    }
}

/// Runs the layers of a dense block on `act` whose first `cin0` channels hold the input, the
/// batch statistics of the first `known` of them already in `act` (training).
#[allow(clippy::too_many_arguments)]
fn block_forward(
    kernel: Kernel,
    params: &[f32],
    running: &mut [f32],
    layers: &[BnConv],
    act: &mut Act,
    known: usize,
    n: usize,
    h: usize,
    w: usize,
    train: bool,
    momentum: f32,
    eps: f32,
    window: Option<Window>,
) {
    let widest = layers.last().map_or(0, |layer| layer.bn.c);
    if let Some(chunk) = fused_chunk(kernel, train, n, widest, w) {
        block_inference_fused(
            kernel,
            params,
            running,
            layers,
            act,
            (h, w),
            eps,
            window,
            chunk,
        );
        return;
    }
    let hw = h * w;
    if train {
        let cin0 = layers.first().map_or(0, |l| l.bn.c);
        channel_stats(act, n, known.min(cin0)..cin0);
    }
    for (j, layer) in layers.iter().enumerate() {
        // Each later layer reads one more pixel around what it computes.
        let layer_window = window.map(|win| win.grown(layers.len() - 1 - j, h, w));
        let (cl, g) = (layer.bn.c, layer.conv.cout);
        let (a, b) = bn_affine(
            params, running, layer.bn, &act.mean, &act.var, train, momentum, eps,
        );
        let s = shape(layer.conv, h, w);
        let weights = ConvWeights::forward(kernel, s, conv_w(params, layer.conv));
        let bias = conv_b(params, layer.conv);
        let stride = act.stride();
        act.samples_mut(n)
            .par_chunks_mut(stride)
            .for_each(|sample| {
                let (inp, rest) = sample.split_at_mut(cl * hw);
                let src = BnRelu {
                    x: inp,
                    a: &a,
                    b: &b,
                    hw,
                    w,
                };
                conv_forward(
                    kernel,
                    s,
                    &src,
                    &weights,
                    bias,
                    false,
                    &mut rest[..g * hw],
                    true,
                    layer_window,
                );
            });
        if train {
            channel_stats(act, n, cl..cl + g);
        }
    }
}

/// Whether inference runs dense blocks as fused groups (a switch for tests and timing).
static FUSED: AtomicBool = AtomicBool::new(true);

/// Runs inference's dense blocks layer by layer (`false`) or as fused groups (`true`, the
/// default); the numbers are the same. For tests and timing.
pub fn set_fused_inference(on: bool) {
    FUSED.store(on, Ordering::Relaxed);
}

/// The rows of a fused group's chunks where a forward pass runs its groups fused: inference
/// of one sample on the direct kernels (whose windows write only their own rows), unless
/// switched off. With steps that read up to `channels` planes `w` wide, a chunk holds three
/// bands' worth of rows (about 1 MiB by default), so that what a step reads is still in the L2
/// cache when the next one reads it ([`fused::run_group`] runs the steps one after the other
/// where that leaves too few rows).
fn fused_chunk(kernel: Kernel, train: bool, n: usize, channels: usize, w: usize) -> Option<usize> {
    let on = !train && n == 1 && !kernel.is_portable() && FUSED.load(Ordering::Relaxed);
    let rows = (3 * band_bytes() / (channels * w * 4).max(1)).saturating_sub(2);
    on.then_some(rows.min(64))
}

/// A dense layer's inference operands.
struct PreparedLayer<'w> {
    a: Vec<f32>,
    b: Vec<f32>,
    s: ConvShape,
    weights: ConvWeights<'w>,
}

fn prepare_layers<'w>(
    kernel: Kernel,
    params: &'w [f32],
    running: &mut [f32],
    layers: &[BnConv],
    (h, w): (usize, usize),
    eps: f32,
) -> Vec<PreparedLayer<'w>> {
    layers
        .iter()
        .map(|layer| {
            let (a, b) = bn_affine(params, running, layer.bn, &[], &[], false, 0.0, eps);
            let s = shape(layer.conv, h, w);
            let weights = ConvWeights::forward(kernel, s, conv_w(params, layer.conv));
            PreparedLayer { a, b, s, weights }
        })
        .collect()
}

/// The steps of a dense block's layers in a fused group, on one sample's block buffer
/// `planes` of `h × w` planes; with a `window`, each layer computes what the block's output
/// there needs.
fn layer_steps<'a>(
    kernel: Kernel,
    params: &'a [f32],
    layers: &[BnConv],
    prepared: &'a [PreparedLayer<'a>],
    planes: SharedPlanes,
    (h, w): (usize, usize),
    window: Option<Window>,
) -> Vec<Step<'a>> {
    let hw = h * w;
    layers
        .iter()
        .zip(prepared)
        .enumerate()
        .map(|(j, (layer, prep))| {
            let win = window.map_or(Window::full(h, w), |win| {
                win.grown(layers.len() - 1 - j, h, w)
            });
            let (cl, g) = (layer.bn.c, layer.conv.cout);
            let bias = conv_b(params, layer.conv);
            let (src, out) = (planes.part(0, cl * hw), planes.part(cl * hw, g * hw));
            Step {
                window: win,
                halo: layer.conv.k / 2,
                align: prep.weights.tile(),
                run: Box::new(move |y0, y1| {
                    let src = SharedBnRelu {
                        x: src,
                        a: &prep.a,
                        b: &prep.b,
                        hw,
                        w,
                    };
                    let rows = Window { y0, y1, ..win };
                    // SAFETY: the group's schedule gives each call rows of the layer's own
                    // channels that no other task touches meanwhile, and reads only rows
                    // that are finished; the buffer stays borrowed until the group is done.
                    unsafe {
                        conv_forward_shared(
                            kernel,
                            prep.s,
                            &src,
                            &prep.weights,
                            bias,
                            false,
                            out,
                            false,
                            Some(rows),
                        );
                    }
                }),
            }
        })
        .collect()
}

/// Inference of one sample's dense block as a fused group of rows ([`fused::run_group`]):
/// the numbers of [`block_forward`], with every layer after the first reading the block's
/// channels from the cache instead of from memory.
#[allow(clippy::too_many_arguments)]
fn block_inference_fused(
    kernel: Kernel,
    params: &[f32],
    running: &mut [f32],
    layers: &[BnConv],
    act: &mut Act,
    (h, w): (usize, usize),
    eps: f32,
    window: Option<Window>,
    chunk: usize,
) {
    let stride = act.stride();
    let planes = SharedPlanes::new(&mut act.samples_mut(1)[..stride]);
    let prepared = prepare_layers(kernel, params, running, layers, (h, w), eps);
    let steps = layer_steps(kernel, params, layers, &prepared, planes, (h, w), window);
    let threads = rayon::current_num_threads();
    fused::run_group(&steps, chunk, threads);
}

/// 2×2 max pool of `[N][c][h·w]` (stride `src_stride` per sample) into the first `c`
/// channels of `dst` (stride `dst_stride`).
fn max_pool(
    src: &[f32],
    src_stride: usize,
    dst: &mut [f32],
    dst_stride: usize,
    c: usize,
    h: usize,
    w: usize,
) {
    let (h2, w2) = (h / 2, w / 2);
    // Parallel over channel planes, not samples: inference runs one sample at a time.
    for (d, s) in dst.chunks_mut(dst_stride).zip(src.chunks(src_stride)) {
        d[..c * h2 * w2]
            .par_chunks_mut(h2 * w2)
            .zip(s[..c * h * w].par_chunks(h * w))
            .for_each(|(dp, sp)| {
                for (y, out) in dp.chunks_exact_mut(w2).enumerate() {
                    let r0 = &sp[2 * y * w..(2 * y + 1) * w];
                    let r1 = &sp[(2 * y + 1) * w..(2 * y + 2) * w];
                    simd::max_pool_row(r0, r1, out);
                }
            });
    }
}

/// Inference transition down of one sample: the 1×1 convolution of `src` (`h` rows) and the
/// 2×2 max pool, strip by strip, into the first `conv.cout` channels of `next`
/// (`[c][(h/2)·(w/2)]`). The same numbers as the convolution of the whole map followed by
/// [`max_pool`], without storing that map.
fn transition_down_pooled(
    kernel: Kernel,
    params: &[f32],
    conv: ConvP,
    src: &BnRelu,
    h: usize,
    next: &mut [f32],
) {
    let (w, c) = (src.w, conv.cout);
    let (h2, w2) = (h / 2, w / 2);
    // Strips of 2·k rows whose convolution output stays in the L2 cache (about 256 KiB).
    let k = (256 * 1024 / (c * 2 * w * 4)).clamp(1, h2.max(1));
    let strips: Vec<usize> = (0..h2).step_by(k).collect();
    let weights = ConvWeights::forward(kernel, shape(conv, 2 * k, w), conv_w(params, conv));
    let planes = SharedPlanes::new(&mut next[..c * h2 * w2]);
    strips.par_iter().for_each(|&y2| {
        POOL_STRIP.with(|cell| {
            let mut tmp = cell.borrow_mut();
            let rows = k.min(h2 - y2);
            let y0 = 2 * y2;
            let tmp = crate::grow(&mut tmp, c * 2 * rows * w);
            let strip = BnRelu {
                x: &src.x[y0 * w..],
                ..*src
            };
            // A shorter last strip may take other Winograd tiles: its own weights.
            let last;
            let weights = if rows == k {
                &weights
            } else {
                last = ConvWeights::forward(kernel, shape(conv, 2 * rows, w), conv_w(params, conv));
                &last
            };
            conv_forward(
                kernel,
                shape(conv, 2 * rows, w),
                &strip,
                weights,
                conv_b(params, conv),
                false,
                tmp,
                false,
                None,
            );
            // Pooled straight into the strip's rows of each channel of `next`.
            for (ch, conv_rows) in tmp.chunks_exact(2 * rows * w).enumerate() {
                for (y, pair) in conv_rows.chunks_exact(2 * w).enumerate() {
                    // SAFETY: rows y2.. y2 + rows of every channel belong to this strip alone.
                    let out = unsafe { planes.slice_mut(ch * h2 * w2 + (y2 + y) * w2, w2) };
                    simd::max_pool_row(&pair[..w], &pair[w..], out);
                }
            }
        });
    });
}

thread_local! {
    // A strip of a transition down's convolution output, reused from strip to strip and tile
    // to tile (a fresh one each time cost page faults and a copy).
    static POOL_STRIP: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl FastDenseUNet {
    /// Training-mode forward of `x: [N][C_in][H·W]`: batch statistics in every batch norm,
    /// running statistics updated like burn does (momentum 0.1, biased variance). The results
    /// and everything [`FastDenseUNet::backward`] needs stay in `ws`
    /// ([`Workspace::representation`], [`Workspace::bottleneck`]).
    ///
    /// # Errors
    /// [`Error::Shape`] / [`Error::Model`] for a wrong input size.
    pub fn forward_train(
        &mut self,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
        ws: &mut Workspace,
    ) -> Result<(), Error> {
        self.check_input(x.len(), n, h, w)?;
        self.forward_impl(x, n, h, w, ws, true);
        ws.ready = true;
        Ok(())
    }

    /// Inference-mode forward (running statistics, no caches kept): samples are run one at a
    /// time so the memory is that of one sample, parallelised over row bands.
    ///
    /// # Errors
    /// [`Error::Shape`] / [`Error::Model`] for a wrong input size.
    pub fn forward_inference(
        &self,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
    ) -> Result<Output, Error> {
        self.forward_inference_in(&mut Workspace::new(), x, n, h, w)
    }

    /// [`FastDenseUNet::forward_inference`] in a caller's workspace, whose buffers are reused
    /// from call to call (tiles of one image: no fresh allocation and page faults per tile).
    ///
    /// # Errors
    /// As [`FastDenseUNet::forward_inference`].
    pub fn forward_inference_in(
        &self,
        ws: &mut Workspace,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
    ) -> Result<Output, Error> {
        self.check_input(x.len(), n, h, w)?;
        let per = self.config.in_channels * h * w;
        let mut representation = Vec::with_capacity(n * self.out_channels() * h * w);
        let mut bottleneck = Vec::new();
        // forward_impl needs `&mut` running statistics only in training; a scratch copy keeps
        // `self` immutable here.
        let mut running = self.running.clone();
        for i in 0..n {
            self.forward_impl_with(
                &mut running,
                &x[i * per..(i + 1) * per],
                1,
                h,
                w,
                ws,
                false,
                None,
            );
            representation.extend_from_slice(&ws.repr);
            bottleneck.extend(ws.bottleneck());
        }
        Ok(Output {
            representation,
            bottleneck,
        })
    }

    /// The representation of one sample `x: [C_in][H·W]` inside `window` only, `[D][rows][cols]`
    /// of the window: the same numbers as that part of [`FastDenseUNet::forward_inference_in`]'s
    /// (bit for bit on the direct kernels), computed without the layers after the last pooling
    /// level's outputs that it does not depend on. A tile's margin, which only gives the kept
    /// part its context, then costs the down path and the bottleneck but little of the up path.
    ///
    /// # Errors
    /// As [`FastDenseUNet::forward_inference`]; also an empty window or one outside the image.
    pub fn forward_inference_window(
        &self,
        ws: &mut Workspace,
        x: &[f32],
        h: usize,
        w: usize,
        window: Window,
    ) -> Result<Vec<f32>, Error> {
        self.check_input(x.len(), 1, h, w)?;
        let Window { y0, y1, x0, x1 } = window;
        if y0 >= y1 || y1 > h || x0 >= x1 || x1 > w {
            return Err(Error::Shape(format!(
                "window rows {y0}..{y1}, columns {x0}..{x1} of a {h}×{w} image"
            )));
        }
        let mut running = self.running.clone();
        self.forward_impl_with(&mut running, x, 1, h, w, ws, false, Some(window));
        let mut out = Vec::with_capacity(self.out_channels() * (y1 - y0) * (x1 - x0));
        for plane in ws.repr.chunks_exact(h * w) {
            for y in y0..y1 {
                out.extend_from_slice(&plane[y * w + x0..y * w + x1]);
            }
        }
        Ok(out)
    }

    /// Whether the head takes [`conv1x1_few`]: a 1×1 convolution without bias into a few
    /// channels.
    fn head_is_few(&self) -> bool {
        let head = self.head;
        head.cout <= FEW_OUTPUTS && head.b.is_none() && head.k == 1
    }

    fn forward_impl(
        &mut self,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
        ws: &mut Workspace,
        train: bool,
    ) {
        let mut running = std::mem::take(&mut self.running);
        self.forward_impl_with(&mut running, x, n, h, w, ws, train, None);
        self.running = running;
    }

    #[allow(clippy::too_many_arguments)]
    fn forward_impl_with(
        &self,
        running: &mut [f32],
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
        ws: &mut Workspace,
        train: bool,
        window: Option<Window>,
    ) {
        let p = &self.params;
        let kernel = Kernel::of(self.isa);
        let (mo, eps) = (self.momentum, self.eps);
        let depth = self.config.depth();
        let plan = &self.plan;
        let g = self.config.growth_rate;
        ws.n = n;
        ws.h = h;
        ws.w = w;
        ws.ready = false;
        ws.input.clear();
        ws.input.extend_from_slice(x);
        ws.down.resize_with(depth, Act::default);
        ws.td.resize_with(depth, Vec::new);
        ws.up.resize_with(depth, Act::default);
        let lvl = |l: usize| (h >> l, w >> l);
        // Inference on one sample keeps no caches for a backward: the up block of each level
        // grows in the buffer of the down block, whose channels are its first (no copy of the
        // skip connection), and the transitions down pool strip by strip instead of storing
        // their full-resolution output: about 40 % less memory to touch.
        let in_place = !train && n == 1;
        // The up path computes only what `window` of the output depends on (inference of one
        // sample): block i's outputs (level depth − 1 − i) inside up_windows[i]. Found from
        // the head down: a block of L layers needs its transition up's output L pixels wider,
        // which reads the upsampled level below one pixel wider still.
        let window = window.filter(|_| in_place);
        let up_windows: Vec<Option<Window>> = {
            let mut wins = vec![None; depth];
            // A 3×3 head reads one pixel around the window.
            let mut need = window.map(|win| win.grown(self.head.k / 2, h, w));
            for i in (0..depth).rev() {
                let Some(win) = need else { break };
                let (hl, wl) = lvl(depth - 1 - i);
                wins[i] = Some(win);
                let read = win.grown(self.config.up_blocks[i] + 1, hl, wl);
                need = Some(read.halved(hl / 2, wl / 2));
            }
            wins
        };
        let room = |l: usize| {
            let i = depth - 1 - l;
            if in_place {
                plan.up_inputs[i] + self.config.up_blocks[i] * g
            } else {
                plan.skips[l]
            }
        };

        // conv_init → first channels of down block 0.
        let (h0, w0) = lvl(0);
        ws.down[0].reset_with_room(n, plan.skips[0], h0 * w0, room(0));
        {
            let ci = self.conv_init;
            let s = shape(ci, h0, w0);
            let weights = ConvWeights::forward(kernel, s, conv_w(p, ci));
            let stride = ws.down[0].stride();
            let in_stride = self.config.in_channels * h0 * w0;
            let input = &ws.input;
            ws.down[0]
                .samples_mut(n)
                .par_chunks_mut(stride)
                .enumerate()
                .for_each(|(i, sample)| {
                    let src = Plain {
                        x: &input[i * in_stride..(i + 1) * in_stride],
                        hw: h0 * w0,
                        w: w0,
                    };
                    conv_forward(
                        kernel,
                        s,
                        &src,
                        &weights,
                        conv_b(p, ci),
                        false,
                        &mut sample[..ci.cout * h0 * w0],
                        true,
                        None,
                    );
                });
        }
        for i in 0..depth {
            let (hi, wi) = lvl(i);
            block_forward(
                kernel,
                p,
                running,
                &self.down[i],
                &mut ws.down[i],
                0,
                n,
                hi,
                wi,
                train,
                mo,
                eps,
                None,
            );
            // Transition down: BN → ReLU → 1×1 conv → max pool (training caches the pre-pool
            // map for the backward; inference pools strip by strip).
            let td = self.trans_down[i];
            let (a, b) = {
                let act = &ws.down[i];
                bn_affine(p, running, td.bn, &act.mean, &act.var, train, mo, eps)
            };
            let comp = td.conv.cout;
            let hwi = hi * wi;
            let (hn, wn) = lvl(i + 1);
            let (done, rest) = ws.down.split_at_mut(i + 1);
            let act = &done[i];
            let next = if i + 1 < depth {
                rest[0].reset_with_room(n, plan.skips[i + 1], hn * wn, room(i + 1));
                &mut rest[0]
            } else {
                ws.bott
                    .reset(n, plan.bottleneck_in + plan.bottleneck, hn * wn);
                &mut ws.bott
            };
            if in_place {
                let src = BnRelu {
                    x: &act.data,
                    a: &a,
                    b: &b,
                    hw: hwi,
                    w: wi,
                };
                transition_down_pooled(kernel, p, td.conv, &src, hi, &mut next.data);
                continue;
            }
            let tbuf = &mut ws.td[i];
            tbuf.resize(n * comp * hwi, 0.0);
            let s = shape(td.conv, hi, wi);
            let weights = ConvWeights::forward(kernel, s, conv_w(p, td.conv));
            tbuf.par_chunks_mut(comp * hwi)
                .zip(act.data.par_chunks(act.stride()))
                .for_each(|(out, inp)| {
                    let src = BnRelu {
                        x: inp,
                        a: &a,
                        b: &b,
                        hw: hwi,
                        w: wi,
                    };
                    conv_forward(
                        kernel,
                        s,
                        &src,
                        &weights,
                        conv_b(p, td.conv),
                        false,
                        out,
                        true,
                        None,
                    );
                });
            let ns = next.stride();
            max_pool(&ws.td[i], comp * hwi, &mut next.data, ns, comp, hi, wi);
        }
        let (hb, wb) = lvl(depth);
        block_forward(
            kernel,
            p,
            running,
            &self.bottleneck,
            &mut ws.bott,
            0,
            n,
            hb,
            wb,
            train,
            mo,
            eps,
            None,
        );
        // Up path.
        let mut head_done = false;
        for i in 0..depth {
            let l = depth - 1 - i;
            let (hl, wl) = lvl(l);
            let hwl = hl * wl;
            let skip = plan.skips[l];
            let tu = self.trans_up[i];
            let c_new = self.config.up_blocks[i] * g;
            if in_place {
                std::mem::swap(&mut ws.up[i], &mut ws.down[l]);
                ws.up[i].grow_single(plan.up_inputs[i] + c_new);
            } else {
                ws.up[i].reset(n, plan.up_inputs[i] + c_new, hwl);
            }
            let (before, rest) = ws.up.split_at_mut(i);
            let cur = &mut rest[0];
            let (prev, prev_start) = if i == 0 {
                (&ws.bott, plan.bottleneck_in)
            } else {
                (&before[i - 1], plan.up_inputs[i - 1])
            };
            let skip_act = (!in_place).then_some(&ws.down[l]);
            // The skip's batch statistics are its down block's (the same values).
            let known = match skip_act {
                Some(sa) if train => {
                    cur.mean[..skip].copy_from_slice(&sa.mean[..skip]);
                    cur.var[..skip].copy_from_slice(&sa.var[..skip]);
                    skip
                }
                _ => 0,
            };
            let s = shape(tu, hl, wl);
            let weights = ConvWeights::forward(kernel, s, conv_w(p, tu));
            let tu_window = up_windows[i].map(|win| win.grown(self.config.up_blocks[i], hl, wl));
            let hw_low = (hl / 2) * (wl / 2);
            let cur_stride = cur.stride();
            let head_fused = l == 0 && self.head_is_few();
            let widest = if head_fused {
                self.head.cin
            } else {
                self.up[i].last().map_or(0, |layer| layer.bn.c)
            };
            if let Some(chunk) = fused_chunk(kernel, train, n, widest, wl) {
                // One group: the transition up, the block's layers and, at the top level, the
                // head, each reading rows the step before it has just written.
                let planes = SharedPlanes::new(&mut cur.samples_mut(1)[..cur_stride]);
                let low = &prev.data[prev_start * hw_low..(prev_start + tu.cin) * hw_low];
                let tu_out = planes.part(skip * hwl, tu.cout * hwl);
                let tu_win = tu_window.unwrap_or(Window::full(hl, wl));
                let bias = conv_b(p, tu);
                let weights = &weights;
                let layers = &self.up[i];
                let prepared = prepare_layers(kernel, p, running, layers, (hl, wl), eps);
                let mut steps = vec![Step {
                    window: tu_win,
                    halo: 0,
                    align: weights.tile(),
                    run: Box::new(move |y0, y1| {
                        let src = Upsample {
                            x: low,
                            hw_low,
                            w: wl,
                        };
                        let rows = Window { y0, y1, ..tu_win };
                        // SAFETY: the rows of the transition's channels are this call's alone
                        // (the group's schedule); the buffer stays borrowed until it is done.
                        unsafe {
                            conv_forward_shared(
                                kernel,
                                s,
                                &src,
                                weights,
                                bias,
                                true,
                                tu_out,
                                false,
                                Some(rows),
                            );
                        }
                    }),
                }];
                let block = layer_steps(
                    kernel,
                    p,
                    layers,
                    &prepared,
                    planes,
                    (hl, wl),
                    up_windows[i],
                );
                steps.extend(block);
                let head = self.head;
                if head_fused {
                    ws.repr.resize(head.cout * h * w, 0.0);
                    let out = SharedPlanes::new(&mut ws.repr);
                    let x = planes.part(0, head.cin * hwl);
                    let weight = conv_w(p, head);
                    let win = window.unwrap_or(Window::full(h, w));
                    steps.push(Step {
                        window: win,
                        halo: 0,
                        align: 1,
                        run: Box::new(move |y0, y1| {
                            let rows = Window { y0, y1, ..win };
                            // SAFETY: as the steps before; the representation's rows are
                            // this call's alone.
                            unsafe { conv1x1_few_rows(weight, head.cin, x, (h, w), out, rows) };
                        }),
                    });
                    head_done = true;
                }
                fused::run_group(&steps, chunk, rayon::current_num_threads());
                continue;
            }
            cur.samples_mut(n)
                .par_chunks_mut(cur_stride)
                .enumerate()
                .for_each(|(k, sample)| {
                    if let Some(sa) = skip_act {
                        let sk = &sa.data[k * sa.stride()..(k + 1) * sa.stride()];
                        sample[..skip * hwl].copy_from_slice(&sk[..skip * hwl]);
                    }
                    let pv = &prev.data[k * prev.stride()..(k + 1) * prev.stride()];
                    let src = Upsample {
                        x: &pv[prev_start * hw_low..(prev_start + tu.cin) * hw_low],
                        hw_low,
                        w: wl,
                    };
                    conv_forward(
                        kernel,
                        s,
                        &src,
                        &weights,
                        conv_b(p, tu),
                        true,
                        &mut sample[skip * hwl..(skip + tu.cout) * hwl],
                        true,
                        tu_window,
                    );
                });
            block_forward(
                kernel,
                p,
                running,
                &self.up[i],
                cur,
                known,
                n,
                hl,
                wl,
                train,
                mo,
                eps,
                up_windows[i],
            );
        }
        // Head: 1×1 conv without bias on the whole last block (on the window only, with one).
        let last = &ws.up[depth - 1];
        let head = self.head;
        let d = head.cout;
        ws.repr.resize(n * d * h * w, 0.0);
        let s = shape(head, h, w);
        if head_done {
            // Computed in the top level's fused group.
        } else if self.head_is_few() {
            for (out, inp) in ws
                .repr
                .chunks_mut(d * h * w)
                .zip(last.data.chunks(last.stride()))
            {
                conv1x1_few(
                    conv_w(p, head),
                    head.cin,
                    &inp[..head.cin * h * w],
                    (h, w),
                    out,
                    window,
                );
            }
        } else {
            let weights = ConvWeights::forward(kernel, s, conv_w(p, head));
            ws.repr
                .par_chunks_mut(d * h * w)
                .zip(last.data.par_chunks(last.stride()))
                .for_each(|(out, inp)| {
                    let src = Plain {
                        x: inp,
                        hw: h * w,
                        w,
                    };
                    conv_forward(kernel, s, &src, &weights, None, false, out, true, window);
                });
        }
        if in_place {
            // Give the down blocks their (grown) buffers back for the next tile.
            for l in 0..depth {
                std::mem::swap(&mut ws.up[depth - 1 - l], &mut ws.down[l]);
            }
        }
        ws.bott_start = plan.bottleneck_in;
    }
}

/// Collects the gradient w.r.t. `relu(a·x + b)` rows of one sample: masks it by the ReLU,
/// adds its share of the batch-norm input gradient (`a` times it) into `g`, and sums the two
/// per-channel reductions from which the rest of that gradient follows ([`BnOwed`]).
struct BnSink<'a> {
    x: &'a [f32],
    a: &'a [f32],
    b: &'a [f32],
    mean: &'a [f32],
    invstd: &'a [f32],
    g: &'a mut [f32],
    s1: Vec<f64>,
    s2: Vec<f64>,
    /// The channel whose rows are being summed, with its lane sums (folded into `s1`, `s2`
    /// when the rows move to another channel: once per band, not once per row).
    run: Option<(usize, simd::Lanes, simd::Lanes)>,
    hw: usize,
    w: usize,
}

impl BnSink<'_> {
    /// Folds the current run of rows into the channel sums.
    fn flush(&mut self) {
        if let Some((c, l1, l2)) = self.run.take() {
            self.s1[c] += f64::from(simd::fold_lanes(&l1));
            self.s2[c] += f64::from(simd::fold_lanes(&l2));
        }
    }
}

impl RowSink for BnSink<'_> {
    fn row(&mut self, c: usize, y: usize, grad: &[f32]) {
        if self.run.as_ref().is_none_or(|r| r.0 != c) {
            self.flush();
            self.run = Some((c, simd::Lanes::default(), simd::Lanes::default()));
        }
        let o = c * self.hw + y * self.w;
        let (a, b, m, is) = (self.a[c], self.b[c], self.mean[c], self.invstd[c]);
        // The next channel's row, while this one's is worked on.
        if let (Some(x), Some(g)) = (
            self.x.get(o + self.hw..o + self.hw + self.w),
            self.g.get(o + self.hw..o + self.hw + self.w),
        ) {
            simd::prefetch(x);
            simd::prefetch(g);
        }
        let xs = &self.x[o..o + self.w];
        let gs = &mut self.g[o..o + self.w];
        if let Some((_, l1, l2)) = self.run.as_mut() {
            simd::relu_grad_sums(gs, xs, grad, a, b, m, is, l1, l2);
        }
    }
}

/// Adds rows into `[c][h·w]` planes.
struct AddSink<'a> {
    g: &'a mut [f32],
    hw: usize,
    w: usize,
}

impl RowSink for AddSink<'_> {
    fn row(&mut self, c: usize, y: usize, grad: &[f32]) {
        let o = c * self.hw + y * self.w;
        simd::add_assign(&mut self.g[o..o + self.w], grad);
    }
}

/// Backward of nearest ×2 upsampling: sums each 2×2 block into `[c][(h/2)·(w/2)]` planes.
struct DownAdd<'a> {
    g: &'a mut [f32],
    hw_low: usize,
    w: usize,
}

impl RowSink for DownAdd<'_> {
    fn row(&mut self, c: usize, y: usize, grad: &[f32]) {
        let wl = self.w / 2;
        let o = c * self.hw_low + (y / 2) * wl;
        for (g, pair) in self.g[o..o + wl].iter_mut().zip(grad.chunks_exact(2)) {
            *g += pair[0] + pair[1];
        }
    }
}

/// Per-sample weight / bias gradient accumulators, summed in sample order afterwards
/// (deterministic whatever the thread count).
struct SampleGrads {
    dw: Vec<f32>,
    db: Vec<f32>,
    s1: Vec<f64>,
    s2: Vec<f64>,
}

fn reduce_conv(s: ConvShape, conv: ConvP, parts: &[SampleGrads], grads: &mut [f32]) {
    let wlen = conv.cout * conv.cin * conv.k * conv.k;
    let mut dw = vec![0.0f32; wlen];
    for part in parts {
        for (d, &v) in dw.iter_mut().zip(&part.dw) {
            *d += v;
        }
    }
    add_tap_major(s, &dw, &mut grads[conv.w..conv.w + wlen]);
    if let Some(b) = conv.b {
        for part in parts {
            for (d, &v) in grads[b..b + conv.cout].iter_mut().zip(&part.db) {
                *d += v;
            }
        }
    }
}

/// Where a conv's output gradient lives: sample `i` is
/// `buf[i·stride + offset .. i·stride + offset + len]`.
#[derive(Clone, Copy)]
struct Slab<'a> {
    buf: &'a [f32],
    stride: usize,
    offset: usize,
    len: usize,
}

impl<'a> Slab<'a> {
    fn sample(&self, i: usize) -> &'a [f32] {
        let o = i * self.stride + self.offset;
        &self.buf[o..o + self.len]
    }
}

/// The part of the batch-norm input gradients that depends on batch sums, owed to the
/// channels of one block's buffer by the layers already run backward. Every batch norm reading
/// a channel normalises it with the same batch statistics, so the parts owed by all of them
/// add up to one affine function of the channel, `offset + slope · (x − mean)`, subtracted in a
/// single pass just before the channel's gradient is read, instead of one pass per layer.
struct BnOwed {
    offset: Vec<f64>,
    slope: Vec<f64>,
}

impl BnOwed {
    fn new(channels: usize) -> Self {
        Self {
            offset: vec![0.0; channels],
            slope: vec![0.0; channels],
        }
    }

    /// Subtracts what is owed to `channels` from their gradient in `gx` (laid out as `act`).
    fn settle(&mut self, act: &Act, gx: &mut [f32], channels: Range<usize>) {
        let owing: Vec<(usize, f32, f32)> = channels
            .filter(|&ch| self.offset[ch] != 0.0 || self.slope[ch] != 0.0)
            .map(|ch| (ch, self.offset[ch] as f32, self.slope[ch] as f32))
            .collect();
        if owing.is_empty() {
            return;
        }
        let (hw, stride) = (act.hw, act.stride());
        gx.par_chunks_mut(stride)
            .zip(act.data.par_chunks(stride))
            .for_each(|(g, x)| {
                for &(ch, offset, slope) in &owing {
                    let r = ch * hw..(ch + 1) * hw;
                    simd::bn_batch_grad(&mut g[r.clone()], &x[r], offset, slope, act.mean[ch]);
                }
            });
        for &(ch, _, _) in &owing {
            self.offset[ch] = 0.0;
            self.slope[ch] = 0.0;
        }
    }
}

/// Backward of BN → ReLU → conv reading the first `bn.c` channels of `act`, accumulating
/// the input gradient into `gx` (same layout as `act`). Per sample: the conv weight gradient
/// and the ReLU-masked gradient, whose direct share of the batch-norm input gradient goes
/// into `gx` at once and whose per-channel sums give the rest, added to `owed`.
#[allow(clippy::too_many_arguments)]
fn bn_conv_backward(
    kernel: Kernel,
    params: &[f32],
    grads: &mut [f32],
    layer: BnConv,
    act: &Act,
    gx: &mut [f32],
    dout: Option<Slab<'_>>,
    n: usize,
    h: usize,
    w: usize,
    owed: &mut BnOwed,
    eps: f32,
) {
    let hw = h * w;
    let (bn, conv) = (layer.bn, layer.conv);
    let c = bn.c;
    let gamma = &params[bn.gamma..bn.gamma + c];
    let beta = &params[bn.beta..bn.beta + c];
    let invstd: Vec<f32> = act.var[..c]
        .iter()
        .map(|&v| 1.0 / (v + eps).sqrt())
        .collect();
    let a: Vec<f32> = (0..c).map(|k| gamma[k] * invstd[k]).collect();
    let b: Vec<f32> = (0..c).map(|k| beta[k] - act.mean[k] * a[k]).collect();
    let mean = &act.mean[..c];
    let s = shape(conv, h, w);
    let transposed = transpose_weight(s, conv_w(params, conv));
    let wt = ConvWeights::input_grad(kernel, s, &transposed);
    let stride = act.stride();
    let dout_cout = conv.cout * hw;
    let parts: Vec<SampleGrads> = gx
        .par_chunks_mut(stride)
        .enumerate()
        .map(|(i, gs)| {
            // Dense layers read their output gradient from `gx` itself (the channels after
            // `c`, which no layer below writes).
            let (g, g_after) = gs.split_at_mut(c * hw);
            let dout: &[f32] = match dout {
                Some(slab) => slab.sample(i),
                None => &g_after[..dout_cout],
            };
            let x = &act.data[i * stride..i * stride + c * hw];
            let src = BnRelu {
                x,
                a: &a,
                b: &b,
                hw,
                w,
            };
            let mut sink = BnSink {
                x,
                a: &a,
                b: &b,
                mean,
                invstd: &invstd,
                g,
                s1: vec![0.0; c],
                s2: vec![0.0; c],
                run: None,
                hw,
                w,
            };
            let mut dw = vec![0.0; s.k * s.k * s.cout * s.cin];
            let mut db = vec![0.0; s.cout];
            conv_backward(
                kernel,
                s,
                &src,
                Some(&wt),
                dout,
                &mut dw,
                Some(&mut db),
                Some(&mut sink),
            );
            sink.flush();
            SampleGrads {
                dw,
                db,
                s1: sink.s1,
                s2: sink.s2,
            }
        })
        .collect();
    reduce_conv(s, conv, &parts, grads);
    let mut s1 = vec![0.0f64; c];
    let mut s2 = vec![0.0f64; c];
    for part in &parts {
        for k in 0..c {
            s1[k] += part.s1[k];
            s2[k] += part.s2[k];
        }
    }
    let count = (n * hw) as f64;
    for k in 0..c {
        grads[bn.gamma + k] += s2[k] as f32;
        grads[bn.beta + k] += s1[k] as f32;
        // g −= a · (m1 + (x − mean) · invstd · m2), with m1, m2 the batch means of the sums.
        let ak = f64::from(a[k]);
        owed.offset[k] += ak * s1[k] / count;
        owed.slope[k] += ak * f64::from(invstd[k]) * s2[k] / count;
    }
}

#[allow(clippy::too_many_arguments)]
fn block_backward(
    kernel: Kernel,
    params: &[f32],
    grads: &mut [f32],
    layers: &[BnConv],
    act: &Act,
    gx: &mut [f32],
    n: usize,
    h: usize,
    w: usize,
    owed: &mut BnOwed,
    eps: f32,
) {
    for &layer in layers.iter().rev() {
        let (c, cout) = (layer.bn.c, layer.conv.cout);
        // The layer's output channels are complete once what they are owed is settled.
        owed.settle(act, gx, c..c + cout);
        bn_conv_backward(
            kernel, params, grads, layer, act, gx, None, n, h, w, owed, eps,
        );
    }
    // The block's input channels.
    owed.settle(act, gx, 0..owed.offset.len());
}

/// Sets `v` to `len` zeros, clearing a buffer of the right size on every thread (a serial
/// clear of the gradient buffers left the other core idle at the start of each backward).
fn zeroed(v: &mut Vec<f32>, len: usize) {
    if v.len() == len {
        v.par_chunks_mut(1 << 14).for_each(|c| c.fill(0.0));
    } else {
        v.clear();
        v.resize(len, 0.0);
    }
}

impl FastDenseUNet {
    /// Backward of the last [`FastDenseUNet::forward_train`] run in `ws`: given
    /// `d_repr = dL/d(representation)` (`[N][D][H·W]`) and optionally
    /// `d_bottleneck = dL/d(bottleneck)` (`[N][C_b][h·w]`), writes the gradient of every
    /// trainable parameter into `grads` (resized to [`FastDenseUNet::num_params`], layout of
    /// [`FastDenseUNet::params`]).
    ///
    /// # Errors
    /// [`Error::Shape`] if `ws` holds no training forward or a gradient has the wrong size.
    pub fn backward(
        &self,
        ws: &mut Workspace,
        d_repr: &[f32],
        d_bottleneck: Option<&[f32]>,
        grads: &mut Vec<f32>,
    ) -> Result<(), Error> {
        if !ws.ready || ws.down.len() != self.config.depth() {
            return Err(Error::Shape(
                "backward needs a training forward of this network in the workspace".into(),
            ));
        }
        let (n, h, w) = (ws.n, ws.h, ws.w);
        let depth = self.config.depth();
        let d = self.out_channels();
        if d_repr.len() != n * d * h * w {
            return Err(Error::Shape(format!(
                "d_repr has {} values, expected {}",
                d_repr.len(),
                n * d * h * w
            )));
        }
        let cb = self.plan.bottleneck;
        let hwb = (h >> depth) * (w >> depth);
        if let Some(db) = d_bottleneck {
            if db.len() != n * cb * hwb {
                return Err(Error::Shape(format!(
                    "d_bottleneck has {} values, expected {}",
                    db.len(),
                    n * cb * hwb
                )));
            }
        }
        let kernel = Kernel::of(self.isa);
        zeroed(grads, self.params.len());
        let p = &self.params;
        let eps = self.eps;
        let plan = &self.plan;
        let lvl = |l: usize| (h >> l, w >> l);
        let Workspace {
            input,
            down,
            td,
            bott,
            up,
            g_down,
            g_bott,
            g_up,
            dtd,
            ..
        } = ws;
        g_down.resize_with(depth, Vec::new);
        g_up.resize_with(depth, Vec::new);
        for (g, a) in g_down.iter_mut().zip(down.iter()) {
            zeroed(g, a.data.len());
        }
        for (g, a) in g_up.iter_mut().zip(up.iter()) {
            zeroed(g, a.data.len());
        }
        zeroed(g_bott, bott.data.len());

        // Head (1×1, no bias) on the last up block.
        {
            let last = &up[depth - 1];
            let s = shape(self.head, h, w);
            let transposed = transpose_weight(s, conv_w(p, self.head));
            let wt = ConvWeights::input_grad(kernel, s, &transposed);
            let ls = last.stride();
            let parts: Vec<SampleGrads> = g_up[depth - 1]
                .par_chunks_mut(ls)
                .enumerate()
                .map(|(i, g)| {
                    let src = Plain {
                        x: &last.data[i * ls..(i + 1) * ls],
                        hw: h * w,
                        w,
                    };
                    let mut sink = AddSink { g, hw: h * w, w };
                    let mut dw = vec![0.0; s.cout * s.cin];
                    conv_backward(
                        kernel,
                        s,
                        &src,
                        Some(&wt),
                        &d_repr[i * d * h * w..(i + 1) * d * h * w],
                        &mut dw,
                        None,
                        Some(&mut sink),
                    );
                    SampleGrads {
                        dw,
                        db: Vec::new(),
                        s1: Vec::new(),
                        s2: Vec::new(),
                    }
                })
                .collect();
            reduce_conv(s, self.head, &parts, grads);
        }
        // Up path, last block first.
        for i in (0..depth).rev() {
            let l = depth - 1 - i;
            let (hl, wl) = lvl(l);
            let hwl = hl * wl;
            block_backward(
                kernel,
                p,
                grads,
                &self.up[i],
                &up[i],
                &mut g_up[i],
                n,
                hl,
                wl,
                &mut BnOwed::new(up[i].c),
                eps,
            );
            let skip = plan.skips[l];
            let us = up[i].stride();
            // Skip connection: the first `skip` channels are a copy of down block l.
            let ds = down[l].stride();
            g_down[l]
                .par_chunks_mut(ds)
                .zip(g_up[i].par_chunks(us))
                .for_each(|(gd, gu)| {
                    for (a, &b) in gd[..skip * hwl].iter_mut().zip(&gu[..skip * hwl]) {
                        *a += b;
                    }
                });
            // Transition up: ReLU mask (in place), then the 3×3 conv of the upsampled input.
            let tu = self.trans_up[i];
            let cu = tu.cout;
            let ua = &up[i];
            g_up[i]
                .par_chunks_mut(us)
                .zip(ua.data.par_chunks(us))
                .for_each(|(g, a)| {
                    let r = skip * hwl..(skip + cu) * hwl;
                    for (gv, &av) in g[r.clone()].iter_mut().zip(&a[r]) {
                        if av <= 0.0 {
                            *gv = 0.0;
                        }
                    }
                });
            let (g_before, g_rest) = g_up.split_at_mut(i);
            let gcur: &[f32] = &g_rest[0];
            let (prev, gprev, prev_start) = if i == 0 {
                (&*bott, &mut *g_bott, plan.bottleneck_in)
            } else {
                (&up[i - 1], &mut g_before[i - 1], plan.up_inputs[i - 1])
            };
            let s = shape(tu, hl, wl);
            let transposed = transpose_weight(s, conv_w(p, tu));
            let wt = ConvWeights::input_grad(kernel, s, &transposed);
            let hw_low = (hl / 2) * (wl / 2);
            let ps = prev.stride();
            let parts: Vec<SampleGrads> = gprev
                .par_chunks_mut(ps)
                .enumerate()
                .map(|(k, gp)| {
                    let pv = &prev.data[k * ps..(k + 1) * ps];
                    let rng = prev_start * hw_low..(prev_start + tu.cin) * hw_low;
                    let src = Upsample {
                        x: &pv[rng.clone()],
                        hw_low,
                        w: wl,
                    };
                    let mut sink = DownAdd {
                        g: &mut gp[rng],
                        hw_low,
                        w: wl,
                    };
                    let mut dw = vec![0.0; 9 * cu * tu.cin];
                    let mut db = vec![0.0; cu];
                    conv_backward(
                        kernel,
                        s,
                        &src,
                        Some(&wt),
                        &gcur[k * us + skip * hwl..k * us + (skip + cu) * hwl],
                        &mut dw,
                        Some(&mut db),
                        Some(&mut sink),
                    );
                    SampleGrads {
                        dw,
                        db,
                        s1: Vec::new(),
                        s2: Vec::new(),
                    }
                })
                .collect();
            reduce_conv(s, tu, &parts, grads);
        }
        // Bottleneck: optional direct gradient on its output, then the block.
        let (hb, wb) = lvl(depth);
        if let Some(dbn) = d_bottleneck {
            let bs = bott.stride();
            let start = plan.bottleneck_in * hwb;
            g_bott
                .par_chunks_mut(bs)
                .zip(dbn.par_chunks(cb * hwb))
                .for_each(|(g, d)| {
                    for (a, &b) in g[start..].iter_mut().zip(d) {
                        *a += b;
                    }
                });
        }
        block_backward(
            kernel,
            p,
            grads,
            &self.bottleneck,
            bott,
            g_bott,
            n,
            hb,
            wb,
            &mut BnOwed::new(bott.c),
            eps,
        );
        // Down path, deepest level first.
        for i in (0..depth).rev() {
            let (hi, wi) = lvl(i);
            let hwi = hi * wi;
            let tdl = self.trans_down[i];
            let comp = tdl.conv.cout;
            // Max-pool backward: route each pooled gradient to the first maximum of its window.
            let (gnext, nstride): (&[f32], usize) = if i + 1 < depth {
                (&g_down[i + 1], down[i + 1].stride())
            } else {
                (&*g_bott, bott.stride())
            };
            // Every element of each 2×2 window is written (the gradient or 0), so the buffer
            // needs no clearing: inputs are multiples of 2^depth, every level has even sides.
            debug_assert!(hi.is_multiple_of(2) && wi.is_multiple_of(2));
            dtd.resize(n * comp * hwi, 0.0);
            let (h2, w2) = (hi / 2, wi / 2);
            let t = &td[i];
            dtd.par_chunks_mut(comp * hwi)
                .enumerate()
                .for_each(|(k, dt)| {
                    let ts = &t[k * comp * hwi..(k + 1) * comp * hwi];
                    let gn = &gnext[k * nstride..k * nstride + comp * h2 * w2];
                    for c in 0..comp {
                        for y in 0..h2 {
                            let top = c * hwi + 2 * y * wi;
                            let (t0, t1) = (&ts[top..top + wi], &ts[top + wi..top + 2 * wi]);
                            let (d0, d1) = dt[top..top + 2 * wi].split_at_mut(wi);
                            let g = &gn[c * h2 * w2 + y * w2..c * h2 * w2 + (y + 1) * w2];
                            simd::max_pool_grad_row(t0, t1, g, d0, d1);
                        }
                    }
                });
            let slab = Slab {
                buf: dtd,
                stride: comp * hwi,
                offset: 0,
                len: comp * hwi,
            };
            // The transition reads every channel of the block, so what it owes them is
            // settled with the block's own layers.
            let mut owed = BnOwed::new(down[i].c);
            bn_conv_backward(
                kernel,
                p,
                grads,
                tdl,
                &down[i],
                &mut g_down[i],
                Some(slab),
                n,
                hi,
                wi,
                &mut owed,
                eps,
            );
            block_backward(
                kernel,
                p,
                grads,
                &self.down[i],
                &down[i],
                &mut g_down[i],
                n,
                hi,
                wi,
                &mut owed,
                eps,
            );
        }
        // conv_init: parameter gradients only.
        {
            let (h0, w0) = lvl(0);
            let ci = self.conv_init;
            let s = shape(ci, h0, w0);
            let in_stride = self.config.in_channels * h0 * w0;
            let ds = down[0].stride();
            let g0: &[f32] = &g_down[0];
            let parts: Vec<SampleGrads> = (0..n)
                .into_par_iter()
                .map(|k| {
                    let src = Plain {
                        x: &input[k * in_stride..(k + 1) * in_stride],
                        hw: h0 * w0,
                        w: w0,
                    };
                    let mut dw = vec![0.0; 9 * ci.cout * ci.cin];
                    let mut db = vec![0.0; ci.cout];
                    conv_backward(
                        kernel,
                        s,
                        &src,
                        None,
                        &g0[k * ds..k * ds + ci.cout * h0 * w0],
                        &mut dw,
                        Some(&mut db),
                        None,
                    );
                    SampleGrads {
                        dw,
                        db,
                        s1: Vec::new(),
                        s2: Vec::new(),
                    }
                })
                .collect();
            reduce_conv(s, ci, &parts, grads);
        }
        Ok(())
    }
}
