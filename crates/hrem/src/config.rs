//! HREM's hyper-parameters (the paper's "Encoders", "Instance-level relation modelling", "Losses",
//! "Optimisation"; defaults are the authors' Flickr30K values: d = 1024, 16 heads, ff 1024, β =
//! 0.8, λ = 1, σ = 1, margin 0.2, warm-up 8,000 iterations, AdamW 5e-4 (BERT ×0.1; docs/hrem.md),
//! clip 2, 30 epochs with ×0.1 at 15 and 25, batch 128).

use std::path::PathBuf;

use burn::config::Config;
use serde::{Deserialize, Serialize};

use crate::error::HremError;

/// The caption encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TextEncoderKind {
    /// Bidirectional GRU over a vocabulary built from the training captions (outputs of the
    /// two directions averaged), word embeddings of `word_dim`.
    BiGru {
        /// Word embedding size (300 in the VSE family).
        word_dim: usize,
    },
    /// A Hugging Face BERT checkpoint directory (`config.json`, weights, vocabulary).
    Bert {
        /// The checkpoint directory.
        path: PathBuf,
        /// Longest caption in word pieces (longer ones are cut).
        max_len: usize,
    },
}

/// How the instance-level relations enter the embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interaction {
    /// One Transformer layer over the 2N-long sequence [v; u] with the relevance as additive
    /// attention bias and the connection as mask (the released code's, the default).
    Fusion,
    /// Cross-attention image↔text on the cross-modal blocks, then self-attention within each
    /// modality on the intra-modal blocks (the paper's other mechanism).
    Standalone,
}

/// Which fragment slots the fragment scores read (the paper's instance-level relation
/// modelling, and what the released code reads: docs/hrem.md, Design choices).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FragmentSlots {
    /// Valid regions and words only: a batch's padding never changes a pair's score (the
    /// default).
    Valid,
    /// As the released code: every region slot, padding included (`img_len_use=False`), and
    /// the first max(len, k) word slots, zero features past the batch's padding; the mean
    /// p_{T→I} and the per-region maxima still read the first len words. For comparing with
    /// the authors' code on the same data.
    Released,
}

/// A configuration saved before the option existed has no `slots`: it reads as `Valid`, the
/// only behaviour there was, so older run directories still load. (serde hands a missing field
/// to `deserialize_option` as "none".)
impl<'de> Deserialize<'de> for FragmentSlots {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Named {
            Valid,
            Released,
        }
        Ok(match Option::<Named>::deserialize(deserializer)? {
            None | Some(Named::Valid) => Self::Valid,
            Some(Named::Released) => Self::Released,
        })
    }
}

/// The triplet loss's choice of negatives.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Negatives {
    /// One negative per positive pair, drawn by distance-weighted sampling (Wu et al. 2017;
    /// the released code's default).
    DistanceWeighted {
        /// Dimension in the weight formula (512 hard-coded in the code).
        n: usize,
        /// Only negatives closer than this (1.7 Flickr30K, 1.9 COCO).
        cutoff: f64,
    },
    /// Distance-weighted sampling with the released code's float32 arithmetic: the weights are
    /// shifted by the row's maximum over every column, so a negative far past the cutoff can
    /// leave a row without weight, and then the whole direction of the batch scores zero (the
    /// code's `torch.multinomial` raises and it returns 0). For step parity with the authors'
    /// code; `DistanceWeighted` keeps each anchor's eligible negatives instead.
    DistanceWeightedReleased {
        /// Dimension in the weight formula (512 hard-coded in the code).
        n: usize,
        /// Only negatives closer than this (1.7 Flickr30K, 1.9 COCO).
        cutoff: f64,
    },
    /// The hardest negative of each anchor (VSE++ max violation, the paper's).
    Hardest,
}

/// The relation module (train only).
#[derive(Config, Debug, PartialEq)]
pub struct RelationConfig {
    /// Fraction of the batch each node is connected to (⌊threshold·N⌋ per row; 0.5).
    #[config(default = 0.5)]
    pub threshold: f64,
    /// Weight λ of the relevance in the attention logits (1.0 Flickr30K, 1.5 COCO).
    #[config(default = 1.0)]
    pub lambda: f64,
    /// σ of the intra-modal relevance exp(−d/σ) and of the regulariser's target (1).
    #[config(default = 1.0)]
    pub sigma: f64,
    /// Per-word / per-region maxima the relevance MLP reads (10).
    #[config(default = 10)]
    pub top_k: usize,
    /// Fusion or Standalone.
    #[config(default = "Interaction::Fusion")]
    pub interaction: Interaction,
    /// The fragment slots the scores read: valid ones, or the released code's.
    #[config(default = "FragmentSlots::Valid")]
    pub slots: FragmentSlots,
}

/// The encoders (the whole inference path).
#[derive(Config, Debug, PartialEq)]
pub struct EncoderConfig {
    /// Region feature size (2048 for bottom-up features).
    pub region_dim: usize,
    /// Joint embedding size d (1024).
    #[config(default = 1024)]
    pub embed: usize,
    /// Attention heads of the pooling Transformer layers (16).
    #[config(default = 16)]
    pub heads: usize,
    /// Feed-forward width of every Transformer layer (1024).
    #[config(default = 1024)]
    pub ff: usize,
    /// Dropout of the Transformer layers (0.1).
    #[config(default = 0.1)]
    pub dropout: f64,
    /// β: weight of the top-2-mean pooling against the attention pooling (0.8).
    #[config(default = 0.8)]
    pub beta: f64,
    /// The caption encoder.
    #[config(default = "TextEncoderKind::BiGru { word_dim: 300 }")]
    pub text: TextEncoderKind,
}

/// A whole HREM run.
#[derive(Config, Debug, PartialEq)]
pub struct HremConfig {
    /// The encoders.
    pub encoder: EncoderConfig,
    /// The relation module.
    #[config(default = "RelationConfig::new()")]
    pub relation: RelationConfig,
    /// Train the relation module and its losses (false: the baseline, L_tri(v, u) only).
    #[config(default = true)]
    pub relations: bool,
    /// Triplet margin (0.2).
    #[config(default = 0.2)]
    pub margin: f64,
    /// Negatives of the triplet loss.
    #[config(default = "Negatives::DistanceWeighted { n: 512, cutoff: 1.7 }")]
    pub negatives: Negatives,
    /// Weight of the KL relevance regulariser (10).
    #[config(default = 10.0)]
    pub reg_weight: f64,
    /// Iterations of L_tri(v, u) alone before the relation losses start (8,000).
    #[config(default = 8000)]
    pub warmup_iterations: usize,
    /// Train-only augmentation: drop each region with this probability (0.2).
    #[config(default = 0.2)]
    pub region_drop: f64,
    /// Train-only augmentation: alter each word with this probability (0.2): 50 % masked,
    /// 10 % a random word, 40 % deleted.
    #[config(default = 0.2)]
    pub word_augment: f64,
    /// Minimum count of a word in the training captions to enter the BiGRU vocabulary.
    #[config(default = 1)]
    pub vocab_min_count: usize,
    /// Neighbour batch sampling: k-means on image embeddings, batches of P clusters × K images
    /// (`None`: random caption batches, as the released code).
    #[config(default = "None")]
    pub neighbour_batches: Option<[usize; 2]>,
    /// AdamW learning rate (5e-4).
    #[config(default = 5e-4)]
    pub lr: f64,
    /// BERT's learning rate as a multiple of `lr` (0.1).
    #[config(default = 0.1)]
    pub bert_lr_factor: f64,
    /// AdamW weight decay (1e-4).
    #[config(default = 1e-4)]
    pub weight_decay: f64,
    /// Global gradient-norm clip (2.0).
    #[config(default = 2.0)]
    pub clip: f64,
    /// Epochs (30).
    #[config(default = 30)]
    pub epochs: usize,
    /// Epochs at which the learning rate is multiplied by 0.1 (15, 25).
    #[config(default = "vec![15, 25]")]
    pub lr_milestones: Vec<usize>,
    /// Captions per batch (128 Flickr30K, 256 COCO).
    #[config(default = 128)]
    pub batch_size: usize,
    /// Seed.
    #[config(default = "relata_train::DEFAULT_SEED")]
    pub seed: u64,
}

impl HremConfig {
    /// Checks every value, naming the field.
    pub fn check(&self) -> Result<(), HremError> {
        let bad = |m: String| Err(HremError::Config(m));
        let e = &self.encoder;
        if e.region_dim == 0 || e.embed == 0 || e.ff == 0 {
            return bad("encoder sizes (region_dim, embed, ff) must be positive".into());
        }
        if e.heads == 0 || !e.embed.is_multiple_of(e.heads) {
            return bad(format!(
                "encoder.heads = {}: must divide embed = {}",
                e.heads, e.embed
            ));
        }
        if !(0.0..=1.0).contains(&e.beta) || !(0.0..1.0).contains(&e.dropout) {
            return bad(format!(
                "encoder.beta = {} must be in [0, 1] and dropout = {} in [0, 1)",
                e.beta, e.dropout
            ));
        }
        let r = &self.relation;
        if !(r.threshold > 0.0 && r.threshold <= 1.0) {
            return bad(format!(
                "relation.threshold = {}: use (0, 1] (a fraction of the batch)",
                r.threshold
            ));
        }
        if r.sigma.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
            || r.top_k == 0
            || !r.lambda.is_finite()
        {
            return bad("relation.sigma must be positive, top_k ≥ 1 and lambda finite".into());
        }
        if self.batch_size < 2 {
            return bad(format!(
                "batch_size = {}: a triplet loss needs at least 2 captions",
                self.batch_size
            ));
        }
        if !(0.0..1.0).contains(&self.region_drop) || !(0.0..=1.0).contains(&self.word_augment) {
            return bad("region_drop must be in [0, 1) and word_augment in [0, 1]".into());
        }
        if let Negatives::DistanceWeighted { n, cutoff }
        | Negatives::DistanceWeightedReleased { n, cutoff } = self.negatives
            && (n < 4 || !(cutoff > 0.0 && cutoff <= 2.0))
        {
            return bad(format!(
                "distance-weighted negatives: n = {n} must be ≥ 4 and cutoff = {cutoff} in (0, 2]"
            ));
        }
        let positive = |x: f64| x > 0.0 && x.is_finite();
        if !positive(self.lr) || !positive(self.clip) || self.epochs == 0 {
            return bad("lr and clip must be positive and epochs ≥ 1".into());
        }
        if let Some([p, k]) = self.neighbour_batches
            && (p == 0 || k == 0 || p * k * 5 < 2)
        {
            return bad("neighbour_batches = [P, K]: both must be positive".into());
        }
        Ok(())
    }

    /// Whether the text encoder is BERT (its parameters get `bert_lr_factor`).
    pub fn uses_bert(&self) -> bool {
        matches!(self.encoder.text, TextEncoderKind::Bert { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_slots_round_trip_and_default_when_missing() {
        let released = RelationConfig::new().with_slots(FragmentSlots::Released);
        let json = serde_json::to_string(&released).unwrap();
        assert!(json.contains("\"slots\":\"released\""), "{json}");
        let back: RelationConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back.slots, FragmentSlots::Released);
        // A configuration written before `slots` existed.
        let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
        old.as_object_mut().unwrap().remove("slots");
        let back: RelationConfig = serde_json::from_value(old).unwrap();
        assert_eq!(back.slots, FragmentSlots::Valid);
        let bad = json.replace("released", "everything");
        let err = serde_json::from_str::<RelationConfig>(&bad).unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }
}
