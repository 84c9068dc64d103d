//! Image decoding (PNG, TIFF, JPEG) from arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = comir_fuzzing::decode_image(data);
});
