//! Times a full-circle search on a 512×512 SHG / H&E pair (or a phantom if the data is absent).
//!
//! `cargo run --release -p comir-globalign --example bench [-- A.png B.png]`

use std::time::Instant;

use comir_globalign::{GlobalSearch, GlobalSearchConfig};
use comir_image::ops::Border;
use comir_register::{centered_rigid, Registrar as _};
use comir_testkit::{datasets_dir, moved_by, phantom_pair};
use comir_transform::{corner_error, Rigid2};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (a, b) = if args.len() == 2 {
        (
            comir_image::load_gray(&args[0]).expect("fixed"),
            comir_image::load_gray(&args[1]).expect("moving"),
        )
    } else if let Some(d) = datasets_dir().map(|d| d.join("histology-shg-he")) {
        (
            comir_image::load_gray(d.join("A/1B_A1.png")).expect("A"),
            comir_image::load_gray(d.join("B/1B_A1.png")).expect("B"),
        )
    } else {
        phantom_pair(512, 512, 1)
    };
    let truth = Rigid2::new(100f64.to_radians(), [20.0, -15.0], a.center());
    let moving = moved_by(&b, &truth, Border::Zero);
    let init = centered_rigid(&a, &moving);
    let g = GlobalSearch::new(GlobalSearchConfig::default()).expect("config");
    println!(
        "{}x{} pair, {} threads",
        a.width(),
        a.height(),
        rayon::current_num_threads()
    );
    let mut times = Vec::new();
    for run in 0..5 {
        let start = Instant::now();
        let (o, st) = g
            .register_with_stats(&a, &moving, &init)
            .expect("registers");
        let secs = start.elapsed().as_secs_f64();
        times.push(secs);
        println!(
            "run {run}: {secs:.3} s (prepare {:.3}, coarse {:.3} on {:?}, refine {:.3} up to {:?}; {} angles)  error {:.2} px, -MI {:.4}",
            st.prepare_s,
            st.coarse_s,
            st.coarse_size,
            st.refine_s,
            st.finest_size,
            st.angles_evaluated,
            corner_error(&o.transform, &truth, a.width() as f64, a.height() as f64),
            o.metric_value
        );
    }
    times.sort_by(f64::total_cmp);
    println!("median {:.3} s", times[times.len() / 2]);
    let _ = g.name();
}
