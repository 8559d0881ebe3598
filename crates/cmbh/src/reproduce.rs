//! `cargo xtask reproduce cmbh` as a library call: presets, datasets, one training run per
//! (variant, bits), evaluation, the encoder + Hamming index saved per run, and the results table
//! (docs/design.md, Training and results) with the paper's Table 2 / Table 4 numbers beside the measured ones.
//!
//! Layout: `<out>/cmbh/<dataset>/<time>/` holds `config.json`, `metrics.json`, `report.md`, and
//! one sub-directory per run, `<variant>-<bits>bits/` (checkpoints, curves, `encoder/`,
//! `index.bin`, `result.json`). `--resume` continues the newest reproduction: finished runs are
//! kept, an interrupted one resumes from its last checkpoint.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use relata_backbone::{ResNetConfig, ResNetDepth};
use relata_dataset::{DatasetError, ImageDataset, Pipeline, ReadOptions, Sample, SynthFineConfig};
use relata_train::{Results, RunDir, RunSettings};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::FitOptions;
use crate::claims::{SeedRows, claim_notes, map_of};
use crate::config::{Ablation, CmbhConfig, CmbhTrainingConfig, LossReduction};
use crate::error::CmbhError;
use crate::eval::evaluate;
use crate::train::fit;

pub use relata_dataset::DataChoice;
pub use relata_train::Preset;

/// Everything `reproduce cmbh` takes.
#[derive(Debug, Clone)]
pub struct ReproduceOptions {
    /// Preset.
    pub preset: Preset,
    /// Data.
    pub data: DataChoice,
    /// Code lengths (default 12, 24, 32, 48).
    pub bits: Vec<usize>,
    /// Also train the B, B+L and B+L+T variants (Table 4).
    pub ablation: bool,
    /// Backbone (default: ResNet-50 for `paper`, ResNet-18 otherwise).
    pub backbone: Option<ResNetDepth>,
    /// ImageNet weights for the backbone (torchvision state dict).
    pub weights: Option<PathBuf>,
    /// Train from a randomly initialised backbone: the `paper` preset refuses to start without
    /// `weights` unless this is set; the `default` preset otherwise fine-tunes the shipped
    /// synth-pretrained ResNet-18 ([`relata_backbone::pretrained`]).
    pub from_scratch: bool,
    /// Override the preset's epochs.
    pub epochs: Option<usize>,
    /// Override the preset's batch size.
    pub batch_size: Option<usize>,
    /// How the losses are reduced over a batch (default: the paper's means and sums).
    pub reduction: LossReduction,
    /// For an image folder without a test split: test images held out per class
    /// ([`DEFAULT_HOLDOUT`] when `None`).
    pub holdout: Option<usize>,
    /// Training images held out per class as a validation split: scored after every epoch
    /// (queries against the rest of the training split), and where the preset has a patience,
    /// the epoch to keep and when to stop. [`default_validation`] of the preset unless set.
    pub validation: Option<usize>,
    /// Report the validation split's mAP instead of the test split's, which is then never
    /// read: for choosing settings.
    pub score_on_validation: bool,
    /// Two or more seeds: one reproduction per seed and the mean and spread over them (empty:
    /// the one seed of `settings`).
    pub seeds: Vec<u64>,
    /// Skip images of a real dataset that cannot be read (listed in `config.json` and under the
    /// table) instead of stopping before training.
    pub skip_bad_images: bool,
    /// Seed, runs root, resume / overwrite, progress display of each training run.
    pub settings: RunSettings,
}

impl ReproduceOptions {
    /// Defaults: the `default` preset on synth-fine, 12/24/32/48 bits, full variant only.
    pub fn new(preset: Preset) -> Self {
        Self {
            preset,
            data: DataChoice::SynthFine,
            bits: vec![12, 24, 32, 48],
            ablation: false,
            backbone: None,
            weights: None,
            from_scratch: false,
            epochs: None,
            batch_size: None,
            reduction: LossReduction::Paper,
            holdout: None,
            validation: default_validation(preset),
            score_on_validation: false,
            seeds: Vec::new(),
            skip_bad_images: false,
            settings: RunSettings::default(),
        }
    }
}

/// Training images per class the `default` preset holds out as its validation split (of
/// synth-fine's 40).
pub const DEFAULT_VALIDATION: usize = 8;

/// The validation split a preset holds out of the training data: the `default` preset's
/// early stopping needs one; the paper's protocol has none, and `smoke` is for seconds.
pub fn default_validation(preset: Preset) -> Option<usize> {
    match preset {
        Preset::Default => Some(DEFAULT_VALIDATION),
        Preset::Paper | Preset::Smoke => None,
    }
}

/// The synth-fine generator settings of a preset.
pub fn synth_config(preset: Preset, seed: u64) -> SynthFineConfig {
    match preset {
        Preset::Smoke => SynthFineConfig {
            families: 2,
            classes_per_family: 2,
            modes: 2,
            train_per_class: 8,
            test_per_class: 4,
            image_size: 32,
            seed,
        },
        _ => SynthFineConfig {
            seed,
            ..SynthFineConfig::default()
        },
    }
}

/// The paper's batch size for a dataset (Sec. 5.4): 16 for CUB-200-2011 and FGVC-Aircraft, 64
/// for the three large sets (Food-101, NABirds, VegFru); 16 for any other data.
pub fn paper_batch_size(dataset: &str) -> usize {
    match dataset {
        "food101" | "nabirds" | "vegfru" => 64,
        _ => 16,
    }
}

/// The training configuration of a preset for a dataset (its name, as
/// [`DataChoice::name`]), `classes` and `bits`.
pub fn preset_config(
    preset: Preset,
    depth: Option<ResNetDepth>,
    dataset: &str,
    classes: usize,
    bits: usize,
    ablation: Ablation,
) -> CmbhTrainingConfig {
    match preset {
        Preset::Paper => {
            let model = CmbhConfig::paper(depth.unwrap_or(ResNetDepth::ResNet50), classes, bits)
                .with_ablation(ablation);
            CmbhTrainingConfig::paper(model, paper_batch_size(dataset))
        }
        Preset::Default => {
            // From scratch on 64×64 synth-fine within minutes on 2 cores (docs/cmbh.md): a
            // width-8 ResNet-18, α = 4 (α = 16 saturates the softmax of randomly initialised
            // cosine scores and learns far slower without ImageNet features), M = 2 regions
            // (each region costs a full forward/backward pass), and the larger learning rate of
            // training from scratch.
            let backbone = ResNetConfig::new(depth.unwrap_or(ResNetDepth::ResNet18)).with_width(8);
            let model = CmbhConfig::new(backbone, classes, bits)
                .with_dim(64)
                .with_sub_hidden(64)
                .with_alpha(4.0)
                .with_regions(2)
                .with_ablation(ablation);
            scratch_steps(
                CmbhTrainingConfig::new(model)
                    .with_epochs(DEFAULT_MAX_EPOCHS)
                    .with_patience(Some(DEFAULT_PATIENCE))
                    .with_plateau_drops(1)
                    .with_batch_size(16)
                    .with_lr_milestones(vec![])
                    .with_resize(73)
                    .with_crop(64),
            )
        }
        Preset::Smoke => {
            let backbone = ResNetConfig::new(depth.unwrap_or(ResNetDepth::ResNet18)).with_width(8);
            let model = CmbhConfig::new(backbone, classes, bits)
                .with_dim(16)
                .with_sub_hidden(16)
                .with_alpha(4.0)
                .with_regions(2)
                .with_ablation(ablation);
            scratch_steps(
                CmbhTrainingConfig::new(model)
                    .with_epochs(2)
                    .with_batch_size(8)
                    .with_lr_milestones(vec![])
                    .with_resize(36)
                    .with_crop(32),
            )
        }
    }
}

/// The default preset's longest run; it stops earlier at the second validation plateau.
const DEFAULT_MAX_EPOCHS: usize = 60;
/// Epochs without a better validation mAP that make a plateau in the default preset (the
/// first divides the learning rate by 10, the second stops).
const DEFAULT_PATIENCE: usize = 6;

/// SGD learning rate and weight decay of the from-scratch presets under the all-means
/// reduction.
const SCRATCH_LR: f64 = 0.05;
const SCRATCH_WEIGHT_DECAY: f64 = 5e-4;

/// The from-scratch presets' step size for `config`'s batch size and loss reduction
/// ([`all_means_step`] of lr 0.05 and weight decay 5e-4; at lr 0.05 the classification sums
/// diverged within two epochs).
fn scratch_steps(config: CmbhTrainingConfig) -> CmbhTrainingConfig {
    all_means_step(config, SCRATCH_LR, SCRATCH_WEIGHT_DECAY)
}

/// `config` with the SGD step that `lr` and `weight_decay` take under the all-means reduction,
/// translated to `config`'s reduction and batch size. Under the paper's sums the loss is the
/// all-means reading's with the classification terms × batch; the learning rate ÷ batch and
/// the weight decay × batch make each SGD step that of the all-means reading with the hash
/// terms weighted 1/batch.
pub fn all_means_step(
    config: CmbhTrainingConfig,
    lr: f64,
    weight_decay: f64,
) -> CmbhTrainingConfig {
    let b = config
        .model
        .reduction
        .classification_scale(config.batch_size);
    config.with_lr(lr / b).with_weight_decay(weight_decay * b)
}

/// `config` (of `preset`) trained under `reduction`: for the from-scratch presets with their
/// step size recomputed for it (lr ÷ batch and weight decay × batch under the paper's sums); the
/// paper's settings stay the paper's.
pub fn with_reduction(
    config: CmbhTrainingConfig,
    preset: Preset,
    reduction: LossReduction,
) -> CmbhTrainingConfig {
    let mut config = config;
    config.model.reduction = reduction;
    match preset {
        Preset::Paper => config,
        Preset::Smoke | Preset::Default => scratch_steps(config),
    }
}

/// Table 2 (ResNet-50 mAP, %): dataset → [12, 24, 32, 48] bits.
pub const PAPER_TABLE2: [(&str, [f64; 4]); 5] = [
    ("cub", [84.07, 85.79, 86.21, 86.47]),
    ("aircraft", [89.11, 91.45, 91.60, 92.88]),
    ("food101", [87.85, 88.71, 89.28, 88.87]),
    ("nabirds", [74.42, 81.04, 81.64, 82.07]),
    ("vegfru", [84.37, 88.63, 88.46, 89.06]),
];

/// Table 4 (CUB ablation, mAP %): variant → [12, 24, 32, 48] bits.
pub const PAPER_TABLE4: [(&str, [f64; 4]); 4] = [
    ("B", [17.89, 48.07, 55.25, 51.90]),
    ("B+L", [77.56, 81.12, 81.61, 82.26]),
    ("B+L+T", [80.30, 82.16, 82.68, 82.80]),
    ("full", [84.07, 85.79, 86.21, 86.47]),
];

const PAPER_BITS: [usize; 4] = [12, 24, 32, 48];

/// Table 3 (ResNet-18 on CUB, mAP %) at [16, 32, 48, 64] bits.
pub const PAPER_TABLE3_CUB: [f64; 4] = [82.10, 82.86, 83.36, 83.31];

const PAPER_TABLE3_BITS: [usize; 4] = [16, 32, 48, 64];

fn row(variant: &str, bits: usize, map: f64) -> Map<String, Value> {
    let mut r = Map::new();
    r.insert("variant".into(), json!(variant));
    r.insert("bits".into(), json!(bits));
    r.insert("map".into(), json!(map));
    r
}

/// The paper's rows for this dataset, backbone, bit lengths and variants (mAP as a fraction):
/// ResNet-50 runs beside Table 2 (full) and Table 4 (CUB ablation, 12/24/32/48 bits); ResNet-18
/// runs beside Table 3 (full, CUB only, 16/32/48/64 bits).
pub fn paper_rows(
    dataset: &str,
    depth: ResNetDepth,
    bits: &[usize],
    variants: &[String],
) -> Vec<Map<String, Value>> {
    let mut rows = Vec::new();
    if depth == ResNetDepth::ResNet18 {
        if dataset == "cub" && variants.iter().any(|v| v == "full") {
            for &b in bits {
                if let Some(i) = PAPER_TABLE3_BITS.iter().position(|&p| p == b) {
                    rows.push(row("full", b, PAPER_TABLE3_CUB[i] / 100.0));
                }
            }
        }
        return rows;
    }
    for v in variants {
        let table: Option<[f64; 4]> = if v == "full" {
            PAPER_TABLE2
                .iter()
                .find(|(d, _)| *d == dataset)
                .map(|(_, m)| *m)
        } else if dataset == "cub" {
            PAPER_TABLE4.iter().find(|(n, _)| n == v).map(|(_, m)| *m)
        } else {
            None
        };
        let Some(maps) = table else { continue };
        for &b in bits {
            if let Some(i) = PAPER_BITS.iter().position(|&p| p == b) {
                rows.push(row(v, b, maps[i] / 100.0));
            }
        }
    }
    rows
}

/// What a reproduction produced.
pub struct ReproduceOutcome {
    /// The results table (also in `metrics.json`).
    pub results: Results,
    /// The reproduction's directory.
    pub dir: PathBuf,
}

/// The sub-directory of one run.
pub fn run_name(variant: &str, bits: usize) -> String {
    format!("{variant}-{bits}bits")
}

/// The train and test splits of the chosen data.
/// A real dataset's images are all read once first: an unreadable one stops the run before
/// training, naming every such file, unless `skip_bad_images` lists and skips them.
pub fn load_data(options: &ReproduceOptions) -> Result<ImageDataset, CmbhError> {
    let synth = synth_config(options.preset, options.settings.seed);
    let read = ReadOptions {
        verify_images: true,
        skip_unreadable: options.skip_bad_images,
    };
    options.data.open_with(synth, read).map_err(|e| match e {
        DatasetError::Unreadable { .. } => {
            CmbhError::Config(format!("{e} (on the command line: --skip-bad-images)"))
        }
        other => other.into(),
    })
}

/// Test images held out per class of a folder that has no test split, unless `--holdout` says.
pub const DEFAULT_HOLDOUT: usize = 5;

/// The training and test images of `data`: its `train` and `test` splits or, for an image
/// folder without them (one split, `all`, or `train` alone), `holdout` images per class
/// ([`DEFAULT_HOLDOUT`] by default) held out as the test split, seeded and stratified.
pub fn train_and_test(
    data: &ImageDataset,
    holdout: Option<usize>,
    seed: u64,
) -> Result<(Vec<Sample>, Vec<Sample>), CmbhError> {
    if data.num_classes() < 2 {
        return Err(CmbhError::file(
            &data.root,
            format!(
                "{} class: hashing for retrieval needs at least two (one directory per class)",
                data.num_classes()
            ),
        ));
    }
    if let (Ok(train), Ok(test)) = (data.split("train"), data.split("test")) {
        if holdout.is_some() {
            return Err(CmbhError::file(
                &data.root,
                "has a test split: --holdout is for folders without one (drop it, or train on a \
                 folder of class directories)",
            ));
        }
        return Ok((train.to_vec(), test.to_vec()));
    }
    let pool = data.split("all").or_else(|_| data.split("train"))?;
    let held = relata_dataset::hold_out_per_class(
        pool,
        data.num_classes(),
        holdout.unwrap_or(DEFAULT_HOLDOUT),
        seed,
    )?;
    Ok((held.train, held.validation))
}

/// Saved next to a run's index: which database image each code is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseEntry {
    /// Position in the train split.
    pub index: usize,
    /// Class id.
    pub label: usize,
    /// Class name when known.
    pub class: Option<String>,
    /// File path, or a description of an in-memory image.
    pub image: String,
}

/// Runs the reproduction: one seed in one directory, or with [`ReproduceOptions::seeds`] one
/// reproduction per seed (`seed-<S>/`) and the mean and spread over them.
pub fn reproduce(
    options: &ReproduceOptions,
    device: &Device,
) -> Result<ReproduceOutcome, CmbhError> {
    check_options(options)?;
    if !options.seeds.is_empty() {
        return reproduce_seeds(options, device);
    }
    let dataset = options.data.name();
    let (dir, results) = reproduce_in(
        options,
        |config| {
            Ok(RunDir::open(
                &options.settings.top_run("cmbh", dataset),
                config,
            )?)
        },
        device,
    )?;
    Ok(ReproduceOutcome { results, dir })
}

/// Refuses options that cannot run, before anything is written.
fn check_options(options: &ReproduceOptions) -> Result<(), CmbhError> {
    if options.bits.is_empty() {
        return Err(CmbhError::Config(
            "no bit lengths given (e.g. --bits 12,24)".into(),
        ));
    }
    if options.preset == Preset::Paper && options.weights.is_none() && !options.from_scratch {
        return Err(CmbhError::Config(
            "--preset paper fine-tunes an ImageNet-pretrained backbone: pass --weights with \
             torchvision's ResNet weights (.pth or .safetensors, e.g. resnet50-0676ba61.pth), or \
             --from-scratch to train the paper's schedule without them"
                .into(),
        ));
    }
    if options.score_on_validation && options.validation.filter(|&n| n > 0).is_none() {
        return Err(CmbhError::Config(
            "scoring on the validation split needs one: pass --validation N (images held out \
             per class)"
                .into(),
        ));
    }
    if options.seeds.len() == 1 {
        return Err(CmbhError::Config(
            "one seed in --seeds: pass --seed S for one run, or two or more seeds to compare"
                .into(),
        ));
    }
    Ok(())
}

/// One seed's reproduction in the directory `open_top` opens with the reproduction's
/// `config.json`; its directory and results table.
fn reproduce_in(
    options: &ReproduceOptions,
    open_top: impl FnOnce(&Value) -> Result<RunDir, CmbhError>,
    device: &Device,
) -> Result<(PathBuf, Results), CmbhError> {
    let start = Instant::now();
    if options.preset == Preset::Paper && options.data == DataChoice::SynthFine {
        tracing::warn!("preset `paper` on synth-fine: the paper's settings on the embedded data");
    }
    let validation_per_class = options.validation.filter(|&n| n > 0);
    let data = load_data(options)?;
    let classes = data.num_classes();
    let (train_all, test_all) = train_and_test(&data, options.holdout, options.settings.seed)?;
    let held = validation_per_class
        .map(|n| {
            relata_dataset::hold_out_per_class(&train_all, classes, n, options.settings.seed)
                .map_err(|e| {
                    CmbhError::Config(format!(
                        "{e}; the validation split is --validation N images per class ({} by \
                         default for preset `default`; 0: none)",
                        DEFAULT_VALIDATION
                    ))
                })
        })
        .transpose()?;
    let train = held.as_ref().map_or(train_all.as_slice(), |h| &h.train);
    let validation = held.as_ref().map(|h| h.validation.as_slice());
    // Test queries search the whole training split (the retrieval database, validation images
    // included: they were only held out of the gradient steps); validation queries search the
    // images trained on.
    let split = match validation {
        Some(queries) if options.score_on_validation => Scored {
            database: train,
            queries,
            name: "validation",
        },
        _ => Scored {
            database: &train_all,
            queries: &test_all,
            name: "test",
        },
    };
    let depth = options.backbone.unwrap_or(match options.preset {
        Preset::Paper => ResNetDepth::ResNet50,
        _ => ResNetDepth::ResNet18,
    });
    let synth_pretrained = options.preset == Preset::Default
        && options.weights.is_none()
        && !options.from_scratch
        && depth == ResNetDepth::ResNet18;
    if options.preset == Preset::Default
        && options.weights.is_none()
        && !options.from_scratch
        && !synth_pretrained
    {
        tracing::warn!(
            "preset `default` with {depth:?}: no shipped pretrained weights for it, training the \
             backbone from scratch"
        );
    }
    let variants: Vec<Ablation> = if options.ablation {
        Ablation::table4().to_vec()
    } else {
        vec![Ablation::FULL]
    };
    let dataset = options.data.name();
    let top_config = json!({
        "method": "cmbh",
        "dataset": dataset,
        "preset": options.preset.name(),
        "bits": options.bits,
        "variants": variants.iter().map(Ablation::variant).collect::<Vec<_>>(),
        "backbone": options.backbone,
        "weights": match (&options.weights, synth_pretrained) {
            (Some(w), _) => json!(w),
            (None, true) => json!(relata_backbone::pretrained::SYNTH_RESNET18_W8_FILE),
            (None, false) => Value::Null,
        },
        "from_scratch": options.weights.is_none() && !synth_pretrained,
        "epochs": options.epochs,
        "batch_size": options.batch_size,
        "reduction": options.reduction,
        "holdout": options.holdout,
        "validation": validation_per_class,
        "scored_on": split.name,
        "skipped_images": data.problems,
        "seed": options.settings.seed,
    });
    let top = open_top(&top_config)?;
    let weights = match &options.weights {
        Some(w) => Some(w.clone()),
        None if synth_pretrained => Some(relata_backbone::pretrained::write_synth_resnet18_w8(
            top.path(),
        )?),
        None => None,
    };
    let mut rows = Vec::new();
    for ablation in &variants {
        for &bits in &options.bits {
            let mut config = preset_config(
                options.preset,
                options.backbone,
                dataset,
                classes,
                bits,
                *ablation,
            );
            config.seed = options.settings.seed;
            if let Some(b) = options.batch_size {
                config.batch_size = b;
            }
            let mut config = with_reduction(config, options.preset, options.reduction);
            if let Some(e) = options.epochs {
                config.epochs = e;
                config.lr_milestones.retain(|&m| m < e);
            }
            let name = run_name(&ablation.variant(), bits);
            let dir = top.path().join(&name);
            let map = run_one(
                options,
                &config,
                Inputs {
                    train,
                    validation,
                    scored: &split,
                    weights: weights.as_deref(),
                },
                &data,
                &dir,
                device,
            )?;
            println!("cmbh {dataset} {name}: mAP@all {map:.4}");
            rows.push(row(&ablation.variant(), bits, map));
        }
    }
    let variant_names: Vec<String> = variants.iter().map(Ablation::variant).collect();
    let mut notes = claim_notes(
        &[(options.settings.seed, rows.clone())],
        mean_region_share(top.path()),
    );
    if !data.problems.is_empty() {
        let n = data.problems.len();
        notes.push(if n == 1 {
            "1 unreadable image was skipped (--skip-bad-images); config.json names it.".into()
        } else {
            format!(
                "{n} unreadable images were skipped (--skip-bad-images); config.json lists them."
            )
        });
    }
    let results = Results {
        method: "cmbh".into(),
        dataset: if options.score_on_validation {
            format!("{dataset}, scored on validation")
        } else {
            dataset.into()
        },
        preset: options.preset.name().into(),
        device: format!("{device:?}"),
        seconds: start.elapsed().as_secs_f64(),
        rows,
        // The paper's numbers are test numbers: none beside a validation score.
        paper: if options.score_on_validation {
            Vec::new()
        } else {
            paper_rows(dataset, depth, &options.bits, &variant_names)
        },
        notes,
    };
    if validation.is_some() {
        plot_validation_map(top.path(), &top.curves())?;
    }
    top.write_results(&results)?;
    Ok((top.path().to_path_buf(), results))
}

/// One reproduction per seed of [`ReproduceOptions::seeds`] under one directory
/// (`seed-<S>/`, each laid out as a single-seed reproduction), and a table of the mean mAP,
/// its spread and every seed's value, with the paper's claims judged over the seeds under it.
fn reproduce_seeds(
    options: &ReproduceOptions,
    device: &Device,
) -> Result<ReproduceOutcome, CmbhError> {
    let start = Instant::now();
    let dataset = options.data.name();
    let config = json!({
        "method": "cmbh",
        "dataset": dataset,
        "preset": options.preset.name(),
        "seeds": options.seeds,
        "bits": options.bits,
        "ablation": options.ablation,
        "backbone": options.backbone,
        "weights": options.weights,
        "from_scratch": options.from_scratch,
        "epochs": options.epochs,
        "batch_size": options.batch_size,
        "reduction": options.reduction,
        "holdout": options.holdout,
        "validation": options.validation,
        "score_on_validation": options.score_on_validation,
        "skip_bad_images": options.skip_bad_images,
    });
    let top = RunDir::open(&options.settings.top_run("cmbh", dataset), &config)?;
    let mut per_seed: Vec<(u64, Results)> = Vec::new();
    for &seed in &options.seeds {
        let mut one = options.clone();
        one.seeds = Vec::new();
        one.settings.seed = seed;
        let dir = top.path().join(format!("seed-{seed}"));
        let run = relata_train::RunOptions::new("cmbh", dataset)
            .with_dir(&dir)
            .with_resume(options.settings.resume && dir.join("config.json").exists())
            .with_overwrite(options.settings.overwrite);
        eprintln!("seed {seed}: {}", dir.display());
        let (_, results) = reproduce_in(&one, |c| Ok(RunDir::open(&run, c)?), device)?;
        per_seed.push((seed, results));
    }
    let results = over_seeds(
        &per_seed,
        start.elapsed().as_secs_f64(),
        mean_region_share(top.path()),
    );
    if options.validation.is_some_and(|n| n > 0) {
        plot_validation_map(top.path(), &top.curves())?;
    }
    top.write_results(&results)?;
    Ok(ReproduceOutcome {
        results,
        dir: top.path().to_path_buf(),
    })
}

/// The results of several seeds as one table: per (variant, bits) the mean mAP, its sample
/// standard deviation and each seed's mAP; the paper's rows and the claims judged over seeds.
fn over_seeds(per_seed: &[(u64, Results)], seconds: f64, region_share: Option<f64>) -> Results {
    let first = &per_seed[0].1;
    let rows = first
        .rows
        .iter()
        .map(|r| {
            let variant = r["variant"].as_str().unwrap_or_default();
            let bits = r["bits"].as_u64().unwrap_or_default();
            let maps: Vec<(u64, f64)> = per_seed
                .iter()
                .filter_map(|(seed, res)| Some((*seed, map_of(&res.rows, variant, bits)?)))
                .collect();
            let values: Vec<f64> = maps.iter().map(|&(_, m)| m).collect();
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let sd = (values.iter().map(|m| (m - mean).powi(2)).sum::<f64>()
                / (values.len().max(2) - 1) as f64)
                .sqrt();
            let mut out = row(variant, bits as usize, mean);
            out.insert("sd".into(), json!(sd));
            for (seed, m) in maps {
                out.insert(format!("seed {seed}"), json!(m));
            }
            out
        })
        .collect();
    let seeds: Vec<SeedRows> = per_seed
        .iter()
        .map(|(seed, r)| (*seed, r.rows.clone()))
        .collect();
    Results {
        method: first.method.clone(),
        dataset: format!("{}, {} seeds", first.dataset, per_seed.len()),
        preset: first.preset.clone(),
        device: first.device.clone(),
        seconds,
        rows,
        paper: first.paper.clone(),
        notes: claim_notes(&seeds, region_share),
    }
}

/// The mean over the full model's runs under `top` (`full-<b>bits/`, or `seed-<S>/full-<b>bits/`)
/// of the region term's share of the training loss at the run's last epoch.
fn mean_region_share(top: &Path) -> Option<f64> {
    let share = |dir: PathBuf| -> Option<f64> {
        let text = fs::read_to_string(dir.join("result.json")).ok()?;
        serde_json::from_str::<Value>(&text).ok()?["region_share"].as_f64()
    };
    let runs = |dir: &Path| -> Vec<PathBuf> {
        fs::read_dir(dir).map_or_else(
            |_| Vec::new(),
            |entries| entries.filter_map(Result::ok).map(|e| e.path()).collect(),
        )
    };
    let is = |p: &PathBuf, prefix: &str| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
    };
    let mut shares = Vec::new();
    for dir in runs(top) {
        if is(&dir, "full-") {
            shares.extend(share(dir));
        } else if is(&dir, "seed-") {
            shares.extend(
                runs(&dir)
                    .into_iter()
                    .filter(|d| is(d, "full-"))
                    .filter_map(share),
            );
        }
    }
    (!shares.is_empty()).then(|| shares.iter().sum::<f64>() / shares.len() as f64)
}

/// The validation mAP after every epoch of every run under `top` (one line per variant and code
/// length) as `curves/val_map.png`, which the reproduction's `report.md` shows.
fn plot_validation_map(top: &Path, curves: &Path) -> Result<(), CmbhError> {
    let mut runs: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let subdirs = |dir: &Path| -> Result<Vec<PathBuf>, CmbhError> {
        let mut dirs: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(|e| CmbhError::file(dir, e.to_string()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        Ok(dirs)
    };
    // A reproduction's runs, or a several-seed reproduction's `seed-<S>/<run>`.
    let mut names = Vec::new();
    for dir in subdirs(top)? {
        if dir.join("metrics.jsonl").is_file() {
            names.push(dir);
        } else if dir.join("config.json").is_file() {
            names.extend(
                subdirs(&dir)?
                    .into_iter()
                    .filter(|p| p.join("metrics.jsonl").is_file()),
            );
        }
    }
    for dir in names {
        let path = dir.join("metrics.jsonl");
        let text = fs::read_to_string(&path).map_err(|e| CmbhError::file(&path, e.to_string()))?;
        let mut points = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let record: relata_train::EpochRecord = serde_json::from_str(line)
                .map_err(|e| CmbhError::file(&path, format!("not an epoch record: {e}")))?;
            if let Some(map) = record.val.get("map") {
                points.push((record.epoch as f64, *map));
            }
        }
        if !points.is_empty() {
            let name = dir
                .strip_prefix(top)
                .map_or_else(|_| String::new(), |n| n.display().to_string());
            runs.push((name, points));
        }
    }
    if runs.is_empty() {
        return Ok(());
    }
    let series: Vec<relata_train::plot::Series<'_>> = runs
        .iter()
        .map(|(name, points)| relata_train::plot::Series { name, points })
        .collect();
    relata_train::plot::line_chart(
        &curves.join("val_map.png"),
        "validation mAP@all",
        "epoch",
        &series,
    )?;
    Ok(())
}

/// The split a reproduction reports: its queries searched against its database.
struct Scored<'a> {
    database: &'a [Sample],
    queries: &'a [Sample],
    name: &'static str,
}

/// What one run trains on, validates on, reports and starts from.
struct Inputs<'a> {
    train: &'a [Sample],
    validation: Option<&'a [Sample]>,
    scored: &'a Scored<'a>,
    weights: Option<&'a Path>,
}

/// One (variant, bits) run: train (or resume), evaluate, save encoder + index. A run that
/// already has `result.json` is not repeated.
fn run_one(
    options: &ReproduceOptions,
    config: &CmbhTrainingConfig,
    inputs: Inputs<'_>,
    data: &ImageDataset,
    dir: &Path,
    device: &Device,
) -> Result<f64, CmbhError> {
    let Inputs {
        train,
        validation,
        scored,
        weights,
    } = inputs;
    let result_path = dir.join("result.json");
    if options.settings.resume
        && let Ok(text) = fs::read_to_string(&result_path)
        && let Ok(v) = serde_json::from_str::<Value>(&text)
        && let Some(map) = v.get("map").and_then(Value::as_f64)
    {
        return Ok(map);
    }
    let fit_options = FitOptions {
        weights: weights.map(Path::to_path_buf),
        ..options.settings.fit_in("cmbh", options.data.name(), dir)
    };
    let trained = fit(config, train, validation, device, &fit_options)?;
    let epochs = trained.epochs.len();
    // What share of the loss the region branch was at the end: printed with a failing claim.
    let region_share = trained
        .epochs
        .last()
        .and_then(|e| Some(e.loss.get("region")? / e.loss.get("total")?));
    let kept_epoch = best_validation_epoch(&trained.epochs).filter(|_| config.patience.is_some());
    let encoder = trained.model.into_encoder();
    let pipeline = Pipeline::cmbh_test_sized(config.resize, config.crop);
    let eval_batch = config.batch_size.max(32);
    let evaluation = evaluate(
        &encoder,
        scored.database,
        scored.queries,
        &pipeline,
        eval_batch,
        device,
    )?;
    encoder.save(&config.model, &dir.join("encoder"))?;
    evaluation.index()?.save(dir.join("index.bin"))?;
    let entries: Vec<DatabaseEntry> = scored
        .database
        .iter()
        .enumerate()
        .map(|(index, s)| DatabaseEntry {
            index,
            label: s.label,
            class: data.classes.get(s.label).cloned(),
            image: s.image.describe(),
        })
        .collect();
    let write = |path: PathBuf, value: &Value| -> Result<(), CmbhError> {
        let text = serde_json::to_string_pretty(value).expect("JSON values serialise");
        fs::write(&path, text).map_err(|e| CmbhError::file(&path, e.to_string()))
    };
    write(
        dir.join("database.json"),
        &serde_json::to_value(&entries).expect("entries serialise"),
    )?;
    write(
        dir.join("pipeline.json"),
        &json!({"resize": config.resize, "crop": config.crop}),
    )?;
    write(
        result_path,
        &json!({"variant": config.model.ablation.variant(), "bits": config.model.bits,
                "map": evaluation.map, "scored_on": scored.name, "epochs": epochs,
                "kept_epoch": kept_epoch, "region_share": region_share,
                "seconds": trained.seconds}),
    )?;
    Ok(evaluation.map)
}

/// The epoch (1-based) with the highest validation mAP, the first of equals.
fn best_validation_epoch(epochs: &[relata_train::EpochRecord]) -> Option<usize> {
    epochs
        .iter()
        .filter_map(|r| Some((r.epoch, *r.val.get("map")?)))
        .fold(None, |best: Option<(usize, f64)>, (e, m)| match best {
            Some((_, b)) if b >= m => best,
            _ => Some((e, m)),
        })
        .map(|(e, _)| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paper's batch sizes follow the dataset, not its class count: Food-101 has 101
    /// classes and trains at 64 (a "more than 200 classes" rule gave it 16).
    #[test]
    fn paper_batch_size_follows_the_dataset() {
        for (dataset, classes, batch) in [
            ("cub", 200, 16),
            ("aircraft", 100, 16),
            ("food101", 101, 64),
            ("nabirds", 555, 64),
            ("vegfru", 292, 64),
            ("synth-fine", 12, 16),
        ] {
            let config = preset_config(Preset::Paper, None, dataset, classes, 12, Ablation::FULL);
            assert_eq!(config.batch_size, batch, "{dataset}");
            assert!(!config.flip, "the paper's protocol has no flip");
        }
        let default = preset_config(Preset::Default, None, "synth-fine", 12, 12, Ablation::FULL);
        assert!(default.flip);
    }

    /// A ResNet-18 run on CUB is compared with Table 3 (16/32/48/64 bits), a ResNet-50 run
    /// with Table 2.
    #[test]
    fn the_paper_table_follows_the_backbone() {
        let full = vec!["full".to_string()];
        let bits = [12, 16, 48, 64];
        // mAP in percent, rounded to the table's two decimals.
        let maps = |rows: Vec<Map<String, Value>>| -> Vec<(u64, i64)> {
            rows.iter()
                .map(|r| {
                    let map = r["map"].as_f64().unwrap() * 10_000.0;
                    (r["bits"].as_u64().unwrap(), map.round() as i64)
                })
                .collect()
        };
        assert_eq!(
            maps(paper_rows("cub", ResNetDepth::ResNet18, &bits, &full)),
            vec![(16, 8210), (48, 8336), (64, 8331)]
        );
        assert_eq!(
            maps(paper_rows("cub", ResNetDepth::ResNet50, &bits, &full)),
            vec![(12, 8407), (48, 8647)]
        );
        assert!(paper_rows("aircraft", ResNetDepth::ResNet18, &bits, &full).is_empty());
    }

    /// `--preset paper` without ImageNet weights is refused, naming `--weights` and
    /// `--from-scratch`, before anything is written.
    #[test]
    fn paper_without_weights_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let mut options = ReproduceOptions::new(Preset::Paper);
        options.settings.out = root.path().join("runs");
        options.bits = vec![12];
        let e = reproduce(&options, &Device::flex())
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("--weights") && e.contains("--from-scratch"),
            "{e}"
        );
        assert!(!options.settings.out.exists(), "nothing is written");
    }
}
