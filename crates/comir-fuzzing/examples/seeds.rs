//! Writes the hand-made seed inputs of the fuzz targets into `fuzz/corpus/TARGET/`.
//!
//! `cargo run -p comir-fuzzing --example seeds` (from the repository root). Names starting with
//! `ok-` must be accepted and `err-` refused (checked by `tests/corpus.rs`); libFuzzer's own finds,
//! minimised with `cargo fuzz cmin`, sit beside them under hash names.

use std::path::{Path, PathBuf};

use comir_image::Image;
use comir_testkit::bad_files;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn encoded(save: impl Fn(&Path) -> Result<(), comir_image::Error>) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("x");
    save(&p).expect("encode");
    std::fs::read(&p).expect("read back")
}

fn image_seeds(dir: &Path) {
    let ramp = Image::from_fn(8, 6, |x, y| (x + 8 * y) as f32 / 47.0);
    let png = encoded(|p| comir_image::save_png(p, &ramp));
    write(dir, "ok-gray8.png", &png);
    write(dir, "err-truncated.png", &png[..png.len() / 2]);
    let rgb = Image::from_vec(
        4,
        4,
        3,
        (0..48).map(|v| v as f32 / 47.0).collect::<Vec<f32>>(),
    )
    .expect("rgb");
    write(
        dir,
        "ok-rgb8.png",
        &encoded(|p| comir_image::save_png(p, &rgb)),
    );
    write(
        dir,
        "ok-float.tif",
        &encoded(|p| comir_image::save_tiff_f32(p, &ramp)),
    );
    let mut nan = ramp.clone();
    nan.data_mut()[5] = f32::NAN;
    write(
        dir,
        "err-nan.tif",
        &encoded(|p| comir_image::save_tiff_f32(p, &nan)),
    );
    let gray16: Vec<u8> = (0u16..16).flat_map(|v| (v * 4000).to_le_bytes()).collect();
    write(
        dir,
        "ok-gray16.tif",
        &bad_files::tiff_with(4, 4, 16, 1, 1, &gray16),
    );
    write(dir, "err-u32.tif", &bad_files::tiff_u32());
    write(dir, "err-1bit.tif", &bad_files::tiff_1bit());
    write(
        dir,
        "err-huge.png",
        &bad_files::png_claiming(100_000, 100_000),
    );
    write(
        dir,
        "err-huge.tif",
        &bad_files::tiff_claiming(100_000, 100_000),
    );
    write(dir, "ok-tiny.png", &bad_files::png_claiming(2, 1));
    let jpeg = {
        let buf = image::RgbImage::from_fn(16, 8, |x, y| {
            image::Rgb([(x * 16) as u8, (y * 30) as u8, 40])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        buf.write_to(&mut out, image::ImageFormat::Jpeg)
            .expect("jpeg");
        out.into_inner()
    };
    write(dir, "ok-rgb.jpg", &jpeg);
    write(dir, "err-empty", b"");
    write(dir, "err-not-an-image", b"hello, world");
}

fn transform_seeds(dir: &Path) {
    let t = comir_transform::Rigid2::new(0.1, [1.5, -2.0], [10.0, 11.0]);
    let rec = comir_transform::TransformRecord::new(&t.into(), "mi", -0.5, 0.01);
    let json = serde_json::to_string_pretty(&rec).expect("json");
    write(dir, "ok-record.json", json.as_bytes());
    write(
        dir,
        "err-kind.json",
        json.replace("\"rigid\"", "\"perspective\"").as_bytes(),
    );
    let a = comir_transform::Affine2 {
        matrix: [[0.7, 0.05], [-0.02, 0.75]],
        translation: [30.0, -12.0],
        center: [10.0, 11.0],
    };
    let affine = comir_transform::TransformRecord::new(&a.into(), "mi", -0.4, 0.02);
    let affine = serde_json::to_string_pretty(&affine).expect("json");
    write(dir, "ok-affine.json", affine.as_bytes());
    write(
        dir,
        "err-reflecting.json",
        affine.replacen("0.7,", "-0.7,", 1).as_bytes(),
    );
    write(
        dir,
        "err-truncated.json",
        &json.as_bytes()[..json.len() / 2],
    );
    write(
        dir,
        "err-unknown-key.json",
        json.replacen('{', "{\"extra\": 1,", 1).as_bytes(),
    );
    write(
        dir,
        "err-huge-number.json",
        json.replace("1.5", "1e400").as_bytes(),
    );
    write(dir, "err-empty.json", b"");
}

fn train_seeds(dir: &Path) {
    write(dir, "ok-empty.toml", b"");
    write(
        dir,
        "ok-tiny.toml",
        br#"out_channels = 2
[network]
init_filters = 4
down_blocks = [1, 1]
up_blocks = [1, 1]
bottleneck_layers = 1
growth_rate = 4
[train]
critic = "cosine"
tau = 0.1
optimizer = { kind = "adam", lr = 0.001, weight_decay = 0.0 }
[patches]
size = 32
[schedule]
batch = 4
checkpoint_every = 1
[split]
test_fraction = 0.2
"#,
    );
    write(
        dir,
        "ok-histology.toml",
        b"preset = \"histology\"\n[schedule]\nsteps = 10\n",
    );
    write(dir, "err-negative-tau.toml", b"[train]\ntau = -0.5\n");
    write(dir, "err-zero-batch.toml", b"[schedule]\nbatch = 0\n");
    write(dir, "err-critic.toml", b"[train]\ncritic = \"psnr\"\n");
    write(
        dir,
        "err-unknown-key.toml",
        b"[train]\nlearning_rate = 0.1\n",
    );
    write(dir, "err-patch-size.toml", b"[patches]\nsize = 100\n");
    write(
        dir,
        "err-deep-network.toml",
        b"[network]\ndown_blocks = [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]\nup_blocks = [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]\n",
    );
}

fn register_seeds(dir: &Path) {
    // Byte 0 method, byte 1 flags, bytes 2-5 sizes (1 + b mod 24), then pixels.
    let (a, b) = comir_testkit::phantom_pair(20, 20, 3);
    let pixels: Vec<u8> = a
        .data()
        .iter()
        .chain(b.data())
        .map(|v| (v * 255.0) as u8)
        .collect();
    for (m, name) in ["aamd", "mi", "features", "global"].iter().enumerate() {
        let mut data = vec![m as u8, 0, 19, 19, 19, 19];
        data.extend_from_slice(&pixels);
        write(dir, &format!("phantom-{name}"), &data);
        data[1] = 1 | 4; // chained after a global search, from a rotated start
        write(dir, &format!("phantom-{name}-chained"), &data);
    }
    write(dir, "err-constant", &[1, 0, 19, 19, 19, 19, 7]);
    write(dir, "err-1x1", &[0, 0, 0, 0, 19, 19, 1, 2, 3, 4, 5]);
    let mut nan = vec![1u8, 2, 19, 19, 19, 19];
    nan.extend_from_slice(&pixels);
    write(dir, "err-nan", &nan);
}

fn model_card_seeds(dir: &Path) {
    use comir_model::{DenseUNetConfig, InputTransform, ModelCard};
    let net = comir_fuzzing::fuzz_network(1, 1);
    let card = |a: DenseUNetConfig| {
        let c = ModelCard::new(a, net.clone(), InputTransform::default());
        serde_json::to_string_pretty(&c).expect("json")
    };
    write(dir, "ok-tiny.json", card(net.clone()).as_bytes());
    for (name, a) in [
        (
            "err-width-1e9.json",
            DenseUNetConfig {
                init_filters: 1_000_000_000,
                growth_rate: 1_000_000_000,
                ..net.clone()
            },
        ),
        (
            "err-depth-60.json",
            DenseUNetConfig {
                down_blocks: vec![1; 60],
                up_blocks: vec![1; 60],
                ..net.clone()
            },
        ),
        (
            "err-channels-1e6.json",
            DenseUNetConfig {
                in_channels: 1_000_000,
                ..net.clone()
            },
        ),
        (
            "err-budget.json",
            DenseUNetConfig {
                init_filters: 1024,
                growth_rate: 1024,
                down_blocks: vec![128; 16],
                up_blocks: vec![128; 16],
                ..net.clone()
            },
        ),
    ] {
        write(dir, name, card(a).as_bytes());
    }
    write(
        dir,
        "err-version.json",
        card(net.clone())
            .replace("\"format_version\": 1", "\"format_version\": 99")
            .as_bytes(),
    );
}

fn weights_seeds(dir: &Path) {
    use burn::module::{Module, ModuleMapper, Param};
    use burn::tensor::{Device, Tensor};
    use comir_model::{DenseUNetConfig, NetworkPair};
    /// Sets every value of the head's weight to NaN.
    struct NanHead(Vec<String>);
    impl ModuleMapper for NanHead {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if self.0.join(".") == "head.weight" {
                p.map(|t| t.mul_scalar(f32::NAN))
            } else {
                p
            }
        }
    }
    let device = Device::flex();
    device.seed(1);
    let pair = |c: &DenseUNetConfig| NetworkPair {
        a: c.init(&device),
        b: c.init(&device),
    };
    let net = comir_fuzzing::fuzz_network(1, 1);
    let ok = pair(&net).to_bytes().expect("bytes");
    write(dir, "ok-tiny.bpk", &ok);
    write(dir, "err-truncated.bpk", &ok[..ok.len() / 2]);
    let wider = DenseUNetConfig {
        growth_rate: 5,
        ..net.clone()
    };
    write(
        dir,
        "err-shapes.bpk",
        &pair(&wider).to_bytes().expect("bytes"),
    );
    let mut nan = pair(&net);
    nan.a = nan.a.map(&mut NanHead(Vec::new()));
    write(dir, "err-nan.bpk", &nan.to_bytes().expect("bytes"));
    write(dir, "err-empty.bpk", b"");
}

fn safetensors_seeds(dir: &Path) {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../comir-model/tests/fixtures/torch-tiny/a.safetensors");
    let ok = std::fs::read(fixture).expect("fixture");
    write(dir, "ok-tiny.safetensors", &ok);
    write(dir, "err-truncated.safetensors", &ok[..ok.len() / 2]);
    let mut huge = ok.clone();
    huge[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    write(dir, "err-header-2e40.safetensors", &huge);
    let header_len = u64::from_le_bytes(ok[..8].try_into().expect("8 bytes")) as usize;
    let header = std::str::from_utf8(&ok[8..8 + header_len]).expect("utf-8");
    // The same element count in another shape: only the shape check can refuse it.
    let transposed = header.replace("\"shape\":[4,6,3,3]", "\"shape\":[6,4,3,3]");
    assert_ne!(transposed, header);
    let mut shapes = ok.clone();
    shapes[8..8 + header_len].copy_from_slice(transposed.as_bytes());
    write(dir, "err-shapes.safetensors", &shapes);
    let meta: serde_json::Value = serde_json::from_str(header).expect("header");
    let start = meta["conv_init.bias"]["data_offsets"][0]
        .as_u64()
        .expect("offset") as usize;
    let mut nan = ok.clone();
    let at = 8 + header_len + start;
    nan[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    write(dir, "err-nan.safetensors", &nan);
}

fn manifest_seeds(dir: &Path) {
    write(
        dir,
        "ok-rows.csv",
        b"fixed,moving,output\nimg/a0.png,img/b0.png,out/t0.json\n/abs/a1.png,b1.png,t1.json\n",
    );
    write(
        dir,
        "ok-quoted.csv",
        b"fixed,moving,output\n\"a,1.png\",b.png,t.json\n",
    );
    write(dir, "err-columns.csv", b"fixed,moving\na.png,b.png\n");
    write(
        dir,
        "err-short-row.csv",
        b"fixed,moving,output\na.png,b.png\n",
    );
    write(dir, "err-no-rows.csv", b"fixed,moving,output\n");
}

fn bspline_seeds(dir: &Path) {
    use comir_transform::{BSpline2, Composite2, Rigid2, Transform2, TransformRecord};
    let field = BSpline2::random_smooth(24, 20, 8.0, 2.0, 3).expect("field");
    let c = Composite2 {
        linear: Transform2::Rigid(Rigid2::new(0.1, [1.0, -2.0], [12.0, 10.0])),
        deformation: Some(field),
    };
    let rec = TransformRecord::from_composite(&c, "mi-bspline", 0.0, 0.0);
    let json = serde_json::to_string_pretty(&rec).expect("json");
    write(dir, "ok-record.json", json.as_bytes());
    write(dir, "ok-composite.tfm", c.itk_tfm_text().as_bytes());
    let mut v: serde_json::Value = serde_json::from_str(&json).expect("value");
    v["bspline"]["grid_size"] = serde_json::json!([31623, 31623]);
    write(dir, "err-grid-1e9.json", v.to_string().as_bytes());
    write(
        dir,
        "err-grid-1e9.tfm",
        b"#Insight Transform File V1.0\n#Transform 0\nTransform: BSplineTransform_double_2_2\n\
          Parameters: 0 0\nFixedParameters: 1e9 1e9 0 0 1 1 1 0 0 1\n",
    );
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    image_seeds(&root.join("decode_image"));
    transform_seeds(&root.join("transform_json"));
    train_seeds(&root.join("train_config"));
    register_seeds(&root.join("register"));
    model_card_seeds(&root.join("model_card"));
    weights_seeds(&root.join("weights"));
    safetensors_seeds(&root.join("safetensors"));
    manifest_seeds(&root.join("manifest"));
    bspline_seeds(&root.join("bspline"));
    println!("seeds written to {}", root.display());
}
