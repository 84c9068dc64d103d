//! `comir register`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use comir_pipeline::batch::{merge, register_shard, Shard};
use comir_pipeline::register::{register_pair, PairOutputs, RegisterOptions};
use comir_pipeline::TransformStages;

use crate::console::Terminal;
use crate::values::{MethodArg, ModelArgs};

/// Arguments of `comir register`.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  comir register --fixed shg.png --moving he.png --method mi \\\n      --out t.json --tfm t.tfm --warped he_in_shg_frame.png\n  \
    comir register --manifest pairs.csv --method mi --shard 3/10   # one job of a Slurm array\n  \
    comir register --manifest pairs.csv --method mi --merge        # after all shards\n\n\
    pairs.csv has the columns fixed,moving,output (paths relative to its folder; output is the\n\
    transform JSON). Rows whose output exists are not registered again."
)]
pub struct RegisterArgs {
    /// The fixed (reference) image.
    #[arg(long, required_unless_present = "manifest")]
    fixed: Option<PathBuf>,
    /// The moving image, registered onto the fixed one.
    #[arg(long, required_unless_present = "manifest")]
    moving: Option<PathBuf>,
    /// Registration method.
    #[arg(long, value_enum)]
    method: MethodArg,
    /// Where to write the transform as JSON.
    #[arg(long, required_unless_present = "manifest")]
    out: Option<PathBuf>,
    /// Register many pairs: a CSV with the columns fixed,moving,output.
    #[arg(long, conflicts_with_all = ["fixed", "moving", "out", "tfm", "warped"])]
    manifest: Option<PathBuf>,
    /// With --manifest: process only share K of N (rows i with i mod N = K − 1), e.g. from a
    /// Slurm array index; writes MANIFEST.results.K-of-N.csv.
    #[arg(long, default_value = "1/1")]
    shard: String,
    /// With --manifest: gather the shards' CSVs into MANIFEST.results.csv (every row once).
    #[arg(long, requires = "manifest")]
    merge: bool,
    /// Also write the transform as an ITK .tfm file (Euler2D, Similarity2D or Affine transform;
    /// a composite of it and a BSplineTransform after a bspline stage).
    #[arg(long)]
    tfm: Option<PathBuf>,
    /// Also write the moving image resampled into the fixed frame (.png, or .tif for float).
    #[arg(long)]
    warped: Option<PathBuf>,
    /// Seed of every random choice of the method.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The transform to estimate: auto (default: with MI, a rigid and a similarity,affine
    /// result, the second kept only when it fits clearly better; rigid with the other methods),
    /// rigid, similarity or affine, or a chain run in order, each stage starting where the
    /// previous ended (later stages use MI), optionally ending in bspline (a deformation on a
    /// control grid). For sections that also bend, similarity,affine,bspline.
    #[arg(long, default_value = "auto")]
    transform: TransformStages,
    /// Largest control-point spacing of a bspline stage, in pixels (default 64; at least 4 and
    /// at most the image side). Overrides bspline.grid_spacing of --config.
    #[arg(long)]
    grid_spacing: Option<f64>,
    /// Where to start: identity (image centres aligned), global (an FFT search over rotations
    /// and translations, for large displacements) or a transform file (.json or .tfm).
    #[arg(long, default_value = "identity")]
    init: String,
    /// Method settings (TOML with sections [aamd], [mi], [bspline], [features], [global]).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    /// Do not judge the result: the JSON (and the manifest's results) then have no confidence
    /// and flag.
    #[arg(long)]
    no_confidence: bool,
}

/// Runs `comir register`.
pub fn run(args: RegisterArgs) -> Result<()> {
    let options = RegisterOptions {
        method: args.method.into(),
        seed: args.seed,
        init_global: args.init == "global",
        init_file: (args.init != "global" && args.init != "identity").then(|| args.init.into()),
        stages: args.transform,
        grid_spacing: args.grid_spacing,
        config: args.config,
        model: args.model.options(),
        confidence: !args.no_confidence,
    };
    if let Some(manifest) = args.manifest {
        if args.merge {
            let merged = merge(&manifest)?;
            println!(
                "merged {} rows from {} shard file(s) -> {}",
                merged.rows,
                merged.files,
                merged.out.display()
            );
            return Ok(());
        }
        let shard: Shard = args.shard.parse()?;
        let run = register_shard(&options, &manifest, shard, &mut Terminal)?;
        let (k, n) = (shard.index, shard.count);
        println!(
            "shard {k}/{n}: {} pairs registered ({} already done), {} failed -> {}",
            run.registered,
            run.done_before,
            run.failed,
            run.results.display()
        );
        if run.failed > 0 {
            bail!("{} pair(s) of shard {k}/{n} failed (see above)", run.failed);
        }
        return Ok(());
    }
    let (Some(fixed), Some(moving), Some(out)) = (args.fixed, args.moving, args.out) else {
        bail!("give --fixed, --moving and --out, or --manifest");
    };
    let outputs = PairOutputs {
        out,
        tfm: args.tfm,
        warped: args.warped,
    };
    let registered = register_pair(&options, &fixed, &moving, &outputs)?;
    let (record, full) = (&registered.record, &registered.transform);
    let t = &full.linear;
    let c = t.center();
    let params = match t.as_rigid() {
        Some(r) => format!(
            "angle {:.3}°, translation ({:.2}, {:.2}) px",
            r.angle_rad.to_degrees(),
            r.translation[0],
            r.translation[1]
        ),
        None => {
            let parts = t.to_affine().decompose();
            let m = t.matrix3();
            format!(
                "{}: scale ({:.4}, {:.4}), angle {:.3}°, shear {:.4}, offset ({:.2}, {:.2}) px",
                t.kind(),
                parts.scale[0],
                parts.scale[1],
                parts.angle_rad.to_degrees(),
                parts.shear,
                m[0][2],
                m[1][2]
            )
        }
    };
    let deformation = match &full.deformation {
        Some(b) => {
            let n = b.grid_size();
            format!(
                ", then a B-spline on a {}×{} grid (min. Jacobian {:.3})",
                n[0],
                n[1],
                full.min_deformation_jacobian(2)
            )
        }
        None => String::new(),
    };

    let judged = match (record.confidence, &record.flag) {
        (Some(confidence), Some(flag)) => format!(", confidence {confidence:.2} ({flag})"),
        _ => String::new(),
    };
    println!(
        "{}: {params} about ({:.1}, {:.1}){deformation}, metric {:.5}, {:.3} s{judged} -> {}",
        record.method,
        c[0],
        c[1],
        record.metric_value,
        record.seconds,
        outputs.out.display()
    );
    if full.folds() {
        eprintln!(
            "warning: the deformation folds (its Jacobian determinant reaches 0): the result is \
             flagged doubtful; try a larger --grid-spacing or a larger bspline.bending_weight"
        );
    }
    Ok(())
}
