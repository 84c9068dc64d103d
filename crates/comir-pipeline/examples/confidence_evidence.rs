//! Writes the evidence behind the registration confidence for every case of the evaluation
//! protocol, with the truth: the table the confidence model's coefficients are fitted on.
//!
//! ```sh
//! cargo run --release -p comir-pipeline --example confidence_evidence -- \
//!     PAIRS_DIR LIMIT OUT.csv [METHOD] [DISPLACEMENTS] [TRANSFORMS]
//! ```
//!
//! `DISPLACEMENTS` defaults to `rigid+affine`, `TRANSFORMS` to `rigid+similarity,affine` (chains
//! separated by `+`), `METHOD` to `mi`. Every displacement × transform combination runs on the
//! first `LIMIT` pairs (by name), levels 1–4, seed 0, as `comir eval` would.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use comir_eval::{find_pairs, DisplacementKind, Protocol};
use comir_pipeline::methods::{build, MethodName, MethodsConfig};
use comir_pipeline::TransformStages;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        bail!("usage: confidence_evidence PAIRS_DIR LIMIT OUT.csv [METHOD] [DISPLACEMENTS] [TRANSFORMS]");
    }
    let dir = PathBuf::from(&args[0]);
    let limit: usize = args[1].parse().context("LIMIT")?;
    let out = PathBuf::from(&args[2]);
    let method = args.get(3).map_or("mi", String::as_str);
    let method = MethodName::ALL
        .into_iter()
        .find(|m| m.as_str() == method)
        .with_context(|| format!("unknown method {method}"))?;
    let displacements = args.get(4).map_or("rigid+affine", String::as_str);
    let transforms = args
        .get(5)
        .map_or("rigid+similarity,affine", String::as_str);
    let dataset = dir
        .file_name()
        .map_or("pairs".to_string(), |n| n.to_string_lossy().into_owned());
    let mut pairs = find_pairs(&dir)?;
    pairs.truncate(limit);
    let mut file = std::fs::File::create(&out).with_context(|| out.display().to_string())?;
    writeln!(
        file,
        "dataset,pair,level,displacement,transform,method,error_px,width,success,reg_seconds,\
         conf_seconds,overlap,mi,tile_shift,tile_lost,tiles,log_scale,shear,confidence,metric_value,\
         edge_shift,edge_shift_affine,edge_agreement"
    )?;
    for displacement in displacements.split('+') {
        let displacement = match displacement {
            "rigid" => DisplacementKind::Rigid,
            "affine" => DisplacementKind::Affine,
            other => bail!("unknown displacement {other}"),
        };
        let protocol = Protocol {
            displacement,
            ..Protocol::default()
        };
        for spec in transforms.split('+') {
            let stages: TransformStages = spec.parse()?;
            let cfg = MethodsConfig::load(None)?.with_seed(protocol.seed);
            let registrar = build(method, &cfg, false, &stages)?;
            for pair in &pairs {
                let (a, b) = pair.load_gray()?;
                for &level in &protocol.levels {
                    let case = protocol.case(&pair.name, level, &a, &b);
                    let init = comir_register::centered_identity(&case.fixed, &case.moving);
                    let t0 = Instant::now();
                    let Ok(o) = registrar.register(&case.fixed, &case.moving, &init) else {
                        eprintln!("{} L{level}: the method failed", pair.name);
                        continue;
                    };
                    let reg_seconds = t0.elapsed().as_secs_f64();
                    let t1 = Instant::now();
                    let a = comir_confidence::assess(&case.fixed, &case.moving, &o.transform);
                    let conf_seconds = t1.elapsed().as_secs_f64();
                    let error = case.error(&o.composite());
                    let width = case.fixed.width();
                    let e = a.evidence;
                    writeln!(
                        file,
                        "{dataset},{},{level},{},{},{},{error},{width},{},{reg_seconds},\
                         {conf_seconds},{},{},{},{},{},{},{},{},{},{},{},{}",
                        pair.name,
                        displacement.name(),
                        spec.replace(',', ";"),
                        method.as_str(),
                        error <= protocol.success_frac * width as f64,
                        e.overlap,
                        e.mi,
                        e.tile_shift,
                        e.tile_lost,
                        e.tiles,
                        e.log_scale,
                        e.shear,
                        a.confidence,
                        o.metric_value,
                        e.edge_shift,
                        e.edge_shift_affine,
                        e.edge_agreement
                    )?;
                }
            }
        }
    }
    Ok(())
}
