//! Shared by the test binaries of comir-train.

use comir_data::{PatchConfig, PatchSampler};

/// A sampler over `pairs` generated phantom pairs of `side × side` px, drawing `patch × patch`
/// patches with the reference augmentation.
pub fn phantom_sampler(pairs: u64, side: usize, patch: usize) -> PatchSampler {
    let pairs = (0..pairs)
        .map(|i| {
            let (a, b) = comir_testkit::phantom_pair(side, side, i);
            (format!("p{i}"), a, b)
        })
        .collect();
    let cfg = PatchConfig {
        size: patch,
        ..PatchConfig::default()
    };
    PatchSampler::new(pairs, cfg).expect("sampler")
}
