//! HREM on the shared training loop (the paper's "Losses", "Optimisation"; docs/hrem.md): one phase
//! of caption batches; each step encodes the batch's images (regions dropped) and captions (words
//! augmented), and minimises L_tri(v, u) — plus, once `warmup_iterations` steps have run and
//! relations are on, L_tri(v̄, ū) + L_tri(v̄, u) + L_tri(v, ū) + 10·L_reg through the relation
//! module. AdamW with BERT at ×0.1, global-norm clip 2, lr ×0.1 at the milestones. The model is
//! selected on the dev split's rSum, never on test.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use relata_dataset::rng::SeededRng;
use relata_dataset::{BatchComposer, EpochSampler, PrecompSplit};
use relata_metrics::{KMeansConfig, kmeans};
use relata_train::{
    EpochContext, FitOptions, Goal, Loss, LrSchedule, OptimizerConfig, OptimizerKind, PhaseConfig,
    Selection, StepContext, TrainError, TrainTask, Trained, TrainerConfig, fit_task,
};

use crate::config::HremConfig;
use crate::data::{RegionBatch, TextTokenizer, Tokens, augment_words, pad_ids, region_batch};
use crate::error::HremError;
use crate::eval::{embed_images, evaluate};
use crate::loss::{relevance_regulariser, triplet_loss};
use crate::model::HremModel;
use crate::relation::{Connections, connections, fragment_scores};

/// The training phase's name.
pub const PHASE: &str = "train";

/// HREM's side of the training loop.
pub struct HremTask<'a> {
    config: HremConfig,
    train: &'a PrecompSplit,
    dev: Option<&'a PrecompSplit>,
    tokenizer: &'a TextTokenizer,
    tokens: Vec<Tokens>,
    /// Neighbour batches planned at epoch start (with `neighbour_batches`).
    planned: Option<Vec<Vec<usize>>>,
}

impl<'a> HremTask<'a> {
    /// A task over the `train` split (and `dev` for model selection).
    pub fn new(
        config: HremConfig,
        train: &'a PrecompSplit,
        dev: Option<&'a PrecompSplit>,
        tokenizer: &'a TextTokenizer,
    ) -> Result<Self, HremError> {
        config.check()?;
        if train.captions.len() < 2 {
            return Err(HremError::Input(format!(
                "{}: {} training captions, need at least 2",
                train.features_path.display(),
                train.captions.len()
            )));
        }
        if train.dim != config.encoder.region_dim {
            return Err(HremError::Input(format!(
                "{}: region features of {} dimensions but encoder.region_dim = {}; set it to \
                 the features' size",
                train.features_path.display(),
                train.dim,
                config.encoder.region_dim
            )));
        }
        let tokens = train
            .captions
            .iter()
            .map(|c| tokenizer.tokens(c))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            config,
            train,
            dev,
            tokenizer,
            tokens,
            planned: None,
        })
    }

    /// Neighbour batches: k-means on the image embeddings, P clusters × K images per batch, one
    /// random caption of each image.
    fn neighbour_batches(
        &self,
        model: &HremModel,
        [p, k]: [usize; 2],
        ctx: &mut EpochContext<'_>,
    ) -> Result<Vec<Vec<usize>>, HremError> {
        let n = self.train.num_images;
        let net = model.clone().valid();
        let images: Vec<usize> = (0..n).collect();
        let emb = embed_images(&net, self.train, &images, 128, &ctx.device.clone().inner())?;
        let dim = emb.len() / n;
        let clusters = (n / k.max(1)).clamp(1, n);
        let result = kmeans(
            &emb,
            dim,
            KMeansConfig {
                k: clusters,
                n_init: 1,
                max_iter: 50,
                seed: ctx.rng.next_u64(),
            },
        )?;
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); clusters];
        for (i, &c) in result.labels.iter().enumerate() {
            members[c as usize].push(i);
        }
        for m in &mut members {
            ctx.rng.shuffle(m);
        }
        // Chunks of K images per cluster, shuffled, grouped P at a time.
        let mut chunks: Vec<Vec<usize>> = members
            .iter()
            .flat_map(|m| m.chunks(k).map(<[usize]>::to_vec))
            .collect();
        ctx.rng.shuffle(&mut chunks);
        let per = self.train.captions_per_image;
        let batches = chunks
            .chunks(p)
            .map(|group| {
                group
                    .iter()
                    .flatten()
                    .map(|&img| img * per + ctx.rng.below(per.max(1)))
                    .collect::<Vec<usize>>()
            })
            .filter(|b| b.len() >= 2)
            .collect();
        Ok(batches)
    }

    /// One training batch of caption indices as the model reads it: regions dropped and words
    /// augmented with `rng` (as configured), padded.
    pub fn inputs(&self, batch: &[usize], rng: &mut SeededRng) -> Result<StepInputs, HremError> {
        let images: Vec<usize> = batch
            .iter()
            .map(|&c| self.train.image_of_caption(c))
            .collect();
        let regions = region_batch(self.train, &images, Some((self.config.region_drop, rng)))?;
        let mask_id = self.tokenizer.mask_id();
        let vocab = self.tokenizer.vocab_size();
        let rows: Vec<Vec<i64>> = batch
            .iter()
            .map(|&c| {
                augment_words(
                    &self.tokens[c],
                    self.config.word_augment,
                    mask_id,
                    vocab,
                    rng,
                )
            })
            .collect();
        Ok(StepInputs {
            regions,
            ids: pad_ids(&rows),
            images,
        })
    }
}

/// One batch as the model reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepInputs {
    /// Zero-padded regions, their shape `[b, l, dim]` and lengths.
    pub regions: RegionBatch,
    /// Padded token ids, their shape `[b, l]` and lengths.
    pub ids: (Vec<i64>, [usize; 2], Vec<usize>),
    /// The image of each caption (row j of the regions is caption j's image).
    pub images: Vec<usize>,
}

/// The loss terms of one batch: `tri` = L_tri(v, u); with `relations_on` also `cross` =
/// L_tri(v, ū) + L_tri(v̄, u) + L_tri(v̄, ū) and `reg` = the weighted L_reg. `uniform` gives
/// the distance-weighted draws' numbers; `links` sees the batch's connections and returns the
/// ones to use (training passes them through; the step parity replays the released code's).
pub fn step_loss(
    config: &HremConfig,
    model: &HremModel,
    inputs: &StepInputs,
    relations_on: bool,
    uniform: &mut dyn FnMut() -> f64,
    links: &mut dyn FnMut(Connections) -> Connections,
    device: &Device,
) -> Loss {
    let (regions, shape, region_lengths) = &inputs.regions;
    let (ids, id_shape, word_lengths) = &inputs.ids;
    let image_out = model.image.forward(
        Tensor::from_data(TensorData::new(regions.clone(), *shape), device),
        region_lengths,
    );
    let text_out = model.text.forward(
        Tensor::from_data(TensorData::new(ids.clone(), *id_shape), device),
        word_lengths,
    );
    let (v, u) = (image_out.embedding.clone(), text_out.embedding.clone());
    let (margin, negatives) = (config.margin, config.negatives);
    let mut tri = |a: Tensor<2>, b: Tensor<2>| {
        triplet_loss(a, b, &inputs.images, margin, negatives, &mut *uniform)
    };
    let mut loss = Loss::new().term("tri", tri(v.clone(), u.clone()));
    if let (true, Some(relation)) = (relations_on, &model.relation) {
        let r = &config.relation;
        let scores = fragment_scores(
            image_out.parts,
            region_lengths,
            text_out.parts,
            word_lengths,
            r.top_k,
            r.slots,
        );
        let links = links(connections(&v, &u, &scores, r.threshold));
        let out = relation.forward(v.clone(), u.clone(), &scores, &links);
        // The released code's order: L(v, ū), L(v̄, u), L(v̄, ū).
        let cross = tri(v.clone(), out.u_bar.clone())
            + tri(out.v_bar.clone(), u.clone())
            + tri(out.v_bar, out.u_bar);
        let reg = relevance_regulariser(out.s_i2t, out.s_t2i, v, u, r.sigma);
        loss = loss
            .term("cross", cross)
            .term("reg", reg.mul_scalar(config.reg_weight));
    }
    loss
}

impl TrainTask for HremTask<'_> {
    type Model = HremModel;
    type Batch = Vec<usize>;

    fn epoch_batches(&mut self, ctx: &mut EpochContext<'_>) -> Result<Vec<Vec<usize>>, TrainError> {
        if let Some(batches) = self.planned.take() {
            return Ok(batches);
        }
        EpochSampler::folding_single(self.train.captions.len(), self.config.batch_size)
            .compose(ctx.epoch, &mut ctx.rng)
            .map_err(TrainError::task)
    }

    fn on_epoch_start(
        &mut self,
        model: &mut HremModel,
        ctx: &mut EpochContext<'_>,
    ) -> Result<(), TrainError> {
        if let Some(pk) = self.config.neighbour_batches {
            self.planned = Some(self.neighbour_batches(model, pk, ctx)?);
        }
        Ok(())
    }

    fn step(
        &mut self,
        model: HremModel,
        batch: &Vec<usize>,
        ctx: &mut StepContext<'_>,
    ) -> Result<HremModel, TrainError> {
        let relations_on =
            self.config.relations && ctx.global_step >= self.config.warmup_iterations;
        let device = ctx.device.clone();
        let inputs = self.inputs(batch, &mut *ctx.rng)?;
        let rng = &mut *ctx.rng;
        let loss = step_loss(
            &self.config,
            &model,
            &inputs,
            relations_on,
            &mut || rng.next_f64(),
            &mut |links| links,
            &device,
        );
        ctx.record("relations_on", f64::from(u8::from(relations_on)));
        ctx.minimize(model, loss)
    }

    fn validate(
        &mut self,
        model: &HremModel,
        ctx: &mut EpochContext<'_>,
    ) -> Result<BTreeMap<String, f64>, TrainError> {
        let Some(dev) = self.dev else {
            return Ok(BTreeMap::new());
        };
        let report = evaluate(
            model,
            self.tokenizer,
            dev,
            None,
            &ctx.device.clone().inner(),
        )?;
        Ok(BTreeMap::from([
            ("rsum".to_string(), report.rsum),
            ("i2t_r1".to_string(), report.i2t.r1),
            ("t2i_r1".to_string(), report.t2i.r1),
        ]))
    }
}

/// The scaffold's configuration: one phase, AdamW (BERT at `bert_lr_factor`), global-norm
/// clip, lr × 0.1 at the milestones, selection on the dev rSum when there is a dev split.
#[doc(hidden)] // public for the tests that drive the scaffold with a task of their own
pub fn trainer_config(config: &HremConfig, has_dev: bool) -> TrainerConfig {
    let mut adamw = OptimizerConfig::new(
        "adamw",
        OptimizerKind::adamw(config.weight_decay),
        config.lr,
    )
    .with_clip_grad_norm(config.clip)
    .with_schedule(LrSchedule::MultiStep {
        milestones: config.lr_milestones.clone(),
        gamma: 0.1,
    });
    if config.uses_bert() {
        // "bert." matches the BERT model's parameters (text.bert.…) but not `text.bert_fc`.
        adamw = adamw.with_group("bert.", config.lr * config.bert_lr_factor);
    }
    let mut t = TrainerConfig::new(vec![PhaseConfig::new(PHASE, config.epochs)], vec![adamw])
        .with_seed(config.seed);
    if has_dev {
        t = t.with_eval_every(1).with_selection(Some(Selection {
            metric: "rsum".into(),
            goal: Goal::Maximize,
        }));
    } else {
        t = t.with_eval_every(0);
    }
    t
}

/// What HREM's `fit` returns beside the model.
pub struct HremExtra {
    /// The caption tokeniser the model was trained with (embedding captions needs it).
    pub tokenizer: TextTokenizer,
}

/// A trained HREM model — the selected one (best dev rSum; the last one without a dev split),
/// in inference mode — with its tokeniser. `model/` in the run directory holds the saved
/// encoders once the run is complete.
pub type TrainedHrem = Trained<HremModel, HremExtra>;

/// Trains HREM (or the baseline, `relations = false`) on `train`, selecting on `dev`, on
/// `device` (plain; autodiff is added here). A completed run saves `model/`.
pub fn fit(
    config: &HremConfig,
    train: &PrecompSplit,
    dev: Option<&PrecompSplit>,
    device: &Device,
    options: &FitOptions,
) -> Result<TrainedHrem, HremError> {
    config.check()?;
    if let Some(weights) = &options.weights {
        return Err(HremError::Config(format!(
            "backbone weights ({}) do not apply to HREM: its images arrive as precomputed region \
             features; a BERT text encoder comes from the configuration's checkpoint directory",
            weights.display()
        )));
    }
    let tokenizer = config.tokenizer(train.captions.iter().map(String::as_str))?;
    let trainer = trainer_config(config, dev.is_some());
    let fitted = fit_task(config, trainer, device, options, |autodiff| {
        let model = config.init(&tokenizer, true, autodiff)?;
        Ok::<_, HremError>((
            HremTask::new(config.clone(), train, dev, &tokenizer)?,
            model,
        ))
    })?;
    let model = fitted.outcome.selected().clone().valid();
    if fitted.outcome.completed {
        model.save(config, &tokenizer, &fitted.run_dir.join("model"))?;
    }
    let trained = fitted.trained(model, ());
    // The task borrows the tokeniser; the tokeniser goes out once the run is done with.
    drop(fitted);
    Ok(trained.with_extra(HremExtra { tokenizer }))
}
