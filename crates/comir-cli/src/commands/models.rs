//! `comir models`.

use anyhow::Result;
use comir_pipeline::bundled::BUNDLED;

/// Arguments of `comir models`.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  comir models\n  \
    comir register --fixed t1.png --moving t2.png --model mni152-t1t2 --method aamd --out t.json")]
pub struct ModelsArgs {}

/// Runs `comir models`: one line per bundled model, its name and what it is for.
pub fn run(_args: ModelsArgs) -> Result<()> {
    let width = BUNDLED.iter().map(|m| m.name.len()).max().unwrap_or(0);
    for m in BUNDLED {
        println!("{:width$}  {}", m.name, m.purpose);
    }
    println!("\nGive a name wherever a model folder is asked for (--model NAME).");
    Ok(())
}
