use comir_image::ops::{gaussian_blur, network_input};
use comir_image::Image;
use comir_transform::Composite2;
use rand::Rng;

use crate::{Error, Pair};

/// How training patches are drawn (defaults: the CoMIR / MultiRegEval recipe, docs/method.md §1.5).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PatchConfig {
    /// Side of the square patch in pixels (default 128).
    pub size: usize,
    /// Rotate by a uniform random angle in [−180°, 180°) (default true).
    pub rotate: bool,
    /// Flip horizontally with probability ½ (default true).
    pub flip: bool,
    /// Probability of a Gaussian blur (default 0.5, MultiRegEval's `Sometimes(0.5, ...)`).
    pub blur_probability: f64,
    /// Largest blur σ in pixels, drawn uniformly from [0, max] (default 2.0).
    pub blur_sigma_max: f64,
    /// Apply `log(1 + x)` to modality A (default false; the reference does it for SHG).
    pub log_a: bool,
    /// Apply `log(1 + x)` to modality B (default false).
    pub log_b: bool,
    /// Stretch each modality-A image's 1st and 99th percentiles to 0 and 1, after the log
    /// (default false; not in the reference: evens out acquisition batches).
    pub normalize_a: bool,
    /// The same for modality B.
    pub normalize_b: bool,
}

impl Default for PatchConfig {
    fn default() -> PatchConfig {
        PatchConfig {
            size: 128,
            rotate: true,
            flip: true,
            blur_probability: 0.5,
            blur_sigma_max: 2.0,
            log_a: false,
            log_b: false,
            normalize_a: false,
            normalize_b: false,
        }
    }
}

impl PatchConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the bad field.
    pub fn validate(&self) -> Result<(), Error> {
        if self.size < 4 {
            return Err(Error::InvalidConfig(format!(
                "patch size must be at least 4, got {}",
                self.size
            )));
        }
        if !(0.0..=1.0).contains(&self.blur_probability) {
            return Err(Error::InvalidConfig(format!(
                "blur probability must lie in [0, 1], got {}",
                self.blur_probability
            )));
        }
        if !(self.blur_sigma_max >= 0.0 && self.blur_sigma_max.is_finite()) {
            return Err(Error::InvalidConfig(format!(
                "blur sigma must be finite and ≥ 0, got {}",
                self.blur_sigma_max
            )));
        }
        Ok(())
    }
}

/// A batch of `n` patch pairs, channel-first: `a` holds `n × channels_a × size × size` values,
/// `b` holds `n × channels_b × size × size`. Patches drawn through a transform also carry a
/// `mask` of `n × size × size` values, 1 where the B pixel lies inside the B image and 0 where it
/// does not (the loss ignores those pixels).
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Number of pairs.
    pub n: usize,
    /// Patch side.
    pub size: usize,
    /// Channels of modality A.
    pub channels_a: usize,
    /// Channels of modality B.
    pub channels_b: usize,
    /// Modality-A patches.
    pub a: Vec<f32>,
    /// Modality-B patches.
    pub b: Vec<f32>,
    /// Where B's patches hold image content (1) and where they fell outside B (0); `None` when
    /// every pixel is valid (aligned pairs).
    pub mask: Option<Vec<f32>>,
}

/// The geometry of one patch: centre in the source image, rotation and flip.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Geometry {
    pub center: [f64; 2],
    pub angle_rad: f64,
    pub flip: bool,
}

/// A pair that is not aligned but registered: B is sampled through `fixed_to_moving`, which maps
/// A's pixel coordinates to B's (the transform `comir register` writes with A fixed, B moving).
#[derive(Clone, Debug)]
pub struct RegisteredPair {
    /// The pair's name.
    pub name: String,
    /// The modality-A image (the fixed frame patches are drawn in).
    pub a: Image,
    /// The modality-B image, of any size.
    pub b: Image,
    /// A's coordinates → B's coordinates.
    pub fixed_to_moving: Composite2,
}

/// Draws augmented patch pairs from images held in memory.
pub struct PatchSampler {
    pairs: Vec<(String, Image, Image)>,
    /// Per pair, the map from A's frame into B's when the pair is registered, not aligned.
    maps: Vec<Option<Composite2>>,
    config: PatchConfig,
}

/// Coordinate mirrored into `[-0.5, n − 0.5]` with the edge repeated (numpy `symmetric`),
/// then clamped to the pixel-centre range for bilinear interpolation.
#[inline]
fn symmetric(v: f64, n: usize) -> f64 {
    let period = 2.0 * n as f64;
    let m = (v + 0.5).rem_euclid(period);
    let r = if m > n as f64 { period - m } else { m } - 0.5;
    r.clamp(0.0, (n - 1) as f64)
}

#[inline]
fn bilinear(img: &Image, x: f64, y: f64, c: usize) -> f32 {
    comir_image::ops::sample_bilinear(img, x, y, c).unwrap_or(0.0)
}

impl PatchSampler {
    /// A sampler over pairs already in memory: `(name, image A, image B)`, each pair the same size.
    ///
    /// # Errors
    /// No pairs, a size mismatch, a constant image (naming the pair), or an invalid config.
    pub fn new(pairs: Vec<(String, Image, Image)>, config: PatchConfig) -> Result<Self, Error> {
        let maps = vec![None; pairs.len()];
        PatchSampler::build(pairs, maps, config)
    }

    /// A sampler over registered pairs: every B patch is resampled through its pair's transform
    /// on the fly (no warped copy is made), and the pixels that fall outside B are masked out of
    /// the loss ([`Batch::mask`]). The images may differ in size.
    ///
    /// # Errors
    /// As [`PatchSampler::new`], size mismatches aside.
    pub fn registered(pairs: Vec<RegisteredPair>, config: PatchConfig) -> Result<Self, Error> {
        let (images, maps) = pairs
            .into_iter()
            .map(|p| ((p.name, p.a, p.b), Some(p.fixed_to_moving)))
            .unzip();
        PatchSampler::build(images, maps, config)
    }

    fn build(
        mut pairs: Vec<(String, Image, Image)>,
        maps: Vec<Option<Composite2>>,
        config: PatchConfig,
    ) -> Result<Self, Error> {
        config.validate()?;
        if pairs.is_empty() {
            return Err(Error::InvalidConfig("no image pairs to sample from".into()));
        }
        for ((name, a, b), map) in pairs.iter_mut().zip(&maps) {
            if map.is_none() && (a.width(), a.height()) != (b.width(), b.height()) {
                return Err(Error::SizeMismatch {
                    pair: name.clone(),
                    a_w: a.width(),
                    a_h: a.height(),
                    b_w: b.width(),
                    b_h: b.height(),
                });
            }
            for (which, img) in [("A", &*a), ("B", &*b)] {
                if img.is_constant() {
                    return Err(Error::UnusablePair {
                        pair: name.clone(),
                        reason: format!(
                            "the {which} image is constant (every value {}): there is nothing to learn from it; remove the pair",
                            img.data().first().copied().unwrap_or(0.0)
                        ),
                    });
                }
            }
            network_input(a, config.log_a, config.normalize_a);
            network_input(b, config.log_b, config.normalize_b);
        }
        let channels = (pairs[0].1.channels(), pairs[0].2.channels());
        if let Some((name, ..)) = pairs
            .iter()
            .find(|(_, a, b)| (a.channels(), b.channels()) != channels)
        {
            return Err(Error::InvalidConfig(format!(
                "pair '{name}' has other channel counts than the first pair ({}, {})",
                channels.0, channels.1
            )));
        }
        Ok(PatchSampler {
            pairs,
            maps,
            config,
        })
    }

    /// Loads the pairs (keeping their channels) and builds a sampler.
    ///
    /// # Errors
    /// Unreadable images (naming the file), size mismatches (naming the pair), invalid config.
    pub fn load(pairs: &[Pair], config: PatchConfig) -> Result<Self, Error> {
        let loaded = pairs
            .iter()
            .map(|p| {
                Ok((
                    p.name.clone(),
                    comir_image::load(&p.a)?,
                    comir_image::load(&p.b)?,
                ))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        PatchSampler::new(loaded, config)
    }

    /// Channels of modality A and B.
    pub fn channels(&self) -> (usize, usize) {
        (self.pairs[0].1.channels(), self.pairs[0].2.channels())
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Always false: a sampler holds at least one pair.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The settings.
    pub fn config(&self) -> &PatchConfig {
        &self.config
    }

    fn draw_geometry(&self, img: &Image, rng: &mut impl Rng) -> Geometry {
        let s = self.config.size as f64;
        // Keep the rotated patch inside the image when it fits (its half-diagonal), else the
        // unrotated patch, else centre it; symmetric padding fills whatever falls outside.
        let margin = |n: usize| {
            let n = n as f64;
            let half_diag = (s * std::f64::consts::SQRT_2 / 2.0).ceil();
            if n >= 2.0 * half_diag {
                half_diag
            } else if n >= s {
                s / 2.0
            } else {
                n / 2.0
            }
        };
        let mut pick = |n: usize| {
            let m = margin(n);
            let (lo, hi) = (m - 0.5, n as f64 - m - 0.5);
            if hi > lo {
                rng.gen_range(lo..=hi)
            } else {
                (n as f64 - 1.0) / 2.0
            }
        };
        let center = [pick(img.width()), pick(img.height())];
        let angle_rad = if self.config.rotate {
            rng.gen_range(-std::f64::consts::PI..std::f64::consts::PI)
        } else {
            0.0
        };
        let flip = self.config.flip && rng.gen_bool(0.5);
        Geometry {
            center,
            angle_rad,
            flip,
        }
    }

    /// Resamples one image's patch with the given geometry, channel-first, appending to `out`.
    pub(crate) fn extract(&self, img: &Image, g: Geometry, out: &mut Vec<f32>) {
        self.extract_through(img, img, g, None, out, None);
    }

    /// [`PatchSampler::extract`] for B: the patch's positions are laid out in A's frame (`frame`,
    /// with its symmetric padding) and, with `map`, carried into B's before sampling; positions
    /// that land outside B get 0 in `out` and in `mask` (1 elsewhere).
    fn extract_through(
        &self,
        frame: &Image,
        img: &Image,
        g: Geometry,
        map: Option<&Composite2>,
        out: &mut Vec<f32>,
        mut mask: Option<&mut Vec<f32>>,
    ) {
        let s = self.config.size;
        let half = (s as f64 - 1.0) / 2.0;
        let (sin, cos) = g.angle_rad.sin_cos();
        let (w, h) = (frame.width(), frame.height());
        let start = out.len();
        out.resize(start + img.channels() * s * s, 0.0);
        let mask_start = mask.as_ref().map_or(0, |m| m.len());
        if let Some(m) = mask.as_deref_mut() {
            m.resize(mask_start + s * s, 1.0);
        }
        for j in 0..s {
            for i in 0..s {
                let mut u = i as f64 - half;
                let v = j as f64 - half;
                if g.flip {
                    u = -u;
                }
                let x = symmetric(g.center[0] + cos * u - sin * v, w);
                let y = symmetric(g.center[1] + sin * u + cos * v, h);
                let Some(map) = map else {
                    for c in 0..img.channels() {
                        out[start + (c * s + j) * s + i] = bilinear(img, x, y, c);
                    }
                    continue;
                };
                let [bx, by] = map.apply([x, y]);
                for c in 0..img.channels() {
                    match comir_image::ops::sample_bilinear(img, bx, by, c) {
                        Some(v) => out[start + (c * s + j) * s + i] = v,
                        None => {
                            if let Some(m) = mask.as_deref_mut() {
                                m[mask_start + j * s + i] = 0.0;
                            }
                        }
                    }
                }
            }
        }
    }

    fn blur_in_place(&self, data: &mut [f32], channels: usize, sigma: f64) {
        let s = self.config.size;
        for c in 0..channels {
            let plane = &mut data[c * s * s..(c + 1) * s * s];
            if let Ok(img) = Image::from_vec(s, s, 1, plane.to_vec()) {
                plane.copy_from_slice(gaussian_blur(&img, sigma).data());
            }
        }
    }

    /// Draws `n` patch pairs (pairs chosen uniformly with replacement).
    pub fn batch(&self, n: usize, rng: &mut impl Rng) -> Batch {
        let (ca, cb) = self.channels();
        let s = self.config.size;
        let mut a = Vec::with_capacity(n * ca * s * s);
        let mut b = Vec::with_capacity(n * cb * s * s);
        let through = self.maps.iter().any(Option::is_some);
        let mut mask = through.then(|| Vec::with_capacity(n * s * s));
        for _ in 0..n {
            let k = rng.gen_range(0..self.pairs.len());
            let (_, ia, ib) = &self.pairs[k];
            let g = self.draw_geometry(ia, rng);
            let (sa, sb) = (a.len(), b.len());
            self.extract(ia, g, &mut a);
            self.extract_through(ia, ib, g, self.maps[k].as_ref(), &mut b, mask.as_mut());
            if self.config.blur_probability > 0.0 && rng.gen_bool(self.config.blur_probability) {
                let sigma = rng.gen_range(0.0..=self.config.blur_sigma_max);
                self.blur_in_place(&mut a[sa..], ca, sigma);
                self.blur_in_place(&mut b[sb..], cb, sigma);
            }
        }
        Batch {
            n,
            size: s,
            channels_a: ca,
            channels_b: cb,
            a,
            b,
            mask,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn ramp(w: usize, h: usize) -> Image {
        Image::from_fn(w, h, |x, y| (x + 100 * y) as f32)
    }

    fn plain(size: usize) -> PatchConfig {
        PatchConfig {
            size,
            rotate: false,
            flip: false,
            blur_probability: 0.0,
            ..PatchConfig::default()
        }
    }

    #[test]
    fn unrotated_patch_is_an_exact_crop() {
        let img = ramp(40, 30);
        let s = PatchSampler::new(vec![("r".into(), img.clone(), img.clone())], plain(8))
            .expect("sampler");
        let g = Geometry {
            center: [10.5, 12.5],
            angle_rad: 0.0,
            flip: false,
        };
        let mut out = Vec::new();
        s.extract(&img, g, &mut out);
        // Centre 10.5 with half-width 3.5: columns 7..15, rows 9..17.
        for j in 0..8 {
            for i in 0..8 {
                assert_eq!(out[j * 8 + i], img.get(7 + i, 9 + j, 0));
            }
        }
    }

    #[test]
    fn quarter_turn_permutes_pixels_and_flip_mirrors() {
        let img = ramp(20, 20);
        let s = PatchSampler::new(vec![("r".into(), img.clone(), img.clone())], plain(6))
            .expect("sampler");
        let base = Geometry {
            center: [9.5, 9.5],
            angle_rad: 0.0,
            flip: false,
        };
        let (mut p0, mut p90, mut pf) = (Vec::new(), Vec::new(), Vec::new());
        s.extract(&img, base, &mut p0);
        s.extract(
            &img,
            Geometry {
                angle_rad: std::f64::consts::FRAC_PI_2,
                ..base
            },
            &mut p90,
        );
        s.extract(&img, Geometry { flip: true, ..base }, &mut pf);
        for j in 0..6 {
            for i in 0..6 {
                // Output (i, j) samples the source at centre + R(90°)(u, v) = centre + (−v, u).
                assert!((p90[j * 6 + i] - p0[i * 6 + (5 - j)]).abs() < 1e-3);
                assert_eq!(pf[j * 6 + i], p0[j * 6 + (5 - i)]);
            }
        }
    }

    #[test]
    fn both_modalities_share_the_geometry() {
        let (a, _) = comir_testkit::phantom_pair(90, 70, 4);
        let cfg = PatchConfig {
            size: 32,
            ..PatchConfig::default()
        };
        let s = PatchSampler::new(vec![("p".into(), a.clone(), a.clone())], cfg).expect("sampler");
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let batch = s.batch(6, &mut rng);
        assert_eq!(batch.a.len(), 6 * 32 * 32);
        assert_eq!(
            batch.a, batch.b,
            "identical images must give identical patches"
        );
        // Same seed, same batch.
        let again = s.batch(6, &mut ChaCha8Rng::seed_from_u64(3));
        assert_eq!(again, batch);
    }

    fn affine(m: [[f64; 3]; 3]) -> Composite2 {
        use comir_transform::{Affine2, Transform2};
        Composite2::linear(Transform2::Affine(Affine2::from_matrix(&m, [0.0, 0.0])))
    }

    /// B's values on A's grid through `t`, as a warped copy would hold them (0 outside B).
    fn prewarp(a: &Image, b: &Image, t: &Composite2) -> Image {
        comir_image::ops::warp(
            b,
            a.width(),
            a.height(),
            comir_image::ops::Border::Zero,
            |p| t.apply(p),
        )
    }

    #[test]
    fn sampling_through_a_transform_equals_sampling_a_warped_copy() {
        let (a, _) = comir_testkit::phantom_pair(80, 70, 4);
        let (_, b) = comir_testkit::phantom_pair(110, 96, 9);
        let cfg = PatchConfig {
            size: 24,
            blur_probability: 0.0,
            ..PatchConfig::default()
        };
        // A whole-pixel shift: bilinear sampling of the warped copy and of B agree exactly,
        // wherever the patch stays inside B.
        let shift = affine([[1.0, 0.0, 13.0], [0.0, 1.0, 11.0], [0.0, 0.0, 1.0]]);
        let through = PatchSampler::registered(
            vec![RegisteredPair {
                name: "p".into(),
                a: a.clone(),
                b: b.clone(),
                fixed_to_moving: shift.clone(),
            }],
            cfg.clone(),
        )
        .expect("sampler");
        let copy = PatchSampler::new(
            vec![("p".into(), a.clone(), prewarp(&a, &b, &shift))],
            cfg.clone(),
        )
        .expect("sampler");
        let x = through.batch(5, &mut ChaCha8Rng::seed_from_u64(2));
        let y = copy.batch(5, &mut ChaCha8Rng::seed_from_u64(2));
        assert_eq!(x.a, y.a, "A's patches do not depend on the transform");
        let mask = x.mask.as_ref().expect("a mask");
        assert!(mask.iter().all(|&m| m == 1.0), "A + (13, 11) lies inside B");
        let worst =
            x.b.iter()
                .zip(&y.b)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f32::max);
        assert!(worst < 1e-5, "{worst}");
        assert!(y.mask.is_none());

        // A scaled, rotated map that leaves B on one side: the masked pixels are those outside
        // B, the rest matches the warped copy up to interpolation.
        let (c, s) = (0.3f64.cos() * 1.15, 0.3f64.sin() * 1.15);
        let tilt = affine([[c, -s, 40.0], [s, c, -30.0], [0.0, 0.0, 1.0]]);
        let through = PatchSampler::registered(
            vec![RegisteredPair {
                name: "p".into(),
                a: a.clone(),
                b: b.clone(),
                fixed_to_moving: tilt.clone(),
            }],
            cfg.clone(),
        )
        .expect("sampler");
        let copy = PatchSampler::new(vec![("p".into(), a.clone(), prewarp(&a, &b, &tilt))], cfg)
            .expect("sampler");
        let x = through.batch(8, &mut ChaCha8Rng::seed_from_u64(3));
        let y = copy.batch(8, &mut ChaCha8Rng::seed_from_u64(3));
        let mask = x.mask.as_ref().expect("a mask");
        let outside = mask.iter().filter(|&&m| m == 0.0).count();
        assert!(
            outside > 0 && outside < mask.len(),
            "{outside} of {}",
            mask.len()
        );
        let (mut sum, mut count) = (0.0f64, 0usize);
        for (k, &m) in mask.iter().enumerate() {
            assert!(m == 1.0 || x.b[k] == 0.0, "masked pixels hold 0");
            if m == 1.0 {
                sum += f64::from((x.b[k] - y.b[k]).abs());
                count += 1;
            }
        }
        let (lo, hi) = b.min_max();
        let mean = sum / count as f64;
        assert!(mean < 0.02 * f64::from(hi - lo), "mean difference {mean}");
    }

    #[test]
    fn small_images_are_padded_symmetrically_and_log_applies() {
        let img = Image::from_fn(10, 10, |x, _| x as f32 / 9.0);
        let cfg = PatchConfig {
            size: 16,
            log_b: true,
            ..PatchConfig::default()
        };
        let s = PatchSampler::new(vec![("s".into(), img.clone(), img.clone())], cfg).expect("ok");
        let batch = s.batch(4, &mut ChaCha8Rng::seed_from_u64(1));
        assert!(batch.a.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(batch.b.iter().all(|v| (0.0..=2f32.ln() + 1e-6).contains(v)));
        assert!((symmetric(-0.7, 10) - 0.0).abs() < 1e-12);
        assert!((symmetric(-2.0, 10) - 1.0).abs() < 1e-12); // numpy symmetric: index −2 → 1
        assert!((symmetric(-1.5, 10) - 0.5).abs() < 1e-12);
        assert!((symmetric(10.0, 10) - 9.0).abs() < 1e-12);
    }

    #[test]
    fn bad_settings_are_refused() {
        let img = ramp(20, 20);
        let other = ramp(21, 20);
        let e = PatchSampler::new(vec![("x".into(), img.clone(), other)], plain(8));
        assert!(e.err().expect("mismatch").to_string().contains("pair 'x'"));
        let cfg = PatchConfig {
            blur_probability: 1.5,
            ..plain(8)
        };
        assert!(PatchSampler::new(vec![("x".into(), img.clone(), img)], cfg).is_err());
        assert!(PatchSampler::new(vec![], plain(8)).is_err());
    }

    #[test]
    fn a_constant_image_is_refused_naming_the_pair() {
        let img = ramp(20, 20);
        let flat = Image::from_fn(20, 20, |_, _| 0.25);
        let e = PatchSampler::new(
            vec![
                ("good".into(), img.clone(), img.clone()),
                ("flat.png".into(), img, flat),
            ],
            plain(8),
        );
        let msg = e.err().expect("constant").to_string();
        assert!(
            msg.contains("pair 'flat.png'") && msg.contains("B image is constant"),
            "{msg}"
        );
    }
}
