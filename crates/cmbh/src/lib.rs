//! relata-cmbh: CMBH (Chen et al., CVPR 2024), characteristics-matching hash codes for
//! fine-grained image retrieval. A hash code says how well an image matches k learned
//! characteristic vectors (C-vectors) per class; cross-layer fusion and multi-region crops
//! shape those vectors in training only, so inference is backbone-to-stage-l → N_sub-l →
//! cosine matching → hash head → sign. Usage and design choices: `docs/cmbh.md`.
//!
//! | file | what | paper |
//! | --- | --- | --- |
//! | [`config`] | hyper-parameters, ablation switches B/L/T/R | Sec. 5.4, Table 4 |
//! | [`model`] | N_sub-j, C, matching, class scores, hash head, N_con, N_cls-j | Eq. 1–4, 8–10, 12–13 |
//! | [`region`] | heat map, Algorithm 1, crops | Alg. 1 |
//! | [`loss`] | L_hash-pair, L_hash-proxy, L_cls, L_trans (L_region) | Eq. 5–7, 10–11, 14 |
//! | [`train`] | code cache, the training step, [`train::fit`] | Eq. 15 |
//! | [`encoder`] | the inference path, packed codes, save/load | Eq. 12 |
//! | [`eval`] | mAP@all, database codes | Sec. 5.2 |
//! | [`cost`] | parameters and MACs of the inference path | Table 5 |
//!
//! Library use without xtask — train on the embedded `synth-fine`, save, load, encode:
//!
//! ```
//! use relata_cmbh::burn::tensor::Device;
//! use relata_cmbh::dataset::{BatchLoader, Pipeline, SynthFineConfig};
//! use relata_cmbh::training::{RunOptions, Verbosity};
//! use relata_cmbh::backbone::{ResNetConfig, ResNetDepth};
//! use relata_cmbh::{Ablation, CmbhConfig, CmbhEncoder, CmbhTrainingConfig, FitOptions, fit};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = Device::flex(); // or Device::wgpu(..), Device::tch(..) with that feature
//! let data = SynthFineConfig { families: 2, classes_per_family: 2, train_per_class: 8,
//!     test_per_class: 4, image_size: 32, ..Default::default() }.generate()?.dataset;
//!
//! // A small network (the paper's is `CmbhConfig::paper(ResNetDepth::ResNet50, classes, bits)`).
//! let model = CmbhConfig::new(ResNetConfig::new(ResNetDepth::ResNet18).with_width(8),
//!     data.num_classes(), 16)
//!     .with_dim(16).with_sub_hidden(16).with_alpha(4.0).with_regions(2)
//!     .with_ablation(Ablation::FULL);
//! let config = CmbhTrainingConfig::new(model).with_epochs(2).with_batch_size(8)
//!     .with_lr(0.05).with_lr_milestones(vec![]).with_resize(36).with_crop(32);
//!
//! let runs = std::env::temp_dir().join(format!("relata-cmbh-doc-{}", std::process::id()));
//! let mut options = FitOptions::new("cmbh", "synth-fine");
//! options.run = RunOptions::new("cmbh", "synth-fine").with_runs_root(&runs);
//! options.verbosity = Verbosity::Quiet;
//! let trained = fit(&config, data.split("train")?, None, &device, &options)?;
//!
//! // Keep only the inference path, save it, load it back.
//! let encoder = trained.model.into_encoder();
//! encoder.save(&config.model, &runs.join("encoder"))?;
//! let (encoder, _) = CmbhEncoder::load(&runs.join("encoder"), &device)?;
//!
//! // Images → 16-bit packed codes.
//! let test = data.split("test")?;
//! let loader = BatchLoader::new(test, Pipeline::cmbh_test_sized(36, 32), 0)?;
//! let batch = loader.load(&[0, 1, 2], 0, &device)?;
//! let codes = encoder.encode(batch.images)?;
//! assert_eq!((codes.len(), codes.bits()), (3, 16));
//! # std::fs::remove_dir_all(&runs)?;
//! # Ok(()) }
//! ```

#![recursion_limit = "256"]

mod claims;
pub mod config;
pub mod cost;
pub mod encoder;
pub mod error;
pub mod eval;
pub mod folder;
pub mod loss;
pub mod model;
pub mod region;
pub mod reproduce;
pub mod search;
pub mod train;

pub use config::{Ablation, CmbhConfig, CmbhTrainingConfig, LossReduction};
pub use cost::InferenceCost;
pub use encoder::CmbhEncoder;
pub use error::CmbhError;
pub use eval::{Evaluation, encode_samples, evaluate};
pub use model::CmbhModel;
pub use relata_train::{FitOptions, Trained};
pub use train::{TrainedCmbh, fit};

/// Backends and datasets a downstream crate needs, re-exported so that depending on
/// `relata-cmbh` alone is enough.
pub use burn;
pub use relata_backbone as backbone;
pub use relata_dataset as dataset;
pub use relata_metrics as metrics;
pub use relata_train as training;
