//! Arbitrary bytes as the CSV of `comir register --manifest`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = comir_fuzzing::parse_manifest(data);
});
