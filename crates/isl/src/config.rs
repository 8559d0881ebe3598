//! ISL's hyper-parameters (the paper's "Schedule", "Backbone and memory bank", "GAN", "Mining";
//! docs/isl.md).

use burn::config::Config;
use relata_backbone::{ResNetConfig, ResNetDepth};

use crate::error::IslError;
use crate::gan::GanConfig;
use crate::mining::MiningConfig;

/// When the GAN phase of a round ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum GanStop {
    /// The authors' rule on the epoch-mean G loss (at most `max_epochs`; at least 10 epochs in
    /// round 0): stop when the minimum is not within the last 3 epochs.
    EarlyStop {
        /// Upper bound (200).
        max_epochs: usize,
    },
    /// A fixed number of epochs.
    Fixed {
        /// Epochs.
        epochs: usize,
    },
}

/// How the encoder's learning rate moves over the run.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum IslLrSchedule {
    /// The authors' one schedule across every round: PyTorch's `ReduceLROnPlateau` (mode max)
    /// on weighted-kNN top-1, stepped after every `every` backbone epochs. The authors watch the
    /// test set; here it watches images held out of the training set (`IslConfig::monitor_share`),
    /// scored against the memory bank with the training labels — labels that nothing else in
    /// training reads.
    Plateau {
        /// Backbone epochs between two checks (5 in the release).
        every: usize,
        /// Multiplier of a drop (0.8).
        factor: f64,
        /// Checks without a new best before a drop (1).
        patience: usize,
    },
    /// A cosine from `lr` to 0 within each backbone phase, restarting every round; watches
    /// nothing and holds nothing out.
    CosinePerRound,
}

/// The whole ISL run.
#[derive(Config, Debug, PartialEq)]
pub struct IslConfig {
    /// Backbone (CIFAR stem for 32×32 images).
    pub backbone: ResNetConfig,
    /// Embedding size (128).
    #[config(default = 128)]
    pub dim: usize,
    /// Softmax temperature τ (0.1; 0.07 for ImageNet).
    #[config(default = 0.1)]
    pub temperature: f64,
    /// Memory momentum η (0.5).
    #[config(default = 0.5)]
    pub momentum: f64,
    /// Weight λ of L₂ (0.5).
    #[config(default = 0.5)]
    pub hard_weight: f64,
    /// Rounds in all, round 0 (the backbone alone) included, as the authors count them: round 0,
    /// then `rounds − 1` rounds of GAN → mining → backbone. The authors train 4 (800 backbone
    /// epochs on CIFAR).
    #[config(default = 4)]
    pub rounds: usize,
    /// Backbone epochs per round (200 for CIFAR in the code).
    #[config(default = 200)]
    pub backbone_epochs: usize,
    /// GAN phase length.
    #[config(default = "GanStop::EarlyStop { max_epochs: 200 }")]
    pub gan_stop: GanStop,
    /// Mining epochs at most per round (200).
    #[config(default = 200)]
    pub max_mining_epochs: usize,
    /// End a mining phase after this many consecutive epochs that add no pair (`None`: the
    /// authors' rule — only the quota or `max_mining_epochs` end it). Where D rejects every
    /// proxy, further epochs repeat the same verdicts and only cost time.
    #[config(default = "None")]
    pub mining_patience: Option<usize>,
    /// Mining quota per round: stop when Σ(|S_i|−1)/N > (round + 1)·quota (0.5).
    #[config(default = 0.5)]
    pub quota: f64,
    /// GAN sizes.
    #[config(default = "GanConfig::new()")]
    pub gan: GanConfig,
    /// Mining.
    #[config(default = "MiningConfig::new()")]
    pub mining: MiningConfig,
    /// SGD learning rate (0.03) at the start; `lr_schedule` moves it.
    #[config(default = 0.03)]
    pub lr: f64,
    /// The encoder's learning-rate schedule (the authors' plateau rule across rounds).
    #[config(default = "IslLrSchedule::Plateau { every: 5, factor: 0.8, patience: 1 }")]
    pub lr_schedule: IslLrSchedule,
    /// Share of the training images held out of training to watch the plateau rule (0.1);
    /// unused by `CosinePerRound`.
    #[config(default = 0.1)]
    pub monitor_share: f64,
    /// SGD weight decay (5e-4).
    #[config(default = 5e-4)]
    pub weight_decay: f64,
    /// Adam learning rate of G and D (1e-4).
    #[config(default = 1e-4)]
    pub gan_lr: f64,
    /// Batch size (128).
    #[config(default = 128)]
    pub batch_size: usize,
    /// Training image side (random resized crop).
    #[config(default = 32)]
    pub image_size: u32,
    /// Scale range of the training random resized crop ([0.2, 1] as in the authors' code).
    #[config(default = "[0.2, 1.0]")]
    pub crop_scale: [f64; 2],
    /// Hue jitter of the training augmentation (0.4 as in the authors' code). Lower it where
    /// hue is what tells classes apart (synth-fine's siblings differ only in the head's hue):
    /// an invariance to it, learnt from augmented views, erases exactly that cue.
    #[config(default = 0.4)]
    pub hue_jitter: f64,
    /// Neighbours of the weighted-kNN evaluation (200, the authors' value for CIFAR's 5,000
    /// images per class; with a few dozen per class, as in synth-fine, 200 neighbours span
    /// several classes and the vote drifts to the class prior).
    #[config(default = 200)]
    pub knn_k: usize,
    /// Seed.
    #[config(default = "relata_train::DEFAULT_SEED")]
    pub seed: u64,
}

impl IslConfig {
    /// The authors' small-image setting: CIFAR ResNet-18.
    pub fn cifar() -> Self {
        Self::new(ResNetConfig::new(ResNetDepth::ResNet18).with_cifar_stem(true))
    }

    /// Checks every value.
    pub fn check(&self) -> Result<(), IslError> {
        let bad = |m: String| Err(IslError::Config(m));
        if self.dim == 0 || self.batch_size < 2 {
            return bad("dim must be positive and batch_size at least 2".into());
        }
        if self.rounds == 0 {
            return bad(
                "rounds = 0: rounds count round 0 too (1 is instance discrimination alone, the \
                 authors train 4)"
                    .into(),
            );
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad(format!(
                "temperature = {}: must be positive",
                self.temperature
            ));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad(format!("momentum = {}: use [0, 1)", self.momentum));
        }
        if self.backbone_epochs == 0 {
            return bad("backbone_epochs = 0: train at least one epoch per round".into());
        }
        if self.knn_k == 0 {
            return bad("knn_k = 0: the kNN evaluation needs at least one neighbour".into());
        }
        if self.mining_patience == Some(0) {
            return bad("mining_patience = 0: use None or at least 1 epoch".into());
        }
        let [lo, hi] = self.crop_scale;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            return bad(format!(
                "crop_scale = [{lo}, {hi}]: use 0 < low <= high <= 1 (fractions of the image area)"
            ));
        }
        if !(0.0..=0.5).contains(&self.hue_jitter) {
            return bad(format!(
                "hue_jitter = {}: use [0, 0.5] (a fraction of the hue circle)",
                self.hue_jitter
            ));
        }
        if let IslLrSchedule::Plateau {
            every,
            factor,
            patience: _,
        } = self.lr_schedule
        {
            if every == 0 || !(factor > 0.0 && factor < 1.0) {
                return bad(format!(
                    "lr_schedule Plateau {{ every: {every}, factor: {factor} }}: check at least \
                     every epoch, with a factor in (0, 1) (the release: every 5, factor 0.8)"
                ));
            }
            if !(self.monitor_share > 0.0 && self.monitor_share < 0.5) {
                return bad(format!(
                    "monitor_share = {}: the plateau rule watches a held-out part of the \
                     training set; use (0, 0.5), e.g. 0.1",
                    self.monitor_share
                ));
            }
        }
        if self.gan.dim != self.dim {
            return bad(format!(
                "gan.dim = {} but dim = {}: the GAN works on the embedding",
                self.gan.dim, self.dim
            ));
        }
        Ok(())
    }
}
