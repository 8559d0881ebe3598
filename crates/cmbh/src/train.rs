//! CMBH's side of the shared training loop (the paper's "Training / inference"; docs/cmbh.md): the
//! code cache b^{(t−1)} and class proxies c^{(t−1)} of Eq. 6–7, one step = whole-image forward +
//! (with +R) Algorithm 1 and the region crops' forward, the loss terms of Eq. 15, and [`fit`] for
//! library use.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use relata_dataset::{BatchComposer, BatchLoader, EpochSampler, Pipeline, Sample};
use relata_train::{
    EpochContext, EpochRecord, FitOptions, Goal, Loss, LrSchedule, OptimizerConfig, OptimizerKind,
    PhaseConfig, PhaseControl, SeededRng, Selection, StepContext, TrainError, TrainTask, Trained,
    TrainerConfig, fit_task,
};

use crate::config::{CmbhConfig, CmbhTrainingConfig};
use crate::error::CmbhError;
use crate::eval::evaluate;
use crate::loss::{
    class_means, classification_loss, hash_pair_loss, hash_proxy_loss, pair_balance,
    pair_similarity, proxy_balance, proxy_similarity, transfer_loss,
};
use crate::model::{CmbhModel, CmbhOutput, Reduce};
use crate::region::{PixelBox, crop_regions, heat_maps, localize};

const STATE_MAGIC: &[u8; 8] = b"CMBHST01";

/// Training state that lives across epochs: the relaxed codes of the epoch in progress and the
/// previous epoch's codes and proxies.
pub struct CmbhTask<'a> {
    config: CmbhTrainingConfig,
    loader: BatchLoader<'a>,
    labels: Vec<usize>,
    pair_negative: f64,
    proxy_negative: f64,
    /// u of every training image as last seen (`[n, bits]`); codes b^{(t)} = sign of it.
    last_u: Vec<f32>,
    /// b^{(t−1)} (`[n, bits]`, ±1).
    prev_codes: Vec<f32>,
    /// c^{(t−1)} (`[y, bits]`).
    proxies: Vec<f32>,
    prev_codes_tensor: Option<Tensor<2>>,
    proxies_tensor: Option<Tensor<2>>,
    /// `(database, queries)` of the per-epoch validation mAP: the training split and images
    /// held out of it.
    validation: Option<(&'a [Sample], &'a [Sample])>,
}

/// sign with sign(0) = +1, so every code is ±1.
fn sign(v: f32) -> f32 {
    if v < 0.0 { -1.0 } else { 1.0 }
}

impl<'a> CmbhTask<'a> {
    /// This task scoring the model after every epoch: mAP@all of `queries` (images held out of
    /// the training split) against `database` (the training split), as `val map`.
    pub fn with_validation(mut self, database: &'a [Sample], queries: &'a [Sample]) -> Self {
        self.validation = Some((database, queries));
        self
    }

    /// A task over the training `samples`. Epoch 0's b^{(−1)} and c^{(−1)} are random ±1
    /// (seeded), as the paper allows.
    pub fn new(config: CmbhTrainingConfig, samples: &'a [Sample]) -> Result<Self, CmbhError> {
        config.check()?;
        let classes = config.model.classes;
        if samples.len() < 2 {
            return Err(CmbhError::Input(format!(
                "{} training images: need at least 2",
                samples.len()
            )));
        }
        let labels: Vec<usize> = samples.iter().map(|s| s.label).collect();
        if let Some(bad) = labels.iter().find(|&&l| l >= classes) {
            return Err(CmbhError::Input(format!(
                "label {bad} in the training split but the model has {classes} classes; set \
                 `classes` to the dataset's class count"
            )));
        }
        let mut counts = vec![0usize; classes];
        for &l in &labels {
            counts[l] += 1;
        }
        let bits = config.model.bits;
        let mut rng = SeededRng::derive(config.seed, &[0xC0DE]);
        let random_codes = |rng: &mut SeededRng, len: usize| -> Vec<f32> {
            (0..len)
                .map(|_| if rng.below(2) == 0 { -1.0 } else { 1.0 })
                .collect()
        };
        let last_u = random_codes(&mut rng, labels.len() * bits);
        let proxies = random_codes(&mut rng, classes * bits);
        let loader = BatchLoader::new(
            samples,
            Pipeline::cmbh_train_with(config.resize, config.crop, config.flip),
            config.seed,
        )?;
        Ok(Self {
            pair_negative: pair_balance(&counts),
            proxy_negative: proxy_balance(classes),
            prev_codes: last_u.clone(),
            last_u,
            proxies,
            labels,
            loader,
            config,
            prev_codes_tensor: None,
            proxies_tensor: None,
            validation: None,
        })
    }

    /// The codes of the training images after the last epoch, `[n, bits]` ±1 (the database
    /// codes FISH-style evaluations reuse; relata re-encodes the database instead).
    pub fn codes(&self) -> &[f32] {
        &self.prev_codes
    }
}

/// One batch's inputs to the CMBH loss.
pub struct LossInputs<'a> {
    /// Normalised CHW pixels of the batch (the region crops are cut from them).
    pub pixels: &'a [f32],
    /// `[n, 3, h, w]`.
    pub shape: [usize; 4],
    /// The batch's labels.
    pub batch_labels: &'a [usize],
    /// Labels of all n training images (rows of S^p).
    pub all_labels: &'a [usize],
    /// b^{(t−1)}, `[n_train, bits]`.
    pub prev_codes: Tensor<2>,
    /// c^{(t−1)}, `[y, bits]`.
    pub proxies: Tensor<2>,
    /// The value of S^p's zeros ([`pair_balance`]).
    pub pair_negative: f64,
    /// The value of S^c's zeros ([`proxy_balance`]).
    pub proxy_negative: f64,
}

/// Named loss terms, in the order they are added.
pub type LossTerms = Vec<(&'static str, Tensor<1>)>;

/// The loss terms of Eq. 15 for one batch, by name (`hash_pair`, `hash_proxy`, then with the
/// ablation switches `cls`, `trans`, `region`), and the whole-image forward pass.
pub fn training_loss(
    model: &CmbhModel,
    config: &CmbhConfig,
    inputs: &LossInputs<'_>,
    device: &Device,
) -> Result<(LossTerms, CmbhOutput), CmbhError> {
    let n = inputs.batch_labels.len();
    if n != inputs.shape[0] || inputs.pixels.len() != inputs.shape.iter().product::<usize>() {
        return Err(CmbhError::Input(format!(
            "{} labels and {} pixel values for a batch of shape {:?}",
            n,
            inputs.pixels.len(),
            inputs.shape
        )));
    }
    let labels: Tensor<1, Int> = Tensor::from_data(
        TensorData::new(
            inputs
                .batch_labels
                .iter()
                .map(|&l| l as i64)
                .collect::<Vec<_>>(),
            [n],
        ),
        device,
    );
    let images: Tensor<4> = Tensor::from_data(
        TensorData::new(inputs.pixels.to_vec(), inputs.shape),
        device,
    );
    let out = model.forward(images);
    let s_pair = pair_similarity(
        inputs.batch_labels,
        inputs.all_labels,
        inputs.pair_negative,
        device,
    );
    let s_proxy = proxy_similarity(
        inputs.batch_labels,
        config.classes,
        inputs.proxy_negative,
        device,
    );
    let mut terms = vec![
        (
            "hash_pair",
            hash_pair_loss(out.u.clone(), inputs.prev_codes.clone(), s_pair),
        ),
        (
            "hash_proxy",
            hash_proxy_loss(out.u.clone(), inputs.proxies.clone(), s_proxy),
        ),
    ];
    let ablation = config.ablation;
    // The classification-type terms below are batch means; the paper sums them over the batch.
    let scale = config.reduction.classification_scale(n);
    if ablation.cross_layer {
        let cls = classification_loss(&out.all_logits(), &labels);
        terms.push(("cls", cls.mul_scalar(scale)));
    }
    let ensemble = |o: &CmbhOutput| {
        o.ensemble()
            .ok_or_else(|| CmbhError::Config("+T needs +L (the fused class scores)".into()))
    };
    if ablation.transfer {
        let trans = transfer_loss(ensemble(&out)?, out.logits_hash.clone());
        terms.push(("trans", trans.mul_scalar(scale)));
    }
    if ablation.regions {
        let crops = region_crops(&out.maps, inputs, config.regions, device)?;
        let crop_labels = labels.clone().repeat(&[config.regions]);
        let crop_out = model.forward_with(crops, Reduce::Max);
        // Σ_m (L_cls^m + L_trans^m): each term is a mean over the n crops of region m, so the
        // sum over m is M × the mean over all n·M crops.
        let mut region = classification_loss(&crop_out.all_logits(), &crop_labels);
        if ablation.transfer {
            region = region + transfer_loss(ensemble(&crop_out)?, crop_out.logits_hash.clone());
        }
        terms.push(("region", region.mul_scalar(config.regions as f64 * scale)));
    }
    Ok((terms, out))
}

/// Algorithm 1's boxes for every image of the batch, in input pixels.
pub fn region_boxes(
    maps: &[Tensor<4>],
    regions: usize,
    image: [usize; 2],
) -> Result<Vec<Vec<PixelBox>>, CmbhError> {
    let detached: Vec<Tensor<4>> = maps.iter().map(|m| m.clone().detach()).collect();
    Ok(heat_maps(&detached)?
        .iter()
        .map(|a| {
            localize(a, regions)
                .into_iter()
                .map(|b| b.to_pixels([a.h, a.w], image))
                .collect()
        })
        .collect())
}

fn region_crops(
    maps: &[Tensor<4>],
    inputs: &LossInputs<'_>,
    regions: usize,
    device: &Device,
) -> Result<Tensor<4>, CmbhError> {
    let [n, c, h, w] = inputs.shape;
    let boxes = region_boxes(maps, regions, [h, w])?;
    let crops = crop_regions(inputs.pixels, inputs.shape, &boxes);
    Ok(Tensor::from_data(
        TensorData::new(crops, [n * regions, c, h, w]),
        device,
    ))
}

impl TrainTask for CmbhTask<'_> {
    type Model = CmbhModel;
    type Batch = Vec<usize>;

    fn validate(
        &mut self,
        model: &CmbhModel,
        ctx: &mut EpochContext<'_>,
    ) -> Result<BTreeMap<String, f64>, TrainError> {
        let Some((database, queries)) = self.validation else {
            return Ok(BTreeMap::new());
        };
        let config = &self.config;
        let pipeline = Pipeline::cmbh_test_sized(config.resize, config.crop);
        let encoder = model.clone().into_encoder();
        let device = ctx.device.clone().inner();
        let batch = config.batch_size.max(32);
        let evaluation = evaluate(&encoder, database, queries, &pipeline, batch, &device)?;
        Ok(BTreeMap::from([("map".to_string(), evaluation.map)]))
    }

    fn epoch_batches(&mut self, ctx: &mut EpochContext<'_>) -> Result<Vec<Vec<usize>>, TrainError> {
        EpochSampler::folding_single(self.labels.len(), self.config.batch_size)
            .compose(ctx.epoch, &mut ctx.rng)
            .map_err(TrainError::task)
    }

    fn on_epoch_start(
        &mut self,
        _model: &mut CmbhModel,
        ctx: &mut EpochContext<'_>,
    ) -> Result<(), TrainError> {
        let bits = self.config.model.bits;
        let n = self.labels.len();
        self.prev_codes_tensor = Some(Tensor::from_data(
            TensorData::new(self.prev_codes.clone(), [n, bits]),
            ctx.device,
        ));
        self.proxies_tensor = Some(Tensor::from_data(
            TensorData::new(self.proxies.clone(), [self.config.model.classes, bits]),
            ctx.device,
        ));
        Ok(())
    }

    fn step(
        &mut self,
        model: CmbhModel,
        batch: &Vec<usize>,
        ctx: &mut StepContext<'_>,
    ) -> Result<CmbhModel, TrainError> {
        let device = ctx.device.clone();
        let host = self
            .loader
            .load_host(batch, ctx.epoch)
            .map_err(CmbhError::from)?;
        let n = batch.len();
        let batch_labels: Vec<usize> = batch.iter().map(|&i| self.labels[i]).collect();
        let (prev_codes, proxies) = match (&self.prev_codes_tensor, &self.proxies_tensor) {
            (Some(b), Some(c)) => (b.clone(), c.clone()),
            _ => return Err(TrainError::msg("CMBH code cache used before epoch start")),
        };
        let inputs = LossInputs {
            pixels: &host.pixels,
            shape: host.shape,
            batch_labels: &batch_labels,
            all_labels: &self.labels,
            prev_codes,
            proxies,
            pair_negative: self.pair_negative,
            proxy_negative: self.proxy_negative,
        };
        let (terms, out) = training_loss(&model, &self.config.model, &inputs, &device)?;
        let loss = terms
            .into_iter()
            .fold(Loss::new(), |loss, (name, t)| loss.term(name, t));
        // Cache u for the next epoch's codes and proxies.
        let bits = self.config.model.bits;
        let u: Vec<f32> = out
            .u
            .clone()
            .detach()
            .into_data()
            .try_into_vec_as::<f32>()
            .map_err(|e| TrainError::msg(format!("reading u: {e:?}")))?;
        for (row, &i) in u.chunks(bits).zip(batch) {
            self.last_u[i * bits..(i + 1) * bits].copy_from_slice(row);
        }
        let labels: Tensor<1, Int> = Tensor::from_data(
            TensorData::new(
                batch_labels.iter().map(|&l| l as i64).collect::<Vec<_>>(),
                [n],
            ),
            &device,
        );
        let predicted = out.logits_hash.clone().argmax(1).reshape([n]);
        let correct: i64 = predicted.equal(labels).int().sum().into_scalar::<i64>();
        ctx.record("train_acc", correct as f64 / n as f64);
        ctx.minimize(model, loss)
    }

    fn on_epoch_end(
        &mut self,
        _model: &mut CmbhModel,
        _ctx: &mut EpochContext<'_>,
        _record: &EpochRecord,
    ) -> Result<PhaseControl, TrainError> {
        let bits = self.config.model.bits;
        self.prev_codes = self.last_u.iter().map(|&v| sign(v)).collect();
        self.proxies = class_means(&self.last_u, bits, &self.labels, &self.proxies);
        Ok(PhaseControl::Continue)
    }

    fn save_state(&self) -> Result<Vec<u8>, TrainError> {
        let mut out = STATE_MAGIC.to_vec();
        for part in [&self.last_u, &self.prev_codes, &self.proxies] {
            out.extend((part.len() as u64).to_le_bytes());
            for v in part.iter() {
                out.extend(v.to_le_bytes());
            }
        }
        Ok(out)
    }

    fn load_state(&mut self, bytes: &[u8]) -> Result<(), TrainError> {
        let bad = |why: &str| TrainError::msg(format!("CMBH checkpoint state: {why}"));
        let rest = bytes
            .strip_prefix(STATE_MAGIC.as_slice())
            .ok_or_else(|| bad("not a CMBH state (bad magic)"))?;
        let mut parts = Vec::new();
        let mut cursor = rest;
        for _ in 0..3 {
            let (len, tail) = cursor
                .split_first_chunk::<8>()
                .ok_or_else(|| bad("truncated"))?;
            let len = u64::from_le_bytes(*len) as usize;
            let (data, tail) = tail
                .split_at_checked(len * 4)
                .ok_or_else(|| bad("truncated"))?;
            parts.push(
                data.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect::<Vec<f32>>(),
            );
            cursor = tail;
        }
        let proxies = parts.pop().expect("3 parts");
        let prev = parts.pop().expect("3 parts");
        let last = parts.pop().expect("3 parts");
        if last.len() != self.last_u.len() || proxies.len() != self.proxies.len() {
            return Err(bad(
                "sizes differ from this configuration (another dataset or bit length?)",
            ));
        }
        self.last_u = last;
        self.prev_codes = prev;
        self.proxies = proxies;
        Ok(())
    }
}

/// A trained CMBH model and where its run lives.
pub type TrainedCmbh = Trained<CmbhModel>;

/// The scaffold's configuration for a CMBH run: one phase, SGD with momentum and weight decay,
/// the learning rate ÷ 10 at each milestone.
///
/// With a validation split the model is scored after every epoch (`val map`, curve and
/// report). With `patience` as well, the learning rate drops ÷ 10 at the first
/// `plateau_drops` plateaus of the validation mAP (that many epochs without a new best),
/// training stops at the next, and the best epoch's model is kept; otherwise the last epoch's
/// is, as the paper's protocol has no selection.
pub(crate) fn trainer_config(config: &CmbhTrainingConfig, has_validation: bool) -> TrainerConfig {
    let early_stop = config.patience.filter(|_| has_validation);
    let sgd = OptimizerConfig::new(
        "sgd",
        OptimizerKind::sgd(config.momentum, config.weight_decay),
        config.lr,
    )
    .with_schedule(LrSchedule::MultiStep {
        milestones: config.lr_milestones.clone(),
        gamma: 0.1,
    });
    TrainerConfig::new(vec![PhaseConfig::new("train", config.epochs)], vec![sgd])
        .with_seed(config.seed)
        .with_eval_every(usize::from(has_validation))
        .with_selection(early_stop.map(|_| Selection {
            metric: "map".into(),
            goal: Goal::Maximize,
        }))
        .with_patience(early_stop)
        .with_plateau_drops(early_stop.map_or(0, |_| config.plateau_drops))
}

/// Trains CMBH on `train` (a labelled split) on `device` (a plain device; autodiff is added
/// here), starting the backbone from `options.weights` when given, and — with `validation`
/// (images held out of the training data, never the test split) — scores the validation mAP
/// after every epoch; with `config.patience` too, it stops at the validation plateau and
/// returns the best epoch's model. Writes checkpoints and curves to the run directory; resumes
/// when asked.
pub fn fit(
    config: &CmbhTrainingConfig,
    train: &[Sample],
    validation: Option<&[Sample]>,
    device: &Device,
    options: &FitOptions,
) -> Result<TrainedCmbh, CmbhError> {
    config.check()?;
    let trainer = trainer_config(config, validation.is_some());
    let fitted = fit_task(config, trainer, device, options, |autodiff| {
        let mut model = config.model.init(autodiff);
        if let Some(weights) = &options.weights {
            let report =
                relata_backbone::import_state_dict(&mut model.backbone, weights, &["fc."])?;
            tracing::info!(
                "backbone weights from {}: {} tensors",
                weights.display(),
                report.applied
            );
        }
        let task = CmbhTask::new(config.clone(), train)?;
        let task = match validation {
            Some(queries) => task.with_validation(train, queries),
            None => task,
        };
        Ok::<_, CmbhError>((task, model))
    })?;
    Ok(fitted.trained(fitted.outcome.selected().clone().valid(), ()))
}
