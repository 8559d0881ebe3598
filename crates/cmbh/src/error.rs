//! Errors of relata-cmbh: every one names what was wrong and what to do.

use std::path::PathBuf;

/// What can go wrong in CMBH's library paths.
#[derive(Debug, thiserror::Error)]
pub enum CmbhError {
    /// A configuration value is out of range.
    #[error("CMBH configuration: {0}")]
    Config(String),
    /// Input of the wrong shape or kind.
    #[error("CMBH input: {0}")]
    Input(String),
    /// A saved encoder or index could not be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong and how to fix it.
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

impl CmbhError {
    pub(crate) fn file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::File {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl From<CmbhError> for relata_train::TrainError {
    fn from(e: CmbhError) -> Self {
        match e {
            CmbhError::Train(t) => t,
            other => relata_train::TrainError::msg(other.to_string()),
        }
    }
}
