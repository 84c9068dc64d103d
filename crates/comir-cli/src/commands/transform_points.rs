//! `comir transform-points`.

use std::path::PathBuf;

use anyhow::Result;
use comir_pipeline::points::{transform_points, PointDirection};

/// Arguments of `comir transform-points`.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  comir transform-points --transform t.json --points shg_landmarks.csv --out in_he.csv\n  \
    comir transform-points --transform t.json --points he_annotations.csv --out in_shg.csv --inverse\n\n\
    The points file is a CSV with columns x and y (pixels; x the column, y the row, pixel centres\n\
    at integers); other columns are copied unchanged."
)]
pub struct TransformPointsArgs {
    /// The transform: the JSON of `comir register`, or an ITK .tfm file.
    #[arg(long)]
    transform: PathBuf,
    /// CSV of points with columns x and y.
    #[arg(long)]
    points: PathBuf,
    /// Where to write the mapped points (same columns).
    #[arg(long)]
    out: PathBuf,
    /// Map moving-image points to the fixed image (the default maps fixed to moving, as the
    /// transform is stored).
    #[arg(long)]
    inverse: bool,
}

/// Runs `comir transform-points`.
pub fn run(args: TransformPointsArgs) -> Result<()> {
    let direction = if args.inverse {
        PointDirection::MovingToFixed
    } else {
        PointDirection::FixedToMoving
    };
    let n = transform_points(&args.transform, &args.points, &args.out, direction)?;
    let way = if args.inverse {
        "moving -> fixed"
    } else {
        "fixed -> moving"
    };
    println!("{n} points mapped {way} -> {}", args.out.display());
    Ok(())
}
