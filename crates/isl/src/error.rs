//! Errors of relata-isl: every one names what was wrong and what to do.

/// What can go wrong in ISL's library paths.
#[derive(Debug, thiserror::Error)]
pub enum IslError {
    /// A configuration value is out of range.
    #[error("ISL configuration: {0}")]
    Config(String),
    /// Input of the wrong shape or kind.
    #[error("ISL input: {0}")]
    Input(String),
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
