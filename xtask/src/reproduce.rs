//! `cargo xtask reproduce <method>` and `cargo xtask search <method>`: thin CLIs over the method
//! crates' `reproduce` / `search` modules.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use relata_backbone::ResNetDepth;
use relata_cmbh::CmbhConfig;
use relata_cmbh::cost::PAPER_TABLE5;
use relata_cmbh::reproduce::{DataChoice, ReproduceOptions, reproduce};
use relata_cmbh::search::SearchRun;
use relata_dataset::Format;
use relata_train::device::select_device;
use relata_train::{RunSettings, Verbosity};

#[derive(Subcommand, Debug)]
pub enum ReproduceCommand {
    /// CMBH (CVPR 2024): fine-grained hashing, mAP@all per bit length.
    Cmbh(CmbhArgs),
    /// ISL (ICCV 2021): unsupervised features; kNN and k-means scores after round 0 and last.
    Isl(IslArgs),
    /// CSRMS (ACM MM 2023): supervised features with class-level relation graphs; top-1/top-5
    /// beside the cross-entropy baseline.
    Csrms(CsrmsArgs),
    /// HREM (CVPR 2023): image–text matching; R@1/5/10 both ways and rSum beside the baseline.
    Hrem(HremArgs),
}

/// What every `reproduce <method>` takes besides its own options.
#[derive(Args, Debug)]
pub struct CommonArgs {
    /// The dataset's root directory (real datasets).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// smoke | default | paper
    #[arg(long, default_value = "default")]
    preset: String,
    /// Seed.
    #[arg(long, default_value_t = relata_train::DEFAULT_SEED)]
    seed: u64,
    /// Runs root.
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Continue the newest reproduction of this dataset.
    #[arg(long)]
    resume: bool,
    /// Replace an existing run directory.
    #[arg(long)]
    overwrite: bool,
    /// flex | wgpu | tch | cuda | ... (else BURN_DEVICE, else flex)
    #[arg(long)]
    device: Option<String>,
    /// One line per epoch instead of progress bars.
    #[arg(long)]
    quiet: bool,
}

impl CommonArgs {
    fn settings(&self) -> RunSettings {
        RunSettings {
            seed: self.seed,
            out: self.out.clone(),
            resume: self.resume,
            overwrite: self.overwrite,
            verbosity: if self.quiet {
                Verbosity::Lines
            } else {
                Verbosity::Auto
            },
        }
    }

    /// `None` for synth-fine (generated: no `--data-dir`), else the format named `name` among
    /// `formats` with its `--data-dir`; `known` lists the names for the error.
    fn real_dataset(&self, name: &str, formats: &[Format], known: &str) -> Result<DataChoice> {
        if name == "synth-fine" {
            if self.data_dir.is_some() {
                bail!("--data-dir is for real datasets; synth-fine is generated");
            }
            return Ok(DataChoice::SynthFine);
        }
        let format = formats
            .iter()
            .copied()
            .find(|f| f.name() == name)
            .with_context(|| format!("unknown --dataset `{name}`; known: {known}"))?;
        let dir = self.data_dir.clone().with_context(|| {
            format!("--dataset {name} needs --data-dir pointing at its root directory")
        })?;
        Ok(DataChoice::Real { format, dir })
    }
}

/// Prints a reproduction's table last, then its run directory.
fn print_outcome(results: &relata_train::Results, dir: &Path) {
    println!("\n{}", results.to_markdown());
    println!("run directory: {}", dir.display());
}

#[derive(Args, Debug)]
pub struct IslArgs {
    /// synth-fine (embedded, default) | cifar10 | cifar100 | svhn | imagefolder
    #[arg(long, default_value = "synth-fine")]
    dataset: String,
    /// Override the backbone epochs per round.
    #[arg(long)]
    epochs: Option<usize>,
    /// Override the number of rounds, round 0 included (the authors' count: 4 in all; 1 is
    /// round 0 alone).
    #[arg(long)]
    rounds: Option<usize>,
    #[command(flatten)]
    common: CommonArgs,
}

fn isl(args: IslArgs) -> Result<()> {
    use relata_isl::reproduce as r;
    let common = &args.common;
    let data = common.real_dataset(
        &args.dataset,
        &[
            Format::Cifar10,
            Format::Cifar100,
            Format::Svhn,
            Format::ImageFolder,
        ],
        "synth-fine, cifar10, cifar100, svhn, imagefolder",
    )?;
    let (choice, device) = select_device(common.device.as_deref())?;
    let options = r::ReproduceOptions {
        preset: common.preset.parse()?,
        data,
        epochs: args.epochs,
        rounds: args.rounds,
        settings: common.settings(),
    };
    eprintln!("reproduce isl on {} ({choice})", options.dataset());
    let outcome = r::reproduce(&options, &device)?;
    print_outcome(&outcome.results, &outcome.dir);
    Ok(())
}

#[derive(Args, Debug)]
pub struct CsrmsArgs {
    /// synth-fine (embedded, default) | cifar10 | cifar100 | cub | aircraft | food101 | nabirds
    /// | vegfru | svhn | imagefolder
    #[arg(long, default_value = "synth-fine")]
    dataset: String,
    /// Override the preset's epochs (warm-up included).
    #[arg(long)]
    epochs: Option<usize>,
    /// art (Fuzzy ART, default) | kmeans[:K] (K = 50 by default)
    #[arg(long)]
    clustering: Option<String>,
    /// Hold N training images per class out and score on them instead of the test split (for
    /// choosing settings without the test set).
    #[arg(long, value_name = "N")]
    validation: Option<usize>,
    /// Train the default preset's backbone from a random start instead of the shipped
    /// synth-pretrained ResNet-18.
    #[arg(long)]
    from_scratch: bool,
    #[command(flatten)]
    common: CommonArgs,
}

/// `art` or `kmeans[:K]`.
fn parse_clustering(text: &str) -> Result<relata_csrms::Clustering> {
    use relata_csrms::{Clustering, FuzzyArtConfig};
    match text.split_once(':') {
        None if text == "art" => Ok(Clustering::Art(FuzzyArtConfig::new())),
        None if text == "kmeans" => Ok(Clustering::KMeans { k: 50 }),
        Some(("kmeans", k)) => Ok(Clustering::KMeans {
            k: k.parse()
                .with_context(|| format!("--clustering kmeans:{k}: K must be a whole number"))?,
        }),
        _ => bail!("--clustering `{text}`: use art, kmeans or kmeans:K"),
    }
}

fn csrms(args: CsrmsArgs) -> Result<()> {
    use relata_csrms::reproduce as r;
    let common = &args.common;
    let data = common.real_dataset(
        &args.dataset,
        &Format::ALL,
        "synth-fine, cifar10, cifar100, cub, aircraft, food101, nabirds, vegfru, svhn, imagefolder",
    )?;
    let clustering = args
        .clustering
        .as_deref()
        .map(parse_clustering)
        .transpose()?;
    let (choice, device) = select_device(common.device.as_deref())?;
    let mut options = r::ReproduceOptions::new(common.preset.parse()?);
    options.data = data;
    options.epochs = args.epochs;
    options.clustering = clustering;
    options.validation = args.validation;
    options.from_scratch = args.from_scratch;
    options.settings = common.settings();
    eprintln!("reproduce csrms on {} ({choice})", options.dataset());
    let outcome = r::reproduce(&options, &device)?;
    print_outcome(&outcome.results, &outcome.dir);
    Ok(())
}

#[derive(Args, Debug)]
pub struct HremArgs {
    /// synth-captions (embedded, default) | f30k | coco (SCAN precomp directories)
    #[arg(long, default_value = "synth-captions")]
    dataset: String,
    /// A Hugging Face BERT checkpoint directory for the text encoder (default: BiGRU).
    #[arg(long)]
    bert: Option<PathBuf>,
    /// Override the preset's epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// synth-captions: training scenes (default preset: 1,000). Before the 2026-12-07 fixes
    /// the relation terms beat the baseline from about 30,000 (not re-measured since; 1 to 2
    /// hours a variant on 2 cores; docs/hrem.md).
    #[arg(long)]
    train_scenes: Option<usize>,
    /// synth-captions: dev scenes for model selection (default preset: 100).
    #[arg(long)]
    dev_scenes: Option<usize>,
    /// Train only this variant: baseline | full (default: both, one after the other). Two
    /// processes, one per variant, train the pair in about the longer one's time on CPU.
    #[arg(long)]
    variant: Option<String>,
    #[command(flatten)]
    common: CommonArgs,
}

fn hrem(args: HremArgs) -> Result<()> {
    use relata_hrem::reproduce::{self as r, CaptionData};
    let common = &args.common;
    let data = match (args.dataset.as_str(), &common.data_dir) {
        ("synth-captions", None) => CaptionData::SynthCaptions,
        ("synth-captions", Some(_)) => {
            bail!("--data-dir is for real datasets; synth-captions is generated")
        }
        ("f30k", Some(d)) => CaptionData::Flickr30k(d.clone()),
        ("coco", Some(d)) => CaptionData::Coco(d.clone()),
        ("f30k" | "coco", None) => bail!(
            "--dataset {} needs --data-dir pointing at its SCAN precomp directory \
             ({{train,dev,test}}_ims.npy and _caps.txt)",
            args.dataset
        ),
        (other, _) => bail!("unknown --dataset `{other}`; known: synth-captions, f30k, coco"),
    };
    if let Some(b) = &args.bert
        && !b.join("config.json").is_file()
    {
        bail!(
            "--bert {}: no config.json there; give a Hugging Face BERT checkpoint directory",
            b.display()
        );
    }
    let (choice, device) = select_device(common.device.as_deref())?;
    let mut options = r::ReproduceOptions::new(common.preset.parse()?);
    options.data = data;
    options.bert = args.bert;
    options.epochs = args.epochs;
    options.train_scenes = args.train_scenes;
    options.dev_scenes = args.dev_scenes;
    if let Some(v) = &args.variant {
        options.variants = vec![v.parse()?];
    }
    options.settings = common.settings();
    eprintln!("reproduce hrem on {} ({choice})", options.data.name());
    let outcome = r::reproduce(&options, &device)?;
    print_outcome(&outcome.results, &outcome.dir);
    Ok(())
}

#[derive(Args, Debug)]
pub struct HremSearchArgs {
    /// A `reproduce hrem` run directory.
    #[arg(long)]
    run: PathBuf,
    /// A caption: print the nearest test images.
    #[arg(long, conflicts_with = "image")]
    text: Option<String>,
    /// A test image index: print the nearest test captions.
    #[arg(long)]
    image: Option<usize>,
    /// Hits to print.
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// Device.
    #[arg(long)]
    device: Option<String>,
}

fn hrem_search(args: HremSearchArgs) -> Result<()> {
    use relata_hrem::search::SearchRun;
    let (_, device) = select_device(args.device.as_deref())?;
    let run = SearchRun::open(&args.run, &device)?;
    let (hits, what) = match (&args.text, args.image) {
        (Some(text), None) => (run.text_to_images(text, args.k, &device)?, "image"),
        (None, Some(i)) => (run.image_to_texts(i, args.k)?, "caption"),
        _ => bail!("give --text \"a caption\" or --image INDEX"),
    };
    println!(
        "{} nearest {what}s in the {} split of {}:",
        hits.len(),
        run.split,
        run.dir.display()
    );
    println!("| rank | score | {what} index | caption |");
    println!("| --- | --- | --- | --- |");
    for (rank, h) in hits.iter().enumerate() {
        println!(
            "| {} | {:.4} | {} | {} |",
            rank + 1,
            h.score,
            h.index,
            h.text
        );
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum SearchCommand {
    /// Query a trained CMBH run with an image.
    Cmbh(CmbhSearchArgs),
    /// Query a trained HREM run with a caption (→ images) or a test image (→ captions).
    Hrem(HremSearchArgs),
}

#[derive(Args, Debug)]
pub struct CmbhArgs {
    /// synth-fine (embedded, default) | cub | aircraft | food101 | nabirds | vegfru |
    /// imagefolder (your own labelled images: DIR/train/<class>/… and DIR/test/<class>/…)
    #[arg(long, default_value = "synth-fine")]
    dataset: String,
    /// Code lengths, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "12,24,32,48")]
    bits: Vec<usize>,
    /// Also train the B, B+L and B+L+T variants (Table 4).
    #[arg(long)]
    ablation: bool,
    /// resnet18 | resnet50 (default: resnet50 for --preset paper, else resnet18).
    #[arg(long)]
    backbone: Option<ResNetDepth>,
    /// torchvision ImageNet weights for the backbone (.pth / .safetensors). `--preset paper`
    /// needs them (the paper fine-tunes an ImageNet backbone) unless `--from-scratch`; the
    /// default preset otherwise starts from the shipped synth-pretrained ResNet-18.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Train from a randomly initialised backbone (the paper's schedule without `--weights`;
    /// the default preset without its synth-pretrained backbone).
    #[arg(long, conflicts_with = "weights")]
    from_scratch: bool,
    /// Override the preset's epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Override the preset's batch size (paper: 16 for CUB and Aircraft, 64 for Food-101,
    /// NABirds and VegFru).
    #[arg(long)]
    batch_size: Option<usize>,
    /// How the losses are reduced over a batch: `paper` (hash losses as means, the
    /// classification losses summed over the batch, as the paper writes them) or `mean` (every
    /// term a batch mean). The from-scratch presets adapt their step size to it.
    #[arg(long, default_value = "paper")]
    reduction: relata_cmbh::LossReduction,
    /// Training images held out per class as a validation split, scored after every epoch
    /// (the default preset stops at its plateau and keeps its best epoch) [default: 8 for the
    /// default preset, none otherwise; 0: none].
    #[arg(long)]
    validation: Option<usize>,
    /// Report the validation split's mAP instead of the test split's (which is then not
    /// read): for choosing settings.
    #[arg(long)]
    score_on_validation: bool,
    /// Two or more seeds, comma-separated (e.g. 42,1,2): one reproduction per seed and a table
    /// of the mean, the spread and each seed, with the paper's claims judged over them.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    seeds: Vec<u64>,
    /// Read every image of a real dataset before training and skip the unreadable ones (listed
    /// in config.json and under the table) instead of stopping with their names.
    #[arg(long)]
    skip_bad_images: bool,
    /// For an image folder without train/ and test/ (root/<class>/<image>): test images held
    /// out per class, seeded [default: 5].
    #[arg(long)]
    holdout: Option<usize>,
    /// Print the inference path's parameters and FLOPs beside the paper's Table 5 and exit.
    #[arg(long)]
    report_cost: bool,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct CmbhSearchArgs {
    /// A `reproduce cmbh` run directory (or one of its `<variant>-<bits>bits` runs).
    #[arg(long)]
    run: PathBuf,
    /// The query image.
    #[arg(long)]
    image: PathBuf,
    /// Neighbours to print.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Which bit length's run (default: the largest).
    #[arg(long)]
    bits: Option<usize>,
    /// Search this folder index (`cargo xtask index cmbh --out DIR`) instead of the run's
    /// training database.
    #[arg(long)]
    index: Option<PathBuf>,
    /// Device.
    #[arg(long)]
    device: Option<String>,
}

/// `cargo xtask index`.
#[derive(Subcommand, Debug)]
pub enum IndexCommand {
    /// Encode every image under a folder with a trained CMBH run's encoder into a Hamming
    /// index (`search cmbh --index` queries it; `export` hands it to FAISS).
    Cmbh(IndexCmbhArgs),
}

#[derive(Args, Debug)]
pub struct IndexCmbhArgs {
    /// A `reproduce cmbh` run directory (or one of its `<variant>-<bits>bits` runs).
    #[arg(long)]
    run: PathBuf,
    /// Which bit length's run (default: the largest).
    #[arg(long)]
    bits: Option<usize>,
    /// The folder of images (JPEG, PNG, BMP; searched recursively).
    #[arg(long)]
    images: PathBuf,
    /// The index directory (`index.bin`, `files.json`); an interrupted pass resumes here.
    #[arg(long)]
    out: PathBuf,
    /// Add the folder's images that are not indexed yet to a finished index.
    #[arg(long)]
    append: bool,
    /// List images that cannot be decoded and go on, instead of stopping at the first.
    #[arg(long)]
    skip_bad_images: bool,
    /// Images per forward pass.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Device.
    #[arg(long)]
    device: Option<String>,
}

pub fn index(cmd: IndexCommand) -> Result<()> {
    let IndexCommand::Cmbh(args) = cmd;
    let (choice, device) = select_device(args.device.as_deref())?;
    let run = SearchRun::open(&args.run, args.bits, &device)?;
    eprintln!(
        "indexing {} with {} ({} bits) on {choice}",
        args.images.display(),
        run.dir.display(),
        run.encoder.bits()
    );
    let options = relata_cmbh::folder::IndexOptions {
        append: args.append,
        skip_bad_images: args.skip_bad_images,
        batch_size: args.batch_size,
    };
    let start = std::time::Instant::now();
    let report = relata_cmbh::folder::index_folder(
        &run,
        &args.images,
        &args.out,
        options,
        &device,
        |done, total| {
            let rate = done as f64 / start.elapsed().as_secs_f64().max(1e-9);
            eprintln!("  {done}/{total} images ({rate:.0} images/s)");
        },
    )?;
    for bad in &report.skipped {
        eprintln!("skipped (unreadable): {}", bad.display());
    }
    println!(
        "index {}: {} images ({} added, {} skipped)",
        args.out.display(),
        report.total,
        report.added,
        report.skipped.len()
    );
    Ok(())
}

pub fn run(cmd: ReproduceCommand) -> Result<()> {
    match cmd {
        ReproduceCommand::Cmbh(args) => cmbh(args),
        ReproduceCommand::Isl(args) => isl(args),
        ReproduceCommand::Csrms(args) => csrms(args),
        ReproduceCommand::Hrem(args) => hrem(args),
    }
}

pub fn search(cmd: SearchCommand) -> Result<()> {
    match cmd {
        SearchCommand::Hrem(args) => hrem_search(args),
        SearchCommand::Cmbh(args) => {
            let (_, device) = select_device(args.device.as_deref())?;
            let mut run = SearchRun::open(&args.run, args.bits, &device)?;
            if let Some(index) = &args.index {
                run = run.with_folder_index(index)?;
            }
            let hits = run.search_image(&args.image, args.k, &device)?;
            println!(
                "{} nearest of {} database images ({}, {} bits):",
                hits.len(),
                run.index.len(),
                run.dir.display(),
                run.encoder.bits()
            );
            println!("| rank | distance | index | class | image |");
            println!("| --- | --- | --- | --- | --- |");
            for (rank, h) in hits.iter().enumerate() {
                println!(
                    "| {} | {} | {} | {} | {} |",
                    rank + 1,
                    h.distance,
                    h.entry.index,
                    h.entry
                        .class
                        .clone()
                        .unwrap_or_else(|| h.entry.label.to_string()),
                    h.entry.image
                );
            }
            Ok(())
        }
    }
}

fn report_cost() {
    println!("CMBH inference path (backbone to layer3, N_sub-2, C, hash head), CUB: 200 classes,");
    println!("k = 2, d = 512, 224×224. Params as Table 5 counts them (without the bare C");
    println!("parameter; with C in brackets); GMACs count conv + FC multiply-accumulates.\n");
    println!("| backbone | bits | params (M) | paper params (M) | GMACs | paper GFLOPs |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (backbone, bits, p_params, p_flops) in PAPER_TABLE5 {
        let depth: ResNetDepth = backbone.parse().expect("known backbone");
        let cost = CmbhConfig::paper(depth, 200, bits).inference_cost([224, 224]);
        println!(
            "| {backbone} | {bits} | {:.4} [{:.4}] | {p_params:.4} | {:.4} | {p_flops:.4} |",
            cost.params_without_cvectors as f64 / 1e6,
            cost.params as f64 / 1e6,
            cost.macs as f64 / 1e9,
        );
    }
}

fn cmbh(args: CmbhArgs) -> Result<()> {
    if args.report_cost {
        report_cost();
        return Ok(());
    }
    let common = &args.common;
    let data = common.real_dataset(
        &args.dataset,
        &Format::ALL,
        "synth-fine, cub, aircraft, food101, nabirds, vegfru, imagefolder",
    )?;
    let (choice, device) = select_device(common.device.as_deref())?;
    let preset = common.preset.parse()?;
    let options = ReproduceOptions {
        preset,
        data,
        bits: args.bits,
        ablation: args.ablation,
        backbone: args.backbone,
        weights: args.weights,
        from_scratch: args.from_scratch,
        epochs: args.epochs,
        batch_size: args.batch_size,
        reduction: args.reduction,
        holdout: args.holdout,
        validation: args
            .validation
            .or_else(|| relata_cmbh::reproduce::default_validation(preset)),
        score_on_validation: args.score_on_validation,
        seeds: args.seeds,
        skip_bad_images: args.skip_bad_images,
        settings: common.settings(),
    };
    eprintln!("reproduce cmbh on {} ({choice})", options.data.name());
    let outcome = reproduce(&options, &device)?;
    print_outcome(&outcome.results, &outcome.dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Common {
        #[command(flatten)]
        common: CommonArgs,
    }

    /// A library run with default settings is the CLI's run: the command line's seed, each
    /// method's `ReproduceOptions::new` and each method's configuration default to one seed.
    #[test]
    fn library_and_cli_default_to_one_seed() {
        use relata_train::{DEFAULT_SEED, Preset};
        let cli = Common::try_parse_from(["reproduce"])
            .unwrap()
            .common
            .settings();
        assert_eq!(cli.seed, DEFAULT_SEED);
        let library = [
            relata_cmbh::reproduce::ReproduceOptions::new(Preset::Default).settings,
            relata_csrms::reproduce::ReproduceOptions::new(Preset::Default).settings,
            relata_hrem::reproduce::ReproduceOptions::new(Preset::Default).settings,
            relata_isl::reproduce::ReproduceOptions::new(Preset::Default).settings,
        ];
        for settings in library {
            assert_eq!(settings.seed, cli.seed);
        }
        let backbone = relata_backbone::ResNetConfig::new(ResNetDepth::ResNet18);
        let configs = [
            relata_cmbh::CmbhTrainingConfig::new(CmbhConfig::new(backbone.clone(), 2, 12)).seed,
            relata_csrms::CsrmsConfig::new(backbone.clone(), 2).seed,
            relata_hrem::HremConfig::new(relata_hrem::EncoderConfig::new(4)).seed,
            relata_isl::IslConfig::new(backbone).seed,
            relata_train::TrainerConfig::new(vec![], vec![]).seed,
        ];
        assert_eq!(configs, [DEFAULT_SEED; 5]);
    }
}
