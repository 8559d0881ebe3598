//! `cargo xtask data inspect|synth` and `cargo xtask fixtures`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use relata_dataset::export::{write_fixtures, write_image_folder};
use relata_dataset::inspect::inspect;
use relata_dataset::{SynthCaptionsConfig, SynthFineConfig};

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Print one JSON object describing a dataset on disk; exit non-zero if the layout is
    /// broken. Formats: cub, aircraft, food101, nabirds, vegfru, cifar10, cifar100, svhn,
    /// imagefolder, precomp.
    Inspect {
        /// Layout name.
        format: String,
        /// Dataset directory.
        dir: PathBuf,
    },
    /// Write an embedded dataset to disk in a real format: synth-fine as ImageFolder (PNG),
    /// synth-captions as SCAN precomp.
    Synth {
        /// synth-fine | synth-captions
        name: String,
        /// Output directory (must be empty or absent).
        out: PathBuf,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// synth-fine: image side in pixels.
        #[arg(long)]
        image_size: Option<u32>,
        /// synth-fine: the pretraining source set instead (48 other classes, its own seed; what
        /// `fixtures/backbone/synth_pretrained/make.py` trains the small backbone on).
        #[arg(long, conflicts_with = "seed")]
        pretraining_source: bool,
        /// synth-captions: training scenes (default 1,000).
        #[arg(long)]
        train: Option<usize>,
        /// synth-captions: dev scenes (default 100).
        #[arg(long)]
        dev: Option<usize>,
        /// synth-captions: test scenes (default 100; `reproduce hrem` uses 1,000).
        #[arg(long)]
        test: Option<usize>,
        /// synth-captions: draw scenes as edited copies of this many prototype scenes
        /// (default 0: independent scenes).
        #[arg(long)]
        families: Option<usize>,
        /// synth-captions with --families: how far members stray from their prototype
        /// (probability of each attribute edit, default 0.3).
        #[arg(long)]
        family_edit: Option<f32>,
    },
}

pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Inspect { format, dir } => {
            let report = inspect(&format, &dir)?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        DataCommand::Synth {
            name,
            out,
            seed,
            image_size,
            pretraining_source,
            train,
            dev,
            test,
            families,
            family_edit,
        } => synth(
            &name,
            &out,
            (seed, pretraining_source),
            image_size,
            [train, dev, test],
            (families, family_edit),
        ),
    }
}

fn ensure_empty(out: &Path) -> Result<()> {
    if out.exists()
        && std::fs::read_dir(out)
            .with_context(|| format!("reading {}", out.display()))?
            .next()
            .is_some()
    {
        bail!("{} is not empty; choose a new directory", out.display());
    }
    Ok(())
}

/// Writes an embedded dataset; `scenes` overrides synth-captions' train / dev / test sizes,
/// `(families, family_edit)` its scene families.
fn synth(
    name: &str,
    out: &Path,
    (seed, pretraining_source): (u64, bool),
    image_size: Option<u32>,
    scenes: [Option<usize>; 3],
    (families, family_edit): (Option<usize>, Option<f32>),
) -> Result<()> {
    ensure_empty(out)?;
    if name != "synth-captions"
        && (scenes.iter().any(Option::is_some) || families.is_some() || family_edit.is_some())
    {
        bail!("--train, --dev, --test, --families and --family-edit are for synth-captions");
    }
    if family_edit.is_some() && families.unwrap_or(0) == 0 {
        bail!("--family-edit needs --families N (N ≥ 1)");
    }
    if name != "synth-fine" && (image_size.is_some() || pretraining_source) {
        bail!("--image-size and --pretraining-source are for synth-fine");
    }
    match name {
        "synth-fine" => {
            let mut cfg = if pretraining_source {
                SynthFineConfig::pretraining_source()
            } else {
                SynthFineConfig {
                    seed,
                    ..Default::default()
                }
            };
            if let Some(s) = image_size {
                cfg.image_size = s;
            }
            let synth = cfg.generate()?;
            let n = write_image_folder(&synth.dataset, out)?;
            let config = out.join("synth-fine.json");
            std::fs::write(&config, serde_json::to_vec_pretty(&cfg)?)
                .with_context(|| format!("writing {}", config.display()))?;
            eprintln!(
                "wrote {n} images ({} classes) to {} as ImageFolder; read it with `cargo xtask data inspect imagefolder {}`",
                synth.dataset.num_classes(),
                out.display(),
                out.display()
            );
        }
        "synth-captions" => {
            let defaults = SynthCaptionsConfig::default();
            let [train, dev, test] = scenes;
            let cfg = SynthCaptionsConfig {
                seed,
                train: train.unwrap_or(defaults.train),
                dev: dev.unwrap_or(defaults.dev),
                test: test.unwrap_or(defaults.test),
                families: families.unwrap_or(defaults.families),
                family_edit: family_edit.unwrap_or(defaults.family_edit),
                ..defaults
            };
            if cfg.train == 0 || cfg.dev == 0 || cfg.test == 0 {
                bail!("--train, --dev and --test must be at least 1 scene");
            }
            let ds = cfg.write(out)?;
            eprintln!(
                "wrote splits {} to {} in the SCAN precomp layout",
                ds.splits.keys().cloned().collect::<Vec<_>>().join(", "),
                out.display()
            );
        }
        other => bail!("unknown embedded dataset `{other}`; known: synth-fine, synth-captions"),
    }
    Ok(())
}

pub fn fixtures(out: &Path) -> Result<()> {
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("clearing {}", out.display()))?;
    }
    let written = write_fixtures(out)?;
    eprintln!(
        "wrote fixtures for {} to {}",
        written.join(", "),
        out.display()
    );
    Ok(())
}
