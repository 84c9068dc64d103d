//! `comir train --config` TOML from arbitrary bytes, parsed and validated.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = comir_fuzzing::parse_train_config(data);
});
