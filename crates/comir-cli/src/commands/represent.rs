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
    /// Context added on every side of the image and of each tile, in pixels (mirrored at the
    /// image's edges; rounded up to a multiple of 2^depth) [default: 32, so 64 for six-level
    /// networks]
    #[arg(long)]
    pub margin: Option<usize>,
    /// The mean over the input's four 90° turns, each represented and turned back (exactly
    /// rotation-equivariant; four passes, and the whole output is held in memory). Not in the
    /// reference.
    #[arg(long)]
    pub rotation_average: bool,
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
    if let Some(m) = args.margin {
        r.margin = m;
    }
    let img = comir_image::load(&args.input)?;
    let (in_w, in_h) = (img.width(), img.height());
    let input_context = || format!("{}", args.input.display());
    let start = Instant::now();
    let plan = r
        .tile_plan(&img, args.modality)
        .with_context(input_context)?;
    let d = plan.channels();
    let (lo, hi) = if ext != "png" && matches!(d, 1 | 3) && !args.rotation_average {
        // Band by band into the file: only one band of the output is ever in memory.
        let input = r
            .prepare_input(&img, args.modality)
            .with_context(input_context)?;
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        let mut failure = None;
        let written =
            comir_image::save_tiff_f32_bands(&args.out, (in_w, in_h, d), plan.band_rows(), |i| {
                match r.represent_band(&input, &plan, i) {
                    Ok(band) => {
                        let (l, h) = band.min_max();
                        (lo, hi) = (lo.min(l), hi.max(h));
                        Ok(band)
                    }
                    Err(e) => {
                        let message = e.to_string();
                        failure = Some(e);
                        Err(std::io::Error::other(message))
                    }
                }
            });
        if let Some(e) = failure {
            return Err(e).with_context(input_context);
        }
        written?;
        (lo, hi)
    } else {
        let rep = if args.rotation_average {
            r.represent_rotation_averaged(&img, args.modality)
        } else {
            r.represent(&img, args.modality)
        }
        .with_context(input_context)?;
        // The input is not needed any more: free it before the output is written.
        drop(img);
        if ext == "png" {
            let out = if d == 1 || d == 3 {
                sigmoid_image(&rep)
            } else {
                for_registration(&rep, &rep, false).0
            };
            comir_image::save_png(&args.out, &out)?;
        } else {
            comir_image::save_tiff_f32(&args.out, &rep)?;
        }
        rep.min_max()
    };
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{}×{} image → {d}-channel representation in [{lo:.3}, {hi:.3}], {seconds:.2} s -> {}",
        in_w,
        in_h,
        args.out.display()
    );
    Ok(())
}
