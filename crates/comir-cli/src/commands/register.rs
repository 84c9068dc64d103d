//! `comir register`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use comir_image::ops::{warp, Border};
use comir_image::Image;
use comir_register::Registrar;
use comir_transform::{write_itk_tfm, write_json, Rigid2, TransformRecord};
use serde::{Deserialize, Serialize};

use crate::csv_out::write_csv;
use crate::methods::{build, MethodName, MethodsConfig};
use crate::representation::ModelPrep;
use comir_represent::Modality;

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
    method: MethodName,
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
    /// Register the representations exactly as the reference does (`sigmoid`), without
    /// matching the moving representation's histogram to the fixed one's (with --model).
    #[arg(long)]
    no_histogram_match: bool,
    /// Represent every image as the average over its four 90° turns (each turned copy
    /// represented and turned back): exactly rotation-equivariant representations, at four
    /// times the inference time (with --model). Not in the reference.
    #[arg(long, requires = "model")]
    rotation_average: bool,
}

/// The method (and model) that registers every pair of a run.
struct Pipeline {
    registrar: Box<dyn Registrar>,
    model: Option<ModelPrep>,
    label: String,
}

/// One registration: the transform record, the transform, the fixed image as registered (for
/// the warped output's size) and the moving image as loaded.
struct Registered {
    record: TransformRecord,
    transform: Rigid2,
    fixed: Image,
    moving_full: Image,
}

impl Pipeline {
    fn new(args: &RegisterArgs) -> Result<Pipeline> {
        let mut cfg = MethodsConfig::load(args.config.as_deref())?.with_seed(args.seed);
        if args.model.is_some() {
            // Learned representations get their own α-AMD pyramid.
            cfg = cfg.for_representations();
        }
        let registrar = build(args.method, &cfg, args.init == "global")?;
        let model = args
            .model
            .as_deref()
            .map(|dir| {
                ModelPrep::load(
                    dir,
                    args.fixed_modality,
                    &args.device,
                    !args.no_histogram_match,
                    args.rotation_average,
                )
            })
            .transpose()?;
        let label = match &model {
            Some(_) => format!("comir+{}", args.method.as_str()),
            None => args.method.as_str().to_string(),
        };
        Ok(Pipeline {
            registrar,
            model,
            label,
        })
    }

    fn register(&self, fixed_path: &Path, moving_path: &Path) -> Result<Registered> {
        let fixed_full = comir_image::load(fixed_path)?;
        let moving_full = comir_image::load(moving_path)?;
        let start = Instant::now();
        let (fixed, moving) = match &self.model {
            Some(m) => m.prepare(&fixed_full, &moving_full)?,
            None => (fixed_full.to_gray(), moving_full.to_gray()),
        };
        let init = comir_register::centered_identity(&fixed, &moving);
        let outcome = self
            .registrar
            .register(&fixed, &moving, &init)
            .with_context(|| {
                format!(
                    "registering {} to {}",
                    moving_path.display(),
                    fixed_path.display()
                )
            })?;
        let seconds = start.elapsed().as_secs_f64();
        let record = TransformRecord::new(
            &outcome.transform,
            &self.label,
            outcome.metric_value,
            seconds,
        );
        Ok(Registered {
            record,
            transform: outcome.transform,
            fixed,
            moving_full,
        })
    }
}

/// Runs `comir register`.
pub fn run(args: RegisterArgs) -> Result<()> {
    if let Some(manifest) = args.manifest.clone() {
        return if args.merge {
            merge(&manifest)
        } else {
            run_manifest(&args, &manifest)
        };
    }
    let (Some(fixed_path), Some(moving_path), Some(out_path)) =
        (args.fixed.clone(), args.moving.clone(), args.out.clone())
    else {
        bail!("give --fixed, --moving and --out, or --manifest");
    };
    let pipeline = Pipeline::new(&args)?;
    let Registered {
        record,
        transform: t,
        fixed,
        moving_full,
    } = pipeline.register(&fixed_path, &moving_path)?;
    let label = &pipeline.label;
    let seconds = record.seconds;
    let outcome_metric = record.metric_value;

    write_json(&out_path, &record)?;
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
        outcome_metric,
        seconds,
        out_path.display()
    );
    Ok(())
}

/// One row of a manifest.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestRow {
    fixed: PathBuf,
    moving: PathBuf,
    output: PathBuf,
}

/// One row of a shard's (and the merged) results CSV.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct ManifestResult {
    /// Row of the manifest (0-based, header not counted).
    index: usize,
    fixed: String,
    moving: String,
    output: String,
    method: String,
    angle_deg: f64,
    tx: f64,
    ty: f64,
    metric_value: f64,
    seconds: f64,
}

impl ManifestResult {
    fn new(index: usize, row: &ManifestRow, r: &TransformRecord) -> ManifestResult {
        ManifestResult {
            index,
            fixed: row.fixed.display().to_string(),
            moving: row.moving.display().to_string(),
            output: row.output.display().to_string(),
            method: r.method.clone(),
            angle_deg: r.angle_deg,
            tx: r.translation[0],
            ty: r.translation[1],
            metric_value: r.metric_value,
            seconds: r.seconds,
        }
    }
}

/// `K/N` → `(K, N)` with 1 ≤ K ≤ N.
fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let parsed = s
        .split_once('/')
        .and_then(|(k, n)| Some((k.trim().parse().ok()?, n.trim().parse().ok()?)));
    match parsed {
        Some((k, n)) if k >= 1 && k <= n => Ok((k, n)),
        _ => bail!("--shard must be K/N with 1 ≤ K ≤ N (e.g. 3/10), got '{s}'"),
    }
}

fn read_manifest(path: &Path) -> Result<Vec<ManifestRow>> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("{}", path.display()))?;
    let rows = reader
        .deserialize()
        .collect::<std::result::Result<Vec<ManifestRow>, _>>()
        .map_err(|e| {
            anyhow::anyhow!(
                "{}: not a manifest with the columns fixed,moving,output: {e}",
                path.display()
            )
        })?;
    if rows.is_empty() {
        bail!("{}: the manifest lists no pairs", path.display());
    }
    Ok(rows)
}

/// `DIR/STEM.results[.K-of-N].csv` next to the manifest.
fn results_path(manifest: &Path, shard: Option<(usize, usize)>) -> PathBuf {
    let stem = manifest
        .file_stem()
        .map_or_else(|| "manifest".into(), |s| s.to_string_lossy().into_owned());
    let name = match shard {
        Some((k, n)) => format!("{stem}.results.{k}-of-{n}.csv"),
        None => format!("{stem}.results.csv"),
    };
    manifest.with_file_name(name)
}

/// Registers this shard's rows of the manifest; a row whose output already holds a transform
/// is kept (so a killed job resumes).
fn run_manifest(args: &RegisterArgs, manifest: &Path) -> Result<()> {
    let (k, n) = parse_shard(&args.shard)?;
    let rows = read_manifest(manifest)?;
    let base = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
    let at = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let pipeline = Pipeline::new(args)?;
    let mine: Vec<(usize, &ManifestRow)> = rows
        .iter()
        .enumerate()
        .filter(|(i, _)| i % n == k - 1)
        .collect();
    let results_file = results_path(manifest, Some((k, n)));
    let pb = crate::progress::bar(mine.len() as u64, "register");
    let mut results = Vec::new();
    let (mut done_before, mut failed) = (0, 0);
    for (i, row) in mine {
        let out = at(&row.output);
        let record = match comir_transform::read_json(&out) {
            Ok(r) => {
                done_before += 1;
                r
            }
            Err(_) => match pipeline.register(&at(&row.fixed), &at(&row.moving)) {
                Ok(reg) => {
                    if let Some(dir) = out.parent() {
                        std::fs::create_dir_all(dir)
                            .with_context(|| format!("{}", dir.display()))?;
                    }
                    write_json(&out, &reg.record)?;
                    reg.record
                }
                Err(e) => {
                    // One bad pair does not stop a batch: it is reported and left out.
                    pb.suspend(|| eprintln!("row {i}: {e:#}"));
                    failed += 1;
                    pb.inc(1);
                    continue;
                }
            },
        };
        results.push(ManifestResult::new(i, row, &record));
        write_csv(&results_file, &results)?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    write_csv(&results_file, &results)?;
    println!(
        "shard {k}/{n}: {} pairs registered ({done_before} already done), {failed} failed -> {}",
        results.len(),
        results_file.display()
    );
    if failed > 0 {
        bail!("{failed} pair(s) of shard {k}/{n} failed (see above)");
    }
    Ok(())
}

/// Gathers `STEM.results.K-of-N.csv` of every shard into `STEM.results.csv`, in manifest order;
/// every manifest row must appear exactly once.
fn merge(manifest: &Path) -> Result<()> {
    let rows = read_manifest(manifest)?;
    let dir = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    let prefix = results_path(manifest, Some((1, 1)))
        .file_name()
        .map(|f| f.to_string_lossy().replace("1-of-1.csv", ""))
        .unwrap_or_default();
    let mut merged: Vec<ManifestResult> = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with(&prefix) && name.contains("-of-") && name.ends_with(".csv") {
            files += 1;
            let mut r =
                csv::Reader::from_path(&path).with_context(|| format!("{}", path.display()))?;
            for row in r.deserialize() {
                merged.push(row.with_context(|| format!("{}", path.display()))?);
            }
        }
    }
    merged.sort_by_key(|r| r.index);
    let before = merged.len();
    merged.dedup_by_key(|r| r.index);
    if merged.len() != before {
        bail!(
            "{}: shards overlap (a row appears in more than one shard's CSV); merge shards of one split",
            dir.display()
        );
    }
    let missing: Vec<usize> = (0..rows.len())
        .filter(|i| merged.binary_search_by_key(i, |r| r.index).is_err())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{}: {} of {} rows have no result in the {files} shard file(s) (first missing: row {}); run the missing shards first",
            manifest.display(),
            missing.len(),
            rows.len(),
            missing[0]
        );
    }
    let out = results_path(manifest, None);
    write_csv(&out, &merged)?;
    println!(
        "merged {} rows from {files} shard file(s) -> {}",
        merged.len(),
        out.display()
    );
    Ok(())
}
