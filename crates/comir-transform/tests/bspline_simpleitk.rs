//! Checks the B-spline `.tfm` block against SimpleITK itself: the file we write must map points
//! as `BSpline2::apply` does (inside the domain, on its edges, and outside where both give the
//! identity), and our grid must be the one ITK builds from the same transform domain.
//! Skips (with a message) when python3 or SimpleITK is missing.

mod common;

use comir_transform::BSpline2;

/// Reads the transform and a points file (`x y` per line); prints the fixed parameters of the
/// transform ITK builds from the transform domain `[0, w − 1] × [0, h − 1]` with the given mesh,
/// then one mapped point per line.
const SCRIPT: &str = r#"
import sys, SimpleITK as sitk
tfm_path, pts_path, w, h, mx, my = sys.argv[1:7]
ref = sitk.BSplineTransform(2, 3)
ref.SetTransformDomainOrigin((0.0, 0.0))
ref.SetTransformDomainPhysicalDimensions((float(w) - 1.0, float(h) - 1.0))
ref.SetTransformDomainMeshSize((int(mx), int(my)))
print(" ".join(repr(v) for v in ref.GetFixedParameters()))
t = sitk.ReadTransform(tfm_path)
for line in open(pts_path):
    x, y = map(float, line.split())
    q = t.TransformPoint((x, y))
    print(f"{q[0]!r} {q[1]!r}")
"#;

fn floats(line: &str) -> Vec<f64> {
    line.split_whitespace()
        .map(|v| v.parse().expect("float"))
        .collect()
}

/// Writes `points` as `x y` lines at full precision into `dir/points.txt`.
fn write_points(dir: &std::path::Path, points: &[[f64; 2]]) -> std::path::PathBuf {
    let path = dir.join("points.txt");
    let listing: String = points
        .iter()
        .map(|p| format!("{:.17e} {:.17e}\n", p[0], p[1]))
        .collect();
    std::fs::write(&path, listing).expect("write points");
    path
}

#[test]
fn bspline_tfm_matches_simpleitk_points() {
    if !common::simpleitk_available() {
        eprintln!("SKIP: python3 with SimpleITK not found (pip install SimpleITK)");
        return;
    }
    let (w, h) = (61usize, 47usize);
    // Spacing 11 gives non-integer grid spacings (60/6 = 10, 46/5 = 9.2) and an origin of −9.2.
    let t = BSpline2::random_smooth(w, h, 11.0, 4.0, 2024).expect("field");
    let dir = tempfile::tempdir().expect("tempdir");
    let tfm = dir.path().join("b.tfm");
    let text = format!(
        "#Insight Transform File V1.0\n#Transform 0\n{}",
        t.itk_tfm_block()
    );
    std::fs::write(&tfm, text).expect("write tfm");

    let (xm, ym) = ((w - 1) as f64, (h - 1) as f64);
    let mut points = vec![
        // Corners and edges of the domain (evaluated by both).
        [0.0, 0.0],
        [xm, 0.0],
        [xm, ym],
        [0.0, ym],
        [xm, 17.5],
        [23.25, ym],
        // Outside the domain: the identity for both.
        [-0.5, 10.0],
        [xm + 0.25, 10.0],
        [30.0, -3.0],
        [30.0, ym + 1.0],
    ];
    for k in 0..20 {
        // Scattered interior points, on and off control-point lines.
        let fx = ((k * 7 + 3) % 20) as f64 / 20.0;
        let fy = ((k * 11 + 5) % 20) as f64 / 20.0 + 0.013;
        points.push([fx * xm + 0.1 * k as f64, fy * ym]);
    }
    points.push([10.0, 9.2]); // exactly on a control-point line (x = 10, y = 9.2)
    let pts = write_points(dir.path(), &points);

    let m = t.mesh_size();
    let sizes = [w, h, m[0], m[1]].map(|v| std::ffi::OsString::from(v.to_string()));
    let mut args = vec![tfm.as_os_str(), pts.as_os_str()];
    args.extend(sizes.iter().map(|v| v.as_os_str()));
    let stdout = common::run_python(SCRIPT, &args);
    let mut lines = stdout.lines();

    let itk_fixed = floats(lines.next().expect("fixed parameters"));
    let ours = t.itk_fixed_parameters();
    assert_eq!(itk_fixed.len(), ours.len());
    for (a, b) in itk_fixed.iter().zip(ours) {
        assert!(
            (a - b).abs() < 1e-12,
            "ITK builds fixed parameters {itk_fixed:?}, comir {ours:?}"
        );
    }

    let mut worst = 0f64;
    let mut count = 0;
    for (line, p) in lines.zip(&points) {
        let q = floats(line);
        let ours = t.apply(*p);
        let err = (q[0] - ours[0]).abs().max((q[1] - ours[1]).abs());
        assert!(
            err < 1e-6,
            "SimpleITK maps {p:?} to {q:?}, comir to {ours:?}"
        );
        worst = worst.max(err);
        count += 1;
    }
    assert_eq!(count, points.len(), "SimpleITK printed too few points");
    eprintln!("{count} points agree with SimpleITK to {worst:.2e} px");
}

/// Reads a transform file and a points file (`x y` per line); prints the class SimpleITK sees
/// and one mapped point per line.
const COMPOSITE_SCRIPT: &str = r#"
import sys, SimpleITK as sitk
t = sitk.ReadTransform(sys.argv[1])
print(t.GetName())
for line in open(sys.argv[2]):
    x, y = map(float, line.split())
    q = t.TransformPoint((x, y))
    print(f"{q[0]!r} {q[1]!r}")
"#;

#[test]
fn composite_tfm_of_an_affine_and_a_bspline_matches_simpleitk_points() {
    if !common::simpleitk_available() {
        eprintln!("SKIP: python3 with SimpleITK not found (pip install SimpleITK)");
        return;
    }
    let (w, h) = (61usize, 47usize);
    let c = comir_transform::Composite2 {
        linear: comir_transform::Affine2 {
            matrix: [[1.08, 0.05], [-0.04, 0.91]],
            translation: [6.5, -3.25],
            center: [30.0, 23.0],
        }
        .into(),
        deformation: Some(BSpline2::random_smooth(w, h, 11.0, 3.0, 77).expect("field")),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let tfm = dir.path().join("c.tfm");
    comir_transform::write_itk_composite(&tfm, &c).expect("write");
    let points: Vec<[f64; 2]> = (0..25)
        .map(|k| {
            let fx = ((k * 7 + 3) % 25) as f64 / 25.0;
            let fy = ((k * 11 + 5) % 25) as f64 / 25.0 + 0.011;
            [fx * (w - 1) as f64, fy * (h - 1) as f64]
        })
        .collect();
    let pts = write_points(dir.path(), &points);
    let stdout = common::run_python(COMPOSITE_SCRIPT, &[tfm.as_os_str(), pts.as_os_str()]);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("CompositeTransform"));
    let mut count = 0;
    for (line, p) in lines.zip(&points) {
        let q = floats(line);
        let ours = c.apply(*p);
        assert!(
            (q[0] - ours[0]).abs().max((q[1] - ours[1]).abs()) < 1e-9,
            "SimpleITK maps {p:?} to {q:?}, comir to {ours:?}"
        );
        count += 1;
    }
    assert_eq!(count, points.len());
}
