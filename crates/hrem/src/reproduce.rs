//! `cargo xtask reproduce hrem` as a library call: presets, data (the embedded
//! `synth-captions`, written in the SCAN precomp layout and read back by the real loader, or a
//! Flickr30K / COCO precomp directory), the baseline (encoders + L_tri(v, u) only) and HREM,
//! each selected on dev and evaluated on test, and the results table (docs/design.md, Training and results) with the
//! released checkpoints' numbers beside the measured ones on real data.
//!
//! Layout: `runs/hrem/<dataset>/<time>/{baseline,full}/` (each a training run with `model/`),
//! `data/` (synth-captions), `metrics.json` and `report.md` at the top. `variants` trains one of
//! the two alone, so that two processes can train them side by side.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use relata_dataset::{PrecompDataset, SynthCaptionsConfig};
use relata_metrics::RecallReport;
use relata_train::{Results, RunDir, RunSettings};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::config::{EncoderConfig, HremConfig, Negatives, RelationConfig, TextEncoderKind};
use crate::error::HremError;
use crate::eval::evaluate;
use crate::train::fit;

pub use relata_train::Preset;

/// Which captions and region features a reproduction uses.
#[derive(Debug, Clone, PartialEq)]
pub enum CaptionData {
    /// The embedded synth-captions.
    SynthCaptions,
    /// Flickr30K precomp (`train`, `dev`, `test`).
    Flickr30k(PathBuf),
    /// MS-COCO precomp (`train`, `dev`, `testall`).
    Coco(PathBuf),
}

impl CaptionData {
    /// Name in paths and results.
    pub fn name(&self) -> &'static str {
        match self {
            CaptionData::SynthCaptions => "synth-captions",
            CaptionData::Flickr30k(_) => "f30k",
            CaptionData::Coco(_) => "coco",
        }
    }
}

/// One of the two models a reproduction trains and compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The encoders with L_tri(v, u) alone: no relation modelling.
    Baseline,
    /// HREM: the encoders with the relation module and its losses.
    Full,
}

impl Variant {
    /// Both, in the order a reproduction trains them.
    pub const ALL: [Variant; 2] = [Variant::Baseline, Variant::Full];

    /// Name in paths and result rows.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Baseline => "baseline",
            Variant::Full => "full",
        }
    }
}

impl std::str::FromStr for Variant {
    type Err = HremError;

    fn from_str(s: &str) -> Result<Self, HremError> {
        Variant::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                HremError::Config(format!("unknown variant `{s}`; known: baseline, full"))
            })
    }
}

/// Everything `reproduce hrem` takes.
#[derive(Debug, Clone)]
pub struct ReproduceOptions {
    /// Preset.
    pub preset: Preset,
    /// Data.
    pub data: CaptionData,
    /// A Hugging Face BERT checkpoint directory (default: the BiGRU text encoder).
    pub bert: Option<PathBuf>,
    /// Override the preset's epochs.
    pub epochs: Option<usize>,
    /// synth-captions only: training scenes instead of the preset's (1,000 by default). The
    /// relation terms need more data than the default's 15-minute budget holds: behind the
    /// baseline at 1,000 scenes, level at 10,000, ahead at 30,000 (docs/hrem.md).
    pub train_scenes: Option<usize>,
    /// synth-captions only: dev scenes instead of the preset's 100, which sit near rSum's
    /// ceiling once the training split is large and so decide the kept epoch by a few captions.
    pub dev_scenes: Option<usize>,
    /// The variants to train, in this order (default: both, baseline first). One alone lets two
    /// processes train the two side by side: on CPU a training keeps little more than one core
    /// busy, so on two cores the pair then takes the longer run's time instead of the sum.
    /// Resuming a reproduction that trained one adds the other to its results.
    pub variants: Vec<Variant>,
    /// Seed, runs root, resume / overwrite, progress display.
    pub settings: RunSettings,
}

impl ReproduceOptions {
    /// Defaults for a preset on synth-captions.
    pub fn new(preset: Preset) -> Self {
        Self {
            preset,
            data: CaptionData::SynthCaptions,
            bert: None,
            epochs: None,
            train_scenes: None,
            dev_scenes: None,
            variants: Variant::ALL.to_vec(),
            settings: RunSettings::default(),
        }
    }

    /// The synth-captions generator settings: the preset's, with the scene counts overridden.
    /// An error for scene counts given with a real dataset (its splits are its own) or a dev
    /// split of no scenes (model selection needs one).
    fn synth(&self) -> Result<SynthCaptionsConfig, HremError> {
        let sized = self.train_scenes.is_some() || self.dev_scenes.is_some();
        if sized && self.data != CaptionData::SynthCaptions {
            return Err(HremError::Config(format!(
                "train_scenes / dev_scenes (--train-scenes / --dev-scenes) size the generated \
                 synth-captions; {} brings its own splits: leave them unset",
                self.data.name()
            )));
        }
        if self.dev_scenes == Some(0) {
            return Err(HremError::Config(
                "dev_scenes = 0: model selection needs a dev split; give at least 1".into(),
            ));
        }
        let mut synth = synth_config(self.preset, self.settings.seed);
        synth.train = self.train_scenes.unwrap_or(synth.train);
        synth.dev = self.dev_scenes.unwrap_or(synth.dev);
        synth.validate()?;
        Ok(synth)
    }

    /// An error for no variant or one listed twice (its run directory would be trained twice).
    fn check_variants(&self) -> Result<(), HremError> {
        if self.variants.is_empty() {
            return Err(HremError::Config(
                "variants is empty: give baseline, full or both (--variant)".into(),
            ));
        }
        for (i, v) in self.variants.iter().enumerate() {
            if self.variants[..i].contains(v) {
                return Err(HremError::Config(format!(
                    "variant `{}` is listed twice",
                    v.name()
                )));
            }
        }
        Ok(())
    }
}

/// The synth-captions generator settings of a preset.
pub fn synth_config(preset: Preset, seed: u64) -> SynthCaptionsConfig {
    match preset {
        Preset::Smoke => SynthCaptionsConfig {
            train: 60,
            dev: 20,
            test: 20,
            regions: 6,
            dim: 16,
            noise: 0.3,
            seed,
            ..SynthCaptionsConfig::default()
        },
        // 1,000 test scenes, as Flickr30K's 1K test: on the generator's 100, image → text R@5
        // saturates at 100% after three epochs and one image is a whole point of R@1.
        _ => SynthCaptionsConfig {
            test: 1000,
            seed,
            ..SynthCaptionsConfig::default()
        },
    }
}

/// The configuration of a preset, for region features of `region_dim` and the chosen text
/// encoder.
pub fn preset_config(
    preset: Preset,
    data: &CaptionData,
    region_dim: usize,
    bert: Option<&Path>,
) -> HremConfig {
    let text = match bert {
        // The released code never cuts a caption: only BERT's position table (512 in
        // bert-base) bounds it, and the tokeniser never goes past that table.
        Some(path) => TextEncoderKind::Bert {
            path: path.to_path_buf(),
            max_len: 512,
        },
        None => TextEncoderKind::BiGru { word_dim: 300 },
    };
    let coco = matches!(data, CaptionData::Coco(_));
    match preset {
        Preset::Paper => {
            let mut c = HremConfig::new(EncoderConfig::new(region_dim).with_text(text));
            if coco {
                c = c
                    .with_batch_size(256)
                    .with_relation(RelationConfig::new().with_lambda(1.5))
                    .with_negatives(Negatives::DistanceWeighted {
                        n: 512,
                        cutoff: 1.9,
                    });
            }
            c
        }
        Preset::Default => {
            let text = match text {
                TextEncoderKind::BiGru { .. } => TextEncoderKind::BiGru { word_dim: 64 },
                other => other,
            };
            HremConfig::new(
                EncoderConfig::new(region_dim)
                    .with_embed(128)
                    .with_heads(4)
                    .with_ff(256)
                    .with_text(text),
            )
            .with_epochs(12)
            .with_lr_milestones(vec![8, 11])
            .with_batch_size(64)
            .with_warmup_iterations(160)
            .with_lr(1e-3)
        }
        Preset::Smoke => HremConfig::new(
            EncoderConfig::new(region_dim)
                .with_embed(32)
                .with_heads(2)
                .with_ff(32)
                .with_text(match text {
                    TextEncoderKind::BiGru { .. } => TextEncoderKind::BiGru { word_dim: 16 },
                    other => other,
                }),
        )
        .with_relation(RelationConfig::new().with_top_k(4))
        .with_epochs(3)
        .with_lr_milestones(vec![2])
        .with_batch_size(16)
        .with_warmup_iterations(10)
        .with_lr(2e-3),
    }
}

/// What is printed under the results table: whether HREM's rSum is above the baseline's on this
/// run, and (with the paper's rows) how the authors' numbers were obtained.
pub fn table_notes(rows: &[Map<String, Value>], with_paper: bool) -> Vec<String> {
    let rsum = |variant: &str| relata_train::run::row_metric(rows, variant, "rsum");
    let mut notes = Vec::new();
    if let (Some(full), Some(base)) = (rsum("full"), rsum("baseline")) {
        notes.push(if full > base {
            format!(
                "HREM's rSum is above the baseline's on this run ({full:.1} against {base:.1}); \
                 one seed decides nothing: docs/hrem.md compares several."
            )
        } else {
            format!(
                "**HREM does not beat the baseline on this run**: rSum {full:.1} against \
                 {base:.1}. On the default synth-captions the released code's relation terms \
                 cost rSum as well (docs/hrem.md, \"Results\")."
            )
        });
    }
    if with_paper {
        notes.push(
            "The paper columns are the authors' README numbers for their released checkpoints, \
             not a like-for-like target: the authors selected those checkpoints on the test \
             split (relata selects on dev and reports test), and trained them with the \
             intra-modal connection products that were corrected after publication (relata \
             uses the corrected ones)."
                .into(),
        );
    }
    notes
}

/// The released checkpoints' numbers (the paper's "Evaluation"; R@10 not published; docs/hrem.md).
pub fn paper_rows(data: &CaptionData) -> Vec<Map<String, Value>> {
    let rows: &[(&str, [f64; 4])] = match data {
        CaptionData::Flickr30k(_) => &[("full", [84.4, 96.7, 62.4, 86.6])],
        CaptionData::Coco(_) => &[
            ("full 1K", [81.9, 96.9, 65.9, 91.4]),
            ("full 5K", [62.5, 87.4, 44.0, 73.9]),
        ],
        CaptionData::SynthCaptions => &[],
    };
    rows.iter()
        .map(|(variant, [a, b, c, d])| {
            let mut r = Map::new();
            r.insert("variant".into(), json!(variant));
            r.insert("i2t_r1".into(), json!(a));
            r.insert("i2t_r5".into(), json!(b));
            r.insert("t2i_r1".into(), json!(c));
            r.insert("t2i_r5".into(), json!(d));
            r
        })
        .collect()
}

fn row(variant: &str, r: &RecallReport) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("variant".into(), json!(variant));
    for (k, v) in [
        ("i2t_r1", r.i2t.r1),
        ("i2t_r5", r.i2t.r5),
        ("i2t_r10", r.i2t.r10),
        ("t2i_r1", r.t2i.r1),
        ("t2i_r5", r.t2i.r5),
        ("t2i_r10", r.t2i.r10),
        ("rsum", r.rsum),
    ] {
        m.insert(k.into(), json!(v));
    }
    m
}

/// What a reproduction produced.
pub struct ReproduceOutcome {
    /// The results table.
    pub results: Results,
    /// The top run directory.
    pub dir: PathBuf,
}

/// A variant's test results, kept in `result.json` so `--resume` does not repeat it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct VariantResult {
    rows: Vec<Map<String, Value>>,
}

/// Trains the baseline and HREM, evaluates both on test, writes the table.
pub fn reproduce(
    options: &ReproduceOptions,
    device: &Device,
) -> Result<ReproduceOutcome, HremError> {
    let start = Instant::now();
    let dataset = options.data.name();
    let synth = options.synth()?;
    options.check_variants()?;
    // A real dataset is opened before the run directory exists, so a wrong `--data-dir` leaves
    // nothing behind; synth-captions is written into the run directory.
    let real = match &options.data {
        CaptionData::SynthCaptions => None,
        CaptionData::Flickr30k(dir) => Some((PrecompDataset::open(dir)?, "test")),
        CaptionData::Coco(dir) => Some((PrecompDataset::open(dir)?, "testall")),
    };
    let top = RunDir::open(
        &options.settings.top_run("hrem", dataset),
        &json!({
            "method": "hrem",
            "dataset": dataset,
            "preset": options.preset.name(),
            "bert": options.bert,
            "data_dir": match &options.data {
                CaptionData::SynthCaptions => None,
                CaptionData::Flickr30k(d) | CaptionData::Coco(d) => Some(d),
            },
            "test_split": match &options.data {
                CaptionData::Coco(_) => "testall",
                _ => "test",
            },
            "epochs": options.epochs,
            "train_scenes": options.train_scenes,
            "dev_scenes": options.dev_scenes,
            "seed": options.settings.seed,
        }),
    )?;
    let (data, test_split) = match (&options.data, real) {
        (_, Some(opened)) => opened,
        (_, None) => (synth.write(&top.path().join("data"))?, "test"),
    };
    let train = data.split("train")?;
    let dev = data.split("dev").ok();
    let test = data.split(test_split)?;
    let mut rows = Vec::new();
    for &choice in &options.variants {
        let (variant, relations) = (choice.name(), choice == Variant::Full);
        let mut config = preset_config(
            options.preset,
            &options.data,
            train.dim,
            options.bert.as_deref(),
        )
        .with_relations(relations)
        .with_seed(options.settings.seed);
        if let Some(e) = options.epochs {
            config.epochs = e;
            config.lr_milestones.retain(|&m| m < e);
        }
        let dir = top.path().join(variant);
        let result_path = dir.join("result.json");
        if options.settings.resume
            && let Ok(text) = fs::read_to_string(&result_path)
            && let Ok(done) = serde_json::from_str::<VariantResult>(&text)
        {
            rows.extend(done.rows);
            continue;
        }
        let fit_options = options.settings.fit_in("hrem", dataset, &dir);
        let trained = fit(&config, train, dev, device, &fit_options)?;
        let mut variant_rows = Vec::new();
        if matches!(options.data, CaptionData::Coco(_)) {
            let one_k = evaluate(
                &trained.model,
                &trained.extra.tokenizer,
                test,
                Some(5),
                device,
            )?;
            let five_k = evaluate(&trained.model, &trained.extra.tokenizer, test, None, device)?;
            variant_rows.push(row(&format!("{variant} 1K"), &one_k));
            variant_rows.push(row(&format!("{variant} 5K"), &five_k));
        } else {
            let r = evaluate(&trained.model, &trained.extra.tokenizer, test, None, device)?;
            variant_rows.push(row(variant, &r));
        }
        for r in &variant_rows {
            eprintln!(
                "hrem {dataset} {}: rSum {:.1}",
                r["variant"].as_str().unwrap_or(variant),
                r["rsum"].as_f64().unwrap_or(f64::NAN)
            );
        }
        let text = serde_json::to_string_pretty(&VariantResult {
            rows: variant_rows.clone(),
        })
        .expect("rows serialise");
        fs::write(&result_path, text).map_err(|e| HremError::file(&result_path, e.to_string()))?;
        rows.extend(variant_rows);
    }
    let paper = paper_rows(&options.data);
    let notes = table_notes(&rows, !paper.is_empty());
    let results = Results {
        method: "hrem".into(),
        dataset: dataset.into(),
        preset: options.preset.name().into(),
        device: format!("{device:?}"),
        seconds: start.elapsed().as_secs_f64(),
        rows,
        paper,
        notes,
    };
    top.write_results(&results)?;
    Ok(ReproduceOutcome {
        results,
        dir: top.path().to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_says_when_hrem_is_behind_and_how_the_paper_selected() {
        let row = |v: &str, rsum: f64| {
            let mut r = Map::new();
            r.insert("variant".into(), json!(v));
            r.insert("rsum".into(), json!(rsum));
            r
        };
        let behind = table_notes(&[row("baseline", 404.0), row("full", 398.0)], false);
        assert_eq!(behind.len(), 1);
        assert!(
            behind[0].contains("does not beat the baseline"),
            "{behind:?}"
        );
        let ahead = table_notes(&[row("baseline", 404.0), row("full", 410.0)], true);
        assert!(ahead[0].contains("above the baseline"), "{ahead:?}");
        assert!(ahead[1].contains("test split") && ahead[1].contains("corrected after"));
        assert!(table_notes(&[row("full", 410.0)], false).is_empty());
    }

    #[test]
    fn scene_counts_override_the_preset_on_synth_captions_only() {
        let mut options = ReproduceOptions::new(Preset::Default);
        let preset = options.synth().unwrap();
        assert_eq!((preset.train, preset.dev, preset.test), (1000, 100, 1000));
        options.train_scenes = Some(30_000);
        options.dev_scenes = Some(500);
        let sized = options.synth().unwrap();
        assert_eq!((sized.train, sized.dev, sized.test), (30_000, 500, 1000));

        options.dev_scenes = Some(0);
        let err = options.synth().unwrap_err().to_string();
        assert!(err.contains("dev_scenes = 0"), "{err}");
        options.dev_scenes = None;
        options.train_scenes = Some(0);
        assert!(options.synth().is_err());

        options.train_scenes = Some(30_000);
        options.data = CaptionData::Flickr30k(PathBuf::from("f30k"));
        let err = options.synth().unwrap_err().to_string();
        assert!(
            err.contains("train_scenes") && err.contains("f30k"),
            "{err}"
        );
        // A real dataset without scene counts is fine.
        options.train_scenes = None;
        assert!(options.synth().is_ok());
    }

    #[test]
    fn variants_parse_by_name_and_are_each_trained_once() {
        assert_eq!("full".parse::<Variant>().unwrap(), Variant::Full);
        assert_eq!("baseline".parse::<Variant>().unwrap(), Variant::Baseline);
        let err = "hrem".parse::<Variant>().unwrap_err().to_string();
        assert!(err.contains("known: baseline, full"), "{err}");

        let mut options = ReproduceOptions::new(Preset::Smoke);
        assert_eq!(options.variants, Variant::ALL);
        options.variants = vec![Variant::Full];
        assert!(options.check_variants().is_ok());
        options.variants = vec![];
        assert!(
            options
                .check_variants()
                .unwrap_err()
                .to_string()
                .contains("--variant")
        );
        options.variants = vec![Variant::Full, Variant::Baseline, Variant::Full];
        let err = options.check_variants().unwrap_err().to_string();
        assert!(err.contains("`full` is listed twice"), "{err}");
    }
}
