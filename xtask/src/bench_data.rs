//! `cargo xtask bench data`: the image pipeline's throughput against
//! torchvision's, on the same JPEG files, in one run.
//!
//! Files: `n` JPEGs of 500×375 (quality 90, the size of a typical CUB image), rendered from
//! synth-fine and cached under `target/bench/jpeg-500x375/`. relata: `BatchLoader` with the
//! `cmbh_train` preset (resize 255×255 → random crop 224 → flip → normalise) into batches of 32
//! on the flex device, all cores through rayon. torchvision: the same transforms on PIL images
//! through a `DataLoader` with 2 workers. Both: best of 3 epochs, images per second.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use relata_dataset::export::save_image_with_quality;
use relata_dataset::{BatchLoader, ImageRef, Pipeline, Sample, SynthFineConfig};
use serde_json::json;

const WIDTH: u32 = 500;
const HEIGHT: u32 = 375;
const BATCH: usize = 32;

fn make_files(dir: &Path, n: usize) -> Result<Vec<std::path::PathBuf>> {
    let paths: Vec<_> = (0..n)
        .map(|i| dir.join(format!("img_{i:05}.jpg")))
        .collect();
    if paths.iter().all(|p| p.exists()) {
        return Ok(paths);
    }
    std::fs::create_dir_all(dir)?;
    eprintln!(
        "rendering {n} JPEGs of {WIDTH}×{HEIGHT} into {}",
        dir.display()
    );
    let per_class = n.div_ceil(16);
    let synth = SynthFineConfig {
        train_per_class: per_class,
        test_per_class: 0,
        image_size: WIDTH,
        seed: 5,
        ..Default::default()
    }
    .generate()?;
    for (i, path) in paths.iter().enumerate() {
        let img = synth.dataset.splits["train"][i].image.load_rgb()?;
        let img =
            image::imageops::crop_imm(&img, 0, (WIDTH - HEIGHT) / 2, WIDTH, HEIGHT).to_image();
        save_image_with_quality(&img, path, 90)?;
    }
    Ok(paths)
}

pub fn run(python: &str, quick: bool, json_out: &Path, root: &Path) -> Result<()> {
    let n = if quick { 128 } else { 512 };
    let dir = root.join("target/bench/jpeg-500x375");
    let paths = make_files(&dir, n)?;
    let samples: Vec<Sample> = paths
        .iter()
        .map(|p| Sample {
            image: ImageRef::File(p.clone()),
            label: 0,
        })
        .collect();
    let device = burn::tensor::Device::flex();
    let loader = BatchLoader::new(&samples, Pipeline::cmbh_train(), 0)?;
    let threads = rayon::current_num_threads();
    let mut best = f64::INFINITY;
    for epoch in 0..3 {
        let t = Instant::now();
        for chunk in (0..n).collect::<Vec<_>>().chunks(BATCH) {
            let batch = loader.load(chunk, epoch, &device)?;
            assert_eq!(batch.images.dims()[2..], [224, 224]);
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    let ours = n as f64 / best;
    eprintln!("relata: {ours:.1} images/s ({threads} rayon threads)");
    let script = root.join("benches/python/data_reference.py");
    let dir_s = dir.to_str().context("bench dir is not UTF-8")?;
    let reference = crate::bench::python(
        python,
        &script,
        &[dir_s, &BATCH.to_string(), "2", "3"],
        "torch==2.9.0 torchvision==0.24.0 pillow",
    )?;
    let theirs = reference["images_per_sec"]
        .as_f64()
        .context("reference images_per_sec")?;
    let ratio = ours / theirs;
    println!("| pipeline | images/s | ratio |");
    println!("| --- | --- | --- |");
    println!("| relata BatchLoader cmbh_train ({threads} threads) | {ours:.1} | {ratio:.2}× |");
    println!(
        "| torchvision {} PIL, DataLoader 2 workers | {theirs:.1} | 1.00× |",
        reference["torchvision"].as_str().unwrap_or("?")
    );
    if let Some(parent) = json_out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(
        json_out,
        serde_json::to_string_pretty(&json!({
            "images": n, "size": [WIDTH, HEIGHT], "batch": BATCH, "threads": threads,
            "relata_images_per_sec": ours, "torchvision": reference, "ratio": ratio,
        }))?,
    )?;
    Ok(())
}
