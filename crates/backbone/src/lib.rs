//! relata-backbone: encoders shared by the methods, with PyTorch weight import.
//!
//! - [`resnet`]: ResNet-18/50 in torchvision's layout, per-stage outputs, width multiplier,
//!   CIFAR stem;
//! - [`weights`]: state-dict import (`.pth` / `.safetensors`) with a complete mismatch report,
//!   and relata's own checkpoints;
//! - [`bert`]: a BERT encoder loading Hugging Face checkpoint directories, with tokenisation;
//! - [`gru`] and [`vocab`]: the BiGRU caption encoder with packed-sequence semantics and its
//!   word vocabulary;
//! - [`params`]: parameter identity — independent copies of a module, and a check that no two
//!   parameters of a model are one;
//! - [`pretrained`]: a width-8 ResNet-18 pretrained on synthetic source classes, the default
//!   presets' stand-in for ImageNet weights;
//! - [`ops`]: convolution, batch norm, max pooling and ReLU on burn's modules, by relata's CPU
//!   kernels on `flex` (re-exported from `relata-flex`), for models built beside these encoders.

#![recursion_limit = "256"]

pub mod bert;
pub mod error;
pub mod gru;
pub mod params;
pub mod pretrained;
pub mod resnet;
pub mod vocab;
pub mod weights;

pub use relata_flex::{ops, retain_freed_memory};

pub use bert::{BertConfig, BertModel, BertTokenizer, TokenBatch};
pub use error::BackboneError;
pub use gru::{BiGruEncoder, BiGruEncoderConfig};
pub use params::{check_own_params, fresh_params, shared_param_ids};
pub use resnet::{ResNet, ResNetConfig, ResNetDepth, ResNetFeatures, StageCost};
pub use vocab::Vocab;
pub use weights::{
    ImportReport, import_state_dict, import_with_remap, load_checkpoint, save_checkpoint,
};
