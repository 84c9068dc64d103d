//! FC-DenseNet ("Tiramisu", Jégou et al. 2017) as used by CoMIR.
//!
//! The architecture reproduces `models/tiramisu.py` of the CoMIR reference
//! implementation layer by layer:
//!
//! * `conv_init`: Conv 3×3 (in → `init_filters`, bias);
//! * dense layer: BN → ReLU → Conv 3×3 (→ `growth_rate`, bias) → dropout;
//!   each layer sees the concatenation of the block input and all previous new
//!   features of the block;
//! * down path: dense block (returns input ⧺ new features, saved as a skip) →
//!   transition down: BN → ReLU → Conv 1×1 (→ ⌊c·compression⌋, bias)
//!   [→ channel dropout 0.2 if `dropout ≠ 0`] → max-pool 2×2;
//! * bottleneck dense block returning **only its new features**
//!   (`growth_rate · bottleneck_layers` channels) — this is
//!   [`ModelOutput::bottleneck`];
//! * up path: transition up (nearest ×2 → Conv 3×3 (c → c, bias) → ReLU),
//!   concatenation `[skip, up]`, dense block returning only new features,
//!   except the last up block which returns input ⧺ new features;
//! * head: Conv 1×1 → `out_channels` **without bias** and without activation.
//!
//! Channel bookkeeping for [`DenseUNetConfig::histology`]: skips 80, 108, 129,
//! 144, 156, 165; after compression 60, 81, 96, 108, 117, 123; bottleneck 48
//! new channels; last block 176 channels; 1,053,244 parameters for one input
//! channel.

use burn::module::{Flag, Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Tensor};
use serde::{Deserialize, Serialize};

use crate::limits::{MAX_BLOCK_LAYERS, MAX_CHANNELS, MAX_DEPTH, MAX_FILTERS};
use crate::{check_input_shape, upsample_nearest2x, ModelError, ModelOutput, RepresentationNet};

/// Configuration of a [`DenseUNet`] (FC-DenseNet / Tiramisu).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DenseUNetConfig {
    /// Number of input image channels (1 for SHG / NIR, 3 for RGB / BF).
    pub in_channels: usize,
    /// Number of representation channels `D` (1 for histology, 3 for Zurich).
    pub out_channels: usize,
    /// Output channels of the initial 3×3 convolution.
    pub init_filters: usize,
    /// Number of dense layers of each down-path block (one pooling level per entry).
    pub down_blocks: Vec<usize>,
    /// Number of dense layers of each up-path block (same length as `down_blocks`;
    /// the first entry is the block right after the bottleneck).
    pub up_blocks: Vec<usize>,
    /// Number of dense layers in the bottleneck block.
    pub bottleneck_layers: usize,
    /// New feature maps produced by every dense layer (12 in the reference).
    pub growth_rate: usize,
    /// Channel compression factor of the transition-down 1×1 convolutions, in (0, 1].
    pub compression: f64,
    /// Dropout probability after every dense layer (0 disables dropout). When
    /// non-zero, transition-down blocks also apply channel dropout with the
    /// reference's hard-coded rate 0.2.
    pub dropout: f64,
}

impl Default for DenseUNetConfig {
    /// The histology preset with one input channel.
    fn default() -> Self {
        Self::histology(1)
    }
}

impl DenseUNetConfig {
    /// Preset of the CoMIR histology (BF/SHG) and MultiRegEval models: init 32,
    /// six blocks of 4 layers down and up, bottleneck 4, growth 12,
    /// compression 0.75, D = 1, no dropout.
    pub fn histology(in_channels: usize) -> Self {
        Self {
            in_channels,
            out_channels: 1,
            init_filters: 32,
            down_blocks: vec![4; 6],
            up_blocks: vec![4; 6],
            bottleneck_layers: 4,
            growth_rate: 12,
            compression: 0.75,
            dropout: 0.0,
        }
    }

    /// Preset of the CoMIR Zurich (RGB/NIR) models: init 16, blocks (2, 2, 2),
    /// bottleneck 3, growth 12, compression 1.0, no dropout. `out_channels` is 1
    /// here; the reference Zurich models use `D = 3` (`.with_out_channels(3)`).
    pub fn small(in_channels: usize) -> Self {
        Self {
            in_channels,
            out_channels: 1,
            init_filters: 16,
            down_blocks: vec![2; 3],
            up_blocks: vec![2; 3],
            bottleneck_layers: 3,
            growth_rate: 12,
            compression: 1.0,
            dropout: 0.0,
        }
    }

    /// comir's own preset for CPUs: the `small` layout with half its width (init 12, growth 6),
    /// about 3.5× fewer multiply-adds per pixel (≈ 46 k parameters). Not in the reference:
    /// chosen for time to quality on a 2-core CPU (docs/results.md, "Presets").
    pub fn fast(in_channels: usize) -> Self {
        Self {
            init_filters: 12,
            growth_rate: 6,
            ..Self::small(in_channels)
        }
    }

    /// A network small enough to train in milliseconds, for tests and examples (not for real
    /// data): one input and one output channel, init 4, two levels of one layer down and up,
    /// a one-layer bottleneck, growth 4, compression 1, no dropout; inputs must be multiples
    /// of 4. Tests that need other numbers override fields
    /// (`DenseUNetConfig { growth_rate: 3, ..DenseUNetConfig::tiny() }`).
    pub fn tiny() -> Self {
        Self {
            init_filters: 4,
            down_blocks: vec![1, 1],
            up_blocks: vec![1, 1],
            bottleneck_layers: 1,
            growth_rate: 4,
            ..Self::small(1)
        }
    }

    /// Returns the configuration with `out_channels` replaced.
    pub fn with_out_channels(mut self, out_channels: usize) -> Self {
        self.out_channels = out_channels;
        self
    }

    /// Number of pooling levels.
    pub fn depth(&self) -> usize {
        self.down_blocks.len()
    }

    /// Input height and width must be multiples of this (`2^depth`).
    pub fn required_multiple(&self) -> usize {
        1usize << self.depth()
    }

    /// Checks every field for consistency.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: &str| Err(ModelError::InvalidConfig(m.to_string()));
        if self.in_channels == 0 {
            return bad("in_channels must be positive");
        }
        if self.out_channels == 0 {
            return bad("out_channels must be positive");
        }
        if self.init_filters == 0 {
            return bad("init_filters must be positive");
        }
        if self.growth_rate == 0 {
            return bad("growth_rate must be positive");
        }
        if self.down_blocks.is_empty() {
            return bad("down_blocks must not be empty");
        }
        if self.depth() > MAX_DEPTH {
            return Err(ModelError::InvalidConfig(format!(
                "at most {MAX_DEPTH} pooling levels are supported, got {}",
                self.depth()
            )));
        }
        // Bounds first, so that the channel arithmetic below cannot overflow.
        for (name, value, max) in [
            ("in_channels", self.in_channels, MAX_CHANNELS),
            ("out_channels", self.out_channels, MAX_CHANNELS),
            ("init_filters", self.init_filters, MAX_FILTERS),
            ("growth_rate", self.growth_rate, MAX_FILTERS),
            (
                "bottleneck_layers",
                self.bottleneck_layers,
                MAX_BLOCK_LAYERS,
            ),
        ] {
            if value > max {
                return Err(ModelError::InvalidConfig(format!(
                    "{name} is {value}, more than the limit of {max}"
                )));
            }
        }
        if let Some(n) = self
            .down_blocks
            .iter()
            .chain(&self.up_blocks)
            .find(|&&n| n > MAX_BLOCK_LAYERS)
        {
            return Err(ModelError::InvalidConfig(format!(
                "a dense block of {n} layers is more than the limit of {MAX_BLOCK_LAYERS}"
            )));
        }
        if self.up_blocks.len() != self.down_blocks.len() {
            return bad("up_blocks and down_blocks must have the same length");
        }
        if self
            .down_blocks
            .iter()
            .chain(&self.up_blocks)
            .any(|&n| n == 0)
            || self.bottleneck_layers == 0
        {
            return bad("every dense block needs at least one layer");
        }
        if self.compression.is_nan() || self.compression <= 0.0 || self.compression > 1.0 {
            return bad("compression must be in (0, 1]");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout must be in [0, 1)");
        }
        let plan = self.channel_plan_unchecked();
        if plan.compressed.contains(&0) {
            return bad("compression reduces a transition to zero channels");
        }
        crate::limits::check_budget("the network has", self.param_count_unchecked(&plan))
            .map_err(ModelError::InvalidConfig)
    }

    /// Number of float values the network stores: weights, biases and the batch-norm
    /// statistics (burn's `Module::num_params`), computed from the configuration alone.
    ///
    /// # Errors
    /// As [`DenseUNetConfig::validate`].
    pub fn param_count(&self) -> Result<u64, ModelError> {
        let plan = self.channel_plan()?;
        Ok(self.param_count_unchecked(&plan))
    }

    fn param_count_unchecked(&self, plan: &ChannelPlan) -> u64 {
        // Fields are bounded by `validate`, so u64 holds every product.
        let u = |n: usize| n as u64;
        let g = u(self.growth_rate);
        let conv3 = |cin: u64, cout: u64| cin * cout * 9 + cout;
        // Batch norm: gamma, beta, running mean and variance.
        let block = |cin: u64, n: usize| -> u64 {
            (0..u(n))
                .map(|i| {
                    let c = cin + i * g;
                    4 * c + conv3(c, g)
                })
                .sum()
        };
        let mut total = conv3(u(self.in_channels), u(self.init_filters));
        let mut cur = u(self.init_filters);
        for (i, &n) in self.down_blocks.iter().enumerate() {
            total += block(cur, n);
            let (skip, out) = (u(plan.skips[i]), u(plan.compressed[i]));
            total += 4 * skip + skip * out + out;
            cur = out;
        }
        total += block(cur, self.bottleneck_layers);
        let mut prev = u(plan.bottleneck);
        for (i, &n) in self.up_blocks.iter().enumerate() {
            total += conv3(prev, prev);
            total += block(u(plan.up_inputs[i]), n);
            prev = g * u(n);
        }
        total + u(plan.last) * u(self.out_channels)
    }

    /// Channel bookkeeping of the network (useful for documentation and tests).
    pub fn channel_plan(&self) -> Result<ChannelPlan, ModelError> {
        self.validate()?;
        Ok(self.channel_plan_unchecked())
    }

    fn channel_plan_unchecked(&self) -> ChannelPlan {
        let g = self.growth_rate;
        let mut cur = self.init_filters;
        let mut skips = Vec::new();
        let mut compressed = Vec::new();
        for &n in &self.down_blocks {
            cur += g * n;
            skips.push(cur);
            // Python `int(in * compression)`: truncation of the f64 product.
            cur = (cur as f64 * self.compression) as usize;
            compressed.push(cur);
        }
        let bottleneck_in = cur;
        let bottleneck = g * self.bottleneck_layers;
        let mut prev = bottleneck;
        let mut up_inputs = Vec::new();
        let last = self.up_blocks.len() - 1;
        let mut out = 0;
        for (i, &n) in self.up_blocks.iter().enumerate() {
            let skip = skips[skips.len() - 1 - i];
            let inp = skip + prev;
            up_inputs.push(inp);
            if i == last {
                out = inp + g * n;
            } else {
                prev = g * n;
            }
        }
        ChannelPlan {
            skips,
            compressed,
            bottleneck_in,
            bottleneck,
            up_inputs,
            last: out,
        }
    }

    /// Builds the network with freshly initialised weights.
    ///
    /// # Panics
    /// Panics if [`DenseUNetConfig::validate`] fails; use
    /// [`DenseUNetConfig::try_init`] to get the error instead.
    pub fn init(&self, device: &Device) -> DenseUNet {
        match self.try_init(device) {
            Ok(net) => net,
            Err(e) => panic!("{e}"),
        }
    }

    /// Builds the network, validating the configuration first.
    pub fn try_init(&self, device: &Device) -> Result<DenseUNet, ModelError> {
        let plan = self.channel_plan()?;
        let g = self.growth_rate;
        let p = self.dropout;
        let conv_init = conv3x3(self.in_channels, self.init_filters, device);
        let mut cur = self.init_filters;
        let mut down = Vec::new();
        let mut trans_down = Vec::new();
        for (i, &n) in self.down_blocks.iter().enumerate() {
            down.push(DenseBlock::new(cur, g, n, false, p, device));
            cur = plan.skips[i];
            trans_down.push(TransitionDown::new(cur, plan.compressed[i], p, device));
            cur = plan.compressed[i];
        }
        let bottleneck = DenseBlock::new(cur, g, self.bottleneck_layers, true, p, device);
        let mut prev = plan.bottleneck;
        let mut trans_up = Vec::new();
        let mut up = Vec::new();
        let last = self.up_blocks.len() - 1;
        for (i, &n) in self.up_blocks.iter().enumerate() {
            trans_up.push(TransitionUp::new(prev, device));
            up.push(DenseBlock::new(
                plan.up_inputs[i],
                g,
                n,
                i != last,
                p,
                device,
            ));
            prev = g * n;
        }
        let head = Conv2dConfig::new([plan.last, self.out_channels], [1, 1])
            .with_bias(false)
            .init(device);
        Ok(DenseUNet {
            conv_init,
            down,
            trans_down,
            bottleneck,
            trans_up,
            up,
            head,
            in_channels: self.in_channels,
            out_channels: self.out_channels,
            depth: self.depth(),
        })
    }
}

/// Channel counts of a [`DenseUNet`], see [`DenseUNetConfig::channel_plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPlan {
    /// Channels of the skip connections (down-block outputs), top to bottom.
    pub skips: Vec<usize>,
    /// Channels after each transition down.
    pub compressed: Vec<usize>,
    /// Channels entering the bottleneck block.
    pub bottleneck_in: usize,
    /// Channels of the bottleneck output (new features only).
    pub bottleneck: usize,
    /// Channels entering each up block (after concatenation with the skip).
    pub up_inputs: Vec<usize>,
    /// Channels of the last block, input of the 1×1 head.
    pub last: usize,
}

fn conv3x3(cin: usize, cout: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(true)
        .init(device)
}

/// BN → ReLU → Conv 3×3 (→ growth, bias) → dropout.
#[derive(Module, Debug)]
pub struct DenseLayer {
    norm: BatchNorm,
    conv: Conv2d,
    dropout: Dropout,
}

impl DenseLayer {
    fn new(cin: usize, growth: usize, dropout: f64, device: &Device) -> Self {
        Self {
            norm: BatchNormConfig::new(cin).init(device),
            conv: conv3x3(cin, growth, device),
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    /// Applies the layer.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = relu(self.norm.forward(x));
        self.dropout.forward(self.conv.forward(x))
    }
}

/// A dense block: every layer sees the concatenation of the block input and all
/// previous new features.
#[derive(Module, Debug)]
pub struct DenseBlock {
    layers: Vec<DenseLayer>,
    /// If true, only the new features are returned.
    new_only: bool,
}

impl DenseBlock {
    fn new(
        cin: usize,
        growth: usize,
        n: usize,
        new_only: bool,
        dropout: f64,
        device: &Device,
    ) -> Self {
        let layers = (0..n)
            .map(|i| DenseLayer::new(cin + i * growth, growth, dropout, device))
            .collect();
        Self { layers, new_only }
    }

    /// Applies the block; returns input ⧺ new features, or only the new
    /// features for bottleneck / up blocks.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut cur = x;
        let mut new = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let out = layer.forward(cur.clone());
            cur = Tensor::cat(vec![cur, out.clone()], 1);
            new.push(out);
        }
        if self.new_only {
            Tensor::cat(new, 1)
        } else {
            cur
        }
    }
}

/// Channel dropout (PyTorch `Dropout2d`): zeroes whole feature maps during
/// training (autodiff device and training flag enabled).
#[derive(Module, Debug)]
pub struct ChannelDropout {
    prob: f64,
    training: Param<Flag>,
}

impl ChannelDropout {
    fn new(prob: f64) -> Self {
        Self {
            prob,
            training: Param::from_bool(true),
        }
    }

    /// Applies channel dropout (identity in evaluation mode or if `prob == 0`).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if self.prob == 0.0 || !self.training.is_enabled() || !x.device().is_autodiff() {
            return x;
        }
        let [n, c, _, _] = x.dims();
        let keep = 1.0 - self.prob;
        let mask = Tensor::<4>::random([n, c, 1, 1], Distribution::Bernoulli(keep), &x.device());
        x * mask.div_scalar(keep)
    }
}

/// BN → ReLU → Conv 1×1 (compression, bias) → [channel dropout] → max-pool 2×2.
#[derive(Module, Debug)]
pub struct TransitionDown {
    norm: BatchNorm,
    conv: Conv2d,
    dropout: ChannelDropout,
    pool: MaxPool2d,
}

impl TransitionDown {
    fn new(cin: usize, cout: usize, dropout: f64, device: &Device) -> Self {
        // The reference hard-codes Dropout2d(0.2) whenever dropout is enabled.
        let p = if dropout != 0.0 { 0.2 } else { 0.0 };
        Self {
            norm: BatchNormConfig::new(cin).init(device),
            conv: Conv2dConfig::new([cin, cout], [1, 1])
                .with_bias(true)
                .init(device),
            dropout: ChannelDropout::new(p),
            pool: MaxPool2dConfig::new([2, 2]).init(),
        }
    }

    /// Applies the transition.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.conv.forward(relu(self.norm.forward(x)));
        self.pool.forward(self.dropout.forward(x))
    }
}

/// Nearest ×2 upsampling → Conv 3×3 (c → c, bias) → ReLU.
#[derive(Module, Debug)]
pub struct TransitionUp {
    conv: Conv2d,
}

impl TransitionUp {
    fn new(c: usize, device: &Device) -> Self {
        Self {
            conv: conv3x3(c, c, device),
        }
    }

    /// Upsamples `x`, center-crops it to the skip's size and returns `[skip, up]`.
    pub fn forward(&self, x: Tensor<4>, skip: Tensor<4>) -> Tensor<4> {
        let up = relu(self.conv.forward(upsample_nearest2x(x)));
        let up = center_crop(up, skip.dims()[2], skip.dims()[3]);
        Tensor::cat(vec![skip, up], 1)
    }
}

fn center_crop(x: Tensor<4>, h: usize, w: usize) -> Tensor<4> {
    let [_, _, xh, xw] = x.dims();
    if xh == h && xw == w {
        return x;
    }
    let (top, left) = ((xh - h) / 2, (xw - w) / 2);
    x.narrow(2, top, h).narrow(3, left, w)
}

/// The FC-DenseNet ("Tiramisu") CoMIR network; build it with
/// [`DenseUNetConfig::init`].
#[derive(Module, Debug)]
pub struct DenseUNet {
    conv_init: Conv2d,
    down: Vec<DenseBlock>,
    trans_down: Vec<TransitionDown>,
    bottleneck: DenseBlock,
    trans_up: Vec<TransitionUp>,
    up: Vec<DenseBlock>,
    head: Conv2d,
    in_channels: usize,
    out_channels: usize,
    depth: usize,
}

impl DenseUNet {
    /// Runs the network on `x: [N, C, H, W]`.
    ///
    /// # Panics
    /// Panics if the channel count differs from the configuration or if `H`,
    /// `W` are not multiples of [`DenseUNet::required_multiple`]; use
    /// [`DenseUNet::try_forward`] for a checked call.
    pub fn forward(&self, x: Tensor<4>) -> ModelOutput {
        match self.try_forward(x) {
            Ok(out) => out,
            Err(e) => panic!("{e}"),
        }
    }

    /// Checked version of [`DenseUNet::forward`].
    pub fn try_forward(&self, x: Tensor<4>) -> Result<ModelOutput, ModelError> {
        check_input_shape(x.dims(), self.in_channels, self.required_multiple())?;
        let mut x = self.conv_init.forward(x);
        let mut skips = Vec::with_capacity(self.down.len());
        for (block, td) in self.down.iter().zip(&self.trans_down) {
            x = block.forward(x);
            skips.push(x.clone());
            x = td.forward(x);
        }
        let bottleneck = self.bottleneck.forward(x);
        let mut x = bottleneck.clone();
        for (tu, block) in self.trans_up.iter().zip(&self.up) {
            let skip = skips.pop().expect("one skip per level");
            x = block.forward(tu.forward(x, skip));
        }
        Ok(ModelOutput {
            representation: self.head.forward(x),
            bottleneck,
        })
    }

    /// Input height and width must be multiples of this (`2^depth`).
    pub fn required_multiple(&self) -> usize {
        1usize << self.depth
    }

    /// Number of trainable parameters (batch-norm running statistics excluded),
    /// see [`crate::trainable_param_count`].
    pub fn num_trainable_params(&self) -> usize {
        crate::trainable_param_count(self)
    }

    /// Number of input channels.
    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    /// Number of representation channels `D`.
    pub fn out_channels(&self) -> usize {
        self.out_channels
    }
}

impl RepresentationNet for DenseUNet {
    fn forward(&self, x: Tensor<4>) -> ModelOutput {
        DenseUNet::forward(self, x)
    }
    fn required_multiple(&self) -> usize {
        DenseUNet::required_multiple(self)
    }
    fn out_channels(&self) -> usize {
        self.out_channels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parameter_count_of_a_configuration_is_that_of_its_network() {
        let device = Device::flex();
        for c in [
            DenseUNetConfig::tiny(),
            DenseUNetConfig::fast(3).with_out_channels(3),
            DenseUNetConfig::histology(1),
            DenseUNetConfig {
                compression: 0.5,
                down_blocks: vec![2, 3],
                up_blocks: vec![1, 4],
                ..DenseUNetConfig::tiny()
            },
        ] {
            let net = c.init(&device);
            assert_eq!(c.param_count().expect("valid"), net.num_params() as u64);
        }
    }

    #[test]
    fn oversized_configurations_are_refused_before_building() {
        let refused = |c: DenseUNetConfig, needle: &str| {
            let e = c.validate().expect_err("too large").to_string();
            assert!(e.contains(needle), "{e}");
        };
        let tiny = DenseUNetConfig::tiny;
        refused(
            DenseUNetConfig {
                init_filters: 1_000_000_000,
                growth_rate: 1_000_000_000,
                ..tiny()
            },
            "init_filters is 1000000000, more than the limit of 1024",
        );
        refused(
            DenseUNetConfig {
                in_channels: 1_000_000,
                ..tiny()
            },
            "in_channels is 1000000",
        );
        refused(
            DenseUNetConfig {
                down_blocks: vec![1; 60],
                up_blocks: vec![1; 60],
                ..tiny()
            },
            "at most 16 pooling levels are supported, got 60",
        );
        refused(
            DenseUNetConfig {
                down_blocks: vec![usize::MAX, 1],
                ..tiny()
            },
            "more than the limit of 128",
        );
        // Every field within its bound, together beyond the memory budget.
        refused(
            DenseUNetConfig {
                init_filters: 1024,
                growth_rate: 1024,
                down_blocks: vec![128; 16],
                up_blocks: vec![128; 16],
                ..tiny()
            },
            "COMIR_MAX_MODEL_MIB",
        );
    }
}
