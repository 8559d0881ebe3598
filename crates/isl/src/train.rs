//! ISL's rounds on the shared training loop (the paper's "Schedule"; docs/isl.md): for r in 0..R, a
//! backbone phase (L₁ + L₂ with the memory bank; round 0 is pure instance discrimination), a GAN
//! phase (D then G each step, backbone frozen; early stop or fixed epochs) and a mining phase
//! (until the quota); then a last backbone phase that trains on the final positive sets. The
//! encoder's learning rate follows one plateau rule across all rounds, as the authors' does,
//! but on images held out of the training set instead of the test set (or, when configured, a
//! cosine per round) — nothing looks at the test set.

use std::collections::{BTreeMap, HashMap};

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use relata_dataset::{BatchComposer, BatchLoader, EpochSampler, Pipeline, Sample, Transform};
use relata_train::{
    EpochContext, EpochRecord, FitOptions, Loss, LrSchedule, OptimizerConfig, OptimizerKind,
    PhaseConfig, PhaseControl, ScheduleClock, StepContext, TrainError, TrainTask, Trained,
    TrainerConfig, fit_task,
};
use relata_train::{Goal, ReduceOnPlateau, SeededRng};
use serde::{Deserialize, Serialize};

use crate::config::{GanStop, IslConfig, IslLrSchedule};
use crate::error::IslError;
use crate::eval::{IslEval, evaluate};
use crate::loss::{Members, hard_positive_loss, hard_positives_with, positive_set_loss};
use crate::memory::MemoryBank;
use crate::mining::{apply_proposals, mine_batch};
use crate::model::IslModel;
use crate::positives::PositiveSets;

/// The random stream of the memory bank's initial values.
const MEMORY_STREAM: u64 = 0x3E30_BA4C;

/// What a phase does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseKind {
    /// Train the encoder with the memory bank.
    Backbone,
    /// Train G and D.
    Gan,
    /// Grow the positive sets.
    Mine,
}

/// `backbone-3` → (Backbone, 3).
pub fn parse_phase(name: &str) -> Result<(PhaseKind, usize), TrainError> {
    let (kind, round) = name
        .rsplit_once('-')
        .ok_or_else(|| TrainError::msg(format!("ISL phase `{name}`: expected <kind>-<round>")))?;
    let round: usize = round
        .parse()
        .map_err(|_| TrainError::msg(format!("ISL phase `{name}`: bad round number")))?;
    let kind = match kind {
        "backbone" => PhaseKind::Backbone,
        "gan" => PhaseKind::Gan,
        "mine" => PhaseKind::Mine,
        other => return Err(TrainError::msg(format!("unknown ISL phase kind `{other}`"))),
    };
    Ok((kind, round))
}

/// The training augmentation: the authors' (`Pipeline::isl_train`) with the configured crop
/// scale and hue jitter.
pub fn train_pipeline(config: &IslConfig) -> Pipeline {
    let mut pipeline = Pipeline::isl_train(config.image_size);
    for t in &mut pipeline.transforms {
        match t {
            Transform::ColorJitter { hue, .. } => *hue = config.hue_jitter,
            Transform::RandomResizedCrop { scale, .. } => *scale = config.crop_scale,
            _ => {}
        }
    }
    pipeline
}

/// The phases of a run: backbone-r, gan-r, mine-r for each round r but the last, then the last
/// round's backbone phase — `config.rounds` backbone phases in all.
pub fn phases(config: &IslConfig) -> Vec<PhaseConfig> {
    let gan_epochs = match config.gan_stop {
        GanStop::EarlyStop { max_epochs } => max_epochs,
        GanStop::Fixed { epochs } => epochs,
    };
    let mut p = Vec::new();
    let last = config.rounds.saturating_sub(1);
    for r in 0..last {
        p.push(PhaseConfig::new(
            format!("backbone-{r}"),
            config.backbone_epochs,
        ));
        p.push(PhaseConfig::new(format!("gan-{r}"), gan_epochs.max(1)));
        p.push(PhaseConfig::new(
            format!("mine-{r}"),
            config.max_mining_epochs.max(1),
        ));
    }
    p.push(PhaseConfig::new(
        format!("backbone-{last}"),
        config.backbone_epochs,
    ));
    p
}

/// The scaffold configuration: SGD for the encoder (its rate moved by the task's plateau rule,
/// or a cosine per phase), Adam for G and for D.
#[doc(hidden)] // public for the tests that drive the scaffold with a task of their own
pub fn trainer_config(config: &IslConfig) -> TrainerConfig {
    let mut sgd = OptimizerConfig::new(
        "sgd",
        OptimizerKind::sgd(0.9, config.weight_decay),
        config.lr,
    );
    if config.lr_schedule == IslLrSchedule::CosinePerRound {
        sgd = sgd
            .with_schedule(LrSchedule::Cosine {
                epochs: config.backbone_epochs,
                min_factor: 0.0,
                per_iteration: false,
            })
            .with_clock(ScheduleClock::Phase);
    }
    let adam = |name: &str| OptimizerConfig::new(name, OptimizerKind::adam(0.0), config.gan_lr);
    TrainerConfig::new(phases(config), vec![sgd, adam("adam_d"), adam("adam_g")])
        .with_seed(config.seed)
        .with_eval_every(0)
}

/// The authors' GAN stopping rule (`stop_train_GAN` of the released code) on epoch-mean G
/// losses, clause by clause: round 0 needs 10 epochs; never while every loss is above 1 (nor,
/// in round 0, while the last one is); go on while the last loss is the lowest of the last
/// three; stop once no value among the last three equals the minimum. No losses: go on.
pub fn gan_should_stop(losses: &[f64], round: usize) -> bool {
    let round0 = round == 0;
    let Some(&last) = losses.last() else {
        return false;
    };
    if round0 && losses.len() < 10 {
        return false;
    }
    let min = losses.iter().copied().fold(f64::INFINITY, f64::min);
    if min > 1.0 || (round0 && last > 1.0) {
        return false;
    }
    let recent = &losses[losses.len().saturating_sub(3)..];
    if recent.iter().copied().fold(f64::INFINITY, f64::min) == last {
        return false;
    }
    !recent.contains(&min)
}

#[derive(Serialize, Deserialize)]
struct SavedState {
    sets: PositiveSets,
    gan_losses: Vec<f64>,
    round0: Option<IslEval>,
    dim: usize,
    /// Consecutive mining epochs without a new pair (older checkpoints: 0).
    #[serde(default)]
    idle_mining_epochs: usize,
    /// The plateau rule's state (older checkpoints: none).
    #[serde(default)]
    plateau: Option<ReduceOnPlateau>,
    /// What each mining phase ended with (older checkpoints: none).
    #[serde(default)]
    rounds: Vec<RoundMining>,
    /// The mining phase in progress: its yardstick.
    #[serde(default)]
    phase_neighbour_precision: f64,
}

/// What one round's mining phase left: the sets' size and precision against the hidden labels,
/// beside what the embedding's own nearest neighbours would give and chance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RoundMining {
    /// Round (0-based).
    pub round: usize,
    /// Mining epochs run.
    pub epochs: usize,
    /// Σ(|S_i| − 1)/N after the phase.
    pub mined_per_instance: f64,
    /// Share of mined pairs that share a hidden label (`None`: nothing mined).
    pub precision: Option<f64>,
    /// Same-label share among each instance's top-k memory neighbours (k = the miner's), when
    /// the phase began: what mining by the embedding alone would reach.
    pub neighbour_precision: f64,
}

/// ISL's training state: the memory bank, the positive sets, the GAN loss history.
pub struct IslTask<'a> {
    config: IslConfig,
    loader: BatchLoader<'a>,
    train: &'a [Sample],
    test: &'a [Sample],
    test_pipeline: Pipeline,
    /// The memory bank.
    pub memory: MemoryBank,
    /// S_i.
    pub sets: PositiveSets,
    labels: Vec<usize>,
    gan_losses: Vec<f64>,
    /// New pairs in the current mining epoch.
    epoch_new_pairs: usize,
    /// Consecutive mining epochs that added nothing (for `mining_patience`).
    idle_mining_epochs: usize,
    /// The current mining phase's yardstick, for its `RoundMining`.
    phase_neighbour_precision: f64,
    /// Evaluation after round 0 (the instance-discrimination baseline).
    pub round0: Option<IslEval>,
    /// Images held out of training that the plateau rule watches (empty with a cosine).
    monitor: &'a [Sample],
    plateau: Option<ReduceOnPlateau>,
    /// Mining phases so far.
    pub rounds: Vec<RoundMining>,
}

impl<'a> IslTask<'a> {
    /// A task over `train` (labels hidden from training; used only to report mining
    /// precision and, with `monitor`, to score the plateau rule's kNN), `monitor` (images held
    /// out of `train` for the plateau rule; empty with `CosinePerRound`) and `test` (reporting
    /// only). `device` is the training (autodiff) device.
    pub fn new(
        config: IslConfig,
        train: &'a [Sample],
        monitor: &'a [Sample],
        test: &'a [Sample],
        test_pipeline: Pipeline,
        device: &Device,
    ) -> Result<Self, IslError> {
        config.check()?;
        if train.len() < 2 {
            return Err(IslError::Input("need at least 2 training images".into()));
        }
        let plateau = match config.lr_schedule {
            IslLrSchedule::Plateau {
                factor, patience, ..
            } => {
                if monitor.is_empty() {
                    return Err(IslError::Config(
                        "lr_schedule Plateau watches held-out training images, but none were \
                         given: hold some out (`fit` does, by monitor_share) or use \
                         CosinePerRound"
                            .into(),
                    ));
                }
                Some(ReduceOnPlateau::new(Goal::Maximize, factor, patience))
            }
            IslLrSchedule::CosinePerRound => None,
        };
        let memory = MemoryBank::new(
            train.len(),
            config.dim,
            config.temperature,
            config.momentum,
            &mut SeededRng::derive(config.seed, &[MEMORY_STREAM]),
            device,
        );
        Ok(Self {
            loader: BatchLoader::new(train, train_pipeline(&config), config.seed)?,
            sets: PositiveSets::identity(train.len()),
            labels: train.iter().map(|s| s.label).collect(),
            train,
            test,
            test_pipeline,
            memory,
            gan_losses: Vec::new(),
            epoch_new_pairs: 0,
            idle_mining_epochs: 0,
            phase_neighbour_precision: 0.0,
            round0: None,
            monitor,
            plateau,
            rounds: Vec::new(),
            config,
        })
    }

    fn images(
        &self,
        batch: &[usize],
        epoch: usize,
        device: &Device,
    ) -> Result<Tensor<4>, IslError> {
        let host = self.loader.load_host(batch, epoch)?;
        Ok(Tensor::from_data(
            TensorData::new(host.pixels, host.shape),
            device,
        ))
    }

    /// Weighted-kNN top-1 (%) of the held-out monitor images, encoded with the test transform,
    /// against the memory bank with the training labels: the authors' in-training kNN, with
    /// held-out training images in place of the test set.
    fn monitor_knn(&self, model: &IslModel, device: &Device) -> Result<f64, IslError> {
        let inner = device.clone().inner();
        let net = model.net.clone().valid();
        let batch = self.config.batch_size.max(64);
        let queries = crate::eval::embed(&net, self.monitor, &self.test_pipeline, batch, &inner)?;
        let bank = self.memory.to_vec()?;
        let dim = self.config.dim;
        let as_i64 = |l: &[usize]| l.iter().map(|&x| x as i64).collect::<Vec<_>>();
        let monitor_labels: Vec<usize> = self.monitor.iter().map(|s| s.label).collect();
        let report = relata_metrics::knn_classify(
            relata_metrics::Features { data: &bank, dim },
            &as_i64(&self.labels),
            relata_metrics::Features {
                data: &queries,
                dim,
            },
            &as_i64(&monitor_labels),
            relata_metrics::KnnConfig {
                k: self.config.knn_k.min(self.labels.len()),
                tau: self.config.temperature,
            },
        )?;
        Ok(report.top1)
    }

    /// Embeddings of the batch with the encoder frozen in inference mode (GAN and mining).
    fn frozen_features(
        &self,
        model: &IslModel,
        batch: &[usize],
        epoch: usize,
        device: &Device,
    ) -> Result<Tensor<2>, IslError> {
        let inner = device.clone().inner();
        let net = model.net.clone().valid();
        let f = net.forward(self.images(batch, epoch, &inner)?);
        Ok(f.to_device(device))
    }
}

impl TrainTask for IslTask<'_> {
    type Model = IslModel;
    type Batch = Vec<usize>;

    fn epoch_batches(&mut self, ctx: &mut EpochContext<'_>) -> Result<Vec<Vec<usize>>, TrainError> {
        EpochSampler::folding_single(self.labels.len(), self.config.batch_size)
            .compose(ctx.epoch, &mut ctx.rng)
            .map_err(TrainError::task)
    }

    fn on_phase_start(
        &mut self,
        _model: &mut IslModel,
        ctx: &mut EpochContext<'_>,
    ) -> Result<(), TrainError> {
        match parse_phase(ctx.phase)?.0 {
            PhaseKind::Gan => self.gan_losses.clear(),
            PhaseKind::Mine => self.idle_mining_epochs = 0,
            PhaseKind::Backbone => {}
        }
        Ok(())
    }

    fn on_epoch_start(
        &mut self,
        _model: &mut IslModel,
        _ctx: &mut EpochContext<'_>,
    ) -> Result<(), TrainError> {
        self.epoch_new_pairs = 0;
        Ok(())
    }

    fn step(
        &mut self,
        model: IslModel,
        batch: &Vec<usize>,
        ctx: &mut StepContext<'_>,
    ) -> Result<IslModel, TrainError> {
        let device = ctx.device.clone();
        let (kind, _) = parse_phase(ctx.phase)?;
        match kind {
            PhaseKind::Backbone => {
                let f = model.net.forward(self.images(batch, ctx.epoch, &device)?);
                let logits = self.memory.logits(f.clone());
                let members = Members::of(&self.sets, batch, &device);
                let inst = positive_set_loss(logits.clone(), &members);
                // Memory rows of the anchors and their positives, for the hard positives.
                let mut ids: Vec<usize> = batch
                    .iter()
                    .flat_map(|&i| self.sets.get(i).iter().copied())
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                let rows = self
                    .memory
                    .rows(&ids)
                    .into_data()
                    .try_into_vec_as::<f32>()
                    .map_err(|e| TrainError::msg(format!("reading memory rows: {e:?}")))?;
                let dim = self.config.dim;
                let at: HashMap<usize, usize> =
                    ids.iter().enumerate().map(|(k, &i)| (i, k)).collect();
                let hard = hard_positives_with(batch, &self.sets, |i| {
                    &rows[at[&i] * dim..(at[&i] + 1) * dim]
                });
                let hard_loss =
                    hard_positive_loss(logits, &self.memory, &hard, self.config.hard_weight);
                let loss = Loss::new().term("inst", inst).term("hard", hard_loss);
                let model = ctx.minimize_with(model, loss, "sgd", |m| &m.net)?;
                self.memory.update(batch, f)?;
                Ok(model)
            }
            PhaseKind::Gan => {
                let a = self.frozen_features(&model, batch, ctx.epoch, &device)?;
                let (_, n) = crate::gan::hardest_negatives(
                    a.clone(),
                    batch,
                    &self.sets,
                    &self.memory,
                    self.config.gan.negatives,
                );
                let p = self.memory.rows(batch);
                let d_loss = model
                    .gan
                    .discriminator_loss(a.clone(), p.clone(), n.clone());
                let model = ctx.minimize_with(model, Loss::single("d", d_loss), "adam_d", |m| {
                    &m.gan.discriminator
                })?;
                let g_loss = model.gan.generator_loss(a, p, n);
                ctx.minimize_with(model, Loss::single("g", g_loss), "adam_g", |m| {
                    &m.gan.generator
                })
            }
            PhaseKind::Mine => {
                let a = self.frozen_features(&model, batch, ctx.epoch, &device)?;
                let proposals = mine_batch(
                    &model.gan,
                    a,
                    batch,
                    &self.sets,
                    &self.memory,
                    &self.config.mining,
                )?;
                let b = batch.len() as f64;
                let accepted = proposals.iter().filter(|p| !p.added.is_empty()).count();
                let confident = proposals
                    .iter()
                    .filter(|p| p.score > self.config.mining.threshold)
                    .count();
                let mean_score = proposals.iter().map(|p| p.score).sum::<f64>() / b;
                let nearest = proposals.iter().map(|p| p.nearest).sum::<f64>() / b;
                let new = apply_proposals(&mut self.sets, &proposals);
                self.epoch_new_pairs += new;
                ctx.record("mined_new_pairs", new as f64);
                // D's verdicts: mean score, share above h, the proxies' best cosine with the
                // memory, share that found neighbours within the radius — where mining stalls,
                // these say which test fails.
                ctx.record("mean_score", mean_score);
                ctx.record("proxy_nearest_cosine", nearest);
                ctx.record("above_threshold", confident as f64 / b);
                ctx.record("accepted_anchors", accepted as f64 / b);
                Ok(model)
            }
        }
    }

    fn on_epoch_end(
        &mut self,
        model: &mut IslModel,
        ctx: &mut EpochContext<'_>,
        record: &EpochRecord,
    ) -> Result<PhaseControl, TrainError> {
        let (kind, round) = parse_phase(ctx.phase)?;
        match kind {
            PhaseKind::Backbone => {
                let every = match self.config.lr_schedule {
                    IslLrSchedule::Plateau { every, .. } => every,
                    IslLrSchedule::CosinePerRound => return Ok(PhaseControl::Continue),
                };
                if (ctx.epoch_in_phase + 1).is_multiple_of(every) {
                    let top1 = self.monitor_knn(model, ctx.device)?;
                    let plateau = self
                        .plateau
                        .as_mut()
                        .ok_or_else(|| TrainError::msg("ISL plateau rule missing"))?;
                    if plateau.observe(top1) {
                        tracing::info!(
                            "{}: monitor kNN top-1 {top1:.2} % without a new best: encoder \
                             learning rate × {} (drop {})",
                            ctx.phase,
                            plateau.factor,
                            plateau.drops()
                        );
                    }
                    let scale = plateau.scale();
                    ctx.record("monitor_knn_top1", top1);
                    ctx.set_lr_scale("sgd", scale)?;
                }
                Ok(PhaseControl::Continue)
            }
            PhaseKind::Gan => {
                let g = record.loss.get("g").copied().unwrap_or(f64::INFINITY);
                self.gan_losses.push(g);
                let early = matches!(self.config.gan_stop, GanStop::EarlyStop { .. });
                Ok(if early && gan_should_stop(&self.gan_losses, round) {
                    PhaseControl::EndPhase
                } else {
                    PhaseControl::Continue
                })
            }
            PhaseKind::Mine => {
                let report = self.sets.report(&self.labels);
                if ctx.epoch_in_phase == 0 {
                    // What the embedding itself would give a miner (≤ 2,000 anchors): the
                    // yardstick for mining_precision. The bank comes to the host once per
                    // mining phase, here (mining leaves it unchanged).
                    let bank = self.memory.to_vec()?;
                    let n = self.labels.len();
                    let step = n.div_ceil(2000).max(1);
                    let sample: Vec<usize> = (0..n).step_by(step).collect();
                    self.phase_neighbour_precision = crate::positives::neighbour_precision(
                        &bank,
                        self.config.dim,
                        &self.labels,
                        self.config.mining.neighbours,
                        &sample,
                    );
                    ctx.record("neighbour_precision", self.phase_neighbour_precision);
                }
                ctx.record("mined_per_instance", report.mined_per_instance);
                if let Some(precision) = report.precision {
                    ctx.record("mining_precision", precision);
                }
                let quota = (round + 1) as f64 * self.config.quota;
                if self.epoch_new_pairs == 0 {
                    self.idle_mining_epochs += 1;
                } else {
                    self.idle_mining_epochs = 0;
                }
                let stalled = self
                    .config
                    .mining_patience
                    .is_some_and(|k| self.idle_mining_epochs >= k);
                Ok(if report.mined_per_instance > quota || stalled {
                    PhaseControl::EndPhase
                } else {
                    PhaseControl::Continue
                })
            }
        }
    }

    fn on_phase_end(
        &mut self,
        model: &mut IslModel,
        ctx: &mut EpochContext<'_>,
    ) -> Result<(), TrainError> {
        let (kind, round) = parse_phase(ctx.phase)?;
        if kind == PhaseKind::Mine {
            let report = self.sets.report(&self.labels);
            self.rounds.push(RoundMining {
                round,
                // The context is the phase's last epoch's.
                epochs: ctx.epoch_in_phase + 1,
                mined_per_instance: report.mined_per_instance,
                precision: report.precision,
                neighbour_precision: self.phase_neighbour_precision,
            });
        }
        if ctx.phase == "backbone-0" {
            let net = model.net.clone().valid();
            let inner = ctx.device.clone().inner();
            let eval = evaluate(
                &net,
                self.train,
                self.test,
                &self.test_pipeline,
                &self.config,
                &inner,
            )?;
            ctx.record("round0_knn_top1", eval.knn_top1);
            self.round0 = Some(eval);
        }
        Ok(())
    }

    fn save_state(&self) -> Result<Vec<u8>, TrainError> {
        let memory = self.memory.to_vec()?;
        let meta = serde_json::to_vec(&SavedState {
            sets: self.sets.clone(),
            gan_losses: self.gan_losses.clone(),
            round0: self.round0,
            dim: self.config.dim,
            idle_mining_epochs: self.idle_mining_epochs,
            plateau: self.plateau.clone(),
            rounds: self.rounds.clone(),
            phase_neighbour_precision: self.phase_neighbour_precision,
        })
        .map_err(|e| TrainError::msg(format!("serialising ISL state: {e}")))?;
        let mut out = b"ISLSTATE".to_vec();
        out.extend((meta.len() as u64).to_le_bytes());
        out.extend(meta);
        for v in memory {
            out.extend(v.to_le_bytes());
        }
        Ok(out)
    }

    fn load_state(&mut self, bytes: &[u8]) -> Result<(), TrainError> {
        let bad = |w: &str| TrainError::msg(format!("ISL checkpoint state: {w}"));
        let rest = bytes
            .strip_prefix(b"ISLSTATE".as_slice())
            .ok_or_else(|| bad("bad magic"))?;
        let (len, rest) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| bad("truncated"))?;
        let (meta, rest) = rest
            .split_at_checked(u64::from_le_bytes(*len) as usize)
            .ok_or_else(|| bad("truncated"))?;
        let saved: SavedState =
            serde_json::from_slice(meta).map_err(|e| bad(&format!("corrupt: {e}")))?;
        let memory: Vec<f32> = rest
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if saved.sets.len() != self.labels.len() || memory.len() != self.labels.len() * saved.dim {
            return Err(bad("sizes differ from this dataset/configuration"));
        }
        self.memory = MemoryBank::from_values(
            memory,
            saved.dim,
            self.config.temperature,
            self.config.momentum,
            &self.memory.values().device(),
        )?;
        self.sets = saved.sets;
        self.gan_losses = saved.gan_losses;
        self.round0 = saved.round0;
        self.idle_mining_epochs = saved.idle_mining_epochs;
        if saved.plateau.is_some() {
            self.plateau = saved.plateau;
        }
        self.rounds = saved.rounds;
        self.phase_neighbour_precision = saved.phase_neighbour_precision;
        Ok(())
    }

    fn validate(
        &mut self,
        _model: &IslModel,
        _ctx: &mut EpochContext<'_>,
    ) -> Result<BTreeMap<String, f64>, TrainError> {
        Ok(BTreeMap::new())
    }
}

impl From<IslError> for TrainError {
    fn from(e: IslError) -> Self {
        match e {
            IslError::Train(t) => t,
            other => TrainError::msg(other.to_string()),
        }
    }
}

/// What ISL's `fit` returns beside the model: its evaluations and what it mined.
pub struct IslExtra {
    /// After round 0 (instance discrimination alone): the baseline.
    pub round0: Option<IslEval>,
    /// After the last round.
    pub last: IslEval,
    /// Mined positives at the end, with their precision against the hidden labels.
    pub mining: crate::positives::MiningReport,
    /// Each round's mining phase.
    pub rounds: Vec<RoundMining>,
    /// Training images held out of training for the plateau rule (0 with a cosine).
    pub monitor_images: usize,
}

/// A trained ISL model (after the last phase, in inference mode) and its evaluations;
/// `encoder/` in the run directory holds the trained encoder once every phase ran.
pub type TrainedIsl = Trained<IslModel, IslExtra>;

/// The transform the kNN evaluation applies to `train`'s and the test split's images:
/// normalisation, after resizing to the model's input size when the images have another size
/// (synth-fine at 64 px for a 32 px model, an image folder).
pub fn test_pipeline(config: &IslConfig, train: &[Sample]) -> Result<Pipeline, IslError> {
    let mut pipeline = Pipeline::isl_test();
    let size = train
        .first()
        .map(|s| s.image.dimensions())
        .transpose()?
        .unwrap_or((config.image_size, config.image_size));
    if size != (config.image_size, config.image_size) {
        pipeline.transforms.insert(
            0,
            Transform::ResizeExact {
                width: config.image_size,
                height: config.image_size,
            },
        );
    }
    Ok(pipeline)
}

/// The stream that picks the plateau rule's held-out images.
const MONITOR_STREAM: u64 = 0x30_4E17;

/// `train` split into the images trained on and those the plateau rule watches: a seeded
/// random `monitor_share` of them (at least one), none with a cosine schedule. The same seed
/// holds out the same images, so ISL and its baseline train on the same set.
pub fn monitor_split(config: &IslConfig, train: &[Sample]) -> (Vec<Sample>, Vec<Sample>) {
    if config.lr_schedule == IslLrSchedule::CosinePerRound {
        return (train.to_vec(), Vec::new());
    }
    let n = train.len();
    let held = ((n as f64 * config.monitor_share).round() as usize).clamp(1, n.saturating_sub(2));
    let mut order: Vec<usize> = (0..n).collect();
    SeededRng::derive(config.seed, &[MONITOR_STREAM]).shuffle(&mut order);
    let mut is_held = vec![false; n];
    for &i in &order[..held] {
        is_held[i] = true;
    }
    let (mut kept, mut monitor) = (Vec::new(), Vec::new());
    for (s, held) in train.iter().zip(is_held) {
        if held { &mut monitor } else { &mut kept }.push(s.clone());
    }
    (kept, monitor)
}

/// Trains ISL on `train` (labels hidden) and evaluates it by kNN on `test` (with
/// [`test_pipeline`]); `device` is a plain device (autodiff is added here). The backbone starts
/// from `options.weights` when given.
pub fn fit(
    config: &IslConfig,
    train: &[Sample],
    test: &[Sample],
    device: &Device,
    options: &FitOptions,
) -> Result<TrainedIsl, IslError> {
    config.check()?;
    let pipeline = test_pipeline(config, train)?;
    let (kept, monitor) = monitor_split(config, train);
    let train = kept.as_slice();
    let trainer = trainer_config(config);
    let fitted = fit_task(config, trainer, device, options, |autodiff| {
        let mut model = config.init(autodiff);
        if let Some(weights) = &options.weights {
            relata_backbone::import_state_dict(&mut model.net.backbone, weights, &["fc."])?;
        }
        let task = IslTask::new(
            config.clone(),
            train,
            &monitor,
            test,
            pipeline.clone(),
            autodiff,
        )?;
        Ok::<_, IslError>((task, model))
    })?;
    let model = fitted.outcome.model.clone().valid();
    if fitted.outcome.completed {
        model.net.save(config, &fitted.run_dir.join("encoder"))?;
    }
    let last = evaluate(&model.net, train, test, &pipeline, config, device)?;
    let extra = IslExtra {
        mining: fitted.task.sets.report(&fitted.task.labels),
        rounds: fitted.task.rounds.clone(),
        monitor_images: monitor.len(),
        round0: fitted.task.round0,
        last,
    };
    Ok(fitted.trained(model, extra))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decisions of the released `stop_train_GAN` on sequences exercising each clause
    /// (`fixtures/isl/make_gan_stop.py` ran it; the authors' code is not in this repository).
    #[test]
    fn gan_stop_rule_matches_the_released_code() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/isl/gan_stop.json"
        );
        let cases: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert!(cases.len() >= 15);
        for case in cases {
            let losses: Vec<f64> = serde_json::from_value(case["losses"].clone()).unwrap();
            let round = case["round"].as_u64().unwrap() as usize;
            assert_eq!(
                gan_should_stop(&losses, round),
                case["stop"].as_bool().unwrap(),
                "{}: {losses:?}, round {round}",
                case["name"]
            );
        }
        assert!(!gan_should_stop(&[], 1));
    }

    #[test]
    fn gan_stop_rule() {
        // Round 0 needs 10 epochs.
        let falling_then_flat = [0.9, 0.8, 0.7, 0.6, 0.65, 0.66, 0.67, 0.68, 0.69];
        assert!(!gan_should_stop(&falling_then_flat, 0));
        assert!(
            gan_should_stop(&falling_then_flat, 1),
            "minimum 5 epochs old"
        );
        // The minimum among the last 3 epochs: go on.
        assert!(!gan_should_stop(&[0.9, 0.8, 0.7, 0.6, 0.5], 1));
        // Never while every loss is above 1.
        assert!(!gan_should_stop(&[3.0, 2.0, 1.5, 1.6, 1.7, 1.8], 1));
        // Round 0: not while the last loss is above 1.
        let mut l = vec![0.5; 10];
        l.push(1.2);
        assert!(!gan_should_stop(&l, 0));
    }

    /// The plateau rule's held-out images: a seeded share of the training set, disjoint from
    /// what is trained on, the same for the same seed, none with a cosine schedule.
    #[test]
    fn monitor_split_holds_out_a_seeded_share() {
        let data = relata_dataset::SynthFineConfig {
            families: 2,
            classes_per_family: 2,
            modes: 1,
            train_per_class: 10,
            test_per_class: 1,
            image_size: 8,
            seed: 3,
        }
        .generate()
        .unwrap()
        .dataset;
        let train = data.split("train").unwrap();
        let config = IslConfig::cifar().with_monitor_share(0.1);
        let (kept, monitor) = monitor_split(&config, train);
        assert_eq!((kept.len(), monitor.len()), (36, 4));
        let key = |s: &Sample| format!("{:?}", s.image);
        let kept_keys: Vec<String> = kept.iter().map(key).collect();
        assert!(monitor.iter().all(|m| !kept_keys.contains(&key(m))));
        let again = monitor_split(&config, train).1;
        assert_eq!(
            monitor.iter().map(key).collect::<Vec<_>>(),
            again.iter().map(key).collect::<Vec<_>>()
        );
        let other = monitor_split(&config.clone().with_seed(7), train).1;
        assert_ne!(
            monitor.iter().map(key).collect::<Vec<_>>(),
            other.iter().map(key).collect::<Vec<_>>()
        );
        let cosine = config.with_lr_schedule(IslLrSchedule::CosinePerRound);
        assert_eq!(monitor_split(&cosine, train).0.len(), 40);
        for bad in [
            IslConfig::cifar().with_monitor_share(0.0),
            IslConfig::cifar().with_lr_schedule(IslLrSchedule::Plateau {
                every: 0,
                factor: 0.8,
                patience: 1,
            }),
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn augmentation_follows_the_config() {
        let c = IslConfig::cifar()
            .with_hue_jitter(0.0)
            .with_crop_scale([0.5, 1.0]);
        let p = train_pipeline(&c);
        assert!(p.transforms.iter().any(|t| matches!(
            t,
            Transform::ColorJitter { hue, brightness, .. } if *hue == 0.0 && *brightness == 0.4
        )));
        assert!(p.transforms.iter().any(
            |t| matches!(t, Transform::RandomResizedCrop { scale, .. } if *scale == [0.5, 1.0])
        ));
        // The authors' values by default.
        assert_eq!(
            train_pipeline(&IslConfig::cifar()).transforms,
            Pipeline::isl_train(32).transforms
        );
        for bad in [
            IslConfig::cifar().with_hue_jitter(0.7),
            IslConfig::cifar().with_crop_scale([0.0, 1.0]),
            IslConfig::cifar().with_crop_scale([0.8, 0.5]),
            IslConfig::cifar().with_mining_patience(Some(0)),
            IslConfig::cifar().with_knn_k(0),
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn phases_of_a_run() {
        let c = IslConfig::cifar()
            .with_rounds(3)
            .with_backbone_epochs(3)
            .with_gan_stop(GanStop::Fixed { epochs: 4 });
        let names: Vec<(String, usize)> =
            phases(&c).into_iter().map(|p| (p.name, p.epochs)).collect();
        let want = [
            ("backbone-0", 3),
            ("gan-0", 4),
            ("mine-0", 200),
            ("backbone-1", 3),
            ("gan-1", 4),
            ("mine-1", 200),
            ("backbone-2", 3),
        ];
        assert_eq!(names.len(), want.len());
        for ((n, e), (wn, we)) in names.iter().zip(want) {
            assert_eq!((n.as_str(), *e), (wn, we));
        }
        // The authors' count: the paper preset trains four backbone phases of 200 epochs on
        // CIFAR (800 in all), and one round is round 0 alone.
        let backbone_epochs = |c: &IslConfig| -> usize {
            phases(c)
                .iter()
                .filter(|p| p.name.starts_with("backbone-"))
                .map(|p| p.epochs)
                .sum()
        };
        let paper = crate::reproduce::preset_config(relata_train::Preset::Paper);
        assert_eq!((paper.rounds, backbone_epochs(&paper)), (4, 800));
        let round0 = IslConfig::cifar().with_rounds(1);
        let names: Vec<String> = phases(&round0).into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["backbone-0"]);
        assert!(IslConfig::cifar().with_rounds(0).check().is_err());
        assert_eq!(parse_phase("mine-12").unwrap(), (PhaseKind::Mine, 12));
        assert!(parse_phase("warmup").is_err());
    }
}
