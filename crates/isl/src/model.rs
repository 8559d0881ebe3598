//! The encoder (spec "Backbone and memory bank"): a ResNet, a linear head to 128 dimensions and
//! L2 normalisation; and the module that holds it with the GAN so one checkpoint has both.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use relata_backbone::ResNet;

use crate::config::IslConfig;
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
}

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
        let backbone = self.backbone.clone().with_num_classes(None);
        let out = backbone.out_channels();
        IslModel {
            net: IslNet {
                backbone: backbone.init(device),
                head: LinearConfig::new(out, self.dim).init(device),
            },
            gan: self.gan.init(device),
        }
    }
}
