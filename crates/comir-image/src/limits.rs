//! How large an image comir agrees to decode.

use std::path::Path;

use crate::error::unsupported;
use crate::Error;

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
