//! `comir represent`.

use std::path::PathBuf;

use anyhow::Result;
use comir_pipeline::represent::{represent_file, RepresentOptions};
use comir_pipeline::Modality;

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
    /// Model folder written by `comir train`, or a bundled model's name (`comir models`).
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
    let options = RepresentOptions {
        model: args.model,
        modality: args.modality,
        input: args.input,
        out: args.out,
        device: args.device,
        max_tile: args.max_tile,
        margin: args.margin,
        rotation_average: args.rotation_average,
    };
    let r = represent_file(&options)?;
    println!(
        "{}×{} image → {}-channel representation in [{:.3}, {:.3}], {:.2} s -> {}",
        r.width,
        r.height,
        r.channels,
        r.lo,
        r.hi,
        r.seconds,
        options.out.display()
    );
    Ok(())
}
