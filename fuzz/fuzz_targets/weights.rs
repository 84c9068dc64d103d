//! Arbitrary bytes as `weights.bpk`, loaded through comir's loader into tiny networks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = comir_fuzzing::load_weights(data);
});
