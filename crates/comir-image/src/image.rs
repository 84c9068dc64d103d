use crate::Error;

/// A float image: `width × height` pixels of `channels` values, row-major, channels interleaved.
///
/// Coordinates are `(x, y)`: `x` is the column, `y` the row, pixel centres at integers.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    width: usize,
    height: usize,
    channels: usize,
    data: Vec<f32>,
}

impl Image {
    /// An image filled with zeros.
    ///
    /// # Panics
    /// If `channels` is zero (a programming error, not an input error).
    pub fn zeros(width: usize, height: usize, channels: usize) -> Image {
        assert!(channels > 0, "an image needs at least one channel");
        Image {
            width,
            height,
            channels,
            data: vec![0.0; width * height * channels],
        }
    }

    /// Wraps a buffer of `width * height * channels` values.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the buffer length does not match or `channels` is zero.
    pub fn from_vec(
        width: usize,
        height: usize,
        channels: usize,
        data: Vec<f32>,
    ) -> Result<Image, Error> {
        if channels == 0 || data.len() != width * height * channels {
            return Err(Error::InvalidArgument(format!(
                "buffer of {} values does not hold {width}×{height}×{channels}",
                data.len()
            )));
        }
        Ok(Image {
            width,
            height,
            channels,
            data,
        })
    }

    /// A single-channel image whose pixel `(x, y)` is `f(x, y)`.
    pub fn from_fn(width: usize, height: usize, mut f: impl FnMut(usize, usize) -> f32) -> Image {
        let mut data = Vec::with_capacity(width * height);
        for y in 0..height {
            for x in 0..width {
                data.push(f(x, y));
            }
        }
        Image {
            width,
            height,
            channels: 1,
            data,
        }
    }

    /// Number of columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of rows.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Values per pixel.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The raw buffer, row-major, channels interleaved.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The raw buffer, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consumes the image and returns its buffer.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// Value of channel `c` at pixel `(x, y)`.
    ///
    /// # Panics
    /// If the position is outside the image.
    #[inline]
    pub fn get(&self, x: usize, y: usize, c: usize) -> f32 {
        self.data[(y * self.width + x) * self.channels + c]
    }

    /// Sets channel `c` at pixel `(x, y)`.
    ///
    /// # Panics
    /// If the position is outside the image.
    #[inline]
    pub fn set(&mut self, x: usize, y: usize, c: usize, v: f32) {
        self.data[(y * self.width + x) * self.channels + c] = v;
    }

    /// The centre of the image in pixel coordinates: `((w − 1)/2, (h − 1)/2)`.
    pub fn center(&self) -> [f64; 2] {
        [
            (self.width as f64 - 1.0) / 2.0,
            (self.height as f64 - 1.0) / 2.0,
        ]
    }

    /// The `w × h` window whose top-left pixel is `(x0, y0)`, all channels.
    ///
    /// # Panics
    /// Panics if the window does not lie inside the image.
    pub fn crop(&self, x0: usize, y0: usize, w: usize, h: usize) -> Image {
        assert!(
            x0 + w <= self.width && y0 + h <= self.height,
            "crop outside the image"
        );
        let c = self.channels;
        let mut data = Vec::with_capacity(w * h * c);
        for y in y0..y0 + h {
            let start = (y * self.width + x0) * c;
            data.extend_from_slice(&self.data[start..start + w * c]);
        }
        Image {
            width: w,
            height: h,
            channels: c,
            data,
        }
    }

    /// One channel as a single-channel image.
    ///
    /// # Panics
    /// If `c >= channels`.
    pub fn channel(&self, c: usize) -> Image {
        assert!(c < self.channels);
        self.per_pixel(|px| px[c])
    }

    /// A single-channel version. Three- or four-channel images are treated as RGB(A) and weighted
    /// with the ITU-R BT.601 luma weights 0.299 R + 0.587 G + 0.114 B (the weights OpenCV and
    /// MultiRegEval use); alpha is ignored. Other channel counts are averaged.
    pub fn to_gray(&self) -> Image {
        match self.channels {
            1 => self.clone(),
            3 | 4 => self.per_pixel(|px| 0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2]),
            n => self.per_pixel(|px| px.iter().sum::<f32>() / n as f32),
        }
    }

    /// The single-channel image of `value(pixel's channels)` at every pixel.
    fn per_pixel(&self, value: impl FnMut(&[f32]) -> f32) -> Image {
        Image {
            width: self.width,
            height: self.height,
            channels: 1,
            data: self.data.chunks_exact(self.channels).map(value).collect(),
        }
    }

    /// Minimum and maximum over all values (`(0, 0)` for an empty image).
    pub fn min_max(&self) -> (f32, f32) {
        if self.data.is_empty() {
            return (0.0, 0.0);
        }
        self.data
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            })
    }

    /// A copy rescaled linearly so that its values span `[0, 1]`. A constant image becomes all zeros.
    pub fn normalized(&self) -> Image {
        let (lo, hi) = self.min_max();
        let range = hi - lo;
        let mut out = self.clone();
        if range > 0.0 {
            for v in &mut out.data {
                *v = (*v - lo) / range;
            }
        } else {
            out.data.iter_mut().for_each(|v| *v = 0.0);
        }
        out
    }

    /// True when every value is the same (nothing to register against).
    pub fn is_constant(&self) -> bool {
        let (lo, hi) = self.min_max();
        hi - lo <= 0.0
    }

    /// True when every value is finite.
    pub fn is_finite(&self) -> bool {
        self.data.iter().all(|v| v.is_finite())
    }

    /// The `clip` and `1 − clip` quantiles of all values, read from a 4096-bin histogram between
    /// the minimum and the maximum (one pass, no copy of the data: fit for 10,000² images; the
    /// answer is within 1/4096 of the range). `[min, max]` when `clip` is 0, or when the two
    /// quantiles meet (an image that is almost constant).
    pub fn quantile_range(&self, clip: f64) -> (f32, f32) {
        self.quantile_bins(clip)
            .and_then(|q| q.range())
            .unwrap_or_else(|| self.min_max())
    }

    /// Rescales all values linearly so that the `clip` quantile becomes 0 and the `1 − clip`
    /// quantile 1 (values beyond them are kept, not clipped). An image whose two quantiles fall
    /// in one histogram bin (almost constant) is left as it is. This evens out images of one
    /// modality taken with different exposure or staining, e.g. bright-field backgrounds at 135
    /// in one batch and at 250 in another.
    pub fn stretch_quantiles(&mut self, clip: f64) {
        let Some(q) = self.quantile_bins(clip) else {
            return;
        };
        if q.high_bin <= q.low_bin {
            return;
        }
        if let Some((lo, hi)) = q.range() {
            let scale = 1.0 / (hi - lo);
            self.data.iter_mut().for_each(|v| *v = (*v - lo) * scale);
        }
    }

    /// A histogram of all values with `bins` equal bins from the minimum to the maximum, and
    /// those two; `None` for an empty or constant image.
    pub(crate) fn histogram(&self, bins: usize) -> Option<(f32, f32, Vec<u64>)> {
        let (lo, hi) = self.min_max();
        if hi <= lo {
            return None;
        }
        let mut hist = vec![0u64; bins];
        let scale = bins as f32 / (hi - lo);
        for &v in &self.data {
            hist[(((v - lo) * scale) as usize).min(bins - 1)] += 1;
        }
        Some((lo, hi, hist))
    }

    /// The histogram bins of the `clip` and `1 − clip` quantiles; `None` when `clip` is 0 or
    /// the image is constant.
    fn quantile_bins(&self, clip: f64) -> Option<QuantileBins> {
        const NB: usize = 4096;
        if clip <= 0.0 {
            return None;
        }
        let (lo, hi, hist) = self.histogram(NB)?;
        let target = (clip * self.data.len() as f64) as u64;
        // The first bin, counting from one end, where the running count passes the target.
        fn first_past<'a>(
            bins: impl Iterator<Item = (usize, &'a u64)>,
            target: u64,
        ) -> Option<usize> {
            let mut acc = 0;
            bins.map(|(i, &c)| {
                acc += c;
                (i, acc)
            })
            .find(|&(_, acc)| acc > target)
            .map(|(i, _)| i)
        }
        Some(QuantileBins {
            min: lo,
            max: hi,
            bin_width: (hi - lo) / NB as f32,
            low_bin: first_past(hist.iter().enumerate(), target).unwrap_or(0),
            high_bin: first_past(hist.iter().enumerate().rev(), target).unwrap_or(NB - 1),
        })
    }
}

/// Where two quantiles fall in a histogram of an image's values.
struct QuantileBins {
    min: f32,
    max: f32,
    bin_width: f32,
    low_bin: usize,
    high_bin: usize,
}

impl QuantileBins {
    /// The quantiles as values: the start of the low bin and the end of the high one; `None`
    /// when they do not make a range.
    fn range(&self) -> Option<(f32, f32)> {
        if self.high_bin < self.low_bin {
            return None;
        }
        let a = self.min + self.low_bin as f32 * self.bin_width;
        let b = (self.min + (self.high_bin + 1) as f32 * self.bin_width).min(self.max);
        (b > a).then_some((a, b))
    }
}
