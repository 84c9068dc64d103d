//! Checks the ITK `.tfm` convention against SimpleITK itself, for every transform kind: the file we
//! write must map points as `Transform2::apply` does, SimpleITK's resampling with it must equal our
//! warp, and a file SimpleITK writes must read back as the same transform.
//! Skips (with a message) when python3 or SimpleITK is missing.

mod common;

use comir_image::ops::{warp, Border};
use comir_image::Image;
use comir_transform::{read_itk_tfm, write_itk_tfm, Affine2, Rigid2, Similarity2, Transform2};

const SCRIPT: &str = r#"
import sys, SimpleITK as sitk
tfm_path, img_path, out_path = sys.argv[1:4]
t = sitk.ReadTransform(tfm_path)
for p in [(0.0, 0.0), (10.5, 3.0), (40.0, 25.0)]:
    q = t.TransformPoint(p)
    print(f"{q[0]!r} {q[1]!r}")
img = sitk.ReadImage(img_path, sitk.sitkFloat32)
out = sitk.Resample(img, img, t, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
sitk.WriteImage(out, out_path)
sitk.WriteTransform(t, out_path + ".tfm")
"#;

#[test]
fn tfm_matches_simpleitk_points_and_resampling() {
    if !common::simpleitk_available() {
        eprintln!("SKIP: python3 with SimpleITK not found (pip install SimpleITK)");
        return;
    }
    let center = [24.0, 17.0];
    let kinds: [Transform2; 3] = [
        Rigid2::new(0.35, [4.0, -2.5], center).into(),
        Similarity2 {
            scale: 0.85,
            angle_rad: -0.2,
            translation: [3.0, 1.5],
            center,
        }
        .into(),
        Affine2 {
            matrix: [[1.1, 0.15], [-0.08, 0.9]],
            translation: [-2.0, 3.5],
            center,
        }
        .into(),
    ];
    for t in kinds {
        agrees_with_simpleitk(&t);
    }
}

fn agrees_with_simpleitk(t: &Transform2) {
    let dir = tempfile::tempdir().expect("tempdir");
    let tfm = dir.path().join("t.tfm");
    write_itk_tfm(&tfm, t).expect("tfm");
    // A smooth, asymmetric test image.
    let img = Image::from_fn(49, 35, |x, y| {
        let (x, y) = (x as f32, y as f32);
        (0.1 * x).sin() + 0.02 * y * y + 0.01 * x * y
    });
    let img_path = dir.path().join("in.tif");
    comir_image::save_tiff_f32(&img_path, &img).expect("save");
    let out_path = dir.path().join("out.tif");
    let text = common::run_python(
        SCRIPT,
        &[tfm.as_os_str(), img_path.as_os_str(), out_path.as_os_str()],
    );
    for (line, p) in text.lines().zip([[0.0, 0.0], [10.5, 3.0], [40.0, 25.0]]) {
        let q: Vec<f64> = line
            .split_whitespace()
            .map(|v| v.parse().expect("float"))
            .collect();
        let ours = t.apply(p);
        assert!(
            (q[0] - ours[0]).abs() < 1e-9 && (q[1] - ours[1]).abs() < 1e-9,
            "{}: SimpleITK maps {p:?} to {q:?}, comir to {ours:?}",
            t.kind()
        );
    }
    let theirs = comir_image::load(&out_path).expect("load");
    let ours = warp(&img, img.width(), img.height(), Border::Zero, |p| {
        t.apply(p)
    });
    // Compare away from the border, where both interpolate inside the image.
    let mut worst = 0f32;
    for y in 3..img.height() - 3 {
        for x in 3..img.width() - 3 {
            let q = t.apply([x as f64, y as f64]);
            let inside = q[0] >= 1.0
                && q[1] >= 1.0
                && q[0] <= img.width() as f64 - 2.0
                && q[1] <= img.height() as f64 - 2.0;
            if inside {
                worst = worst.max((theirs.get(x, y, 0) - ours.get(x, y, 0)).abs());
            }
        }
    }
    assert!(worst < 1e-4, "{}: resampling differs by {worst}", t.kind());
    // SimpleITK's own file of the transform reads back as the same map.
    let back = read_itk_tfm(dir.path().join("out.tif.tfm")).expect("read SimpleITK's file");
    assert_eq!(back.kind(), t.kind());
    for p in [[0.0, 0.0], [30.0, 12.0]] {
        let (a, b) = (back.apply(p), t.apply(p));
        assert!((a[0] - b[0]).abs() < 1e-9 && (a[1] - b[1]).abs() < 1e-9);
    }
}
