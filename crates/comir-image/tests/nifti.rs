//! NIfTI input: files written by SimpleITK (tests/fixtures/make_nifti.py) and headers written
//! here byte by byte, read back as images with known values; slices chosen by suffix.

use std::path::{Path, PathBuf};

use comir_image::load;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", p.display()))
}

#[test]
fn slices_of_a_simpleitk_volume_have_the_written_values() {
    let vol = fixture("ramp3d.nii.gz");
    // Default: the middle z-slice (z = 2), columns = x, rows = y.
    let img = load(&vol).expect("volume");
    assert_eq!((img.width(), img.height(), img.channels()), (20, 12, 1));
    for (x, y) in [(0, 0), (19, 0), (3, 11), (7, 5)] {
        assert_eq!(img.get(x, y, 0), (x + 100 * y + 2000) as f32, "({x}, {y})");
    }
    // Coronal: y = 3, columns = x, rows = z.
    let img = load(with_suffix(&vol, ":y=3")).expect("y slice");
    assert_eq!((img.width(), img.height()), (20, 5));
    assert_eq!(img.get(4, 2, 0), (4 + 300 + 2000) as f32);
    // Sagittal: x = 7, columns = y, rows = z.
    let img = load(with_suffix(&vol, ":x=7")).expect("x slice");
    assert_eq!((img.width(), img.height()), (12, 5));
    assert_eq!(img.get(10, 4, 0), (7 + 1000 + 4000) as f32);
    // Axial, explicitly.
    let img = load(with_suffix(&vol, ":z=4")).expect("z slice");
    assert_eq!(img.get(1, 1, 0), (1 + 100 + 4000) as f32);
    // Outside the volume: one line naming the file and the slice.
    let e = load(with_suffix(&vol, ":z=9"))
        .expect_err("outside")
        .to_string();
    assert!(
        e.contains("ramp3d.nii.gz:z=9") && e.contains("outside the volume"),
        "{e}"
    );
}

#[test]
fn a_2d_float_nifti_reads_as_an_image() {
    let img = load(fixture("float2d.nii")).expect("2-D");
    assert_eq!((img.width(), img.height()), (7, 5));
    assert_eq!(img.get(6, 0, 0), 3.0);
    assert_eq!(img.get(2, 4, 0), -3.0);
}

/// A NIfTI-1 single file (`n+1`): 348-byte header, 4 bytes of extension flag, then the data.
fn nifti_bytes(
    dims: &[u16],
    datatype: i16,
    bitpix: i16,
    slope: f32,
    inter: f32,
    data: &[u8],
) -> Vec<u8> {
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    h[40..42].copy_from_slice(&(dims.len() as i16).to_le_bytes());
    for (k, d) in dims.iter().enumerate() {
        h[40 + 2 * (k + 1)..42 + 2 * (k + 1)].copy_from_slice(&(*d as i16).to_le_bytes());
    }
    h[70..72].copy_from_slice(&datatype.to_le_bytes());
    h[72..74].copy_from_slice(&bitpix.to_le_bytes());
    for k in 0..8 {
        h[76 + 4 * k..80 + 4 * k].copy_from_slice(&1f32.to_le_bytes()); // pixdim
    }
    h[108..112].copy_from_slice(&352f32.to_le_bytes()); // vox_offset
    h[112..116].copy_from_slice(&slope.to_le_bytes());
    h[116..120].copy_from_slice(&inter.to_le_bytes());
    h[344..348].copy_from_slice(b"n+1\0");
    h.extend_from_slice(data);
    h
}

#[test]
fn the_header_scaling_is_applied_and_4d_volumes_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    // uint8 (datatype 2), 3 × 2, values 0..6, scaled by 2 then −1.
    let p = dir.path().join("scaled.nii");
    std::fs::write(
        &p,
        nifti_bytes(&[3, 2], 2, 8, 2.0, -1.0, &[0, 1, 2, 3, 4, 5]),
    )
    .expect("write");
    let img = load(&p).expect("scaled");
    assert_eq!(img.data(), &[-1.0, 1.0, 3.0, 5.0, 7.0, 9.0]);
    // The same bytes gzip-compressed, under a .nii.gz name.
    let gz = dir.path().join("scaled.nii.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, &std::fs::read(&p).expect("read")).expect("gz");
    std::fs::write(&gz, enc.finish().expect("gz")).expect("write");
    assert_eq!(load(&gz).expect("gz").data(), img.data());
    // Two time points: refused, naming the file.
    let p4 = dir.path().join("fmri.nii");
    std::fs::write(&p4, nifti_bytes(&[2, 2, 1, 2], 2, 8, 1.0, 0.0, &[0; 8])).expect("write");
    let e = load(&p4).expect_err("4-D").to_string();
    assert!(
        e.contains("fmri.nii") && e.contains("more than 3 dimensions"),
        "{e}"
    );
    // Truncated data: an error naming the file, no panic.
    let cut = dir.path().join("cut.nii");
    let full = nifti_bytes(&[30, 30], 2, 8, 1.0, 0.0, &[7; 900]);
    std::fs::write(&cut, &full[..500]).expect("write");
    let e = load(&cut).expect_err("truncated").to_string();
    assert!(e.contains("cut.nii"), "{e}");
}
