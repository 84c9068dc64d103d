//! Reading and writing images.
//!
//! Integer images are scaled to `[0, 1]` (8-bit by 1/255, 16-bit by 1/65535); float TIFFs keep
//! their values. Gray stays one channel, RGB stays three channels (see [`Image::to_gray`] for the
//! weights used when one channel is needed). Writes go to a temporary file in the target folder that
//! is then renamed, so a killed process never leaves a torn file.

use std::io::{BufReader, Write};
use std::path::Path;

use crate::{Error, Image};

fn decode_err(path: &Path, reason: impl ToString) -> Error {
    Error::Decode {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn unsupported(path: &Path, reason: impl ToString) -> Error {
    Error::Unsupported {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Loads an image, keeping its channels (1 for gray, 3 for RGB; alpha is dropped).
///
/// # Errors
/// Names the file and says why: missing, unreadable, truncated, unsupported bit depth, empty, or
/// containing NaN/Inf values.
pub fn load(path: impl AsRef<Path>) -> Result<Image, Error> {
    let path = path.as_ref();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    let img = if ext == "tif" || ext == "tiff" {
        load_tiff(path)?
    } else {
        load_with_image_crate(path)?
    };
    if img.width() == 0 || img.height() == 0 {
        return Err(unsupported(path, "image has no pixels (0 width or height)"));
    }
    if !img.is_finite() {
        return Err(unsupported(path, "image contains NaN or infinite values"));
    }
    Ok(img)
}

/// Loads an image and converts it to one channel with [`Image::to_gray`].
///
/// # Errors
/// As [`load`].
pub fn load_gray(path: impl AsRef<Path>) -> Result<Image, Error> {
    Ok(load(path)?.to_gray())
}

fn load_with_image_crate(path: &Path) -> Result<Image, Error> {
    let file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    let reader = image::ImageReader::new(BufReader::new(file))
        .with_guessed_format()
        .map_err(|e| io_err(path, e))?;
    if reader.format().is_none() {
        return Err(decode_err(path, "unknown image format"));
    }
    let dynimg = reader.decode().map_err(|e| decode_err(path, e))?;
    let (w, h) = (dynimg.width() as usize, dynimg.height() as usize);
    use image::DynamicImage as D;
    let (channels, data): (usize, Vec<f32>) = match dynimg {
        D::ImageLuma8(b) => (1, b.into_raw().iter().map(|&v| v as f32 / 255.0).collect()),
        D::ImageLumaA8(b) => (
            1,
            b.into_raw()
                .chunks_exact(2)
                .map(|p| p[0] as f32 / 255.0)
                .collect(),
        ),
        D::ImageLuma16(b) => (
            1,
            b.into_raw().iter().map(|&v| v as f32 / 65535.0).collect(),
        ),
        D::ImageLumaA16(b) => (
            1,
            b.into_raw()
                .chunks_exact(2)
                .map(|p| p[0] as f32 / 65535.0)
                .collect(),
        ),
        D::ImageRgb8(b) => (3, b.into_raw().iter().map(|&v| v as f32 / 255.0).collect()),
        D::ImageRgb16(b) => (
            3,
            b.into_raw().iter().map(|&v| v as f32 / 65535.0).collect(),
        ),
        D::ImageRgb32F(b) => (3, b.into_raw()),
        other => {
            // RGBA and anything newer: drop alpha through the crate's own conversion.
            let rgb = other.to_rgb32f();
            (3, rgb.into_raw())
        }
    };
    Image::from_vec(w, h, channels, data).map_err(|e| decode_err(path, e))
}

fn load_tiff(path: &Path) -> Result<Image, Error> {
    use tiff::decoder::{Decoder, DecodingResult, Limits};
    use tiff::ColorType;
    let file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    let mut dec = Decoder::new(BufReader::new(file))
        .map_err(|e| decode_err(path, e))?
        .with_limits(Limits::default());
    let (w, h) = dec.dimensions().map_err(|e| decode_err(path, e))?;
    let color = dec.colortype().map_err(|e| decode_err(path, e))?;
    let channels = match color {
        ColorType::Gray(_) => 1,
        ColorType::GrayA(_) => 2,
        ColorType::RGB(_) => 3,
        ColorType::RGBA(_) => 4,
        other => {
            return Err(unsupported(
                path,
                format!("unsupported TIFF colour type {other:?}"),
            ))
        }
    };
    let raw = dec.read_image().map_err(|e| decode_err(path, e))?;
    let data: Vec<f32> = match raw {
        DecodingResult::U8(v) => v.iter().map(|&x| x as f32 / 255.0).collect(),
        DecodingResult::U16(v) => v.iter().map(|&x| x as f32 / 65535.0).collect(),
        DecodingResult::F32(v) => v,
        DecodingResult::F64(v) => v.iter().map(|&x| x as f32).collect(),
        _ => {
            return Err(unsupported(
                path,
                "unsupported TIFF sample format (use 8/16-bit integer or 32-bit float)",
            ))
        }
    };
    let (w, h) = (w as usize, h as usize);
    if data.len() != w * h * channels {
        return Err(decode_err(
            path,
            "pixel data is shorter than the header says",
        ));
    }
    let img = Image::from_vec(w, h, channels, data).map_err(|e| decode_err(path, e))?;
    // Drop alpha: keep gray or RGB.
    Ok(match channels {
        2 => img.channel(0),
        4 => {
            let rgb: Vec<f32> = img
                .data()
                .chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect();
            Image::from_vec(w, h, 3, rgb).map_err(|e| decode_err(path, e))?
        }
        _ => img,
    })
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
///
/// # Errors
/// [`Error::Io`] naming `path`.
pub fn write_atomically(path: impl AsRef<Path>, bytes: &[u8]) -> Result<(), Error> {
    let path = path.as_ref();
    write_file_atomically(path, bytes).map_err(|e| io_err(path, e))
}

/// The one place where comir writes a file: a temporary file in the same folder, flushed to
/// disk, then renamed over `path`, so that a crash at any moment leaves the old file or the new
/// one, never a torn one. The file gets the usual `rw-r--r--` permissions (a bare temporary file
/// would be private to its owner).
///
/// # Errors
/// What the operating system says.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Saves an image as 8-bit PNG. Values are taken as `[0, 1]` and clamped; 1 channel gives gray,
/// 3 channels RGB.
///
/// # Errors
/// Unsupported channel count, or the file cannot be written.
pub fn save_png(path: impl AsRef<Path>, img: &Image) -> Result<(), Error> {
    let path = path.as_ref();
    let to_u8 = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let bytes: Vec<u8> = img.data().iter().map(|&v| to_u8(v)).collect();
    let color = match img.channels() {
        1 => image::ExtendedColorType::L8,
        3 => image::ExtendedColorType::Rgb8,
        n => {
            return Err(Error::Encode {
                path: path.to_path_buf(),
                reason: format!("PNG needs 1 or 3 channels, the image has {n}"),
            })
        }
    };
    let mut buf = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut buf),
        &bytes,
        img.width() as u32,
        img.height() as u32,
        color,
    )
    .map_err(|e| Error::Encode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_atomically(path, &buf)
}

/// Saves an image as a 32-bit float TIFF (1 channel gray or 3 channels RGB), values unchanged.
///
/// # Errors
/// Unsupported channel count, or the file cannot be written.
pub fn save_tiff_f32(path: impl AsRef<Path>, img: &Image) -> Result<(), Error> {
    use tiff::encoder::{colortype, TiffEncoder};
    let path = path.as_ref();
    let enc_err = |e: tiff::TiffError| Error::Encode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut enc = TiffEncoder::new(&mut buf).map_err(enc_err)?;
        let (w, h) = (img.width() as u32, img.height() as u32);
        match img.channels() {
            1 => enc
                .write_image::<colortype::Gray32Float>(w, h, img.data())
                .map_err(enc_err)?,
            3 => enc
                .write_image::<colortype::RGB32Float>(w, h, img.data())
                .map_err(enc_err)?,
            n => {
                return Err(Error::Encode {
                    path: path.to_path_buf(),
                    reason: format!("float TIFF needs 1 or 3 channels, the image has {n}"),
                })
            }
        }
    }
    write_atomically(path, &buf.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp() -> Image {
        Image::from_fn(7, 5, |x, y| (x + 7 * y) as f32 / 34.0)
    }

    #[test]
    fn atomic_writes_replace_the_file_and_are_readable_by_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("out.csv");
        write_atomically(&p, b"old").expect("write");
        write_atomically(&p, b"new").expect("rewrite");
        assert_eq!(std::fs::read(&p).expect("read"), b"new");
        // Only the target is left: no temporary files behind.
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o644);
        }
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
    fn nan_in_float_tiff_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("nan.tif");
        let mut img = ramp();
        img.data_mut()[0] = f32::NAN;
        save_tiff_f32(&p, &img).expect("save");
        let msg = load(&p).expect_err("nan").to_string();
        assert!(msg.contains("NaN"), "{msg}");
    }
}
