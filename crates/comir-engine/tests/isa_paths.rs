//! Every instruction set's kernels against the portable path on a network of the width that
//! training uses (growth 12, hundreds of input channels, 64-position AVX-512 tiles and their
//! masked ends): training forward, backward, an SGD step and inference agree within f32
//! rounding, and each path repeats itself bit for bit. (`equivalence.rs` checks every path
//! against burn on a tiny network.)

use comir_cpu::Isa;
use comir_engine::optim::{clip_per_param_norm, Sgd};
use comir_engine::{FastDenseUNet, Workspace};
use comir_model::DenseUNetConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The histology preset's widths on two levels.
fn wide() -> DenseUNetConfig {
    DenseUNetConfig {
        in_channels: 3,
        out_channels: 8,
        init_filters: 48,
        down_blocks: vec![4, 4],
        up_blocks: vec![4, 4],
        bottleneck_layers: 4,
        growth_rate: 12,
        compression: 1.0,
        dropout: 0.0,
    }
}

/// `N` samples of 36 × 44: rows of 46 padded positions, so bands end inside a tile.
const N: usize = 2;
const H: usize = 36;
const W: usize = 44;

/// What one path computes: training outputs, running statistics, gradients, the parameters
/// after one SGD step, and inference outputs.
#[derive(PartialEq)]
struct Run {
    repr: Vec<f32>,
    bott: Vec<f32>,
    running: Vec<f32>,
    grads: Vec<f32>,
    stepped: Vec<f32>,
    inference: Vec<f32>,
}

fn run(isa: Isa) -> Run {
    let cfg = wide();
    let mut net = FastDenseUNet::new(&cfg, 5).expect("network");
    net.set_isa(isa).expect("available");
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let x: Vec<f32> = (0..N * cfg.in_channels * H * W)
        .map(|_| rng.gen_range(0.0..1.0))
        .collect();
    let r: Vec<f32> = (0..N * cfg.out_channels * H * W)
        .map(|_| rng.gen_range(-1.0..1.0))
        .collect();
    let mut ws = Workspace::new();
    net.forward_train(&x, N, H, W, &mut ws).expect("forward");
    let (repr, bott) = (ws.representation().to_vec(), ws.bottleneck());
    let mut grads = Vec::new();
    net.backward(&mut ws, &r, None, &mut grads)
        .expect("backward");
    let running = net.running_stats().to_vec();
    let mut clipped = grads.clone();
    let specs = net.param_specs().to_vec();
    clip_per_param_norm(&mut clipped, &specs, 1.0);
    Sgd::new(0.9, 0.0, 1e-5).step(0.01, net.params_mut(), &clipped);
    let stepped = net.params().to_vec();
    let inference = net
        .forward_inference(&x[..cfg.in_channels * H * W], 1, H, W)
        .expect("inference")
        .representation;
    Run {
        repr,
        bott,
        running,
        grads,
        stepped,
        inference,
    }
}

/// Largest difference relative to the largest magnitude of `want`.
fn relative_error(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .fold(0.0f32, |m, (g, w)| m.max((g - w).abs()))
        / scale
}

#[test]
fn every_instruction_set_agrees_with_the_portable_path() {
    let reference = run(Isa::Portable);
    let available = Isa::available();
    eprintln!("instruction sets checked: {available:?}");
    for isa in available {
        let got = run(isa);
        for (what, g, w, tol) in [
            ("training representation", &got.repr, &reference.repr, 1e-5),
            ("bottleneck", &got.bott, &reference.bott, 1e-5),
            ("running statistics", &got.running, &reference.running, 1e-5),
            ("gradients", &got.grads, &reference.grads, 1e-4),
            (
                "parameters after a step",
                &got.stepped,
                &reference.stepped,
                1e-5,
            ),
            ("inference", &got.inference, &reference.inference, 1e-5),
        ] {
            let err = relative_error(g, w);
            assert!(
                err <= tol,
                "{isa}: {what} differs by {err:e} (tolerance {tol:e})"
            );
        }
        assert!(run(isa) == got, "{isa}: a second run differs");
    }
}
