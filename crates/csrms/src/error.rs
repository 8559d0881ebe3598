//! Errors of relata-csrms: every one names what was wrong and what to do.

use std::path::Path;

/// What can go wrong in CSRMS's library paths.
#[derive(Debug, thiserror::Error)]
pub enum CsrmsError {
    /// A configuration value is out of range.
    #[error("CSRMS configuration: {0}")]
    Config(String),
    /// Input of the wrong shape or kind.
    #[error("CSRMS input: {0}")]
    Input(String),
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// From the dataset crate.
    #[error(transparent)]
    Dataset(#[from] relata_dataset::DatasetError),
    /// From the metrics crate.
    #[error(transparent)]
    Metrics(#[from] relata_metrics::MetricsError),
    /// From the training scaffold.
    #[error(transparent)]
    Train(#[from] relata_train::TrainError),
    /// From the backbone crate (weight import).
    #[error(transparent)]
    Backbone(#[from] relata_backbone::BackboneError),
}

impl CsrmsError {
    /// A file error naming `path`.
    pub fn file(path: &Path, reason: impl Into<String>) -> Self {
        Self::File {
            path: path.display().to_string(),
            reason: reason.into(),
        }
    }
}

impl From<CsrmsError> for relata_train::TrainError {
    fn from(e: CsrmsError) -> Self {
        match e {
            CsrmsError::Train(t) => t,
            other => relata_train::TrainError::msg(other.to_string()),
        }
    }
}
