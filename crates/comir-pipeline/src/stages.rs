//! The transform stages of a registration (`--transform rigid,affine`): which transform models run,
//! in which order, each starting where the previous one ended, as elastix chains its parameter
//! maps.

use std::str::FromStr;

use anyhow::{bail, Result};
use comir_transform::TransformKind;

/// The stages of a registration, from the most constrained transform to the most flexible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransformStages(Vec<TransformKind>);

impl TransformStages {
    /// A single rigid stage: what every method did before non-rigid models existed.
    pub fn rigid() -> TransformStages {
        TransformStages(vec![TransformKind::Rigid])
    }

    /// The stages, in order.
    pub fn kinds(&self) -> &[TransformKind] {
        &self.0
    }

    /// The last (most flexible) stage: the kind of the result.
    pub fn last(&self) -> TransformKind {
        self.0.last().copied().unwrap_or(TransformKind::Rigid)
    }

    /// The stages as written on the command line (`rigid,affine`).
    pub fn spec(&self) -> String {
        self.0
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Default for TransformStages {
    fn default() -> Self {
        TransformStages::rigid()
    }
}

impl FromStr for TransformStages {
    type Err = anyhow::Error;

    /// `rigid`, `affine`, `rigid,affine`, …: known kinds, each more flexible than the one before.
    fn from_str(s: &str) -> Result<TransformStages> {
        let mut kinds = Vec::new();
        for part in s.split(',').map(str::trim) {
            let Some(kind) = TransformKind::from_name(part) else {
                let known: Vec<&str> = TransformKind::ALL.iter().map(|k| k.name()).collect();
                bail!(
                    "--transform: unknown stage '{part}' (expected {}, or a chain such as \
                     rigid,affine)",
                    known.join(", ")
                );
            };
            if let Some(&prev) = kinds.last() {
                if kind <= prev {
                    bail!(
                        "--transform: stage '{kind}' after '{prev}': each stage must be more \
                         flexible than the one before (rigid, similarity, affine)"
                    );
                }
            }
            kinds.push(kind);
        }
        Ok(TransformStages(kinds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_parse_in_order_and_bad_ones_are_named() {
        let s: TransformStages = "rigid, affine".parse().expect("chain");
        assert_eq!(s.kinds(), &[TransformKind::Rigid, TransformKind::Affine]);
        assert_eq!(s.spec(), "rigid,affine");
        assert_eq!(s.last(), TransformKind::Affine);
        let e = "rigid,warp"
            .parse::<TransformStages>()
            .expect_err("unknown");
        assert!(e.to_string().contains("unknown stage 'warp'"), "{e}");
        let e = "affine,rigid"
            .parse::<TransformStages>()
            .expect_err("order");
        assert!(e.to_string().contains("more flexible"), "{e}");
        assert!("".parse::<TransformStages>().is_err());
    }
}
