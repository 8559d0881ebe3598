//! The embedded datasets (design §4): generated deterministically from a seed, no files needed.

pub mod captions;
pub mod fine;

pub use captions::SynthCaptionsConfig;
pub use fine::{SynthFine, SynthFineConfig};
