//! A plain U-Net (Ronneberger et al. 2015), for comparison with the DenseUNet.
//!
//! Encoder stage `i` (width `base · 2^i`): two (Conv 3×3 → BN → ReLU), then
//! max-pool 2×2. The bottleneck stage (width `base · 2^depth`) is another
//! double convolution; its output is [`ModelOutput::bottleneck`]. Decoder stage:
//! nearest ×2 upsampling → Conv 3×3 halving the width → ReLU, concatenation
//! `[skip, up]`, double convolution. Head: Conv 1×1 → `D` without bias, no
//! activation (as for the DenseUNet). Padding keeps sizes ("same"), so the
//! input must be divisible by `2^depth`.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::{check_input_shape, upsample_nearest2x, ModelError, ModelOutput, RepresentationNet};

/// Configuration of a [`UNet`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UNetConfig {
    /// Number of input image channels.
    pub in_channels: usize,
    /// Number of representation channels `D`.
    pub out_channels: usize,
    /// Width (channels) of the first stage; doubled at every level.
    pub base_width: usize,
    /// Number of pooling levels.
    pub depth: usize,
}

impl Default for UNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            out_channels: 1,
            base_width: 16,
            depth: 4,
        }
    }
}

impl UNetConfig {
    /// Input height and width must be multiples of this (`2^depth`).
    pub fn required_multiple(&self) -> usize {
        1usize << self.depth
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: &str| Err(ModelError::InvalidConfig(m.to_string()));
        if self.in_channels == 0 || self.out_channels == 0 || self.base_width == 0 {
            return bad("in_channels, out_channels and base_width must be positive");
        }
        if self.depth == 0 || self.depth > 12 {
            return bad("depth must be in 1..=12");
        }
        Ok(())
    }

    /// Builds the network.
    ///
    /// # Panics
    /// Panics if the configuration is invalid ([`UNetConfig::try_init`] returns the error).
    pub fn init(&self, device: &Device) -> UNet {
        match self.try_init(device) {
            Ok(net) => net,
            Err(e) => panic!("{e}"),
        }
    }

    /// Builds the network, validating the configuration first.
    pub fn try_init(&self, device: &Device) -> Result<UNet, ModelError> {
        self.validate()?;
        let w = |i: usize| self.base_width << i;
        let mut enc = Vec::new();
        let mut cin = self.in_channels;
        for i in 0..self.depth {
            enc.push(DoubleConv::new(cin, w(i), device));
            cin = w(i);
        }
        let bottleneck = DoubleConv::new(cin, w(self.depth), device);
        let mut up_convs = Vec::new();
        let mut dec = Vec::new();
        for i in (0..self.depth).rev() {
            up_convs.push(conv3x3(w(i + 1), w(i), true, device));
            dec.push(DoubleConv::new(2 * w(i), w(i), device));
        }
        Ok(UNet {
            enc,
            bottleneck,
            up_convs,
            dec,
            pool: MaxPool2dConfig::new([2, 2]).init(),
            head: Conv2dConfig::new([w(0), self.out_channels], [1, 1])
                .with_bias(false)
                .init(device),
            in_channels: self.in_channels,
            out_channels: self.out_channels,
            depth: self.depth,
        })
    }
}

fn conv3x3(cin: usize, cout: usize, bias: bool, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(bias)
        .init(device)
}

/// Two (Conv 3×3 → BN → ReLU).
#[derive(Module, Debug)]
pub struct DoubleConv {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
}

impl DoubleConv {
    fn new(cin: usize, cout: usize, device: &Device) -> Self {
        Self {
            // Bias is redundant before batch normalisation.
            conv1: conv3x3(cin, cout, false, device),
            bn1: BatchNormConfig::new(cout).init(device),
            conv2: conv3x3(cout, cout, false, device),
            bn2: BatchNormConfig::new(cout).init(device),
        }
    }

    /// Applies the two convolutions.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = relu(self.bn1.forward(self.conv1.forward(x)));
        relu(self.bn2.forward(self.conv2.forward(x)))
    }
}

/// Classic U-Net; build it with [`UNetConfig::init`].
#[derive(Module, Debug)]
pub struct UNet {
    enc: Vec<DoubleConv>,
    bottleneck: DoubleConv,
    up_convs: Vec<Conv2d>,
    dec: Vec<DoubleConv>,
    pool: MaxPool2d,
    head: Conv2d,
    in_channels: usize,
    out_channels: usize,
    depth: usize,
}

impl UNet {
    /// Runs the network on `x: [N, C, H, W]`.
    ///
    /// # Panics
    /// Panics on a wrong channel count or a size that is not a multiple of
    /// [`UNet::required_multiple`] (see [`UNet::try_forward`]).
    pub fn forward(&self, x: Tensor<4>) -> ModelOutput {
        match self.try_forward(x) {
            Ok(out) => out,
            Err(e) => panic!("{e}"),
        }
    }

    /// Checked version of [`UNet::forward`].
    pub fn try_forward(&self, x: Tensor<4>) -> Result<ModelOutput, ModelError> {
        check_input_shape(x.dims(), self.in_channels, self.required_multiple())?;
        let mut x = x;
        let mut skips = Vec::with_capacity(self.depth);
        for stage in &self.enc {
            x = stage.forward(x);
            skips.push(x.clone());
            x = self.pool.forward(x);
        }
        let bottleneck = self.bottleneck.forward(x);
        let mut x = bottleneck.clone();
        for (up, dec) in self.up_convs.iter().zip(&self.dec) {
            let skip = skips.pop().expect("one skip per level");
            let u = relu(up.forward(upsample_nearest2x(x)));
            x = dec.forward(Tensor::cat(vec![skip, u], 1));
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
}

impl UNet {
    /// Number of trainable parameters (batch-norm running statistics excluded),
    /// see [`crate::trainable_param_count`].
    pub fn num_trainable_params(&self) -> usize {
        crate::trainable_param_count(self)
    }
}

impl RepresentationNet for UNet {
    fn forward(&self, x: Tensor<4>) -> ModelOutput {
        UNet::forward(self, x)
    }
    fn required_multiple(&self) -> usize {
        UNet::required_multiple(self)
    }
    fn out_channels(&self) -> usize {
        self.out_channels
    }
}
