//! relata-isl: ISL (Wang et al., ICCV 2021), instance similarity learning for unsupervised
//! features. A memory bank and instance discrimination are extended with positives mined by a
//! GAN on the feature manifold, round after round. Usage and design choices:
//! `docs/isl.md`.
//!
//! | file | what | paper section |
//! | --- | --- | --- |
//! | [`memory`] | memory bank, non-parametric softmax, momentum update | Backbone and memory bank |
//! | [`positives`] | the positive sets S_i, mining statistics | Mining positives |
//! | [`loss`] | L₁ (positive-set likelihood), L₂ (hard-positive KL) | Backbone objective |
//! | [`gan`] | generator, discriminator, BCE losses, hardest negatives | GAN |
//! | [`mining`] | proxies, scores, radius, symmetric growth of S | Mining positives |
//! | [`train`] | rounds on the shared training loop, [`fit`] | Schedule |
//! | [`model`] | encoder (ResNet → fc → L2) + GAN; the encoder's save/load | Backbone |
//! | [`eval`] | weighted kNN, k-means ACC/NMI/ARI | Evaluation |
//! | [`reproduce`] | presets, `cargo xtask reproduce isl` as a library call | — |
//!
//! Library use without xtask — train on the embedded `synth-fine` (labels hidden from
//! training), load the saved encoder, extract features:
//!
//! ```
//! use relata_isl::burn::tensor::Device;
//! use relata_isl::backbone::{ResNetConfig, ResNetDepth};
//! use relata_isl::dataset::{BatchLoader, Pipeline, SynthFineConfig};
//! use relata_isl::training::{RunOptions, Verbosity};
//! use relata_isl::{FitOptions, GanConfig, GanStop, IslConfig, IslNet, MiningConfig, fit};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = Device::flex(); // or Device::wgpu(..), Device::tch(..) with that feature
//! let data = SynthFineConfig { families: 2, classes_per_family: 2, train_per_class: 8,
//!     test_per_class: 4, image_size: 32, ..Default::default() }.generate()?.dataset;
//! let (train, test) = (data.split("train")?, data.split("test")?);
//!
//! // A small network and one short round (the paper's is `IslConfig::cifar()`).
//! let config = IslConfig::new(ResNetConfig::new(ResNetDepth::ResNet18).with_width(8)
//!         .with_cifar_stem(true))
//!     .with_dim(32).with_gan(GanConfig::new().with_dim(32).with_negatives(16))
//!     .with_mining(MiningConfig::new().with_negatives(16))
//!     .with_rounds(2).with_backbone_epochs(1).with_gan_stop(GanStop::Fixed { epochs: 1 })
//!     .with_max_mining_epochs(1).with_batch_size(16);
//!
//! let runs = std::env::temp_dir().join(format!("relata-isl-doc-{}", std::process::id()));
//! let mut options = FitOptions::new("isl", "synth-fine");
//! options.run = RunOptions::new("isl", "synth-fine").with_runs_root(&runs);
//! options.verbosity = Verbosity::Quiet;
//! let trained = fit(&config, train, test, &device, &options)?;
//! println!("kNN top-1 {:.1}% after round 0, {:.1}% at the end",
//!     trained.extra.round0.map_or(f64::NAN, |e| e.knn_top1), trained.extra.last.knn_top1);
//!
//! // The run saved its encoder; load it back and embed three test images.
//! let (net, config) = IslNet::load(&trained.run_dir.join("encoder"), &device)?;
//! let loader = BatchLoader::new(test, Pipeline::isl_test(), 0)?;
//! let features = net.forward(loader.load(&[0, 1, 2], 0, &device)?.images);
//! assert_eq!(features.dims(), [3, config.dim]);
//! # std::fs::remove_dir_all(&runs)?;
//! # Ok(()) }
//! ```

#![recursion_limit = "256"]

pub mod config;
pub mod error;
pub mod eval;
pub mod gan;
#[doc(hidden)] // the device code's reference in tests and `cargo xtask bench isl`
pub mod host_reference;
pub mod loss;
pub mod memory;
pub mod mining;
pub mod model;
pub mod positives;
pub mod reproduce;
pub mod train;

pub use config::{GanStop, IslConfig, IslLrSchedule};
pub use error::IslError;
pub use eval::{IslEval, evaluate};
pub use gan::{Gan, GanConfig};
pub use memory::MemoryBank;
pub use mining::{MiningConfig, Proposal, apply_proposals, mine_batch};
pub use model::{IslModel, IslNet};
pub use positives::{MiningReport, PositiveSets};
pub use relata_train::{FitOptions, Trained};
pub use train::{IslExtra, IslTask, RoundMining, TrainedIsl, fit, test_pipeline};

/// Backends and datasets a downstream crate needs, re-exported so that depending on
/// `relata-isl` alone is enough.
pub use burn;
pub use relata_backbone as backbone;
pub use relata_dataset as dataset;
pub use relata_metrics as metrics;
pub use relata_train as training;
