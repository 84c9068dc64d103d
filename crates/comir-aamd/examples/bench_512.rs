//! Times α-AMD with the reference settings (3 starts, 3000/1000/200 iterations) on a 512×512
//! pair: a real SHG image from the shared histology dataset when present, else a phantom, moved
//! by a known rigid transform.
//!
//! `cargo run --release -p comir-aamd --example bench_512 [-- THREADS]`

use std::time::Instant;

use comir_aamd::{AlphaAmd, AlphaAmdConfig};
use comir_image::ops::Border;
use comir_register::{centered_rigid, Registrar};
use comir_testkit::{datasets_dir, moved_by, phantom_pair};
use comir_transform::{corner_error, Rigid2};

/// CPU seconds used by this process so far (user + system; Linux only, else 0). On a shared
/// machine, wall time includes waiting for other processes; CPU time does not.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11..13).map_or(0.0, |v| {
        v.iter().filter_map(|x| x.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let threads: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let path = datasets_dir().map(|d| d.join("histology-shg-he/A/1B_A1.png"));
    let fixed = match path.filter(|p| p.is_file()) {
        Some(p) => {
            println!("image: {}", p.display());
            comir_image::load_gray(&p)?
        }
        None => {
            println!("image: phantom 512×512 (dataset not found)");
            phantom_pair(512, 512, 1).0
        }
    };
    let (w, h) = (fixed.width() as f64, fixed.height() as f64);
    let truth = Rigid2::new(8f64.to_radians(), [12.0, -9.0], fixed.center());
    let moving = moved_by(&fixed, &truth, Border::Zero);
    let reg = AlphaAmd::new(AlphaAmdConfig::default())?;
    let init = centered_rigid(&fixed, &moving);
    pool.install(|| -> Result<(), comir_register::Error> {
        // Warm-up run (page faults, thread start-up), then timed runs.
        reg.register(&fixed, &moving, &init.into())?;
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let c0 = cpu_seconds();
            let t0 = Instant::now();
            let prep = reg.prepare(&fixed, &moving)?;
            let t1 = Instant::now();
            let o = reg.register_prepared(&prep, &init)?;
            let t2 = Instant::now();
            let cpu = cpu_seconds() - c0;
            let total = (t2 - t0).as_secs_f64();
            best = best.min(total);
            println!(
                "{}×{} on {threads} threads: precompute {:.3} s, 3 starts {:.3} s, total {:.3} s; \
                 CPU {cpu:.2} s; corner error {:.3} px, value {:.4}, iterations {}",
                fixed.width(),
                fixed.height(),
                (t1 - t0).as_secs_f64(),
                (t2 - t1).as_secs_f64(),
                total,
                corner_error(&o.transform, &truth, w, h),
                o.metric_value,
                o.iterations
            );
        }
        println!("best total: {best:.3} s");
        Ok(())
    })?;
    Ok(())
}
