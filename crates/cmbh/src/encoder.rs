//! The inference path (spec "Training / inference", Eq. 1–3 and 12): backbone up to stage l,
//! N_sub-l, the C-vectors and the hash head — nothing of the training-only modules — turning
//! images into packed ±1 codes. Saved as `encoder.json` (the model configuration) +
//! `encoder.bpk` (burn's record).

use std::fs;
use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Tensor};
use relata_backbone::ResNet;
use relata_metrics::PackedCodes;

use crate::config::CmbhConfig;
use crate::error::CmbhError;
use crate::model::{CmbhModel, Reduce, SubNetwork, cosine_match, hash_head};

const CONFIG_FILE: &str = "encoder.json";
const RECORD_FILE: &str = "encoder.bpk";

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
        fs::create_dir_all(dir).map_err(|e| CmbhError::file(dir, format!("creating: {e}")))?;
        let json = serde_json::to_vec_pretty(config)
            .map_err(|e| CmbhError::Config(format!("serialising: {e}")))?;
        let cfg_path = dir.join(CONFIG_FILE);
        fs::write(&cfg_path, json).map_err(|e| CmbhError::file(&cfg_path, e.to_string()))?;
        let record_path = dir.join(RECORD_FILE);
        let bytes = self
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| CmbhError::file(&record_path, e.to_string()))?;
        fs::write(&record_path, &bytes[..])
            .map_err(|e| CmbhError::file(&record_path, e.to_string()))?;
        Ok(())
    }

    /// Loads an encoder saved by [`CmbhEncoder::save`], with its configuration.
    pub fn load(dir: &Path, device: &Device) -> Result<(Self, CmbhConfig), CmbhError> {
        let cfg_path = dir.join(CONFIG_FILE);
        let text = fs::read_to_string(&cfg_path).map_err(|e| {
            CmbhError::file(
                &cfg_path,
                format!("{e}; is this a CMBH run's `encoder` directory?"),
            )
        })?;
        let config: CmbhConfig = serde_json::from_str(&text)
            .map_err(|e| CmbhError::file(&cfg_path, format!("not a CMBH configuration: {e}")))?;
        config.check()?;
        let record_path = dir.join(RECORD_FILE);
        let bytes =
            fs::read(&record_path).map_err(|e| CmbhError::file(&record_path, e.to_string()))?;
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes))
            .map_err(|e| CmbhError::file(&record_path, format!("corrupt record: {e}")))?;
        let encoder = config
            .init_encoder(device)
            .try_load_record(record)
            .map_err(|e| {
                CmbhError::file(
                    &record_path,
                    format!("does not match {}: {e}", cfg_path.display()),
                )
            })?;
        Ok((encoder, config))
    }
}
