//! CSRMS on the shared training loop (the paper's "Offline stage" and "Training stage";
//! docs/csrms.md):
//!
//! ```text
//! warmup    cross-entropy on the anchors (the "warm-up model" the first clustering reads)
//! relation  every `refresh_every` epochs: features of the training set (test transform,
//!           inference mode) → Fuzzy ART / k-means → relation graph → S_dp, S_ap, difficulty,
//!           prototypes; each step: anchors + their n positives + m negatives through the
//!           backbone, GCN over G_b, smoothing, L_gcn + L_cls + L_neg + L_inter
//! ```
//!
//! The baseline variant is one `train` phase of cross-entropy on the anchors for the same
//! epochs, with the same learning rates and schedule: its first `warmup_epochs` epochs are
//! identical to CSRMS's warm-up.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use relata_dataset::{BatchComposer, BatchLoader, EpochSampler, Sample};
use relata_metrics::{KMeansConfig, kmeans};
use relata_train::{
    EpochContext, EpochRecord, FitOptions, Loss, OptimizerConfig, OptimizerKind, PhaseConfig,
    PhaseControl, StepContext, TrainError, TrainTask, Trained, TrainerConfig, fit_task, mix_seed,
};
use serde::{Deserialize, Serialize};

use crate::art::fuzzy_art;
use crate::config::{Clustering, CsrmsConfig, Variant};
use crate::curriculum::Curriculum;
use crate::error::CsrmsError;
use crate::loss::{cross_entropy, inter_class_loss, negative_loss};
use crate::model::CsrmsModel;
use crate::relation::{Difficulty, RelationCounts, RelationGraph};
use crate::sampler::{SampledSets, batch_adjacency, sample_sets};

/// Phase names.
pub const WARMUP: &str = "warmup";
/// The phase that uses the relation graph.
pub const RELATION: &str = "relation";
/// The baseline's only phase.
pub const BASELINE: &str = "train";

/// What one refresh of the offline stage produced (kept in checkpoints). Its prototypes are set
/// on the model ([`CsrmsModel::set_prototypes`]), which saves them with its weights.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RelationState {
    /// S_dp and S_ap of every training sample.
    pub sets: Option<SampledSets>,
    /// Difficulty of every training sample.
    pub difficulty: Vec<Difficulty>,
    /// The last refresh's relation counts.
    pub counts: RelationCounts,
    /// Global epoch of the last refresh.
    pub refreshed_at: Option<usize>,
    /// The curriculum's progress.
    pub curriculum: Curriculum,
}

/// CSRMS's side of the training loop.
pub struct CsrmsTask<'a> {
    config: CsrmsConfig,
    loader: BatchLoader<'a>,
    plain: BatchLoader<'a>,
    labels: Vec<usize>,
    state: RelationState,
    alpha: f64,
}

impl<'a> CsrmsTask<'a> {
    /// A task over the labelled training `samples`.
    pub fn new(config: CsrmsConfig, samples: &'a [Sample]) -> Result<Self, CsrmsError> {
        config.check()?;
        if samples.len() < 2 {
            return Err(CsrmsError::Input(format!(
                "{} training images: need at least 2",
                samples.len()
            )));
        }
        let labels: Vec<usize> = samples.iter().map(|s| s.label).collect();
        if let Some(bad) = labels.iter().find(|&&l| l >= config.classes) {
            return Err(CsrmsError::Input(format!(
                "label {bad} in the training split but the model has {} classes; set `classes` \
                 to the dataset's class count",
                config.classes
            )));
        }
        Ok(Self {
            loader: BatchLoader::new(samples, config.train_pipeline(), config.seed)?,
            plain: BatchLoader::new(samples, config.test_pipeline(), config.seed)?,
            labels,
            state: RelationState::default(),
            alpha: 1.0,
            config,
        })
    }

    /// The offline stage's current result.
    pub fn relation_state(&self) -> &RelationState {
        &self.state
    }

    /// Pooled features of every training image (test transform, inference mode), `N × dim`.
    fn training_features(
        &self,
        model: &CsrmsModel,
        device: &Device,
    ) -> Result<Vec<f32>, CsrmsError> {
        let net = model.clone().valid();
        let inner = device.clone().inner();
        let indices: Vec<usize> = (0..self.labels.len()).collect();
        let mut out = Vec::new();
        for chunk in indices.chunks(self.config.batch_size.max(64)) {
            let batch = self.plain.load(chunk, 0, &inner)?;
            out.extend(
                net.features(batch.images)
                    .into_data()
                    .try_into_vec_as::<f32>()
                    .map_err(|e| CsrmsError::Input(format!("reading features: {e:?}")))?,
            );
        }
        Ok(out)
    }

    /// The offline stage: features → clustering → relation graph → sets, difficulty,
    /// prototypes (set on `model`).
    fn refresh(
        &mut self,
        model: &mut CsrmsModel,
        ctx: &mut EpochContext<'_>,
    ) -> Result<(), CsrmsError> {
        let features = self.training_features(model, ctx.device)?;
        let n = self.labels.len();
        let dim = features.len() / n;
        let seed = mix_seed(self.config.seed, &[0xC5, ctx.epoch as u64]);
        let assignments: Vec<usize> = match &self.config.clustering {
            Clustering::Art(art) => fuzzy_art(&features, dim, art, seed)?.assignments,
            Clustering::KMeans { k } => kmeans(
                &features,
                dim,
                KMeansConfig {
                    k: (*k).min(n),
                    n_init: 1,
                    max_iter: 100,
                    seed,
                },
            )?
            .labels
            .into_iter()
            .map(|l| l as usize)
            .collect(),
        };
        let graph = RelationGraph::new(&self.labels, &assignments, self.config.classes)?;
        let sets = sample_sets(
            &graph,
            &features,
            dim,
            self.config.positives,
            self.config.negatives,
            seed,
        )?;
        let counts = graph.relation_counts();
        let difficulty: Vec<Difficulty> = (0..n)
            .map(|i| graph.difficulty(i, self.config.rho1))
            .collect();
        let share =
            |d: Difficulty| difficulty.iter().filter(|&&x| x == d).count() as f64 / n as f64;
        let singletons = graph.singleton_share();
        if singletons > 0.5 {
            tracing::warn!(
                "relation refresh at epoch {}: {:.0}% of the {} clusters are single images, so \
                 the anchors' negative sets fall back to random other-class samples; lower the \
                 ART vigilance (or cluster fewer, richer features)",
                ctx.epoch + 1,
                100.0 * singletons,
                counts.clusters
            );
        }
        for (name, v) in [
            ("clusters", counts.clusters as f64),
            ("singleton_cluster_share", singletons),
            ("dominant_clusters", counts.dominant_clusters as f64),
            ("mixed_clusters", counts.mixed_clusters as f64),
            ("r_id_pairs", counts.r_id as f64),
            ("r_is_pairs", counts.r_is as f64),
            ("r_mc_pairs", counts.r_mc as f64),
            ("positive_fallbacks", sets.positive_fallbacks as f64),
            ("negative_fallbacks", sets.negative_fallbacks as f64),
            ("easy_share", share(Difficulty::Easy)),
            ("hard_share", share(Difficulty::Hard)),
        ] {
            ctx.record(name, v);
        }
        tracing::info!(
            "relation refresh at epoch {}: {} clusters ({} dominant, {} mixed), R_ID {} R_IS {} \
             R_MC {} pairs, fallbacks {}/{}",
            ctx.epoch + 1,
            counts.clusters,
            counts.dominant_clusters,
            counts.mixed_clusters,
            counts.r_id,
            counts.r_is,
            counts.r_mc,
            sets.positive_fallbacks,
            sets.negative_fallbacks
        );
        model.set_prototypes(
            graph.cluster_prototypes(&features, dim)?,
            graph.class_prototypes(&features, dim, self.config.rho2)?,
        )?;
        self.state = RelationState {
            sets: Some(sets),
            difficulty,
            counts,
            refreshed_at: Some(ctx.epoch),
            curriculum: std::mem::take(&mut self.state.curriculum),
        };
        Ok(())
    }

    fn labels_tensor(&self, indices: &[usize], device: &Device) -> Tensor<1, Int> {
        let v: Vec<i64> = indices.iter().map(|&i| self.labels[i] as i64).collect();
        Tensor::from_data(TensorData::new(v, [indices.len()]), device)
    }

    /// Cross-entropy on the anchors (warm-up and baseline).
    fn cross_entropy_step(
        &self,
        model: CsrmsModel,
        batch: &[usize],
        ctx: &mut StepContext<'_>,
    ) -> Result<CsrmsModel, TrainError> {
        let device = ctx.device.clone();
        let images = self
            .loader
            .load(batch, ctx.epoch, &device)
            .map_err(CsrmsError::from)?
            .images;
        let labels = self.labels_tensor(batch, &device);
        let logits = model.classify(images);
        record_accuracy(ctx, &logits, &labels);
        ctx.minimize(model, Loss::single("cls", cross_entropy(logits, labels)))
    }

    /// One CSRMS step.
    fn relation_step(
        &self,
        model: CsrmsModel,
        batch: &[usize],
        ctx: &mut StepContext<'_>,
    ) -> Result<CsrmsModel, TrainError> {
        let device = ctx.device.clone();
        let Some(sets) = &self.state.sets else {
            return Err(TrainError::msg(
                "CSRMS relation step before the relation graph was built",
            ));
        };
        let (b, n, m) = (batch.len(), sets.n, sets.m);
        let positives: Vec<usize> = batch
            .iter()
            .flat_map(|&i| sets.positives_of(i).iter().copied())
            .collect();
        let negatives: Vec<usize> = batch
            .iter()
            .flat_map(|&i| sets.negatives_of(i).iter().copied())
            .collect();
        let nodes: Vec<usize> = batch.iter().chain(&positives).copied().collect();
        let all: Vec<usize> = nodes.iter().chain(&negatives).copied().collect();
        let images = self
            .loader
            .load(&all, ctx.epoch, &device)
            .map_err(CsrmsError::from)?
            .images;
        // One backbone pass for anchors, positives and negatives (one set of BN statistics).
        let features = model.features(images);
        let node_features = features.clone().slice(0..b * (1 + n));
        let anchors = features.clone().slice(0..b);
        let negative_features = features.clone().slice(b * (1 + n)..b * (1 + n + m));
        let labels = self.labels_tensor(batch, &device);

        let logits = model.classifier.forward(anchors.clone());
        record_accuracy(ctx, &logits, &labels);
        if self.config.variant == Variant::Control {
            let all_logits = model.classifier.forward(features);
            let l_cls = cross_entropy(all_logits, self.labels_tensor(&all, &device));
            return ctx.minimize(model, Loss::single("cls", l_cls));
        }
        let l_cls = if self.config.cls_on_sampled {
            // Every image of the sub-graph batch: anchors, positives, negatives.
            let all_logits = model.classifier.forward(features.clone());
            cross_entropy(all_logits, self.labels_tensor(&all, &device))
        } else {
            cross_entropy(logits, labels.clone())
        };

        let nodes_n = b * (1 + n);
        let adjacency = Tensor::from_data(
            TensorData::new(batch_adjacency(b, n), [nodes_n, nodes_n]),
            &device,
        );
        let one_hot = labels.clone().one_hot::<2>(self.config.classes).float();
        let gcn_logits = model.gcn_logits(adjacency, node_features.clone(), b, one_hot);
        let l_gcn = cross_entropy(gcn_logits, labels);

        let weights: Vec<f32> = batch
            .iter()
            .map(|&i| Curriculum::weight(self.alpha, self.state.difficulty[i]) as f32)
            .collect();
        let weights = Tensor::from_data(TensorData::new(weights, [b]), &device);
        let l_neg = negative_loss(anchors, negative_features, weights);
        let node_labels: Vec<usize> = nodes.iter().map(|&i| self.labels[i]).collect();
        let l_inter = inter_class_loss(node_features, &node_labels);

        let [w_cls, w_neg, w_inter] = self.config.weights_cls_neg_inter;
        let loss = Loss::new()
            .term("gcn", l_gcn.mul_scalar(self.config.weight_gcn))
            .term("cls", l_cls.mul_scalar(w_cls))
            .term("neg", l_neg.mul_scalar(w_neg))
            .term("inter", l_inter.mul_scalar(w_inter));
        ctx.minimize(model, loss)
    }
}

/// The loss the curriculum's convergence trigger watches: the epoch's classification loss
/// L_cls, which can converge. The total cannot: the bounded L_inter keeps it above the trigger's
/// 0.01, so watching it the trigger never fired and the curriculum was only its linear schedule.
fn curriculum_signal(loss: &BTreeMap<String, f64>) -> Option<f64> {
    loss.get("cls").copied()
}

fn record_accuracy(ctx: &mut StepContext<'_>, logits: &Tensor<2>, labels: &Tensor<1, Int>) {
    let n = labels.dims()[0];
    let correct: i64 = logits
        .clone()
        .argmax(1)
        .reshape([n])
        .equal(labels.clone())
        .int()
        .sum()
        .into_scalar::<i64>();
    ctx.record("train_acc", correct as f64 / n.max(1) as f64);
}

const STATE_MAGIC: &[u8; 8] = b"CSRMSST1";

impl TrainTask for CsrmsTask<'_> {
    type Model = CsrmsModel;
    type Batch = Vec<usize>;

    fn epoch_batches(&mut self, ctx: &mut EpochContext<'_>) -> Result<Vec<Vec<usize>>, TrainError> {
        EpochSampler::folding_single(self.labels.len(), self.config.batch_size)
            .compose(ctx.epoch, &mut ctx.rng)
            .map_err(TrainError::task)
    }

    fn on_epoch_start(
        &mut self,
        model: &mut CsrmsModel,
        ctx: &mut EpochContext<'_>,
    ) -> Result<(), TrainError> {
        if ctx.phase != RELATION {
            return Ok(());
        }
        let every = self.config.refresh_every;
        let due = if every == 0 {
            self.state.sets.is_none()
        } else {
            ctx.epoch_in_phase.is_multiple_of(every) || self.state.sets.is_none()
        };
        if due && self.state.refreshed_at != Some(ctx.epoch) {
            self.refresh(model, ctx)?;
        }
        self.alpha = self.state.curriculum.alpha(
            &self.config.curriculum,
            ctx.epoch_in_phase,
            self.config.relation_epochs(),
        );
        ctx.record("curriculum_alpha", self.alpha);
        Ok(())
    }

    fn step(
        &mut self,
        model: CsrmsModel,
        batch: &Vec<usize>,
        ctx: &mut StepContext<'_>,
    ) -> Result<CsrmsModel, TrainError> {
        if ctx.phase == RELATION {
            self.relation_step(model, batch, ctx)
        } else {
            self.cross_entropy_step(model, batch, ctx)
        }
    }

    fn on_epoch_end(
        &mut self,
        _model: &mut CsrmsModel,
        ctx: &mut EpochContext<'_>,
        record: &EpochRecord,
    ) -> Result<PhaseControl, TrainError> {
        if ctx.phase == RELATION
            && let Some(loss) = curriculum_signal(&record.loss)
        {
            let curriculum = &mut self.state.curriculum;
            let before = curriculum.fired_at();
            curriculum.observe(&self.config.curriculum, ctx.epoch_in_phase, loss);
            if before.is_none() && curriculum.fired_at().is_some() {
                ctx.record("curriculum_fired", 1.0);
                tracing::info!(
                    "curriculum trigger fired at relation epoch {} (L_cls {loss:.5}): α decays \
                     from the next epoch",
                    ctx.epoch_in_phase + 1
                );
            }
        }
        Ok(PhaseControl::Continue)
    }

    fn save_state(&self) -> Result<Vec<u8>, TrainError> {
        let mut out = STATE_MAGIC.to_vec();
        out.extend(
            serde_json::to_vec(&self.state)
                .map_err(|e| TrainError::msg(format!("CSRMS state: {e}")))?,
        );
        Ok(out)
    }

    fn load_state(&mut self, bytes: &[u8]) -> Result<(), TrainError> {
        let rest = bytes.strip_prefix(STATE_MAGIC.as_slice()).ok_or_else(|| {
            TrainError::msg("CSRMS checkpoint state: bad magic (not a CSRMS run)")
        })?;
        let state: RelationState = serde_json::from_slice(rest)
            .map_err(|e| TrainError::msg(format!("CSRMS checkpoint state: {e}")))?;
        if let Some(sets) = &state.sets
            && sets.positives.len() != self.labels.len() * sets.n
        {
            return Err(TrainError::msg(
                "CSRMS checkpoint state: sets for another training set size",
            ));
        }
        self.state = state;
        Ok(())
    }
}

/// The scaffold's configuration: the phases of the variant, one SGD with the backbone (and
/// its classifier) at `lr` and the GCN, smoothing and GCN classifier at `gcn_lr`, both on
/// [`CsrmsConfig::schedule`] over the whole run.
pub(crate) fn trainer_config(config: &CsrmsConfig) -> TrainerConfig {
    let phases = match config.variant {
        Variant::Baseline => vec![PhaseConfig::new(BASELINE, config.epochs)],
        Variant::Full | Variant::Control => {
            let mut p = Vec::new();
            if config.warmup_epochs > 0 {
                p.push(PhaseConfig::new(WARMUP, config.warmup_epochs));
            }
            p.push(PhaseConfig::new(RELATION, config.relation_epochs()));
            p
        }
    };
    let sgd = OptimizerConfig::new(
        "sgd",
        OptimizerKind::sgd(config.momentum, config.weight_decay),
        config.gcn_lr,
    )
    .with_group("backbone", config.lr)
    .with_group("classifier", config.lr)
    .with_schedule(config.schedule());
    TrainerConfig::new(phases, vec![sgd])
        .with_seed(config.seed)
        .with_eval_every(0)
}

/// A trained CSRMS model and where its run lives.
pub type TrainedCsrms = Trained<CsrmsModel>;

/// Trains CSRMS (or its baseline, by `config.variant`) on the labelled `train` split on
/// `device` (a plain device; autodiff is added here), starting the backbone from
/// `options.weights` when given. A completed run saves `model/`.
pub fn fit(
    config: &CsrmsConfig,
    train: &[Sample],
    device: &Device,
    options: &FitOptions,
) -> Result<TrainedCsrms, CsrmsError> {
    config.check()?;
    let trainer = trainer_config(config);
    let fitted = fit_task(config, trainer, device, options, |autodiff| {
        let mut model = config.init(autodiff);
        if let Some(weights) = &options.weights {
            relata_backbone::import_state_dict(&mut model.backbone, weights, &["fc."])?;
        }
        Ok::<_, CsrmsError>((CsrmsTask::new(config.clone(), train)?, model))
    })?;
    let model = fitted.outcome.model.clone().valid();
    if fitted.outcome.completed {
        model.save(config, &fitted.run_dir.join("model"))?;
    }
    Ok(fitted.trained(model, ()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The trigger watches L_cls: an epoch whose total stays high (the bounded L_inter) while
    /// L_cls converges fires it; the total alone never would.
    #[test]
    fn the_trigger_follows_the_classification_loss() {
        let config = crate::curriculum::CurriculumConfig::new().with_end(1.0);
        let epochs = [
            (0.9, 2.3),
            (0.05, 1.9),
            (0.009, 1.8),
            (0.00899, 1.8),
            (0.00898, 1.8),
        ];
        let mut on_cls = Curriculum::default();
        let mut on_total = Curriculum::default();
        for (e, (cls, total)) in epochs.into_iter().enumerate() {
            let loss = BTreeMap::from([("cls".to_string(), cls), ("total".to_string(), total)]);
            on_cls.observe(&config, e, curriculum_signal(&loss).unwrap());
            on_total.observe(&config, e, total);
        }
        assert_eq!(on_cls.fired_at(), Some(4));
        assert_eq!(on_total.fired_at(), None);
        assert_eq!(curriculum_signal(&BTreeMap::new()), None);
    }
}
