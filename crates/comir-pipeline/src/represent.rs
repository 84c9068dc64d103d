//! Mapping an image file to its learned representation with a trained model: the entry point
//! behind `comir represent`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use comir_represent::{for_registration, sigmoid_image, Modality, Representer};

/// What to represent, with which model, into which file.
#[derive(Clone, Debug, PartialEq)]
pub struct RepresentOptions {
    /// Model folder written by `comir train`, or a bundled model's name.
    pub model: PathBuf,
    /// Which network to run.
    pub modality: Modality,
    /// Image to represent (any size: large images are processed in tiles).
    pub input: PathBuf,
    /// Output image: .tif/.tiff (float) or .png (8-bit sigmoid).
    pub out: PathBuf,
    /// Compute device: `cpu`, `wgpu` or `cuda`.
    pub device: String,
    /// Largest tile side in pixels (memory bound); larger images are tiled.
    pub max_tile: usize,
    /// Context added on every side of the image and of each tile, in pixels (the model's
    /// default when `None`).
    pub margin: Option<usize>,
    /// The mean over the input's four 90° turns, each represented and turned back.
    pub rotation_average: bool,
}

/// What [`represent_file`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Represented {
    /// Input width.
    pub width: usize,
    /// Input height.
    pub height: usize,
    /// Channels of the representation.
    pub channels: usize,
    /// Smallest value of the representation.
    pub lo: f32,
    /// Largest value.
    pub hi: f32,
    /// Seconds from the first tile to the written file.
    pub seconds: f64,
}

/// Represents the input image and writes the output: a float TIFF (band by band, so that only
/// one band is in memory, where the channel count allows), or an 8-bit PNG as the reference
/// saves it (sigmoid; channel counts other than 1 and 3 reduced to gray).
///
/// # Errors
/// An output that is neither .tif, .tiff nor .png, an unknown device, an unloadable model or
/// input, or an unwritable output.
pub fn represent_file(options: &RepresentOptions) -> Result<Represented> {
    let ext = options
        .out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if !matches!(ext.as_str(), "tif" | "tiff" | "png") {
        bail!(
            "{}: the output must end in .tif, .tiff or .png",
            options.out.display()
        );
    }
    let device = crate::device::select(&options.device)?;
    let model_dir = crate::bundled::resolve(&options.model)?;
    // The model and the image load side by side (each takes a few milliseconds on one core).
    let (r, img) = rayon::join(
        || Representer::load(&model_dir, &device),
        || comir_image::load(&options.input),
    );
    let mut r = r?;
    r.max_tile = options.max_tile;
    if let Some(m) = options.margin {
        r.margin = m;
    }
    let img = img?;
    let (in_w, in_h) = (img.width(), img.height());
    let input_context = || format!("{}", options.input.display());
    let start = Instant::now();
    let plan = r
        .tile_plan(&img, options.modality)
        .with_context(input_context)?;
    let d = plan.channels();
    let (lo, hi) = if ext != "png" && matches!(d, 1 | 3) && !options.rotation_average {
        // Band by band into the file: only one band of the output is ever in memory.
        let input = r
            .prepare_input(&img, options.modality)
            .with_context(input_context)?;
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        let mut failure = None;
        let written = comir_image::save_tiff_f32_bands(
            &options.out,
            (in_w, in_h, d),
            plan.band_rows(),
            |i| match r.represent_band(&input, &plan, i) {
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
            },
        );
        if let Some(e) = failure {
            return Err(e).with_context(input_context);
        }
        written?;
        (lo, hi)
    } else {
        let rep = if options.rotation_average {
            r.represent_rotation_averaged(&img, options.modality)
        } else {
            r.represent(&img, options.modality)
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
            comir_image::save_png(&options.out, &out)?;
        } else {
            comir_image::save_tiff_f32(&options.out, &rep)?;
        }
        rep.min_max()
    };
    Ok(Represented {
        width: in_w,
        height: in_h,
        channels: d,
        lo,
        hi,
        seconds: start.elapsed().as_secs_f64(),
    })
}
