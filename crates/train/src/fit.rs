//! The edges every method's `fit` shares: what it takes besides its configuration and data
//! ([`FitOptions`]), how it opens a run ([`fit_task`]) and what it returns ([`Trained`]).

use std::path::PathBuf;

use burn::tensor::Device;
use serde::Serialize;

use crate::config::{TrainerConfig, Verbosity};
use crate::error::TrainError;
use crate::export::{load_record, save_record};
use crate::run::{EpochRecord, RunDir, RunOptions};
use crate::trainer::{FitOutcome, TrainTask, Trainer, seed_device};

/// The seed of every library default and of the command line (`cargo xtask reproduce`), so that
/// a library run with default settings reproduces the CLI's.
pub const DEFAULT_SEED: u64 = 42;

/// How a method's `fit` reports and where it writes.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// Run directory options (`runs/<method>/<dataset>/<time>` by default; resume, overwrite).
    pub run: RunOptions,
    /// Progress display.
    pub verbosity: Verbosity,
    /// Stop after this many epochs of this invocation (resume later).
    pub stop_after_epochs: Option<usize>,
    /// Weights for the method's image backbone to start from (a torchvision ResNet state dict,
    /// `.pth` / `.safetensors`; its `fc.` is left out). CMBH, CSRMS and ISL take them; HREM,
    /// whose images arrive as region features, refuses them.
    pub weights: Option<PathBuf>,
    /// Every parameter's starting value, from a record of the same model written by
    /// [`FitOptions::save_initial`] (on any backend). Applied after the seed's draw and after
    /// `weights`: one start shared by runs on different backends, which would otherwise each
    /// draw their own from the same seed.
    pub initial: Option<PathBuf>,
    /// Where to write the model's starting parameters (the seed's draw, or `initial`) before
    /// the first step.
    pub save_initial: Option<PathBuf>,
    /// Keep every optimiser step's loss terms in `metrics.jsonl` (each epoch's `steps`), not
    /// only the epoch means: for step-by-step comparisons between backends or implementations.
    pub log_steps: bool,
}

impl FitOptions {
    /// A new run of `method` under `runs/<method>/<dataset>/`, automatic progress display.
    pub fn new(method: &str, dataset: &str) -> Self {
        Self {
            run: RunOptions::new(method, dataset),
            verbosity: Verbosity::Auto,
            stop_after_epochs: None,
            weights: None,
            initial: None,
            save_initial: None,
            log_steps: false,
        }
    }

    /// These options with backbone `weights` to start from.
    pub fn with_weights(mut self, weights: impl Into<PathBuf>) -> Self {
        self.weights = Some(weights.into());
        self
    }
}

/// A trained model, where its run lives, and what the method returns beside it (`X`: HREM's
/// tokeniser, ISL's evaluations; nothing for CMBH and CSRMS).
pub struct Trained<M, X = ()> {
    /// The model after the last epoch (or the selected one), in inference mode.
    pub model: M,
    /// The run directory (checkpoints, curves, metrics.jsonl, the saved model when complete).
    pub run_dir: PathBuf,
    /// Per-epoch records.
    pub epochs: Vec<EpochRecord>,
    /// Whether every epoch ran (false when stopped early with `stop_after_epochs`).
    pub completed: bool,
    /// Wall-clock seconds of this invocation.
    pub seconds: f64,
    /// The method's own results beside the model.
    pub extra: X,
}

impl<M, X> Trained<M, X> {
    /// The same run with `extra` beside the model instead.
    pub fn with_extra<Y>(self, extra: Y) -> Trained<M, Y> {
        Trained {
            model: self.model,
            run_dir: self.run_dir,
            epochs: self.epochs,
            completed: self.completed,
            seconds: self.seconds,
            extra,
        }
    }
}

/// A run opened and trained by [`fit_task`]: the scaffold's outcome, the task after training
/// (for what a method reads back from it) and the run directory.
pub struct Fitted<T: TrainTask> {
    /// What [`Trainer::fit`] returned.
    pub outcome: FitOutcome<T::Model>,
    /// The task, after its last epoch.
    pub task: T,
    /// The run directory.
    pub run_dir: PathBuf,
}

impl<T: TrainTask> Fitted<T> {
    /// [`Trained`] with `model` (the outcome's, as the method chose it) and `extra`.
    pub fn trained<M, X>(&self, model: M, extra: X) -> Trained<M, X> {
        Trained {
            model,
            run_dir: self.run_dir.clone(),
            epochs: self.outcome.epochs.clone(),
            completed: self.outcome.completed,
            seconds: self.outcome.seconds,
            extra,
        }
    }
}

/// The opening and the loop every method's `fit` shares: opens (or resumes) the run directory
/// with `config` recorded in it, seeds the backend with the trainer's seed, lets `build` make
/// the task and the model on the autodiff device (after seeding, so that initial weights are
/// the seed's), and trains with `trainer`, stopping early where `options` say. `device` is a
/// plain device; autodiff is added here.
pub fn fit_task<T, E>(
    config: &impl Serialize,
    trainer: TrainerConfig,
    device: &Device,
    options: &FitOptions,
    build: impl FnOnce(&Device) -> Result<(T, T::Model), E>,
) -> Result<Fitted<T>, E>
where
    T: TrainTask,
    E: From<TrainError>,
{
    let autodiff = device.clone().autodiff();
    let config_json = serde_json::to_value(config)
        .map_err(|e| TrainError::Config(format!("serialising the configuration: {e}")))?;
    let run = RunDir::open(&options.run, &config_json)?;
    let run_dir = run.path().to_path_buf();
    seed_device(&autodiff, trainer.seed);
    let (mut task, mut model) = build(&autodiff)?;
    if let Some(path) = &options.initial {
        let mismatch = "not a record of this model (written with another configuration?)";
        model = load_record(model, path, mismatch)?;
    }
    if let Some(path) = &options.save_initial {
        save_record(&model, path)?;
    }
    let trainer = trainer
        .with_verbosity(options.verbosity)
        .with_log_steps(options.log_steps);
    let mut trainer = Trainer::new(trainer, &autodiff, run)?;
    if let Some(n) = options.stop_after_epochs {
        trainer = trainer.stop_after_epochs(n);
    }
    let outcome = trainer.fit(&mut task, model)?;
    Ok(Fitted {
        outcome,
        task,
        run_dir,
    })
}

/// What every reproduction takes besides its method's own options: the seed, the runs root,
/// resume / overwrite and the progress display.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSettings {
    /// Seed of every random stream.
    pub seed: u64,
    /// Runs root (`runs/`).
    pub out: PathBuf,
    /// Continue the newest run of this method and dataset.
    pub resume: bool,
    /// Replace an existing run directory.
    pub overwrite: bool,
    /// Progress display.
    pub verbosity: Verbosity,
}

impl Default for RunSettings {
    /// A new run under `runs/` with [`DEFAULT_SEED`] (the command line's default), automatic
    /// progress display.
    fn default() -> Self {
        Self::new(DEFAULT_SEED)
    }
}

impl RunSettings {
    /// A new run under `runs/` with `seed`, automatic progress display.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            out: PathBuf::from("runs"),
            resume: false,
            overwrite: false,
            verbosity: Verbosity::Auto,
        }
    }

    /// A new run under `out` with `seed`, one line per epoch (logs, scripts, tests).
    pub fn lines_in(out: impl Into<PathBuf>, seed: u64) -> Self {
        Self {
            out: out.into(),
            verbosity: Verbosity::Lines,
            ..Self::new(seed)
        }
    }

    /// The reproduction's top directory: `<out>/<method>/<dataset>/<time>` (the newest one when
    /// resuming).
    pub fn top_run(&self, method: &str, dataset: &str) -> RunOptions {
        RunOptions::new(method, dataset)
            .with_runs_root(&self.out)
            .with_resume(self.resume)
            .with_overwrite(self.overwrite)
    }

    /// One training run inside the reproduction, in `dir`: resumed when resuming and it has
    /// begun (its `config.json` exists).
    pub fn fit_in(&self, method: &str, dataset: &str, dir: &std::path::Path) -> FitOptions {
        FitOptions {
            run: RunOptions::new(method, dataset)
                .with_dir(dir)
                .with_resume(self.resume && dir.join("config.json").exists())
                .with_overwrite(self.overwrite),
            verbosity: self.verbosity,
            ..FitOptions::new(method, dataset)
        }
    }
}
