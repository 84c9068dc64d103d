//! CoMIR inference: maps an image of modality A or B to its learned representation, and turns
//! representations into the gray images the registration methods take.
//!
//! * [`Representer::represent`] runs a trained network (loaded from a model folder, see
//!   `comir_model::store`) on an image of any size. The image is padded by mirroring (edge
//!   repeated) with a margin on every side, as MultiRegEval's `inference_comir.py` pads before
//!   its single pass, and cut into tiles when it is larger than [`Representer::max_tile`]: each
//!   tile's centre is kept, its margin only gives the network context, so memory stays bounded
//!   for any image size. The networks' spatial sizes must be multiples of `2^depth`; tiles are.
//! * [`for_registration`] maps a pair of representations to gray `[0, 1]` images: `sigmoid(x)`
//!   for one channel (the reference's `uint8(sigmoid(x)·255)`, without the 8-bit rounding), and
//!   for several channels the first principal component — fitted on the pixels of **both**
//!   images together, so that the two gray images cannot come out with opposite signs (the
//!   reference fits one PCA per image, whose sign is arbitrary).
//!
//! On the CPU the networks run on `comir-engine`'s hand-written kernels (the same numbers as
//! burn's, to float rounding, and several times faster than burn's CPU backend); on a GPU device
//! they run in burn.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use comir_engine::{FastDenseUNet, Window};
use comir_image::ops::{mirror_index, quarter_turns};
use comir_image::Image;
use comir_model::{DenseUNet, Model, ModelCard};

/// Errors of inference; each says what is wrong with which input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The CPU engine could not take the networks.
    #[error(transparent)]
    Engine(#[from] comir_engine::Error),
    /// The model folder could not be loaded.
    #[error(transparent)]
    Store(#[from] comir_model::StoreError),
    /// The image does not fit the network.
    #[error("{0}")]
    Input(String),
    /// The network failed.
    #[error(transparent)]
    Model(#[from] comir_model::ModelError),
}

/// Which network to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Modality {
    /// The network of modality A (the `--a` folder of training).
    A,
    /// The network of modality B.
    B,
}

impl std::str::FromStr for Modality {
    type Err = String;
    fn from_str(s: &str) -> Result<Modality, String> {
        match s.to_ascii_lowercase().as_str() {
            "a" => Ok(Modality::A),
            "b" => Ok(Modality::B),
            _ => Err(format!("modality must be 'a' or 'b', got '{s}'")),
        }
    }
}

/// One patch's embeddings at two depths of a network.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchEmbedding {
    /// The representation, `[D][size²]`.
    pub representation: Vec<f32>,
    /// The bottleneck features, `[C_b][h·w]`.
    pub bottleneck: Vec<f32>,
}

/// A loaded model ready to represent images.
#[derive(Debug)]
pub struct Representer {
    card: ModelCard,
    net_a: DenseUNet,
    net_b: DenseUNet,
    /// The same networks on the CPU engine (used when `device` is the CPU).
    fast: Option<(FastDenseUNet, FastDenseUNet)>,
    /// The engine's buffers of each network, kept from tile to tile.
    workspaces: [std::sync::Mutex<comir_engine::Workspace>; 2],
    device: Device,
    /// Largest tile side in pixels, margin included (default 640; rounded down to a multiple of
    /// `2^depth`). Bounds memory: inference of the `small` preset needs roughly 0.5 KiB per tile
    /// pixel.
    pub max_tile: usize,
    /// Context margin on every side, in pixels (default 32; rounded up to a multiple of
    /// `2^depth`, so 64 for the six-level `histology` networks). Not the reference's 128: for
    /// the three-level presets, whose receptive field reaches about 67 px, 32 px changes a
    /// trained `small` model's representation of an 834² image by at most 0.4 % of its standard
    /// deviation (RMS 0.006 %) against one pass with 128, and computes fewer pixels than 64
    /// (four 488² tiles instead of 552² for an 834² image).
    pub margin: usize,
}

fn round_up(v: usize, m: usize) -> usize {
    v.div_ceil(m) * m
}

impl Representer {
    /// Loads a model folder for inference on `device`.
    ///
    /// # Errors
    /// See `comir_model::Model::load`.
    pub fn load(dir: &Path, device: &Device) -> Result<Representer, Error> {
        Representer::new(Model::load(dir, device)?, device)
    }

    /// Wraps a model already in memory.
    ///
    /// # Errors
    /// The CPU engine does not support the networks' configuration (e.g. dropout).
    pub fn new(model: Model, device: &Device) -> Result<Representer, Error> {
        let fast = if *device == Device::flex() {
            Some((
                FastDenseUNet::from_burn(&model.networks.a, &model.card.network_a)?,
                FastDenseUNet::from_burn(&model.networks.b, &model.card.network_b)?,
            ))
        } else {
            None
        };
        Ok(Representer {
            card: model.card,
            net_a: model.networks.a,
            net_b: model.networks.b,
            fast,
            workspaces: Default::default(),
            device: device.clone(),
            max_tile: 640,
            margin: 32,
        })
    }

    /// Runs one network on a channel-first tile `[C][H][W]`; returns the representation inside
    /// `keep`, `[D][rows][cols]` of it. The CPU engine computes little of the up path outside
    /// it ([`comir_engine::FastDenseUNet::forward_inference_window`]).
    fn run(
        &self,
        modality: Modality,
        tile: Vec<f32>,
        (c, h, w): (usize, usize, usize),
        keep: Window,
    ) -> Result<Vec<f32>, Error> {
        if let Some((a, b)) = &self.fast {
            let net = if modality == Modality::A { a } else { b };
            let mut ws = self.workspaces[modality as usize]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            return Ok(net.forward_inference_window(&mut ws, &tile, h, w, keep)?);
        }
        let net = match modality {
            Modality::A => &self.net_a,
            Modality::B => &self.net_b,
        };
        let input = Tensor::<4>::from_data(TensorData::new(tile, [1, c, h, w]), &self.device);
        let whole = net
            .try_forward(input)?
            .representation
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| Error::Input(format!("{e:?}")))?;
        let mut kept = Vec::with_capacity(whole.len());
        for plane in whole.chunks_exact(h * w) {
            for y in keep.y0..keep.y1 {
                kept.extend_from_slice(&plane[y * w + keep.x0..y * w + keep.x1]);
            }
        }
        Ok(kept)
    }

    /// What the model folder says.
    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// Representation channels D.
    pub fn out_channels(&self) -> usize {
        self.card.network_a.out_channels
    }

    /// Brings an image to the network's input: channel count and the training intensity
    /// transform. Borrows the image when it needs neither (no copy of a large image).
    fn prepare<'i>(
        &self,
        img: &'i Image,
        modality: Modality,
    ) -> Result<std::borrow::Cow<'i, Image>, Error> {
        use std::borrow::Cow;
        let input = &self.card.input;
        let (cfg, log, normalize) = match modality {
            Modality::A => (&self.card.network_a, input.log_a, input.normalize_a),
            Modality::B => (&self.card.network_b, input.log_b, input.normalize_b),
        };
        let mut x = match (img.channels(), cfg.in_channels) {
            (c, n) if c == n => Cow::Borrowed(img),
            (3 | 4, 1) => Cow::Owned(img.to_gray()),
            (c, n) => {
                return Err(Error::Input(format!(
                    "the image has {c} channel(s) but the modality-{} network takes {n}",
                    if modality == Modality::A { "A" } else { "B" }
                )))
            }
        };
        if !x.is_finite() {
            return Err(Error::Input(
                "the image holds NaN or infinite values".to_string(),
            ));
        }
        if log || normalize {
            comir_image::ops::network_input(x.to_mut(), log, normalize);
        }
        Ok(x)
    }

    /// Runs one network on square patches of `img` (top-left corners `corners`, side `size`, a
    /// multiple of `2^depth`) as training does — no context around them — and returns each
    /// patch's representation (`[D][size²]`) and bottleneck features (`[C_b][h·w]`). The
    /// analysis tools compare these embeddings across modalities.
    ///
    /// # Errors
    /// A patch outside the image or of a size the network cannot take, or a bad image.
    pub fn embed_patches(
        &self,
        img: &Image,
        modality: Modality,
        corners: &[(usize, usize)],
        size: usize,
    ) -> Result<Vec<PatchEmbedding>, Error> {
        let x = self.prepare(img, modality)?;
        let net = match modality {
            Modality::A => &self.net_a,
            Modality::B => &self.net_b,
        };
        let m = net.required_multiple();
        if size == 0 || !size.is_multiple_of(m) {
            return Err(Error::Input(format!(
                "patch size {size} must be a positive multiple of {m} for this network"
            )));
        }
        let c = x.channels();
        corners
            .iter()
            .map(|&(x0, y0)| {
                if x0 + size > x.width() || y0 + size > x.height() {
                    return Err(Error::Input(format!(
                        "a {size}² patch at ({x0}, {y0}) does not fit the {}×{} image",
                        x.width(),
                        x.height()
                    )));
                }
                let mut tile = vec![0.0f32; c * size * size];
                for ch in 0..c {
                    for yy in 0..size {
                        for xx in 0..size {
                            tile[(ch * size + yy) * size + xx] = x.get(x0 + xx, y0 + yy, ch);
                        }
                    }
                }
                self.run_full(modality, tile, c, size, size)
            })
            .collect()
    }

    /// Like `run`, but also returns the bottleneck features.
    fn run_full(
        &self,
        modality: Modality,
        tile: Vec<f32>,
        c: usize,
        h: usize,
        w: usize,
    ) -> Result<PatchEmbedding, Error> {
        if let Some((a, b)) = &self.fast {
            let net = if modality == Modality::A { a } else { b };
            let mut ws = self.workspaces[modality as usize]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let out = net.forward_inference_in(&mut ws, &tile, 1, h, w)?;
            return Ok(PatchEmbedding {
                representation: out.representation,
                bottleneck: out.bottleneck,
            });
        }
        let net = match modality {
            Modality::A => &self.net_a,
            Modality::B => &self.net_b,
        };
        let input = Tensor::<4>::from_data(TensorData::new(tile, [1, c, h, w]), &self.device);
        let out = net.try_forward(input)?;
        let vec = |t: Tensor<4>| {
            t.into_data()
                .try_to_vec::<f32>()
                .map_err(|e| Error::Input(format!("{e:?}")))
        };
        Ok(PatchEmbedding {
            representation: vec(out.representation)?,
            bottleneck: vec(out.bottleneck)?,
        })
    }

    /// How [`Representer::represent`] cuts `img` into tiles: bands of tile rows, top to bottom.
    ///
    /// # Errors
    /// The image has a channel count the network cannot take.
    pub fn tile_plan(&self, img: &Image, modality: Modality) -> Result<TilePlan, Error> {
        let net = match modality {
            Modality::A => &self.net_a,
            Modality::B => &self.net_b,
        };
        let m = net.required_multiple();
        let margin = round_up(self.margin, m);
        let max_tile = (self.max_tile / m * m).max(2 * margin + m);
        let max_core = max_tile - 2 * margin;
        let (w, h) = (img.width(), img.height());
        // Split each axis into equal cores (multiples of m) no larger than max_core.
        let cores = |n: usize| -> (usize, usize) {
            let count = n.div_ceil(max_core).max(1);
            (count, round_up(n.div_ceil(count), m))
        };
        let (nx, core_w) = cores(w);
        let (_, core_h) = cores(h);
        Ok(TilePlan {
            modality,
            width: w,
            height: h,
            channels: net.out_channels(),
            margin,
            nx,
            core_w,
            core_h,
        })
    }

    /// The raw representation (D channels, unbounded floats) of `img`, same width and height.
    ///
    /// # Errors
    /// The image has a channel count the network cannot take, or holds NaN/Inf.
    pub fn represent(&self, img: &Image, modality: Modality) -> Result<Image, Error> {
        let plan = self.tile_plan(img, modality)?;
        let x = self.prepare(img, modality)?;
        let mut out = Image::zeros(plan.width, plan.height, plan.channels);
        let row_len = plan.width * plan.channels;
        for i in 0..plan.bands() {
            let band = self.band_of_prepared(&x, &plan, i)?;
            let y0 = i * plan.core_h;
            out.data_mut()[y0 * row_len..][..band.data().len()].copy_from_slice(band.data());
        }
        Ok(out)
    }

    /// The representation averaged over the four quarter turns of the input: each turned copy
    /// is represented and turned back, and the four results are averaged. The networks are
    /// trained to be equivariant to these turns (docs/method.md §1.4) but are so only
    /// approximately; the average is exactly equivariant and smooths what the networks
    /// disagree on between orientations. Not in the reference. Costs four passes.
    ///
    /// # Errors
    /// As [`Representer::represent`].
    pub fn represent_rotation_averaged(
        &self,
        img: &Image,
        modality: Modality,
    ) -> Result<Image, Error> {
        let mut sum = self.represent(img, modality)?;
        for k in 1..4 {
            let turned = self.represent(&quarter_turns(img, k), modality)?;
            let back = quarter_turns(&turned, 4 - k);
            sum.data_mut()
                .iter_mut()
                .zip(back.data())
                .for_each(|(s, v)| *s += v);
        }
        sum.data_mut().iter_mut().for_each(|v| *v *= 0.25);
        Ok(sum)
    }

    /// Band `i` of the representation of `img` (rows `i · band_rows ..`, full width), computed
    /// from its own tiles alone: with [`TilePlan::bands`] bands the representation can be
    /// written out band by band without ever holding all of it (a 10,000² image). The bands
    /// together equal [`Representer::represent`]. `input` comes from
    /// [`Representer::prepare_input`].
    ///
    /// # Errors
    /// As [`Representer::represent`]; also a plan made for another image size.
    pub fn represent_band(
        &self,
        input: &PreparedInput<'_>,
        plan: &TilePlan,
        i: usize,
    ) -> Result<Image, Error> {
        let x = &input.image;
        if (x.width(), x.height()) != (plan.width, plan.height)
            || input.modality != plan.modality
            || i >= plan.bands()
        {
            return Err(Error::Input(format!(
                "band {i} of a plan for a {}×{} modality-{:?} image asked of a {}×{} modality-{:?} one",
                plan.width,
                plan.height,
                plan.modality,
                x.width(),
                x.height(),
                input.modality
            )));
        }
        self.band_of_prepared(x, plan, i)
    }

    /// `img` as the modality's network takes it (gray if it takes one channel, the log
    /// transform of training applied), checked for NaN/Inf; borrowed when nothing changes.
    ///
    /// # Errors
    /// A channel count the network cannot take, or NaN/Inf.
    pub fn prepare_input<'i>(
        &self,
        img: &'i Image,
        modality: Modality,
    ) -> Result<PreparedInput<'i>, Error> {
        Ok(PreparedInput {
            image: self.prepare(img, modality)?,
            modality,
        })
    }

    fn band_of_prepared(&self, x: &Image, plan: &TilePlan, i: usize) -> Result<Image, Error> {
        let TilePlan {
            modality,
            width: w,
            height: h,
            channels: d,
            margin,
            nx,
            core_w,
            core_h,
        } = *plan;
        let c = x.channels();
        let y0 = i * core_h;
        let rows = core_h.min(h - y0);
        let mut out = Image::zeros(w, rows, d);
        let (tw, th) = (core_w + 2 * margin, core_h + 2 * margin);
        for tx in 0..nx {
            let x0 = tx * core_w;
            if x0 >= w {
                continue;
            }
            // The image columns each tile column reads (mirrored at the edges), found once.
            let columns: Vec<usize> = (0..tw)
                .map(|xx| mirror_index(x0 as isize + xx as isize - margin as isize, w))
                .collect();
            let data = x.data();
            let mut tile = vec![0.0f32; c * th * tw];
            for yy in 0..th {
                let sy = mirror_index(y0 as isize + yy as isize - margin as isize, h);
                let row = &data[sy * w * c..(sy + 1) * w * c];
                for ch in 0..c {
                    let dst = &mut tile[(ch * th + yy) * tw..(ch * th + yy + 1) * tw];
                    for (d, &sx) in dst.iter_mut().zip(&columns) {
                        *d = row[sx * c + ch];
                    }
                }
            }
            // The part of the tile kept: its core, cut at the image's right and bottom edges.
            let cols = core_w.min(w - x0);
            let keep = Window {
                y0: margin,
                y1: margin + rows,
                x0: margin,
                x1: margin + cols,
            };
            let y = self.run(modality, tile, (c, th, tw), keep)?;
            let out_data = out.data_mut();
            for yy in 0..rows {
                let dst = &mut out_data[(yy * w + x0) * d..(yy * w + x0 + cols) * d];
                for ch in 0..d {
                    let src = &y[(ch * rows + yy) * cols..(ch * rows + yy + 1) * cols];
                    for (o, &v) in dst.chunks_exact_mut(d).zip(src) {
                        o[ch] = v;
                    }
                }
            }
        }
        Ok(out)
    }
}

/// An image ready for one network ([`Representer::prepare_input`]).
pub struct PreparedInput<'i> {
    image: std::borrow::Cow<'i, Image>,
    modality: Modality,
}

/// How a representation is computed in tiles ([`Representer::tile_plan`]): `bands()` bands of
/// `band_rows()` rows (the last one shorter), each a row of tiles whose margins give context only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TilePlan {
    modality: Modality,
    width: usize,
    height: usize,
    channels: usize,
    margin: usize,
    nx: usize,
    core_w: usize,
    core_h: usize,
}

impl TilePlan {
    /// Rows of every band but the last.
    pub fn band_rows(&self) -> usize {
        self.core_h
    }

    /// Number of bands.
    pub fn bands(&self) -> usize {
        self.height.div_ceil(self.core_h)
    }

    /// Representation channels D.
    pub fn channels(&self) -> usize {
        self.channels
    }
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// `sigmoid(x)` per value: the reference's display and registration mapping, in `[0, 1]`.
pub fn sigmoid_image(rep: &Image) -> Image {
    let mut out = rep.clone();
    out.data_mut().iter_mut().for_each(|v| *v = sigmoid(*v));
    out
}

/// The leading principal direction of the pixels (D-vectors) of all `images`, by power
/// iteration on the D×D covariance; its sign makes its largest component positive.
pub fn principal_direction(images: &[&Image]) -> Vec<f64> {
    let d = images.first().map_or(1, |i| i.channels());
    let mut mean = vec![0.0f64; d];
    let mut count = 0usize;
    for img in images {
        for px in img.data().chunks_exact(d) {
            for (m, &v) in mean.iter_mut().zip(px) {
                *m += f64::from(v);
            }
            count += 1;
        }
    }
    mean.iter_mut().for_each(|m| *m /= count.max(1) as f64);
    let mut cov = vec![0.0f64; d * d];
    for img in images {
        for px in img.data().chunks_exact(d) {
            for i in 0..d {
                let a = f64::from(px[i]) - mean[i];
                for j in 0..d {
                    cov[i * d + j] += a * (f64::from(px[j]) - mean[j]);
                }
            }
        }
    }
    let mut v = vec![1.0 / (d as f64).sqrt(); d];
    for _ in 0..500 {
        let mut next = vec![0.0f64; d];
        for i in 0..d {
            next[i] = (0..d).map(|j| cov[i * d + j] * v[j]).sum();
        }
        let norm = next.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm == 0.0 {
            break;
        }
        next.iter_mut().for_each(|x| *x /= norm);
        let change: f64 = next.iter().zip(&v).map(|(a, b)| (a - b).abs()).sum();
        v = next;
        if change < 1e-12 {
            break;
        }
    }
    let lead = v
        .iter()
        .copied()
        .fold(0.0f64, |a, b| if b.abs() > a.abs() { b } else { a });
    if lead < 0.0 {
        v.iter_mut().for_each(|x| *x = -*x);
    }
    v
}

/// Gray `[0, 1]` images of a fixed and a moving representation for registration (see the crate
/// docs): `sigmoid` for D = 1; for D > 1 the projection of `sigmoid(x)` on the principal
/// direction of both images' pixels, min-max scaled with one range for both. With
/// `match_histograms`, the moving image's intensities are then mapped onto the fixed one's
/// distribution ([`comir_image::ops::match_histogram`]).
///
/// Why matching (not in the reference): the two networks agree on structure well before they
/// agree on levels. On held-out histology pairs a 30-minute model's SHG representation had its
/// tissue at other gray levels than the H&E one, which α-AMD (comparing level sets) reads as a
/// different image; matching the moving representation's histogram to the fixed one's took
/// α-AMD from 42.9 % to 75.0 % of the cases there (docs/results.md, "Registering through a
/// model").
pub fn for_registration(fixed: &Image, moving: &Image, match_histograms: bool) -> (Image, Image) {
    let (f, m) = gray_pair(fixed, moving);
    let m = if match_histograms {
        comir_image::ops::match_histogram(&m, &f)
    } else {
        m
    };
    (f, m)
}

fn gray_pair(fixed: &Image, moving: &Image) -> (Image, Image) {
    let (f, m) = (sigmoid_image(fixed), sigmoid_image(moving));
    if f.channels() == 1 {
        return (f, m);
    }
    let dir = principal_direction(&[&f, &m]);
    let project = |img: &Image| {
        let d = img.channels();
        let data = img
            .data()
            .chunks_exact(d)
            .map(|px| {
                px.iter()
                    .zip(&dir)
                    .map(|(&v, &w)| f64::from(v) * w)
                    .sum::<f64>() as f32
            })
            .collect();
        Image::from_vec(img.width(), img.height(), 1, data).unwrap_or_else(|_| img.channel(0))
    };
    let (pf, pm) = (project(&f), project(&m));
    let (lo_f, hi_f) = pf.min_max();
    let (lo_m, hi_m) = pm.min_max();
    let (lo, hi) = (lo_f.min(lo_m), hi_f.max(hi_m));
    let scale = if hi > lo { 1.0 / (hi - lo) } else { 0.0 };
    let norm = |mut img: Image| {
        img.data_mut()
            .iter_mut()
            .for_each(|v| *v = (*v - lo) * scale);
        img
    };
    (norm(pf), norm(pm))
}

#[cfg(test)]
mod tests {
    use super::*;
    use comir_model::{DenseUNetConfig, InputTransform, NetworkPair};

    fn model(device: &Device) -> Model {
        let cfg = DenseUNetConfig {
            growth_rate: 3,
            ..DenseUNetConfig::tiny()
        };
        device.seed(5);
        Model {
            card: ModelCard::new(cfg.clone(), cfg.clone(), InputTransform::default()),
            networks: NetworkPair {
                a: cfg.init(device),
                b: cfg.init(device),
            },
        }
    }

    /// The largest absolute difference between two images' values.
    fn max_abs_diff(a: &Image, b: &Image) -> f32 {
        a.data()
            .iter()
            .zip(b.data())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    }

    fn test_image(w: usize, h: usize) -> Image {
        Image::from_fn(w, h, |x, y| {
            let (x, y) = (x as f32, y as f32);
            0.5 + 0.3 * (x * 0.21).sin() * (y * 0.13).cos() + 0.1 * ((x + 2.0 * y) * 0.05).sin()
        })
    }

    /// Runs the network once on a mirror-padded copy: what tiling must reproduce.
    fn whole(r: &Representer, img: &Image, pad: usize) -> Image {
        let m = 4;
        let (w, h) = (img.width(), img.height());
        let (pw, ph) = (round_up(w + 2 * pad, m), round_up(h + 2 * pad, m));
        let mut t = vec![0.0f32; pw * ph];
        for y in 0..ph {
            for x in 0..pw {
                t[y * pw + x] = img.get(
                    mirror_index(x as isize - pad as isize, w),
                    mirror_index(y as isize - pad as isize, h),
                    0,
                );
            }
        }
        let input = Tensor::<4>::from_data(TensorData::new(t, [1, 1, ph, pw]), &r.device);
        let y: Vec<f32> = r
            .net_a
            .forward(input)
            .representation
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        Image::from_fn(w, h, |x, yy| y[(yy + pad) * pw + x + pad])
    }

    #[test]
    fn one_pass_equals_the_network_on_the_padded_image() {
        let device = Device::flex();
        let r = Representer::new(model(&device), &device).expect("representer");
        // 37×29 is not a multiple of 4: padding must handle it; one tile covers it.
        let img = test_image(37, 29);
        let rep = r.represent(&img, Modality::A).expect("represent");
        assert_eq!((rep.width(), rep.height(), rep.channels()), (37, 29, 1));
        let reference = whole(&r, &img, 64);
        // Same margin on the top-left; the bottom-right padding differs by the rounding, which
        // the network's receptive field barely reaches at this margin.
        let diff = max_abs_diff(&rep, &reference);
        // The CPU engine computes in another order than burn: equal up to float rounding.
        let (lo, hi) = reference.min_max();
        assert!(diff < 1e-4 * (hi - lo).max(1.0), "max difference {diff}");
    }

    #[test]
    fn rotation_averaging_makes_the_representation_turn_with_the_image() {
        let device = Device::flex();
        let r = Representer::new(model(&device), &device).expect("representer");
        // Square and a multiple of the padding step, so that padding commutes with the turns.
        let img = test_image(48, 48);
        let avg = r
            .represent_rotation_averaged(&img, Modality::A)
            .expect("avg");
        let (lo, hi) = avg.min_max();
        let plain = r.represent(&img, Modality::A).expect("plain");
        for k in 1..4 {
            let turned = quarter_turns(&img, k);
            let avg_turned = r
                .represent_rotation_averaged(&turned, Modality::A)
                .expect("avg");
            let diff = max_abs_diff(&quarter_turns(&avg, k), &avg_turned);
            assert!(diff < 1e-4 * (hi - lo), "turns {k}: max difference {diff}");
            // The untrained network alone is far from equivariant, so the check can fail.
            let plain_turned = r.represent(&turned, Modality::A).expect("plain");
            let plain_diff = max_abs_diff(&quarter_turns(&plain, k), &plain_turned);
            assert!(plain_diff > 1e-2 * (hi - lo), "turns {k}: {plain_diff}");
        }
    }

    #[test]
    fn tiles_agree_with_one_pass() {
        let device = Device::flex();
        let mut r = Representer::new(model(&device), &device).expect("representer");
        let img = test_image(90, 70);
        r.margin = 24;
        r.max_tile = 1024;
        let one = r.represent(&img, Modality::B).expect("one pass");
        r.max_tile = 24 * 2 + 32; // cores of ≤ 32 px: a 3×3 grid of tiles
        let tiled = r.represent(&img, Modality::B).expect("tiled");
        let diff = max_abs_diff(&one, &tiled);
        let (lo, hi) = one.min_max();
        // Batch norm uses running statistics at inference, so the network is translation
        // equivariant and a tile with enough context reproduces the one-pass result up to the
        // borders' reach.
        assert!(diff < 1e-3 * (hi - lo).max(1e-3), "max difference {diff}");
    }

    #[test]
    fn bands_stacked_are_the_whole_representation() {
        let device = Device::flex();
        let mut r = Representer::new(model(&device), &device).expect("representer");
        let img = test_image(90, 70);
        r.margin = 24;
        r.max_tile = 24 * 2 + 32;
        let whole = r.represent(&img, Modality::A).expect("whole");
        let plan = r.tile_plan(&img, Modality::A).expect("plan");
        assert_eq!((plan.bands(), plan.band_rows()), (3, 24));
        let input = r.prepare_input(&img, Modality::A).expect("prepare");
        let mut stacked = Vec::new();
        for i in 0..plan.bands() {
            let band = r.represent_band(&input, &plan, i).expect("band");
            assert_eq!(band.width(), 90);
            stacked.extend_from_slice(band.data());
        }
        assert_eq!(stacked, whole.data());
        // A plan for another image, or for the other network, is refused.
        let other = test_image(40, 40);
        let other_input = r.prepare_input(&other, Modality::A).expect("prepare");
        assert!(r.represent_band(&other_input, &plan, 0).is_err());
        let b_input = r.prepare_input(&img, Modality::B).expect("prepare");
        assert!(r.represent_band(&b_input, &plan, 0).is_err());
        assert!(r.represent_band(&input, &plan, 3).is_err());
    }

    #[test]
    fn wrong_channels_and_nan_are_refused() {
        let device = Device::flex();
        let r = Representer::new(model(&device), &device).expect("representer");
        let two = Image::zeros(16, 16, 2);
        assert!(r.represent(&two, Modality::A).is_err());
        let mut nan = test_image(16, 16);
        nan.set(3, 3, 0, f32::NAN);
        let e = r.represent(&nan, Modality::A).expect_err("nan");
        assert!(e.to_string().contains("NaN"));
        // RGB is converted to gray for a one-channel network.
        let rgb = Image::from_fn(16, 16, |_, _| 0.5);
        let rgb = Image::from_vec(16, 16, 3, rgb.data().repeat(3)).expect("rgb");
        assert!(r.represent(&rgb, Modality::A).is_ok());
    }

    #[test]
    fn pca_finds_the_direction_of_a_known_covariance_and_keeps_signs_consistent() {
        // Pixels along (2, 1) / √5 with small noise in the orthogonal direction.
        let n = 200;
        let data: Vec<f32> = (0..n)
            .flat_map(|i| {
                let t = (i as f32 / n as f32 - 0.5) * 4.0;
                let e = 0.01 * ((i * 7) % 5) as f32;
                [2.0 * t - e, t + 2.0 * e]
            })
            .collect();
        let img = Image::from_vec(n, 1, 2, data).expect("img");
        let v = principal_direction(&[&img]);
        let want = [2.0 / 5f64.sqrt(), 1.0 / 5f64.sqrt()];
        assert!(
            (v[0] - want[0]).abs() < 1e-2 && (v[1] - want[1]).abs() < 1e-2,
            "{v:?}"
        );
        // A representation and its copy map to the same gray image.
        let (f, m) = for_registration(&img, &img.clone(), false);
        assert_eq!(f.data(), m.data());
        let (lo, hi) = f.min_max();
        assert!(lo >= 0.0 && hi <= 1.0 && hi - lo > 0.5);
    }

    #[test]
    fn the_model_cards_input_stretch_makes_the_representation_exposure_invariant() {
        let device = Device::flex();
        let img = test_image(40, 36);
        // The same scene under a dimmer lamp: an affine change of every intensity.
        let mut dim = img.clone();
        dim.data_mut()
            .iter_mut()
            .for_each(|v| *v = 0.55 * *v + 0.12);
        let plain = Representer::new(model(&device), &device).expect("representer");
        let off = max_abs_diff(
            &plain.represent(&img, Modality::B).expect("represent"),
            &plain.represent(&dim, Modality::B).expect("represent"),
        );
        // `model` seeds the device: the same weights again, now with the stretch on.
        let mut m = model(&device);
        m.card.input.normalize_b = true;
        let stretched = Representer::new(m, &device).expect("representer");
        let on = max_abs_diff(
            &stretched.represent(&img, Modality::B).expect("represent"),
            &stretched.represent(&dim, Modality::B).expect("represent"),
        );
        // The stretch is read from a 4096-bin histogram, so the two inputs agree to ~1e-3.
        assert!(on < 0.1 * off, "with the stretch {on}, without {off}");
        assert!(
            on < 5e-3,
            "with the stretch the representations differ by {on}"
        );
    }

    #[test]
    fn matching_gives_the_moving_representation_the_fixed_ones_levels() {
        // The same structure at other levels: the moving network's output is a monotone
        // function of the fixed one's.
        let fixed = test_image(48, 40);
        let mut moving = fixed.clone();
        moving
            .data_mut()
            .iter_mut()
            .for_each(|v| *v = 3.0 * *v * *v - 1.5);
        let (f0, m0) = for_registration(&fixed, &moving, false);
        let (f1, m1) = for_registration(&fixed, &moving, true);
        assert_eq!(f0.data(), f1.data(), "the fixed image is never changed");
        assert!(
            max_abs_diff(&f0, &m0) > 0.1,
            "the test needs different levels"
        );
        let matched = max_abs_diff(&f1, &m1);
        assert!(matched < 5e-3, "matched moving differs by {matched}");
    }
}
