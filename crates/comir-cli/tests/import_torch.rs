//! `comir import-torch` on weights written by PyTorch (the fixture of comir-model, made by
//! `bench/export_torch_weights.py`): the model folder it writes represents an image as PyTorch
//! did, through `comir represent`.

mod common;

use common::{comir, ok, s};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../comir-model/tests/fixtures/torch-tiny")
        .join(name)
}

const TINY: &str = "
[network]
init_filters = 4
down_blocks = [1, 1]
up_blocks = [1, 1]
bottleneck_layers = 1
growth_rate = 4
compression = 0.75
";

fn f32s(t: &safetensors::tensor::TensorView<'_>) -> Vec<f32> {
    t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn an_imported_pytorch_model_represents_images_as_pytorch_does() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let cfg = d.join("tiny.toml");
    std::fs::write(&cfg, TINY).expect("write");
    let model = d.join("model");
    let out = ok(&comir(&[
        "import-torch",
        "--a",
        s(&fixture("a.safetensors")),
        "--b",
        s(&fixture("b.safetensors")),
        "--config",
        s(&cfg),
        "--out",
        s(&model),
    ]));
    assert!(out.contains("A: 1 → 3 channels, B: 3 → 3"), "{out}");

    let bytes = std::fs::read(fixture("check.safetensors")).expect("check");
    let check = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    for (m, cin) in [("a", 1usize), ("b", 3)] {
        let x = check.tensor(&format!("input_{m}")).expect("input");
        let (h, w) = (x.shape()[2], x.shape()[3]);
        // PyTorch's [1][C][H][W] → an interleaved float TIFF.
        let planar = f32s(&x);
        let mut interleaved = vec![0.0; planar.len()];
        for c in 0..cin {
            for p in 0..h * w {
                interleaved[p * cin + c] = planar[c * h * w + p];
            }
        }
        let img = comir_image::Image::from_vec(w, h, cin, interleaved).expect("image");
        let input = d.join(format!("in_{m}.tif"));
        comir_image::save_tiff_f32(&input, &img).expect("tiff");
        let rep = d.join(format!("rep_{m}.tif"));
        ok(&comir(&[
            "represent",
            "--model",
            s(&model),
            "--modality",
            m,
            "--input",
            s(&input),
            "--out",
            s(&rep),
        ]));
        let got = comir_image::load(&rep).expect("representation");
        assert_eq!((got.width(), got.height(), got.channels()), (w, h, 3));
        let want = f32s(&check.tensor(&format!("output_{m}")).expect("output"));
        // `represent` pads by mirroring where PyTorch pads convolutions with zeros, so only
        // pixels farther from the border than the network's reach (about 20 px) must agree.
        let mut worst = 0.0f32;
        for c in 0..3 {
            for y in 22..h - 22 {
                for x in 22..w - 22 {
                    let p = y * w + x;
                    worst = worst.max((got.data()[p * 3 + c] - want[c * h * w + p]).abs());
                }
            }
        }
        assert!(worst < 1e-4, "modality {m}: max |Δ| {worst}");
    }

    // Weights of another architecture: one clear line naming the file.
    let bad = comir(&[
        "import-torch",
        "--a",
        s(&fixture("a.safetensors")),
        "--b",
        s(&fixture("b.safetensors")),
        "--preset",
        "small",
        "--out",
        s(&d.join("bad")),
    ]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("a.safetensors"), "{err}");
}
