//! `comir demo`: the README's first command.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::eval::{evaluate, print_summaries, EvalArgs};
use crate::methods::MethodName;

/// Arguments of `comir demo`.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  comir demo            # all 12 bundled pairs, levels 1-4\n  comir demo --quick    # 3 pairs, levels 1-2"
)]
pub struct DemoArgs {
    /// Folder with A/ and B/ pairs (default: the bundled MNI152 T1/T2 slices in data/demo).
    #[arg(long)]
    pairs: Option<PathBuf>,
    /// Folder for results.csv.
    #[arg(long, default_value = "demo-results")]
    out: PathBuf,
    /// A short run: 3 pairs, levels 1 and 2.
    #[arg(long)]
    quick: bool,
}

fn bundled_data() -> PathBuf {
    let here = PathBuf::from("data/demo");
    if here.join("A").is_dir() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/demo")
}

/// Runs the demo: Mattes MI and the global FFT search on the raw T1/T2 pairs.
pub fn run(args: DemoArgs) -> Result<()> {
    let pairs = args.pairs.unwrap_or_else(bundled_data);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create folder", args.out.display()))?;
    // α-AMD and feature matching need images whose intensities correspond (learned
    // representations); on raw T1/T2 they mostly fail, so the demo shows the multimodal methods.
    let methods = vec![MethodName::Mi, MethodName::Global];
    let eval = EvalArgs {
        pairs: pairs.clone(),
        method: methods.clone(),
        levels: if args.quick {
            vec![1, 2]
        } else {
            vec![1, 2, 3, 4]
        },
        seed: 0,
        limit: if args.quick { Some(3) } else { None },
        out: args.out.join("results.csv"),
        resume: false,
        border: "reflect".into(),
        init: "identity".into(),
        config: None,
        export_cases: None,
        model: None,
        fixed_modality: comir_represent::Modality::A,
        raw_method: Vec::new(),
        device: "cpu".into(),
    };
    println!(
        "comir demo: registering T2 to T1 MR slices from {} (MultiRegEval protocol, raw images)",
        pairs.display()
    );
    let rows = evaluate(&eval)?;
    print_summaries(&super::eval::method_labels(&eval), &rows);
    println!("results: {}", eval.out.display());
    Ok(())
}
