//! The weights of the PyTorch reference (`bench/export_torch_weights.py --tiny --in-b 3
//! --out-channels 3 --size 64 --check`) are refused, with the tensor named, by networks of
//! another architecture. (That imported networks compute what PyTorch computed is checked on the
//! engine, comir-engine's `tests/torch_import.rs`, and end to end by `comir import-torch`.)

use std::path::PathBuf;

use burn::tensor::Device;
use comir_model::torch_import::{dense_unet_from_torch, torch_channels};
use comir_model::DenseUNetConfig;

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torch-tiny")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The fixture's architecture, as `TINY` in bench/export_torch_weights.py.
fn tiny(in_channels: usize) -> DenseUNetConfig {
    DenseUNetConfig {
        in_channels,
        out_channels: 3,
        compression: 0.75,
        ..DenseUNetConfig::tiny()
    }
}

#[test]
fn the_channels_are_read_from_the_state_dict() {
    for (file, cin) in [("a", 1), ("b", 3)] {
        let bytes = fixture(&format!("{file}.safetensors"));
        assert_eq!(torch_channels(&bytes).expect("channels"), (cin, 3));
        dense_unet_from_torch(&bytes, &tiny(cin), &Device::flex()).expect("import");
    }
}

#[test]
fn a_state_dict_of_another_architecture_is_refused_with_the_tensor_named() {
    let bytes = fixture("a.safetensors");
    // One block more than the file has.
    let mut deeper = tiny(1);
    deeper.down_blocks = vec![1, 1, 1];
    deeper.up_blocks = vec![1, 1, 1];
    let e = dense_unet_from_torch(&bytes, &deeper, &Device::flex())
        .expect_err("missing")
        .to_string();
    assert!(e.contains("no tensor for comir's"), "{e}");
    // Wider growth: shapes differ.
    let mut wider = tiny(1);
    wider.growth_rate = 8;
    let e = dense_unet_from_torch(&bytes, &wider, &Device::flex())
        .expect_err("shape")
        .to_string();
    assert!(e.contains("has shape"), "{e}");
    // One block fewer: the file has tensors the network does not.
    let mut shallower = tiny(1);
    shallower.down_blocks = vec![1];
    shallower.up_blocks = vec![1];
    let e = dense_unet_from_torch(&bytes, &shallower, &Device::flex())
        .expect_err("extra")
        .to_string();
    assert!(e.contains("does not") || e.contains("has shape"), "{e}");
    // Not safetensors at all.
    let e = dense_unet_from_torch(b"PK\x03\x04 a zip", &tiny(1), &Device::flex())
        .expect_err("zip")
        .to_string();
    assert!(e.contains("not a safetensors file"), "{e}");
}
