//! CMBH's hyper-parameters (the paper's "Notation", "Training / inference"; docs/cmbh.md) and the
//! ablation switches of the paper's Table 4 (B, +L, +T, +R).

use burn::config::Config;
use relata_backbone::{ResNetConfig, ResNetDepth};
use serde::{Deserialize, Serialize};

use crate::error::CmbhError;

/// Which of the training-only modules are on (Table 4). `B` is the hash path alone
/// (backbone → N_sub-l → C → hash head, L_hash); `L` adds early fusion (N_con, M^con) with
/// the stage classifiers and L_cls (Eq. 8–10); `T` adds L_trans (Eq. 11) and the
/// softmax-weighted hash head (Eq. 12, introduced with it); `R` adds the region branch
/// (Algorithm 1, L_region, Eq. 13–14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ablation {
    /// `L`: cross-layer early fusion and the classification losses.
    pub cross_layer: bool,
    /// `T`: the cross-layer transfer loss and the weighted hash head.
    pub transfer: bool,
    /// `R`: multi-region feature embedding.
    pub regions: bool,
}

impl Ablation {
    /// The full method (B+L+T+R).
    pub const FULL: Ablation = Ablation {
        cross_layer: true,
        transfer: true,
        regions: true,
    };

    /// The variants of Table 4 in order: `B`, `B+L`, `B+L+T`, `full`.
    pub fn table4() -> [Ablation; 4] {
        let b = Ablation {
            cross_layer: false,
            transfer: false,
            regions: false,
        };
        let l = Ablation {
            cross_layer: true,
            ..b
        };
        let t = Ablation {
            transfer: true,
            ..l
        };
        [b, l, t, Self::FULL]
    }

    /// The result-row name: `full`, `B`, `B+L`, `B+L+T` (other combinations spell their
    /// switches, e.g. `B+R`).
    pub fn variant(&self) -> String {
        if *self == Self::FULL {
            return "full".into();
        }
        let mut name = String::from("B");
        for (on, tag) in [
            (self.cross_layer, "+L"),
            (self.transfer, "+T"),
            (self.regions, "+R"),
        ] {
            if on {
                name.push_str(tag);
            }
        }
        name
    }

    /// Parses `full`, `B`, `B+L`, `B+L+T`, `B+L+T+R`, ... (case-insensitive).
    pub fn parse(name: &str) -> Result<Self, CmbhError> {
        let upper = name.trim().to_ascii_uppercase();
        if upper == "FULL" {
            return Ok(Self::FULL);
        }
        let mut parts = upper.split('+');
        if parts.next() != Some("B") {
            return Err(CmbhError::Config(format!(
                "unknown ablation `{name}`: expected `full` or `B` followed by +L, +T, +R \
                 (e.g. `B+L+T`)"
            )));
        }
        let mut a = Ablation {
            cross_layer: false,
            transfer: false,
            regions: false,
        };
        for p in parts {
            match p {
                "L" => a.cross_layer = true,
                "T" => a.transfer = true,
                "R" => a.regions = true,
                other => {
                    return Err(CmbhError::Config(format!(
                        "unknown ablation switch `+{other}` in `{name}` (known: +L, +T, +R)"
                    )));
                }
            }
        }
        Ok(a)
    }
}

/// The model: backbone, sub-networks, C-vectors, hash head and the training-only heads.
#[derive(Config, Debug, PartialEq)]
pub struct CmbhConfig {
    /// Backbone (torchvision layout; `width` 64 is the paper's network).
    pub backbone: ResNetConfig,
    /// Classes y.
    pub classes: usize,
    /// Code length b.
    pub bits: usize,
    /// C-vectors per class k (paper: 2).
    #[config(default = 2)]
    pub k: usize,
    /// Feature size d of every f^j (paper's N_sub FC width; 512 reproduces Table 5's counts).
    #[config(default = 512)]
    pub dim: usize,
    /// Channels of N_sub's 1×1 bottleneck conv (512 in the network behind Table 5).
    #[config(default = 512)]
    pub sub_hidden: usize,
    /// α, the class-score scale (> 1; the paper finds 12–16 stable).
    #[config(default = 16.0)]
    pub alpha: f64,
    /// l: which of the L = 3 tapped stages (1 = layer2, 2 = layer3, 3 = layer4) feeds the hash
    /// path (paper: 2).
    #[config(default = 2)]
    pub hash_stage: usize,
    /// M, regions cropped by Algorithm 1 (paper: 4).
    #[config(default = 4)]
    pub regions: usize,
    /// Which training-only modules are on.
    #[config(default = "Ablation::FULL")]
    pub ablation: Ablation,
    /// How the loss terms are reduced over a batch (the paper's mix of means and sums, or
    /// means throughout).
    #[config(default = "LossReduction::Paper")]
    pub reduction: LossReduction,
}

/// How the terms of Eq. 15 are reduced over a batch.
///
/// The paper writes the two hash losses as means (Eq. 6–7: 1/n², 1/(n·y)) and the
/// classification-type losses as sums over the samples (Σ_i in Eq. 10, 11 and 14). Taking batch
/// means for all of them weights classification batch-size times less against hashing, whose
/// terms grow as b² with the code length — enough that, from scratch, longer codes scored lower
/// (docs/cmbh.md, "Design choices").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossReduction {
    /// As written: L_hash-pair and L_hash-proxy are batch means; L_cls, L_trans and L_region
    /// are sums over the batch's samples.
    #[default]
    Paper,
    /// Every term a batch mean (PyTorch's default reduction).
    Mean,
}

impl LossReduction {
    /// The factor on a classification-type term computed as a batch mean of `batch` samples.
    pub fn classification_scale(self, batch: usize) -> f64 {
        match self {
            LossReduction::Paper => batch as f64,
            LossReduction::Mean => 1.0,
        }
    }
}

impl std::str::FromStr for LossReduction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "paper" => Ok(LossReduction::Paper),
            "mean" => Ok(LossReduction::Mean),
            other => Err(format!(
                "unknown loss reduction `{other}`; known: paper, mean"
            )),
        }
    }
}

/// The number of backbone stages tapped (the paper's L).
pub const STAGES: usize = 3;

impl CmbhConfig {
    /// The paper's network for `classes` and `bits` on ResNet-50 or ResNet-18.
    pub fn paper(depth: ResNetDepth, classes: usize, bits: usize) -> Self {
        Self::new(ResNetConfig::new(depth), classes, bits)
    }

    /// Checks every value, naming the field and the fix.
    pub fn check(&self) -> Result<(), CmbhError> {
        let bad = |m: String| Err(CmbhError::Config(m));
        if self.classes < 2 {
            return bad(format!("classes = {}: need at least 2", self.classes));
        }
        if self.bits == 0 || self.bits > 1024 {
            return bad(format!("bits = {}: use 1..=1024 (paper: 12–48)", self.bits));
        }
        if self.k == 0 {
            return bad("k = 0: need at least one C-vector per class (paper: 2)".into());
        }
        if self.dim == 0 || self.sub_hidden == 0 || self.backbone.width == 0 {
            return bad("dim, sub_hidden and backbone.width must be positive".into());
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return bad(format!(
                "alpha = {}: must be a positive number (paper: 12–16)",
                self.alpha
            ));
        }
        if !(1..=STAGES).contains(&self.hash_stage) {
            return bad(format!(
                "hash_stage = {}: must be 1, 2 or 3 (layer2, layer3, layer4; paper: 2)",
                self.hash_stage
            ));
        }
        let a = self.ablation;
        if (a.transfer || a.regions) && !a.cross_layer {
            return bad(format!(
                "ablation {}: +T and +R build on +L (they use the fused scores ŷ⁰ and the stage \
                 classifiers); turn cross_layer on",
                a.variant()
            ));
        }
        if a.regions && self.regions == 0 {
            return bad("regions = 0 with the region branch on: set regions ≥ 1 (paper: 4)".into());
        }
        if self.regions > 16 {
            return bad(format!(
                "regions = {}: Algorithm 1's threshold 0.9 − 0.05·m must stay positive; use ≤ 16",
                self.regions
            ));
        }
        Ok(())
    }

    /// Channels of the three tapped stages (layer2, layer3, layer4).
    pub fn stage_channels(&self) -> [usize; STAGES] {
        let c = self.backbone.stage_channels();
        [c[1], c[2], c[3]]
    }

    /// The backbone stage (1-based, `layerN`) that stage j (1-based) of the paper taps.
    pub fn layer_of(stage: usize) -> usize {
        stage + 1
    }
}

/// The optimisation and data settings of one training run.
#[derive(Config, Debug, PartialEq)]
pub struct CmbhTrainingConfig {
    /// The model.
    pub model: CmbhConfig,
    /// Epochs (paper: 100).
    #[config(default = 100)]
    pub epochs: usize,
    /// Batch size (paper: 16 for CUB/Aircraft, 64 for the larger sets).
    #[config(default = 16)]
    pub batch_size: usize,
    /// SGD learning rate (paper: 1e-3).
    #[config(default = 1e-3)]
    pub lr: f64,
    /// SGD momentum (paper: 0.9).
    #[config(default = 0.9)]
    pub momentum: f64,
    /// Weight decay (paper: 5e-4).
    #[config(default = 5e-4)]
    pub weight_decay: f64,
    /// Epochs at which the learning rate is divided by 10 (paper: 70).
    #[config(default = "vec![70]")]
    pub lr_milestones: Vec<usize>,
    /// Resize side before cropping (paper: 255).
    #[config(default = 255)]
    pub resize: u32,
    /// Crop side (paper: 224).
    #[config(default = 224)]
    pub crop: u32,
    /// A random horizontal flip after the crop. The paper's protocol has none (resize → random
    /// crop); relata's smaller presets, trained from scratch on the embedded data, keep it.
    #[config(default = true)]
    pub flip: bool,
    /// Early stopping on the validation mAP: with a validation split, end training once it
    /// has gone this many epochs without a new best and keep the best epoch's model (`None`:
    /// train every epoch and keep the last, as the paper's protocol does).
    #[config(default = "None")]
    pub patience: Option<usize>,
    /// With `patience`: plateaus answered by dividing the learning rate by 10 (and waiting
    /// `patience` epochs again) before one ends training.
    #[config(default = 0)]
    pub plateau_drops: usize,
    /// Seed of every random stream (weights, order, augmentation, initial codes).
    #[config(default = "relata_train::DEFAULT_SEED")]
    pub seed: u64,
}

impl CmbhTrainingConfig {
    /// The paper's protocol (Sec. 5.4): 100 epochs, SGD 0.9 / 5e-4, lr 1e-3 ÷ 10 at 70,
    /// 255 → 224 random crops and no flip, batch 16 (64 for the large datasets).
    pub fn paper(model: CmbhConfig, batch_size: usize) -> Self {
        Self::new(model)
            .with_batch_size(batch_size)
            .with_flip(false)
    }

    /// Checks every value.
    pub fn check(&self) -> Result<(), CmbhError> {
        self.model.check()?;
        let bad = |m: String| Err(CmbhError::Config(m));
        if self.epochs == 0 {
            return bad("epochs = 0: train for at least one epoch".into());
        }
        if self.batch_size < 2 {
            return bad(format!(
                "batch_size = {}: batch norm needs at least 2 images per batch",
                self.batch_size
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr = {}: must be positive", self.lr));
        }
        if self.patience == Some(0) {
            return bad(
                "patience = 0: give at least one epoch (or none to train every epoch)".into(),
            );
        }
        if self.crop == 0 || self.resize < self.crop {
            return bad(format!(
                "resize = {}, crop = {}: need resize ≥ crop > 0",
                self.resize, self.crop
            ));
        }
        Ok(())
    }
}
