//! Curriculum weights (the paper's "Training stage"; docs/csrms.md): easy, medium and hard anchors
//! weigh λ_e, λ_m, λ_h in L_neg, under the constraint
//!
//! ```text
//! α_i·λ_e + (1 − α_i)(α_f·λ_m + (1 − α_f)·λ_h) = 1.
//! ```
//!
//! The constraint fixes one degree of freedom of three. relata reads (α_i, (1−α_i)α_f,
//! (1−α_i)(1−α_f)) as the emphasis π on the three levels (they sum to 1) and takes λ = π / Σπ²,
//! the λ parallel to π that meets the constraint: at α = 1 only easy anchors count (λ = 1, 0,
//! 0), at α = 0 only hard ones, smoothly in between.
//!
//! α_i = α_f = α starts at 1 and decays: multiplied by `decay` every epoch once the loss has
//! converged (epoch loss below `trigger_loss` and changed by less than `trigger_change` over
//! two epochs — the paper's trigger), and in any case no higher than a linear schedule from 1
//! to `end` over the epochs (relata's decision, docs/csrms.md: the schedule for when the trigger never fires).

use burn::config::Config;
use serde::{Deserialize, Serialize};

use crate::error::CsrmsError;
use crate::relation::Difficulty;

/// When and how fast the curriculum moves from easy to hard anchors.
#[derive(Config, Debug, PartialEq)]
pub struct CurriculumConfig {
    /// α at the last epoch of the linear schedule (1: no schedule, only the trigger).
    #[config(default = 0.0)]
    pub end: f64,
    /// The trigger: the epoch loss is below this …
    #[config(default = 0.01)]
    pub trigger_loss: f64,
    /// … and changed by less than this over the last two epochs.
    #[config(default = 1e-4)]
    pub trigger_change: f64,
    /// Factor applied to α every epoch after the trigger fired.
    #[config(default = 0.5)]
    pub decay: f64,
}

impl CurriculumConfig {
    /// Checks the ranges.
    pub fn check(&self) -> Result<(), CsrmsError> {
        if !(0.0..=1.0).contains(&self.end) || !(0.0..=1.0).contains(&self.decay) {
            return Err(CsrmsError::Config(format!(
                "curriculum.end = {} and curriculum.decay = {}: both must be in [0, 1]",
                self.end, self.decay
            )));
        }
        if !(self.trigger_loss >= 0.0 && self.trigger_change >= 0.0) {
            return Err(CsrmsError::Config(
                "curriculum trigger thresholds must be non-negative".into(),
            ));
        }
        Ok(())
    }
}

/// λ_e, λ_m, λ_h for α_i and α_f (see the module comment); they satisfy the constraint.
pub fn curriculum_weights(alpha_i: f64, alpha_f: f64) -> [f64; 3] {
    let pi = [
        alpha_i,
        (1.0 - alpha_i) * alpha_f,
        (1.0 - alpha_i) * (1.0 - alpha_f),
    ];
    let norm: f64 = pi.iter().map(|p| p * p).sum();
    pi.map(|p| p / norm)
}

/// The curriculum's progress: epoch losses seen and when the trigger fired.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Curriculum {
    losses: Vec<f64>,
    fired_at: Option<usize>,
}

impl Curriculum {
    /// α for epoch `epoch` (0-based) of `epochs`.
    pub fn alpha(&self, config: &CurriculumConfig, epoch: usize, epochs: usize) -> f64 {
        let progress = if epochs > 1 {
            epoch as f64 / (epochs - 1) as f64
        } else {
            0.0
        };
        let linear = 1.0 - (1.0 - config.end) * progress.min(1.0);
        let triggered = match self.fired_at {
            Some(f) if epoch > f => config.decay.powi((epoch - f) as i32),
            _ => 1.0,
        };
        linear.min(triggered)
    }

    /// Records the mean loss of epoch `epoch`; fires the trigger when it has converged.
    pub fn observe(&mut self, config: &CurriculumConfig, epoch: usize, loss: f64) {
        self.losses.push(loss);
        let n = self.losses.len();
        if self.fired_at.is_none()
            && n >= 3
            && loss < config.trigger_loss
            && (loss - self.losses[n - 3]).abs() < config.trigger_change
        {
            self.fired_at = Some(epoch);
        }
    }

    /// The epoch at which the loss trigger fired, if it did.
    pub fn fired_at(&self) -> Option<usize> {
        self.fired_at
    }

    /// Per-anchor L_neg weights for α.
    pub fn weight(alpha: f64, difficulty: Difficulty) -> f64 {
        curriculum_weights(alpha, alpha)[difficulty.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_meet_the_constraint() {
        for ai in [0.0, 0.1, 0.5, 0.9, 1.0] {
            for af in [0.0, 0.3, 0.5, 1.0] {
                let [e, m, h] = curriculum_weights(ai, af);
                let lhs = ai * e + (1.0 - ai) * (af * m + (1.0 - af) * h);
                assert!((lhs - 1.0).abs() < 1e-12, "α_i {ai} α_f {af}: {lhs}");
                assert!(e >= 0.0 && m >= 0.0 && h >= 0.0);
            }
        }
        assert_eq!(curriculum_weights(1.0, 1.0), [1.0, 0.0, 0.0]);
        assert_eq!(curriculum_weights(0.0, 0.0), [0.0, 0.0, 1.0]);
        // Halfway: easy still weighs more than hard.
        let [e, _, h] = curriculum_weights(0.5, 0.5);
        assert!(e > h);
    }

    #[test]
    fn linear_schedule_without_trigger() {
        let cfg = CurriculumConfig::new().with_end(0.2);
        let c = Curriculum::default();
        assert_eq!(c.alpha(&cfg, 0, 5), 1.0);
        assert!((c.alpha(&cfg, 2, 5) - 0.6).abs() < 1e-12);
        assert!((c.alpha(&cfg, 4, 5) - 0.2).abs() < 1e-12);
        // end = 1: no schedule.
        assert_eq!(c.alpha(&CurriculumConfig::new().with_end(1.0), 4, 5), 1.0);
    }

    #[test]
    fn trigger_fires_on_converged_loss() {
        let cfg = CurriculumConfig::new().with_end(1.0);
        let mut c = Curriculum::default();
        for (e, l) in [0.5, 0.1, 0.009, 0.00899, 0.00898].into_iter().enumerate() {
            c.observe(&cfg, e, l);
        }
        // Epoch 3: 0.00899 < 0.01 and |0.00899 − 0.1| is large → no; epoch 4: |0.00898 −
        // 0.009| = 2e-5 < 1e-4 → fires.
        assert_eq!(c.fired_at(), Some(4));
        assert_eq!(c.alpha(&cfg, 4, 100), 1.0);
        assert_eq!(c.alpha(&cfg, 5, 100), 0.5);
        assert_eq!(c.alpha(&cfg, 7, 100), 0.125);
        // A loss that stays high never fires.
        let mut c = Curriculum::default();
        for e in 0..10 {
            c.observe(&cfg, e, 1.0);
        }
        assert_eq!(c.fired_at(), None);
    }

    #[test]
    fn bad_config() {
        assert!(CurriculumConfig::new().with_end(1.5).check().is_err());
        assert!(CurriculumConfig::new().with_decay(-0.1).check().is_err());
    }
}
