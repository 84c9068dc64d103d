//! Error type of the crate.

use thiserror::Error;

/// Errors reported by configuration validation, input checks and parsing.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ModelError {
    /// A configuration field has an invalid value.
    #[error("invalid model configuration: {0}")]
    InvalidConfig(String),
    /// The input has the wrong number of channels.
    #[error("input has {got} channels, the network expects {expected}")]
    InputChannels {
        /// Channels the network was built for.
        expected: usize,
        /// Channels of the input.
        got: usize,
    },
    /// The spatial size is not a multiple of `2^depth`.
    #[error(
        "input size {height}x{width} is not a positive multiple of {multiple} (pad the input)"
    )]
    InputSize {
        /// Input height.
        height: usize,
        /// Input width.
        width: usize,
        /// Required multiple.
        multiple: usize,
    },
    /// Unknown critic name.
    #[error("unknown critic '{name}'; valid critics are: {valid}")]
    UnknownCritic {
        /// The name that was given.
        name: String,
        /// Comma-separated list of valid names.
        valid: String,
    },
    /// Invalid argument to a loss or helper function.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}
