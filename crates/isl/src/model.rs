//! The encoder (the paper's "Backbone and memory bank"; docs/isl.md): a ResNet, a linear head to
//! 128 dimensions and L2 normalisation; and the module that holds it with the GAN so one checkpoint
//! has both. The encoder alone is what a user keeps: `encoder.json` (the configuration) +
//! `encoder.bpk`.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use std::path::Path;

use burn::tensor::{Device, Tensor};
use relata_backbone::ResNet;

use crate::config::IslConfig;
use crate::error::IslError;
use crate::gan::Gan;
use crate::memory::l2_normalize;

/// ResNet → fc (→ 128) → L2.
#[derive(Module, Debug)]
pub struct IslNet {
    /// Backbone without its classifier.
    pub backbone: ResNet,
    /// The embedding head.
    pub head: Linear,
}

impl IslNet {
    /// L2-normalised embeddings `[n, dim]` of normalised images.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        l2_normalize(self.head.forward(self.backbone.pooled(images)))
    }

    /// Writes `encoder.json` + `encoder.bpk` into `dir` (created if needed).
    pub fn save(&self, config: &IslConfig, dir: &Path) -> Result<(), IslError> {
        Ok(relata_train::export::save_module(self, config, dir, STEM)?)
    }

    /// Loads an encoder saved by [`IslNet::save`], with its configuration.
    pub fn load(dir: &Path, device: &Device) -> Result<(Self, IslConfig), IslError> {
        let config: IslConfig =
            relata_train::export::load_config(dir, STEM, "an ISL run's `encoder` directory")?;
        config.check()?;
        let net = relata_train::export::load_module(config.init_net(device), dir, STEM)?;
        Ok((net, config))
    }
}

/// `encoder.json` + `encoder.bpk`.
const STEM: &str = "encoder";

/// Everything trained: the encoder (SGD) and the GAN (two Adams).
#[derive(Module, Debug)]
pub struct IslModel {
    /// The encoder.
    pub net: IslNet,
    /// G and D.
    pub gan: Gan,
}

impl IslConfig {
    /// Builds the encoder and the GAN.
    pub fn init(&self, device: &Device) -> IslModel {
        IslModel {
            net: self.init_net(device),
            gan: self.gan.init(device),
        }
    }

    /// Builds the encoder alone (the skeleton [`IslNet::load`] fills).
    pub fn init_net(&self, device: &Device) -> IslNet {
        let backbone = self.backbone.clone().with_num_classes(None);
        let out = backbone.out_channels();
        IslNet {
            backbone: backbone.init(device),
            head: LinearConfig::new(out, self.dim).init(device),
        }
    }
}
