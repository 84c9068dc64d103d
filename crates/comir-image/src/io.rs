//! Reading and writing images.
//!
//! Integer images are scaled to `[0, 1]` (8-bit by 1/255, 16-bit by 1/65535); float TIFFs keep
//! their values. Gray stays one channel, RGB stays three channels (see [`Image::to_gray`] for the
//! weights used when one channel is needed). Writes go through [`comir_fs::write_atomically`]: a
//! temporary file in the target folder that is then renamed, so a killed process never leaves a
//! torn file.

use std::io::Write;
use std::path::Path;

use crate::{Error, Image};

pub(crate) fn decode_err(path: &Path, reason: impl ToString) -> Error {
    Error::Decode {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

pub(crate) fn unsupported(path: &Path, reason: impl ToString) -> Error {
    Error::Unsupported {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn io_err(path: &Path, error: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Default limit on the memory an image may take once decoded to floats: 2 GiB.
pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 2 << 30;

/// The limit on a decoded image's size in bytes (as `f32` values): the environment variable
/// `COMIR_MAX_IMAGE_MIB` (mebibytes) when set to a number, else [`DEFAULT_MAX_IMAGE_BYTES`].
pub fn max_image_bytes() -> u64 {
    std::env::var("COMIR_MAX_IMAGE_MIB")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DEFAULT_MAX_IMAGE_BYTES, |mib| mib.saturating_mul(1 << 20))
}

/// Loads an image, keeping its channels (1 for gray, 3 for RGB; alpha is dropped).
///
/// # Errors
/// Names the file and says why: missing, unreadable, truncated, unsupported bit depth, empty,
/// larger than [`max_image_bytes`], or containing NaN/Inf values.
///
/// NIfTI (`.nii`, `.nii.gz`): a 2-D image, or a slice of a 3-D volume chosen by a suffix,
/// `t1.nii.gz:z=90` (the middle z-slice without one); see [`crate::nifti_io`].
pub fn load(path: impl AsRef<Path>) -> Result<Image, Error> {
    let path = path.as_ref();
    if !path.exists() {
        if let Some((file, slice)) = path.to_str().and_then(crate::nifti_io::split_slice_suffix) {
            let file = Path::new(file);
            let bytes = std::fs::read(file).map_err(|e| io_err(file, e))?;
            let img = crate::nifti_io::decode_nifti(&bytes, file, Some(slice), max_image_bytes())
                .map_err(|e| rename_err(e, path))?;
            return check_decoded(img, path);
        }
    }
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    decode_limited(&bytes, path, max_image_bytes())
}

/// The error naming `path` (the name with its slice suffix) instead of the bare file.
fn rename_err(e: Error, path: &Path) -> Error {
    match e {
        Error::Decode { reason, .. } => decode_err(path, reason),
        Error::Unsupported { reason, .. } => unsupported(path, reason),
        other => other,
    }
}

/// Loads an image and converts it to one channel with [`Image::to_gray`].
///
/// # Errors
/// As [`load`].
pub fn load_gray(path: impl AsRef<Path>) -> Result<Image, Error> {
    Ok(load(path)?.to_gray())
}

/// Decodes an image held in memory, as [`load`] does a file; `name` only labels the errors.
/// The format is recognised from the bytes (TIFF, PNG, JPEG), not from the name.
///
/// # Errors
/// As [`load`], naming `name`.
pub fn decode(bytes: &[u8], name: impl AsRef<Path>) -> Result<Image, Error> {
    decode_limited(bytes, name, max_image_bytes())
}

/// [`decode`] with an explicit limit on the decoded size: an image whose header promises more
/// than `max_bytes` bytes of `f32` values is refused before anything is allocated.
///
/// # Errors
/// As [`load`], naming `name`.
pub fn decode_limited(
    bytes: &[u8],
    name: impl AsRef<Path>,
    max_bytes: u64,
) -> Result<Image, Error> {
    let path = name.as_ref();
    let is_tiff = bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*");
    // NIfTI-1 single file: magic "n+1\0" at byte 344 (or a .nii/.nii.gz name: gzip hides it).
    let is_nifti = bytes.get(344..348) == Some(b"n+1\0")
        || path.to_str().is_some_and(crate::nifti_io::is_nifti_name);
    let img = if is_tiff {
        decode_tiff(bytes, path, max_bytes)?
    } else if is_nifti {
        crate::nifti_io::decode_nifti(bytes, path, None, max_bytes)?
    } else {
        decode_with_image_crate(bytes, path, max_bytes)?
    };
    check_decoded(img, path)
}

/// The checks every decoded image passes: pixels exist and are finite.
fn check_decoded(img: Image, path: &Path) -> Result<Image, Error> {
    if img.width() == 0 || img.height() == 0 {
        return Err(unsupported(path, "image has no pixels (0 width or height)"));
    }
    if !img.is_finite() {
        return Err(unsupported(path, "image contains NaN or infinite values"));
    }
    Ok(img)
}

/// Refuses an image of `w × h × channels` values when its floats would exceed `max_bytes`.
pub(crate) fn check_size(
    path: &Path,
    w: u64,
    h: u64,
    channels: u64,
    max_bytes: u64,
) -> Result<(), Error> {
    let need = w
        .saturating_mul(h)
        .saturating_mul(channels)
        .saturating_mul(4);
    if need > max_bytes {
        let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
        return Err(unsupported(
            path,
            format!(
                "image is {w}×{h} pixels ({:.1} GiB as floats), more than the limit of {:.1} GiB; \
                 crop or downscale it (or raise COMIR_MAX_IMAGE_MIB)",
                gib(need),
                gib(max_bytes)
            ),
        ));
    }
    Ok(())
}

fn decode_with_image_crate(bytes: &[u8], path: &Path, max_bytes: u64) -> Result<Image, Error> {
    use image::ImageDecoder;
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| io_err(path, e))?;
    if reader.format().is_none() {
        return Err(decode_err(path, "unknown image format"));
    }
    // The decoder's own buffer (up to 16 bytes per pixel for 32-bit float RGBA) is bounded too.
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_bytes.saturating_mul(2));
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(|e| decode_err(path, e))?;
    let (w, h) = decoder.dimensions();
    let channels = u64::from(decoder.color_type().channel_count()).min(3);
    check_size(path, w.into(), h.into(), channels, max_bytes)?;
    let dynimg = image::DynamicImage::from_decoder(decoder).map_err(|e| decode_err(path, e))?;
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

fn decode_tiff(bytes: &[u8], path: &Path, max_bytes: u64) -> Result<Image, Error> {
    use tiff::decoder::{Decoder, DecodingResult, Limits};
    use tiff::ColorType;
    let mut limits = Limits::default();
    // Up to 8 bytes per sample (64-bit floats) before conversion to f32.
    limits.decoding_buffer_size =
        usize::try_from(max_bytes.saturating_mul(2)).unwrap_or(usize::MAX);
    let mut dec = Decoder::new(std::io::Cursor::new(bytes))
        .map_err(|e| decode_err(path, e))?
        .with_limits(limits);
    let (w, h) = dec.dimensions().map_err(|e| decode_err(path, e))?;
    let color = dec.colortype().map_err(|e| decode_err(path, e))?;
    let (channels, bits): (u64, u8) = match color {
        ColorType::Gray(b) => (1, b),
        ColorType::GrayA(b) => (2, b),
        ColorType::RGB(b) => (3, b),
        ColorType::RGBA(b) => (4, b),
        other => {
            return Err(unsupported(
                path,
                format!("unsupported TIFF colour type {other:?}"),
            ))
        }
    };
    if !matches!(bits, 8 | 16 | 32 | 64) {
        return Err(unsupported(
            path,
            format!(
                "unsupported TIFF bit depth: {bits} bits per sample (use 8/16-bit unsigned integer or 32-bit float)"
            ),
        ));
    }
    check_size(path, w.into(), h.into(), channels, max_bytes)?;
    let raw = dec.read_image().map_err(|e| decode_err(path, e))?;
    let data: Vec<f32> = match raw {
        DecodingResult::U8(v) => v.iter().map(|&x| x as f32 / 255.0).collect(),
        DecodingResult::U16(v) => v.iter().map(|&x| x as f32 / 65535.0).collect(),
        DecodingResult::F32(v) => v,
        DecodingResult::F64(v) => v.iter().map(|&x| x as f32).collect(),
        other => {
            let kind = match other {
                DecodingResult::U32(_) | DecodingResult::U64(_) => "unsigned integer",
                DecodingResult::I8(_)
                | DecodingResult::I16(_)
                | DecodingResult::I32(_)
                | DecodingResult::I64(_) => "signed integer",
                _ => "other",
            };
            return Err(unsupported(
                path,
                format!(
                    "unsupported TIFF bit depth: {bits}-bit {kind} samples (use 8/16-bit unsigned integer or 32-bit float)"
                ),
            ));
        }
    };
    let (w, h) = (w as usize, h as usize);
    if data.len() != w * h * channels as usize {
        return Err(decode_err(
            path,
            "pixel data is shorter than the header says",
        ));
    }
    let img = Image::from_vec(w, h, channels as usize, data).map_err(|e| decode_err(path, e))?;
    // Further pages of the same size, gray: channels (the layout comir writes for
    // representations of other than 1 or 3 channels, and ImageJ's for multi-channel images).
    if channels == 1 && dec.more_images() {
        let mut planes = vec![img.data().to_vec()];
        while dec.more_images() {
            dec.next_image().map_err(|e| decode_err(path, e))?;
            let same = dec.dimensions().map_err(|e| decode_err(path, e))? == (w as u32, h as u32)
                && matches!(dec.colortype(), Ok(ColorType::Gray(_)));
            if !same {
                return Err(unsupported(
                    path,
                    format!(
                        "TIFF page {} differs from the first in size or colour type; comir reads \
                         the pages of a TIFF as channels, all gray and {w}×{h}",
                        planes.len() + 1
                    ),
                ));
            }
            check_size(path, w as u64, h as u64, planes.len() as u64 + 1, max_bytes)?;
            let page = dec.read_image().map_err(|e| decode_err(path, e))?;
            let plane: Vec<f32> = match page {
                DecodingResult::U8(v) => v.iter().map(|&x| x as f32 / 255.0).collect(),
                DecodingResult::U16(v) => v.iter().map(|&x| x as f32 / 65535.0).collect(),
                DecodingResult::F32(v) => v,
                DecodingResult::F64(v) => v.iter().map(|&x| x as f32).collect(),
                _ => {
                    return Err(unsupported(
                        path,
                        format!("TIFF page {}: unsupported sample type", planes.len() + 1),
                    ))
                }
            };
            if plane.len() != w * h {
                return Err(decode_err(path, "a page is shorter than the header says"));
            }
            planes.push(plane);
        }
        if planes.len() > 1 {
            let c = planes.len();
            let mut data = vec![0.0f32; w * h * c];
            for (k, plane) in planes.iter().enumerate() {
                for (p, v) in plane.iter().enumerate() {
                    data[p * c + k] = *v;
                }
            }
            return Image::from_vec(w, h, c, data).map_err(|e| decode_err(path, e));
        }
        return Ok(img);
    }
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
    comir_fs::write_atomically(path, &buf).map_err(|e| io_err(path, e))
}

/// Saves an image as a 32-bit float TIFF, values unchanged: 1 channel gray, 3 channels RGB, any
/// other count one gray page per channel ([`load`] reads such pages back as channels).
///
/// # Errors
/// The file cannot be written.
pub fn save_tiff_f32(path: impl AsRef<Path>, img: &Image) -> Result<(), Error> {
    use tiff::encoder::{colortype, TiffEncoder};
    let path = path.as_ref();
    let to_io = |e: tiff::TiffError| std::io::Error::other(e.to_string());
    // Encoded straight into the temporary file: no second copy of the image in memory.
    comir_fs::write_atomically_with(path, |w| {
        let mut enc = TiffEncoder::new(w).map_err(to_io)?;
        let (width, height) = (img.width() as u32, img.height() as u32);
        match img.channels() {
            1 => enc
                .write_image::<colortype::Gray32Float>(width, height, img.data())
                .map_err(to_io)?,
            3 => enc
                .write_image::<colortype::RGB32Float>(width, height, img.data())
                .map_err(to_io)?,
            // Other channel counts: one gray page per channel (read back as channels).
            n => {
                for c in 0..n {
                    enc.write_image::<colortype::Gray32Float>(width, height, img.channel(c).data())
                        .map_err(to_io)?;
                }
            }
        }
        Ok(())
    })
    .map_err(|e| Error::Encode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Saves a `width × height` float TIFF (1 channel gray or 3 RGB) whose rows are produced band by
/// band, top to bottom, so that the whole image is never in memory: `band(i)` returns band `i`
/// (`width` wide, `band_rows` tall, the last one possibly shorter) until `height` rows are
/// written. The file is written atomically, as [`save_tiff_f32`] does, and reads back the same.
///
/// # Errors
/// A band of the wrong size, a channel count other than 1 or 3, an error `band` returns, or the
/// file cannot be written.
pub fn save_tiff_f32_bands(
    path: impl AsRef<Path>,
    (width, height, channels): (usize, usize, usize),
    band_rows: usize,
    mut band: impl FnMut(usize) -> std::io::Result<Image>,
) -> Result<(), Error> {
    use tiff::encoder::{colortype, TiffEncoder};
    let path = path.as_ref();
    let encode_error = |reason: String| Error::Encode {
        path: path.to_path_buf(),
        reason,
    };
    if !matches!(channels, 1 | 3) || band_rows == 0 || width == 0 || height == 0 {
        return Err(encode_error(format!(
            "a banded float TIFF needs 1 or 3 channels and a non-empty size (got {width}×{height}, \
             {channels} channels, bands of {band_rows} rows)"
        )));
    }
    // Strips of at most ~1 MiB that divide a band, so that every band is whole strips.
    let row_bytes = width * channels * 4;
    let strip_rows = (1..=band_rows)
        .rev()
        .find(|r| band_rows % r == 0 && r * row_bytes <= 1 << 20)
        .unwrap_or(1);
    let layout = BandLayout {
        width,
        height,
        channels,
        band_rows,
        strip_rows,
    };
    comir_fs::write_atomically_with(path, |w| {
        let mut enc = TiffEncoder::new(w).map_err(tiff_to_io)?;
        if channels == 1 {
            write_bands::<_, colortype::Gray32Float>(&mut enc, layout, &mut band)
        } else {
            write_bands::<_, colortype::RGB32Float>(&mut enc, layout, &mut band)
        }
    })
    .map_err(|e| encode_error(e.to_string()))
}

#[derive(Clone, Copy)]
struct BandLayout {
    width: usize,
    height: usize,
    channels: usize,
    band_rows: usize,
    strip_rows: usize,
}

fn tiff_to_io(e: tiff::TiffError) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// The body of [`save_tiff_f32_bands`] for one colour type: checks each band's size and writes
/// it as strips.
fn write_bands<W, C>(
    enc: &mut tiff::encoder::TiffEncoder<W>,
    l: BandLayout,
    band: &mut dyn FnMut(usize) -> std::io::Result<Image>,
) -> std::io::Result<()>
where
    W: Write + std::io::Seek,
    C: tiff::encoder::colortype::ColorType<Inner = f32>,
{
    let mut img = enc
        .new_image::<C>(l.width as u32, l.height as u32)
        .map_err(tiff_to_io)?;
    img.rows_per_strip(l.strip_rows as u32)
        .map_err(tiff_to_io)?;
    for i in 0..l.height.div_ceil(l.band_rows) {
        let rows = l.band_rows.min(l.height - i * l.band_rows);
        let b = band(i)?;
        if (b.width(), b.height(), b.channels()) != (l.width, rows, l.channels) {
            return Err(std::io::Error::other(format!(
                "band {i} is {}×{}×{}, expected {}×{rows}×{}",
                b.width(),
                b.height(),
                b.channels(),
                l.width,
                l.channels
            )));
        }
        for strip in b.data().chunks(l.strip_rows * l.width * l.channels) {
            img.write_strip(strip).map_err(tiff_to_io)?;
        }
    }
    img.finish().map_err(tiff_to_io)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
