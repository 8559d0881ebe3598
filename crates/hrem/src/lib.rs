//! relata-hrem: HREM (Fu et al., CVPR 2023), image–text matching with instance-level relation
//! modelling. Region features and captions are embedded into one space; during training a
//! relation module lets the embeddings of a batch's images and captions attend to each other
//! along learned connections and relevance, while inference stays a dot product of the two
//! encoders' outputs. Usage and design choices: `docs/hrem.md`.
//!
//! | file | what | paper section |
//! | --- | --- | --- |
//! | [`config`] | encoders, relation module, losses, optimisation | all |
//! | [`attention`] | multi-head attention with additive bias and mask, post-norm Transformer layer | Encoders, Fusion |
//! | [`encoder`] | region FC+MLP, BiGRU / BERT, top-2-mean + Transformer pooling, β-mix, L2 | Encoders |
//! | [`relation`] | fragment scores, connections, relevance, Fusion / Standalone | Instance-level relation modelling |
//! | [`loss`] | distance-weighted / hardest triplet, KL relevance regulariser | Losses |
//! | [`data`] | region batches and drop, tokenisation and word augmentation | Data |
//! | [`model`] | the trained model, save/load | — |
//! | [`train`] | the training loop, warm-up, neighbour batches, dev selection, [`fit`] | Optimisation |
//! | [`eval`] | R@K both ways, rSum, COCO 1K folds | Evaluation |
//! | [`reproduce`] | presets, `cargo xtask reproduce hrem` as a library call | — |
//! | [`search`] | text → image and image → text search on a trained run | — |
//! | [`step_parity`] | training steps compared with the authors' released code | — |
//!
//! Library use without xtask — train on the embedded `synth-captions`, load the saved model,
//! embed images and captions into the joint space:
//!
//! ```
//! use relata_hrem::burn::tensor::{Device, Tensor, TensorData};
//! use relata_hrem::dataset::SynthCaptionsConfig;
//! use relata_hrem::data::region_batch;
//! use relata_hrem::training::Verbosity;
//! use relata_hrem::{EncoderConfig, FitOptions, HremConfig, HremModel, evaluate, fit};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = Device::flex(); // or Device::wgpu(..), Device::tch(..) with that feature
//! let root = std::env::temp_dir().join(format!("relata-hrem-doc-{}", std::process::id()));
//! // Region features + captions in the SCAN precomp layout (what Flickr30K / COCO ship as).
//! let data = SynthCaptionsConfig { train: 40, dev: 10, test: 10, regions: 6, dim: 16,
//!     ..Default::default() }.write(&root.join("data"))?;
//! let (train, test) = (data.split("train")?, data.split("test")?);
//!
//! // Small encoders (BiGRU text encoder), two epochs, relations on after 5 steps.
//! let config = HremConfig::new(EncoderConfig::new(train.dim).with_embed(32).with_heads(2)
//!         .with_ff(32))
//!     .with_epochs(2).with_batch_size(16).with_warmup_iterations(5);
//! let mut options = FitOptions::new("hrem", "synth-captions");
//! options.run = options.run.with_runs_root(root.join("runs"));
//! options.verbosity = Verbosity::Quiet;
//! let trained = fit(&config, train, data.split("dev").ok(), &device, &options)?;
//! let recall = evaluate(&trained.model, &trained.extra.tokenizer, test, None, &device)?;
//! println!("rSum {:.1}", recall.rsum);
//!
//! // The run saved the encoders and the vocabulary; load them and embed.
//! let (model, _config, tokenizer) = HremModel::load(&trained.run_dir.join("model"), &device)?;
//! let captions = model.embed_captions(&tokenizer, &["a red cube", "two blue balls"], &device)?;
//! let (regions, shape, lengths) = region_batch(test, &[0, 1, 2], None)?;
//! let images = model.embed_images(Tensor::from_data(TensorData::new(regions, shape), &device),
//!     &lengths);
//! let similarity = images.matmul(captions.transpose()); // [3 images, 2 captions]
//! assert_eq!(similarity.dims(), [3, 2]);
//! # std::fs::remove_dir_all(&root)?;
//! # Ok(()) }
//! ```

#![recursion_limit = "256"]

pub mod attention;
pub mod config;
pub mod data;
pub mod encoder;
pub mod error;
pub mod eval;
pub mod loss;
pub mod model;
pub mod relation;
pub mod reproduce;
pub mod search;
pub mod step_parity;
pub mod train;

pub use config::{
    EncoderConfig, FragmentSlots, HremConfig, Interaction, Negatives, RelationConfig,
    TextEncoderKind,
};
pub use error::HremError;
pub use eval::{SplitEmbeddings, embed_split, evaluate};
pub use model::HremModel;
pub use relata_train::{FitOptions, Trained};
pub use train::{HremExtra, HremTask, TrainedHrem, fit};

/// Backends and datasets a downstream crate needs, re-exported so that depending on
/// `relata-hrem` alone is enough.
pub use burn;
pub use relata_backbone as backbone;
pub use relata_dataset as dataset;
pub use relata_metrics as metrics;
pub use relata_train as training;
