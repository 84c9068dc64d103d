//! Transform JSON (`comir register --out`) from arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = comir_fuzzing::parse_transform(data);
});
