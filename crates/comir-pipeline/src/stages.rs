//! The transform stages of a registration (`--transform rigid,affine`): which transform models run,
//! in which order, each starting where the previous one ended, as elastix chains its parameter
//! maps; or `auto`, which lets the evidence choose between a rigid and a `similarity,affine`
//! result ([`crate::select`]).

use std::str::FromStr;

use anyhow::{bail, Result};
use comir_transform::TransformKind;

/// The name of the deformable stage in a chain.
pub const BSPLINE_STAGE: &str = "bspline";

/// The name of the model selection between rigid and `similarity,affine`.
pub const AUTO: &str = "auto";

/// The stages of a registration, from the most constrained transform to the most flexible: linear
/// stages, optionally followed by a B-spline deformation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransformStages {
    linear: Vec<TransformKind>,
    bspline: bool,
    auto: bool,
}

impl TransformStages {
    /// A single rigid stage: what every method did before non-rigid models existed.
    pub fn rigid() -> TransformStages {
        TransformStages {
            linear: vec![TransformKind::Rigid],
            bspline: false,
            auto: false,
        }
    }

    /// `auto`: a rigid result and a `similarity,affine` one, the second kept only when it explains
    /// the images clearly better ([`crate::select::ModelSelection`]). Its linear stages are those
    /// of the more flexible chain.
    pub fn auto() -> TransformStages {
        TransformStages {
            linear: vec![TransformKind::Similarity, TransformKind::Affine],
            bspline: false,
            auto: true,
        }
    }

    /// The chain itself, without `auto`'s choice: for `auto`, `similarity,affine`.
    pub fn flexible(&self) -> TransformStages {
        TransformStages {
            auto: false,
            ..self.clone()
        }
    }

    /// Whether this is `auto` (the choice between rigid and `similarity,affine`).
    pub fn is_auto(&self) -> bool {
        self.auto
    }

    /// The linear stages, in order (empty for `--transform bspline` alone).
    pub fn kinds(&self) -> &[TransformKind] {
        &self.linear
    }

    /// Whether a B-spline deformation ends the chain.
    pub fn bspline(&self) -> bool {
        self.bspline
    }

    /// The last linear stage (rigid when there is none): the kind of the result's linear part.
    pub fn last(&self) -> TransformKind {
        self.linear.last().copied().unwrap_or(TransformKind::Rigid)
    }

    /// The stages as written on the command line (`rigid,affine,bspline`).
    pub fn spec(&self) -> String {
        if self.auto {
            return AUTO.to_string();
        }
        let mut names: Vec<&str> = self.linear.iter().map(|k| k.name()).collect();
        if self.bspline {
            names.push(BSPLINE_STAGE);
        }
        names.join(",")
    }
}

impl Default for TransformStages {
    fn default() -> Self {
        TransformStages::rigid()
    }
}

impl FromStr for TransformStages {
    type Err = anyhow::Error;

    /// `rigid`, `affine`, `rigid,affine`, `affine,bspline`, …: known kinds, each more flexible
    /// than the one before; `bspline` only last. `auto` stands alone.
    fn from_str(s: &str) -> Result<TransformStages> {
        if s.trim() == AUTO {
            return Ok(TransformStages::auto());
        }
        let mut kinds = Vec::new();
        let mut bspline = false;
        for part in s.split(',').map(str::trim) {
            if bspline {
                bail!("--transform: '{BSPLINE_STAGE}' must be the last stage of the chain");
            }
            if part == BSPLINE_STAGE {
                bspline = true;
                continue;
            }
            if part == AUTO {
                bail!(
                    "--transform: '{AUTO}' chooses between rigid and similarity,affine by itself \
                     and cannot be part of a chain"
                );
            }
            let Some(kind) = TransformKind::from_name(part) else {
                let known: Vec<&str> = TransformKind::ALL.iter().map(|k| k.name()).collect();
                bail!(
                    "--transform: unknown stage '{part}' (expected {AUTO}, {}, {BSPLINE_STAGE}, \
                     or a chain such as rigid,affine,bspline)",
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
        Ok(TransformStages {
            linear: kinds,
            bspline,
            auto: false,
        })
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
        let s: TransformStages = "similarity,affine,bspline".parse().expect("deformable");
        assert!(s.bspline());
        assert_eq!(s.last(), TransformKind::Affine);
        assert_eq!(s.spec(), "similarity,affine,bspline");
        let alone: TransformStages = "bspline".parse().expect("alone");
        assert!(alone.kinds().is_empty() && alone.bspline());
        let e = "bspline,affine"
            .parse::<TransformStages>()
            .expect_err("bspline first");
        assert!(e.to_string().contains("must be the last stage"), "{e}");
        let auto: TransformStages = " auto ".parse().expect("auto");
        assert!(auto.is_auto() && !auto.bspline());
        assert_eq!(auto.spec(), "auto");
        assert_eq!(auto.last(), TransformKind::Affine);
        assert_eq!(auto.flexible().spec(), "similarity,affine");
        assert_eq!(s.flexible(), s);
        assert!(!"similarity,affine"
            .parse::<TransformStages>()
            .expect("chain")
            .is_auto());
        for chain in ["auto,bspline", "rigid,auto"] {
            let e = chain
                .parse::<TransformStages>()
                .expect_err("auto in a chain");
            assert!(
                e.to_string().contains("cannot be part of a chain"),
                "{chain}: {e}"
            );
        }
    }
}
