//! Loading and saving images: formats, round trips, limits and error messages.

use comir_image::io::{
    decode, decode_limited, load, load_gray, save_png, save_tiff_f32, save_tiff_f32_bands,
};
use comir_image::Image;

#[test]
fn banded_float_tiff_reads_back_as_the_whole_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (c, band_rows) in [(1, 4), (3, 3), (1, 100)] {
        let mut whole = Image::zeros(9, 11, c);
        for (i, v) in whole.data_mut().iter_mut().enumerate() {
            *v = (i as f32 - 2.5) * 0.37 + (i % 7) as f32 * 1.5e3;
        }
        let p = dir.path().join(format!("banded-{c}-{band_rows}.tif"));
        save_tiff_f32_bands(&p, (9, 11, c), band_rows, |i| {
            let y0 = i * band_rows;
            let rows = band_rows.min(11 - y0);
            let mut b = Image::zeros(9, rows, c);
            for y in 0..rows {
                for x in 0..9 {
                    for ch in 0..c {
                        b.set(x, y, ch, whole.get(x, y0 + y, ch));
                    }
                }
            }
            Ok(b)
        })
        .expect("save");
        let back = load(&p).expect("load");
        assert_eq!(back.channels(), c);
        assert_eq!(back.data(), whole.data(), "c={c} bands of {band_rows}");
    }
    // A band of the wrong size is refused and leaves no file.
    let p = dir.path().join("bad.tif");
    let e = save_tiff_f32_bands(&p, (9, 11, 1), 4, |_| Ok(Image::zeros(9, 3, 1)))
        .expect_err("wrong band");
    assert!(e.to_string().contains("band 0 is 9×3×1"), "{e}");
    assert!(!p.exists());
}

fn ramp() -> Image {
    Image::from_fn(7, 5, |x, y| (x + 7 * y) as f32 / 34.0)
}

#[test]
fn png_round_trip_is_within_quantisation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("r.png");
    save_png(&p, &ramp()).expect("save");
    let back = load(&p).expect("load");
    assert_eq!((back.width(), back.height(), back.channels()), (7, 5, 1));
    for (a, b) in back.data().iter().zip(ramp().data()) {
        assert!((a - b).abs() <= 0.5 / 255.0 + 1e-6);
    }
}

#[test]
fn float_tiff_round_trip_is_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("r.tif");
    let mut img = ramp();
    img.data_mut()[3] = -12.5; // floats keep their range
    save_tiff_f32(&p, &img).expect("save");
    assert_eq!(load(&p).expect("load"), img);
}

#[test]
fn multi_channel_float_tiff_round_trips_as_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    for c in [2usize, 5] {
        let p = dir.path().join(format!("m{c}.tif"));
        let img = Image::from_vec(
            4,
            3,
            c,
            (0..4 * 3 * c).map(|v| v as f32 * 0.25 - 3.0).collect(),
        )
        .expect("image");
        save_tiff_f32(&p, &img).expect("save");
        assert_eq!(load(&p).expect("load"), img, "{c} channels");
    }
}

#[test]
fn pages_of_another_writer_are_channels_and_mismatched_pages_are_refused() {
    use tiff::encoder::{colortype, TiffEncoder};
    let dir = tempfile::tempdir().expect("tempdir");
    // Two 16-bit pages, written directly with the tiff encoder (as ImageJ stacks are).
    let p = dir.path().join("stack.tif");
    {
        let f = std::fs::File::create(&p).expect("create");
        let mut enc = TiffEncoder::new(f).expect("encoder");
        enc.write_image::<colortype::Gray16>(2, 1, &[0, 65535])
            .expect("page 1");
        enc.write_image::<colortype::Gray16>(2, 1, &[65535, 0])
            .expect("page 2");
    }
    let img = load(&p).expect("stack");
    assert_eq!(img.channels(), 2);
    assert_eq!(img.data(), &[0.0, 1.0, 1.0, 0.0]);
    // A second page of another size: refused, naming the file and the page.
    let q = dir.path().join("mixed.tif");
    {
        let f = std::fs::File::create(&q).expect("create");
        let mut enc = TiffEncoder::new(f).expect("encoder");
        enc.write_image::<colortype::Gray8>(2, 1, &[0, 255])
            .expect("page 1");
        enc.write_image::<colortype::Gray8>(3, 1, &[0, 1, 2])
            .expect("page 2");
    }
    let e = load(&q).expect_err("mixed").to_string();
    assert!(e.contains("mixed.tif") && e.contains("page 2"), "{e}");
}

#[test]
fn sixteen_bit_png_scales_to_unit_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("s.png");
    let buf = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(2, 1, vec![0u16, 65535])
        .expect("buffer");
    buf.save(&p).expect("save");
    assert_eq!(load(&p).expect("load").data(), &[0.0, 1.0]);
}

#[test]
fn jpeg_rgb_loads_as_three_channels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("c.jpg");
    let buf = image::RgbImage::from_fn(16, 8, |x, _| image::Rgb([(x * 16) as u8, 128, 40]));
    buf.save(&p).expect("save");
    let img = load(&p).expect("load");
    assert_eq!((img.width(), img.height(), img.channels()), (16, 8, 3));
    // Lossy, but close: the green channel is flat at 128/255.
    assert!((img.get(7, 4, 1) - 128.0 / 255.0).abs() < 0.03);
    assert_eq!(load_gray(&p).expect("gray").channels(), 1);
}

#[test]
fn rgb_to_gray_uses_bt601_weights() {
    let img = Image::from_vec(1, 1, 3, vec![1.0, 0.5, 0.25]).expect("img");
    let g = img.to_gray();
    assert!((g.data()[0] - (0.299 + 0.587 * 0.5 + 0.114 * 0.25)).abs() < 1e-6);
}

#[test]
fn errors_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.png");
    let msg = load(&missing).expect_err("missing").to_string();
    assert!(msg.contains("missing.png"), "{msg}");

    let truncated = dir.path().join("cut.png");
    save_png(&truncated, &ramp()).expect("save");
    let bytes = std::fs::read(&truncated).expect("read");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let msg = load(&truncated).expect_err("truncated").to_string();
    assert!(msg.contains("cut.png"), "{msg}");

    let junk = dir.path().join("junk.tif");
    std::fs::write(&junk, b"not a tiff at all").expect("write");
    let msg = load(&junk).expect_err("junk").to_string();
    assert!(msg.contains("junk.tif"), "{msg}");
}

#[test]
fn decode_reads_what_load_reads_and_sniffs_the_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (png, tif) = (dir.path().join("r.png"), dir.path().join("r.tif"));
    save_png(&png, &ramp()).expect("save");
    save_tiff_f32(&tif, &ramp()).expect("save");
    for p in [&png, &tif] {
        let bytes = std::fs::read(p).expect("read");
        assert_eq!(
            decode(&bytes, "any-name").expect("decode"),
            load(p).expect("load")
        );
    }
    // A TIFF behind a .png name (and the other way round) is still read for what it is.
    let swapped = dir.path().join("tiff-inside.png");
    std::fs::copy(&tif, &swapped).expect("copy");
    assert_eq!(load(&swapped).expect("load"), ramp());
}

#[test]
fn images_beyond_the_memory_limit_are_refused_before_decoding() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["big.png", "big.tif"] {
        let p = dir.path().join(name);
        if name.ends_with("png") {
            save_png(&p, &ramp()).expect("save");
        } else {
            save_tiff_f32(&p, &ramp()).expect("save");
        }
        let bytes = std::fs::read(&p).expect("read");
        // 7×5 gray floats are 140 bytes.
        decode_limited(&bytes, &p, 140).expect("at the limit");
        let msg = decode_limited(&bytes, &p, 139)
            .expect_err("over the limit")
            .to_string();
        assert!(msg.contains(name) && msg.contains("7×5 pixels"), "{msg}");
        assert!(msg.contains("COMIR_MAX_IMAGE_MIB"), "{msg}");
    }
}

#[test]
fn nan_in_float_tiff_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("nan.tif");
    let mut img = ramp();
    img.data_mut()[0] = f32::NAN;
    save_tiff_f32(&p, &img).expect("save");
    let msg = load(&p).expect_err("nan").to_string();
    assert!(msg.contains("NaN"), "{msg}");
}
