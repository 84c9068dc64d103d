//! TIFF input and float TIFF output (whole images, or band by band).

use std::io::Write;
use std::path::Path;

use crate::error::{decode_err, unsupported};
use crate::limits::check_size;
use crate::{Error, Image};

/// Decodes a TIFF: 8/16-bit integer or 32/64-bit float samples, gray or RGB (alpha dropped);
/// further gray pages of the same size become channels.
pub(crate) fn decode_tiff(bytes: &[u8], path: &Path, max_bytes: u64) -> Result<Image, Error> {
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
    let data = samples_to_f32(raw).map_err(|other| {
        let kind = match other {
            DecodingResult::U32(_) | DecodingResult::U64(_) => "unsigned integer",
            DecodingResult::I8(_)
            | DecodingResult::I16(_)
            | DecodingResult::I32(_)
            | DecodingResult::I64(_) => "signed integer",
            _ => "other",
        };
        unsupported(
            path,
            format!(
                "unsupported TIFF bit depth: {bits}-bit {kind} samples (use 8/16-bit unsigned integer or 32-bit float)"
            ),
        )
    })?;
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
            let plane = samples_to_f32(page).map_err(|_| {
                unsupported(
                    path,
                    format!("TIFF page {}: unsupported sample type", planes.len() + 1),
                )
            })?;
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

/// TIFF samples as `f32`: 8- and 16-bit unsigned integers scaled to `[0, 1]`, floats as they
/// are; samples of any other type are given back.
fn samples_to_f32(
    raw: tiff::decoder::DecodingResult,
) -> Result<Vec<f32>, tiff::decoder::DecodingResult> {
    use tiff::decoder::DecodingResult;
    Ok(match raw {
        DecodingResult::U8(v) => v.iter().map(|&x| x as f32 / 255.0).collect(),
        DecodingResult::U16(v) => v.iter().map(|&x| x as f32 / 65535.0).collect(),
        DecodingResult::F32(v) => v,
        DecodingResult::F64(v) => v.iter().map(|&x| x as f32).collect(),
        other => return Err(other),
    })
}

/// Saves an image as a 32-bit float TIFF, values unchanged: 1 channel gray, 3 channels RGB, any
/// other count one gray page per channel ([`crate::load`] reads such pages back as channels).
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
        .find(|r| band_rows.is_multiple_of(*r) && r * row_bytes <= 1 << 20)
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
