//! What comir's fuzz targets (`fuzz/`, run with `cargo fuzz`) call, one function per target.
//!
//! Each function takes the fuzzer's bytes and returns what the library said, `Ok` or `Err`. A
//! panic, an abort or a hang is a bug; so is an `Ok` that breaks a promise of the API (an empty
//! image, a non-finite transform), which the functions check with `assert!`. The stable test
//! `tests/corpus.rs` replays every committed corpus file and crash reproducer through the same
//! functions, so `cargo test --workspace` guards what fuzzing found.

use comir_image::Image;
use comir_register::{Chained, MultiStart, Outcome, Registrar};
use comir_transform::TransformRecord;

/// The largest decoded image the fuzz targets accept (64 MiB of floats): larger headers are
/// refused by the same check that refuses images beyond `COMIR_MAX_IMAGE_MIB`, without the
/// allocation that would slow fuzzing down.
pub const FUZZ_MAX_IMAGE_BYTES: u64 = 64 << 20;

/// Target `decode_image`: decodes the bytes as an image file (PNG, TIFF, JPEG; recognised from
/// the bytes) as `comir_image::load` does after reading a file.
///
/// # Errors
/// What the decoder says; the message names the input `fuzz-input`.
pub fn decode_image(data: &[u8]) -> Result<Image, comir_image::Error> {
    let img = comir_image::decode_limited(data, "fuzz-input", FUZZ_MAX_IMAGE_BYTES)?;
    assert!(
        img.width() > 0 && img.height() > 0,
        "an empty image decoded"
    );
    assert!(
        img.channels() == 1 || img.channels() == 3,
        "decoded {} channels",
        img.channels()
    );
    assert!(img.is_finite(), "a non-finite image decoded");
    // What every command does next.
    let gray = img.to_gray();
    assert_eq!((gray.width(), gray.height()), (img.width(), img.height()));
    Ok(img)
}

/// Target `transform_json`: parses the bytes as a transform record (`comir register --out`), as
/// `comir_transform::read_json` does after reading a file, and uses it.
///
/// # Errors
/// Not UTF-8, or what the parser says.
pub fn parse_transform(data: &[u8]) -> Result<TransformRecord, String> {
    let text = std::str::from_utf8(data).map_err(|e| format!("not UTF-8: {e}"))?;
    let rec = comir_transform::parse_json(text, "fuzz-input").map_err(|e| e.to_string())?;
    let t = rec.transform();
    let p = t.apply([1.0, 2.0]);
    assert!(
        p.iter().all(|v| v.is_finite()),
        "a finite record maps to {p:?}"
    );
    let _ = t.inverse().map(|inv| inv.matrix3());
    let _ = comir_transform::itk_tfm_text(&t);
    Ok(rec)
}

/// Target `train_config`: parses the bytes as the TOML of `comir train --config` and validates
/// the configuration, as `comir train` does before it touches any data.
///
/// # Errors
/// Not UTF-8, a TOML or schema error, or a value `validate` refuses.
#[cfg(feature = "train")]
pub fn parse_train_config(data: &[u8]) -> Result<comir_train::run::TrainConfig, String> {
    let text = std::str::from_utf8(data).map_err(|e| format!("not UTF-8: {e}"))?;
    let config = comir_train::run::TrainConfig::from_toml_str(text)?;
    config.validate().map_err(|e| e.to_string())?;
    // What the run builds from a valid configuration before training.
    for channels in [1, 3] {
        let net = config.network_for(channels);
        net.validate().map_err(|e| e.to_string())?;
        let _ = net.required_multiple();
    }
    Ok(config)
}

/// Target `model_card`: parses the bytes as a model folder's `model.json`, as
/// `comir_model::store::read_card` does after reading the file, and sizes the networks.
///
/// # Errors
/// Not UTF-8, or what the card check says (format, version, schema, limits, budget).
#[cfg(feature = "model")]
pub fn parse_model_card(data: &[u8]) -> Result<comir_model::ModelCard, String> {
    let text = std::str::from_utf8(data).map_err(|e| format!("not UTF-8: {e}"))?;
    let card = comir_model::store::parse_card(text)?;
    for net in [&card.network_a, &card.network_b] {
        let count = net.param_count().map_err(|e| e.to_string())?;
        assert!(count > 0, "an accepted network has no parameters");
        let _ = net.required_multiple();
    }
    Ok(card)
}

/// The networks the weights and safetensors targets load into: tiny ones (as the fuzz seeds'
/// files), so that a run costs microseconds.
#[cfg(feature = "model")]
pub fn fuzz_network(in_channels: usize, out_channels: usize) -> comir_model::DenseUNetConfig {
    comir_model::DenseUNetConfig {
        in_channels,
        out_channels,
        compression: 0.75,
        ..comir_model::DenseUNetConfig::tiny()
    }
}

/// Target `weights`: loads the bytes as a model folder's `weights.bpk` into the networks of
/// [`fuzz_network`]`(1, 1)` through comir's loader (`NetworkPair::load_bytes`, what
/// `Model::load` and a resumed training run use).
///
/// # Errors
/// What the loader says (not burnpack, a tensor missing, extra, mis-shaped, not f32, or
/// holding a NaN or infinite value).
#[cfg(feature = "model")]
pub fn load_weights(data: &[u8]) -> Result<(), String> {
    let device = burn::tensor::Device::flex();
    let config = fuzz_network(1, 1);
    let pair = comir_model::NetworkPair {
        a: config.init(&device),
        b: config.init(&device),
    };
    pair.load_bytes(data).map(drop)
}

/// Target `safetensors`: imports the bytes as a PyTorch `state_dict` (safetensors) as
/// `comir import-torch` does: channels from the file, then the network of [`fuzz_network`]
/// with those channels.
///
/// # Errors
/// What the import says (not safetensors, channels beyond the limits, a tensor missing,
/// extra, mis-shaped, not a float, or holding a NaN or infinite value).
#[cfg(feature = "model")]
pub fn import_safetensors(data: &[u8]) -> Result<(), String> {
    use comir_model::torch_import::{dense_unet_from_torch, torch_channels};
    let device = burn::tensor::Device::flex();
    let (cin, d) = torch_channels(data).map_err(|e| e.to_string())?;
    dense_unet_from_torch(data, &fuzz_network(cin, d), &device)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Target `manifest`: reads the bytes as the CSV of `comir register --manifest`, row by row
/// with a limit of 1000 rows.
///
/// # Errors
/// What the manifest reader says.
pub fn parse_manifest(data: &[u8]) -> Result<usize, String> {
    comir_data::manifest::for_each_row(data, 1000, |_, row| {
        let _ = (
            row.fixed.is_absolute(),
            row.moving.parent(),
            row.output.extension(),
        );
        Ok(())
    })
}

/// Target `bspline`: parses the bytes as a `"kind": "bspline"` transform record and as an ITK
/// `.tfm` composite (the two files `comir transform-points` and `comir register --init` read),
/// and maps a point and a small grid through what they accept.
///
/// # Errors
/// Not UTF-8, or both parsers' messages.
pub fn parse_bspline(data: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(data).map_err(|e| format!("not UTF-8: {e}"))?;
    let json = comir_transform::parse_json(text, "fuzz-input").map(|r| r.composite());
    let tfm = comir_transform::parse_itk_composite(text, "fuzz-input");
    let mut ok = false;
    for c in [&json, &tfm].into_iter().flatten() {
        ok = true;
        for p in [[0.0, 0.0], [1.5, -2.0], [17.0, 9.25]] {
            let _ = c.apply(p);
        }
        let _ = c.inverse_apply([3.0, 4.0]);
        let _ = c.itk_tfm_text();
    }
    if ok {
        return Ok(());
    }
    match (json, tfm) {
        (Err(a), Err(b)) => Err(format!("as JSON: {a}; as .tfm: {b}")),
        _ => Ok(()),
    }
}

/// The largest image side the registration target builds: 24² is above every method's minimum
/// (16²) and small enough for a million runs in an hour or so on one core.
pub const MAX_SIDE: usize = 24;

/// Registration methods the target runs, with settings small enough for about a thousand runs
/// a second on 24² images.
fn registrar(method: u8, chained: bool) -> Box<dyn Registrar> {
    let aamd = || comir_aamd::AlphaAmdConfig {
        pyramid_factors: vec![2, 1],
        pyramid_sigmas: Some(vec![1.0, 0.0]),
        iterations: vec![4, 2],
        step_lengths: vec![[2.0, 1.0], [1.0, 0.2]],
        starts_rad: vec![0.0, 0.3],
        sampling_fraction: 0.1,
        ..Default::default()
    };
    let mi = || comir_mi::MattesMiConfig {
        shrink_factors: vec![2, 1],
        max_iterations: 4,
        max_samples: 128,
        min_level_size: 8,
        ..Default::default()
    };
    let features = || comir_features::FeatureConfig {
        max_features: 20,
        ransac_iterations: 20,
        ..Default::default()
    };
    let global = || comir_globalign::GlobalSearchConfig {
        // Two labels: 4 label pairs to correlate per angle instead of 64.
        labels: 2,
        angles: 4,
        refine_angles: 5,
        candidates: 1,
        coarse_side: 16,
        finest_side: 16,
        ..Default::default()
    };
    let build = |m: u8| -> Box<dyn Registrar> {
        match m % 4 {
            0 => Box::new(comir_aamd::AlphaAmd::new(aamd()).expect("valid α-AMD settings")),
            1 => Box::new(MultiStart {
                inner: comir_mi::MattesMi::new(mi()).expect("valid MI settings"),
                angles_rad: vec![0.0, 0.4],
            }),
            2 => Box::new(
                comir_features::FeatureRegistrar::new(features()).expect("valid feature settings"),
            ),
            _ => Box::new(
                comir_globalign::GlobalSearch::new(global()).expect("valid global settings"),
            ),
        }
    };
    let local = build(method);
    if chained && method % 4 != 3 {
        Box::new(Chained {
            first: build(3),
            then: local,
        })
    } else {
        local
    }
}

/// An image of `w × h` pixels whose values come from `bytes` (cycled; zeros when empty).
fn image_from(bytes: &[u8], w: usize, h: usize, offset: usize) -> Image {
    let mut k = offset;
    Image::from_fn(w, h, |_, _| {
        let v = if bytes.is_empty() {
            0.0
        } else {
            f32::from(bytes[k % bytes.len()]) / 255.0
        };
        k += 1;
        v
    })
}

/// Target `register`: builds a fixed and a moving image from the bytes and registers them.
///
/// Layout: byte 0 picks the method (α-AMD, MI with two starts, features, global search), byte 1
/// holds flags (bit 0: start from a global search; bit 1: put a NaN into the moving image;
/// bit 2: start from a rotated, shifted transform), bytes 2–5 are the fixed and moving widths and
/// heights (1 + b mod 24), the rest are pixel values in 1/255 steps, cycled. Fewer than 6 bytes
/// give `None`.
///
/// # Errors
/// What the method says (too small, constant, non-finite image, too few features, ...).
pub fn register_bytes(data: &[u8]) -> Option<Result<Outcome, comir_register::Error>> {
    if data.len() < 6 {
        return None;
    }
    let side = |b: u8| 1 + usize::from(b) % MAX_SIDE;
    let (fw, fh, mw, mh) = (side(data[2]), side(data[3]), side(data[4]), side(data[5]));
    let pixels = &data[6..];
    let fixed = image_from(pixels, fw, fh, 0);
    let mut moving = image_from(pixels, mw, mh, fw * fh);
    let flags = data[1];
    if flags & 2 != 0 {
        let n = moving.data().len();
        moving.data_mut()[usize::from(data[0]) % n] = f32::NAN;
    }
    let mut init = comir_register::centered_identity(&fixed, &moving);
    if flags & 4 != 0 {
        let mut mu = init.params();
        mu[0] += f64::from(data[0]) * 0.05;
        mu[1] += f64::from(data[2]) / 8.0;
        mu[2] -= f64::from(data[3]) / 8.0;
        init.set_params(&mu);
    }
    let result = registrar(data[0], flags & 1 != 0).register(&fixed, &moving, &init);
    if let Ok(o) = &result {
        let t = &o.transform;
        let finite = t.params().iter().chain(&t.center()).all(|v| v.is_finite());
        assert!(
            finite,
            "a registration returned a non-finite transform: {t:?}"
        );
    }
    Some(result)
}
