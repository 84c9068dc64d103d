use std::path::{Path, PathBuf};

/// Everything that can go wrong in the image layer. Each variant names the file when one is involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened, read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// The file was read but is not a valid image of a supported format.
    #[error("{path}: cannot decode image: {reason}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// The file decoded, but comir cannot use it (bit depth, size, NaN values, ...).
    #[error("{path}: {reason}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// The image could not be encoded.
    #[error("{path}: cannot encode image: {reason}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// What the encoder said.
        reason: String,
    },
    /// An argument is out of range (size zero, channel mismatch, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// [`Error::Decode`] naming `path`.
pub(crate) fn decode_err(path: &Path, reason: impl ToString) -> Error {
    Error::Decode {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// [`Error::Unsupported`] naming `path`.
pub(crate) fn unsupported(path: &Path, reason: impl ToString) -> Error {
    Error::Unsupported {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// [`Error::Io`] naming `path`.
pub(crate) fn io_err(path: &Path, error: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        error,
    }
}
