//! relata-dataset: dataset formats, the image pipeline, samplers and the embedded synthetic
//! datasets (docs/design.md, Data).
//!
//! - [`formats`]: readers for CUB-200-2011, FGVC-Aircraft, Food-101, NABirds, VegFru,
//!   CIFAR-10/100 (binary), SVHN (format 2), ImageFolder and SCAN precomp features;
//! - [`source`]: what a reader returns ([`ImageDataset`], [`Sample`], [`ImageRef`]);
//! - [`transform`]: decode → augment → normalise, with the papers' presets;
//! - [`batch`]: parallel batch assembly into burn tensors;
//! - [`sampler`]: epoch and P×K samplers and the [`sampler::BatchComposer`] hook;
//! - [`synth`]: `synth-fine` and `synth-captions`;
//! - [`rng`]: deterministic random streams shared with the training scaffold.

pub mod batch;
pub mod choice;
pub mod error;
pub mod export;
pub mod formats;
pub mod holdout;
pub mod inspect;
pub mod rng;
pub mod sampler;
pub mod source;
pub mod synth;
pub mod transform;

pub use batch::{BatchLoader, HostBatch, ImageBatch};
pub use choice::DataChoice;
pub use error::DatasetError;
pub use formats::Format;
pub use formats::precomp::{PrecompDataset, PrecompSplit};
pub use holdout::{HeldOut, hold_out_per_class};
pub use rng::SeededRng;
pub use sampler::{BatchComposer, EpochSampler, PkSampler};
pub use source::{ImageDataset, ImageRef, RawImages, ReadOptions, Sample};
pub use synth::{SynthCaptionsConfig, SynthFine, SynthFineConfig};
pub use transform::{Pipeline, Transform};
