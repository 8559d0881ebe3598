//! How Fuzzy ART's vigilance ρ shapes the relation graph on a warm-up model's features:
//! clusters, dominant/mixed, R_ID/R_IS/R_MC, and how many anchors fall back to random
//! positives/negatives. Picks ρ for a new dataset before a long run.
//!
//! ```text
//! cargo run --release -p relata-csrms --example vigilance_sweep -- [warmup-epochs] [rho ...]
//! ```

use burn::tensor::Device;
use relata_csrms::reproduce::{preset_config, synth_config};
use relata_csrms::training::{RunOptions, Verbosity};
use relata_csrms::{
    FitOptions, FuzzyArtConfig, RelationGraph, Variant, fit, fuzzy_art, sample_sets,
};
use relata_dataset::BatchLoader;
use relata_train::Preset;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let warmup: usize = args.first().map_or(Ok(5), |a| a.parse())?;
    let rhos: Vec<f64> = if args.len() > 1 {
        args[1..]
            .iter()
            .map(|a| a.parse())
            .collect::<Result<_, _>>()?
    } else {
        vec![0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    };
    let device = Device::flex();
    let data = synth_config(Preset::Default, 1).generate()?.dataset;
    let train = data.split("train")?;
    let config = preset_config(Preset::Default, data.num_classes())
        .with_variant(Variant::Baseline)
        .with_epochs(warmup);
    let runs = std::env::temp_dir().join(format!("csrms-sweep-{}", std::process::id()));
    // The default preset's start: the shipped synth-pretrained backbone.
    let weights = relata_backbone::pretrained::write_synth_resnet18_w8(&runs)?;
    let options = FitOptions {
        run: RunOptions::new("csrms", "synth-fine").with_runs_root(&runs),
        verbosity: Verbosity::Lines,
        stop_after_epochs: None,
        weights: Some(weights),
        initial: None,
        save_initial: None,
        log_steps: false,
    };
    let trained = fit(&config, train, &device, &options)?;
    let loader = BatchLoader::new(train, config.test_pipeline(), 0)?;
    let indices: Vec<usize> = (0..train.len()).collect();
    let mut features = Vec::new();
    for chunk in indices.chunks(128) {
        let batch = loader.load(chunk, 0, &device)?;
        features.extend(
            trained
                .model
                .features(batch.images)
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| format!("{e:?}"))?,
        );
    }
    let labels: Vec<usize> = train.iter().map(|s| s.label).collect();
    let dim = features.len() / labels.len();
    println!(
        "| rho | clusters | dominant | mixed | R_ID | R_IS | R_MC | pos fallbacks | neg fallbacks |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for rho in rhos {
        let art = fuzzy_art(&features, dim, &FuzzyArtConfig::new().with_rho(rho), 1)?;
        let graph = RelationGraph::new(&labels, &art.assignments, data.num_classes())?;
        let r = graph.relation_counts();
        let sets = sample_sets(&graph, &features, dim, 2, 2, 1)?;
        println!(
            "| {rho} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.clusters,
            r.dominant_clusters,
            r.mixed_clusters,
            r.r_id,
            r.r_is,
            r.r_mc,
            sets.positive_fallbacks,
            sets.negative_fallbacks
        );
    }
    std::fs::remove_dir_all(&runs)?;
    Ok(())
}
