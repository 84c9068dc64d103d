//! `comir represent`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use comir_represent::{for_registration, sigmoid_image, Modality, Representer};

/// Arguments of `comir represent`.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  comir represent --model models/he --modality a --input shg.png --out shg_comir.tif\n  \
    comir represent --model models/he --modality b --input he.png --out he_comir.png\n\n\
    .tif/.tiff: the raw float representation (1 channel gray, 3 RGB, other counts one page per\n\
    channel, which comir reads back as channels);\n\
    .png: 8-bit sigmoid(x) as the reference saves it (1 channel gray, 3 channels RGB, other counts\n\
    reduced to gray by PCA)."
)]
pub struct RepresentArgs {
    /// Model folder written by `comir train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Which network to run: a or b (the --a / --b folders of training).
    #[arg(long)]
    pub modality: Modality,
    /// Image to represent (any size: large images are processed in tiles).
    #[arg(long)]
    pub input: PathBuf,
    /// Output image: .tif (float) or .png (8-bit sigmoid).
    #[arg(long)]
    pub out: PathBuf,
    /// Compute device: cpu (default), wgpu or cuda (GPU builds only).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Largest tile side in pixels (memory bound); larger images are tiled.
    #[arg(long, default_value_t = 640)]
    pub max_tile: usize,
}

/// Runs `comir represent`.
pub fn run(args: RepresentArgs) -> Result<()> {
    let ext = args
        .out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if !matches!(ext.as_str(), "tif" | "tiff" | "png") {
        bail!(
            "{}: the output must end in .tif, .tiff or .png",
            args.out.display()
        );
    }
    let device = crate::device::select(&args.device)?;
    let mut r = Representer::load(&args.model, &device)?;
    r.max_tile = args.max_tile;
    let img = comir_image::load(&args.input)?;
    let start = Instant::now();
    let rep = r
        .represent(&img, args.modality)
        .with_context(|| format!("{}", args.input.display()))?;
    // The input is not needed any more: free it before the output is written (large images).
    let (in_w, in_h) = (img.width(), img.height());
    drop(img);
    let seconds = start.elapsed().as_secs_f64();
    let d = rep.channels();
    if ext == "png" {
        let out = if d == 1 || d == 3 {
            sigmoid_image(&rep)
        } else {
            for_registration(&rep, &rep).0
        };
        comir_image::save_png(&args.out, &out)?;
    } else {
        comir_image::save_tiff_f32(&args.out, &rep)?;
    }
    let (lo, hi) = rep.min_max();
    println!(
        "{}×{} image → {d}-channel representation in [{lo:.3}, {hi:.3}], {seconds:.2} s -> {}",
        in_w,
        in_h,
        args.out.display()
    );
    Ok(())
}
