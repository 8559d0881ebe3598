//! `DatasetError`: every variant names the path and what was expected there.

use std::path::PathBuf;

/// Errors of dataset readers, the image pipeline and the embedded datasets.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A file or directory the format requires is not there.
    #[error("{path}: missing; expected {expected}")]
    Missing {
        /// The path looked for.
        path: PathBuf,
        /// What the format puts there.
        expected: String,
    },
    /// A list or data file does not follow the format.
    #[error("{path}{}: {reason}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line, for text lists.
        line: Option<usize>,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// Two files disagree on how many items there are.
    #[error("{path}: {found} {what}, expected {expected}")]
    Count {
        /// The file.
        path: PathBuf,
        /// What is counted.
        what: String,
        /// Expected count.
        expected: usize,
        /// Found count.
        found: usize,
    },
    /// A label outside the format's class list.
    #[error("{path}{}: unknown label {label:?}; {expected}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    UnknownLabel {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: Option<usize>,
        /// The label as written.
        label: String,
        /// The valid range or list.
        expected: String,
    },
    /// An image that cannot be decoded.
    #[error("{path}: cannot decode image ({reason}); pass skip_unreadable to skip such files")]
    Decode {
        /// The image file.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },
    /// Images found unreadable when a dataset was opened with verification, every one named.
    #[error(
        "{root}: {} unreadable image{}: {}; pass skip_unreadable to list and skip them",
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        shown(files)
    )]
    Unreadable {
        /// The dataset's root.
        root: PathBuf,
        /// Each bad image with the reason.
        files: Vec<String>,
    },
    /// An I/O error.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Invalid parameters (pipeline, sampler, embedded dataset).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which parameter set.
        what: String,
        /// What is wrong.
        reason: String,
    },
}

/// The first ten of `files`, and how many more.
fn shown(files: &[String]) -> String {
    let mut text = files
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if files.len() > 10 {
        text.push_str(&format!("; … and {} more", files.len() - 10));
    }
    text
}

impl DatasetError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DatasetError::Io {
            path: path.into(),
            source,
        }
    }

    /// `Missing` when the OS says the path is not there (naming what the format puts there),
    /// `Io` otherwise.
    pub(crate) fn opening(path: &std::path::Path, expected: &str, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            DatasetError::Missing {
                path: path.to_path_buf(),
                expected: expected.to_string(),
            }
        } else {
            DatasetError::io(path, source)
        }
    }

    pub(crate) fn malformed(
        path: impl Into<PathBuf>,
        line: Option<usize>,
        reason: impl Into<String>,
    ) -> Self {
        DatasetError::Malformed {
            path: path.into(),
            line,
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        DatasetError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
