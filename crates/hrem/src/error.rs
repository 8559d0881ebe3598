//! Errors of relata-hrem: every one names what was wrong and what to do.

use std::path::Path;

/// What can go wrong in HREM's library paths.
#[derive(Debug, thiserror::Error)]
pub enum HremError {
    /// A configuration value is out of range.
    #[error("HREM configuration: {0}")]
    Config(String),
    /// Input of the wrong shape or kind.
    #[error("HREM input: {0}")]
    Input(String),
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// From the backbone crate (BERT checkpoints, vocabularies).
    #[error(transparent)]
    Backbone(#[from] relata_backbone::BackboneError),
    /// From the dataset crate.
    #[error(transparent)]
    Dataset(#[from] relata_dataset::DatasetError),
    /// From the metrics crate.
    #[error(transparent)]
    Metrics(#[from] relata_metrics::MetricsError),
    /// From the training scaffold.
    #[error(transparent)]
    Train(#[from] relata_train::TrainError),
}

impl HremError {
    /// A file error naming `path`.
    pub fn file(path: &Path, reason: impl Into<String>) -> Self {
        Self::File {
            path: path.display().to_string(),
            reason: reason.into(),
        }
    }
}

impl From<HremError> for relata_train::TrainError {
    fn from(e: HremError) -> Self {
        match e {
            HremError::Train(t) => t,
            other => relata_train::TrainError::msg(other.to_string()),
        }
    }
}
