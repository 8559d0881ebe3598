//! CSRMS's hyper-parameters (the paper's "Offline stage", "Training stage"; defaults from the
//! authors' code: SGD momentum 0.9, backbone lr 5e-3, GCN lr 1e-2, ×0.5 every 30 epochs, 300
//! epochs, batch 32, n = m = 5, seed 1; docs/csrms.md).

use burn::config::Config;
use relata_backbone::{ResNetConfig, ResNetDepth};
use relata_dataset::transform::{CSRMS_CIFAR_MEAN, CSRMS_CIFAR_STD};
use relata_dataset::{Pipeline, Transform};
use relata_train::LrSchedule;
use serde::{Deserialize, Serialize};

use crate::art::FuzzyArtConfig;
use crate::curriculum::CurriculumConfig;
use crate::error::CsrmsError;

/// The clustering behind the relation graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Clustering {
    /// Fuzzy ART with complement coding (relata's decision, docs/csrms.md: the default).
    Art(FuzzyArtConfig),
    /// k-means with k clusters (the released pipeline's choice, K = 50).
    KMeans {
        /// Clusters.
        k: usize,
    },
}

/// Which model is trained: CSRMS, or the cross-entropy baseline every run is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// The whole method.
    Full,
    /// The same backbone trained with plain cross-entropy on the anchors, same epochs and data.
    Baseline,
    /// The equal-compute control: CSRMS's schedule and sampler (warm-up, relation refreshes,
    /// each anchor with its n positives and m negatives), trained with cross-entropy alone on
    /// every sampled image — no GCN, smoothing, L_neg or L_inter. It sees what CSRMS sees, so a
    /// gain of `full` over it is the relation modelling's, not the extra images'.
    Control,
}

impl Variant {
    /// `full` / `baseline`, as in the results table.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Full => "full",
            Variant::Baseline => "baseline",
            Variant::Control => "control",
        }
    }
}

/// The classifier whose accuracy a results table compares with the baseline's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Head {
    /// The backbone's linear classifier (L_cls): the head the baseline and control also have;
    /// it sees the same input, the pooled feature of one image, in training and at test.
    Linear,
    /// The GCN branch's classifier (L_gcn), the head the authors report; at test time each
    /// image is wired to copies of itself and smoothed with the prototypes expected under the
    /// linear head's softmax (docs/csrms.md, "Evaluation").
    Gcn,
}

impl Head {
    /// The results-row key of this head's top-1.
    pub fn top1_key(self) -> &'static str {
        match self {
            Head::Linear => "top1",
            Head::Gcn => "gcn_top1",
        }
    }
}

/// A whole CSRMS run.
#[derive(Config, Debug, PartialEq)]
pub struct CsrmsConfig {
    /// Backbone (CIFAR stem for 32×32 images).
    pub backbone: ResNetConfig,
    /// Number of classes.
    pub classes: usize,
    /// CSRMS or the CE baseline.
    #[config(default = "Variant::Full")]
    pub variant: Variant,
    /// GCN hidden width (256).
    #[config(default = 256)]
    pub gcn_hidden: usize,
    /// Positives per anchor, n (5).
    #[config(default = 5)]
    pub positives: usize,
    /// Negatives per anchor, m (5).
    #[config(default = 5)]
    pub negatives: usize,
    /// The clustering of the offline stage.
    #[config(default = "Clustering::Art(FuzzyArtConfig::new())")]
    pub clustering: Clustering,
    /// ρ₁, the difficulty threshold (0.95).
    #[config(default = 0.95)]
    pub rho1: f64,
    /// ρ₂, the share a cluster needs to count for a class prototype (0.65).
    #[config(default = 0.65)]
    pub rho2: f64,
    /// Curriculum of the L_neg weights.
    #[config(default = "CurriculumConfig::new()")]
    pub curriculum: CurriculumConfig,
    /// Train α_u, β_u, α_a, β_a (else keep them at `smoothing_init`).
    #[config(default = true)]
    pub learnable_smoothing: bool,
    /// Initial (or fixed) α_u, β_u, α_a, β_a.
    #[config(default = "[1.0, 0.0, 1.0, 0.0]")]
    pub smoothing_init: [f64; 4],
    /// Weight of L_gcn (0.5).
    #[config(default = 0.5)]
    pub weight_gcn: f64,
    /// Weight of each of L_cls, L_neg, L_inter ((1 − 0.5)/3).
    #[config(default = "[1.0 / 6.0, 1.0 / 6.0, 1.0 / 6.0]")]
    pub weights_cls_neg_inter: [f64; 3],
    /// L_cls over every image of the batch's sub-graph — anchors, their positives and
    /// negatives — instead of the anchors alone (the released code). The sampled images pass
    /// through the backbone anyway; with this on, CSRMS learns from their labels too.
    #[config(default = false)]
    pub cls_on_sampled: bool,
    /// The head a results table compares with the baseline (both are always reported).
    #[config(default = "Head::Linear")]
    pub reported_head: Head,
    /// Epochs in all, warm-up included (300).
    #[config(default = 300)]
    pub epochs: usize,
    /// Cross-entropy epochs before the first relation graph: the "warm-up model" whose features
    /// the first clustering reads (the baseline trains these epochs the same way).
    #[config(default = 10)]
    pub warmup_epochs: usize,
    /// Rebuild the relation graph every this many epochs after warm-up (0: once).
    #[config(default = 30)]
    pub refresh_every: usize,
    /// Backbone (and its classifier) learning rate (5e-3).
    #[config(default = 5e-3)]
    pub lr: f64,
    /// GCN, smoothing and GCN-classifier learning rate (1e-2).
    #[config(default = 1e-2)]
    pub gcn_lr: f64,
    /// SGD momentum (0.9).
    #[config(default = 0.9)]
    pub momentum: f64,
    /// Weight decay (0 in the code; its comment suggests 1e-4).
    #[config(default = 0.0)]
    pub weight_decay: f64,
    /// The learning rates are multiplied by `lr_gamma` every `lr_step` epochs.
    #[config(default = 30)]
    pub lr_step: usize,
    /// Multiplier (0.5).
    #[config(default = 0.5)]
    pub lr_gamma: f64,
    /// Another schedule over the whole run in place of the code's step schedule (`lr_step`,
    /// `lr_gamma` are then unused): short runs end noisy while the step schedule still leaves
    /// a large learning rate at the last epoch, and a cosine to zero settles them.
    #[config(default = "None")]
    pub lr_schedule: Option<LrSchedule>,
    /// Anchors per batch (32).
    #[config(default = 32)]
    pub batch_size: usize,
    /// Training image side (images of another size are resized first).
    #[config(default = 32)]
    pub image_size: u32,
    /// Seed (the authors' code uses 1; relata's library and CLI default to
    /// [`relata_train::DEFAULT_SEED`] so that both give the same run).
    #[config(default = "relata_train::DEFAULT_SEED")]
    pub seed: u64,
}

impl CsrmsConfig {
    /// The authors' CIFAR setting: CIFAR ResNet-18, 300 epochs.
    pub fn cifar(classes: usize) -> Self {
        Self::new(
            ResNetConfig::new(ResNetDepth::ResNet18).with_cifar_stem(true),
            classes,
        )
    }

    /// The learning-rate schedule over the whole run: `lr_schedule`, else the code's step
    /// schedule (× `lr_gamma` every `lr_step` epochs).
    pub fn schedule(&self) -> LrSchedule {
        self.lr_schedule.clone().unwrap_or(LrSchedule::Step {
            step_size: self.lr_step,
            gamma: self.lr_gamma,
        })
    }

    /// Epochs of the relation phase (the run's epochs after the warm-up).
    pub fn relation_epochs(&self) -> usize {
        self.epochs.saturating_sub(self.warmup_epochs)
    }

    /// Checks every value, naming the field.
    pub fn check(&self) -> Result<(), CsrmsError> {
        let bad = |m: String| Err(CsrmsError::Config(m));
        if self.classes < 2 {
            return bad(format!(
                "classes = {}: CSRMS needs at least two classes",
                self.classes
            ));
        }
        if self.batch_size < 2 {
            return bad(format!(
                "batch_size = {}: batch norm needs at least 2 anchors",
                self.batch_size
            ));
        }
        if self.positives == 0 || self.negatives == 0 {
            return bad("positives and negatives must be at least 1 per anchor".into());
        }
        if self.epochs == 0 || self.warmup_epochs > self.epochs {
            return bad(format!(
                "epochs = {}, warmup_epochs = {}: need epochs ≥ 1 and warmup_epochs ≤ epochs",
                self.epochs, self.warmup_epochs
            ));
        }
        if self.variant != Variant::Baseline && self.relation_epochs() == 0 {
            return bad(format!(
                "warmup_epochs = epochs = {}: no epoch is left for CSRMS's relation phase",
                self.epochs
            ));
        }
        if !(0.5..=1.0).contains(&self.rho1) {
            return bad(format!(
                "rho1 = {}: use [0.5, 1] (easy needs r ≥ rho1, hard r ≤ 1 − rho1)",
                self.rho1
            ));
        }
        if !(0.0..=1.0).contains(&self.rho2) {
            return bad(format!(
                "rho2 = {}: use [0, 1] (a share of a cluster)",
                self.rho2
            ));
        }
        for (name, v) in [("lr", self.lr), ("gcn_lr", self.gcn_lr)] {
            if !(v > 0.0 && v.is_finite()) {
                return bad(format!("{name} = {v}: must be positive"));
            }
        }
        if self.lr_step == 0 || self.lr_gamma <= 0.0 || !self.lr_gamma.is_finite() {
            return bad("lr_step must be ≥ 1 and lr_gamma positive".into());
        }
        if let Some(schedule) = &self.lr_schedule {
            schedule
                .validate()
                .map_err(|e| CsrmsError::Config(format!("lr_schedule: {e}")))?;
        }
        let weights = [self.weight_gcn]
            .into_iter()
            .chain(self.weights_cls_neg_inter);
        if weights.clone().any(|w| !(w >= 0.0 && w.is_finite())) {
            return bad("loss weights must be finite and non-negative".into());
        }
        if self.gcn_hidden == 0 || self.image_size < 8 {
            return bad("gcn_hidden must be positive and image_size at least 8".into());
        }
        match &self.clustering {
            Clustering::Art(art) => art.check()?,
            Clustering::KMeans { k } if *k < 1 => {
                return bad("clustering k-means with k = 0".into());
            }
            Clustering::KMeans { .. } => {}
        }
        self.curriculum.check()
    }

    /// Training transform: resize to `image_size` (a copy when the image already has that
    /// size) → reflect-pad by 1/8 of the side → random crop → horizontal flip; CSRMS's CIFAR
    /// statistics.
    pub fn train_pipeline(&self) -> Pipeline {
        let mut p = self.test_pipeline();
        p.name = "csrms_train".into();
        p.transforms.push(Transform::RandomCrop {
            size: self.image_size,
            padding: self.image_size / 8,
        });
        p.transforms.push(Transform::HorizontalFlip { p: 0.5 });
        p
    }

    /// Test transform: resize to `image_size`, normalise.
    pub fn test_pipeline(&self) -> Pipeline {
        let s = self.image_size;
        Pipeline {
            name: "csrms_test".into(),
            transforms: vec![Transform::ResizeExact {
                width: s,
                height: s,
            }],
            mean: CSRMS_CIFAR_MEAN,
            std: CSRMS_CIFAR_STD,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_check_and_bad_values_are_named() {
        CsrmsConfig::cifar(10).check().unwrap();
        let e = CsrmsConfig::cifar(1).check().unwrap_err();
        assert!(e.to_string().contains("classes"), "{e}");
        let e = CsrmsConfig::cifar(10)
            .with_warmup_epochs(300)
            .check()
            .unwrap_err();
        assert!(e.to_string().contains("relation phase"), "{e}");
        // The baseline has no relation phase.
        CsrmsConfig::cifar(10)
            .with_warmup_epochs(300)
            .with_variant(Variant::Baseline)
            .check()
            .unwrap();
        let e = CsrmsConfig::cifar(10).with_rho1(0.3).check().unwrap_err();
        assert!(e.to_string().contains("rho1"), "{e}");
        let e = CsrmsConfig::cifar(10)
            .with_clustering(Clustering::Art(FuzzyArtConfig::new().with_rho(2.0)))
            .check()
            .unwrap_err();
        assert!(e.to_string().contains("art.rho"), "{e}");
    }

    #[test]
    fn config_round_trips_through_json() {
        let c = CsrmsConfig::cifar(10).with_clustering(Clustering::KMeans { k: 50 });
        let back: CsrmsConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn pipelines_end_at_the_training_size() {
        let c = CsrmsConfig::cifar(10).with_image_size(48);
        assert_eq!(c.test_pipeline().output_size((64, 80)), (48, 48));
        assert_eq!(c.train_pipeline().output_size((32, 32)), (48, 48));
    }
    #[test]
    fn a_schedule_replaces_the_step_schedule_and_is_checked() {
        let step = CsrmsConfig::cifar(10).with_lr_step(7).with_lr_gamma(0.1);
        assert_eq!(
            step.schedule(),
            LrSchedule::Step {
                step_size: 7,
                gamma: 0.1
            }
        );
        let cosine = LrSchedule::Cosine {
            epochs: 300,
            min_factor: 0.0,
            per_iteration: true,
        };
        let c = step.with_lr_schedule(Some(cosine.clone()));
        c.check().unwrap();
        assert_eq!(c.schedule(), cosine);
        let trainer = crate::train::trainer_config(&c);
        assert_eq!(trainer.optimizers[0].schedule, cosine);
        // A saved configuration from before the field existed still loads.
        let mut json: serde_json::Value = serde_json::to_value(&c).unwrap();
        json.as_object_mut().unwrap().remove("lr_schedule");
        let old: CsrmsConfig = serde_json::from_value(json).unwrap();
        assert_eq!(old.lr_schedule, None);
        let bad = c.with_lr_schedule(Some(LrSchedule::Cosine {
            epochs: 0,
            min_factor: 0.0,
            per_iteration: false,
        }));
        let e = bad.check().unwrap_err().to_string();
        assert!(e.contains("lr_schedule"), "{e}");
    }
}
