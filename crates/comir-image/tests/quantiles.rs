//! `Image::quantile_range` against quantiles read from the sorted values, and
//! `Image::stretch_quantiles` mapping them onto 0 and 1.

use comir_image::Image;

/// A skewed, deterministic test image: mostly a dark background with a bright tail, like SHG.
fn skewed(width: usize, height: usize) -> Image {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    Image::from_fn(width, height, |_, _| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let u = (state >> 11) as f32 / (1u64 << 53) as f32;
        3.0 + 200.0 * u * u * u
    })
}

/// The largest absolute difference between two images' values.
fn max_abs_diff(a: &Image, b: &Image) -> f32 {
    a.data()
        .iter()
        .zip(b.data())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

fn sorted_quantile(img: &Image, q: f64) -> f32 {
    let mut v = img.data().to_vec();
    v.sort_by(f32::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

#[test]
fn quantiles_match_the_sorted_values_within_one_bin() {
    let img = skewed(300, 200);
    let (lo, hi) = img.min_max();
    let bin = (hi - lo) / 4096.0;
    for clip in [0.01, 0.05, 0.2] {
        let (a, b) = img.quantile_range(clip);
        let (ea, eb) = (
            sorted_quantile(&img, clip),
            sorted_quantile(&img, 1.0 - clip),
        );
        assert!(
            (a - ea).abs() <= 1.01 * bin,
            "clip {clip}: low {a} vs sorted {ea}"
        );
        assert!(
            (b - eb).abs() <= 1.01 * bin,
            "clip {clip}: high {b} vs sorted {eb}"
        );
    }
    assert_eq!(img.quantile_range(0.0), (lo, hi));
}

#[test]
fn stretch_maps_the_quantiles_to_zero_and_one_and_keeps_the_order() {
    let img = skewed(128, 128);
    let mut stretched = img.clone();
    stretched.stretch_quantiles(0.01);
    let (q1, q99) = (
        sorted_quantile(&stretched, 0.01),
        sorted_quantile(&stretched, 0.99),
    );
    assert!(q1.abs() < 2e-3, "1st percentile at {q1}");
    assert!((q99 - 1.0).abs() < 2e-3, "99th percentile at {q99}");
    // Linear and increasing: the order of any two values is kept, and the tails are not clipped.
    let (min, max) = stretched.min_max();
    assert!(min <= 0.0 && max > 1.005, "tails clipped: [{min}, {max}]");
    for (i, j) in [(0, 1), (5, 900), (77, 16000)] {
        let (a, b) = (img.data()[i], img.data()[j]);
        let (sa, sb) = (stretched.data()[i], stretched.data()[j]);
        assert_eq!(a < b, sa < sb);
    }
}

#[test]
fn two_exposures_of_one_scene_become_the_same_image() {
    // The bright-field case the stretch is for: the same tissue under a dimmer lamp.
    let scene = skewed(64, 64);
    let mut dim = scene.clone();
    dim.data_mut()
        .iter_mut()
        .for_each(|v| *v = 0.55 * *v + 12.0);
    let (mut a, mut b) = (scene, dim);
    a.stretch_quantiles(0.01);
    b.stretch_quantiles(0.01);
    let worst = max_abs_diff(&a, &b);
    assert!(worst < 5e-3, "stretched images differ by {worst}");
}

#[test]
fn an_almost_constant_image_is_left_alone() {
    let mut img = Image::from_fn(50, 50, |x, y| if x == 3 && y == 7 { 9.0 } else { 2.0 });
    let before = img.clone();
    img.stretch_quantiles(0.01);
    assert!(
        img.data() == before.data(),
        "an almost constant image was rescaled"
    );
}

#[test]
fn histogram_matching_undoes_a_monotone_intensity_change() {
    use comir_image::ops::match_histogram;
    let scene = skewed(96, 80);
    // The same image through a nonlinear, increasing response: what two networks that agree on
    // structure but not on levels produce.
    let mut other = scene.clone();
    other
        .data_mut()
        .iter_mut()
        .for_each(|v| *v = (0.02 * *v).sqrt() * 3.0 - 1.0);
    let matched = match_histogram(&other, &scene);
    let (lo, hi) = scene.min_max();
    let worst = max_abs_diff(&matched, &scene);
    // Within a few histogram bins of the range.
    assert!(
        worst < 0.01 * (hi - lo),
        "matched differs by {worst} (range {})",
        hi - lo
    );
    // The order of the pixels is kept.
    for (i, j) in [(0, 1), (10, 4000), (333, 7000)] {
        assert_eq!(
            other.data()[i] < other.data()[j],
            matched.data()[i] <= matched.data()[j]
        );
    }
    // Matching an image to itself changes it by less than a bin.
    let same = match_histogram(&scene, &scene);
    let worst = max_abs_diff(&same, &scene);
    assert!(
        worst < 2.0 * (hi - lo) / 4096.0,
        "self-match moved values by {worst}"
    );
    // A constant image has no distribution to move.
    let flat = Image::from_fn(8, 8, |_, _| 0.3);
    assert!(match_histogram(&flat, &scene).data() == flat.data());
}

#[test]
fn histogram_matching_gives_the_references_quantiles() {
    use comir_image::ops::match_histogram;
    // Two unrelated images: after matching, the moving one's quantiles are the reference's.
    let reference = skewed(100, 100);
    let moving = Image::from_fn(70, 90, |x, y| ((x * 7 + y * 13) % 31) as f32 / 31.0);
    let matched = match_histogram(&moving, &reference);
    let (lo, hi) = reference.min_max();
    for q in [0.1, 0.25, 0.5, 0.75, 0.9] {
        let (a, b) = (sorted_quantile(&matched, q), sorted_quantile(&reference, q));
        // The moving image has only 31 levels: its quantiles are steps, within one level's share.
        assert!(
            (a - b).abs() < 0.05 * (hi - lo),
            "quantile {q}: matched {a}, reference {b}"
        );
    }
}
