//! `comir eval`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use comir_eval::{
    evaluate_case_with_transform, find_pairs, summarize, write_csv, CaseResult, Pair, Protocol,
};
use comir_image::ops::Border;
use comir_image::Image;

use crate::methods::{build, MethodName, MethodsConfig};
use crate::progress;
use crate::representation::ModelPrep;
use comir_represent::Modality;

/// Which of a model's pairs `comir eval --model` evaluates on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalSplit {
    /// The pairs the model was neither trained nor validated on.
    Test,
    /// The pairs the model was validated on (for choosing settings).
    Validation,
}

/// Arguments of `comir eval`.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  comir eval --pairs data/demo --method mi,aamd --levels 1,2,3,4 --seed 0 --out results.csv\n  \
    comir eval --pairs data/demo --model demo-results/model --method aamd --raw-method mi \\\n      \
    --out results.csv --report report   # then open report/index.html"
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
    /// Register learned representations instead of the raw images (a `comir train` folder).
    /// Pairs the model was trained or validated on are skipped.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// With --model, which pairs: `test` (default), those the model was neither trained nor
    /// validated on; or `validation`, only those it was validated on, to choose settings
    /// without looking at the test pairs.
    #[arg(long, value_enum, default_value = "test", requires = "model")]
    pub split: EvalSplit,
    /// Register representations with the reference's α-AMD settings too, instead of
    /// [`MethodsConfig::for_representations`] (not a flag: the 2023-study replication, which
    /// follows the paper; users set `pyramid_sigmas` in the config instead).
    #[arg(skip)]
    pub reference_aamd: bool,
    /// Which modality the fixed image is (the moving one is the other).
    #[arg(long, default_value = "a")]
    pub fixed_modality: Modality,
    /// Compute device of the model: cpu (default), wgpu or cuda (GPU builds only).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Register the representations exactly as the reference does (`sigmoid`), without
    /// matching the moving representation's histogram to the fixed one's (with --model).
    #[arg(long)]
    pub no_histogram_match: bool,
    /// Represent every image as the average over its four 90° turns (each turned copy
    /// represented and turned back): exactly rotation-equivariant representations, at four
    /// times the inference time (with --model). Not in the reference.
    #[arg(long, requires = "model")]
    pub rotation_average: bool,
    /// Method(s) run on the raw images in the same run, for comparison (with --model).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub raw_method: Vec<MethodName>,
    /// Also write every case (fixed and displaced moving image as float TIFF, true transform in
    /// cases.csv) to this folder, so that other tools can be run on exactly the same cases.
    #[arg(long)]
    pub export_cases: Option<PathBuf>,
    /// Write a visual report (index.html and its PNGs) to this folder: tables, success against
    /// displacement, error scatter, loss curve (with --model) and pictures of sample pairs.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// Pairs shown in pictures in a report (the first ones, at the largest level).
const REPORT_SAMPLES: usize = 3;

/// A case's representations (or why they could not be computed).
type Prepared = std::result::Result<(Image, Image), String>;

/// Runs `comir eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let rows = evaluate(&args)?;
    print_summaries(&method_labels(&args), &rows);
    println!("results: {}", args.out.display());
    Ok(())
}

/// Prints one table per method.
pub fn print_summaries(labels: &[String], rows: &[CaseResult]) {
    for m in labels {
        println!("{}", summarize(m, rows));
    }
}

/// Each method's name in the results (`comir+aamd` on representations), with whether it
/// registers representations.
fn methods(args: &EvalArgs) -> Vec<(String, MethodName, bool)> {
    let on_model = args.model.is_some();
    let mut out: Vec<(String, MethodName, bool)> = args
        .method
        .iter()
        .map(|&m| {
            let label = if on_model {
                format!("comir+{}", m.as_str())
            } else {
                m.as_str().to_string()
            };
            (label, m, on_model)
        })
        .collect();
    if on_model {
        out.extend(
            args.raw_method
                .iter()
                .map(|&m| (m.as_str().to_string(), m, false)),
        );
    }
    out
}

/// The names of the methods as they appear in the results.
pub fn method_labels(args: &EvalArgs) -> Vec<String> {
    methods(args).into_iter().map(|(l, ..)| l).collect()
}

fn limit_pairs(mut pairs: Vec<Pair>, limit: Option<usize>) -> Result<Vec<Pair>> {
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
    // The results folder is made up front: better than failing after the first pair.
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create folder", parent.display()))?;
    }
    if !args.raw_method.is_empty() && args.model.is_none() {
        bail!("--raw-method compares with a model: give --model too (or list the methods in --method)");
    }
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
    let mut pairs = find_pairs(&args.pairs)?;
    if let Some(m) = &model {
        let before = pairs.len();
        match args.split {
            EvalSplit::Test => {
                let seen = m.seen_pairs();
                pairs.retain(|p| !seen.contains(&p.name));
                if before != pairs.len() {
                    println!(
                        "skipping {} of {} pairs: the model was trained or validated on them",
                        before - pairs.len(),
                        before
                    );
                }
                if pairs.is_empty() {
                    bail!(
                        "{}: every pair was used to train the model; evaluate on other pairs",
                        args.pairs.display()
                    );
                }
            }
            EvalSplit::Validation => {
                let validation = m.validation_pairs();
                pairs.retain(|p| validation.contains(&p.name));
                println!(
                    "evaluating the model's {} validation pairs (of {}); its test results are elsewhere",
                    pairs.len(),
                    before
                );
                if pairs.is_empty() {
                    bail!(
                        "{}: none of the model's validation pairs is here",
                        args.pairs.display()
                    );
                }
            }
        }
    }
    let pairs = limit_pairs(pairs, args.limit)?;
    let cfg = MethodsConfig::load(args.config.as_deref())?.with_seed(args.seed);
    let registrars = methods(args)
        .into_iter()
        .map(|(label, m, on_model)| {
            // Learned representations get their own α-AMD pyramid; raw images the reference's.
            let cfg = if on_model && !args.reference_aamd {
                cfg.clone().for_representations()
            } else {
                cfg.clone()
            };
            Ok((label, build(m, &cfg, args.init == "global")?, on_model))
        })
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
    let sample_level = protocol.levels.iter().copied().max().unwrap_or(1);
    let mut samples: Vec<comir_report::SampleCase> = Vec::new();
    let pb = progress::bar(total, "eval");
    let identity = |f: &Image, m: &Image| Ok((f.clone(), m.clone()));
    for pair in &pairs {
        // With a model the images keep their channels (the networks may take RGB); the raw
        // methods always see gray images.
        let (a, b) = if model.is_some() {
            pair.load()
        } else {
            pair.load_gray()
        }
        .with_context(|| format!("loading pair '{}'", pair.name))?;
        check_pair(pair, &a, &b)?;
        for &level in &protocol.levels {
            let case = protocol.case(&pair.name, level, &a, &b);
            if let Some(ex) = exporter.as_mut() {
                ex.add(&pair.name, level, &case)?;
            }
            let todo = |label: &str| !done.contains(&(pair.name.clone(), level, label.to_string()));
            // Representations are computed once per case and their time is added to every
            // method that registers them.
            let mut reps: Option<(Prepared, f64)> = None;
            let gray = (case.fixed.to_gray(), case.moving.to_gray());
            for (label, reg, on_model) in &registrars {
                if !todo(label) {
                    pb.inc(1);
                    continue;
                }
                let mut extra = 0.0;
                let r = match (on_model, &model) {
                    (true, Some(m)) => {
                        let (prepared, secs) = reps.get_or_insert_with(|| {
                            let t = std::time::Instant::now();
                            let p = m
                                .prepare(&case.fixed, &case.moving)
                                .map_err(|e| format!("{e:#}"));
                            (p, t.elapsed().as_secs_f64())
                        });
                        extra = *secs;
                        let prepared = prepared.clone();
                        let prep = move |_: &Image, _: &Image| prepared.clone();
                        evaluate_case_with_transform(
                            &protocol,
                            &pair.name,
                            level,
                            &case,
                            reg.as_ref(),
                            &prep,
                        )
                    }
                    _ => {
                        let gray_case = comir_eval::Case {
                            fixed: gray.0.clone(),
                            moving: gray.1.clone(),
                            ..case.clone()
                        };
                        evaluate_case_with_transform(
                            &protocol,
                            &pair.name,
                            level,
                            &gray_case,
                            reg.as_ref(),
                            &identity,
                        )
                    }
                };
                let (r, found) = r;
                // The first method's result on the first pairs at the largest level: pictures.
                let first_method = registrars.first().is_some_and(|(l, ..)| l == label);
                if args.report.is_some()
                    && first_method
                    && level == sample_level
                    && samples.len() < REPORT_SAMPLES
                {
                    let representations = match &reps {
                        Some((Ok(p), _)) if *on_model => Some(p.clone()),
                        _ => None,
                    };
                    samples.push(comir_report::SampleCase {
                        pair: pair.name.clone(),
                        level,
                        method: label.clone(),
                        fixed: case.fixed.clone(),
                        moving: case.moving.clone(),
                        representations,
                        found,
                        error_px: r.error_px,
                        success: r.success,
                    });
                }
                let r = CaseResult {
                    method: label.clone(),
                    seconds: r.seconds + extra,
                    ..r
                };
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
    if let Some(dir) = &args.report {
        write_report(args, dir, &protocol, &rows, samples)?;
    }
    Ok(rows)
}

/// Writes the visual report of an evaluation.
fn write_report(
    args: &EvalArgs,
    dir: &Path,
    protocol: &Protocol,
    rows: &[CaseResult],
    samples: Vec<comir_report::SampleCase>,
) -> Result<()> {
    let mut facts = vec![
        ("pairs".to_string(), args.pairs.display().to_string()),
        ("methods".to_string(), method_labels(args).join(", ")),
        (
            "levels".to_string(),
            protocol
                .levels
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("seed".to_string(), args.seed.to_string()),
        ("results".to_string(), args.out.display().to_string()),
    ];
    let history = match &args.model {
        Some(model) => {
            facts.push(("model".to_string(), model.display().to_string()));
            let h = model.join("history.csv");
            // A model folder from elsewhere may lack its history: the report goes without.
            h.is_file()
                .then(|| comir_report::read_history(&h))
                .transpose()?
        }
        None => None,
    };
    let labels = method_labels(args);
    let page = comir_report::write_eval_report(
        dir,
        &comir_report::EvalReport {
            title: if args.model.is_some() {
                "comir: registration through learned representations".into()
            } else {
                "comir: registration evaluation".into()
            },
            facts,
            rows,
            methods: labels,
            samples,
            history,
            success_frac: protocol.success_frac,
        },
    )?;
    println!("report: {}", page.display());
    Ok(())
}

/// The pairs of `dir`, every one loaded and checked as `eval` checks them (sizes match, at
/// least 16×16, not constant): for callers about to spend minutes before evaluating.
pub fn checked_pairs(dir: &Path) -> Result<Vec<Pair>> {
    let pairs = find_pairs(dir)?;
    for pair in &pairs {
        let (a, b) = pair
            .load_gray()
            .with_context(|| format!("loading pair '{}'", pair.name))?;
        check_pair(pair, &a, &b)?;
    }
    Ok(pairs)
}

/// Refuses a pair that no method could register — too small or constant — before any work,
/// naming the file (a method error later only marks the case as failed).
fn check_pair(pair: &Pair, a: &Image, b: &Image) -> Result<()> {
    let min = comir_register::MIN_SIZE;
    for (img, path) in [(a, &pair.a), (b, &pair.b)] {
        if img.width() < min || img.height() < min {
            bail!(
                "pair '{}': {} is {}×{}; registration needs at least {min}×{min} pixels",
                pair.name,
                path.display(),
                img.width(),
                img.height()
            );
        }
        if img.is_constant() {
            bail!(
                "pair '{}': {} is constant: there is no structure to register",
                pair.name,
                path.display()
            );
        }
    }
    Ok(())
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
        let path = self.dir.join("cases.csv");
        comir_fs::write_atomically(&path, text.as_bytes())
            .with_context(|| path.display().to_string())?;
        Ok(())
    }
}
