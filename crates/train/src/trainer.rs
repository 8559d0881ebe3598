//! The training loop every method runs (docs/design.md, Training and results): phases of epochs over a method's
//! [`TrainTask`], with hooks, schedules, the NaN guard, checkpoints, resume, evaluation and
//! reporting.
//!
//! The method owns its data, losses and extra state; the loop owns the plumbing:
//!
//! ```text
//! for phase in phases:                      on_phase_start
//!   for epoch in phase:                     seed RNGs from (seed, epoch); on_epoch_start
//!     for batch in epoch_batches():         step() → ctx.minimize(model, Loss) → NaN guard,
//!                                           backward, clip, per-group lr, optimiser step
//!     on_epoch_end → Continue | EndPhase
//!     validate() every N epochs → model selection (validation split only)
//!     metrics.jsonl, curves, atomic checkpoint (model, optimisers, method state, counters)
//!   on_phase_end
//! ```
//!
//! Resume restores everything the next epoch depends on: parameters, optimiser state, the
//! method's state, the counters that drive schedules, and — because every random stream is a
//! function of `(seed, epoch)` — the random numbers. A resumed run therefore ends with the same
//! metrics as an uninterrupted one.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Tensor};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{latest_valid, list_checkpoints, prune, read_checkpoint, write_checkpoint};
use crate::config::{Goal, PhaseConfig, TrainerConfig, Verbosity};
use crate::error::TrainError;
use crate::optim::NamedOptimizer;
use crate::plot::{Series, line_chart};
use crate::run::{EpochRecord, RunDir, StepLoss};
use crate::schedule::{Clock, ScheduleClock};
use relata_dataset::rng::{SeededRng, mix_seed};

const EPOCH_PREFIX: &str = "epoch-";
const BEST_PREFIX: &str = "best-";
const STATE_FILE: &str = "state.json";
const MODEL_FILE: &str = "model.bpk";
const METHOD_FILE: &str = "method.bin";

/// Something a batch plan can report its sample count for (throughput, weighting of means).
pub trait BatchPlan {
    /// Samples in the batch.
    fn num_samples(&self) -> usize;
}

impl BatchPlan for Vec<usize> {
    fn num_samples(&self) -> usize {
        self.len()
    }
}

impl BatchPlan for std::ops::Range<usize> {
    fn num_samples(&self) -> usize {
        self.len()
    }
}

/// What a method tells the loop at the end of an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseControl {
    /// Go on with the phase.
    Continue,
    /// End the phase now (ISL's early stop of the GAN, its mining criterion).
    EndPhase,
}

/// A method's side of the loop. Only [`TrainTask::epoch_batches`] and [`TrainTask::step`] are
/// required; hooks default to doing nothing.
pub trait TrainTask {
    /// The trained module (a composite of everything any optimiser updates).
    type Model: Module;
    /// One batch as planned at epoch start (typically sample indices); the method loads it.
    type Batch: BatchPlan;

    /// The batches of the coming epoch, in order (shuffle with `ctx.rng`).
    fn epoch_batches(&mut self, ctx: &mut EpochContext<'_>)
    -> Result<Vec<Self::Batch>, TrainError>;

    /// One training step: load the batch, compute the loss terms, and update the model with
    /// [`StepContext::minimize`] (once or, for alternating updates, several times).
    fn step(
        &mut self,
        model: Self::Model,
        batch: &Self::Batch,
        ctx: &mut StepContext<'_>,
    ) -> Result<Self::Model, TrainError>;

    /// Called before the first epoch of each phase (not again when resuming mid-phase: state
    /// built here must be part of [`TrainTask::save_state`]).
    fn on_phase_start(
        &mut self,
        _model: &mut Self::Model,
        _ctx: &mut EpochContext<'_>,
    ) -> Result<(), TrainError> {
        Ok(())
    }

    /// Called before each epoch (CMBH refreshes its code cache here, CSRMS re-clusters).
    fn on_epoch_start(
        &mut self,
        _model: &mut Self::Model,
        _ctx: &mut EpochContext<'_>,
    ) -> Result<(), TrainError> {
        Ok(())
    }

    /// Called after each epoch's steps, with the epoch's means; may end the phase.
    fn on_epoch_end(
        &mut self,
        _model: &mut Self::Model,
        _ctx: &mut EpochContext<'_>,
        _record: &EpochRecord,
    ) -> Result<PhaseControl, TrainError> {
        Ok(PhaseControl::Continue)
    }

    /// Called after the last epoch of each phase.
    fn on_phase_end(
        &mut self,
        _model: &mut Self::Model,
        _ctx: &mut EpochContext<'_>,
    ) -> Result<(), TrainError> {
        Ok(())
    }

    /// Validation metrics of `model` (already in inference mode) on the validation split —
    /// never the test split. An empty map means "no evaluator".
    fn validate(
        &mut self,
        _model: &Self::Model,
        _ctx: &mut EpochContext<'_>,
    ) -> Result<BTreeMap<String, f64>, TrainError> {
        Ok(BTreeMap::new())
    }

    /// The method's own state for checkpoints (code caches, memory banks, relation graphs).
    fn save_state(&self) -> Result<Vec<u8>, TrainError> {
        Ok(Vec::new())
    }

    /// Restores [`TrainTask::save_state`]'s bytes on resume.
    fn load_state(&mut self, _bytes: &[u8]) -> Result<(), TrainError> {
        Ok(())
    }
}

/// Where the loop is, handed to hooks.
pub struct EpochContext<'a> {
    /// Phase name.
    pub phase: &'a str,
    /// Phase index in the configuration.
    pub phase_index: usize,
    /// Global epoch index, 0-based.
    pub epoch: usize,
    /// Epoch index inside the phase, 0-based.
    pub epoch_in_phase: usize,
    /// The run's seed.
    pub seed: u64,
    /// This epoch's random stream (a function of seed and epoch).
    pub rng: SeededRng,
    /// The device the trainer was given.
    pub device: &'a Device,
    /// The run directory.
    pub run_dir: &'a Path,
    extra: BTreeMap<String, (f64, usize)>,
    /// Every optimiser's task-set learning-rate multiplier (see [`EpochContext::set_lr_scale`]).
    lr_scales: BTreeMap<String, f64>,
}

impl EpochContext<'_> {
    /// Records a scalar in this epoch's `extra` (averaged if recorded several times).
    pub fn record(&mut self, name: impl Into<String>, value: f64) {
        let e = self.extra.entry(name.into()).or_insert((0.0, 0));
        e.0 += value;
        e.1 += 1;
    }

    /// The learning-rate multiplier the task has set for `optimizer` (1 until it sets one).
    pub fn lr_scale(&self, optimizer: &str) -> Result<f64, TrainError> {
        self.lr_scales
            .get(optimizer)
            .copied()
            .ok_or_else(|| self.unknown_optimizer(optimizer))
    }

    /// Multiplies `optimizer`'s learning rate by `scale` from the next step on, on top of its
    /// schedule and the trainer's own plateau drops, and keeps it in every checkpoint: for a
    /// task that runs its own plateau rule on one optimiser only (ISL lowers the encoder's rate
    /// on a held-out kNN monitor and leaves the GAN's Adam alone).
    pub fn set_lr_scale(&mut self, optimizer: &str, scale: f64) -> Result<(), TrainError> {
        if !(scale > 0.0 && scale.is_finite()) {
            return Err(TrainError::msg(format!(
                "learning-rate scale {scale} for `{optimizer}`: must be positive and finite"
            )));
        }
        let unknown = self.unknown_optimizer(optimizer);
        *self.lr_scales.get_mut(optimizer).ok_or(unknown)? = scale;
        Ok(())
    }

    fn unknown_optimizer(&self, name: &str) -> TrainError {
        TrainError::UnknownOptimizer {
            name: name.to_string(),
            known: self
                .lr_scales
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// A method's loss for one update: named terms (already weighted) whose sum is minimised.
#[derive(Default)]
pub struct Loss {
    terms: Vec<(String, Tensor<1>)>,
}

impl Loss {
    /// An empty loss.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a term (a one-element tensor, weighted by the caller).
    pub fn term(mut self, name: impl Into<String>, value: Tensor<1>) -> Self {
        self.terms.push((name.into(), value));
        self
    }

    /// A loss with one term.
    pub fn single(name: impl Into<String>, value: Tensor<1>) -> Self {
        Self::new().term(name, value)
    }

    /// The named terms, in the order they were added.
    pub fn terms(&self) -> &[(String, Tensor<1>)] {
        &self.terms
    }

    /// The sum of the terms.
    pub fn total(&self) -> Option<Tensor<1>> {
        self.terms
            .iter()
            .map(|(_, t)| t.clone())
            .reduce(|a, b| a + b)
    }
}

/// Running sums of per-step scalars, weighted by samples.
#[derive(Default, Clone)]
struct Meter {
    sums: BTreeMap<String, (f64, f64)>,
}

impl Meter {
    fn add(&mut self, name: &str, value: f64, weight: f64) {
        let e = self.sums.entry(name.to_string()).or_insert((0.0, 0.0));
        e.0 += value * weight;
        e.1 += weight;
    }

    fn means(&self) -> BTreeMap<String, f64> {
        self.sums
            .iter()
            .map(|(k, (s, w))| (k.clone(), if *w > 0.0 { s / w } else { f64::NAN }))
            .collect()
    }
}

/// Counters that drive the schedules.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
struct Counters {
    global_step: usize,
    phase_step: usize,
    /// The learning-rate multiplier of the plateau drops so far (`plateau_factor^drops`).
    #[serde(default = "one")]
    lr_scale: f64,
    /// Plateau drops so far, and the epoch (1-based) of the last one.
    #[serde(default)]
    lr_drops: usize,
    #[serde(default)]
    last_drop_epoch: usize,
}

fn one() -> f64 {
    1.0
}

/// What `optimizer`'s scheduled learning rate is multiplied by: the trainer's plateau drops
/// times the task's own scale for it. The step and the logged rate both read it here.
fn lr_multiplier(counters: &Counters, task_scales: &BTreeMap<String, f64>, optimizer: &str) -> f64 {
    counters.lr_scale * task_scales.get(optimizer).copied().unwrap_or(1.0)
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            global_step: 0,
            phase_step: 0,
            lr_scale: 1.0,
            lr_drops: 0,
            last_drop_epoch: 0,
        }
    }
}

/// What a schedule with clock `which` sees at `step` of an epoch, given the counters before
/// that step: the one place both the optimiser step and the logged learning rate read.
fn schedule_clock(
    which: ScheduleClock,
    epoch: usize,
    epoch_in_phase: usize,
    counters: Counters,
    step: usize,
    steps_in_epoch: usize,
) -> Clock {
    let (epoch, iteration) = match which {
        ScheduleClock::Global => (epoch, counters.global_step),
        ScheduleClock::Phase => (epoch_in_phase, counters.phase_step),
    };
    Clock {
        epoch,
        iteration,
        iterations_per_epoch: steps_in_epoch,
        iteration_in_epoch: step,
    }
}

/// One step's view of the loop: position, random stream, and the optimisers.
pub struct StepContext<'a> {
    /// Phase name.
    pub phase: &'a str,
    /// Global epoch (0-based).
    pub epoch: usize,
    /// Epoch inside the phase (0-based).
    pub epoch_in_phase: usize,
    /// Step inside the epoch (0-based).
    pub step: usize,
    /// Steps since the start of the run, before this one (HREM switches on relation modelling
    /// after a number of iterations).
    pub global_step: usize,
    /// The epoch's random stream.
    pub rng: &'a mut SeededRng,
    /// The device the trainer was given.
    pub device: &'a Device,
    optimizers: &'a mut [NamedOptimizer],
    counters: Counters,
    lr_scales: &'a BTreeMap<String, f64>,
    steps_in_epoch: usize,
    weight: f64,
    meter: &'a mut Meter,
    last_good: Option<&'a Path>,
    steps_log: Option<&'a mut Vec<StepLoss>>,
}

impl StepContext<'_> {
    /// Records a scalar for this epoch's means (accuracy of a batch, a margin, ...).
    pub fn record(&mut self, name: &str, value: f64) {
        self.meter.add(name, value, self.weight);
    }

    /// Minimises `loss` over all of `model`'s parameters with the first optimiser.
    pub fn minimize<M: Module>(&mut self, model: M, loss: Loss) -> Result<M, TrainError> {
        let name = self.optimizers[0].config().name.clone();
        self.minimize_with(model, loss, &name, |m| m)
    }

    /// Minimises `loss` with the optimiser called `optimizer`, updating only the parameters of
    /// the sub-module `select` picks (ISL's generator vs discriminator). Checks every term for
    /// NaN/Inf first: a non-finite term stops training before any parameter changes.
    pub fn minimize_with<M: Module, S: Module>(
        &mut self,
        model: M,
        loss: Loss,
        optimizer: &str,
        select: impl FnOnce(&M) -> &S,
    ) -> Result<M, TrainError> {
        let Some(total) = loss.total() else {
            return Err(TrainError::msg(
                "StepContext::minimize got a Loss without terms",
            ));
        };
        // One device sync for all terms.
        let mut parts: Vec<Tensor<1>> = loss.terms.iter().map(|(_, t)| t.clone()).collect();
        parts.push(total.clone());
        let values: Vec<f32> = Tensor::cat(parts, 0)
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| TrainError::msg(format!("reading loss values: {e:?}")))?;
        let mut names: Vec<&str> = loss.terms.iter().map(|(n, _)| n.as_str()).collect();
        names.push("total");
        for (name, &v) in names.iter().zip(&values) {
            if !v.is_finite() {
                return Err(TrainError::NonFiniteLoss {
                    term: name.to_string(),
                    value: f64::from(v),
                    phase: self.phase.to_string(),
                    epoch: self.epoch,
                    step: self.step,
                    global_step: self.counters.global_step,
                    last_good: self.last_good.map(Path::to_path_buf),
                });
            }
        }
        if let Some(log) = self.steps_log.as_deref_mut() {
            log.push(StepLoss {
                global_step: self.counters.global_step,
                optimizer: optimizer.to_string(),
                terms: names
                    .iter()
                    .zip(&values)
                    .map(|(n, &v)| (n.to_string(), f64::from(v)))
                    .collect(),
            });
        }
        let single = loss.terms.len() == 1;
        for (name, &v) in names.iter().zip(&values) {
            if single && *name == "total" {
                continue;
            }
            self.meter.add(name, f64::from(v), self.weight);
        }

        let index = self
            .optimizers
            .iter()
            .position(|o| o.config().name == optimizer)
            .ok_or_else(|| TrainError::UnknownOptimizer {
                name: optimizer.to_string(),
                known: self
                    .optimizers
                    .iter()
                    .map(|o| o.config().name.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let mut grads = total.backward();
        let params = GradientsParams::from_module(&mut grads, select(&model));
        let clock_kind = self.optimizers[index].config().clock;
        let clock = schedule_clock(
            clock_kind,
            self.epoch,
            self.epoch_in_phase,
            self.counters,
            self.step,
            self.steps_in_epoch,
        );
        let scale = lr_multiplier(&self.counters, self.lr_scales, optimizer);
        let (model, norm) = self.optimizers[index].apply(model, params, &clock, scale);
        if let Some(norm) = norm {
            self.meter
                .add(&format!("grad_norm/{optimizer}"), norm, self.weight);
        }
        Ok(model)
    }
}

/// Counters and selection state saved in `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct TrainerState {
    format: u32,
    seed: u64,
    epochs_completed: usize,
    next_phase: usize,
    next_epoch_in_phase: usize,
    counters: Counters,
    best: Option<BestState>,
    /// The task's per-optimiser learning-rate multipliers (older checkpoints: none).
    #[serde(default)]
    lr_scales: BTreeMap<String, f64>,
}

/// The best validation result so far.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BestState {
    /// Epoch (1-based, global) at which it was reached.
    pub epoch: usize,
    /// Metric name.
    pub metric: String,
    /// Its value.
    pub value: f64,
}

/// The best model by validation metric.
pub struct BestModel<M> {
    /// Which epoch and value.
    pub state: BestState,
    /// Its parameters.
    pub model: M,
}

/// What [`Trainer::fit`] returns.
pub struct FitOutcome<M> {
    /// The model after the last epoch trained.
    pub model: M,
    /// The best model by the selection metric, when selection is configured and ran.
    pub best: Option<BestModel<M>>,
    /// Every epoch of the run so far (including epochs before a resume).
    pub epochs: Vec<EpochRecord>,
    /// Whether every phase ran to its end (false when stopped by `stop_after_epochs`).
    pub completed: bool,
    /// The checkpoint the run resumed from.
    pub resumed_from: Option<PathBuf>,
    /// Wall-clock seconds of this invocation.
    pub seconds: f64,
}

impl<M: Module> FitOutcome<M> {
    /// The selected model: the best by validation when selection ran, else the last one.
    pub fn selected(&self) -> &M {
        self.best.as_ref().map_or(&self.model, |b| &b.model)
    }
}

/// One turn at the backend's process-wide generator. flex seeds and draws from one generator per
/// process, so two trainings in one process (tests run in threads) interleave their draws —
/// weight init, dropout — unless each holds this guard from its seed to its last draw. A
/// panic while holding it does not poison it for the others.
pub fn generator_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Seeds the backend's generator (weight init, dropout) for `seed`. Call before building a model
/// so that its initial weights are reproducible.
pub fn seed_device(device: &Device, seed: u64) {
    device.seed(seed);
}

/// Where a run starts: fresh, or from its newest checkpoint.
struct Resumed<M> {
    model: M,
    state: TrainerState,
    history: Vec<EpochRecord>,
    resumed_from: Option<PathBuf>,
}

/// The training loop. See the module documentation.
pub struct Trainer {
    config: TrainerConfig,
    device: Device,
    run: RunDir,
    stop_after: Option<usize>,
}

fn record_bytes<M: Module>(model: M, path: &Path) -> Result<Vec<u8>, TrainError> {
    // burn's `RunningState` (batch norm's running mean / variance) keeps the last training
    // step's update pending until the next update or a sync, and a record reads the value
    // without syncing: a checkpoint written right after an epoch would hold the statistics of
    // one step earlier, and a resumed run would evaluate (and continue) from them. `valid()`
    // syncs every running state in place (they are shared with `model`).
    drop(model.valid());
    model
        .into_record()
        .into_bytes()
        .map(|b| b.to_vec())
        .map_err(|e| TrainError::Record {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

fn load_model<M: Module>(model: M, bytes: &[u8], path: &Path) -> Result<M, TrainError> {
    let err = |e: burn::store::RecordError| TrainError::Record {
        path: path.to_path_buf(),
        reason: format!("{e} (was the checkpoint written by a different model configuration?)"),
    };
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec())).map_err(err)?;
    model.try_load_record(record).map_err(err)
}

fn better(goal: Goal, new: f64, old: f64) -> bool {
    match goal {
        Goal::Maximize => new > old,
        Goal::Minimize => new < old,
    }
}

impl Trainer {
    /// A trainer for `config` on `device`, writing to `run`.
    pub fn new(config: TrainerConfig, device: &Device, run: RunDir) -> Result<Self, TrainError> {
        config.validate().map_err(TrainError::Config)?;
        Ok(Self {
            config,
            device: device.clone(),
            run,
            stop_after: None,
        })
    }

    /// Stops after `epochs` epochs of this invocation (checkpoint written), as an interrupted
    /// run would; `--resume` continues from there. Used to time-box runs and to test resume.
    pub fn stop_after_epochs(mut self, epochs: usize) -> Self {
        self.stop_after = Some(epochs);
        self
    }

    /// The run directory.
    pub fn run(&self) -> &RunDir {
        &self.run
    }

    /// The configuration.
    pub fn config(&self) -> &TrainerConfig {
        &self.config
    }

    fn progress_bar(&self, len: u64, prefix: String) -> ProgressBar {
        let visible = match self.config.verbosity {
            Verbosity::Auto => std::io::stderr().is_terminal(),
            Verbosity::Lines | Verbosity::Quiet => false,
        };
        if !visible {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>18} {bar:28.cyan/blue} {pos:>5}/{len:5} [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("█▉▊▋▌▍▎▏ "),
        );
        bar.set_prefix(prefix);
        bar
    }

    fn print_line(&self, line: &str) {
        let lines = match self.config.verbosity {
            Verbosity::Auto | Verbosity::Lines => true,
            Verbosity::Quiet => false,
        };
        if lines {
            eprintln!("{line}");
        }
    }

    /// Runs (or resumes) training of `model` by `task`: the phases' epochs from where the run
    /// stands, each trained (`train_epoch`), evaluated (`evaluate`),
    /// checkpointed (`checkpoint`) and logged, then the curves, the report and the
    /// selected model.
    pub fn fit<T: TrainTask>(
        &self,
        task: &mut T,
        model: T::Model,
    ) -> Result<FitOutcome<T::Model>, TrainError> {
        let started = Instant::now();
        let mut optimizers: Vec<NamedOptimizer> = self
            .config
            .optimizers
            .iter()
            .cloned()
            .map(NamedOptimizer::new)
            .collect();
        let Resumed {
            mut model,
            mut state,
            mut history,
            resumed_from,
        } = self.resume(model, &mut optimizers, task)?;
        let mut last_good = resumed_from.clone();

        let phases: Vec<PhaseConfig> = self.config.phases.clone();
        let total_epochs = self.config.total_epochs();
        let mut epochs_this_call = 0usize;
        let mut completed = true;
        'phases: for phase_index in state.next_phase..phases.len() {
            let phase = &phases[phase_index];
            let first_epoch_in_phase = if phase_index == state.next_phase {
                state.next_epoch_in_phase
            } else {
                0
            };
            if first_epoch_in_phase == 0 {
                state.counters.phase_step = 0;
                let mut ctx = self.epoch_context(
                    phase,
                    phase_index,
                    state.epochs_completed,
                    0,
                    &state.lr_scales,
                );
                task.on_phase_start(&mut model, &mut ctx)?;
                state.lr_scales = ctx.lr_scales;
            }
            let mut epoch_in_phase = first_epoch_in_phase;
            while epoch_in_phase < phase.epochs {
                let epoch = state.epochs_completed;
                let mut ctx =
                    self.epoch_context(phase, phase_index, epoch, epoch_in_phase, &state.lr_scales);
                self.device
                    .seed(mix_seed(self.config.seed, &[0xDE71CE, epoch as u64]));
                task.on_epoch_start(&mut model, &mut ctx)?;
                let (trained, mut record) = self.train_epoch(
                    task,
                    model,
                    &mut ctx,
                    &mut optimizers,
                    &mut state.counters,
                    last_good.as_deref(),
                )?;
                model = trained;
                let control = task.on_epoch_end(&mut model, &mut ctx, &record)?;
                for (k, (s, n)) in std::mem::take(&mut ctx.extra) {
                    record.extra.insert(k, s / n as f64);
                }
                let mut phase_over =
                    control == PhaseControl::EndPhase || epoch_in_phase + 1 == phase.epochs;
                let last_epoch = phase_over && phase_index + 1 == phases.len();
                let best_improved =
                    self.evaluate(task, &model, &mut ctx, &mut record, &mut state, last_epoch)?;
                if !phase_over && let Some(best) = self.plateau(&record, &state, epoch) {
                    let best = format!(
                        "{} {:.4} at epoch {} not beaten for {} epochs",
                        best.metric,
                        best.value,
                        best.epoch,
                        epoch + 1 - best.epoch
                    );
                    let counters = &mut state.counters;
                    if counters.lr_drops < self.config.plateau_drops {
                        counters.lr_drops += 1;
                        counters.lr_scale *= self.config.plateau_factor;
                        counters.last_drop_epoch = epoch + 1;
                        self.print_line(&format!(
                            "{}: {best}: learning rate × {} (drop {} of {})",
                            phase.name,
                            self.config.plateau_factor,
                            counters.lr_drops,
                            self.config.plateau_drops
                        ));
                    } else {
                        phase_over = true;
                        self.print_line(&format!("{}: stopping early, {best}", phase.name));
                    }
                }

                // Position after this epoch.
                state.epochs_completed = epoch + 1;
                (state.next_phase, state.next_epoch_in_phase) = if phase_over {
                    (phase_index + 1, 0)
                } else {
                    (phase_index, epoch_in_phase + 1)
                };
                if phase_over {
                    task.on_phase_end(&mut model, &mut ctx)?;
                }
                state.lr_scales = std::mem::take(&mut ctx.lr_scales);
                last_good =
                    Some(self.checkpoint(&model, &optimizers, task, &state, best_improved)?);

                self.run.append_epoch(&record)?;
                self.print_line(&epoch_line(&record, total_epochs));
                history.push(record);
                if self.config.plot_every_epoch {
                    self.plot(&history)?;
                }
                epochs_this_call += 1;
                let stop = self.stop_after.is_some_and(|n| epochs_this_call >= n);
                if phase_over {
                    if stop && state.next_phase < phases.len() {
                        completed = false;
                        break 'phases;
                    }
                    continue 'phases;
                }
                epoch_in_phase += 1;
                if stop {
                    completed = false;
                    break 'phases;
                }
            }
        }

        self.plot(&history)?;
        self.run.write_report(None)?;
        let best = self.load_best(&state, &model)?;
        Ok(FitOutcome {
            model,
            best,
            epochs: history,
            completed,
            resumed_from,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Where the run stands: a fresh start, or — when resuming and a valid epoch checkpoint
    /// exists — the model, optimisers, task state, position and history of the newest one
    /// (the epoch log cut back to it).
    fn resume<T: TrainTask>(
        &self,
        model: T::Model,
        optimizers: &mut [NamedOptimizer],
        task: &mut T,
    ) -> Result<Resumed<T::Model>, TrainError> {
        let ckpt_root = self.run.checkpoints();
        let fresh = Resumed {
            model,
            state: TrainerState {
                format: 1,
                seed: self.config.seed,
                epochs_completed: 0,
                next_phase: 0,
                next_epoch_in_phase: 0,
                counters: Counters::default(),
                best: None,
                lr_scales: BTreeMap::new(),
            },
            history: Vec::new(),
            resumed_from: None,
        };
        if !self.run.is_resumed() {
            return Ok(fresh);
        }
        if list_checkpoints(&ckpt_root, EPOCH_PREFIX).is_empty() {
            self.print_line(&format!(
                "no checkpoint in {}; starting from epoch 1",
                ckpt_root.display()
            ));
            return Ok(fresh);
        }
        let latest = latest_valid(&ckpt_root, EPOCH_PREFIX)?;
        for skipped in &latest.skipped {
            self.print_line(&format!("warning: {skipped}; using an older checkpoint"));
        }
        let dir = latest.dir;
        let files = latest.files;
        let get = |name: &str| {
            files.get(name).ok_or_else(|| TrainError::Checkpoint {
                path: dir.clone(),
                reason: format!("{name} is missing"),
            })
        };
        let state: TrainerState =
            serde_json::from_slice(get(STATE_FILE)?).map_err(|e| TrainError::Checkpoint {
                path: dir.join(STATE_FILE),
                reason: e.to_string(),
            })?;
        if state.seed != self.config.seed {
            return Err(TrainError::Checkpoint {
                path: dir.clone(),
                reason: format!(
                    "written with seed {}, the configuration says {}",
                    state.seed, self.config.seed
                ),
            });
        }
        let model = load_model(fresh.model, get(MODEL_FILE)?, &dir.join(MODEL_FILE))?;
        for o in optimizers.iter_mut() {
            let file = format!("optim-{}.bpk", o.config().name);
            o.load_state_bytes(get(&file)?)
                .map_err(|reason| TrainError::Record {
                    path: dir.join(&file),
                    reason,
                })?;
        }
        task.load_state(get(METHOD_FILE)?)?;
        let mut history = self.run.read_epochs()?;
        history.retain(|r| r.epoch <= state.epochs_completed);
        self.run.rewrite_epochs(&history)?;
        self.print_line(&format!(
            "resuming {} after epoch {}",
            self.run.path().display(),
            state.epochs_completed
        ));
        Ok(Resumed {
            model,
            state,
            history,
            resumed_from: Some(dir),
        })
    }

    /// One epoch's optimiser steps over the task's batches, with the progress bar; returns the
    /// model and the epoch's record (loss means, learning rates, throughput; `extra` holds the
    /// gradient norms).
    fn train_epoch<T: TrainTask>(
        &self,
        task: &mut T,
        mut model: T::Model,
        ctx: &mut EpochContext<'_>,
        optimizers: &mut [NamedOptimizer],
        counters: &mut Counters,
        last_good: Option<&Path>,
    ) -> Result<(T::Model, EpochRecord), TrainError> {
        let (phase, epoch, epoch_in_phase) = (ctx.phase, ctx.epoch, ctx.epoch_in_phase);
        let batches = task.epoch_batches(ctx)?;
        let bar = self.progress_bar(
            batches.len() as u64,
            format!("{phase} {}/{}", epoch + 1, self.config.total_epochs()),
        );
        let mut meter = Meter::default();
        let mut steps_log = Vec::new();
        let mut samples = 0usize;
        let t0 = Instant::now();
        let steps_in_epoch = batches.len();
        for (step, batch) in batches.iter().enumerate() {
            let n = batch.num_samples();
            let mut step_ctx = StepContext {
                phase,
                epoch,
                epoch_in_phase,
                step,
                global_step: counters.global_step,
                rng: &mut ctx.rng,
                device: &self.device,
                optimizers,
                counters: *counters,
                lr_scales: &ctx.lr_scales,
                steps_in_epoch,
                weight: n.max(1) as f64,
                meter: &mut meter,
                last_good,
                steps_log: self.config.log_steps.then_some(&mut steps_log),
            };
            model = match task.step(model, batch, &mut step_ctx) {
                Ok(m) => m,
                Err(e) => {
                    bar.abandon();
                    return Err(e);
                }
            };
            counters.global_step += 1;
            counters.phase_step += 1;
            samples += n;
            if !bar.is_hidden() {
                let elapsed = t0.elapsed().as_secs_f64().max(1e-9);
                let means = meter.means();
                let shown: Vec<String> = means
                    .iter()
                    .filter(|(k, _)| !k.starts_with("grad_norm"))
                    .take(4)
                    .map(|(k, v)| format!("{k} {v:.4}"))
                    .collect();
                bar.set_message(format!(
                    "{} · {:.0}/s",
                    shown.join(" "),
                    samples as f64 / elapsed
                ));
                bar.inc(1);
            }
        }
        bar.finish_and_clear();
        let seconds = t0.elapsed().as_secs_f64();
        // The counters as the epoch's last step saw them.
        let last_step = Counters {
            global_step: counters.global_step.saturating_sub(1),
            phase_step: counters.phase_step.saturating_sub(1),
            ..*counters
        };
        let mut record = EpochRecord {
            epoch: epoch + 1,
            phase: phase.to_string(),
            epoch_in_phase: epoch_in_phase + 1,
            steps: steps_in_epoch,
            samples,
            seconds,
            samples_per_sec: samples as f64 / seconds.max(1e-9),
            lr: optimizers
                .iter()
                .map(|o| {
                    let clock = schedule_clock(
                        o.config().clock,
                        epoch,
                        epoch_in_phase,
                        last_step,
                        steps_in_epoch.saturating_sub(1),
                        steps_in_epoch,
                    );
                    let name = &o.config().name;
                    let scale = lr_multiplier(counters, &ctx.lr_scales, name);
                    (name.clone(), o.lr(&clock) * scale)
                })
                .collect(),
            loss: BTreeMap::new(),
            val: BTreeMap::new(),
            extra: BTreeMap::new(),
            steps_log,
        };
        for (k, v) in meter.means() {
            if k.starts_with("grad_norm") {
                record.extra.insert(k, v);
            } else {
                record.loss.insert(k, v);
            }
        }
        Ok((model, record))
    }

    /// The end-of-epoch evaluation, when due (every `eval_every` epochs and after the last):
    /// the task's validation metrics into `record.val`, and the selection metric against the
    /// best so far. Returns whether this epoch is the new best.
    fn evaluate<T: TrainTask>(
        &self,
        task: &mut T,
        model: &T::Model,
        ctx: &mut EpochContext<'_>,
        record: &mut EpochRecord,
        state: &mut TrainerState,
        last_epoch: bool,
    ) -> Result<bool, TrainError> {
        let epoch = ctx.epoch;
        let due = self.config.eval_every > 0
            && ((epoch + 1).is_multiple_of(self.config.eval_every) || last_epoch);
        if !due {
            return Ok(false);
        }
        record.val = task.validate(&model.valid(), ctx)?;
        let Some(sel) = &self.config.selection else {
            return Ok(false);
        };
        let value = *record.val.get(&sel.metric).ok_or_else(|| {
            TrainError::Config(format!(
                "selection metric `{}` is not among the validation metrics ({})",
                sel.metric,
                record.val.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let improved = value.is_finite()
            && state
                .best
                .as_ref()
                .is_none_or(|b| better(sel.goal, value, b.value));
        if improved {
            state.best = Some(BestState {
                epoch: epoch + 1,
                metric: sel.metric.clone(),
                value,
            });
        }
        Ok(improved)
    }

    /// The best result so far when early stopping is on, this epoch was evaluated and the
    /// selection metric has gone `patience` epochs without beating it (counted from the last
    /// learning-rate drop when that came later).
    fn plateau<'s>(
        &self,
        record: &EpochRecord,
        state: &'s TrainerState,
        epoch: usize,
    ) -> Option<&'s BestState> {
        let patience = self.config.patience?;
        let best = state.best.as_ref()?;
        let since = best.epoch.max(state.counters.last_drop_epoch);
        (!record.val.is_empty() && epoch + 1 >= since + patience).then_some(best)
    }

    /// Writes the epoch's checkpoint (and, when the epoch is the new best, the best model
    /// first: a crash in between leaves an unreferenced best directory, never a dangling
    /// reference), prunes old ones, and returns the epoch checkpoint's directory.
    fn checkpoint<T: TrainTask>(
        &self,
        model: &T::Model,
        optimizers: &[NamedOptimizer],
        task: &T,
        state: &TrainerState,
        best_improved: bool,
    ) -> Result<PathBuf, TrainError> {
        let ckpt_root = self.run.checkpoints();
        if best_improved {
            let bytes = record_bytes(model.clone(), &ckpt_root.join(MODEL_FILE))?;
            write_checkpoint(
                &ckpt_root,
                &format!("{BEST_PREFIX}{:05}", state.epochs_completed),
                &[(MODEL_FILE.to_string(), bytes)],
            )?;
        }
        let dir = self.write_epoch_checkpoint(model, optimizers, task, state)?;
        prune(
            &ckpt_root,
            EPOCH_PREFIX,
            self.config.keep_checkpoints,
            Some(&dir),
        );
        prune(
            &ckpt_root,
            BEST_PREFIX,
            self.config.keep_checkpoints + 1,
            None,
        );
        Ok(dir)
    }

    /// The best model by the selection metric, read back from its checkpoint (`None` without
    /// selection or before any evaluation).
    fn load_best<M: Module>(
        &self,
        state: &TrainerState,
        model: &M,
    ) -> Result<Option<BestModel<M>>, TrainError> {
        let (Some(b), true) = (&state.best, self.config.selection.is_some()) else {
            return Ok(None);
        };
        let dir = self
            .run
            .checkpoints()
            .join(format!("{BEST_PREFIX}{:05}", b.epoch));
        let files = read_checkpoint(&dir)?;
        let bytes = files
            .get(MODEL_FILE)
            .ok_or_else(|| TrainError::Checkpoint {
                path: dir.clone(),
                reason: format!("{MODEL_FILE} is missing"),
            })?;
        Ok(Some(BestModel {
            state: b.clone(),
            model: load_model(model.clone(), bytes, &dir.join(MODEL_FILE))?,
        }))
    }

    fn epoch_context<'a>(
        &'a self,
        phase: &'a PhaseConfig,
        phase_index: usize,
        epoch: usize,
        epoch_in_phase: usize,
        lr_scales: &BTreeMap<String, f64>,
    ) -> EpochContext<'a> {
        let lr_scales = self
            .config
            .optimizers
            .iter()
            .map(|o| {
                (
                    o.name.clone(),
                    lr_scales.get(&o.name).copied().unwrap_or(1.0),
                )
            })
            .collect();
        EpochContext {
            lr_scales,
            phase: &phase.name,
            phase_index,
            epoch,
            epoch_in_phase,
            seed: self.config.seed,
            rng: SeededRng::for_epoch(self.config.seed, epoch),
            device: &self.device,
            run_dir: self.run.path(),
            extra: BTreeMap::new(),
        }
    }

    fn write_epoch_checkpoint<T: TrainTask>(
        &self,
        model: &T::Model,
        optimizers: &[NamedOptimizer],
        task: &T,
        state: &TrainerState,
    ) -> Result<PathBuf, TrainError> {
        let root = self.run.checkpoints();
        let name = format!("{EPOCH_PREFIX}{:05}", state.epochs_completed);
        let mut files = vec![
            (
                MODEL_FILE.to_string(),
                record_bytes(model.clone(), &root.join(&name).join(MODEL_FILE))?,
            ),
            (METHOD_FILE.to_string(), task.save_state()?),
            (
                STATE_FILE.to_string(),
                serde_json::to_vec_pretty(state).expect("state serialises"),
            ),
        ];
        for o in optimizers {
            let file = format!("optim-{}.bpk", o.config().name);
            let bytes = o.state_bytes().map_err(|reason| TrainError::Record {
                path: root.join(&name).join(&file),
                reason,
            })?;
            files.push((file, bytes));
        }
        write_checkpoint(&root, &name, &files)
    }

    fn plot(&self, history: &[EpochRecord]) -> Result<(), TrainError> {
        if history.is_empty() {
            return Ok(());
        }
        let curves = self.run.curves();
        let mut keys: Vec<(&str, String)> = Vec::new();
        for r in history {
            for k in r.loss.keys() {
                if !keys.iter().any(|(kind, n)| *kind == "loss" && n == k) {
                    keys.push(("loss", k.clone()));
                }
            }
            for k in r.val.keys() {
                if !keys.iter().any(|(kind, n)| *kind == "val" && n == k) {
                    keys.push(("val", k.clone()));
                }
            }
        }
        for (kind, key) in keys {
            let points: Vec<(f64, f64)> = history
                .iter()
                .filter_map(|r| {
                    let map = if kind == "loss" { &r.loss } else { &r.val };
                    map.get(&key).map(|v| (r.epoch as f64, *v))
                })
                .collect();
            let safe: String = key
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let title = if kind == "loss" {
                format!("training loss: {key}")
            } else {
                format!("validation: {key}")
            };
            line_chart(
                &curves.join(format!("{kind}-{safe}.png")),
                &title,
                "epoch",
                &[Series {
                    name: "",
                    points: &points,
                }],
            )?;
        }
        let names: Vec<String> = history[0].lr.keys().cloned().collect();
        let lr_points: Vec<Vec<(f64, f64)>> = names
            .iter()
            .map(|n| {
                history
                    .iter()
                    .filter_map(|r| r.lr.get(n).map(|v| (r.epoch as f64, *v)))
                    .collect()
            })
            .collect();
        let series: Vec<Series<'_>> = names
            .iter()
            .zip(&lr_points)
            .map(|(n, p)| Series { name: n, points: p })
            .collect();
        line_chart(&curves.join("lr.png"), "learning rate", "epoch", &series)
    }
}

fn epoch_line(r: &EpochRecord, total: usize) -> String {
    let mut parts = vec![format!("epoch {}/{} [{}]", r.epoch, total, r.phase)];
    parts.extend(r.loss.iter().map(|(k, v)| format!("{k} {v:.4}")));
    parts.extend(r.val.iter().map(|(k, v)| format!("val {k} {v:.4}")));
    parts.push(format!(
        "{:.1} samples/s, {:.1} s",
        r.samples_per_sec, r.seconds
    ));
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test that panics while holding the turn does not lock the others out.
    #[test]
    fn a_panic_does_not_poison_the_generator_turn() {
        let panicked = std::thread::spawn(|| {
            let _turn = generator_turn();
            panic!("a failing training test");
        })
        .join();
        assert!(panicked.is_err());
        drop(generator_turn());
    }
}
