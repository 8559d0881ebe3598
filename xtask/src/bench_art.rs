//! `cargo xtask bench art`: one CSRMS relation refresh's Fuzzy ART at CIFAR size (50,000 images ×
//! 512-d features, ρ = 0.95, α = 0.01, β = 0.5), on one thread and on every core, with the
//! clusters it makes. Features: 100 Gaussian class centres in 512-d, images scattered around
//! them — a stand-in for a trained backbone's features (no dataset is downloaded here).

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use relata_csrms::{FuzzyArtConfig, fuzzy_art};
use relata_train::SeededRng;
use serde_json::json;

const DIM: usize = 512;

pub fn run(quick: bool, json_out: &Path) -> Result<()> {
    let n = if quick { 5_000 } else { 50_000 };
    let mut rng = SeededRng::new(3);
    let centres: Vec<f32> = (0..100 * DIM).map(|_| rng.normal() as f32).collect();
    let features: Vec<f32> = (0..n)
        .flat_map(|_| {
            let c = rng.below(100);
            let centre = centres[c * DIM..(c + 1) * DIM].to_vec();
            centre
                .into_iter()
                .map(|v| v + 0.7 * rng.normal() as f32)
                .collect::<Vec<_>>()
        })
        .collect();
    let config = FuzzyArtConfig::new();
    let threads = rayon::current_num_threads();
    eprintln!(
        "bench art: {n} × {DIM}, rho {}, {threads} threads",
        config.rho
    );
    let time = |pool_threads: usize| -> Result<(f64, relata_csrms::ArtClustering)> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(pool_threads)
            .build()?;
        let t = Instant::now();
        let clustering = pool.install(|| fuzzy_art(&features, DIM, &config, 1))?;
        Ok((t.elapsed().as_secs_f64(), clustering))
    };
    let (parallel, clustering) = time(threads)?;
    // One thread too at the quick size (at 50,000 it takes several minutes): the ratio, and
    // the check that the parallel search gives the same clusters.
    let single = if quick {
        let (single, again) = time(1)?;
        anyhow::ensure!(
            clustering == again,
            "Fuzzy ART gave different clusters on 1 and {threads} threads"
        );
        Some(single)
    } else {
        None
    };
    let mut sizes = vec![0usize; clustering.clusters];
    for &a in &clustering.assignments {
        sizes[a] += 1;
    }
    let singletons = sizes.iter().filter(|&&s| s == 1).count();
    println!(
        "\n| Fuzzy ART, {n} × {DIM}, ρ {} | seconds | clusters | single-image clusters |",
        config.rho
    );
    println!("| --- | --- | --- | --- |");
    if let Some(single) = single {
        println!(
            "| 1 thread | {single:.1} | {} | {singletons} |",
            clustering.clusters
        );
    }
    println!(
        "| {threads} threads | {parallel:.1} | {} | {singletons} |",
        clustering.clusters
    );
    let value = json!({
        "n": n, "dim": DIM, "rho": config.rho, "threads": threads,
        "seconds_one_thread": single, "seconds_all_threads": parallel,
        "clusters": clustering.clusters, "single_image_clusters": singletons,
    });
    if let Some(parent) = json_out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(json_out, serde_json::to_string_pretty(&value)?)?;
    eprintln!("wrote {}", json_out.display());
    Ok(())
}
