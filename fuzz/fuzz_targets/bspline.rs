//! Arbitrary bytes as a B-spline transform: a `"kind": "bspline"` record and an ITK `.tfm` composite.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = comir_fuzzing::parse_bspline(data);
});
