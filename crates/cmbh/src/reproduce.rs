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
use relata_dataset::{ImageDataset, Pipeline, Sample, SynthFineConfig};
use relata_train::{Results, RunDir, RunSettings};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::FitOptions;
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
    /// Train the `paper` preset without `weights` (the paper fine-tunes an ImageNet backbone;
    /// without this the preset refuses to start from scratch).
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
    /// Hold this many training images per class out and score on them (queries against the
    /// rest of the training split) instead of on the test split: for choosing settings.
    pub validation: Option<usize>,
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
            validation: None,
            settings: RunSettings::default(),
        }
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
                    .with_epochs(12)
                    .with_batch_size(16)
                    .with_lr_milestones(vec![9])
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
pub fn load_data(options: &ReproduceOptions) -> Result<ImageDataset, CmbhError> {
    let synth = synth_config(options.preset, options.settings.seed);
    Ok(options.data.open(synth)?)
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

/// Runs the reproduction.
pub fn reproduce(
    options: &ReproduceOptions,
    device: &Device,
) -> Result<ReproduceOutcome, CmbhError> {
    let start = Instant::now();
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
    if options.preset == Preset::Paper && options.data == DataChoice::SynthFine {
        tracing::warn!("preset `paper` on synth-fine: the paper's settings on the embedded data");
    }
    let data = load_data(options)?;
    let classes = data.num_classes();
    let (train_all, test_all) = train_and_test(&data, options.holdout, options.settings.seed)?;
    let held;
    let (train, test, scored_on) = match options.validation {
        None => (train_all.as_slice(), test_all.as_slice(), "test"),
        Some(n) => {
            held =
                relata_dataset::hold_out_per_class(&train_all, classes, n, options.settings.seed)?;
            (
                held.train.as_slice(),
                held.validation.as_slice(),
                "validation",
            )
        }
    };
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
        "weights": options.weights,
        "from_scratch": options.weights.is_none(),
        "epochs": options.epochs,
        "batch_size": options.batch_size,
        "reduction": options.reduction,
        "holdout": options.holdout,
        "validation": options.validation,
        "seed": options.settings.seed,
    });
    let top = RunDir::open(&options.settings.top_run("cmbh", dataset), &top_config)?;
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
            let map = run_one(options, &config, train, test, &data, &dir, device)?;
            println!("cmbh {dataset} {name}: mAP@all {map:.4}");
            rows.push(row(&ablation.variant(), bits, map));
        }
    }
    let variant_names: Vec<String> = variants.iter().map(Ablation::variant).collect();
    let notes = table_notes(&rows);
    let results = Results {
        method: "cmbh".into(),
        dataset: match options.validation {
            None => dataset.into(),
            Some(_) => format!("{dataset}, scored on {scored_on}"),
        },
        preset: options.preset.name().into(),
        device: format!("{device:?}"),
        seconds: start.elapsed().as_secs_f64(),
        rows,
        // The paper's numbers are test numbers: none beside a validation score.
        paper: match options.validation {
            None => paper_rows(
                dataset,
                options.backbone.unwrap_or(match options.preset {
                    Preset::Paper => ResNetDepth::ResNet50,
                    _ => ResNetDepth::ResNet18,
                }),
                &options.bits,
                &variant_names,
            ),
            Some(_) => Vec::new(),
        },
        notes,
    };
    if options.validation.is_some() {
        plot_validation_map(top.path(), &top.curves())?;
    }
    top.write_results(&results)?;
    Ok(ReproduceOutcome {
        results,
        dir: top.path().to_path_buf(),
    })
}

/// What an ablation table does and does not show: at each code length with both rows, whether
/// the full model's mAP is above the B-only ablation's on this one run. No notes without
/// `--ablation` (no baseline row).
pub fn table_notes(rows: &[Map<String, Value>]) -> Vec<String> {
    let map = |variant: &str, bits: u64| {
        rows.iter()
            .find(|r| {
                r.get("variant").and_then(Value::as_str) == Some(variant)
                    && r.get("bits").and_then(Value::as_u64) == Some(bits)
            })
            .and_then(|r| r.get("map"))
            .and_then(Value::as_f64)
    };
    let mut bits: Vec<u64> = rows
        .iter()
        .filter_map(|r| r.get("bits").and_then(Value::as_u64))
        .collect();
    bits.dedup();
    bits.into_iter()
        .filter_map(|b| {
            let (full, b_only) = (map("full", b)?, map("B", b)?);
            Some(relata_train::compare::single_run_note(
                &format!("The full model ({b} bits)"),
                "mAP (the baseline: B only)",
                (full, b_only),
                "docs/cmbh.md, \"Results\"",
            ))
        })
        .collect()
}

/// The validation mAP after every epoch of every run under `top` (one line per variant and code
/// length) as `curves/val_map.png`, which the reproduction's `report.md` shows.
fn plot_validation_map(top: &Path, curves: &Path) -> Result<(), CmbhError> {
    let mut runs: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let mut names: Vec<PathBuf> = fs::read_dir(top)
        .map_err(|e| CmbhError::file(top, e.to_string()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("metrics.jsonl").is_file())
        .collect();
    names.sort();
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
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into());
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

/// One (variant, bits) run: train (or resume), evaluate, save encoder + index. A run that
/// already has `result.json` is not repeated.
fn run_one(
    options: &ReproduceOptions,
    config: &CmbhTrainingConfig,
    train: &[Sample],
    test: &[Sample],
    data: &ImageDataset,
    dir: &Path,
    device: &Device,
) -> Result<f64, CmbhError> {
    let result_path = dir.join("result.json");
    if options.settings.resume
        && let Ok(text) = fs::read_to_string(&result_path)
        && let Ok(v) = serde_json::from_str::<Value>(&text)
        && let Some(map) = v.get("map").and_then(Value::as_f64)
    {
        return Ok(map);
    }
    let fit_options = FitOptions {
        weights: options.weights.clone(),
        ..options.settings.fit_in("cmbh", options.data.name(), dir)
    };
    // With --validation, `test` is the held-out images: scored after every epoch too.
    let validation = options.validation.map(|_| test);
    let trained = fit(config, train, validation, device, &fit_options)?;
    let encoder = trained.model.into_encoder();
    let pipeline = Pipeline::cmbh_test_sized(config.resize, config.crop);
    let eval_batch = config.batch_size.max(32);
    let evaluation = evaluate(&encoder, train, test, &pipeline, eval_batch, device)?;
    encoder.save(&config.model, &dir.join("encoder"))?;
    evaluation.index()?.save(dir.join("index.bin"))?;
    let entries: Vec<DatabaseEntry> = train
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
                "map": evaluation.map, "seconds": trained.seconds}),
    )?;
    Ok(evaluation.map)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ablation table says, per code length, which way the full model and B-only went on
    /// this run; a table without the B row says nothing.
    #[test]
    fn ablation_tables_say_which_way_each_code_length_went() {
        let rows = vec![
            row("B", 12, 0.2506),
            row("full", 12, 0.2574),
            row("B", 24, 0.31),
            row("full", 24, 0.30),
        ];
        let notes = table_notes(&rows);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("(12 bits)") && notes[0].contains("above the baseline's"));
        assert!(notes[0].contains("0.2574 against 0.2506"), "{}", notes[0]);
        assert!(notes[1].starts_with("**The full model (24 bits) does not beat"));
        assert!(table_notes(&[row("full", 12, 0.3)]).is_empty());
    }

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
