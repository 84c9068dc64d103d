//! Time of one inference-mode forward pass of one network on one square tile, in process
//! (no image I/O): the engine's share of `comir represent`. A development tool for the kernels.
//!
//! `cargo run --release -p comir-engine --example infer_time -- [fast|small|histology] [--size 552] [--runs 10]
//! [--layer-by-layer]`

use std::time::Instant;

use comir_engine::{FastDenseUNet, Workspace};
use comir_model::recipe::Preset;

/// Large buffers start on a cache line, as in the `comir` program.
#[global_allocator]
static ALLOC: comir_cpu::CacheLineAlloc = comir_cpu::CacheLineAlloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str, default: usize| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let (size, runs) = (value("--size", 552), value("--runs", 10).max(1));
    let name = args.first().map_or("fast", String::as_str);
    let net = match name
        .parse::<Preset>()
        .and_then(|p| FastDenseUNet::new(&p.network(1), 0).map_err(|e| e.to_string()))
    {
        Ok(net) => net,
        Err(e) => {
            eprintln!("infer_time: {e}");
            std::process::exit(2);
        }
    };
    let x: Vec<f32> = (0..size * size)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    // `--layer-by-layer`: the dense blocks without fusing their layers, for comparison.
    comir_engine::set_fused_inference(!args.iter().any(|a| a == "--layer-by-layer"));
    let mut ws = Workspace::new();
    let mut times = Vec::new();
    for _ in 0..=runs {
        let t = Instant::now();
        if let Err(e) = net.forward_inference_in(&mut ws, &x, 1, size, size) {
            eprintln!("infer_time: {e}");
            std::process::exit(2);
        }
        times.push(t.elapsed().as_secs_f64());
    }
    // The first pass allocates the workspace (page faults): reported apart.
    let first = times.remove(0);
    times.sort_by(f64::total_cmp);
    println!(
        "{size}² tile: first {first:.4} s, median {:.4} s, min {:.4} s over {runs} runs",
        times[times.len() / 2],
        times[0]
    );
}
