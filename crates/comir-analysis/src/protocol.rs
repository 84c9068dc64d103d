//! The analysis protocol of a trained model on held-out pairs (Wetzer et al. 2023): patch pairs
//! sampled at seeded positions, embedded at two depths; MDS maps, covariance spectra and the
//! modality gap of the embeddings; and the rotation equivariance of the representations.
//!
//! This crate sees no network: the caller supplies the embeddings and representations through
//! an [`Embedder`]. [`run`] writes into an existing folder:
//!
//! | file | what |
//! | --- | --- |
//! | `mds-representation.png`, `mds-bottleneck.png`, `mds.csv` | MDS of both modalities together |
//! | `spectrum-{representation,bottleneck,bottleneck-pooled}.png`, `spectrum.csv`, `spectrum-summary.csv` | covariance spectra |
//! | `modality-gap.csv` | the modality gap per layer |
//! | `equivariance.csv` | correlation of the representation of a rotated crop, turned back, with the crop's |

use std::path::{Path, PathBuf};

use comir_image::ops::{warp, Border};
use comir_image::Image;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::gap::{modality_gap, pearson};
use crate::mds::{pairwise_euclidean, smacof, SmacofConfig};
use crate::plot::{mds_scatter_png, spectrum_png};
use crate::spectrum::{covariance_spectrum, COLLAPSE_REL};
use crate::tables::{
    write_equivariance_csv, write_gap_csv, write_mds_csv, write_spectrum_csv, write_summary_csv,
    EquivarianceRow, GapRow, MdsPoint, SpectrumRow, SpectrumSummary,
};
use crate::Error;

/// Which of the two networks (modalities) to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Modality {
    /// Modality A.
    A,
    /// Modality B.
    B,
}

/// One patch's embeddings at two depths of a network.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedding {
    /// The representation, flattened.
    pub representation: Vec<f32>,
    /// The bottleneck features, `[channels][h·w]` flattened.
    pub bottleneck: Vec<f32>,
}

/// What the protocol asks of a trained model.
pub trait Embedder {
    /// What embedding or representing can fail with.
    type Error: std::error::Error + Send + Sync + 'static;
    /// The number of bottleneck channels (for the pooled bottleneck: one mean per channel).
    fn bottleneck_channels(&self) -> usize;
    /// The embeddings of the `size`×`size` patch of `image` at top-left `corner`.
    ///
    /// # Errors
    /// Whatever the model reports.
    fn embed_patch(
        &self,
        image: &Image,
        modality: Modality,
        corner: (usize, usize),
        size: usize,
    ) -> Result<Embedding, Self::Error>;
    /// The representation of a whole image.
    ///
    /// # Errors
    /// Whatever the model reports.
    fn represent(&self, image: &Image, modality: Modality) -> Result<Image, Self::Error>;
}

/// Settings of the protocol.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// Patch pairs to embed (at least 3).
    pub patches: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Seed of the patch positions.
    pub seed: u64,
    /// Rotation step of the equivariance score, in degrees, in (0, 360].
    pub angle_step: f64,
}

/// What the protocol reports as it goes. Both methods do nothing by default.
pub trait Observer {
    /// Called after each patch pair is embedded.
    fn patch_embedded(&mut self) {}
    /// Called once when every patch pair is embedded.
    fn embedding_finished(&mut self) {}
}

/// An observer that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;
impl Observer for Silent {}

/// What stops the protocol: an analysis error, or the embedder's.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError<E: std::error::Error + 'static> {
    /// Bad input to an analysis, or an unwritable file.
    #[error(transparent)]
    Analysis(#[from] Error),
    /// The embedder failed.
    #[error(transparent)]
    Embedding(E),
}

/// The numbers of a finished protocol (the files hold them all).
#[derive(Clone, Debug)]
pub struct AnalysisOutcome {
    /// Patch pairs embedded.
    pub patches: usize,
    /// Their side in pixels.
    pub patch_size: usize,
    /// Image pairs they came from.
    pub pairs: usize,
    /// Spectrum summaries per layer and modality.
    pub summaries: Vec<SpectrumSummary>,
    /// The modality gap per layer.
    pub gaps: Vec<GapRow>,
    /// MDS stress-1 per layer.
    pub stresses: Vec<(String, f64)>,
    /// Equivariance per modality and angle.
    pub equivariance: Vec<EquivarianceRow>,
    /// The folder of the files.
    pub out: PathBuf,
}

impl AnalysisOutcome {
    /// The table a person reads, one line per entry.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![
            format!(
                "{} patch pairs of {}² from {} held-out pairs",
                self.patches, self.patch_size, self.pairs
            ),
            format!(
                "{:<18} {:>6} {:>10} {:>9} {:>12} {:>10}",
                "layer", "modal.", "dims", "eff. rank", "σ<1e-5·σmax", "gap ratio"
            ),
        ];
        for s in &self.summaries {
            let gap = self
                .gaps
                .iter()
                .find(|g| g.layer == s.layer)
                .map_or(f64::NAN, |g| g.ratio);
            out.push(format!(
                "{:<18} {:>6} {:>10} {:>9.2} {:>12} {:>10.3}",
                s.layer, s.modality, s.dims, s.effective_rank, s.below_1e_5, gap
            ));
        }
        for (name, stress) in &self.stresses {
            out.push(format!("MDS stress-1 of the {name}: {stress:.3}"));
        }
        for m in ["A", "B"] {
            let worst = self
                .equivariance
                .iter()
                .filter(|r| r.modality == m)
                .map(|r| r.correlation)
                .fold(f64::INFINITY, f64::min);
            out.push(format!(
                "equivariance, modality {m}: lowest correlation {worst:.3} over 0–360°"
            ));
        }
        out.push(format!(
            "collapse threshold: σ < {COLLAPSE_REL:e} · σ_max; files in {}",
            self.out.display()
        ));
        out
    }
}

/// Where one patch pair is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchPosition {
    /// Index of the image pair.
    pub pair: usize,
    /// Top-left corner `(x, y)` of the patch in both images.
    pub corner: (usize, usize),
}

/// Patch positions for `n` patches, the pairs in turn, corners
/// drawn from `seed`; a patch constant in either modality (background) is drawn again, at most
/// 20 tries.
///
/// # Errors
/// [`Error::Shape`] when there are no pairs or an image is smaller than the patches.
pub fn sample_patches(
    images: &[(Image, Image)],
    n: usize,
    size: usize,
    seed: u64,
) -> Result<Vec<PatchPosition>, Error> {
    if images.is_empty() {
        return Err(Error::Shape("no image pairs to sample patches from".into()));
    }
    if let Some((a, _)) = images
        .iter()
        .find(|(a, _)| a.width() < size || a.height() < size)
    {
        return Err(Error::Shape(format!(
            "an image of {}×{} is smaller than the {size}² patches",
            a.width(),
            a.height()
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xA7A1_7515);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let pair = i % images.len();
        let (a, b) = &images[pair];
        let mut corner = (0, 0);
        for _ in 0..20 {
            corner = (
                rng.gen_range(0..=a.width() - size),
                rng.gen_range(0..=a.height() - size),
            );
            let varies = |img: &Image| {
                let v = img.crop(corner.0, corner.1, size, size).data().to_vec();
                let (lo, hi) = v
                    .iter()
                    .fold((f32::MAX, f32::MIN), |(l, h), &x| (l.min(x), h.max(x)));
                hi - lo > 1e-6
            };
            if varies(a) && varies(b) {
                break;
            }
        }
        out.push(PatchPosition { pair, corner });
    }
    Ok(out)
}

/// The mean of each channel of a flattened `[channels][h·w]` bottleneck.
pub fn pooled(bottleneck: &[f32], channels: usize) -> Vec<f32> {
    let per = bottleneck.len() / channels.max(1);
    bottleneck
        .chunks(per.max(1))
        .map(|c| c.iter().sum::<f32>() / c.len() as f32)
        .collect()
}

/// `image` rotated by `deg` degrees about its centre (mirror outside).
pub fn rotated(image: &Image, deg: f64) -> Image {
    let (w, h) = (image.width(), image.height());
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    let (s, c) = deg.to_radians().sin_cos();
    warp(image, w, h, Border::Reflect, |[x, y]| {
        let (dx, dy) = (x - cx, y - cy);
        [cx + c * dx + s * dy, cy - s * dx + c * dy]
    })
}

/// Values of `image` inside the central disc of radius 0.3 · min(w, h) (away from the mirrored
/// corners a rotation brings in).
pub fn central_disc(image: &Image) -> Vec<f32> {
    let (w, h) = (image.width(), image.height());
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    let r = 0.3 * w.min(h) as f64;
    let mut out = Vec::new();
    for y in 0..h {
        for x in 0..w {
            if (x as f64 - cx).hypot(y as f64 - cy) <= r {
                for ch in 0..image.channels() {
                    out.push(image.get(x, y, ch));
                }
            }
        }
    }
    out
}

/// Flattened embeddings of one layer for both modalities.
struct Layer {
    name: &'static str,
    a: Vec<Vec<f32>>,
    b: Vec<Vec<f32>>,
}

/// Runs the protocol on the image pairs `images` (held out from training) and writes its files
/// into the existing folder `out`.
///
/// # Errors
/// The embedder's errors, bad shapes (no pairs, images smaller than the patches), or an
/// unwritable file.
pub fn run<E: Embedder>(
    images: &[(Image, Image)],
    settings: &Settings,
    embedder: &E,
    out: &Path,
    observer: &mut dyn Observer,
) -> Result<AnalysisOutcome, ProtocolError<E::Error>> {
    let size = settings.patch_size;
    let corners = sample_patches(images, settings.patches, size, settings.seed)?;
    let channels_b = embedder.bottleneck_channels();
    let mut layers = ["representation", "bottleneck", "bottleneck-pooled"].map(|name| Layer {
        name,
        a: Vec::new(),
        b: Vec::new(),
    });
    for &PatchPosition { pair, corner } in &corners {
        let (a, b) = &images[pair];
        let ea = embedder
            .embed_patch(a, Modality::A, corner, size)
            .map_err(ProtocolError::Embedding)?;
        let eb = embedder
            .embed_patch(b, Modality::B, corner, size)
            .map_err(ProtocolError::Embedding)?;
        let [rep, bott, pool] = &mut layers;
        for (e, (r, bt, p)) in [
            (ea, (&mut rep.a, &mut bott.a, &mut pool.a)),
            (eb, (&mut rep.b, &mut bott.b, &mut pool.b)),
        ] {
            p.push(pooled(&e.bottleneck, channels_b));
            bt.push(e.bottleneck);
            r.push(e.representation);
        }
        observer.patch_embedded();
    }
    observer.embedding_finished();

    // MDS of both modalities together, per layer (the pooled one is shown by the flat one).
    let mut mds_rows = Vec::new();
    let mut stresses = Vec::new();
    for layer in layers.iter().take(2) {
        let all: Vec<Vec<f32>> = layer.a.iter().chain(&layer.b).cloned().collect();
        let d = pairwise_euclidean(&all)?;
        let mds = smacof(&d, &SmacofConfig::default())?;
        let pts = mds.points_2d();
        let (pa, pb) = pts.split_at(layer.a.len());
        mds_scatter_png(
            out.join(format!("mds-{}.png", layer.name)),
            pa,
            pb,
            &format!("MDS of the {} (A vs B)", layer.name),
            Some(mds.stress.stress1),
        )?;
        mds_rows.extend(MdsPoint::from_pairs(layer.name, pa, pb));
        stresses.push((layer.name.to_string(), mds.stress.stress1));
    }
    write_mds_csv(out.join("mds.csv"), &mds_rows)?;

    // Covariance spectra per layer and modality.
    let mut spectrum_rows = Vec::new();
    let mut summaries = Vec::new();
    for layer in &layers {
        let mut series = Vec::new();
        for (modality, rows) in [("A", &layer.a), ("B", &layer.b)] {
            let mut sv = covariance_spectrum(rows)?;
            // n embeddings span at most n − 1 directions: the rest are zero by construction,
            // not collapse, and are left out.
            sv.truncate(rows.len().saturating_sub(1).max(1));
            spectrum_rows.extend(SpectrumRow::from_spectrum(layer.name, modality, &sv));
            let mut summary = SpectrumSummary::new(layer.name, modality, &sv, rows.len());
            summary.dims = rows.first().map_or(0, Vec::len);
            summaries.push(summary);
            series.push((format!("modality {modality}"), sv));
        }
        spectrum_png(
            out.join(format!("spectrum-{}.png", layer.name)),
            &series,
            &format!("singular values of the {} covariance", layer.name),
        )?;
    }
    write_spectrum_csv(out.join("spectrum.csv"), &spectrum_rows)?;
    write_summary_csv(out.join("spectrum-summary.csv"), &summaries)?;

    // Modality gap per layer.
    let mut gaps = Vec::new();
    for layer in &layers {
        let g = modality_gap(&layer.a, &layer.b)?;
        gaps.push(GapRow {
            layer: layer.name.to_string(),
            corresponding: g.corresponding,
            non_corresponding: g.non_corresponding,
            ratio: g.ratio,
            n: g.n,
        });
    }
    write_gap_csv(out.join("modality-gap.csv"), &gaps)?;

    let equivariance = equivariance(&images[0], settings.angle_step, embedder)
        .map_err(ProtocolError::Embedding)?;
    write_equivariance_csv(out.join("equivariance.csv"), &equivariance)?;
    Ok(AnalysisOutcome {
        patches: settings.patches,
        patch_size: size,
        pairs: images.len(),
        summaries,
        gaps,
        stresses,
        equivariance,
        out: out.to_path_buf(),
    })
}

/// The equivariance score on one pair (centre crop of at most 256²): for every multiple of
/// `angle_step` below 360°, the correlation, inside the central disc, of the representation of
/// the rotated crop turned back with the representation of the crop.
///
/// # Errors
/// The embedder's.
pub fn equivariance<E: Embedder>(
    (a, b): &(Image, Image),
    angle_step: f64,
    embedder: &E,
) -> Result<Vec<EquivarianceRow>, E::Error> {
    let side = a.width().min(a.height()).min(256);
    let (x0, y0) = ((a.width() - side) / 2, (a.height() - side) / 2);
    let mut rows = Vec::new();
    for (name, modality, img) in [("A", Modality::A, a), ("B", Modality::B, b)] {
        let crop = img.crop(x0, y0, side, side);
        let reference = central_disc(&embedder.represent(&crop, modality)?);
        let mut angle = 0.0;
        while angle < 360.0 - 1e-9 {
            let back = rotated(
                &embedder.represent(&rotated(&crop, angle), modality)?,
                -angle,
            );
            let r = pearson(&central_disc(&back), &reference).unwrap_or(f64::NAN);
            rows.push(EquivarianceRow {
                modality: name.to_string(),
                angle_deg: angle,
                correlation: r,
            });
            angle += angle_step;
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Embeds a patch as its pixels and represents an image as itself: an exactly equivariant
    /// "model".
    struct Pixels;
    impl Embedder for Pixels {
        type Error = std::io::Error;
        fn bottleneck_channels(&self) -> usize {
            2
        }
        fn embed_patch(
            &self,
            image: &Image,
            _: Modality,
            (x, y): (usize, usize),
            size: usize,
        ) -> Result<Embedding, std::io::Error> {
            let v = image.crop(x, y, size, size).data().to_vec();
            Ok(Embedding {
                representation: v.clone(),
                bottleneck: v,
            })
        }
        fn represent(&self, image: &Image, _: Modality) -> Result<Image, std::io::Error> {
            Ok(image.clone())
        }
    }

    fn images() -> Vec<(Image, Image)> {
        let img = |s: f32| {
            Image::from_fn(40, 40, move |x, y| {
                (x as f32 * s).sin() + (y as f32 * 0.3).cos()
            })
        };
        vec![(img(0.2), img(0.21)), (img(0.5), img(0.52))]
    }

    #[test]
    fn patches_are_seeded_and_cycle_through_the_pairs() {
        let images = images();
        let p = sample_patches(&images, 5, 16, 7).expect("patches");
        assert_eq!(p, sample_patches(&images, 5, 16, 7).expect("again"));
        assert_ne!(p, sample_patches(&images, 5, 16, 8).expect("other seed"));
        assert_eq!(
            p.iter().map(|q| q.pair).collect::<Vec<_>>(),
            [0, 1, 0, 1, 0]
        );
        assert!(p.iter().all(|q| q.corner.0 <= 24 && q.corner.1 <= 24));
        assert!(matches!(
            sample_patches(&images, 5, 41, 7),
            Err(Error::Shape(_))
        ));
        assert!(matches!(
            sample_patches(&[], 5, 16, 7),
            Err(Error::Shape(_))
        ));
    }

    #[test]
    fn the_protocol_writes_every_file_and_an_equivariant_model_scores_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = Settings {
            patches: 6,
            patch_size: 8,
            seed: 0,
            angle_step: 90.0,
        };
        let outcome = run(&images(), &settings, &Pixels, dir.path(), &mut Silent).expect("run");
        for f in [
            "mds-representation.png",
            "mds-bottleneck.png",
            "mds.csv",
            "spectrum-representation.png",
            "spectrum-bottleneck.png",
            "spectrum-bottleneck-pooled.png",
            "spectrum.csv",
            "spectrum-summary.csv",
            "modality-gap.csv",
            "equivariance.csv",
        ] {
            assert!(dir.path().join(f).is_file(), "{f}");
        }
        assert_eq!(outcome.summaries.len(), 6);
        assert_eq!(outcome.gaps.len(), 3);
        assert_eq!(outcome.equivariance.len(), 8);
        assert!(
            outcome.equivariance.iter().all(|r| r.correlation > 0.999),
            "{:?}",
            outcome.equivariance
        );
        let lines = outcome.lines();
        assert_eq!(lines[0], "6 patch pairs of 8² from 2 held-out pairs");
        assert_eq!(lines.len(), 2 + 6 + 2 + 2 + 1);
        let gap = std::fs::read_to_string(dir.path().join("modality-gap.csv")).expect("gap");
        assert!(
            gap.starts_with("layer,corresponding,non_corresponding,ratio,n\n"),
            "{gap}"
        );
    }
}
