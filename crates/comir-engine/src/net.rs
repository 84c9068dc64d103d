//! Parameter layout of [`FastDenseUNet`]: every tensor of the burn `DenseUNet`, in burn's
//! visiting order and under burn's parameter path, stored in two flat `Vec<f32>` buffers
//! (trainable parameters, batch-norm running statistics).

use comir_model::densenet::ChannelPlan;
use comir_model::DenseUNetConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use comir_cpu::Isa;

use crate::Error;

/// One tensor of the network: its burn parameter path, shape and place in a flat buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// burn's parameter path, e.g. `down.0.layers.1.conv.weight`.
    pub name: String,
    /// Shape (conv weights `[out, in, k, k]`, everything else `[c]`).
    pub shape: Vec<usize>,
    /// Offset of the first element in the flat buffer.
    pub offset: usize,
}

impl ParamSpec {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True for a tensor without elements (never the case for a valid network).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element range in the flat buffer.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// A convolution: offsets of its weight (`[cout][cin][k][k]`) and bias in the parameter buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvP {
    pub w: usize,
    pub b: Option<usize>,
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
}

/// A batch norm: `gamma`/`beta` offsets in the parameter buffer, running mean/var offsets
/// in the running-statistics buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BnP {
    pub gamma: usize,
    pub beta: usize,
    pub mean: usize,
    pub var: usize,
    pub c: usize,
}

/// BN → ReLU → conv (a dense layer or a transition down).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BnConv {
    pub bn: BnP,
    pub conv: ConvP,
}

/// The FC-DenseNet of `comir_model::DenseUNet` with its tensors in plain buffers; see the
/// crate documentation.
#[derive(Debug, Clone)]
pub struct FastDenseUNet {
    pub(crate) config: DenseUNetConfig,
    pub(crate) plan: ChannelPlan,
    pub(crate) params: Vec<f32>,
    pub(crate) specs: Vec<ParamSpec>,
    pub(crate) running: Vec<f32>,
    pub(crate) running_specs: Vec<ParamSpec>,
    pub(crate) conv_init: ConvP,
    pub(crate) down: Vec<Vec<BnConv>>,
    pub(crate) trans_down: Vec<BnConv>,
    pub(crate) bottleneck: Vec<BnConv>,
    pub(crate) trans_up: Vec<ConvP>,
    pub(crate) up: Vec<Vec<BnConv>>,
    pub(crate) head: ConvP,
    /// Batch-norm momentum (burn's default, 0.1).
    pub(crate) momentum: f32,
    /// Batch-norm epsilon (burn's default, 1e-5).
    pub(crate) eps: f32,
    /// The instruction set of the convolution kernels ([`comir_cpu::active`] unless set).
    pub(crate) isa: Isa,
}

/// Allocates tensors in burn's visiting order.
struct Builder {
    params: Vec<ParamSpec>,
    running: Vec<ParamSpec>,
    np: usize,
    nr: usize,
}

impl Builder {
    fn param(&mut self, name: String, shape: Vec<usize>) -> usize {
        let offset = self.np;
        self.np += shape.iter().product::<usize>();
        self.params.push(ParamSpec {
            name,
            shape,
            offset,
        });
        offset
    }

    fn run(&mut self, name: String, c: usize) -> usize {
        let offset = self.nr;
        self.nr += c;
        self.running.push(ParamSpec {
            name,
            shape: vec![c],
            offset,
        });
        offset
    }

    fn conv(&mut self, prefix: &str, cin: usize, cout: usize, k: usize, bias: bool) -> ConvP {
        let w = self.param(format!("{prefix}.weight"), vec![cout, cin, k, k]);
        let b = bias.then(|| self.param(format!("{prefix}.bias"), vec![cout]));
        ConvP { w, b, cin, cout, k }
    }

    fn bn(&mut self, prefix: &str, c: usize) -> BnP {
        let gamma = self.param(format!("{prefix}.gamma"), vec![c]);
        let beta = self.param(format!("{prefix}.beta"), vec![c]);
        let mean = self.run(format!("{prefix}.running_mean"), c);
        let var = self.run(format!("{prefix}.running_var"), c);
        BnP {
            gamma,
            beta,
            mean,
            var,
            c,
        }
    }

    fn block(&mut self, prefix: &str, cin: usize, g: usize, n: usize) -> Vec<BnConv> {
        (0..n)
            .map(|l| {
                let c = cin + l * g;
                let bn = self.bn(&format!("{prefix}.layers.{l}.norm"), c);
                let conv = self.conv(&format!("{prefix}.layers.{l}.conv"), c, g, 3, true);
                BnConv { bn, conv }
            })
            .collect()
    }
}

impl FastDenseUNet {
    /// Builds the network with burn's default initialisation *distribution* (conv weights and
    /// biases uniform in `±1/√fan_in`, BN `γ = 1`, `β = 0`, running mean 0, running var 1),
    /// drawn from a ChaCha8 stream seeded with `seed` (the values differ from burn's; use
    /// [`FastDenseUNet::from_burn`] for identical weights).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration or one with dropout (not supported).
    pub fn new(config: &DenseUNetConfig, seed: u64) -> Result<Self, Error> {
        let mut net = Self::zeros(config)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for spec in &net.specs {
            let name = spec.name.as_str();
            let range = spec.range();
            if name.ends_with(".gamma") {
                net.params[range].fill(1.0);
            } else if name.ends_with(".beta") {
                net.params[range].fill(0.0);
            } else {
                // Conv weight or bias: fan_in is the weight's in·k·k of the same conv.
                let fan_in = if spec.shape.len() == 4 {
                    spec.shape[1..].iter().product::<usize>()
                } else {
                    let wname = name.trim_end_matches(".bias").to_string() + ".weight";
                    net.specs
                        .iter()
                        .find(|s| s.name == wname)
                        .map_or(1, |s| s.shape[1..].iter().product::<usize>())
                };
                let a = 1.0 / (fan_in as f32).sqrt();
                for v in &mut net.params[range] {
                    *v = rng.gen_range(-a..a);
                }
            }
        }
        Ok(net)
    }

    /// Builds the layout with every parameter zero and the running statistics at their
    /// initial values (mean 0, var 1).
    pub(crate) fn zeros(config: &DenseUNetConfig) -> Result<Self, Error> {
        let plan = config.channel_plan()?;
        if config.dropout != 0.0 {
            return Err(Error::Config(
                "dropout is not supported by the engine (the presets use 0)".into(),
            ));
        }
        let g = config.growth_rate;
        let mut b = Builder {
            params: Vec::new(),
            running: Vec::new(),
            np: 0,
            nr: 0,
        };
        let conv_init = b.conv(
            "conv_init",
            config.in_channels,
            config.init_filters,
            3,
            true,
        );
        let mut cur = config.init_filters;
        let mut down = Vec::new();
        for (i, &n) in config.down_blocks.iter().enumerate() {
            down.push(b.block(&format!("down.{i}"), cur, g, n));
            cur = plan.compressed[i];
        }
        let mut trans_down = Vec::new();
        for i in 0..config.depth() {
            let bn = b.bn(&format!("trans_down.{i}.norm"), plan.skips[i]);
            let conv = b.conv(
                &format!("trans_down.{i}.conv"),
                plan.skips[i],
                plan.compressed[i],
                1,
                true,
            );
            trans_down.push(BnConv { bn, conv });
        }
        let bottleneck = b.block(
            "bottleneck",
            plan.bottleneck_in,
            g,
            config.bottleneck_layers,
        );
        let mut trans_up = Vec::new();
        let mut prev = plan.bottleneck;
        for (i, &n) in config.up_blocks.iter().enumerate() {
            trans_up.push(b.conv(&format!("trans_up.{i}.conv"), prev, prev, 3, true));
            prev = g * n;
        }
        let mut up = Vec::new();
        for (i, &n) in config.up_blocks.iter().enumerate() {
            up.push(b.block(&format!("up.{i}"), plan.up_inputs[i], g, n));
        }
        let head = b.conv("head", plan.last, config.out_channels, 1, false);
        let mut running = vec![0.0; b.nr];
        for spec in &b.running {
            if spec.name.ends_with("running_var") {
                running[spec.range()].fill(1.0);
            }
        }
        Ok(Self {
            config: config.clone(),
            plan,
            params: vec![0.0; b.np],
            specs: b.params,
            running,
            running_specs: b.running,
            conv_init,
            down,
            trans_down,
            bottleneck,
            trans_up,
            up,
            head,
            momentum: 0.1,
            eps: 1e-5,
            isa: comir_cpu::active(),
        })
    }

    /// The instruction set whose kernels the network runs (the process's
    /// [`comir_cpu::active`] unless [`FastDenseUNet::set_isa`] chose another).
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Runs the network on the kernels of `isa` from now on: results agree with every other
    /// instruction set within f32 rounding (sums run in another order), and are the same bit
    /// for bit for one instruction set and thread count.
    ///
    /// # Errors
    /// [`Error::Config`] when this CPU does not run `isa`.
    pub fn set_isa(&mut self, isa: Isa) -> Result<(), Error> {
        if !isa.supported() {
            return Err(Error::Config(format!("this CPU does not run {isa}")));
        }
        self.isa = isa;
        Ok(())
    }

    /// The configuration the network was built from.
    pub fn config(&self) -> &DenseUNetConfig {
        &self.config
    }

    /// The trainable parameters, all tensors back to back (layout: [`FastDenseUNet::param_specs`]).
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// Mutable access to the trainable parameters.
    pub fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }

    /// Layout of [`FastDenseUNet::params`] (burn's parameter paths, in burn's order).
    pub fn param_specs(&self) -> &[ParamSpec] {
        &self.specs
    }

    /// The batch-norm running statistics (layout: [`FastDenseUNet::running_specs`]).
    pub fn running_stats(&self) -> &[f32] {
        &self.running
    }

    /// Layout of [`FastDenseUNet::running_stats`].
    pub fn running_specs(&self) -> &[ParamSpec] {
        &self.running_specs
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> usize {
        self.params.len()
    }

    /// Input height and width must be multiples of this (`2^depth`).
    pub fn required_multiple(&self) -> usize {
        self.config.required_multiple()
    }

    /// Number of representation channels `D`.
    pub fn out_channels(&self) -> usize {
        self.config.out_channels
    }

    /// Number of bottleneck channels.
    pub fn bottleneck_channels(&self) -> usize {
        self.plan.bottleneck
    }

    pub(crate) fn check_input(
        &self,
        len: usize,
        n: usize,
        h: usize,
        w: usize,
    ) -> Result<(), Error> {
        comir_model::check_input_shape(
            [n, self.config.in_channels, h, w],
            self.config.in_channels,
            self.required_multiple(),
        )?;
        if n == 0 {
            return Err(Error::Shape("empty batch".into()));
        }
        let want = n * self.config.in_channels * h * w;
        if len != want {
            return Err(Error::Shape(format!(
                "input has {len} values, expected {want} for [{n}, {}, {h}, {w}]",
                self.config.in_channels
            )));
        }
        Ok(())
    }
}
