//! Time of one training step (two networks, forward + backward + SGD) with the engine, and
//! optionally with burn-flex, batch 8 of 128² patches.
//!
//! `cargo run --release -p comir-engine --example step_time -- [small|histology]... [--burn] [--steps K]`

use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use comir_engine::optim::{clip_total_norm, Sgd};
use comir_engine::{FastDenseUNet, Workspace};
use comir_model::DenseUNetConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const N: usize = 8;
const S: usize = 128;

/// Large buffers start on a cache line, as in the `comir` program.
#[global_allocator]
static ALLOC: comir_cpu::CacheLineAlloc = comir_cpu::CacheLineAlloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let burn = args.iter().any(|a| a == "--burn");
    let steps = args
        .iter()
        .position(|a| a == "--steps")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(3usize);
    let mut presets: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a == "small" || *a == "histology")
        .collect();
    if presets.is_empty() {
        presets = vec!["small", "histology"];
    }
    println!("threads: {}", rayon::current_num_threads());
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for preset in presets {
        let cfg = match preset {
            "small" => DenseUNetConfig::small(1),
            _ => DenseUNetConfig::histology(1),
        };
        let x: Vec<f32> = (0..N * S * S).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let dz: Vec<f32> = (0..N * S * S).map(|_| rng.gen_range(-1e-3..1e-3)).collect();
        let mut nets = [
            FastDenseUNet::new(&cfg, 1).expect("net"),
            FastDenseUNet::new(&cfg, 2).expect("net"),
        ];
        let mut opts = [Sgd::new(0.9, 0.1, 1e-5), Sgd::new(0.9, 0.1, 1e-5)];
        let mut wss = [Workspace::new(), Workspace::new()];
        let mut grads = Vec::new();
        let mut times = Vec::new();
        for _ in 0..steps + 1 {
            let t0 = Instant::now();
            let (mut tf, mut tb) = (0.0, 0.0);
            for k in 0..2 {
                let t = Instant::now();
                nets[k]
                    .forward_train(&x, N, S, S, &mut wss[k])
                    .expect("forward");
                tf += t.elapsed().as_secs_f64();
                let t = Instant::now();
                nets[k]
                    .backward(&mut wss[k], &dz, None, &mut grads)
                    .expect("backward");
                clip_total_norm(&mut grads, 1.0);
                opts[k].step(1e-2, nets[k].params_mut(), &grads);
                tb += t.elapsed().as_secs_f64();
            }
            times.push((t0.elapsed().as_secs_f64(), tf, tb));
        }
        // The first step allocates the workspaces; report the others.
        let rest = &times[1..];
        let mean = rest.iter().map(|t| t.0).sum::<f64>() / rest.len() as f64;
        let mf = rest.iter().map(|t| t.1).sum::<f64>() / rest.len() as f64;
        let mb = rest.iter().map(|t| t.2).sum::<f64>() / rest.len() as f64;
        println!(
            "engine {preset}: {:.0} ms/step (forward {:.0} ms, backward+sgd {:.0} ms; first step {:.0} ms)",
            mean * 1e3,
            mf * 1e3,
            mb * 1e3,
            times[0].0 * 1e3
        );
        if burn {
            let device = Device::flex().autodiff();
            let net_a = cfg.init(&device);
            let net_b = cfg.init(&device);
            let xt = || Tensor::<4>::from_data(TensorData::new(x.clone(), [N, 1, S, S]), &device);
            let t0 = Instant::now();
            let ya = net_a.forward(xt()).representation;
            let yb = net_b.forward(xt()).representation;
            let loss = (ya * yb).sum();
            let _grads = loss.backward();
            println!(
                "burn-flex {preset}: {:.0} ms for one forward+backward of both nets",
                t0.elapsed().as_secs_f64() * 1e3
            );
        }
    }
}
