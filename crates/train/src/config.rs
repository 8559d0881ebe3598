//! The scaffold's configuration: phases, optimisers, evaluation and checkpoint policy.
//!
//! A method builds one [`TrainerConfig`] from its own config (CMBH: one phase of 100 epochs;
//! ISL: rounds of `backbone`, `gan`, `mining` phases; ...) and nests it in the `config.json` it
//! saves, so the scaffold's behaviour is part of what `--resume` checks.

use burn::config::Config;
use serde::{Deserialize, Serialize};

use crate::optim::OptimizerConfig;

/// A named stretch of epochs (CMBH's only phase is `train`; ISL has `backbone-0`, `gan-0`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseConfig {
    /// Name, shown in logs and `metrics.jsonl`.
    pub name: String,
    /// Epochs (a maximum: the method may end the phase early from `on_epoch_end`).
    pub epochs: usize,
}

impl PhaseConfig {
    /// A phase called `name` of `epochs` epochs.
    pub fn new(name: impl Into<String>, epochs: usize) -> Self {
        Self {
            name: name.into(),
            epochs,
        }
    }
}

/// Whether a larger or a smaller validation metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// Larger is better (mAP, recall, accuracy).
    Maximize,
    /// Smaller is better (a validation loss).
    Minimize,
}

/// Model selection on a validation metric (never on test).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// Name of a metric the evaluator returns.
    pub metric: String,
    /// Direction.
    pub goal: Goal,
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Verbosity {
    /// A progress bar per epoch on a terminal, one line per epoch otherwise.
    #[default]
    Auto,
    /// One summary line per epoch on stderr.
    Lines,
    /// Nothing (CI, tests).
    Quiet,
}

/// The training scaffold's configuration.
#[derive(Config, Debug, PartialEq)]
pub struct TrainerConfig {
    /// Phases in order.
    pub phases: Vec<PhaseConfig>,
    /// Optimisers; the first is the default one of `StepContext::minimize`.
    pub optimizers: Vec<OptimizerConfig>,
    /// Seed of every random stream (sampling, augmentation, backend RNG).
    #[config(default = "crate::DEFAULT_SEED")]
    pub seed: u64,
    /// Run the evaluator every this many epochs (0: never); it also runs after the last epoch.
    #[config(default = 1)]
    pub eval_every: usize,
    /// Keep the best model by this validation metric.
    #[config(default = "None")]
    pub selection: Option<Selection>,
    /// Early stopping: end the phase in progress once the selection metric has gone this many
    /// epochs without a new best (counted from the run's best epoch, so a resumed run stops
    /// where an uninterrupted one would). Needs `selection`.
    #[config(default = "None")]
    pub patience: Option<usize>,
    /// Plateaus answered with a smaller learning rate before one ends the phase: at each of
    /// the first `plateau_drops` plateaus every learning rate is multiplied by
    /// `plateau_factor` and the patience counts again from there (PyTorch's
    /// `ReduceLROnPlateau` followed by a stop). 0: the first plateau stops.
    #[config(default = 0)]
    pub plateau_drops: usize,
    /// The learning-rate multiplier of a plateau drop.
    #[config(default = 0.1)]
    pub plateau_factor: f64,
    /// Epoch checkpoints kept on disk (the newest ones).
    #[config(default = 2)]
    pub keep_checkpoints: usize,
    /// Progress display.
    #[config(default = "Verbosity::Auto")]
    pub verbosity: Verbosity,
    /// Redraw the curves every epoch (otherwise only at the end).
    #[config(default = true)]
    pub plot_every_epoch: bool,
    /// Keep every step's loss terms in the epoch records (`EpochRecord::steps_log`).
    #[config(default = false)]
    pub log_steps: bool,
}

impl TrainerConfig {
    /// Checks phases and optimisers, naming the offending entry.
    pub fn validate(&self) -> Result<(), String> {
        if self.phases.is_empty() {
            return Err("`phases` is empty: nothing to train".into());
        }
        for p in &self.phases {
            if p.name.trim().is_empty() {
                return Err("a phase has an empty name".into());
            }
        }
        if self.optimizers.is_empty() {
            return Err("`optimizers` is empty: give at least one".into());
        }
        for (i, o) in self.optimizers.iter().enumerate() {
            if self.optimizers[..i].iter().any(|p| p.name == o.name) {
                return Err(format!("two optimizers are called `{}`", o.name));
            }
            o.validate()?;
        }
        if self.keep_checkpoints == 0 {
            return Err("keep_checkpoints must be at least 1 (resume needs one)".into());
        }
        if let Some(sel) = &self.selection
            && self.eval_every == 0
        {
            return Err(format!(
                "selection on `{}` needs an evaluator: set eval_every > 0",
                sel.metric
            ));
        }
        match (self.patience, &self.selection) {
            (Some(0), _) => return Err("patience = 0: give at least one epoch".into()),
            (None, _) if self.plateau_drops > 0 => {
                return Err(format!(
                    "plateau_drops = {} needs a patience (and a selection metric) to detect a \
                     plateau",
                    self.plateau_drops
                ));
            }
            (Some(p), None) => {
                return Err(format!(
                    "patience = {p} needs a selection metric to watch: set `selection`"
                ));
            }
            _ => {}
        }
        if !(self.plateau_factor > 0.0 && self.plateau_factor < 1.0) {
            return Err(format!(
                "plateau_factor = {}: must lie in (0, 1) (e.g. 0.1)",
                self.plateau_factor
            ));
        }
        Ok(())
    }

    /// Total epochs across phases (an upper bound when phases can end early).
    pub fn total_epochs(&self) -> usize {
        self.phases.iter().map(|p| p.epochs).sum()
    }
}
