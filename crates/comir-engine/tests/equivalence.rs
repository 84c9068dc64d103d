//! The engine against burn: forward (training and inference mode), running statistics,
//! parameter gradients, optimiser steps, conversion; plus finite differences and clipping.
//! Forward, gradients and optimiser steps are checked on the kernels of every instruction set
//! this CPU runs (`comir_cpu::Isa::available`).

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, SgdConfig};
use burn::tensor::Gradients;
use burn::tensor::{Device, Tensor, TensorData};
use comir_cpu::Isa;
use comir_engine::optim::{clip_per_param_norm, clip_total_norm, Adam, Sgd};
use comir_engine::{FastDenseUNet, Window, Workspace};
use comir_model::{DenseUNet, DenseUNetConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Tiny bands so that the tests cross band boundaries (3 rows of 16 at the top level, so
/// the last band is shorter; 5 + 3 rows one level down).
fn small_bands() {
    comir_engine::set_band_bytes(6 * 1024);
}

/// Two levels, odd channel counts, compression < 1, D = 2.
fn tiny() -> DenseUNetConfig {
    DenseUNetConfig {
        in_channels: 2,
        out_channels: 2,
        init_filters: 5,
        down_blocks: vec![2, 1],
        up_blocks: vec![1, 2],
        bottleneck_layers: 2,
        growth_rate: 3,
        compression: 0.75,
        dropout: 0.0,
    }
}

fn rand_vec(rng: &mut ChaCha8Rng, len: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..len).map(|_| rng.gen_range(lo..hi)).collect()
}

/// A burn network (autodiff device) and the engine, both with random weights, random BN
/// affine parameters and random running statistics.
fn pair(seed: u64) -> (DenseUNet, FastDenseUNet, Device) {
    small_bands();
    let device = Device::flex().autodiff();
    device.seed(seed);
    let cfg = tiny();
    let net = cfg.init(&device);
    let mut engine = FastDenseUNet::from_burn(&net, &cfg).expect("from_burn");
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 100);
    let specs = engine.param_specs().to_vec();
    for spec in &specs {
        let r = spec.range();
        if spec.name.ends_with(".gamma") {
            let v = rand_vec(&mut rng, r.len(), 0.5, 1.5);
            engine.params_mut()[r].copy_from_slice(&v);
        } else if spec.name.ends_with(".beta") {
            let v = rand_vec(&mut rng, r.len(), -0.3, 0.3);
            engine.params_mut()[r].copy_from_slice(&v);
        }
    }
    // Running statistics: reach them through a burn round trip of modified values.
    let mut burn_net = engine.write_to_burn(net).expect("to burn");
    let mut with_stats = FastDenseUNet::from_burn(&burn_net, &cfg).expect("again");
    let running_specs = with_stats.running_specs().to_vec();
    let mut running = with_stats.running_stats().to_vec();
    for spec in &running_specs {
        let (lo, hi) = if spec.name.ends_with("running_var") {
            (0.5, 2.0)
        } else {
            (-0.5, 0.5)
        };
        let v = rand_vec(&mut rng, spec.len(), lo, hi);
        running[spec.range()].copy_from_slice(&v);
    }
    set_running(&mut with_stats, &running);
    burn_net = with_stats.write_to_burn(burn_net).expect("to burn");
    (burn_net, with_stats, device)
}

/// Test helper: the engine exposes running statistics read-only, so go through a burn
/// network: write them into a copy via the parameter path map.
fn set_running(engine: &mut FastDenseUNet, running: &[f32]) {
    let device = Device::flex();
    let net = engine.to_burn(&device).expect("to burn");
    let mut collect = Collect::default();
    net.visit(&mut collect);
    let mut map = collect.out;
    for spec in engine.running_specs() {
        map.insert(spec.name.clone(), running[spec.range()].to_vec());
    }
    let net = write_map(net, &map);
    *engine = FastDenseUNet::from_burn(&net, engine.config()).expect("from burn");
}

#[derive(Default)]
struct Collect {
    path: Vec<String>,
    out: HashMap<String, Vec<f32>>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.into());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.out.insert(self.path.join("."), to_vec(param.val()));
    }
}

struct WriteMap<'a> {
    path: Vec<String>,
    map: &'a HashMap<String, Vec<f32>>,
}

impl burn::module::ModuleMapper for WriteMap<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.into());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let v = self.map[&self.path.join(".")].clone();
        param.map(|t| {
            let shape = t.dims().to_vec();
            let rg = t.is_require_grad();
            Tensor::from_data(TensorData::new(v, shape), &t.device()).set_require_grad(rg)
        })
    }
}

fn write_map(net: DenseUNet, map: &HashMap<String, Vec<f32>>) -> DenseUNet {
    net.map(&mut WriteMap {
        path: Vec::new(),
        map,
    })
}

/// Gradients of every parameter of a burn module by path.
struct GradCollect<'a> {
    path: Vec<String>,
    grads: &'a Gradients,
    out: HashMap<String, Vec<f32>>,
}

impl ModuleVisitor for GradCollect<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.into());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = param.val().grad(self.grads) {
            self.out.insert(self.path.join("."), to_vec(g));
        }
    }
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().expect("f32 data")
}

fn tensor4(v: &[f32], dims: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(v.to_vec(), dims), device)
}

/// `max |a − b| ≤ tol · max(1, max |b|)`.
fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let err = a
        .iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        err <= tol * scale,
        "{what}: max error {err} (scale {scale}, tol {tol})"
    );
}

const N: usize = 3;
const S: usize = 16;

fn input(seed: u64, cfg: &DenseUNetConfig) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rand_vec(&mut rng, N * cfg.in_channels * S * S, -1.0, 1.0)
}

#[test]
fn conversion_round_trips_exactly() {
    let (net, engine, device) = pair(1);
    let back = engine.to_burn(&device).expect("to burn");
    let again = FastDenseUNet::from_burn(&back, engine.config()).expect("from burn");
    assert_eq!(engine.params(), again.params());
    assert_eq!(engine.running_stats(), again.running_stats());
    let direct = FastDenseUNet::from_burn(&net, engine.config()).expect("from burn");
    assert_eq!(engine.params(), direct.params());
    assert_eq!(engine.running_stats(), direct.running_stats());
    assert_eq!(engine.num_params(), net.num_trainable_params());
    // Every burn tensor has its counterpart.
    let mut collect = Collect::default();
    net.visit(&mut collect);
    assert_eq!(
        collect.out.len(),
        engine.param_specs().len() + engine.running_specs().len()
    );
}

#[test]
fn histology_layout_matches_burn() {
    let cfg = DenseUNetConfig::histology(1);
    let device = Device::flex();
    let net = cfg.init(&device);
    let engine = FastDenseUNet::from_burn(&net, &cfg).expect("from burn");
    assert_eq!(engine.num_params(), 1_053_244);
    let back = engine.to_burn(&device).expect("to burn");
    let again = FastDenseUNet::from_burn(&back, &cfg).expect("from burn");
    assert_eq!(engine.params(), again.params());
}

#[test]
fn dropout_and_bad_inputs_are_refused() {
    let mut cfg = tiny();
    cfg.dropout = 0.2;
    assert!(FastDenseUNet::new(&cfg, 0).is_err());
    let mut engine = FastDenseUNet::new(&tiny(), 0).expect("engine");
    let mut ws = Workspace::new();
    // 15 is not a multiple of 4.
    assert!(engine
        .forward_train(&vec![0.0; 2 * 15 * 15], 1, 15, 15, &mut ws)
        .is_err());
    assert!(engine.forward_train(&[0.0; 5], 1, 16, 16, &mut ws).is_err());
    let mut grads = Vec::new();
    assert!(engine
        .backward(&mut ws, &[0.0; 4], None, &mut grads)
        .is_err());
}

#[test]
fn training_forward_and_running_stats_match_burn() {
    let (net, engine, device) = pair(2);
    let cfg = tiny();
    let x = input(3, &cfg);
    let out = net.forward(tensor4(&x, [N, cfg.in_channels, S, S], &device));
    let after = FastDenseUNet::from_burn(&net, &cfg).expect("from burn");
    let (repr, bott) = (to_vec(out.representation), to_vec(out.bottleneck));
    for isa in Isa::available() {
        let mut engine = engine.clone();
        engine.set_isa(isa).expect("available");
        let mut ws = Workspace::new();
        engine.forward_train(&x, N, S, S, &mut ws).expect("forward");
        assert_close(
            &format!("{isa}: representation"),
            ws.representation(),
            &repr,
            1e-4,
        );
        assert_close(&format!("{isa}: bottleneck"), &ws.bottleneck(), &bott, 1e-4);
        assert_close(
            &format!("{isa}: running stats"),
            engine.running_stats(),
            after.running_stats(),
            1e-5,
        );
    }
}

/// The engine's inference output against burn's (inference mode) on the same input, on every
/// instruction set.
fn assert_inference_matches(
    engine: &FastDenseUNet,
    x: &[f32],
    (n, h, w): (usize, usize, usize),
    burn: comir_model::ModelOutput,
) {
    let (repr, bott) = (to_vec(burn.representation), to_vec(burn.bottleneck));
    for isa in Isa::available() {
        let mut engine = engine.clone();
        engine.set_isa(isa).expect("available");
        let fast = engine.forward_inference(x, n, h, w).expect("forward");
        let what = |part: &str| format!("{isa}: {part}");
        assert_close(&what("representation"), &fast.representation, &repr, 1e-4);
        assert_close(&what("bottleneck"), &fast.bottleneck, &bott, 1e-4);
    }
}

#[test]
fn inference_forward_matches_burn() {
    let (net, engine, _) = pair(4);
    let cfg = tiny();
    let x = input(5, &cfg);
    let device = Device::flex();
    let valid = net.valid();
    let out = valid.forward(tensor4(&x, [N, cfg.in_channels, S, S], &device));
    assert_inference_matches(&engine, &x, (N, S, S), out);
    // Inference leaves the running statistics alone.
    engine.forward_inference(&x, N, S, S).expect("forward");
    let before = FastDenseUNet::from_burn(&net, &cfg).expect("from burn");
    assert_eq!(engine.running_stats(), before.running_stats());
}

/// The representation of a window is that part of the whole one, bit for bit, on every
/// instruction set: windows inside, at the corners and edges, one row, odd bounds, the whole
/// image; a head with one output (the few-outputs path) and with five (the general one).
#[test]
fn inference_of_a_window_is_that_part_of_the_whole() {
    small_bands();
    let (h, w) = (44, 40);
    for (seed, out_channels) in [(21, 2), (22, 5)] {
        let device = Device::flex();
        device.seed(seed);
        let cfg = tiny().with_out_channels(out_channels);
        let net = cfg.init(&device);
        let base = FastDenseUNet::from_burn(&net, &cfg).expect("from_burn");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = rand_vec(&mut rng, cfg.in_channels * h * w, -1.0, 1.0);
        for isa in Isa::available() {
            let mut engine = base.clone();
            engine.set_isa(isa).expect("available");
            let whole = engine
                .forward_inference(&x, 1, h, w)
                .expect("forward")
                .representation;
            let mut ws = Workspace::new();
            for (y0, y1, x0, x1) in [
                (8, 36, 8, 32),
                (0, 5, 37, 40),
                (39, 44, 0, 3),
                (13, 14, 0, 40),
                (3, 30, 1, 39),
                (0, 44, 0, 40),
            ] {
                let window = Window { y0, y1, x0, x1 };
                let got = engine
                    .forward_inference_window(&mut ws, &x, h, w, window)
                    .expect("window");
                let mut want = Vec::new();
                for plane in whole.chunks_exact(h * w) {
                    for y in y0..y1 {
                        want.extend_from_slice(&plane[y * w + x0..y * w + x1]);
                    }
                }
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{isa}, D = {out_channels}, {window:?}"
                );
            }
            // An empty window, and one a row past the image.
            for (y0, y1) in [(5, 5), (0, 45)] {
                let bad = Window {
                    y0,
                    y1,
                    x0: 0,
                    x1: 4,
                };
                let got = engine.forward_inference_window(&mut ws, &x, h, w, bad);
                assert!(got.is_err(), "{bad:?}");
            }
        }
    }
}

/// Wide enough that inference pools its transitions down strip by strip (strips of 4 pooled
/// rows at the top level, 8 channels × 1024 columns, the last strip shorter).
#[test]
fn inference_on_a_wide_image_matches_burn() {
    let (net, engine, _) = pair(12);
    let cfg = tiny();
    let (h, w) = (36, 1024);
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let x = rand_vec(&mut rng, cfg.in_channels * h * w, 0.0, 1.0);
    let device = Device::flex();
    let out = net
        .valid()
        .forward(tensor4(&x, [1, cfg.in_channels, h, w], &device));
    assert_inference_matches(&engine, &x, (1, h, w), out);
}

/// Inference grows each level's up block inside its down block's buffer and hands the buffers
/// back afterwards: a workspace reused across tile sizes, and then for training, gives what a
/// fresh one gives.
#[test]
fn a_workspace_reused_across_sizes_and_modes_gives_fresh_results() {
    let (_, engine, _) = pair(6);
    let cfg = tiny();
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let big = rand_vec(&mut rng, cfg.in_channels * 2 * S * 2 * S, 0.0, 1.0);
    let x = input(9, &cfg);
    let one = &x[..cfg.in_channels * S * S];
    let mut ws = Workspace::new();
    engine
        .forward_inference_in(&mut ws, &big, 1, 2 * S, 2 * S)
        .expect("big tile");
    let reused = engine
        .forward_inference_in(&mut ws, one, 1, S, S)
        .expect("small tile");
    let fresh = engine.forward_inference(one, 1, S, S).expect("fresh");
    assert_eq!(reused, fresh, "inference in a reused workspace");
    let (mut a, mut b) = (engine.clone(), engine.clone());
    a.forward_train(&x, N, S, S, &mut ws)
        .expect("train, reused");
    let mut ws_fresh = Workspace::new();
    b.forward_train(&x, N, S, S, &mut ws_fresh)
        .expect("train, fresh");
    assert_eq!(ws.representation(), ws_fresh.representation());
    assert_eq!(ws.bottleneck(), ws_fresh.bottleneck());
}

/// Loss `Σ repr·R + Σ bottleneck·Rb` in burn; returns the burn gradients by path and the
/// engine's gradients.
fn gradients(seed: u64, isa: Isa) -> (HashMap<String, Vec<f32>>, Vec<f32>, FastDenseUNet) {
    let (net, mut engine, device) = pair(seed);
    engine.set_isa(isa).expect("available");
    let cfg = tiny();
    let x = input(seed + 1, &cfg);
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 2);
    let d = cfg.out_channels;
    let r = rand_vec(&mut rng, N * d * S * S, -1.0, 1.0);
    let cb = engine.bottleneck_channels();
    let rb = rand_vec(&mut rng, N * cb * 4 * 4, -1.0, 1.0);
    let out = net.forward(tensor4(&x, [N, cfg.in_channels, S, S], &device));
    let loss = (out.representation * tensor4(&r, [N, d, S, S], &device)).sum()
        + (out.bottleneck * tensor4(&rb, [N, cb, 4, 4], &device)).sum();
    let grads = loss.backward();
    let mut collect = GradCollect {
        path: Vec::new(),
        grads: &grads,
        out: HashMap::new(),
    };
    net.visit(&mut collect);
    let mut ws = Workspace::new();
    engine.forward_train(&x, N, S, S, &mut ws).expect("forward");
    let mut g = Vec::new();
    engine
        .backward(&mut ws, &r, Some(&rb), &mut g)
        .expect("backward");
    (collect.out, g, engine)
}

#[test]
fn parameter_gradients_match_burn_autodiff() {
    for isa in Isa::available() {
        let (burn_grads, g, engine) = gradients(6, isa);
        assert_eq!(burn_grads.len(), engine.param_specs().len());
        for spec in engine.param_specs() {
            let bg = &burn_grads[&spec.name];
            assert_close(&format!("{isa}: {}", spec.name), &g[spec.range()], bg, 2e-4);
        }
    }
}

#[test]
fn gradients_match_finite_differences() {
    small_bands();
    let cfg = tiny();
    let mut engine = FastDenseUNet::new(&cfg, 7).expect("engine");
    let x = input(8, &cfg);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let r = rand_vec(&mut rng, N * cfg.out_channels * S * S, -1.0, 1.0);
    let mut ws = Workspace::new();
    let mut loss = |e: &mut FastDenseUNet| -> f64 {
        e.forward_train(&x, N, S, S, &mut ws).expect("forward");
        ws.representation()
            .iter()
            .zip(&r)
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum()
    };
    let mut ws2 = Workspace::new();
    engine
        .forward_train(&x, N, S, S, &mut ws2)
        .expect("forward");
    let mut g = Vec::new();
    engine
        .backward(&mut ws2, &r, None, &mut g)
        .expect("backward");
    let specs = engine.param_specs().to_vec();
    let mut checked = 0;
    // Max pooling and the many ReLUs make the loss rough in the early layers (finite
    // differences there do not converge cleanly in f32); the head and the last block are
    // smooth enough for a 1e-2 step. The full comparison is against burn's autodiff above.
    for spec in specs.iter().filter(|s| {
        // β and γ move ReLU kinks directly; conv weights and biases are smoother.
        (s.name.starts_with("up.1.") || s.name.starts_with("head")) && !s.name.contains(".norm.")
    }) {
        // The largest gradient entry of the tensor: best signal to noise in f32.
        let (idx, &gv) = g[spec.range()]
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .expect("non-empty");
        if gv.abs() < 1e-2 {
            continue;
        }
        let i = spec.offset + idx;
        let h = 1e-2f32;
        let orig = engine.params()[i];
        engine.params_mut()[i] = orig + h;
        let lp = loss(&mut engine);
        engine.params_mut()[i] = orig - h;
        let lm = loss(&mut engine);
        engine.params_mut()[i] = orig;
        let fd = ((lp - lm) / (2.0 * f64::from(h))) as f32;
        let err = (fd - gv).abs() / gv.abs().max(1e-1);
        assert!(err < 2e-2, "{}[{idx}]: fd {fd}, backward {gv}", spec.name);
        checked += 1;
    }
    assert!(checked >= 3, "too few gradients checked: {checked}");
}

/// Weights of a burn network by path, flattened in the engine's order.
fn burn_params(net: &DenseUNet, engine: &FastDenseUNet) -> Vec<f32> {
    let e = FastDenseUNet::from_burn(net, engine.config()).expect("from burn");
    e.params().to_vec()
}

/// Two optimiser steps of burn's optimiser and the engine's on the same gradients: the engine's,
/// handed to burn parameter by parameter. Only the optimisers' arithmetic differs then; burn's
/// own backward is not exactly reproducible from run to run (its last bits vary on a busy
/// machine), and the gradients themselves are compared with it by the tests above.
fn optimiser_case(
    isa: Isa,
    burn_opt: &mut burn::optim::ModuleOptimizer,
    mut step: impl FnMut(&mut FastDenseUNet, &mut Vec<f32>),
    seed: u64,
    tol: f32,
) {
    let (mut net, mut engine, _) = pair(seed);
    engine.set_isa(isa).expect("available");
    let cfg = tiny();
    let x = input(seed + 1, &cfg);
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 2);
    let d = cfg.out_channels;
    let r = rand_vec(&mut rng, N * d * S * S, -1.0, 1.0);
    let mut ws = Workspace::new();
    for _ in 0..2 {
        engine.forward_train(&x, N, S, S, &mut ws).expect("forward");
        let mut g = Vec::new();
        engine
            .backward(&mut ws, &r, None, &mut g)
            .expect("backward");
        let gp = gradients_for_burn(&net, &engine, &g);
        net = burn_opt.step(0.05, net, gp);
        step(&mut engine, &mut g);
    }
    let reference = burn_params(&net, &engine);
    for spec in engine.param_specs() {
        assert_close(
            &format!("{isa}: {} after two steps", spec.name),
            &engine.params()[spec.range()],
            &reference[spec.range()],
            tol,
        );
    }
}

/// The engine's gradient `g` as burn's optimisers take it: one tensor per parameter of `net`,
/// found by its path (the engine's parameters are burn's, flattened in the same order).
fn gradients_for_burn(net: &DenseUNet, engine: &FastDenseUNet, g: &[f32]) -> GradientsParams {
    struct Register<'a> {
        path: Vec<String>,
        by_name: HashMap<&'a str, &'a [f32]>,
        out: GradientsParams,
    }
    impl ModuleVisitor for Register<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.into());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if !param.is_require_grad() {
                return;
            }
            let name = self.path.join(".");
            let v = self
                .by_name
                .get(name.as_str())
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let shape = param.val().dims().to_vec();
            let t = Tensor::<D>::from_data(TensorData::new(v.to_vec(), shape), &Device::flex());
            self.out.register(param.id, t);
        }
    }
    let by_name = engine
        .param_specs()
        .iter()
        .map(|spec| (spec.name.as_str(), &g[spec.range()]))
        .collect();
    let mut visitor = Register {
        path: Vec::new(),
        by_name,
        out: GradientsParams::new(),
    };
    net.visit(&mut visitor);
    assert_eq!(
        visitor.out.len(),
        engine.param_specs().len(),
        "gradients handed to burn"
    );
    visitor.out
}

#[test]
fn sgd_steps_match_burn() {
    for isa in Isa::available() {
        let mut burn_opt = SgdConfig::new()
            .with_momentum(Some(MomentumConfig::new().with_momentum(0.9)))
            .with_weight_decay(Some(WeightDecayConfig::new(1e-2)))
            .with_gradient_clipping(Some(GradientClippingConfig::Norm(1.0)))
            .init();
        let mut sgd = Sgd::new(0.9, 0.1, 1e-2);
        optimiser_case(
            isa,
            &mut burn_opt,
            |e, g| {
                let specs = e.param_specs().to_vec();
                clip_per_param_norm(g, &specs, 1.0);
                sgd.step(0.05, e.params_mut(), g);
            },
            10,
            1e-6,
        );
    }
}

#[test]
fn adam_steps_match_burn() {
    // Given the same gradients the two optimisers agree to the last bits, even with a small ε
    // that normalises every entry (1e-6 leaves room for another order of float operations);
    // the update's terms are also checked against a textbook f64 Adam by the unit test
    // `optim::tests::adam_matches_the_textbook_update`.
    for isa in Isa::available() {
        let mut burn_opt = AdamConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(Some(WeightDecayConfig::new(1e-2)))
            .init();
        let mut adam = Adam::new(0.9, 0.999, 1e-8, 1e-2);
        optimiser_case(
            isa,
            &mut burn_opt,
            |e, g| adam.step(0.05, e.params_mut(), g),
            11,
            1e-6,
        );
    }
}

#[test]
fn total_norm_clipping_matches_hand_computation() {
    let mut g = vec![3.0f32, 4.0, 0.0, 12.0]; // norm 13
    let norm = clip_total_norm(&mut g, 1.0);
    assert!((norm - 13.0).abs() < 1e-5);
    let coef = 1.0 / (13.0 + 1e-6);
    for (a, b) in g.iter().zip([3.0f32, 4.0, 0.0, 12.0]) {
        assert!((a - b * coef).abs() < 1e-7, "{a} vs {}", b * coef);
    }
    let mut small = vec![0.1f32, 0.2];
    clip_total_norm(&mut small, 1.0);
    assert_eq!(small, vec![0.1, 0.2]);
}
