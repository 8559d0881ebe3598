//! The inference path (the paper's "Training / inference", Eq. 1–3 and 12; docs/cmbh.md): backbone
//! up to stage l, N_sub-l, the C-vectors and the hash head — nothing of the training-only modules —
//! turning images into packed ±1 codes. Saved as `encoder.json` (the model configuration) +
//! `encoder.bpk` (burn's record).

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use relata_backbone::ResNet;
use relata_metrics::PackedCodes;

use crate::config::CmbhConfig;
use crate::error::CmbhError;
use crate::model::{CmbhModel, Reduce, SubNetwork, cosine_match, hash_head};

/// `encoder.json` + `encoder.bpk`.
const STEM: &str = "encoder";

/// CMBH's encoder: images → b-bit codes.
#[derive(Module, Debug)]
pub struct CmbhEncoder {
    /// Backbone stages up to l (deeper stages removed).
    pub backbone: ResNet,
    /// N_sub-l.
    pub subnet: SubNetwork,
    /// C.
    pub cvectors: Param<Tensor<3>>,
    /// W_h.
    pub hash: Linear,
    /// α.
    pub alpha: f64,
    /// l.
    pub hash_stage: usize,
    /// Eq. 12 (true) or Eq. 4.
    pub weighted_hash: bool,
}

impl CmbhModel {
    /// Keeps only the inference path (drops layers after l, the other sub-networks, N_con and
    /// the stage classifiers).
    pub fn into_encoder(self) -> CmbhEncoder {
        let index = if self.all_stages {
            self.hash_stage - 1
        } else {
            0
        };
        let mut backbone = self.backbone;
        let layer = CmbhConfig::layer_of(self.hash_stage);
        if layer < 4 {
            backbone.layer4 = Vec::new();
        }
        if layer < 3 {
            backbone.layer3 = Vec::new();
        }
        let subnet = self
            .subnets
            .into_iter()
            .nth(index)
            .expect("the hash stage's sub-network exists");
        CmbhEncoder {
            backbone,
            subnet,
            cvectors: self.cvectors,
            hash: self.hash,
            alpha: self.alpha,
            hash_stage: self.hash_stage,
            weighted_hash: self.weighted_hash,
        }
    }
}

impl CmbhConfig {
    /// An untrained encoder of this configuration (the skeleton [`CmbhEncoder::load`] fills).
    pub fn init_encoder(&self, device: &Device) -> CmbhEncoder {
        // Built from a B-only model so that only the hash stage's sub-network is created.
        let mut cfg = self.clone();
        cfg.ablation.cross_layer = false;
        cfg.ablation.regions = false;
        let mut enc = cfg.init(device).into_encoder();
        enc.weighted_hash = self.ablation.transfer;
        enc
    }
}

impl CmbhEncoder {
    /// Code length.
    pub fn bits(&self) -> usize {
        self.hash.weight.dims()[1]
    }

    /// u = tanh(W_h vec(softmax(ŷ^l) ⊙ M)), `[n, bits]`, for `[n, 3, h, w]` normalised images.
    pub fn relaxed(&self, images: Tensor<4>) -> Tensor<2> {
        let layers = self
            .backbone
            .stages(images, CmbhConfig::layer_of(self.hash_stage));
        let map = layers.last().expect("at least one stage").clone();
        let f = self.subnet.forward(map);
        let (m, scores) = cosine_match(self.cvectors.val(), f, self.alpha, Reduce::Sum);
        hash_head(&self.hash, m, scores, self.weighted_hash).tanh()
    }

    /// b = sign(·) packed into `u64` words (bit = 1 for +1; sign(0) = +1).
    pub fn encode(&self, images: Tensor<4>) -> Result<PackedCodes, CmbhError> {
        let bits = self.bits();
        let u: Vec<f32> = self
            .relaxed(images)
            .into_data()
            .try_into_vec_as::<f32>()
            .map_err(|e| CmbhError::Input(format!("reading codes: {e:?}")))?;
        let signs: Vec<f32> = u
            .iter()
            .map(|&v| if v < 0.0 { -1.0 } else { 1.0 })
            .collect();
        Ok(PackedCodes::from_values(&signs, bits)?)
    }

    /// Writes `encoder.json` + `encoder.bpk` into `dir` (created if needed).
    pub fn save(&self, config: &CmbhConfig, dir: &Path) -> Result<(), CmbhError> {
        Ok(relata_train::export::save_module(self, config, dir, STEM)?)
    }

    /// Loads an encoder saved by [`CmbhEncoder::save`], with its configuration.
    pub fn load(dir: &Path, device: &Device) -> Result<(Self, CmbhConfig), CmbhError> {
        let config: CmbhConfig =
            relata_train::export::load_config(dir, STEM, "a CMBH run's `encoder` directory")?;
        config.check()?;
        let encoder = relata_train::export::load_module(config.init_encoder(device), dir, STEM)?;
        Ok((encoder, config))
    }
}
