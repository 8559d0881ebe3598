//! relata-csrms: CSRMS (Chen et al., ACM MM 2023), class-level structural relation modelling
//! and smoothing for supervised visual representations. Training features are clustered
//! offline (Fuzzy ART), class-level relations are read off the clusters, batches are sampled
//! along them, and a GCN over each batch's sub-graph regularises the representation.
//! Usage and design choices: `docs/csrms.md`.
//!
//! | file | what | paper section |
//! | --- | --- | --- |
//! | [`art`] | Fuzzy ART with complement coding | Offline stage, step 2 |
//! | [`relation`] | instance → pattern → class graph, R_ID/R_IS/R_MC, P(i), N(i), difficulty, prototypes | steps 3–6 |
//! | [`sampler`] | S_dp, S_ap with fallbacks, the batch sub-graph Â | step 4, Training stage |
//! | [`curriculum`] | λ_e, λ_m, λ_h under the constraint, the decay of α | Training stage |
//! | [`model`] | backbone + classifier, GCN, smoothing, GCN classifier; save/load | Training stage |
//! | [`loss`] | L_ce, L_neg, L_inter | Training stage (docs/csrms.md, Design choices) |
//! | [`train`] | warm-up and relation phases on the shared loop, [`fit`] | Offline + Training |
//! | [`eval`] | top-1 / top-5 over the whole test set | Evaluation |
//! | [`reproduce`] | presets, `cargo xtask reproduce csrms` as a library call | — |
//!
//! Library use without xtask — train on the embedded `synth-fine`, load the saved model,
//! classify and extract features:
//!
//! ```
//! use relata_csrms::burn::tensor::Device;
//! use relata_csrms::backbone::{ResNetConfig, ResNetDepth};
//! use relata_csrms::dataset::{BatchLoader, SynthFineConfig};
//! use relata_csrms::training::Verbosity;
//! use relata_csrms::{CsrmsConfig, CsrmsModel, FitOptions, evaluate, fit};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = Device::flex(); // or Device::wgpu(..), Device::tch(..) with that feature
//! let data = SynthFineConfig { families: 2, classes_per_family: 2, train_per_class: 8,
//!     test_per_class: 4, image_size: 32, ..Default::default() }.generate()?.dataset;
//! let (train, test) = (data.split("train")?, data.split("test")?);
//!
//! // A small network, one warm-up epoch and one CSRMS epoch (the paper's is
//! // `CsrmsConfig::cifar(classes)`).
//! let config = CsrmsConfig::new(ResNetConfig::new(ResNetDepth::ResNet18).with_width(8)
//!         .with_cifar_stem(true), data.num_classes())
//!     .with_gcn_hidden(16).with_positives(2).with_negatives(2)
//!     .with_epochs(2).with_warmup_epochs(1).with_batch_size(8);
//!
//! let runs = std::env::temp_dir().join(format!("relata-csrms-doc-{}", std::process::id()));
//! let mut options = FitOptions::new("csrms", "synth-fine");
//! options.run = options.run.with_runs_root(&runs);
//! options.verbosity = Verbosity::Quiet;
//! let trained = fit(&config, train, &device, &options)?;
//! let scores = evaluate(&trained.model, test, &config.test_pipeline(), config.classes, &device)?;
//! println!("top-1 {:.1}%, top-5 {:.1}%", scores.top1, scores.top5);
//!
//! // The run saved its model; load it back, classify and embed three test images.
//! let (model, config) = CsrmsModel::load(&trained.run_dir.join("model"), &device)?;
//! let images = BatchLoader::new(test, config.test_pipeline(), 0)?.load(&[0, 1, 2], 0, &device)?;
//! let classes = model.classify(images.images.clone()).argmax(1);
//! let features = model.features(images.images);
//! assert_eq!(classes.dims(), [3, 1]);
//! assert_eq!(features.dims()[0], 3);
//! # std::fs::remove_dir_all(&runs)?;
//! # Ok(()) }
//! ```

#![recursion_limit = "256"]

pub mod art;
pub mod config;
pub mod curriculum;
pub mod error;
pub mod eval;
pub mod loss;
pub mod model;
pub mod relation;
pub mod reproduce;
pub mod sampler;
pub mod train;

pub use art::{Clustering as ArtClustering, FuzzyArt, FuzzyArtConfig, fuzzy_art};
pub use config::{Clustering, CsrmsConfig, Head, Variant};
pub use curriculum::{Curriculum, CurriculumConfig, curriculum_weights};
pub use error::CsrmsError;
pub use eval::{CsrmsEval, evaluate};
pub use model::{CsrmsModel, Gcn, Prototypes, Smoothing};
pub use relata_train::{FitOptions, Trained};
pub use relation::{ClusterKind, Difficulty, RelationCounts, RelationGraph};
pub use sampler::{SampledSets, batch_adjacency, sample_sets};
pub use train::{CsrmsTask, TrainedCsrms, fit};

/// Backends and datasets a downstream crate needs, re-exported so that depending on
/// `relata-csrms` alone is enough.
pub use burn;
pub use relata_backbone as backbone;
pub use relata_dataset as dataset;
pub use relata_metrics as metrics;
pub use relata_train as training;
