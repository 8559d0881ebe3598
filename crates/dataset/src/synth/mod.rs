//! The embedded datasets (docs/design.md, Data): generated deterministically from a seed, no files needed.

pub mod captions;
pub mod fine;

pub use captions::SynthCaptionsConfig;
pub use fine::{SynthFine, SynthFineConfig};
