//! Reading and writing images.
//!
//! Integer images are scaled to `[0, 1]` (8-bit by 1/255, 16-bit by 1/65535); float TIFFs keep
//! their values. Gray stays one channel, RGB stays three channels (see [`Image::to_gray`] for the
//! weights used when one channel is needed). Writes go through [`comir_fs::write_atomically`]: a
//! temporary file in the target folder that is then renamed, so a killed process never leaves a
//! torn file.

use std::path::Path;

use crate::error::{decode_err, io_err, unsupported};
use crate::limits::check_size;
use crate::{nifti_io, tiff_io, Error, Image};

pub use crate::limits::{max_image_bytes, DEFAULT_MAX_IMAGE_BYTES};
pub use crate::tiff_io::{save_tiff_f32, save_tiff_f32_bands};

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
        if let Some((file, slice)) = path.to_str().and_then(nifti_io::split_slice_suffix) {
            let file = Path::new(file);
            let bytes = std::fs::read(file).map_err(|e| io_err(file, e))?;
            let img = nifti_io::decode_nifti(&bytes, file, Some(slice), max_image_bytes())
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
    let is_nifti =
        bytes.get(344..348) == Some(b"n+1\0") || path.to_str().is_some_and(nifti_io::is_nifti_name);
    let img = if is_tiff {
        tiff_io::decode_tiff(bytes, path, max_bytes)?
    } else if is_nifti {
        nifti_io::decode_nifti(bytes, path, None, max_bytes)?
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
