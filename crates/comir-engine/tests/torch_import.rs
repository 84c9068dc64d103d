//! Weights written by PyTorch (the benchmark's reference DenseUNet, `bench/export_torch_weights.py
//! --tiny --in-b 3 --out-channels 3 --size 64 --check`) imported into comir (`comir_model`'s
//! import, whose fixture this is) compute on the engine what PyTorch computed on the same inputs,
//! in eval mode.

use std::path::PathBuf;

use burn::tensor::Device;
use comir_engine::FastDenseUNet;
use comir_model::torch_import::{dense_unet_from_torch, torch_channels};
use comir_model::DenseUNetConfig;
use safetensors::SafeTensors;

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../comir-model/tests/fixtures/torch-tiny")
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

fn tensor(st: &SafeTensors<'_>, key: &str) -> (Vec<usize>, Vec<f32>) {
    let t = st.tensor(key).expect(key);
    let v = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (t.shape().to_vec(), v)
}

#[test]
fn imported_pytorch_networks_reproduce_pytorch_outputs() {
    let check_bytes = fixture("check.safetensors");
    let check = SafeTensors::deserialize(&check_bytes).expect("check file");
    for (file, cin) in [("a", 1), ("b", 3)] {
        let bytes = fixture(&format!("{file}.safetensors"));
        assert_eq!(torch_channels(&bytes).expect("channels"), (cin, 3));
        let imported = dense_unet_from_torch(&bytes, &tiny(cin), &Device::flex()).expect("import");
        let net = FastDenseUNet::from_burn(&imported, &tiny(cin)).expect("engine");
        let (shape, x) = tensor(&check, &format!("input_{file}"));
        let (_, want) = tensor(&check, &format!("output_{file}"));
        let (h, w) = (shape[2], shape[3]);
        let got = net
            .forward_inference(&x, 1, h, w)
            .expect("forward")
            .representation;
        assert_eq!(got.len(), want.len());
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let worst = got
            .iter()
            .zip(&want)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(scale > 1e-3, "a trivial output tests nothing");
        assert!(
            worst <= 1e-4 * scale.max(1.0),
            "network {file}: max |Δ| {worst} (scale {scale})"
        );
        // The same weights through burn: the model folder's format.
        let burn = net.to_burn(&Default::default()).expect("to burn");
        let back = FastDenseUNet::from_burn(&burn, &tiny(cin)).expect("from burn");
        assert_eq!(back.params(), net.params());
        assert_eq!(back.running_stats(), net.running_stats());
    }
}
