//! The image layer of comir: one float image type and the operations registration needs.
//!
//! * [`Image`] holds `f32` pixels, row-major, channels interleaved. Coordinates are `(x, y)` with
//!   `x` the column and `y` the row; pixel centres sit at integer coordinates, so the top-left pixel
//!   covers `[-0.5, 0.5)²`. Every crate above this one uses the same convention.
//! * [`io`] loads PNG, TIFF (8/16-bit integer, 32-bit float) and JPEG, gray or RGB, and saves PNG
//!   and float TIFF, from files or from bytes in memory ([`decode`]). Every failure names the file
//!   and the reason; an image whose header promises more memory than the limit is refused before
//!   anything is allocated.
//! * [`nifti_io`] reads NIfTI-1 (`.nii`, `.nii.gz`): 2-D images or a chosen slice of a 3-D
//!   volume (`t1.nii.gz:z=90`), through [`load`].
//! * [`pyramid`] has the Gaussian smoothing and subsampling every pyramid in comir is built with.
//! * [`ops`] has intensity transforms, bilinear sampling and warping (and re-exports the
//!   smoothing).

pub mod io;
pub mod nifti_io;
pub mod ops;
pub mod pyramid;

mod error;
mod image;
mod limits;
mod tiff_io;

pub use crate::error::Error;
pub use crate::image::Image;
pub use crate::io::{
    decode, decode_limited, load, load_gray, save_png, save_tiff_f32, save_tiff_f32_bands,
};
