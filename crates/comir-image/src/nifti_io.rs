//! NIfTI-1 input (`.nii`, `.nii.gz`), through the `nifti` crate: a 2-D image, or one slice of
//! a 3-D volume.
//!
//! * **Which slice**: append `:AXIS=INDEX` to the file name, e.g. `t1.nii.gz:z=90` (axial),
//!   `:y=100` (coronal), `:x=80` (sagittal), with 0-based voxel indices. Without it a 3-D
//!   volume gives its middle slice along z.
//! * **Orientation**: voxel index order, as ITK/SimpleITK arrays have it — image column = the
//!   first in-plane voxel axis (i for z- and y-slices, j for x-slices), image row = the second;
//!   no flips. The header's affine is not applied (registration works in pixel units).
//! * **Values**: as stored, with the header's `scl_slope`/`scl_inter` applied (when the slope is
//!   not 0), as f32. 4-D volumes with more than one time point and complex or RGB data types
//!   are refused with a message.

use std::io::Read;
use std::path::Path;

use nifti::volume::RandomAccessNiftiVolume;
use nifti::{InMemNiftiObject, NiftiHeader, NiftiObject, NiftiType};

use crate::error::{decode_err, unsupported};
use crate::limits::check_size;
use crate::{Error, Image};

/// A slice of a volume: axis (0 = x, 1 = y, 2 = z) and voxel index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SliceSpec {
    /// 0 = x (sagittal), 1 = y (coronal), 2 = z (axial).
    pub axis: usize,
    /// 0-based voxel index along the axis.
    pub index: usize,
}

/// Whether `name` is a NIfTI file name (`.nii` or `.nii.gz`, any case).
pub fn is_nifti_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.ends_with(".nii") || n.ends_with(".nii.gz")
}

/// Splits `vol.nii.gz:z=90` into the file and the slice; `None` when `path` has no such suffix.
pub fn split_slice_suffix(path: &str) -> Option<(&str, SliceSpec)> {
    let (file, spec) = path.rsplit_once(':')?;
    if !is_nifti_name(file) {
        return None;
    }
    let (axis, index) = spec.split_once('=')?;
    let axis = match axis.trim().to_ascii_lowercase().as_str() {
        "x" => 0,
        "y" => 1,
        "z" => 2,
        _ => return None,
    };
    let index = index.trim().parse().ok()?;
    Some((file, SliceSpec { axis, index }))
}

/// Decodes a NIfTI-1 file held in memory (gzip-compressed or not); `slice` picks the slice of
/// a 3-D volume (the middle z-slice when `None`).
pub(crate) fn decode_nifti(
    bytes: &[u8],
    path: &Path,
    slice: Option<SliceSpec>,
    max_bytes: u64,
) -> Result<Image, Error> {
    let raw: Vec<u8>;
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        // Decompressed size bounded too: a gzip bomb cannot exhaust the memory.
        flate2::read::GzDecoder::new(bytes)
            .take(max_bytes.saturating_add(1 << 20))
            .read_to_end(&mut out)
            .map_err(|e| decode_err(path, format!("gzip: {e}")))?;
        raw = out;
        &raw[..]
    } else {
        bytes
    };
    let header = NiftiHeader::from_reader(bytes)
        .map_err(|e| decode_err(path, format!("NIfTI header: {e}")))?;
    let dim = header.dim;
    let rank = usize::from(dim[0]);
    if !(1..=7).contains(&rank) {
        return Err(decode_err(path, format!("NIfTI dim[0] = {rank}, not 1–7")));
    }
    let size = |k: usize| {
        if k <= rank {
            usize::from(dim[k]).max(1)
        } else {
            1
        }
    };
    let (nx, ny, nz) = (size(1), size(2), size(3));
    if (4..=7).any(|k| size(k) > 1) {
        return Err(unsupported(
            path,
            format!(
                "NIfTI volume has more than 3 dimensions ({:?}); comir reads 2-D images and slices of 3-D volumes",
                &dim[1..=rank]
            ),
        ));
    }
    let datatype = header
        .data_type()
        .map_err(|e| decode_err(path, format!("NIfTI data type: {e}")))?;
    if matches!(
        datatype,
        NiftiType::Complex64
            | NiftiType::Complex128
            | NiftiType::Complex256
            | NiftiType::Rgb24
            | NiftiType::Rgba32
    ) {
        return Err(unsupported(
            path,
            format!("NIfTI data type {datatype:?} is not supported (gray scalar types only)"),
        ));
    }
    // The whole volume is read: refuse one whose floats would not fit the limit.
    check_size(path, nx as u64, ny as u64, nz as u64, max_bytes)?;
    let slice = match slice {
        Some(s) => s,
        None => SliceSpec {
            axis: 2,
            index: nz / 2,
        },
    };
    let along = [nx, ny, nz][slice.axis];
    if slice.index >= along {
        return Err(unsupported(
            path,
            format!(
                "slice {}={} is outside the volume ({} voxels along {})",
                ["x", "y", "z"][slice.axis],
                slice.index,
                along,
                ["x", "y", "z"][slice.axis]
            ),
        ));
    }
    let obj = InMemNiftiObject::from_reader(bytes)
        .map_err(|e| decode_err(path, format!("NIfTI: {e}")))?;
    let volume = obj.volume();
    let (w, h) = match slice.axis {
        2 => (nx, ny),
        1 => (nx, nz),
        _ => (ny, nz),
    };
    let mut data = Vec::with_capacity(w * h);
    let as_u16 = |v: usize| u16::try_from(v).unwrap_or(u16::MAX);
    let mut coords = vec![0u16; rank.max(3)];
    for row in 0..h {
        for col in 0..w {
            let (i, j, k) = match slice.axis {
                2 => (col, row, slice.index),
                1 => (col, slice.index, row),
                _ => (slice.index, col, row),
            };
            coords[0] = as_u16(i);
            coords[1] = as_u16(j);
            coords[2] = as_u16(k);
            let v = volume
                .get_f32(&coords[..rank])
                .map_err(|e| decode_err(path, format!("NIfTI voxel ({i}, {j}, {k}): {e}")))?;
            data.push(v);
        }
    }
    Image::from_vec(w, h, 1, data)
}
