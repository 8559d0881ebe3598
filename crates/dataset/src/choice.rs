//! Which images a reproduction of an image method (CMBH, CSRMS, ISL) trains and tests on.

use std::path::PathBuf;

use crate::formats::Format;

/// The data of a reproduction: the embedded generated set, or a real dataset on disk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DataChoice {
    /// synth-fine, generated at the size the preset asks for (nothing to download).
    #[default]
    SynthFine,
    /// A dataset in its official layout (or an image folder).
    Real {
        /// Its format.
        format: Format,
        /// Its root directory.
        dir: PathBuf,
    },
}

impl DataChoice {
    /// The dataset's name in run paths and results (`synth-fine`, `cub`, …).
    pub fn name(&self) -> &'static str {
        match self {
            DataChoice::SynthFine => "synth-fine",
            DataChoice::Real { format, .. } => format.name(),
        }
    }

    /// A real dataset: `Some((format, dir))`; `None` for synth-fine.
    pub fn real(&self) -> Option<(Format, &std::path::Path)> {
        match self {
            DataChoice::SynthFine => None,
            DataChoice::Real { format, dir } => Some((*format, dir)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_format() {
        assert_eq!(DataChoice::default().name(), "synth-fine");
        let cub = DataChoice::Real {
            format: Format::Cub,
            dir: "/data/cub".into(),
        };
        assert_eq!(cub.name(), "cub");
        assert_eq!(
            cub.real(),
            Some((Format::Cub, std::path::Path::new("/data/cub")))
        );
        assert_eq!(DataChoice::SynthFine.real(), None);
    }
}
