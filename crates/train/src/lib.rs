//! relata-train: the one training scaffold shared by relata's four methods (docs/design.md, Training and results).
//!
//! - [`device`]: the run-time device choice (`--device` / `BURN_DEVICE`);
//! - [`trainer`]: the loop — phases of epochs over a method's [`TrainTask`], hooks, NaN guard,
//!   evaluation and model selection, checkpoints and `--resume`;
//! - [`optim`] and [`schedule`]: burn's optimisers with per-group learning rates, schedules as
//!   pure functions of progress, global-norm gradient clipping;
//! - [`compare`]: a variant against its baseline over several seeds (the evidence a claim needs);
//! - [`checkpoint`]: atomic, checksummed checkpoint directories;
//! - [`fit`]: what a method's `fit` takes ([`FitOptions`]), its opening ([`fit_task`]) and what
//!   it returns ([`Trained`]);
//! - [`export`]: a trained model as `<stem>.json` + `<stem>.bpk`, with loaders that name the file
//!   at fault;
//! - [`run`]: run directories, `metrics.jsonl` / `metrics.json` / `report.md`;
//! - [`preset`]: the `smoke` / `default` / `paper` reproduction presets;
//! - [`plot`]: PNG curves; [`rng`] (re-exported from relata-dataset): the deterministic random
//!   streams.
//!
//! A method implements [`TrainTask`] and calls [`Trainer::fit`]; it never writes loop plumbing.

pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod device;
pub mod error;
pub mod export;
pub mod fit;
pub mod optim;
pub mod plot;
pub mod preset;
pub mod run;
pub mod schedule;
pub mod trainer;
pub mod values;

pub use compare::SeedComparison;
pub use config::{Goal, PhaseConfig, Selection, TrainerConfig, Verbosity};
pub use device::{DeviceChoice, DeviceError, compiled_devices, select_device};
pub use error::TrainError;
pub use fit::{DEFAULT_SEED, FitOptions, Fitted, RunSettings, Trained, fit_task};
pub use optim::{LrGroup, NamedOptimizer, OptimizerConfig, OptimizerKind, clip_global_norm};
pub use preset::Preset;
/// The deterministic random streams live in relata-dataset (samplers and augmentation need them).
pub use relata_dataset::rng::{self, SeededRng, mix_seed};
pub use run::{EpochRecord, Results, RunDir, RunOptions, StepLoss};
pub use schedule::{Clock, LrSchedule, ReduceOnPlateau, ScheduleClock, Warmup};
pub use trainer::{
    BatchPlan, BestModel, BestState, EpochContext, FitOutcome, Loss, PhaseControl, StepContext,
    TrainTask, Trainer, generator_turn, seed_device,
};
