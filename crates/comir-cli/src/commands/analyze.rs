//! `comir analyze`: what a trained model's embeddings look like on held-out pairs — MDS maps,
//! covariance spectra (dimensional collapse), the modality gap and the rotation equivariance
//! (the analyses of Wetzer et al. 2023; method-notes §2.2).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use comir_analysis::gap::{modality_gap, pearson};
use comir_analysis::mds::{pairwise_euclidean, smacof, SmacofConfig};
use comir_analysis::plot::{mds_scatter_png, spectrum_png};
use comir_analysis::spectrum::{covariance_spectrum, COLLAPSE_REL};
use comir_analysis::tables::{
    write_mds_csv, write_spectrum_csv, write_summary_csv, MdsPoint, SpectrumRow, SpectrumSummary,
};
use comir_image::ops::{warp, Border};
use comir_image::Image;
use comir_represent::{Modality, Representer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::csv_out::write_csv;
use crate::representation::seen_pairs;

/// Arguments of `comir analyze`.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  comir analyze --model models/he --pairs ../shared/datasets/histology-shg-he --out he-analysis\n\n\
    Writes mds-*.png, spectrum-*.png and CSVs (mds.csv, spectrum.csv, spectrum-summary.csv,\n\
    modality-gap.csv, equivariance.csv) into --out; pairs the model was trained or validated on\n\
    are skipped."
)]
pub struct AnalyzeArgs {
    /// Model folder written by `comir train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Folder with A/ and B/ aligned pairs (held-out pairs are used).
    #[arg(long)]
    pub pairs: PathBuf,
    /// Output folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Patch pairs to embed.
    #[arg(long, default_value_t = 200)]
    pub patches: usize,
    /// Patch side in pixels (default: the training patch size).
    #[arg(long)]
    pub patch_size: Option<usize>,
    /// Seed of the patch positions.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Rotation step of the equivariance score, in degrees.
    #[arg(long, default_value_t = 30.0)]
    pub angle_step: f64,
}

/// One row of `modality-gap.csv`.
#[derive(Serialize)]
struct GapRow {
    layer: String,
    corresponding: f64,
    non_corresponding: f64,
    ratio: f64,
    n: usize,
}

/// One row of `equivariance.csv`.
#[derive(Serialize)]
struct EquivarianceRow {
    modality: String,
    angle_deg: f64,
    correlation: f64,
}

/// Flattened embeddings of one layer for both modalities.
struct Layer {
    name: &'static str,
    a: Vec<Vec<f32>>,
    b: Vec<Vec<f32>>,
}

fn pooled(bottleneck: &[f32], channels: usize) -> Vec<f32> {
    let per = bottleneck.len() / channels.max(1);
    bottleneck
        .chunks(per.max(1))
        .map(|c| c.iter().sum::<f32>() / c.len() as f32)
        .collect()
}

/// `image` rotated by `deg` degrees about its centre (mirror outside).
fn rotated(image: &Image, deg: f64) -> Image {
    let (w, h) = (image.width(), image.height());
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    let (s, c) = deg.to_radians().sin_cos();
    warp(image, w, h, Border::Reflect, |[x, y]| {
        let (dx, dy) = (x - cx, y - cy);
        [cx + c * dx + s * dy, cy - s * dx + c * dy]
    })
}

/// Values of `image` inside the central disc of radius 0.3 · min(w, h) (away from the mirrored
/// corners a rotation brings in).
fn central_disc(image: &Image) -> Vec<f32> {
    let (w, h) = (image.width(), image.height());
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    let r = 0.3 * w.min(h) as f64;
    let mut out = Vec::new();
    for y in 0..h {
        for x in 0..w {
            if (x as f64 - cx).hypot(y as f64 - cy) <= r {
                for ch in 0..image.channels() {
                    out.push(image.get(x, y, ch));
                }
            }
        }
    }
    out
}

/// Runs `comir analyze`.
pub fn run(args: AnalyzeArgs) -> Result<()> {
    if args.patches < 3 {
        bail!("--patches must be at least 3, got {}", args.patches);
    }
    if !(args.angle_step > 0.0 && args.angle_step <= 360.0) {
        bail!("--angle-step must lie in (0, 360], got {}", args.angle_step);
    }
    let device = crate::device::select("cpu")?;
    let representer = Representer::load(&args.model, &device)?;
    let card = representer.card();
    let size = match args.patch_size {
        Some(s) => s,
        None => card.training["config"]["patches"]["size"]
            .as_u64()
            .map_or(128, |s| s as usize),
    };
    let seen = seen_pairs(card);
    let mut pairs = comir_data::find_pairs_in(&args.pairs.join("A"), &args.pairs.join("B"))?;
    pairs.retain(|p| !seen.contains(&p.name));
    if pairs.is_empty() {
        bail!(
            "{}: every pair was used to train the model; analyse other pairs",
            args.pairs.display()
        );
    }
    let images = pairs
        .iter()
        .map(|p| {
            p.load()
                .with_context(|| format!("loading pair '{}'", p.name))
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some((a, _)) = images
        .iter()
        .find(|(a, _)| a.width() < size || a.height() < size)
    {
        bail!(
            "{}: an image of {}×{} is smaller than the {size}² patches",
            args.pairs.display(),
            a.width(),
            a.height()
        );
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("{}", args.out.display()))?;

    // Patch positions: pairs in turn, seeded corners; patches constant in either modality
    // (background) are skipped, at most 20 tries each.
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0xA7A1_7515);
    let pb = crate::progress::bar(args.patches as u64, "embed");
    let channels_b = card.network_a.growth_rate * card.network_a.bottleneck_layers;
    let mut rep = (Vec::new(), Vec::new());
    let mut bott = (Vec::new(), Vec::new());
    let mut pool = (Vec::new(), Vec::new());
    for i in 0..args.patches {
        let (a, b) = &images[i % images.len()];
        let mut corner = (0, 0);
        for _ in 0..20 {
            corner = (
                rng.gen_range(0..=a.width() - size),
                rng.gen_range(0..=a.height() - size),
            );
            let varies = |img: &Image| {
                let v = img.crop(corner.0, corner.1, size, size).data().to_vec();
                let (lo, hi) = v
                    .iter()
                    .fold((f32::MAX, f32::MIN), |(l, h), &x| (l.min(x), h.max(x)));
                hi - lo > 1e-6
            };
            if varies(a) && varies(b) {
                break;
            }
        }
        let ea = representer.embed_patches(a, Modality::A, &[corner], size)?;
        let eb = representer.embed_patches(b, Modality::B, &[corner], size)?;
        for (e, (r, bt, p)) in [
            (&ea[0], (&mut rep.0, &mut bott.0, &mut pool.0)),
            (&eb[0], (&mut rep.1, &mut bott.1, &mut pool.1)),
        ] {
            r.push(e.representation.clone());
            p.push(pooled(&e.bottleneck, channels_b));
            bt.push(e.bottleneck.clone());
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    let layers = [
        Layer {
            name: "representation",
            a: rep.0,
            b: rep.1,
        },
        Layer {
            name: "bottleneck",
            a: bott.0,
            b: bott.1,
        },
        Layer {
            name: "bottleneck-pooled",
            a: pool.0,
            b: pool.1,
        },
    ];

    // MDS of both modalities together, per layer (the pooled one is shown by the flat one).
    let mut mds_rows = Vec::new();
    let mut stresses = Vec::new();
    for layer in layers.iter().take(2) {
        let all: Vec<Vec<f32>> = layer.a.iter().chain(&layer.b).cloned().collect();
        let d = pairwise_euclidean(&all)?;
        let mds = smacof(&d, &SmacofConfig::default())?;
        let pts = mds.points_2d();
        let (pa, pb) = pts.split_at(layer.a.len());
        let png = args.out.join(format!("mds-{}.png", layer.name));
        mds_scatter_png(
            &png,
            pa,
            pb,
            &format!("MDS of the {} (A vs B)", layer.name),
            Some(mds.stress.stress1),
        )?;
        mds_rows.extend(MdsPoint::from_pairs(layer.name, pa, pb));
        stresses.push((layer.name, mds.stress.stress1));
    }
    write_mds_csv(args.out.join("mds.csv"), &mds_rows)?;

    // Covariance spectra per layer and modality.
    let mut spectrum_rows = Vec::new();
    let mut summaries = Vec::new();
    for layer in &layers {
        let mut series = Vec::new();
        for (modality, rows) in [("A", &layer.a), ("B", &layer.b)] {
            let mut sv = covariance_spectrum(rows)?;
            // n embeddings span at most n − 1 directions: the rest are zero by construction,
            // not collapse, and are left out.
            sv.truncate(rows.len().saturating_sub(1).max(1));
            spectrum_rows.extend(SpectrumRow::from_spectrum(layer.name, modality, &sv));
            let mut summary = SpectrumSummary::new(layer.name, modality, &sv, rows.len());
            summary.dims = rows.first().map_or(0, Vec::len);
            summaries.push(summary);
            series.push((format!("modality {modality}"), sv));
        }
        spectrum_png(
            args.out.join(format!("spectrum-{}.png", layer.name)),
            &series,
            &format!("singular values of the {} covariance", layer.name),
        )?;
    }
    write_spectrum_csv(args.out.join("spectrum.csv"), &spectrum_rows)?;
    write_summary_csv(args.out.join("spectrum-summary.csv"), &summaries)?;

    // Modality gap per layer.
    let mut gaps = Vec::new();
    for layer in &layers {
        let g = modality_gap(&layer.a, &layer.b)?;
        gaps.push(GapRow {
            layer: layer.name.to_string(),
            corresponding: g.corresponding,
            non_corresponding: g.non_corresponding,
            ratio: g.ratio,
            n: g.n,
        });
    }
    write_csv(&args.out.join("modality-gap.csv"), &gaps)?;

    // Equivariance on the first held-out pair (centre crop of at most 256²).
    let (a, b) = &images[0];
    let side = a.width().min(a.height()).min(256);
    let (x0, y0) = ((a.width() - side) / 2, (a.height() - side) / 2);
    let mut equivariance = Vec::new();
    for (name, modality, img) in [("A", Modality::A, a), ("B", Modality::B, b)] {
        let crop = img.crop(x0, y0, side, side);
        let reference = central_disc(&representer.represent(&crop, modality)?);
        let mut angle = 0.0;
        while angle < 360.0 - 1e-9 {
            let back = rotated(
                &representer.represent(&rotated(&crop, angle), modality)?,
                -angle,
            );
            let r = pearson(&central_disc(&back), &reference).unwrap_or(f64::NAN);
            equivariance.push(EquivarianceRow {
                modality: name.to_string(),
                angle_deg: angle,
                correlation: r,
            });
            angle += args.angle_step;
        }
    }
    write_csv(&args.out.join("equivariance.csv"), &equivariance)?;

    // The table a person reads.
    println!(
        "{} patch pairs of {size}² from {} held-out pairs",
        args.patches,
        pairs.len()
    );
    println!(
        "{:<18} {:>6} {:>10} {:>9} {:>12} {:>10}",
        "layer", "modal.", "dims", "eff. rank", "σ<1e-5·σmax", "gap ratio"
    );
    for s in &summaries {
        let gap = gaps
            .iter()
            .find(|g| g.layer == s.layer)
            .map_or(f64::NAN, |g| g.ratio);
        println!(
            "{:<18} {:>6} {:>10} {:>9.2} {:>12} {:>10.3}",
            s.layer, s.modality, s.dims, s.effective_rank, s.below_1e_5, gap
        );
    }
    for (name, stress) in &stresses {
        println!("MDS stress-1 of the {name}: {stress:.3}");
    }
    for m in ["A", "B"] {
        let rows: Vec<&EquivarianceRow> = equivariance.iter().filter(|r| r.modality == m).collect();
        let worst = rows
            .iter()
            .map(|r| r.correlation)
            .fold(f64::INFINITY, f64::min);
        println!("equivariance, modality {m}: lowest correlation {worst:.3} over 0–360°");
    }
    println!(
        "collapse threshold: σ < {COLLAPSE_REL:e} · σ_max; files in {}",
        args.out.display()
    );
    Ok(())
}
