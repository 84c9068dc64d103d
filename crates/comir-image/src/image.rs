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
        let data = self
            .data
            .chunks_exact(self.channels)
            .map(|px| px[c])
            .collect();
        Image {
            width: self.width,
            height: self.height,
            channels: 1,
            data,
        }
    }

    /// A single-channel version. Three- or four-channel images are treated as RGB(A) and weighted
    /// with the ITU-R BT.601 luma weights 0.299 R + 0.587 G + 0.114 B (the weights OpenCV and
    /// MultiRegEval use); alpha is ignored. Other channel counts are averaged.
    pub fn to_gray(&self) -> Image {
        match self.channels {
            1 => self.clone(),
            3 | 4 => {
                let data = self
                    .data
                    .chunks_exact(self.channels)
                    .map(|px| 0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2])
                    .collect();
                Image {
                    width: self.width,
                    height: self.height,
                    channels: 1,
                    data,
                }
            }
            n => {
                let data = self
                    .data
                    .chunks_exact(n)
                    .map(|px| px.iter().sum::<f32>() / n as f32)
                    .collect();
                Image {
                    width: self.width,
                    height: self.height,
                    channels: 1,
                    data,
                }
            }
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
}
