//! `cargo xtask train-bench`: each method's training step at the paper's shapes, on synthetic
//! data, on one device — steady-state steps per second.
//!
//! The benchmark trains through the method's own `fit` (batch loading, hooks, optimisers,
//! host-side work such as CMBH's region boxes), two epochs of `--steps` steps each: the first
//! warms up (shader compilation, autotuning, allocator growth), the second is timed. What a
//! user's training gets, so the time includes loading each batch on the host; the PyTorch
//! references (`benches/python/train_reference.py`) copy a host batch to the device each step
//! for the same reason. Shapes (`--size paper`):
//!
//! | method | network | batch |
//! | --- | --- | --- |
//! | CMBH | ResNet-50, 224², M = 4 regions, 48 bits | 16 |
//! | HREM | 36 × 2,048 region features, BiGRU | 128 |
//! | ISL | CIFAR ResNet-18, 32², memory bank N = 50,000 | 128 |
//! | CSRMS | CIFAR ResNet-18, 32², 5 positives + 5 negatives per anchor | 32 |
//!
//! `--size tiny` is the smoke preset's networks at the same code paths, for CPUs and software
//! GPUs. Peak device memory is measured outside (`gpu-check.sh` samples `nvidia-smi`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use relata_backbone::ResNetDepth;
use relata_dataset::{DataChoice, SynthCaptionsConfig, SynthFineConfig};
use relata_train::{EpochRecord, FitOptions, Preset, RunOptions, Verbosity};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchMethod {
    Cmbh,
    Hrem,
    Isl,
    Csrms,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchSize {
    /// The paper's networks, inputs and batch sizes.
    Paper,
    /// The smoke preset's networks (seconds on a CPU or lavapipe).
    Tiny,
}

#[derive(Args, Debug)]
pub struct TrainBenchArgs {
    /// Which method's step.
    #[arg(value_enum)]
    method: BenchMethod,
    /// Paper shapes or tiny ones.
    #[arg(long, value_enum, default_value = "paper")]
    size: BenchSize,
    /// flex | wgpu | vulkan | tch | tch-cuda[:N] | cuda[:N] (else `BURN_DEVICE`, else flex).
    #[arg(long)]
    device: Option<String>,
    /// Steps per epoch (two epochs: a warm-up and a timed one). ISL's epoch is always its
    /// memory bank's N / batch steps.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Where the JSON result goes (default: stdout only).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Scratch directory for the run (default: a temporary one).
    #[arg(long)]
    scratch: Option<PathBuf>,
}

pub fn run(args: TrainBenchArgs) -> Result<()> {
    if args.steps == 0 {
        bail!("--steps 0: give at least one step per epoch");
    }
    let (choice, device) = relata_train::device::select_device(args.device.as_deref())?;
    let scratch = match &args.scratch {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            tempfile::tempdir_in(dir)?
        }
        None => tempfile::tempdir()?,
    };
    let options = |name: &str| {
        let mut o = FitOptions::new(name, "synth");
        o.run = RunOptions::new(name, "synth")
            .with_dir(scratch.path().join(name))
            .with_overwrite(true);
        o.verbosity = Verbosity::Lines;
        o
    };
    let paper = args.size == BenchSize::Paper;
    let steps = args.steps;
    let t0 = Instant::now();
    let (batch, epochs, shape) = match args.method {
        BenchMethod::Cmbh => cmbh(paper, steps, &device, &options("cmbh"))?,
        BenchMethod::Hrem => hrem(paper, steps, &device, &options("hrem"), scratch.path())?,
        BenchMethod::Isl => isl(paper, steps, &device, &options("isl"))?,
        BenchMethod::Csrms => csrms(paper, steps, &device, &options("csrms"))?,
    };
    let timed = epochs
        .last()
        .filter(|_| epochs.len() >= 2)
        .context("the benchmark trains two epochs; fewer were recorded")?;
    let step_seconds = timed.seconds / timed.steps.max(1) as f64;
    let result = json!({
        "method": format!("{:?}", args.method).to_lowercase(),
        "size": format!("{:?}", args.size).to_lowercase(),
        "device": choice.to_string(),
        "shape": shape,
        "batch": batch,
        "timed_steps": timed.steps,
        "step_seconds": step_seconds,
        "steps_per_second": 1.0 / step_seconds,
        "samples_per_second": timed.samples_per_sec,
        "warmup_seconds": epochs[0].seconds,
        "total_seconds": t0.elapsed().as_secs_f64(),
        "includes": "host batch loading",
    });
    let text = serde_json::to_string_pretty(&result)?;
    println!("{text}");
    if let Some(path) = &args.json {
        write_json(path, &text)?;
    }
    Ok(())
}

fn write_json(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Training images of `per_class` per class in `classes` classes (families of up to 10).
fn synth_images(classes: usize, per_class: usize, side: u32) -> SynthFineConfig {
    let families = classes.div_ceil(10);
    SynthFineConfig {
        families,
        classes_per_family: classes / families,
        modes: 2,
        train_per_class: per_class,
        test_per_class: 1,
        image_size: side,
        seed: relata_train::DEFAULT_SEED,
    }
}

type Outcome = (usize, Vec<EpochRecord>, String);

fn cmbh(
    paper: bool,
    steps: usize,
    device: &burn::tensor::Device,
    o: &FitOptions,
) -> Result<Outcome> {
    use relata_cmbh::{CmbhConfig, CmbhTrainingConfig};
    let (config, side) = if paper {
        let model = CmbhConfig::paper(ResNetDepth::ResNet50, 20, 48);
        (CmbhTrainingConfig::paper(model, 16), 224)
    } else {
        let c = relata_cmbh::reproduce::preset_config(
            Preset::Smoke,
            None,
            "synth-fine",
            4,
            12,
            relata_cmbh::Ablation::FULL,
        );
        (c, 32)
    };
    let batch = config.batch_size;
    let classes = config.model.classes;
    let config = config.with_epochs(2).with_lr_milestones(vec![]);
    let data = DataChoice::SynthFine.open(synth_images(
        classes,
        (batch * steps).div_ceil(classes),
        side,
    ))?;
    let train = &data.split("train")?[..batch * steps];
    let trained = relata_cmbh::fit(&config, train, None, device, o)?;
    let shape = format!(
        "ResNet-{}, {}², M = {} regions, {} bits",
        if paper { 50 } else { 18 },
        config.crop,
        config.model.regions,
        config.model.bits
    );
    Ok((batch, trained.epochs, shape))
}

fn hrem(
    paper: bool,
    steps: usize,
    device: &burn::tensor::Device,
    o: &FitOptions,
    scratch: &Path,
) -> Result<Outcome> {
    use relata_hrem::reproduce::{CaptionData, preset_config, synth_config};
    let preset = if paper { Preset::Paper } else { Preset::Smoke };
    let mut synth: SynthCaptionsConfig = synth_config(Preset::Smoke, relata_train::DEFAULT_SEED);
    if paper {
        synth.regions = 36;
        synth.dim = 2048;
    }
    let config = preset_config(preset, &CaptionData::SynthCaptions, synth.dim, None);
    let batch = config.batch_size;
    // Five captions per scene; one epoch is `steps` whole batches of captions, `steps` rounded
    // up to a multiple of 5 so that no batch is partial.
    synth.train = batch * steps.div_ceil(5);
    synth.dev = 1;
    synth.test = 1;
    let data = synth.write(&scratch.join("captions"))?;
    let train = data.split("train")?;
    // Relation modelling from the first step (the paper switches it on after its warm-up).
    let config = config
        .with_epochs(2)
        .with_lr_milestones(vec![])
        .with_warmup_iterations(0);
    let trained = relata_hrem::fit(&config, train, None, device, o)?;
    let shape = format!(
        "{} × {} region features, BiGRU, embedding {}",
        synth.regions, synth.dim, config.encoder.embed
    );
    Ok((batch, trained.epochs, shape))
}

fn isl(
    paper: bool,
    steps: usize,
    device: &burn::tensor::Device,
    o: &FitOptions,
) -> Result<Outcome> {
    use relata_isl::IslConfig;
    let (config, n) = if paper {
        (IslConfig::cifar(), 50_000)
    } else {
        let c = relata_isl::reproduce::preset_config(Preset::Smoke);
        let n = c.batch_size * steps;
        (c, n)
    };
    // Round 0 alone: the backbone phase's step (memory-bank softmax and update), on every image
    // (the cosine schedule holds none out for a monitor), so that the bank has N entries.
    let config = config
        .with_rounds(1)
        .with_backbone_epochs(2)
        .with_lr_schedule(relata_isl::IslLrSchedule::CosinePerRound);
    let batch = config.batch_size;
    // At most 1,000 distinct images, repeated to N entries: rendering 50,000 would take longer
    // than the benchmark, and the step does not depend on what the pixels show.
    let data =
        DataChoice::SynthFine.open(synth_images(10, (n / 10).min(100), config.image_size))?;
    let distinct = data.split("train")?;
    let train: Vec<_> = distinct.iter().cycle().take(n).cloned().collect();
    let (train, test) = (&train[..], data.split("test")?);
    let trained = relata_isl::fit(&config, train, test, device, o)?;
    let shape = format!(
        "CIFAR ResNet-18{}, {}², memory bank N = {}",
        if paper { "" } else { " (width 8)" },
        config.image_size,
        train.len()
    );
    Ok((batch, trained.epochs, shape))
}

fn csrms(
    paper: bool,
    steps: usize,
    device: &burn::tensor::Device,
    o: &FitOptions,
) -> Result<Outcome> {
    use relata_csrms::CsrmsConfig;
    let classes = 10;
    let config = if paper {
        CsrmsConfig::cifar(classes)
    } else {
        relata_csrms::reproduce::preset_config(Preset::Smoke, classes)
    };
    // Relation epochs from the start: the CSRMS step (anchors, positives, negatives, GCN).
    let config = config
        .with_epochs(2)
        .with_warmup_epochs(0)
        .with_refresh_every(1);
    let batch = config.batch_size;
    let data = DataChoice::SynthFine.open(synth_images(
        classes,
        (batch * steps).div_ceil(classes),
        config.image_size,
    ))?;
    let train = &data.split("train")?[..batch * steps];
    let trained = relata_csrms::fit(&config, train, device, o)?;
    let shape = format!(
        "CIFAR ResNet-18, {}², {} anchors × (1 + {} positives + {} negatives)",
        config.image_size, batch, config.positives, config.negatives
    );
    Ok((batch, trained.epochs, shape))
}
