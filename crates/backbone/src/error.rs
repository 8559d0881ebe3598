//! `BackboneError`: what went wrong and in which file.

use std::path::PathBuf;

use crate::weights::Mismatch;

/// Errors of weight import and checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum BackboneError {
    /// A file that should be there is not.
    #[error("{path}: missing; expected {expected}")]
    Missing {
        /// The path.
        path: PathBuf,
        /// What should be there.
        expected: String,
    },
    /// The file could not be read as weights.
    #[error("{path}: cannot read weights ({reason})")]
    Read {
        /// The file.
        path: PathBuf,
        /// The reader's message.
        reason: String,
    },
    /// The file's parameters do not match the model.
    #[error(
        "{path}: the weights do not fit this model (check depth, width, stem and head):{mismatch}"
    )]
    Weights {
        /// The file.
        path: PathBuf,
        /// What differs.
        mismatch: Mismatch,
    },
    /// An I/O error.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}
