//! `comir eval`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use comir_eval::{evaluate_case, find_pairs, summarize, write_csv, CaseResult, Pair, Protocol};
use comir_image::ops::Border;
use comir_image::Image;

use crate::methods::{build, MethodName, MethodsConfig};
use crate::progress;

/// Arguments of `comir eval`.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  comir eval --pairs data/demo --method mi,aamd --levels 1,2,3,4 --seed 0 --out results.csv"
)]
pub struct EvalArgs {
    /// Folder with A/ and B/ holding aligned pairs with matching file names.
    #[arg(long)]
    pub pairs: PathBuf,
    /// Method(s), comma-separated; all see the same displaced images.
    #[arg(long, value_enum, value_delimiter = ',', required = true)]
    pub method: Vec<MethodName>,
    /// Transformation levels (rotation ±[5(L−1), 5L)°, translation ±[s(L−1), sL) px, s = 7w/300).
    #[arg(long, value_delimiter = ',', default_values_t = [1u32, 2, 3, 4])]
    pub levels: Vec<u32>,
    /// Seed of the displacements and of the methods.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Use only the first N pairs (sorted by name).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Results CSV, rewritten (atomically) after every pair.
    #[arg(long)]
    pub out: PathBuf,
    /// Keep the rows already in --out and run only the missing cases.
    #[arg(long)]
    pub resume: bool,
    /// Fill outside the displaced image by mirroring (MultiRegEval, default) or with zeros.
    #[arg(long, value_parser = ["reflect", "zero"], default_value = "reflect")]
    pub border: String,
    /// Start each local method from a global FFT search.
    #[arg(long, value_parser = ["identity", "global"], default_value = "identity")]
    pub init: String,
    /// Method settings (TOML with sections [aamd], [mi], [features], [global]).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Also write every case (fixed and displaced moving image as float TIFF, true transform in
    /// cases.csv) to this folder, so that other tools can be run on exactly the same cases.
    #[arg(long)]
    pub export_cases: Option<PathBuf>,
}

/// Runs `comir eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let rows = evaluate(&args)?;
    print_summaries(&args.method, &rows);
    println!("results: {}", args.out.display());
    Ok(())
}

/// Prints one table per method.
pub fn print_summaries(methods: &[MethodName], rows: &[CaseResult]) {
    for m in methods {
        println!("{}", summarize(m.as_str(), rows));
    }
}

fn select_pairs(dir: &Path, limit: Option<usize>) -> Result<Vec<Pair>> {
    let mut pairs = find_pairs(dir)?;
    if let Some(n) = limit {
        if n == 0 {
            bail!("--limit must be at least 1");
        }
        pairs.truncate(n);
    }
    Ok(pairs)
}

/// Evaluates every requested method on every pair and level; returns all rows (old and new).
pub fn evaluate(args: &EvalArgs) -> Result<Vec<CaseResult>> {
    let protocol = Protocol {
        levels: args.levels.clone(),
        seed: args.seed,
        border: if args.border == "zero" {
            Border::Zero
        } else {
            Border::Reflect
        },
        ..Protocol::default()
    };
    protocol.validate()?;
    let pairs = select_pairs(&args.pairs, args.limit)?;
    let cfg = MethodsConfig::load(args.config.as_deref())?.with_seed(args.seed);
    let registrars = args
        .method
        .iter()
        .map(|&m| build(m, &cfg, args.init == "global"))
        .collect::<Result<Vec<_>>>()?;

    let mut rows: Vec<CaseResult> = if args.resume && args.out.exists() {
        comir_eval::read_csv(&args.out)?
    } else {
        Vec::new()
    };
    let done: HashSet<(String, u32, String)> = rows
        .iter()
        .map(|r| (r.pair.clone(), r.level, r.method.clone()))
        .collect();

    let mut exporter = args
        .export_cases
        .as_deref()
        .map(CaseExporter::create)
        .transpose()?;
    let total = (pairs.len() * protocol.levels.len() * registrars.len()) as u64;
    let pb = progress::bar(total, "eval");
    let identity = |f: &Image, m: &Image| Ok((f.clone(), m.clone()));
    for pair in &pairs {
        let (a, b) = pair
            .load_gray()
            .with_context(|| format!("loading pair '{}'", pair.name))?;
        for &level in &protocol.levels {
            let case = protocol.case(&pair.name, level, &a, &b);
            if let Some(ex) = exporter.as_mut() {
                ex.add(&pair.name, level, &case)?;
            }
            for reg in &registrars {
                if done.contains(&(pair.name.clone(), level, reg.name().to_string())) {
                    pb.inc(1);
                    continue;
                }
                let r = evaluate_case(&protocol, &pair.name, level, &case, reg.as_ref(), &identity);
                pb.set_message(format!(
                    "{} L{} {}: {:.2} px",
                    pair.name, level, r.method, r.error_px
                ));
                rows.push(r);
                pb.inc(1);
            }
        }
        write_csv(&args.out, &rows)?;
    }
    pb.finish_and_clear();
    write_csv(&args.out, &rows)?;
    Ok(rows)
}

/// Writes evaluation cases for external tools: `<stem>_L<level>_{fixed,moving}.tif` and
/// `cases.csv` with the true fixed-to-moving transform of each.
struct CaseExporter {
    dir: PathBuf,
    lines: Vec<String>,
}

impl CaseExporter {
    fn create(dir: &Path) -> Result<CaseExporter> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create folder", dir.display()))?;
        Ok(CaseExporter {
            dir: dir.to_path_buf(),
            lines: vec![
                "case,pair,level,width,height,fixed,moving,truth_angle_rad,truth_tx,truth_ty,truth_cx,truth_cy,initial_error_px".into(),
            ],
        })
    }

    fn add(&mut self, pair: &str, level: u32, case: &comir_eval::Case) -> Result<()> {
        let stem = Path::new(pair)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(pair)
            .replace([',', ' '], "_");
        let id = format!("{stem}_L{level}");
        let (f, m) = (format!("{id}_fixed.tif"), format!("{id}_moving.tif"));
        comir_image::save_tiff_f32(self.dir.join(&f), &case.fixed)?;
        comir_image::save_tiff_f32(self.dir.join(&m), &case.moving)?;
        let t = case.truth;
        self.lines.push(format!(
            "{id},{},{level},{},{},{f},{m},{:.17e},{:.17e},{:.17e},{:.17e},{:.17e},{:.17e}",
            pair.replace(',', "_"),
            case.fixed.width(),
            case.fixed.height(),
            t.angle_rad,
            t.translation[0],
            t.translation[1],
            t.center[0],
            t.center[1],
            case.initial_error_px
        ));
        let text = self.lines.join("\n") + "\n";
        comir_image::io::write_atomically(self.dir.join("cases.csv"), text.as_bytes())?;
        Ok(())
    }
}
