//! `comir register`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use comir_image::ops::{warp, Border};
use comir_transform::{write_itk_tfm, write_json, TransformRecord};

use crate::methods::{build, MethodName, MethodsConfig};
use crate::representation::ModelPrep;
use comir_represent::Modality;

/// Arguments of `comir register`.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  comir register --fixed shg.png --moving he.png --method mi \\\n      --out t.json --tfm t.tfm --warped he_in_shg_frame.png"
)]
pub struct RegisterArgs {
    /// The fixed (reference) image.
    #[arg(long)]
    fixed: PathBuf,
    /// The moving image, registered onto the fixed one.
    #[arg(long)]
    moving: PathBuf,
    /// Registration method.
    #[arg(long, value_enum)]
    method: MethodName,
    /// Where to write the transform as JSON.
    #[arg(long)]
    out: PathBuf,
    /// Also write the transform as an ITK .tfm file (Euler2DTransform).
    #[arg(long)]
    tfm: Option<PathBuf>,
    /// Also write the moving image resampled into the fixed frame (.png, or .tif for float).
    #[arg(long)]
    warped: Option<PathBuf>,
    /// Seed of every random choice of the method.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Start from a global FFT search instead of the identity (for large displacements).
    #[arg(long, value_parser = ["identity", "global"], default_value = "identity")]
    init: String,
    /// Method settings (TOML with sections [aamd], [mi], [features], [global]).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Register the learned representations of the two images (a `comir train` folder).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Which modality the fixed image is (the moving one is the other); with --model.
    #[arg(long, default_value = "a")]
    fixed_modality: Modality,
    /// Compute device of the model: cpu (default), wgpu or cuda (GPU builds only).
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Runs `comir register`.
pub fn run(args: RegisterArgs) -> Result<()> {
    let fixed_full = comir_image::load(&args.fixed)?;
    let moving_full = comir_image::load(&args.moving)?;
    let cfg = MethodsConfig::load(args.config.as_deref())?.with_seed(args.seed);
    let registrar = build(args.method, &cfg, args.init == "global")?;
    let model = args
        .model
        .as_deref()
        .map(|dir| ModelPrep::load(dir, args.fixed_modality, &args.device))
        .transpose()?;
    let start = Instant::now();
    let (fixed, moving) = match &model {
        Some(m) => m.prepare(&fixed_full, &moving_full)?,
        None => (fixed_full.to_gray(), moving_full.to_gray()),
    };
    let init = comir_register::centered_identity(&fixed, &moving);
    let outcome = registrar
        .register(&fixed, &moving, &init)
        .with_context(|| {
            format!(
                "registering {} to {}",
                args.moving.display(),
                args.fixed.display()
            )
        })?;
    let seconds = start.elapsed().as_secs_f64();
    let t = outcome.transform;
    let label = match &model {
        Some(_) => format!("comir+{}", args.method.as_str()),
        None => args.method.as_str().to_string(),
    };
    let record = TransformRecord::new(&t, &label, outcome.metric_value, seconds);
    write_json(&args.out, &record)?;
    if let Some(path) = &args.tfm {
        write_itk_tfm(path, &t)?;
    }
    if let Some(path) = &args.warped {
        let out = warp(
            &moving_full,
            fixed.width(),
            fixed.height(),
            Border::Zero,
            |p| t.apply(p),
        );
        let is_tif = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("tif") || e.eq_ignore_ascii_case("tiff"));
        if is_tif {
            comir_image::save_tiff_f32(path, &out)?;
        } else {
            let (lo, hi) = out.min_max();
            let out = if lo < 0.0 || hi > 1.0 {
                out.normalized()
            } else {
                out
            };
            comir_image::save_png(path, &out)?;
        }
    }
    println!(
        "{}: angle {:.3}°, translation ({:.2}, {:.2}) px about ({:.1}, {:.1}), metric {:.5}, {:.3} s -> {}",
        label,
        record.angle_deg,
        t.translation[0],
        t.translation[1],
        t.center[0],
        t.center[1],
        outcome.metric_value,
        seconds,
        args.out.display()
    );
    Ok(())
}
