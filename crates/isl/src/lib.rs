//! relata-isl: ISL (Wang et al., ICCV 2021), instance similarity learning for unsupervised
//! features. A memory bank and instance discrimination are extended with positives mined by a
//! GAN on the feature manifold, round after round. Spec: `shared/specs/isl.md`.
//!
//! | file | what | spec section |
//! | --- | --- | --- |
//! | [`memory`] | memory bank, non-parametric softmax, momentum update | Backbone and memory bank |
//! | [`positives`] | the positive sets S_i, mining statistics | Mining positives |
//! | [`loss`] | L₁ (positive-set likelihood), L₂ (hard-positive KL) | Backbone objective |
//! | [`gan`] | generator, discriminator, BCE losses, hardest negatives | GAN |
//! | [`mining`] | proxies, scores, radius, symmetric growth of S | Mining positives |
//!
//! Status: the method's parts above, each tested; the round schedule on the training scaffold,
//! `cargo xtask reproduce isl` and the evaluation are not built yet (issue 10).

#![recursion_limit = "256"]

pub mod config;
pub mod error;
pub mod eval;
pub mod gan;
pub mod loss;
pub mod memory;
pub mod mining;
pub mod model;
pub mod positives;
pub mod reproduce;
pub mod train;

pub use config::{GanStop, IslConfig};
pub use error::IslError;
pub use eval::{IslEval, evaluate};
pub use gan::{Gan, GanConfig};
pub use memory::MemoryBank;
pub use mining::{MiningConfig, Proposal, apply_proposals, mine_batch};
pub use model::{IslModel, IslNet};
pub use positives::{MiningReport, PositiveSets};
pub use train::{IslTask, TrainedIsl, fit};
