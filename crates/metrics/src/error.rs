//! The one error type of relata-metrics.

/// What can go wrong when building codes, computing a metric or reading an index/array.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Inputs whose sizes do not agree (e.g. labels vs codes).
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A value outside what the metric accepts (e.g. a code that is neither ±1 nor 0/1).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// An I/O failure, with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// The file being read or written.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file that exists but is not what it should be (bad magic, truncated, checksum).
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file being read.
        path: String,
        /// What is wrong with it, and how to fix it where possible.
        reason: String,
    },
}

/// Shorthand used throughout the crate.
pub type Result<T> = std::result::Result<T, MetricsError>;

pub(crate) fn shape(msg: impl Into<String>) -> MetricsError {
    MetricsError::Shape(msg.into())
}

pub(crate) fn invalid(msg: impl Into<String>) -> MetricsError {
    MetricsError::Invalid(msg.into())
}
