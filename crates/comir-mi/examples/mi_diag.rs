//! Diagnostic: for real pairs, compare registration from the identity with registration started at the truth.
use comir_image::load_gray;
use comir_image::ops::Border;
use comir_mi::{MattesMi, MattesMiConfig};
use comir_register::{centered_identity, Registrar};
use comir_testkit::{dataset, moved_by};
use comir_transform::{corner_error, Rigid2};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("histology-shg-he");
    let cfg: MattesMiConfig = match args.get(2) {
        Some(j) => serde_json::from_str(j).expect("cfg json"),
        None => MattesMiConfig::default(),
    };
    let (deg, shift) = if name.starts_with("hist") {
        (10.0f64, [15.0, -10.0])
    } else {
        (10.0, [8.0, -6.0])
    };
    let dir = dataset(name).expect("dataset");
    let mut files: Vec<_> = std::fs::read_dir(dir.join("A"))
        .expect("A")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .filter(|f| f.to_string_lossy().ends_with(".png"))
        .collect();
    files.sort();
    let step = (files.len() / 10).max(1);
    let reg = MattesMi::new(cfg).expect("cfg");
    let mut ok = 0;
    let t0 = std::time::Instant::now();
    for (i, f) in files.iter().step_by(step).take(10).enumerate() {
        let a = load_gray(dir.join("A").join(f)).expect("a");
        let b = load_gray(dir.join("B").join(f)).expect("b");
        let w = a.width() as f64;
        let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
        let truth = Rigid2::new(sign * deg.to_radians(), shift, a.center());
        let moving = moved_by(&b, &truth, Border::Zero);
        let o = reg
            .register(&a, &moving, &centered_identity(&a, &moving))
            .expect("reg");
        let ot = reg.register(&a, &moving, &truth.into()).expect("reg");
        let e = corner_error(&o.transform, &truth, w, a.height() as f64);
        let et = corner_error(&ot.transform, &truth, w, a.height() as f64);
        ok += usize::from(e <= 0.02 * w);
        println!(
            "{:>40}: from id err {e:7.2} metric {:.4} | from truth err {et:6.2} metric {:.4}",
            f.to_string_lossy(),
            o.metric_value,
            ot.metric_value
        );
    }
    println!("success {ok}/10 in {:.2} s", t0.elapsed().as_secs_f64());
}
