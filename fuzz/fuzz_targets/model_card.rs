//! A model folder's `model.json` from arbitrary bytes, parsed, checked and sized.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = comir_fuzzing::parse_model_card(data);
});
