//! The reproduction presets every method's `reproduce` offers (docs/design.md, Training and results): what each preset
//! means is the method's business (its `preset_config`), the names and their parsing are shared.

use serde::{Deserialize, Serialize};

use crate::error::TrainError;

/// Reproduction presets (docs/design.md, Training and results).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Seconds: a tiny network on tiny data, for tests.
    Smoke,
    /// Minutes on a laptop CPU: the embedded synthetic data.
    Default,
    /// The paper's protocol (its network, schedule and data).
    Paper,
}

impl std::str::FromStr for Preset {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self, TrainError> {
        match s.to_ascii_lowercase().as_str() {
            "smoke" => Ok(Preset::Smoke),
            "default" => Ok(Preset::Default),
            "paper" => Ok(Preset::Paper),
            other => Err(TrainError::Config(format!(
                "unknown preset `{other}` (known: smoke, default, paper)"
            ))),
        }
    }
}

impl Preset {
    /// The name used in results.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Smoke => "smoke",
            Preset::Default => "default",
            Preset::Paper => "paper",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_an_error() {
        for p in [Preset::Smoke, Preset::Default, Preset::Paper] {
            assert_eq!(p.name().parse::<Preset>().unwrap(), p);
        }
        assert_eq!("PAPER".parse::<Preset>().unwrap(), Preset::Paper);
        let err = "huge".parse::<Preset>().unwrap_err().to_string();
        assert!(err.contains("unknown preset `huge`"), "{err}");
    }
}
