//! The training scaffold end to end on a toy classifier: the loss falls,
//! a run stopped after epoch 2 of 4 and resumed ends with exactly the metrics of an
//! uninterrupted run, a NaN loss stops the run naming the step, term and last good checkpoint,
//! a checkpoint truncated mid-write is detected and the previous one used; plus per-group
//! learning rates, global-norm clipping, sub-module updates, phases that end early, model
//! selection and the run-directory files.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, Relu};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use relata_train::device::DeviceChoice;
use relata_train::{
    EpochContext, EpochRecord, Goal, Loss, LrSchedule, OptimizerConfig, OptimizerKind, PhaseConfig,
    PhaseControl, RunDir, RunOptions, SeededRng, Selection, StepContext, TrainError, TrainTask,
    Trainer, TrainerConfig, Verbosity, clip_global_norm, seed_device,
};

const DIM: usize = 8;
const CLASSES: usize = 3;
const TRAIN: usize = 192;
const VAL: usize = 64;
const BATCH: usize = 32;

fn device() -> Device {
    DeviceChoice::Flex.device().expect("flex device").autodiff()
}

#[derive(Module, Debug)]
struct Toy {
    fc1: Linear,
    relu: Relu,
    dropout: Dropout,
    fc2: Linear,
}

impl Toy {
    fn new(device: &Device, seed: u64) -> Self {
        seed_device(device, seed);
        Self {
            fc1: LinearConfig::new(DIM, 16).init(device),
            relu: Relu::new(),
            dropout: DropoutConfig::new(0.1).init(),
            fc2: LinearConfig::new(16, CLASSES).init(device),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.fc2
            .forward(self.dropout.forward(self.relu.forward(self.fc1.forward(x))))
    }
}

/// Gaussian inputs labelled by a fixed random linear teacher.
struct ToyData {
    x: Vec<f32>,
    y: Vec<i64>,
}

fn toy_data(n: usize, seed: u64) -> ToyData {
    let mut rng = SeededRng::new(seed);
    let mut teacher = SeededRng::new(1234);
    let w: Vec<f64> = (0..DIM * CLASSES).map(|_| teacher.normal()).collect();
    let mut x = Vec::with_capacity(n * DIM);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let row: Vec<f64> = (0..DIM).map(|_| rng.normal()).collect();
        let scores: Vec<f64> = (0..CLASSES)
            .map(|c| (0..DIM).map(|d| row[d] * w[c * DIM + d]).sum())
            .collect();
        let label = (0..CLASSES)
            .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
            .unwrap();
        x.extend(row.iter().map(|&v| v as f32));
        y.push(label as i64);
    }
    ToyData { x, y }
}

fn tensors(data: &ToyData, idx: &[usize], device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let mut xs = Vec::with_capacity(idx.len() * DIM);
    let mut ys = Vec::with_capacity(idx.len());
    for &i in idx {
        xs.extend_from_slice(&data.x[i * DIM..(i + 1) * DIM]);
        ys.push(data.y[i]);
    }
    (
        Tensor::from_data(TensorData::new(xs, [idx.len(), DIM]), device),
        Tensor::from_data(TensorData::new(ys, [idx.len()]), device),
    )
}

/// The toy method. `steps_seen` is method state that must survive resume; `nan_at` injects a
/// NaN at a global step; `end_after` ends the phase early.
struct ToyTask {
    train: ToyData,
    val: ToyData,
    steps_seen: u64,
    nan_at: Option<usize>,
    end_phase_after: Option<usize>,
    phase_starts: Vec<String>,
    /// A validation `score` per epoch (0-based), scripted for early stopping.
    scores: Option<Vec<f64>>,
}

impl ToyTask {
    fn new() -> Self {
        Self {
            train: toy_data(TRAIN, 1),
            val: toy_data(VAL, 2),
            steps_seen: 0,
            nan_at: None,
            end_phase_after: None,
            phase_starts: Vec::new(),
            scores: None,
        }
    }
}

impl TrainTask for ToyTask {
    type Model = Toy;
    type Batch = Vec<usize>;

    fn epoch_batches(&mut self, ctx: &mut EpochContext<'_>) -> Result<Vec<Vec<usize>>, TrainError> {
        let order = ctx.rng.permutation(TRAIN);
        Ok(order.chunks(BATCH).map(<[usize]>::to_vec).collect())
    }

    fn step(
        &mut self,
        model: Toy,
        batch: &Vec<usize>,
        ctx: &mut StepContext<'_>,
    ) -> Result<Toy, TrainError> {
        let (x, y) = tensors(&self.train, batch, ctx.device);
        let logits = model.forward(x);
        let mut ce = CrossEntropyLossConfig::new()
            .init(ctx.device)
            .forward(logits.clone(), y.clone());
        if self.nan_at == Some(ctx.global_step) {
            ce = ce.mul_scalar(f32::NAN);
        }
        let correct = logits
            .argmax(1)
            .squeeze_dim::<1>(1)
            .equal(y)
            .int()
            .sum()
            .into_scalar::<i64>();
        ctx.record("acc", correct as f64 / batch.len() as f64);
        self.steps_seen += 1;
        // A constant second term shows terms and `total` are logged separately.
        let reg = model.fc2.weight.val().square().sum().mul_scalar(1e-4);
        ctx.minimize(model, Loss::new().term("ce", ce).term("l2", reg))
    }

    fn on_phase_start(
        &mut self,
        _: &mut Toy,
        ctx: &mut EpochContext<'_>,
    ) -> Result<(), TrainError> {
        self.phase_starts.push(ctx.phase.to_string());
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        _: &mut Toy,
        ctx: &mut EpochContext<'_>,
        _: &EpochRecord,
    ) -> Result<PhaseControl, TrainError> {
        ctx.record("steps_seen", self.steps_seen as f64);
        Ok(match self.end_phase_after {
            Some(n) if ctx.epoch_in_phase + 1 >= n => PhaseControl::EndPhase,
            _ => PhaseControl::Continue,
        })
    }

    fn validate(
        &mut self,
        model: &Toy,
        ctx: &mut EpochContext<'_>,
    ) -> Result<BTreeMap<String, f64>, TrainError> {
        let device = ctx.device.clone().inner();
        let idx: Vec<usize> = (0..VAL).collect();
        let (x, y) = tensors(&self.val, &idx, &device);
        let logits = model.forward(x);
        let loss = CrossEntropyLossConfig::new()
            .init(&device)
            .forward(logits.clone(), y.clone())
            .into_scalar::<f32>();
        let correct = logits
            .argmax(1)
            .squeeze_dim::<1>(1)
            .equal(y)
            .int()
            .sum()
            .into_scalar::<i64>();
        let mut metrics = BTreeMap::from([
            ("acc".to_string(), correct as f64 / VAL as f64),
            ("loss".to_string(), f64::from(loss)),
        ]);
        if let Some(scores) = &self.scores {
            metrics.insert("score".to_string(), scores[ctx.epoch]);
        }
        Ok(metrics)
    }

    fn save_state(&self) -> Result<Vec<u8>, TrainError> {
        Ok(self.steps_seen.to_le_bytes().to_vec())
    }

    fn load_state(&mut self, bytes: &[u8]) -> Result<(), TrainError> {
        let arr: [u8; 8] = bytes
            .try_into()
            .map_err(|_| TrainError::msg("toy state must be 8 bytes"))?;
        self.steps_seen = u64::from_le_bytes(arr);
        Ok(())
    }
}

fn config(epochs: usize) -> TrainerConfig {
    let sgd = OptimizerConfig::new("model", OptimizerKind::sgd(0.9, 5e-4), 0.2).with_schedule(
        LrSchedule::MultiStep {
            milestones: vec![3],
            gamma: 0.1,
        },
    );
    TrainerConfig::new(vec![PhaseConfig::new("train", epochs)], vec![sgd])
        .with_seed(7)
        .with_verbosity(Verbosity::Quiet)
}

fn open(dir: &Path, cfg: &TrainerConfig, resume: bool) -> RunDir {
    let json = serde_json::to_value(cfg).unwrap();
    RunDir::open(
        &RunOptions::new("toy", "toy-data")
            .with_dir(dir)
            .with_resume(resume),
        &json,
    )
    .unwrap()
}

/// Trains a fresh `ToyTask` from a `Toy` initialised with `model_seed` in `dir` (resuming when
/// asked, stopping after `stop_after` epochs when given), as a separate process would.
fn run_toy(
    dev: &Device,
    cfg: &TrainerConfig,
    dir: &Path,
    resume: bool,
    stop_after: Option<usize>,
    model_seed: u64,
) -> relata_train::FitOutcome<Toy> {
    let mut trainer = Trainer::new(cfg.clone(), dev, open(dir, cfg, resume)).unwrap();
    if let Some(n) = stop_after {
        trainer = trainer.stop_after_epochs(n);
    }
    trainer
        .fit(&mut ToyTask::new(), Toy::new(dev, model_seed))
        .unwrap()
}

fn params(model: &Toy) -> Vec<f32> {
    let mut v = model
        .fc1
        .weight
        .val()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    v.extend(
        model
            .fc2
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap(),
    );
    v
}

#[test]
fn loss_falls_and_run_directory_is_complete() {
    let _serial = relata_train::generator_turn();
    let tmp = tempfile::tempdir().unwrap();
    let dev = device();
    let cfg = config(4);
    let run = open(&tmp.path().join("run"), &cfg, false);
    let trainer = Trainer::new(cfg, &dev, run).unwrap();
    let mut task = ToyTask::new();
    let out = trainer.fit(&mut task, Toy::new(&dev, 3)).unwrap();
    assert!(out.completed);
    assert_eq!(out.epochs.len(), 4);
    let first = out.epochs[0].loss["ce"];
    let last = out.epochs[3].loss["ce"];
    assert!(last < 0.5 * first, "ce {first} -> {last}");
    assert!(out.epochs[3].val["acc"] > 0.8, "{:?}", out.epochs[3].val);
    assert!(out.epochs[0].loss.contains_key("total") && out.epochs[0].loss.contains_key("l2"));
    assert!(out.epochs[0].samples_per_sec > 0.0 && out.epochs[0].samples == TRAIN);
    // MultiStep at epoch index 3: epochs 1-3 at 0.2, epoch 4 at 0.02.
    assert!((out.epochs[2].lr["model"] - 0.2).abs() < 1e-12);
    assert!((out.epochs[3].lr["model"] - 0.02).abs() < 1e-12);
    assert_eq!(out.epochs[3].extra["steps_seen"], 24.0);

    let dir = tmp.path().join("run");
    for f in [
        "config.json",
        "metrics.jsonl",
        "report.md",
        "curves/loss-ce.png",
        "curves/loss-total.png",
        "curves/val-acc.png",
        "curves/lr.png",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    assert_eq!(
        fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        4
    );
    let report = fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("| epoch | phase |") && report.contains("curves/loss-ce.png"));
    // keep_checkpoints = 2 by default.
    let mut ckpts: Vec<String> = fs::read_dir(dir.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ckpts.sort();
    assert_eq!(ckpts, vec!["epoch-00003", "epoch-00004"]);
}

/// One epoch's training scalars and validation metrics.
type Scalars = (usize, BTreeMap<String, f64>, BTreeMap<String, f64>);

/// Training metrics that must agree between runs (timings excluded).
fn comparable(records: &[EpochRecord]) -> Vec<Scalars> {
    records
        .iter()
        .map(|r| {
            let mut loss = r.loss.clone();
            loss.extend(r.extra.clone());
            (r.epoch, loss, r.val.clone())
        })
        .collect()
}

#[test]
fn resume_after_epoch_two_matches_uninterrupted_run() {
    let _serial = relata_train::generator_turn();
    let tmp = tempfile::tempdir().unwrap();
    let dev = device();
    let cfg = config(4);

    let full_dir = tmp.path().join("full");
    let full = run_toy(&dev, &cfg, &full_dir, false, None, 3);

    let split_dir = tmp.path().join("split");
    let first = run_toy(&dev, &cfg, &split_dir, false, Some(2), 3);
    assert!(!first.completed);
    assert_eq!(first.epochs.len(), 2);

    // A new process: fresh task state, a model with different initial weights (overwritten
    // by the checkpoint), and the same configuration.
    let resumed = run_toy(&dev, &cfg, &split_dir, true, None, 999);
    assert!(resumed.completed);
    assert!(resumed.resumed_from.unwrap().ends_with("epoch-00002"));
    assert_eq!(comparable(&resumed.epochs), comparable(&full.epochs));
    assert_eq!(params(&resumed.model), params(&full.model));
    assert_eq!(
        fs::read_to_string(split_dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        4
    );
}

#[test]
fn truncated_checkpoint_falls_back_to_the_previous_one() {
    let _serial = relata_train::generator_turn();
    let tmp = tempfile::tempdir().unwrap();
    let dev = device();
    let cfg = config(4);
    let full = run_toy(&dev, &cfg, &tmp.path().join("full"), false, None, 3);

    let dir = tmp.path().join("crashed");
    run_toy(&dev, &cfg, &dir, false, Some(3), 3);
    // The crash: epoch 3's model file cut short.
    let model = dir.join("checkpoints/epoch-00003/model.bpk");
    let len = fs::metadata(&model).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&model)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let resumed = run_toy(&dev, &cfg, &dir, true, None, 3);
    assert!(resumed.resumed_from.unwrap().ends_with("epoch-00002"));
    // Epoch 3 is recomputed and the run still ends where the uninterrupted one does.
    assert_eq!(comparable(&resumed.epochs), comparable(&full.epochs));
}

#[test]
fn nan_loss_stops_with_step_term_and_last_good_checkpoint() {
    let _serial = relata_train::generator_turn();
    let tmp = tempfile::tempdir().unwrap();
    let dev = device();
    let cfg = config(4);
    let dir = tmp.path().join("run");
    let mut task = ToyTask::new();
    // 6 steps per epoch: global step 9 is epoch 2 (index 1), step 3.
    task.nan_at = Some(9);
    let err = Trainer::new(cfg.clone(), &dev, open(&dir, &cfg, false))
        .unwrap()
        .fit(&mut task, Toy::new(&dev, 3))
        .err()
        .expect("NaN must stop the run");
    match &err {
        TrainError::NonFiniteLoss {
            term,
            epoch,
            step,
            global_step,
            last_good,
            ..
        } => {
            assert_eq!(term, "ce");
            assert_eq!((*epoch, *step, *global_step), (1, 3, 9));
            assert!(last_good.as_ref().unwrap().ends_with("epoch-00001"));
        }
        other => panic!("expected NonFiniteLoss, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("`ce` is NaN") && msg.contains("epoch-00001"),
        "{msg}"
    );
    // The last good checkpoint is intact and resumable.
    assert_eq!(
        fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        1
    );
    let resumed = run_toy(&dev, &cfg, &dir, true, None, 3);
    assert!(resumed.completed && resumed.epochs.len() == 4);
}

#[test]
fn per_group_learning_rates_reach_the_optimizer() {
    let _serial = relata_train::generator_turn();
    let tmp = tempfile::tempdir().unwrap();
    let dev = device();
    let sgd =
        OptimizerConfig::new("model", OptimizerKind::sgd(0.0, 0.0), 0.1).with_group("fc1", 0.0);
    let cfg = TrainerConfig::new(vec![PhaseConfig::new("train", 1)], vec![sgd])
        .with_verbosity(Verbosity::Quiet)
        .with_eval_every(0);
    let model = Toy::new(&dev, 3);
    let fc1_before = model.fc1.weight.val().into_data();
    let fc2_before = model.fc2.weight.val().into_data();
    let out = Trainer::new(cfg.clone(), &dev, open(&tmp.path().join("r"), &cfg, false))
        .unwrap()
        .fit(&mut ToyTask::new(), model)
        .unwrap();
    assert_eq!(out.model.fc1.weight.val().into_data(), fc1_before);
    assert_ne!(out.model.fc2.weight.val().into_data(), fc2_before);
}

#[test]
fn global_norm_clipping_matches_pytorch_semantics() {
    let _serial = relata_train::generator_turn();
    let dev = device();
    let model = Toy::new(&dev, 3);
    let x = Tensor::<2>::ones([4, DIM], &dev).mul_scalar(10.0);
    let loss = model.forward(x).square().sum();
    let mut grads = GradientsParams::from_grads(loss.backward(), &model);
    let sq = |g: &GradientsParams| -> f64 {
        let mut total = 0.0f64;
        for layer in [&model.fc1, &model.fc2] {
            let w = g.get::<2>(layer.weight.id).unwrap();
            total += f64::from(w.square().sum().into_scalar::<f32>());
            let b = g.get::<1>(layer.bias.as_ref().unwrap().id).unwrap();
            total += f64::from(b.square().sum().into_scalar::<f32>());
        }
        total.sqrt()
    };
    let before = sq(&grads);
    let reported = clip_global_norm(&model, &mut grads, 1.0);
    assert!(
        (reported - before).abs() / before < 1e-5,
        "{reported} vs {before}"
    );
    assert!(before > 1.0);
    let after = sq(&grads);
    assert!((after - 1.0).abs() < 1e-4, "clipped joint norm {after}");
    // Below the threshold nothing changes.
    let small = clip_global_norm(&model, &mut grads, 10.0);
    assert!((sq(&grads) - small).abs() < 1e-5);
}

/// Alternating updates of two sub-modules with two optimisers (ISL's GAN shape), phases that
/// end early, and phase hooks.
struct TwoPartTask {
    inner: ToyTask,
    /// Halve `opt_a`'s learning rate after these epochs (1-based, global).
    halve_a_after: Vec<usize>,
}

#[derive(Module, Debug)]
struct TwoPart {
    a: Toy,
    b: Toy,
}

impl TrainTask for TwoPartTask {
    type Model = TwoPart;
    type Batch = Vec<usize>;

    fn epoch_batches(&mut self, ctx: &mut EpochContext<'_>) -> Result<Vec<Vec<usize>>, TrainError> {
        self.inner.epoch_batches(ctx)
    }

    fn step(
        &mut self,
        model: TwoPart,
        batch: &Vec<usize>,
        ctx: &mut StepContext<'_>,
    ) -> Result<TwoPart, TrainError> {
        let (x, y) = tensors(&self.inner.train, batch, ctx.device);
        let ce = CrossEntropyLossConfig::new().init(ctx.device);
        let la = ce.forward(model.a.forward(x.clone()), y.clone());
        let model = ctx.minimize_with(model, Loss::single("a", la), "opt_a", |m| &m.a)?;
        let lb = ce.forward(model.b.forward(x), y);
        ctx.minimize_with(model, Loss::single("b", lb), "opt_b", |m| &m.b)
    }

    fn on_phase_start(
        &mut self,
        m: &mut TwoPart,
        ctx: &mut EpochContext<'_>,
    ) -> Result<(), TrainError> {
        self.inner.on_phase_start(&mut m.a, ctx)
    }

    fn on_epoch_end(
        &mut self,
        m: &mut TwoPart,
        ctx: &mut EpochContext<'_>,
        r: &EpochRecord,
    ) -> Result<PhaseControl, TrainError> {
        if self.halve_a_after.contains(&(ctx.epoch + 1)) {
            let scale = ctx.lr_scale("opt_a")?;
            ctx.set_lr_scale("opt_a", scale * 0.5)?;
        }
        self.inner.on_epoch_end(&mut m.a, ctx, r)
    }

    fn validate(
        &mut self,
        m: &TwoPart,
        ctx: &mut EpochContext<'_>,
    ) -> Result<BTreeMap<String, f64>, TrainError> {
        self.inner.validate(&m.a, ctx)
    }
}

#[test]
fn submodule_updates_phases_and_selection() {
    let _serial = relata_train::generator_turn();
    let tmp = tempfile::tempdir().unwrap();
    let dev = device();
    let opt_a = OptimizerConfig::new("opt_a", OptimizerKind::adam(0.0), 0.01);
    // opt_b never moves b: lr 0. Its updates must not touch a, and a's must not touch b.
    let opt_b = OptimizerConfig::new("opt_b", OptimizerKind::sgd(0.9, 0.0), 0.0);
    let cfg = TrainerConfig::new(
        vec![PhaseConfig::new("warm", 3), PhaseConfig::new("main", 2)],
        vec![opt_a, opt_b],
    )
    .with_verbosity(Verbosity::Quiet)
    .with_selection(Some(Selection {
        metric: "loss".into(),
        goal: Goal::Minimize,
    }));
    let model = TwoPart {
        a: Toy::new(&dev, 1),
        b: Toy::new(&dev, 2),
    };
    let b_before = params(&model.b);
    let mut task = TwoPartTask {
        inner: ToyTask::new(),
        halve_a_after: Vec::new(),
    };
    task.inner.end_phase_after = Some(2);
    let out = Trainer::new(cfg.clone(), &dev, open(&tmp.path().join("r"), &cfg, false))
        .unwrap()
        .fit(&mut task, model)
        .unwrap();
    // Each phase ended after 2 epochs.
    let phases: Vec<(&str, usize)> = out
        .epochs
        .iter()
        .map(|r| (r.phase.as_str(), r.epoch_in_phase))
        .collect();
    assert_eq!(
        phases,
        vec![("warm", 1), ("warm", 2), ("main", 1), ("main", 2)]
    );
    assert_eq!(task.inner.phase_starts, vec!["warm", "main"]);
    assert_eq!(params(&out.model.b), b_before);
    assert!(out.epochs[0].loss.contains_key("a") && out.epochs[0].loss.contains_key("b"));
    // Selection picked the epoch with the lowest validation loss and restored its weights.
    let best = out.best.as_ref().expect("selection ran");
    let min = out
        .epochs
        .iter()
        .map(|r| r.val["loss"])
        .fold(f64::INFINITY, f64::min);
    assert_eq!(best.state.value, min);
    assert_eq!(out.epochs[best.state.epoch - 1].val["loss"], min);
    if best.state.epoch != out.epochs.len() {
        assert_ne!(params(&best.model.a), params(&out.model.a));
    }
}

#[test]
fn bad_configuration_is_refused_with_the_field_named() {
    let _serial = relata_train::generator_turn();
    let tmp = tempfile::tempdir().unwrap();
    let dev = device();
    let bad = OptimizerConfig::new("model", OptimizerKind::sgd(0.9, 0.0), f64::NAN);
    let cfg = TrainerConfig::new(vec![PhaseConfig::new("train", 1)], vec![bad]);
    let err = Trainer::new(cfg.clone(), &dev, open(&tmp.path().join("r"), &cfg, false))
        .err()
        .unwrap();
    assert!(err.to_string().contains("lr"), "{err}");
    let unknown = TrainerConfig::new(
        vec![PhaseConfig::new("train", 1)],
        vec![OptimizerConfig::new(
            "model",
            OptimizerKind::sgd(0.0, 0.0),
            0.1,
        )],
    )
    .with_selection(Some(Selection {
        metric: "map".into(),
        goal: Goal::Maximize,
    }))
    .with_verbosity(Verbosity::Quiet);
    let err = Trainer::new(
        unknown.clone(),
        &dev,
        open(&tmp.path().join("u"), &unknown, false),
    )
    .unwrap()
    .fit(&mut ToyTask::new(), Toy::new(&dev, 3))
    .err()
    .unwrap();
    assert!(err.to_string().contains("`map` is not among"), "{err}");
}

/// `FitOptions::save_initial` writes a run's start, `initial` starts another run from it
/// whatever its own draw, and `log_steps` keeps every step's terms: a run from a shared start
/// repeats the first run's step log exactly, a run from its own draw does not.
#[test]
fn a_shared_start_repeats_the_step_log() {
    // Its trainer seeds the shared device generator every epoch, which would move the dropout
    // masks of a test training beside it.
    let _serial = relata_train::generator_turn();
    let root = tempfile::tempdir().unwrap();
    let start = root.path().join("start/initial.bpk");
    let plain = DeviceChoice::Flex.device().unwrap();
    let fit = |name: &str, model_seed: u64, initial: Option<&Path>, save: Option<&Path>| {
        let mut options = relata_train::FitOptions::new("toy", "toy-data");
        options.run = RunOptions::new("toy", "toy-data").with_dir(root.path().join(name));
        options.verbosity = Verbosity::Quiet;
        options.log_steps = true;
        options.initial = initial.map(Path::to_path_buf);
        options.save_initial = save.map(Path::to_path_buf);
        // No dropout: the device generator is shared with the tests running beside this one.
        relata_train::fit_task(&model_seed, config(2), &plain, &options, |d| {
            let model = Toy {
                dropout: DropoutConfig::new(0.0).init(),
                ..Toy::new(d, model_seed)
            };
            Ok::<_, TrainError>((ToyTask::new(), model))
        })
    };
    let steps = |f: &relata_train::Fitted<ToyTask>| -> Vec<relata_train::StepLoss> {
        f.outcome
            .epochs
            .iter()
            .flat_map(|e| e.steps_log.clone())
            .collect()
    };
    let first = fit("a", 1, None, Some(&start)).unwrap();
    assert!(start.is_file());
    let log = steps(&first);
    assert_eq!(log.len(), 2 * TRAIN / BATCH);
    assert_eq!(log[3].global_step, 3);
    assert!(log[0].terms.contains_key("ce"), "{:?}", log[0]);
    // Written to metrics.jsonl too.
    let text = fs::read_to_string(root.path().join("a/metrics.jsonl")).unwrap();
    assert!(text.contains("steps_log"));

    let shared = fit("b", 2, Some(&start), None).unwrap();
    assert_eq!(steps(&shared), log);
    let own = fit("c", 2, None, None).unwrap();
    assert_ne!(steps(&own)[0].terms, log[0].terms);
    // Without log_steps the epoch records carry no steps.
    let plain_run = run_toy(
        &device(),
        &config(1),
        &root.path().join("d"),
        false,
        None,
        1,
    );
    assert!(plain_run.epochs.iter().all(|e| e.steps_log.is_empty()));

    let missing = root.path().join("nowhere.bpk");
    let e = fit("e", 1, Some(&missing), None).err().unwrap().to_string();
    assert!(e.contains("nowhere.bpk"), "{e}");
    fs::write(&missing, b"not a record").unwrap();
    let e = fit("f", 1, Some(&missing), None).err().unwrap().to_string();
    assert!(e.contains("nowhere.bpk") && e.contains("corrupt"), "{e}");
}

/// Early stopping ends training once the selection metric has gone `patience` epochs without a
/// new best, keeps that best, and a run interrupted before the stop and resumed stops at the
/// same epoch. Patience without a selection metric, or of 0, is refused.
#[test]
fn patience_stops_at_a_plateau_and_resumes_to_the_same_stop() {
    let _serial = relata_train::generator_turn();
    let tmp = tempfile::tempdir().unwrap();
    let dev = device();
    // Best 0.30 at epoch 2; epochs 3–5 stay below it: with patience 3 the run ends after epoch 5
    // of 10, before epoch 6's 0.50 is ever reached.
    let scores = vec![0.10, 0.30, 0.20, 0.30, 0.29, 0.50, 0.6, 0.7, 0.8, 0.9];
    let cfg = config(10)
        .with_selection(Some(Selection {
            metric: "score".into(),
            goal: Goal::Maximize,
        }))
        .with_patience(Some(3));
    // `cfg` (or another configuration) on the scripted `scores`, in its own directory.
    let run =
        |cfg: &TrainerConfig, dir: &str, scores: &[f64], resume: bool, stop: Option<usize>| {
            let mut trainer =
                Trainer::new(cfg.clone(), &dev, open(&tmp.path().join(dir), cfg, resume)).unwrap();
            if let Some(n) = stop {
                trainer = trainer.stop_after_epochs(n);
            }
            let mut task = ToyTask::new();
            task.scores = Some(scores.to_vec());
            trainer.fit(&mut task, Toy::new(&dev, 3)).unwrap()
        };
    let whole = run(&cfg, "whole", &scores, false, None);
    assert!(whole.completed);
    assert_eq!(whole.epochs.len(), 5, "stopped after epoch 5");
    let best = whole.best.as_ref().expect("selection ran");
    assert_eq!((best.state.epoch, best.state.value), (2, 0.30));
    assert_ne!(params(whole.selected()), params(&whole.model));

    let first = run(&cfg, "split", &scores, false, Some(3));
    assert!(!first.completed);
    let resumed = run(&cfg, "split", &scores, true, None);
    assert!(resumed.completed);
    assert_eq!(resumed.epochs.len(), 5);
    assert_eq!(resumed.best.as_ref().unwrap().state.epoch, 2);

    // Without patience the same scores train all ten epochs.
    let plain = config(10).with_selection(cfg.selection.clone());
    assert_eq!(run(&plain, "plain", &scores, false, None).epochs.len(), 10);

    // With one drop the first plateau divides the learning rate by 10 and the patience counts
    // again from there: 0.30 at epoch 2, a drop after epoch 5, the 0.50 of epoch 6 a new best,
    // and the rising scores after it never plateau.
    let dropping = cfg.clone().with_plateau_drops(1);
    let out = run(&dropping, "drop", &scores, false, None);
    assert_eq!(out.epochs.len(), 10);
    let lr = |e: usize| out.epochs[e].lr["model"];
    // MultiStep ÷ 10 at epoch 3 (0-based) as well; the drop is another ÷ 10 from epoch 6 on.
    assert!((lr(4) / lr(5) - 10.0).abs() < 1e-9, "{} {}", lr(4), lr(5));
    let mut flat = scores.clone();
    flat[5..].fill(0.0);
    // Drop after epoch 5, three more epochs without a new best, stop after epoch 8.
    assert_eq!(
        run(&dropping, "drop-flat", &flat, false, None).epochs.len(),
        8
    );

    for (dir, bad, why) in [
        (
            "bad3",
            config(10).with_plateau_drops(1),
            "plateau_drops = 1 needs a patience",
        ),
        (
            "bad4",
            cfg.clone().with_plateau_factor(1.5),
            "plateau_factor = 1.5",
        ),
        (
            "bad1",
            config(10).with_patience(Some(3)),
            "needs a selection metric",
        ),
        ("bad2", cfg.clone().with_patience(Some(0)), "patience = 0"),
    ] {
        let err = Trainer::new(bad.clone(), &dev, open(&tmp.path().join(dir), &bad, false))
            .err()
            .expect("refused");
        assert!(err.to_string().contains(why), "{err}");
    }
}

/// A task's own learning-rate multiplier reaches only the optimiser it names, holds across
/// phases, survives a resume, and refuses an unknown optimiser or a bad value.
#[test]
fn a_task_scales_one_optimizers_learning_rate() {
    let _serial = relata_train::generator_turn();
    let tmp = tempfile::tempdir().unwrap();
    let dev = device();
    let opt_a = OptimizerConfig::new("opt_a", OptimizerKind::sgd(0.0, 0.0), 0.1);
    let opt_b = OptimizerConfig::new("opt_b", OptimizerKind::sgd(0.0, 0.0), 0.1);
    let cfg = TrainerConfig::new(
        vec![PhaseConfig::new("one", 3), PhaseConfig::new("two", 3)],
        vec![opt_a, opt_b],
    )
    .with_verbosity(Verbosity::Quiet);
    let run = |dir: &str, resume: bool, stop: Option<usize>| {
        let mut trainer =
            Trainer::new(cfg.clone(), &dev, open(&tmp.path().join(dir), &cfg, resume)).unwrap();
        if let Some(n) = stop {
            trainer = trainer.stop_after_epochs(n);
        }
        let mut task = TwoPartTask {
            inner: ToyTask::new(),
            halve_a_after: vec![2, 4],
        };
        let model = TwoPart {
            a: Toy::new(&dev, 1),
            b: Toy::new(&dev, 2),
        };
        trainer.fit(&mut task, model).unwrap()
    };
    let whole = run("whole", false, None);
    let lrs = |out: &relata_train::FitOutcome<TwoPart>, name: &str| -> Vec<f64> {
        out.epochs.iter().map(|r| r.lr[name]).collect()
    };
    let a = lrs(&whole, "opt_a");
    let want = [0.1, 0.1, 0.05, 0.05, 0.025, 0.025];
    for (got, want) in a.iter().zip(want) {
        assert!((got - want).abs() < 1e-12, "opt_a {a:?}");
    }
    assert!(lrs(&whole, "opt_b").iter().all(|&l| l == 0.1));
    // Interrupted after epoch 3 (after the first halving, in the next phase) and resumed.
    assert!(!run("split", false, Some(3)).completed);
    let resumed = run("split", true, None);
    assert_eq!(lrs(&resumed, "opt_a"), a);
    assert_eq!(params(&resumed.model.a), params(&whole.model.a));

    // Unknown names and bad values are refused with the known names listed.
    struct Bad(&'static str, f64);
    impl TrainTask for Bad {
        type Model = Toy;
        type Batch = Vec<usize>;
        fn epoch_batches(
            &mut self,
            _: &mut EpochContext<'_>,
        ) -> Result<Vec<Vec<usize>>, TrainError> {
            Ok(vec![vec![0, 1]])
        }
        fn step(
            &mut self,
            m: Toy,
            _: &Vec<usize>,
            _: &mut StepContext<'_>,
        ) -> Result<Toy, TrainError> {
            Ok(m)
        }
        fn on_epoch_end(
            &mut self,
            _: &mut Toy,
            ctx: &mut EpochContext<'_>,
            _: &EpochRecord,
        ) -> Result<PhaseControl, TrainError> {
            ctx.set_lr_scale(self.0, self.1)?;
            Ok(PhaseControl::Continue)
        }
        fn validate(
            &mut self,
            _: &Toy,
            _: &mut EpochContext<'_>,
        ) -> Result<BTreeMap<String, f64>, TrainError> {
            Ok(BTreeMap::new())
        }
    }
    for (k, (name, value, says)) in [("opt_c", 0.5, "opt_a"), ("opt_a", 0.0, "positive")]
        .into_iter()
        .enumerate()
    {
        let dir = tmp.path().join(format!("bad{k}"));
        let err = Trainer::new(cfg.clone(), &dev, open(&dir, &cfg, false))
            .unwrap()
            .fit(&mut Bad(name, value), Toy::new(&dev, 1))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(says), "{err}");
    }
}
