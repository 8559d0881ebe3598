//! Learning-rate schedules as pure functions of training progress.
//!
//! burn's `LrScheduler`s are stateful iterators stepped once per iteration; that fits a fixed
//! number of iterations per epoch, but relata's methods change epoch lengths (CSRMS's sampler,
//! ISL's phases), step schedules by epoch (as the papers' PyTorch code does with `MultiStepLR`),
//! and must resume exactly. A schedule here is a multiplier `factor(clock)` of each parameter
//! group's base learning rate, computed from the epoch and iteration counters saved in every
//! checkpoint, so a resumed run cannot drift. The per-group learning rates are then handed to
//! burn's optimiser through `ModuleLrScheduler` (see [`crate::optim`]).

use serde::{Deserialize, Serialize};

/// Where a schedule's clock starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleClock {
    /// Epochs and iterations since the start of the run (across phases).
    #[default]
    Global,
    /// Epochs and iterations since the start of the current phase (ISL restarts its backbone
    /// schedule every round).
    Phase,
}

/// Training progress as a schedule sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clock {
    /// Completed epochs (0 during the first epoch).
    pub epoch: usize,
    /// Iterations taken so far (0 at the first step).
    pub iteration: usize,
    /// Iterations in the current epoch, for per-iteration schedules.
    pub iterations_per_epoch: usize,
    /// Iteration index inside the current epoch.
    pub iteration_in_epoch: usize,
}

impl Clock {
    /// Fractional epoch: `epoch + iteration_in_epoch / iterations_per_epoch`.
    pub fn fractional_epoch(&self) -> f64 {
        let per = self.iterations_per_epoch.max(1) as f64;
        self.epoch as f64 + self.iteration_in_epoch as f64 / per
    }
}

/// A learning-rate multiplier over training (1.0 = the configured learning rate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LrSchedule {
    /// Always 1.
    #[default]
    Constant,
    /// `gamma^(number of milestones ≤ epoch)`: PyTorch's `MultiStepLR` stepped once per epoch.
    MultiStep {
        /// Epochs (0-based, counted by the schedule's clock) at which the rate is multiplied.
        milestones: Vec<usize>,
        /// Multiplier applied at each milestone.
        gamma: f64,
    },
    /// `gamma^(epoch / step_size)`: PyTorch's `StepLR`.
    Step {
        /// Epochs between two multiplications.
        step_size: usize,
        /// Multiplier.
        gamma: f64,
    },
    /// Cosine annealing from 1 to `min_factor` over `epochs` (PyTorch's `CosineAnnealingLR`
    /// with `T_max = epochs`, `eta_min = min_factor · lr`), per epoch or per iteration.
    Cosine {
        /// Length of the half cosine, in epochs.
        epochs: usize,
        /// Final multiplier.
        #[serde(default)]
        min_factor: f64,
        /// Evaluate at fractional epochs (smooth) instead of whole epochs.
        #[serde(default)]
        per_iteration: bool,
    },
}

/// Linear warm-up over the first iterations, multiplied into any schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warmup {
    /// Iterations over which the multiplier rises from `start_factor` to 1.
    pub iterations: usize,
    /// Multiplier at the first iteration.
    #[serde(default)]
    pub start_factor: f64,
}

impl LrSchedule {
    /// The multiplier at `clock`.
    pub fn factor(&self, clock: &Clock) -> f64 {
        match self {
            LrSchedule::Constant => 1.0,
            LrSchedule::MultiStep { milestones, gamma } => {
                let passed = milestones.iter().filter(|&&m| m <= clock.epoch).count();
                gamma.powi(passed as i32)
            }
            LrSchedule::Step { step_size, gamma } => {
                gamma.powi((clock.epoch / (*step_size).max(1)) as i32)
            }
            LrSchedule::Cosine {
                epochs,
                min_factor,
                per_iteration,
            } => {
                let t = if *per_iteration {
                    clock.fractional_epoch()
                } else {
                    clock.epoch as f64
                };
                let t = t.min(*epochs as f64);
                let cos = (std::f64::consts::PI * t / (*epochs).max(1) as f64).cos();
                min_factor + (1.0 - min_factor) * 0.5 * (1.0 + cos)
            }
        }
    }

    /// Checks the parameters, naming the offending one.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            LrSchedule::Constant => Ok(()),
            LrSchedule::MultiStep { milestones, gamma } => {
                if !(gamma.is_finite() && *gamma > 0.0) {
                    return Err(format!("multi_step.gamma must be positive, got {gamma}"));
                }
                if milestones.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(format!(
                        "multi_step.milestones must increase strictly, got {milestones:?}"
                    ));
                }
                Ok(())
            }
            LrSchedule::Step { step_size, gamma } => {
                if *step_size == 0 {
                    return Err("step.step_size must be at least 1".into());
                }
                if !(gamma.is_finite() && *gamma > 0.0) {
                    return Err(format!("step.gamma must be positive, got {gamma}"));
                }
                Ok(())
            }
            LrSchedule::Cosine {
                epochs, min_factor, ..
            } => {
                if *epochs == 0 {
                    return Err("cosine.epochs must be at least 1".into());
                }
                if !(0.0..=1.0).contains(min_factor) {
                    return Err(format!(
                        "cosine.min_factor must be in [0, 1], got {min_factor}"
                    ));
                }
                Ok(())
            }
        }
    }
}

impl Warmup {
    /// The warm-up multiplier at `clock` (1 once warm-up is over).
    pub fn factor(&self, clock: &Clock) -> f64 {
        if clock.iteration >= self.iterations || self.iterations == 0 {
            return 1.0;
        }
        let t = clock.iteration as f64 / self.iterations as f64;
        self.start_factor + (1.0 - self.start_factor) * t
    }
}

/// PyTorch's `ReduceLROnPlateau` (threshold 1e-4 relative, no cooldown, no floor) as a state
/// machine over the monitored values, for a task that steps it itself (ISL every 5 backbone
/// epochs, across rounds, as the authors do): a value counts as better when it beats the best
/// by the relative threshold; after more than `patience` values that do not, the multiplier
/// shrinks by `factor` and the count starts again. [`ReduceOnPlateau::scale`] is what the
/// task hands to [`crate::EpochContext::set_lr_scale`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReduceOnPlateau {
    /// Which way is better.
    pub goal: crate::Goal,
    /// Multiplier of each drop (0.8 in ISL's release).
    pub factor: f64,
    /// Values that may fail to improve before a drop (1 in ISL's release).
    pub patience: usize,
    best: Option<f64>,
    bad: usize,
    scale: f64,
    drops: usize,
}

/// PyTorch's default relative threshold.
const PLATEAU_THRESHOLD: f64 = 1e-4;

impl ReduceOnPlateau {
    /// A fresh rule (multiplier 1).
    pub fn new(goal: crate::Goal, factor: f64, patience: usize) -> Self {
        Self {
            goal,
            factor,
            patience,
            best: None,
            bad: 0,
            scale: 1.0,
            drops: 0,
        }
    }

    /// Takes one monitored value; returns whether the multiplier dropped. A non-finite value
    /// never counts as better (PyTorch's comparisons with NaN are false).
    pub fn observe(&mut self, value: f64) -> bool {
        let better = match self.goal {
            crate::Goal::Maximize => {
                value > self.best.unwrap_or(f64::NEG_INFINITY) * (1.0 + PLATEAU_THRESHOLD)
            }
            crate::Goal::Minimize => {
                value < self.best.unwrap_or(f64::INFINITY) * (1.0 - PLATEAU_THRESHOLD)
            }
        };
        if better {
            self.best = Some(value);
            self.bad = 0;
        } else {
            self.bad += 1;
        }
        if self.bad > self.patience {
            self.scale *= self.factor;
            self.drops += 1;
            self.bad = 0;
            return true;
        }
        false
    }

    /// The learning-rate multiplier so far (`factor^drops`).
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Drops so far.
    pub fn drops(&self) -> usize {
        self.drops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: usize) -> Clock {
        Clock {
            epoch,
            iteration: epoch * 10,
            iterations_per_epoch: 10,
            iteration_in_epoch: 0,
        }
    }

    #[test]
    fn multistep_matches_pytorch() {
        // MultiStepLR(milestones=[15, 25], gamma=0.1), stepped after each epoch: epochs 0..14
        // at lr, 15..24 at 0.1·lr, 25.. at 0.01·lr.
        let s = LrSchedule::MultiStep {
            milestones: vec![15, 25],
            gamma: 0.1,
        };
        assert_eq!(s.factor(&at(14)), 1.0);
        assert!((s.factor(&at(15)) - 0.1).abs() < 1e-12);
        assert!((s.factor(&at(24)) - 0.1).abs() < 1e-12);
        assert!((s.factor(&at(25)) - 0.01).abs() < 1e-12);
    }

    #[test]
    fn step_and_cosine() {
        let s = LrSchedule::Step {
            step_size: 30,
            gamma: 0.5,
        };
        assert_eq!(s.factor(&at(29)), 1.0);
        assert_eq!(s.factor(&at(30)), 0.5);
        assert_eq!(s.factor(&at(61)), 0.25);
        let c = LrSchedule::Cosine {
            epochs: 10,
            min_factor: 0.0,
            per_iteration: false,
        };
        assert_eq!(c.factor(&at(0)), 1.0);
        assert!((c.factor(&at(5)) - 0.5).abs() < 1e-12);
        assert!(c.factor(&at(10)).abs() < 1e-12);
        assert!(c.factor(&at(12)).abs() < 1e-12);
        let smooth = LrSchedule::Cosine {
            epochs: 10,
            min_factor: 0.1,
            per_iteration: true,
        };
        let mid = Clock {
            iteration_in_epoch: 5,
            ..at(0)
        };
        assert!(smooth.factor(&mid) < 1.0 && smooth.factor(&mid) > smooth.factor(&at(1)));
    }

    #[test]
    fn warmup_is_linear_then_one() {
        let w = Warmup {
            iterations: 100,
            start_factor: 0.0,
        };
        let c = |iteration| Clock {
            epoch: 0,
            iteration,
            iterations_per_epoch: 1000,
            iteration_in_epoch: iteration,
        };
        assert_eq!(w.factor(&c(0)), 0.0);
        assert!((w.factor(&c(50)) - 0.5).abs() < 1e-12);
        assert_eq!(w.factor(&c(100)), 1.0);
    }

    #[test]
    fn validation_names_the_parameter() {
        let bad = LrSchedule::Step {
            step_size: 0,
            gamma: 0.1,
        };
        assert!(bad.validate().unwrap_err().contains("step_size"));
        let json = r#"{"kind":"multi_step","milestones":[70],"gamma":0.1}"#;
        let parsed: LrSchedule = serde_json::from_str(json).unwrap();
        assert_eq!(
            parsed,
            LrSchedule::MultiStep {
                milestones: vec![70],
                gamma: 0.1
            }
        );
    }

    /// The multipliers PyTorch's `ReduceLROnPlateau` reached on the same values
    /// (`fixtures/train/make_plateau.py` ran it).
    #[test]
    fn reduce_on_plateau_matches_pytorch() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/train/plateau.json"
        );
        let cases: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert!(cases.len() >= 9);
        let mut dropped = 0;
        for case in &cases {
            let goal = match case["mode"].as_str().unwrap() {
                "max" => crate::Goal::Maximize,
                _ => crate::Goal::Minimize,
            };
            let mut rule = ReduceOnPlateau::new(
                goal,
                case["factor"].as_f64().unwrap(),
                case["patience"].as_u64().unwrap() as usize,
            );
            let values = case["values"].as_array().unwrap();
            let lrs = case["lr"].as_array().unwrap();
            for (k, (v, lr)) in values.iter().zip(lrs).enumerate() {
                let before = rule.scale();
                let drop = rule.observe(v.as_f64().unwrap_or(f64::NAN));
                let want = lr.as_f64().unwrap();
                assert!(
                    (rule.scale() - want).abs() < 1e-12,
                    "{} step {k}: {} vs PyTorch {want}",
                    case["name"],
                    rule.scale()
                );
                assert_eq!(drop, rule.scale() < before);
                dropped += usize::from(drop);
            }
        }
        assert!(dropped >= 8, "the cases exercise drops");
    }
}
