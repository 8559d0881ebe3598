//! The scaffold's error type: every variant names the file, step or field involved and, where
//! there is one, the fix.

use std::path::PathBuf;

/// Errors of the training scaffold.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file or directory could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("writing", "reading", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A configuration value is invalid.
    #[error("invalid training configuration: {0}")]
    Config(String),
    /// The run directory holds a run with a different configuration.
    #[error(
        "run directory {dir} already holds a run with a different configuration ({diff}); \
         choose another directory, or pass --overwrite to replace it"
    )]
    ConfigMismatch {
        /// The run directory.
        dir: PathBuf,
        /// The differing keys, `a.b: old -> new`.
        diff: String,
    },
    /// The run directory already holds a run and neither resume nor overwrite was asked for.
    #[error(
        "run directory {dir} already holds a run; pass --resume to continue it or --overwrite to \
         start over"
    )]
    RunExists {
        /// The run directory.
        dir: PathBuf,
    },
    /// `--resume` found nothing to resume.
    #[error("nothing to resume in {dir}: {reason}")]
    NothingToResume {
        /// Where it looked.
        dir: PathBuf,
        /// Why nothing qualified.
        reason: String,
    },
    /// A loss term became NaN or infinite.
    #[error(
        "loss term `{term}` is {value} at phase `{phase}`, epoch {epoch}, step {step} (global step \
         {global_step}); training stopped. {}",
        match last_good {
            Some(p) => format!("Last good checkpoint: {} (lower the learning rate or fix the input, then --resume).", p.display()),
            None => "No checkpoint was written yet.".to_string(),
        }
    )]
    NonFiniteLoss {
        /// Name of the term.
        term: String,
        /// Its value (NaN or ±inf).
        value: f64,
        /// Phase name.
        phase: String,
        /// Global epoch (0-based).
        epoch: usize,
        /// Step inside the epoch (0-based).
        step: usize,
        /// Step since the start of the run.
        global_step: usize,
        /// The last checkpoint written before the failure.
        last_good: Option<PathBuf>,
    },
    /// A checkpoint is missing a file or fails its checksum.
    #[error("checkpoint {path} is unusable: {reason}")]
    Checkpoint {
        /// The checkpoint directory or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A model or optimiser record could not be saved or restored.
    #[error("record {path}: {reason}")]
    Record {
        /// The file.
        path: PathBuf,
        /// burn's message.
        reason: String,
    },
    /// The method asked for an optimiser that is not configured.
    #[error("unknown optimizer `{name}`; configured: {known}")]
    UnknownOptimizer {
        /// Asked-for name.
        name: String,
        /// Configured names.
        known: String,
    },
    /// A plot could not be drawn.
    #[error("plotting {path}: {reason}")]
    Plot {
        /// Output file.
        path: PathBuf,
        /// The drawing error.
        reason: String,
    },
    /// An error raised by the method's own code (data loading, relation refresh, ...).
    #[error(transparent)]
    Task(Box<dyn std::error::Error + Send + Sync>),
}

impl TrainError {
    /// Wraps a method's error.
    pub fn task(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        TrainError::Task(Box::new(err))
    }

    /// Wraps a method's error message.
    pub fn msg(msg: impl Into<String>) -> Self {
        TrainError::Task(msg.into().into())
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        TrainError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
