//! Arbitrary bytes as a PyTorch `state_dict` (safetensors) for `comir import-torch`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = comir_fuzzing::import_safetensors(data);
});
