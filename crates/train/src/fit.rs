//! What a method's `fit` takes besides its configuration and data, and what it returns: the
//! run directory options, progress display and an optional early stop (resume later).

use std::path::PathBuf;

use crate::config::Verbosity;
use crate::run::{EpochRecord, RunOptions};

/// How a method's `fit` reports and where it writes.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// Run directory options (`runs/<method>/<dataset>/<time>` by default; resume, overwrite).
    pub run: RunOptions,
    /// Progress display.
    pub verbosity: Verbosity,
    /// Stop after this many epochs of this invocation (resume later).
    pub stop_after_epochs: Option<usize>,
}

impl FitOptions {
    /// A new run of `method` under `runs/<method>/<dataset>/`, automatic progress display.
    pub fn new(method: &str, dataset: &str) -> Self {
        Self {
            run: RunOptions::new(method, dataset),
            verbosity: Verbosity::Auto,
            stop_after_epochs: None,
        }
    }
}

/// A trained model and where its run lives.
pub struct Trained<M> {
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
            stop_after_epochs: None,
        }
    }
}
