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

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    image_seeds(&root.join("decode_image"));
    transform_seeds(&root.join("transform_json"));
    train_seeds(&root.join("train_config"));
    register_seeds(&root.join("register"));
    println!("seeds written to {}", root.display());
}
