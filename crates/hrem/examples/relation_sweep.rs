//! Trains HREM on the default synth-captions reproduction's data with some settings changed and
//! prints the test recalls — for choosing the relation module's settings on a new dataset.
//!
//! ```text
//! cargo run -p relata-hrem --example relation_sweep -- [key=value ...]
//!   keys: lambda, warmup, threshold, reg, lr, batch, epochs, seed,
//!         negatives=hardest|weighted|released (released: the authors' float32 sampler),
//!         interaction=fusion|standalone, relations=true|false,
//!         slots=valid|released (the fragment slots: valid ones, or the released code's),
//!         ff (feed-forward width of every Transformer layer),
//!         train, dev, test (scenes per split of the generated data),
//!         families, family_edit (scene families of the generated data, 0 = independent),
//!         neighbours=PxK (k-means neighbour batches of P clusters × K images; one caption per
//!         image, so an epoch has a fifth of the steps), milestones=E1,E2 (lr ×0.1 epochs)
//! ```

use burn::tensor::Device;
use relata_hrem::config::{FragmentSlots, Interaction, Negatives};
use relata_hrem::reproduce::{CaptionData, preset_config, synth_config};
use relata_hrem::training::{FitOptions, Verbosity};
use relata_hrem::{evaluate, fit};
use relata_train::Preset;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::env::temp_dir().join(format!("hrem-sweep-{}", std::process::id()));
    let mut seed = 42;
    let args: Vec<(String, String)> = std::env::args()
        .skip(1)
        .map(|a| {
            let (k, v) = a.split_once('=').ok_or(format!("`{a}`: use key=value"))?;
            Ok((k.to_string(), v.to_string()))
        })
        .collect::<Result<_, String>>()?;
    if let Some((_, v)) = args.iter().find(|(k, _)| k == "seed") {
        seed = v.parse()?;
    }
    let mut synth = synth_config(Preset::Default, seed);
    for (k, v) in &args {
        match k.as_str() {
            "train" => synth.train = v.parse()?,
            "dev" => synth.dev = v.parse()?,
            "test" => synth.test = v.parse()?,
            "families" => synth.families = v.parse()?,
            "family_edit" => synth.family_edit = v.parse()?,
            _ => {}
        }
    }
    let data = synth.write(&root.join("data"))?;
    let (train, dev, test) = (
        data.split("train")?,
        data.split("dev")?,
        data.split("test")?,
    );
    let mut config = preset_config(
        Preset::Default,
        &CaptionData::SynthCaptions,
        train.dim,
        None,
    )
    .with_seed(seed);
    for (k, v) in &args {
        match k.as_str() {
            "lambda" => config.relation.lambda = v.parse()?,
            "ff" => config.encoder.ff = v.parse()?,
            "threshold" => config.relation.threshold = v.parse()?,
            "warmup" => config.warmup_iterations = v.parse()?,
            "reg" => config.reg_weight = v.parse()?,
            "lr" => config.lr = v.parse()?,
            "batch" => config.batch_size = v.parse()?,
            "epochs" => {
                config.epochs = v.parse()?;
                let e = config.epochs;
                config.lr_milestones.retain(|&m| m < e);
            }
            "relations" => config.relations = v.parse()?,
            "milestones" => {
                config.lr_milestones = v.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            "neighbours" => {
                let (p, k) = v.split_once('x').ok_or("neighbours=PxK, e.g. 8x8")?;
                config.neighbour_batches = Some([p.parse()?, k.parse()?]);
            }
            "negatives" if v == "hardest" => config.negatives = Negatives::Hardest,
            "negatives" if v == "released" => {
                if let Negatives::DistanceWeighted { n, cutoff } = config.negatives {
                    config.negatives = Negatives::DistanceWeightedReleased { n, cutoff };
                }
            }
            "negatives" if v == "weighted" => {}
            "negatives" => {
                return Err(format!("negatives={v}: hardest, weighted or released").into());
            }
            "interaction" if v == "standalone" => {
                config.relation.interaction = Interaction::Standalone
            }
            "slots" if v == "released" => config.relation.slots = FragmentSlots::Released,
            "slots" if v == "valid" => {}
            "slots" => return Err(format!("slots={v}: valid or released").into()),
            "interaction" | "seed" | "train" | "dev" | "test" | "families" | "family_edit" => {}
            other => return Err(format!("unknown key `{other}`").into()),
        }
    }
    let mut options = FitOptions::new("hrem", "synth-captions");
    options.run = options.run.with_runs_root(root.join("runs"));
    options.verbosity = Verbosity::Lines;
    let device = Device::flex();
    let trained = fit(&config, train, Some(dev), &device, &options)?;
    let r = evaluate(
        &trained.model,
        &trained.extra.tokenizer,
        test,
        None,
        &device,
    )?;
    println!(
        "{args:?}: i2t {:.1}/{:.1}/{:.1} t2i {:.1}/{:.1}/{:.1} rSum {:.1}",
        r.i2t.r1, r.i2t.r5, r.i2t.r10, r.t2i.r1, r.t2i.r5, r.t2i.r10, r.rsum
    );
    std::fs::remove_dir_all(&root)?;
    Ok(())
}
