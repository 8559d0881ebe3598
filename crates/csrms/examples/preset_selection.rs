//! Chooses between CSRMS settings on a validation split carved from synth-fine's training
//! images, never on the test split: each candidate trains on the rest of the training split
//! and is scored on the held-out images. The table docs/csrms.md reports comes from here.
//!
//! ```text
//! cargo run -p relata-csrms --example preset_selection -- [seed=42] [validation=10] \
//!     [candidates=baseline,code,mix,default] [schedule=step|cosine] [lr=F] [wd=F]
//! ```
//!
//! `schedule`, `lr` (backbone; the GCN's is twice it) and `wd` override the preset's training
//! recipe for every candidate, so that the recipe itself is chosen on validation too.
//!
//! Candidates (all on the default preset's backbone, epochs and schedule):
//! - `baseline`: the CE baseline;
//! - `code`: the released code's loss weights (0.5 · L_gcn + (L_cls + L_neg + L_inter)/6) and
//!   learnable smoothing initialised at (1, 0);
//! - `mix`: L_cls at weight 1, smoothing fixed at the code's (F_g + w_c + p_c)/3 mix;
//! - `default`: `mix` with L_cls over every sampled image (the default preset).

use burn::tensor::Device;
use relata_csrms::reproduce::{preset_config, synth_config};
use relata_csrms::training::{RunOptions, Verbosity};
use relata_csrms::{CsrmsConfig, FitOptions, Variant, evaluate, fit};
use relata_dataset::hold_out_per_class;
use relata_train::{LrSchedule, Preset};

fn candidate(name: &str, base: CsrmsConfig) -> Result<CsrmsConfig, String> {
    Ok(match name {
        "baseline" => base.with_variant(Variant::Baseline),
        "code" => base
            .with_weight_gcn(0.5)
            .with_weights_cls_neg_inter([1.0 / 6.0; 3])
            .with_cls_on_sampled(false)
            .with_learnable_smoothing(true)
            .with_smoothing_init([1.0, 0.0, 1.0, 0.0]),
        "mix" => base.with_cls_on_sampled(false),
        "default" => base,
        other => return Err(format!("unknown candidate `{other}`")),
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut seed = 42u64;
    let mut per_class = 10usize;
    let mut schedule = None;
    let mut lr = None;
    let mut wd = None;
    let mut names = vec!["baseline", "code", "mix", "default"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    for arg in std::env::args().skip(1) {
        match arg.split_once('=') {
            Some(("seed", v)) => seed = v.parse()?,
            Some(("validation", v)) => per_class = v.parse()?,
            Some(("candidates", v)) => names = v.split(',').map(String::from).collect(),
            Some(("schedule", "step")) => schedule = None,
            Some(("schedule", "cosine")) => schedule = Some(()),
            Some(("lr", v)) => lr = Some(v.parse::<f64>()?),
            Some(("wd", v)) => wd = Some(v.parse::<f64>()?),
            _ => return Err(format!("unknown argument `{arg}`").into()),
        }
    }
    let device = Device::flex();
    let data = synth_config(Preset::Default, seed).generate()?.dataset;
    let classes = data.num_classes();
    let held = hold_out_per_class(data.split("train")?, classes, per_class, seed)?;
    let runs = std::env::temp_dir().join(format!("csrms-selection-{}", std::process::id()));
    let recipe = format!(
        "{} lr {} wd {}",
        if schedule.is_some() { "cosine" } else { "step" },
        lr.map_or("preset".into(), |v| v.to_string()),
        wd.map_or("preset".into(), |v| v.to_string())
    );
    println!(
        "| seed | recipe | candidate | validation top1 (%) | top5 (%) | gcn top1 (%) | train top1 (%) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for name in &names {
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
        let config = candidate(name, base)?;
        let options = FitOptions {
            run: RunOptions::new("csrms", name).with_runs_root(&runs),
            verbosity: Verbosity::Lines,
            stop_after_epochs: None,
            weights: None,
            initial: None,
            save_initial: None,
            log_steps: false,
        };
        let trained = fit(&config, &held.train, &device, &options)?;
        let eval = evaluate(
            &trained.model,
            &held.validation,
            &config.test_pipeline(),
            classes,
            &device,
        )?;
        let on_train = evaluate(
            &trained.model,
            &held.train,
            &config.test_pipeline(),
            classes,
            &device,
        )?;
        println!(
            "| {seed} | {recipe} | {name} | {:.2} | {:.2} | {:.2} | {:.2} |",
            eval.top1, eval.top5, eval.gcn_top1, on_train.top1
        );
    }
    std::fs::remove_dir_all(&runs)?;
    Ok(())
}
