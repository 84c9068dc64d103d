//! Draws the crate's plots for synthetic embeddings, to look at them:
//! `cargo run -p comir-analysis --example demo_plots -- OUT_DIR`.
//!
//! Modality B is modality A plus noise (pairs overlap in the MDS); a "collapsed" embedding lives in
//! 3 of its 32 dimensions (its spectrum drops to the floor after index 2).

use comir_analysis::{mds, plot, spectrum, tables};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    std::fs::create_dir_all(&out)?;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (n, d) = (60, 32);
    // Healthy: variances decaying geometrically over all 32 dimensions.
    let a: Vec<Vec<f32>> = (0..n)
        .map(|_| {
            (0..d)
                .map(|k| 0.8f32.powi(k) * rng.sample::<f32, _>(StandardNormal))
                .collect()
        })
        .collect();
    let b: Vec<Vec<f32>> = a
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| v + 0.15 * rng.sample::<f32, _>(StandardNormal))
                .collect()
        })
        .collect();
    // Collapsed: only 3 directions used.
    let c: Vec<Vec<f32>> = (0..n)
        .map(|_| {
            (0..d)
                .map(|k| if k < 3 { rng.gen_range(-1.0..1.0) } else { 0.0 })
                .collect()
        })
        .collect();

    let all: Vec<Vec<f32>> = a.iter().chain(&b).cloned().collect();
    let fit = mds::smacof(
        &mds::pairwise_euclidean(&all)?,
        &mds::SmacofConfig::default(),
    )?;
    let pts = fit.points_2d();
    let (pa, pb) = pts.split_at(n);
    plot::mds_scatter_png(
        out.join("demo_mds.png"),
        pa,
        pb,
        "demo: B = A + noise",
        Some(fit.stress.stress1),
    )?;
    tables::write_mds_csv(
        out.join("demo_mds.csv"),
        &tables::MdsPoint::from_pairs("demo", pa, pb),
    )?;

    let sa = spectrum::covariance_spectrum(&a)?;
    let sb = spectrum::covariance_spectrum(&b)?;
    let sc = spectrum::covariance_spectrum(&c)?;
    plot::spectrum_png(
        out.join("demo_spectrum.png"),
        &[
            ("healthy A", sa.clone()),
            ("healthy B", sb.clone()),
            ("collapsed", sc.clone()),
        ],
        "demo: embedding covariance spectra",
    )?;
    let summary = vec![
        tables::SpectrumSummary::new("demo", "A", &sa, n),
        tables::SpectrumSummary::new("demo", "B", &sb, n),
        tables::SpectrumSummary::new("collapsed", "A", &sc, n),
    ];
    tables::write_summary_csv(out.join("demo_spectrum_summary.csv"), &summary)?;
    println!(
        "stress-1 {:.4}, {} iterations; wrote plots to {}",
        fit.stress.stress1,
        fit.iterations,
        out.display()
    );
    Ok(())
}
