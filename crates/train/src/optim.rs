//! Optimisers: burn's SGD / Adam / AdamW with per-parameter-group learning rates, a schedule,
//! and PyTorch-style global-norm gradient clipping.
//!
//! What is burn's and what is ours:
//! - the update rules, their state and its serialisation are burn's (`ModuleOptimizer`);
//! - per-group learning rates go through burn's `ModuleLrScheduler` (one constant scheduler per
//!   group, rebuilt each step from [`crate::schedule`]'s pure-function factor);
//! - gradient clipping is ours: burn's `GradientClipping::Norm` clips every tensor to the norm
//!   separately, whereas the papers' code (`torch.nn.utils.clip_grad_norm_`, HREM) rescales all
//!   gradients by one factor computed from their joint L2 norm. [`clip_global_norm`] does the
//!   latter.
//!
//! Defaults that differ between burn and PyTorch are set explicitly here: SGD dampening (burn
//! 0.1, PyTorch 0) and Adam's epsilon (burn 1e-5, PyTorch 1e-8).

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Bytes, Tensor};
use serde::{Deserialize, Serialize};

use crate::schedule::{Clock, LrSchedule, ScheduleClock, Warmup};

/// The update rule and its hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerKind {
    /// SGD with momentum and L2 weight decay, with PyTorch's semantics.
    Sgd {
        /// Momentum factor (0 disables momentum).
        #[serde(default)]
        momentum: f64,
        /// Dampening (PyTorch default 0; burn's default would be 0.1).
        #[serde(default)]
        dampening: f64,
        /// Nesterov momentum.
        #[serde(default)]
        nesterov: bool,
        /// L2 penalty added to the gradient.
        #[serde(default)]
        weight_decay: f64,
    },
    /// Adam with L2 weight decay added to the gradient (PyTorch `Adam`).
    Adam {
        /// β₁.
        #[serde(default = "default_beta1")]
        beta1: f64,
        /// β₂.
        #[serde(default = "default_beta2")]
        beta2: f64,
        /// ε (PyTorch default 1e-8).
        #[serde(default = "default_epsilon")]
        epsilon: f64,
        /// L2 penalty.
        #[serde(default)]
        weight_decay: f64,
    },
    /// AdamW with decoupled weight decay (PyTorch `AdamW`).
    AdamW {
        /// β₁.
        #[serde(default = "default_beta1")]
        beta1: f64,
        /// β₂.
        #[serde(default = "default_beta2")]
        beta2: f64,
        /// ε (PyTorch default 1e-8).
        #[serde(default = "default_epsilon")]
        epsilon: f64,
        /// Decoupled weight decay (PyTorch default 1e-2).
        #[serde(default = "default_adamw_decay")]
        weight_decay: f64,
    },
}

fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_epsilon() -> f64 {
    1e-8
}
fn default_adamw_decay() -> f64 {
    1e-2
}

impl OptimizerKind {
    /// SGD with the given momentum and weight decay; dampening 0, no Nesterov (PyTorch's
    /// defaults, which the papers use).
    pub fn sgd(momentum: f64, weight_decay: f64) -> Self {
        OptimizerKind::Sgd {
            momentum,
            dampening: 0.0,
            nesterov: false,
            weight_decay,
        }
    }

    /// Adam with PyTorch's defaults and the given L2 weight decay.
    pub fn adam(weight_decay: f64) -> Self {
        OptimizerKind::Adam {
            beta1: default_beta1(),
            beta2: default_beta2(),
            epsilon: default_epsilon(),
            weight_decay,
        }
    }

    /// AdamW with PyTorch's defaults and the given decoupled weight decay.
    pub fn adamw(weight_decay: f64) -> Self {
        OptimizerKind::AdamW {
            beta1: default_beta1(),
            beta2: default_beta2(),
            epsilon: default_epsilon(),
            weight_decay,
        }
    }

    fn build(&self) -> ModuleOptimizer {
        match *self {
            OptimizerKind::Sgd {
                momentum,
                dampening,
                nesterov,
                weight_decay,
            } => {
                let momentum = (momentum > 0.0).then(|| {
                    MomentumConfig::new()
                        .with_momentum(momentum)
                        .with_dampening(dampening)
                        .with_nesterov(nesterov)
                });
                let decay =
                    (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay as f32));
                SgdConfig::new()
                    .with_momentum(momentum)
                    .with_weight_decay(decay)
                    .init()
            }
            OptimizerKind::Adam {
                beta1,
                beta2,
                epsilon,
                weight_decay,
            } => {
                let decay =
                    (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay as f32));
                AdamConfig::new()
                    .with_beta_1(beta1 as f32)
                    .with_beta_2(beta2 as f32)
                    .with_epsilon(epsilon as f32)
                    .with_weight_decay(decay)
                    .init()
            }
            OptimizerKind::AdamW {
                beta1,
                beta2,
                epsilon,
                weight_decay,
            } => AdamWConfig::new()
                .with_beta_1(beta1 as f32)
                .with_beta_2(beta2 as f32)
                .with_epsilon(epsilon as f32)
                .with_weight_decay(weight_decay as f32)
                .init(),
        }
    }
}

/// A learning rate for the parameters whose module path contains `contains` (for instance
/// `"backbone"` or `"text_encoder.bert"`). The last matching group wins, as in burn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrGroup {
    /// Substring of the parameter path (`"layer4"`, `"gcn"`, ...).
    pub contains: String,
    /// Base learning rate of the group (before the schedule's factor).
    pub lr: f64,
}

/// One named optimiser of a method (most have one, `"model"`; ISL's GAN phase adds its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizerConfig {
    /// Name used by `StepContext::minimize_with` and in logs/checkpoints.
    pub name: String,
    /// Update rule.
    #[serde(flatten)]
    pub kind: OptimizerKind,
    /// Base learning rate of every parameter not in a group.
    pub lr: f64,
    /// Per-group base learning rates.
    #[serde(default)]
    pub groups: Vec<LrGroup>,
    /// Multiplier over training.
    #[serde(default)]
    pub schedule: LrSchedule,
    /// Optional linear warm-up, multiplied into the schedule.
    #[serde(default)]
    pub warmup: Option<Warmup>,
    /// Which counters drive the schedule.
    #[serde(default)]
    pub clock: ScheduleClock,
    /// Clip the joint L2 norm of all gradients this optimiser applies (PyTorch
    /// `clip_grad_norm_`).
    #[serde(default)]
    pub clip_grad_norm: Option<f64>,
}

impl OptimizerConfig {
    /// An optimiser called `name` with a constant learning rate and no groups.
    pub fn new(name: impl Into<String>, kind: OptimizerKind, lr: f64) -> Self {
        Self {
            name: name.into(),
            kind,
            lr,
            groups: Vec::new(),
            schedule: LrSchedule::Constant,
            warmup: None,
            clock: ScheduleClock::Global,
            clip_grad_norm: None,
        }
    }

    /// Sets the schedule.
    pub fn with_schedule(mut self, schedule: LrSchedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// Adds a parameter group with its own base learning rate.
    pub fn with_group(mut self, contains: impl Into<String>, lr: f64) -> Self {
        self.groups.push(LrGroup {
            contains: contains.into(),
            lr,
        });
        self
    }

    /// Sets global-norm gradient clipping.
    pub fn with_clip_grad_norm(mut self, max_norm: f64) -> Self {
        self.clip_grad_norm = Some(max_norm);
        self
    }

    /// Sets a linear warm-up.
    pub fn with_warmup(mut self, warmup: Warmup) -> Self {
        self.warmup = Some(warmup);
        self
    }

    /// Sets the schedule clock.
    pub fn with_clock(mut self, clock: ScheduleClock) -> Self {
        self.clock = clock;
        self
    }

    /// Checks every number, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        let name = &self.name;
        let positive = |what: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(format!(
                    "optimizer `{name}`: {what} must be a finite non-negative number, got {v}"
                ))
            }
        };
        positive("lr", self.lr)?;
        for g in &self.groups {
            positive(&format!("group `{}` lr", g.contains), g.lr)?;
            if g.contains.is_empty() {
                return Err(format!(
                    "optimizer `{name}`: a group has an empty `contains`"
                ));
            }
        }
        if let Some(c) = self.clip_grad_norm
            && !(c.is_finite() && c > 0.0)
        {
            return Err(format!(
                "optimizer `{name}`: clip_grad_norm must be positive, got {c}"
            ));
        }
        match self.kind {
            OptimizerKind::Sgd {
                momentum,
                dampening,
                weight_decay,
                ..
            } => {
                positive("momentum", momentum)?;
                positive("dampening", dampening)?;
                positive("weight_decay", weight_decay)?;
            }
            OptimizerKind::Adam {
                beta1,
                beta2,
                epsilon,
                weight_decay,
            }
            | OptimizerKind::AdamW {
                beta1,
                beta2,
                epsilon,
                weight_decay,
            } => {
                if !(0.0..1.0).contains(&beta1) || !(0.0..1.0).contains(&beta2) {
                    return Err(format!(
                        "optimizer `{name}`: betas must be in [0, 1), got ({beta1}, {beta2})"
                    ));
                }
                positive("epsilon", epsilon)?;
                positive("weight_decay", weight_decay)?;
            }
        }
        self.schedule
            .validate()
            .map_err(|e| format!("optimizer `{name}`: {e}"))
    }
}

/// A built optimiser: burn's `ModuleOptimizer` plus the learning-rate policy around it.
pub struct NamedOptimizer {
    config: OptimizerConfig,
    inner: ModuleOptimizer,
}

impl NamedOptimizer {
    /// Builds the optimiser described by `config`.
    pub fn new(config: OptimizerConfig) -> Self {
        let inner = config.kind.build();
        Self { config, inner }
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// The schedule × warm-up multiplier at `clock`.
    pub fn factor(&self, clock: &Clock) -> f64 {
        let warm = self.config.warmup.as_ref().map_or(1.0, |w| w.factor(clock));
        self.config.schedule.factor(clock) * warm
    }

    /// The base group's effective learning rate at `clock` (what logs and curves show).
    pub fn lr(&self, clock: &Clock) -> f64 {
        self.config.lr * self.factor(clock)
    }

    /// Per-group learning rates at `clock`, in burn's form.
    fn module_lr(&self, clock: &Clock, scale: f64) -> ModuleLearningRate {
        let factor = self.factor(clock) * scale;
        let mut scheduler = ModuleLrScheduler::new(self.config.lr * factor);
        for group in &self.config.groups {
            scheduler = scheduler.with_group(
                ParamGroup::from_predicate(group.contains.clone()),
                group.lr * factor,
            );
        }
        scheduler.step()
    }

    /// Clips (when configured) and applies `grads` to `model` at `clock`, every learning rate
    /// multiplied by `scale` (the trainer's plateau drops; 1 without). Returns the model and
    /// the gradients' joint L2 norm before clipping, when clipping computed it.
    pub fn apply<M: Module>(
        &mut self,
        model: M,
        mut grads: GradientsParams,
        clock: &Clock,
        scale: f64,
    ) -> (M, Option<f64>) {
        let norm = self
            .config
            .clip_grad_norm
            .map(|max| clip_global_norm(&model, &mut grads, max));
        let lr = self.module_lr(clock, scale);
        (self.inner.step(lr, model, grads), norm)
    }

    /// The optimiser state (momentum buffers, Adam moments) as burnpack bytes.
    pub fn state_bytes(&self) -> Result<Vec<u8>, String> {
        self.inner
            .into_bytes()
            .map(|b| b.to_vec())
            .map_err(|e| e.to_string())
    }

    /// Restores a state saved with [`NamedOptimizer::state_bytes`].
    pub fn load_state_bytes(&mut self, bytes: &[u8]) -> Result<(), String> {
        let fresh = self.config.kind.build();
        let restored = std::mem::replace(&mut self.inner, fresh)
            .from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
            .map_err(|e| e.to_string())?;
        self.inner = restored;
        Ok(())
    }
}

/// Collects the ids of every float parameter of a module.
struct FloatParamIds(Vec<(ParamId, usize)>);

impl ModuleVisitor for FloatParamIds {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push((param.id, D));
    }
}

/// Sums the squares of the gradients of visited parameters.
struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let s = g.square().sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

/// Multiplies the gradients of visited parameters by a constant.
struct ScaleGrads<'a> {
    grads: &'a mut GradientsParams,
    scale: f64,
}

impl ModuleVisitor for ScaleGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.scale));
        }
    }
}

/// Rescales all of `grads` so that their joint L2 norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_(params, max_norm)` does (coefficient
/// `max_norm / (norm + 1e-6)`, applied only when below 1). Returns the norm before clipping.
pub fn clip_global_norm<M: Module>(model: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    let mut visitor = SquaredNorm { grads, total: None };
    model.visit(&mut visitor);
    let Some(total) = visitor.total else {
        return 0.0;
    };
    let norm = f64::from(total.into_scalar::<f32>()).sqrt();
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        model.visit(&mut ScaleGrads { grads, scale: coef });
    }
    norm
}

/// The number of float parameters (tensors, not elements) of a module and their ids — used by
/// tests and to report what a group matched.
pub fn float_param_ids<M: Module>(model: &M) -> Vec<ParamId> {
    let mut v = FloatParamIds(Vec::new());
    model.visit(&mut v);
    v.0.into_iter().map(|(id, _)| id).collect()
}
