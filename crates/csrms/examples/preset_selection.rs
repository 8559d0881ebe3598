//! Chooses between CSRMS settings on a validation split carved from synth-fine's training
//! images, never on the test split: each candidate trains on the rest of the training split
//! and is scored on the held-out images. The table docs/csrms.md reports comes from here.
//!
//! ```text
//! cargo run --release -p relata-csrms --example preset_selection -- [seeds=42,1,2] \
//!     [validation=8] [candidates=baseline,control,code,mix,sampled] [pretrained=1|0] [rho=F] \
//!     [schedule=step|cosine] [lr=F] [wd=F] [train_per_class=N]
//! ```
//!
//! `schedule`, `lr` (backbone; the GCN's is twice it), `wd`, `pretrained` (0: the preset's
//! backbone from a random start instead of the shipped synth-pretrained weights) and `rho`
//! (Fuzzy ART's vigilance) override the preset for every candidate, so that they are chosen on
//! validation too; `train_per_class` draws synth-fine with another number of training images
//! per class (40), to try harder versions of the data. Each seed draws its own synth-fine and its own held-out images; the table
//! ends with each candidate's mean and sample standard deviation over the seeds, both heads,
//! and every CSRMS line shows the last relation refresh's clusters, share of single-image
//! clusters and sampler fallbacks.
//!
//! Candidates (all on the default preset's backbone, epochs and schedule):
//! - `baseline`: the CE baseline;
//! - `control`: the equal-compute control (cross-entropy on every sampled image);
//! - `code`: the released code's loss weights (0.5 · L_gcn + (L_cls + L_neg + L_inter)/6) and
//!   learnable smoothing initialised at (1, 0) — the default preset's reading;
//! - `mix`: L_cls at weight 1, smoothing fixed at the code's (F_g + w_c + p_c)/3 mix;
//! - `sampled`: `mix` with L_cls over every sampled image (the paper preset's reading);
//! - `default`: the default preset as it stands.

use burn::tensor::Device;
use relata_csrms::reproduce::{preset_config, synth_config};
use relata_csrms::training::{RunOptions, Verbosity};
use relata_csrms::{Clustering, CsrmsConfig, FitOptions, FuzzyArtConfig, Variant, evaluate, fit};
use relata_dataset::hold_out_per_class;
use relata_train::{LrSchedule, Preset};

fn candidate(name: &str, base: CsrmsConfig) -> Result<CsrmsConfig, String> {
    Ok(match name {
        "baseline" => base.with_variant(Variant::Baseline),
        "control" => base.with_variant(Variant::Control),
        "code" => base
            .with_weight_gcn(0.5)
            .with_weights_cls_neg_inter([1.0 / 6.0; 3])
            .with_cls_on_sampled(false)
            .with_learnable_smoothing(true)
            .with_smoothing_init([1.0, 0.0, 1.0, 0.0]),
        "mix" => base
            .with_weight_gcn(0.5)
            .with_weights_cls_neg_inter([1.0, 1.0 / 6.0, 1.0 / 6.0])
            .with_cls_on_sampled(false)
            .with_learnable_smoothing(false)
            .with_smoothing_init([1.0, 1.0, 1.0 / 3.0, 1.0 / 3.0]),
        "sampled" => candidate("mix", base)?.with_cls_on_sampled(true),
        "default" => base,
        other => return Err(format!("unknown candidate `{other}`")),
    })
}

/// Mean and sample standard deviation.
fn spread(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut seeds = vec![42u64, 1, 2];
    let mut per_class = 8usize;
    let mut schedule = None;
    let mut lr = None;
    let mut wd = None;
    let mut rho = None;
    let mut pretrained = true;
    let mut train_per_class = None;
    let mut names = ["baseline", "control", "code", "mix", "sampled"]
        .map(String::from)
        .to_vec();
    for arg in std::env::args().skip(1) {
        match arg.split_once('=') {
            Some(("seeds" | "seed", v)) => {
                seeds = v.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            Some(("validation", v)) => per_class = v.parse()?,
            Some(("candidates", v)) => names = v.split(',').map(String::from).collect(),
            Some(("schedule", "step")) => schedule = None,
            Some(("schedule", "cosine")) => schedule = Some(()),
            Some(("lr", v)) => lr = Some(v.parse::<f64>()?),
            Some(("wd", v)) => wd = Some(v.parse::<f64>()?),
            Some(("rho", v)) => rho = Some(v.parse::<f64>()?),
            Some(("pretrained", v)) => pretrained = v == "1",
            Some(("train_per_class", v)) => train_per_class = Some(v.parse::<usize>()?),
            _ => return Err(format!("unknown argument `{arg}`").into()),
        }
    }
    let device = Device::flex();
    let runs = std::env::temp_dir().join(format!("csrms-selection-{}", std::process::id()));
    let weights = if pretrained {
        Some(relata_backbone::pretrained::write_synth_resnet18_w8(&runs)?)
    } else {
        None
    };
    let recipe = format!(
        "{} {} lr {} wd {} rho {}",
        if pretrained { "pretrained" } else { "scratch" },
        if schedule.is_some() { "cosine" } else { "step" },
        lr.map_or("preset".into(), |v| v.to_string()),
        wd.map_or("preset".into(), |v| v.to_string()),
        rho.map_or("preset".into(), |v| v.to_string()),
    );
    println!(
        "| seed | recipe | candidate | val top1 | val top5 | val gcn top1 | val gcn top5 | \
         train top1 | clusters | singleton share | fallbacks (pos/neg) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut results: Vec<(String, Vec<[f64; 4]>)> =
        names.iter().map(|n| (n.clone(), Vec::new())).collect();
    for &seed in &seeds {
        let mut synth = synth_config(Preset::Default, seed);
        if let Some(n) = train_per_class {
            synth.train_per_class = n;
        }
        let data = synth.generate()?.dataset;
        let classes = data.num_classes();
        let held = hold_out_per_class(data.split("train")?, classes, per_class, seed)?;
        for (name, scores) in &mut results {
            let mut base = preset_config(Preset::Default, classes).with_seed(seed);
            if schedule.is_some() {
                base.lr_schedule = Some(LrSchedule::Cosine {
                    epochs: base.epochs,
                    min_factor: 0.0,
                    per_iteration: true,
                });
            }
            if let Some(lr) = lr {
                base = base.with_lr(lr).with_gcn_lr(2.0 * lr);
            }
            if let Some(wd) = wd {
                base = base.with_weight_decay(wd);
            }
            if let Some(rho) = rho {
                base.clustering = Clustering::Art(FuzzyArtConfig::new().with_rho(rho));
            }
            let config = candidate(name, base)?;
            let options = FitOptions {
                run: RunOptions::new("csrms", name.as_str()).with_runs_root(&runs),
                verbosity: Verbosity::Quiet,
                stop_after_epochs: None,
                weights: weights.clone(),
                initial: None,
                save_initial: None,
                log_steps: false,
            };
            let trained = fit(&config, &held.train, &device, &options)?;
            let pipeline = config.test_pipeline();
            let eval = evaluate(
                &trained.model,
                &held.validation,
                &pipeline,
                classes,
                &device,
            )?;
            let on_train = evaluate(&trained.model, &held.train, &pipeline, classes, &device)?;
            // The last relation refresh's clustering, as its metrics record it.
            let refresh = trained
                .epochs
                .iter()
                .rev()
                .find(|r| r.extra.contains_key("clusters"));
            let stat = |key: &str| {
                refresh
                    .and_then(|r| r.extra.get(key))
                    .map_or("—".to_string(), |v| format!("{v}"))
            };
            println!(
                "| {seed} | {recipe} | {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | \
                 {}/{} |",
                eval.top1,
                eval.top5,
                eval.gcn_top1,
                eval.gcn_top5,
                on_train.top1,
                stat("clusters"),
                stat("singleton_cluster_share"),
                stat("positive_fallbacks"),
                stat("negative_fallbacks"),
            );
            scores.push([eval.top1, eval.top5, eval.gcn_top1, eval.gcn_top5]);
        }
    }
    println!();
    println!("| recipe | candidate | val top1 mean (sd) | top5 | gcn top1 mean (sd) | gcn top5 |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, scores) in &results {
        let column = |k: usize| spread(&scores.iter().map(|s| s[k]).collect::<Vec<_>>());
        let ((t1, s1), (t5, _), (g1, sg), (g5, _)) = (column(0), column(1), column(2), column(3));
        println!(
            "| {recipe} | {name} | {t1:.2} ({s1:.2}) | {t5:.2} | {g1:.2} ({sg:.2}) | {g5:.2} |"
        );
    }
    std::fs::remove_dir_all(&runs)?;
    Ok(())
}
