//! Bytes of broken or hostile image files, for the tests of bad input.

/// CRC-32 (ISO-HDLC, as PNG chunks use it).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// A PNG whose (valid, checksummed) header claims `width × height` 8-bit gray pixels, followed
/// by a tiny image-data chunk and the end: a decoder that trusts the header allocates
/// `width × height` bytes before it finds out.
pub fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8 bits, gray, deflate, filter 0, no interlace
    png_chunk(&mut out, b"IHDR", &ihdr);
    // zlib stream of three zero bytes: one filter byte and two black pixels (a whole 2×1 image).
    png_chunk(
        &mut out,
        b"IDAT",
        &[
            0x78, 0x9c, 0x63, 0x60, 0x60, 0x00, 0x00, 0x00, 0x03, 0x00, 0x01,
        ],
    );
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A little-endian baseline TIFF with one strip whose header claims `width × height` pixels of
/// `samples` samples of `bits` bits each (`sample_format`: 1 unsigned, 2 signed, 3 float), and
/// whose pixel data is `data`.
pub fn tiff_with(
    width: u32,
    height: u32,
    bits: u16,
    samples: u16,
    sample_format: u16,
    data: &[u8],
) -> Vec<u8> {
    const SHORT: u16 = 3;
    const LONG: u16 = 4;
    let photometric = if samples >= 3 { 2 } else { 1 };
    let entries: [(u16, u16, u32); 10] = [
        (256, LONG, width),
        (257, LONG, height),
        (258, SHORT, u32::from(bits)),
        (259, SHORT, 1), // no compression
        (262, SHORT, photometric),
        (273, LONG, 0), // strip offset, patched below
        (277, SHORT, u32::from(samples)),
        (278, LONG, height),
        (279, LONG, data.len() as u32),
        (339, SHORT, u32::from(sample_format)),
    ];
    let ifd_len = 2 + entries.len() * 12 + 4;
    let data_offset = (8 + ifd_len) as u32;
    let mut out = b"II*\0".to_vec();
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, kind, value) in entries {
        let value = if tag == 273 { data_offset } else { value };
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        if kind == SHORT {
            out.extend_from_slice(&(value as u16).to_le_bytes());
            out.extend_from_slice(&[0, 0]);
        } else {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// A TIFF whose header claims `width × height` 8-bit gray pixels, with 16 bytes of data.
pub fn tiff_claiming(width: u32, height: u32) -> Vec<u8> {
    tiff_with(width, height, 8, 1, 1, &[0; 16])
}

/// A valid 4×4 gray TIFF with 32-bit unsigned integer samples (a bit depth comir does not read).
pub fn tiff_u32() -> Vec<u8> {
    let data: Vec<u8> = (0u32..16).flat_map(|v| (v * 1000).to_le_bytes()).collect();
    tiff_with(4, 4, 32, 1, 1, &data)
}

/// A valid 16×16 1-bit (bilevel) gray TIFF.
pub fn tiff_1bit() -> Vec<u8> {
    tiff_with(16, 16, 1, 1, 1, &[0b1010_1010; 32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_png_reference_value() {
        // The CRC of an IEND chunk body, as every PNG file ends with it.
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
    }

    #[test]
    fn a_small_claimed_png_decodes() {
        let img = comir_image::decode(&png_claiming(2, 1), "x.png").expect("2×1 PNG");
        assert_eq!((img.width(), img.height()), (2, 1));
    }

    #[test]
    fn a_small_tiff_decodes() {
        let data: Vec<u8> = (0u8..16).map(|v| v * 16).collect();
        let img = comir_image::decode(&tiff_with(4, 4, 8, 1, 1, &data), "x.tif").expect("tiff");
        assert_eq!((img.width(), img.height()), (4, 4));
        assert_eq!(img.get(1, 0, 0), 16.0 / 255.0);
    }
}
