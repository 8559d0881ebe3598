//! `cargo xtask backends`: each method trained end to end on every backend from one start, its
//! loss terms compared step by step with `flex`'s, and one evaluation's metric compared.
//!
//! For each method the check trains its smoke configuration (dropout off) through the method's
//! own `fit` — data pipeline, hooks, optimisers, schedule, checkpoints — first on `flex`, which
//! writes the model's starting parameters (`FitOptions::save_initial`), then on each other device
//! from that record (`FitOptions::initial`): one seed draws different weights on different
//! backends, a shared record does not. Data loading, augmentation, batch order and every other
//! host-side draw come from the run's seeded host streams, so every backend sees the same
//! batches. Every optimiser step's loss terms are logged (`FitOptions::log_steps`) and compared
//! with flex's within `--tolerance` (relative); then the trained model is evaluated once (CMBH:
//! mAP of its codes, HREM: rSum, CSRMS: top-1 of both heads, ISL: weighted kNN top-1) and the
//! metric compared the same way. docs/backends.md lists what the check found.
//!
//! A device that is not compiled into this binary is built for: `cargo xtask backends`
//! re-runs itself through cargo with the backends' features (the `smoke` profile, which shares
//! the backend smoke test's build of burn).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::Device;
use clap::{Args, ValueEnum};
use relata_dataset::{DataChoice, Pipeline};
use relata_train::device::{DeviceChoice, compiled_devices};
use relata_train::export::load_record;
use relata_train::values::{ParamValues as Params, parameter_values};
use relata_train::{FitOptions, Preset, RunOptions, StepLoss, Verbosity};
use serde::Serialize;

/// A method as the check trains it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// CMBH, full model (B+L+T+R), 12 bits.
    Cmbh,
    /// HREM with the BiGRU text encoder.
    HremGru,
    /// HREM with the 2-layer BERT fixture (`fixtures/backbone/bert-tiny`).
    HremBert,
    /// CSRMS, full variant: CE warm-up, relation refresh, both heads.
    Csrms,
    /// ISL: round 0, the GAN, mining, round 1.
    Isl,
}

impl Check {
    const ALL: [Check; 5] = [
        Check::Cmbh,
        Check::HremGru,
        Check::HremBert,
        Check::Csrms,
        Check::Isl,
    ];

    fn name(self) -> &'static str {
        match self {
            Check::Cmbh => "cmbh",
            Check::HremGru => "hrem-gru",
            Check::HremBert => "hrem-bert",
            Check::Csrms => "csrms",
            Check::Isl => "isl",
        }
    }
}

#[derive(Args, Debug)]
pub struct BackendsArgs {
    /// Methods to check, comma-separated (default: all five).
    #[arg(long, value_delimiter = ',')]
    methods: Vec<Check>,
    /// Devices compared with flex, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "wgpu,tch")]
    devices: Vec<String>,
    /// Largest relative difference allowed for a loss term or the metric.
    #[arg(long, default_value_t = 1e-3)]
    tolerance: f64,
    /// Largest distance of the trained parameters from flex's, as a fraction of flex's update.
    /// Adam divides by each gradient's running size, so where a gradient is near zero it turns
    /// rounding into whole steps (HREM: 1e-2 after 38 steps); a wrong update is apart by ~1.
    #[arg(long, default_value_t = 5e-2)]
    param_tolerance: f64,
    /// Seed of the data and of the start.
    #[arg(long, default_value_t = relata_train::DEFAULT_SEED)]
    seed: u64,
    /// Where runs and the report go (default: runs/backends).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Python with torch==2.9.0, for building the tch backend.
    #[arg(long, env = "RELATA_PYTHON", default_value = "python3")]
    python: String,
}

/// What one method's run on one device produced.
#[derive(Debug, Clone, Default)]
struct Trace {
    steps: Vec<StepLoss>,
    metrics: BTreeMap<String, f64>,
    /// Every trained parameter after the last step.
    params: Params,
    /// The same parameters at the start (the shared record).
    initial: Params,
    seconds: f64,
}

/// The learning rates of the check, as a fraction of the smoke preset's. At the smoke learning
/// rates the image methods' trajectories part between any two backends within a few steps:
/// float rounding (1e-7) grows by one to two orders of magnitude per step (CMBH, flex against
/// wgpu: 3e-4 apart at step 2, 1e-2 at step 3; CSRMS and ISL 5e-2 and 3e-2 by the last step),
/// and discrete choices (CMBH's region boxes, CSRMS's clusters and samples, ISL's hardest
/// negatives) turn it into different batches. CMBH's sums of per-image losses take steps large
/// enough that a thousandth of its rate still parts flex from wgpu and tch by 3e-3 after five
/// steps; at the fractions below every pair of backends stays within 1e-5, and the parameter
/// comparison still measures every update. HREM, at its own rate, stays within 3e-4.
fn lr_scale(method: Check) -> f64 {
    match method {
        Check::HremGru | Check::HremBert => 1.0,
        Check::Cmbh => 1e-4,
        Check::Csrms | Check::Isl => 0.01,
    }
}

/// `model`'s parameters after training, and the same module's at the start `record` holds.
fn params_of<M: Module>(model: &M, record: &Path) -> Result<(Params, Params)> {
    let start = load_record(model.clone(), record, "not the start of this model")?;
    Ok((parameter_values(model), parameter_values(&start)))
}

/// One device against flex, for one method.
#[derive(Debug, Clone, Serialize)]
struct Comparison {
    method: Check,
    device: String,
    steps: usize,
    /// Largest relative difference over every step's terms, and where.
    worst_loss: f64,
    worst_at: String,
    /// Largest relative difference over the evaluation's metrics, and which.
    worst_metric: f64,
    worst_metric_name: String,
    /// Largest difference of a trained parameter from flex's, as a fraction of how far flex's
    /// training moved it, and which.
    worst_param: f64,
    worst_param_at: String,
    seconds: f64,
    flex_seconds: f64,
    passed: bool,
    problem: Option<String>,
}

/// Relative difference with a floor on the scale, so that a term near zero (a regulariser at its
/// optimum) is compared absolutely below 1e-6.
fn relative(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs().max(1e-6)
}

pub fn run(args: BackendsArgs) -> Result<()> {
    let methods = if args.methods.is_empty() {
        Check::ALL.to_vec()
    } else {
        args.methods.clone()
    };
    let devices: Vec<DeviceChoice> = args
        .devices
        .iter()
        .map(|d| d.parse::<DeviceChoice>().map_err(anyhow::Error::msg))
        .collect::<Result<_>>()?;
    if devices.contains(&DeviceChoice::Flex) {
        bail!("--devices lists flex: flex is the reference every device is compared with");
    }
    if devices.iter().any(|d| !d.is_compiled()) {
        return rerun_with_features(&args, &devices);
    }
    let root = crate::ci::workspace_root()?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| root.join("runs/backends"));
    let mut results = Vec::new();
    for &method in &methods {
        let dir = out.join(method.name());
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        let start = dir.join("initial.bpk");
        eprintln!("==> {}: flex (reference)", method.name());
        let flex = train_and_evaluate(
            method,
            &Device::flex(),
            &dir.join("flex"),
            Start::Save(&start),
            args.seed,
            &root,
        )
        .with_context(|| format!("{} on flex", method.name()))?;
        eprintln!(
            "    {} steps, {} in {:.1} s",
            flex.steps.len(),
            metrics_line(&flex.metrics),
            flex.seconds
        );
        for choice in &devices {
            eprintln!("==> {}: {choice}", method.name());
            let device = choice.device().map_err(anyhow::Error::msg)?;
            let run = train_and_evaluate(
                method,
                &device,
                &dir.join(choice.to_string()),
                Start::Load(&start),
                args.seed,
                &root,
            );
            let comparison = match run {
                Ok(trace) => {
                    eprintln!(
                        "    {} steps, {} in {:.1} s",
                        trace.steps.len(),
                        metrics_line(&trace.metrics),
                        trace.seconds
                    );
                    compare(
                        method,
                        choice,
                        &flex,
                        &trace,
                        args.tolerance,
                        args.param_tolerance,
                    )
                }
                Err(e) => Comparison {
                    method,
                    device: choice.to_string(),
                    steps: 0,
                    worst_loss: f64::NAN,
                    worst_at: String::new(),
                    worst_metric: f64::NAN,
                    worst_metric_name: String::new(),
                    worst_param: f64::NAN,
                    worst_param_at: String::new(),
                    seconds: 0.0,
                    flex_seconds: flex.seconds,
                    passed: false,
                    problem: Some(format!("{e:#}")),
                },
            };
            results.push(comparison);
        }
    }
    let table = markdown(&results, args.tolerance, args.param_tolerance);
    println!("{table}");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("report.md"), &table)?;
    std::fs::write(
        out.join("report.json"),
        serde_json::to_vec_pretty(&results)?,
    )?;
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| format!("{} on {}", r.method.name(), r.device))
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} checks differ from flex beyond {:e}: {}",
            failed.len(),
            results.len(),
            args.tolerance,
            failed.join(", ")
        );
    }
    eprintln!("report: {}", out.join("report.md").display());
    Ok(())
}

/// Builds xtask with the features `devices` need (the `smoke` profile) and runs this command
/// again with them.
fn rerun_with_features(args: &BackendsArgs, devices: &[DeviceChoice]) -> Result<()> {
    let mut features = vec!["flex"];
    for d in devices {
        if !features.contains(&d.feature()) {
            features.push(d.feature());
        }
    }
    let tch = features.contains(&"tch");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    if tch {
        crate::ci::configure_libtorch(&mut cmd, &args.python)?;
    }
    crate::ci::private_runtime_dir(&mut cmd)?;
    cmd.args(["run", "--profile", "smoke", "-p", "xtask", "--features"])
        .arg(features.join(","))
        .args(["--", "backends"])
        .arg("--devices")
        .arg(args.devices.join(","))
        .arg("--tolerance")
        .arg(args.tolerance.to_string())
        .arg("--param-tolerance")
        .arg(args.param_tolerance.to_string())
        .arg("--seed")
        .arg(args.seed.to_string());
    if !args.methods.is_empty() {
        let names: Vec<&str> = args.methods.iter().map(|m| m.name()).collect();
        cmd.arg("--methods").arg(names.join(","));
    }
    if let Some(out) = &args.out {
        cmd.arg("--out").arg(out);
    }
    eprintln!(
        "this build has {}; building with --features {}",
        compiled_devices()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        features.join(",")
    );
    let status = cmd
        .current_dir(crate::ci::workspace_root()?)
        .status()
        .context("could not start cargo")?;
    if !status.success() {
        bail!(
            "`cargo xtask backends` with --features {} failed ({status})",
            features.join(",")
        );
    }
    Ok(())
}

enum Start<'a> {
    /// Draw the start from the seed (on flex) and write it here.
    Save(&'a Path),
    /// Start from this record.
    Load(&'a Path),
}

fn options(method: Check, dir: &Path, start: &Start<'_>) -> FitOptions {
    let mut options = FitOptions::new(method.name(), "synth");
    options.run = RunOptions::new(method.name(), "synth")
        .with_dir(dir)
        .with_overwrite(true);
    options.verbosity = Verbosity::Quiet;
    options.log_steps = true;
    match start {
        Start::Save(path) => options.save_initial = Some(path.to_path_buf()),
        Start::Load(path) => options.initial = Some(path.to_path_buf()),
    }
    options
}

fn steps_of(epochs: &[relata_train::EpochRecord]) -> Vec<StepLoss> {
    epochs.iter().flat_map(|e| e.steps_log.clone()).collect()
}

/// Trains `method`'s check configuration on `device` from `start` and evaluates it once.
fn train_and_evaluate(
    method: Check,
    device: &Device,
    dir: &Path,
    start: Start<'_>,
    seed: u64,
    root: &Path,
) -> Result<Trace> {
    let t0 = Instant::now();
    let options = options(method, dir, &start);
    let record = match start {
        Start::Save(path) | Start::Load(path) => path,
    };
    let scale = lr_scale(method);
    let mut trace = Trace::default();
    let metrics = &mut trace.metrics;
    let (steps, (params, initial)) = match method {
        Check::Cmbh => {
            use relata_cmbh::reproduce::{preset_config, synth_config, train_and_test};
            let data = DataChoice::SynthFine.open(synth_config(Preset::Smoke, seed))?;
            let (train, test) = train_and_test(&data, None, seed)?;
            let config = preset_config(
                Preset::Smoke,
                None,
                "synth-fine",
                data.num_classes(),
                12,
                relata_cmbh::Ablation::FULL,
            )
            .with_seed(seed);
            let config = config.clone().with_lr(config.lr * scale);
            let trained = relata_cmbh::fit(&config, &train, None, device, &options)?;
            let params = params_of(&trained.model, record)?;
            let encoder = trained.model.into_encoder();
            let pipeline = Pipeline::cmbh_test_sized(config.resize, config.crop);
            let e = relata_cmbh::evaluate(&encoder, &train, &test, &pipeline, 32, device)?;
            metrics.insert("map".into(), e.map);
            (steps_of(&trained.epochs), params)
        }
        Check::HremGru | Check::HremBert => {
            use relata_hrem::reproduce::{CaptionData, preset_config, synth_config};
            let data = synth_config(Preset::Smoke, seed).write(&dir.join("data"))?;
            let train = data.split("train")?;
            let test = data.split("test")?;
            let bert = root.join("fixtures/backbone/bert-tiny");
            let bert = (method == Check::HremBert).then_some(bert.as_path());
            let mut config =
                preset_config(Preset::Smoke, &CaptionData::SynthCaptions, train.dim, bert)
                    .with_seed(seed)
                    .with_epochs(2)
                    .with_lr_milestones(vec![1]);
            // Dropout draws from each backend's own generator.
            config.encoder.dropout = 0.0;
            let trained = relata_hrem::fit(&config, train, None, device, &options)?;
            let r = relata_hrem::evaluate(
                &trained.model,
                &trained.extra.tokenizer,
                test,
                None,
                device,
            )?;
            metrics.insert("rsum".into(), r.rsum);
            (
                steps_of(&trained.epochs),
                params_of(&trained.model, record)?,
            )
        }
        Check::Csrms => {
            use relata_csrms::reproduce::{preset_config, synth_config};
            let data = DataChoice::SynthFine.open(synth_config(Preset::Smoke, seed))?;
            let classes = data.num_classes();
            let (train, test) = (data.split("train")?, data.split("test")?);
            let config = preset_config(Preset::Smoke, classes).with_seed(seed);
            let config = config
                .clone()
                .with_lr(config.lr * scale)
                .with_gcn_lr(config.gcn_lr * scale);
            let trained = relata_csrms::fit(&config, train, device, &options)?;
            let e = relata_csrms::evaluate(
                &trained.model,
                test,
                &config.test_pipeline(),
                classes,
                device,
            )?;
            metrics.insert("top1".into(), e.top1);
            metrics.insert("gcn_top1".into(), e.gcn_top1);
            (
                steps_of(&trained.epochs),
                params_of(&trained.model, record)?,
            )
        }
        Check::Isl => {
            use relata_isl::reproduce::{preset_config, synth_config};
            let data = DataChoice::SynthFine.open(synth_config(Preset::Smoke, seed))?;
            let (train, test) = (data.split("train")?, data.split("test")?);
            // The cosine schedule, not the plateau rule: the rule's decisions are discrete (a
            // drop or none, from a kNN on a handful of held-out images) and one flip between
            // backends would make the runs incomparable; this check compares the arithmetic.
            let config = preset_config(Preset::Smoke)
                .with_seed(seed)
                .with_lr_schedule(relata_isl::IslLrSchedule::CosinePerRound);
            let config = config
                .clone()
                .with_lr(config.lr * scale)
                .with_gan_lr(config.gan_lr * scale);
            let trained = relata_isl::fit(&config, train, test, device, &options)?;
            metrics.insert("knn_top1".into(), trained.extra.last.knn_top1);
            metrics.insert(
                "mined_per_instance".into(),
                trained.extra.mining.mined_per_instance,
            );
            (
                steps_of(&trained.epochs),
                params_of(&trained.model, record)?,
            )
        }
    };
    if steps.is_empty() {
        bail!("no step was logged");
    }
    trace.steps = steps;
    trace.params = params;
    trace.initial = initial;
    trace.seconds = t0.elapsed().as_secs_f64();
    Ok(trace)
}

fn metrics_line(metrics: &BTreeMap<String, f64>) -> String {
    metrics
        .iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether difference `d` is worse than `so_far`; NaN is the worst and stays so.
fn worse(d: f64, so_far: f64) -> bool {
    !so_far.is_nan() && (d.is_nan() || d > so_far)
}

fn compare(
    method: Check,
    device: &DeviceChoice,
    flex: &Trace,
    other: &Trace,
    tolerance: f64,
    param_tolerance: f64,
) -> Comparison {
    let mut worst = (0.0f64, String::new());
    let mut problem = None;
    if flex.steps.len() != other.steps.len() {
        problem = Some(format!(
            "{} steps against flex's {}",
            other.steps.len(),
            flex.steps.len()
        ));
    }
    for (a, b) in other.steps.iter().zip(&flex.steps) {
        if a.optimizer != b.optimizer || a.terms.keys().ne(b.terms.keys()) {
            problem.get_or_insert_with(|| {
                format!(
                    "step {}: terms {:?} ({}) against flex's {:?} ({})",
                    a.global_step,
                    a.terms.keys().collect::<Vec<_>>(),
                    a.optimizer,
                    b.terms.keys().collect::<Vec<_>>(),
                    b.optimizer
                )
            });
            continue;
        }
        for (name, &want) in &b.terms {
            let d = relative(a.terms[name], want);
            if worst.1.is_empty() || worse(d, worst.0) {
                worst = (d, format!("step {} {name}", b.global_step));
            }
        }
    }
    let mut worst_metric = (0.0f64, String::new());
    for (name, &want) in &flex.metrics {
        let d = other
            .metrics
            .get(name)
            .map_or(f64::INFINITY, |&got| relative(got, want));
        if worst_metric.1.is_empty() || worse(d, worst_metric.0) {
            worst_metric = (d, name.clone());
        }
    }
    let worst_param = match param_drift(flex, other) {
        Ok(w) => w,
        Err(e) => {
            problem.get_or_insert(e);
            (f64::NAN, String::new())
        }
    };
    let passed = problem.is_none()
        && worst.0 <= tolerance
        && worst_metric.0 <= tolerance
        && worst_param.0 <= param_tolerance;
    Comparison {
        method,
        device: device.to_string(),
        steps: other.steps.len(),
        worst_loss: worst.0,
        worst_at: worst.1,
        worst_metric: worst_metric.0,
        worst_metric_name: worst_metric.1,
        worst_param: worst_param.0,
        worst_param_at: worst_param.1,
        seconds: other.seconds,
        flex_seconds: flex.seconds,
        passed,
        problem,
    }
}

/// How far a device's trained parameters are from flex's, as a fraction of how far flex's
/// training moved them: `‖θ_device − θ_flex‖ / ‖θ_flex − θ_start‖` over every float parameter
/// (one vector), and the tensor that contributes most to the numerator. Per tensor the ratio
/// is rounding noise wherever the true gradient is zero (a batch-norm shift followed by a
/// normalisation), so only the whole vector is judged.
fn param_drift(flex: &Trace, other: &Trace) -> Result<(f64, String), String> {
    let (mut apart, mut moved) = (0f64, 0f64);
    let mut largest = (0f64, String::new());
    for (path, want) in &flex.params {
        let got = other
            .params
            .get(path)
            .ok_or_else(|| format!("parameter `{path}` is missing"))?;
        let start = &flex.initial[path];
        if got.len() != want.len() {
            return Err(format!(
                "`{path}`: {} values against {}",
                got.len(),
                want.len()
            ));
        }
        let sq = |a: &[f32], b: &[f32]| -> f64 {
            a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum()
        };
        let d = sq(got, want);
        moved += sq(want, start);
        apart += d;
        if largest.1.is_empty() || worse(d, largest.0) {
            largest = (d, path.clone());
        }
    }
    if moved == 0.0 {
        return Err("flex's training did not move any parameter".into());
    }
    Ok(((apart / moved).sqrt(), largest.1))
}

fn markdown(results: &[Comparison], tolerance: f64, param_tolerance: f64) -> String {
    let mut s = String::from(
        "| method | device | steps | worst loss term (rel.) | where | worst metric (rel.) | \
         metric | parameters apart (of update) | most apart | seconds (flex) | passed |\n\
         | --- | --- | ---: | ---: | --- | ---: | --- | ---: | --- | ---: | --- |\n",
    );
    for r in results {
        s.push_str(&format!(
            "| {} | {} | {} | {:.1e} | {} | {:.1e} | {} | {:.1e} | {} | {:.1} ({:.1}) | {} |\n",
            r.method.name(),
            r.device,
            r.steps,
            r.worst_loss,
            r.worst_at,
            r.worst_metric,
            r.worst_metric_name,
            r.worst_param,
            r.worst_param_at,
            r.seconds,
            r.flex_seconds,
            if r.passed { "yes" } else { "**no**" }
        ));
    }
    s.push_str(&format!(
        "\nPassed: every loss term and metric within {tolerance:e} of flex's (relative), every \
         parameter vector within {param_tolerance:e} of flex's update.\n"
    ));
    for r in results.iter().filter(|r| r.problem.is_some()) {
        s.push_str(&format!(
            "\n{} on {}: {}\n",
            r.method.name(),
            r.device,
            r.problem.as_deref().unwrap_or_default()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(losses: &[f64], metric: f64) -> Trace {
        Trace {
            steps: losses
                .iter()
                .enumerate()
                .map(|(i, &l)| StepLoss {
                    global_step: i,
                    optimizer: "sgd".into(),
                    terms: [("total".to_string(), l)].into_iter().collect(),
                })
                .collect(),
            metrics: [("map".to_string(), metric)].into_iter().collect(),
            params: [("w".to_string(), vec![1.0, 2.0])].into_iter().collect(),
            initial: [("w".to_string(), vec![0.0, 2.0])].into_iter().collect(),
            seconds: 1.0,
        }
    }

    #[test]
    fn a_step_or_metric_beyond_the_tolerance_fails_the_check() {
        let flex = trace(&[1.0, 0.5, 0.25], 0.5);
        let wgpu = DeviceChoice::Wgpu;
        let against = |t: &Trace, params: f64| compare(Check::Cmbh, &wgpu, &flex, t, 1e-3, params);
        assert!(against(&trace(&[1.0, 0.5002, 0.25], 0.5), 1e-2).passed);
        let off = against(&trace(&[1.0, 0.51, 0.25], 0.5), 1e-2);
        assert!(!off.passed);
        assert_eq!(off.worst_at, "step 1 total");
        assert!(!against(&trace(&[1.0, 0.5, 0.25], 0.6), 1e-2).passed);
        assert!(!against(&trace(&[1.0, f64::NAN, 0.25], 0.5), 1e-2).passed);
        let short = against(&trace(&[1.0, 0.5], 0.5), 1e-2);
        assert!(!short.passed && short.problem.unwrap().contains("2 steps"));
        // Parameters 5% of flex's update apart.
        let mut drifted = trace(&[1.0, 0.5, 0.25], 0.5);
        drifted.params.insert("w".into(), vec![1.05, 2.0]);
        let p = against(&drifted, 1e-2);
        assert!(!p.passed && (p.worst_param - 0.05).abs() < 1e-6, "{p:?}");
        assert!(against(&drifted, 0.1).passed);
    }
}
