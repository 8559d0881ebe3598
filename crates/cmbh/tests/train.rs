//! Training end to end on synth-fine: learning (mAP well above random codes), exact resume of
//! the code cache, the reproduction's files and the search product, and the full model beating
//! the B-only ablation.

use burn::tensor::Device;
use relata_cmbh::reproduce::{
    Preset, ReproduceOptions, all_means_step, preset_config, reproduce, synth_config,
};
use relata_cmbh::search::SearchRun;
use relata_cmbh::{Ablation, CmbhTrainingConfig, evaluate};
use relata_cmbh::{FitOptions, fit};
use relata_dataset::{Pipeline, SeededRng, SynthFineConfig};
use relata_metrics::{Labels, PackedCodes, mean_average_precision};
use relata_train::{RunOptions, Verbosity};

fn options(root: &std::path::Path, name: &str) -> FitOptions {
    FitOptions {
        run: RunOptions::new("cmbh", "synth-fine").with_dir(root.join(name)),
        verbosity: Verbosity::Quiet,
        stop_after_epochs: None,
        weights: None,
        initial: None,
        save_initial: None,
        log_steps: false,
    }
}

/// The mAP of random ±1 codes on the same labels (averaged over 5 draws).
fn random_code_map(db: &Labels, q: &Labels, nq: usize, ndb: usize, bits: usize) -> f64 {
    let mut rng = SeededRng::new(9);
    let mut draw = |n: usize| {
        let v: Vec<f32> = (0..n * bits)
            .map(|_| if rng.below(2) == 0 { -1.0 } else { 1.0 })
            .collect();
        PackedCodes::from_values(&v, bits).unwrap()
    };
    (0..5)
        .map(|_| {
            let (qc, dc) = (draw(nq), draw(ndb));
            mean_average_precision(&qc, &dc, q, db, None).unwrap()
        })
        .sum::<f64>()
        / 5.0
}

fn learn_data() -> SynthFineConfig {
    SynthFineConfig {
        families: 2,
        classes_per_family: 3,
        modes: 2,
        train_per_class: 24,
        test_per_class: 12,
        image_size: 32,
        seed: 1,
    }
}

/// The step of lr 0.02 under the all-means reduction (at 0.05 the full model sometimes failed to
/// start learning): under the paper's sums the classification gradient is 16× (the batch), so
/// lr ÷ 16 and weight decay × 16 give the same SGD step with the hash terms weighted 1/16.
fn learn_config(ablation: Ablation, epochs: usize, seed: u64) -> CmbhTrainingConfig {
    let c = preset_config(Preset::Smoke, None, "synth-fine", 6, 12, ablation)
        .with_epochs(epochs)
        .with_batch_size(16)
        .with_seed(seed);
    let mut c = all_means_step(c, 0.02, 5e-4);
    c.model.backbone.width = 8;
    c
}

fn train_and_map(
    ablation: Ablation,
    epochs: usize,
    seed: u64,
) -> (f64, f64, relata_cmbh::TrainedCmbh) {
    let device = Device::flex();
    let data = learn_data().generate().unwrap().dataset;
    let (train, test) = (data.split("train").unwrap(), data.split("test").unwrap());
    let root = tempfile::tempdir().unwrap();
    let config = learn_config(ablation, epochs, seed);
    let trained = fit(
        &config,
        train,
        None,
        &device,
        &options(root.path(), "learn"),
    )
    .unwrap();
    assert!(trained.completed);
    let encoder = trained.model.clone().into_encoder();
    let pipeline = Pipeline::cmbh_test_sized(config.resize, config.crop);
    let eval = evaluate(&encoder, train, test, &pipeline, 64, &device).unwrap();
    let labels =
        |s: &[relata_dataset::Sample]| Labels::single(s.iter().map(|x| x.label as i64).collect());
    let random = random_code_map(&labels(train), &labels(test), test.len(), train.len(), 12);
    (eval.map, random, trained)
}

/// The full model learns: every loss term falls on each seed, and the mean mAP over seeds 0–2
/// is well above random codes (measured 2026-12-07 under the paper's reduction: 0.357 against
/// 0.188; under the all-means reduction it was 0.296).
///
/// It does not compare the full model with the B-only ablation: on 144 images that gap is seed
/// noise. Over seeds 0–7 B-only scored 0.306 and B+L 0.308 against the full model's 0.315;
/// over seeds 3–10 the gap was 0.015 with relata's batch-norm kernels and 0.022 with burn's.
/// Seeds 0–2 had shown 0.368 against 0.237 with burn's batch norm, which was a lucky draw (details in
/// docs/cmbh.md). The comparison is made on the default preset in
/// [`full_model_beats_b_only_on_the_default_preset`].
#[test]
fn full_model_learns() {
    let _guard = relata_train::generator_turn();
    let seeds = [0u64, 1, 2];
    let mut full = Vec::new();
    let mut random = 0.0;
    for &seed in &seeds {
        let (map, random_map, trained) = train_and_map(Ablation::FULL, 20, seed);
        let first = &trained.epochs[0].loss;
        let last = &trained.epochs.last().unwrap().loss;
        for term in ["cls", "region", "hash_pair"] {
            assert!(
                last[term] < first[term],
                "seed {seed}, {term}: {first:?} → {last:?}"
            );
        }
        full.push(map);
        random = random_map;
    }
    let full = full.iter().sum::<f64>() / full.len() as f64;
    eprintln!("mean mAP over seeds {seeds:?}: full {full:.3}, random {random:.3}");
    assert!(
        full > random + 0.1,
        "mean mAP {full:.3} vs random codes {random:.3}"
    );
}

/// The paper's trends on the default preset (synth-pretrained backbone, validation plateau),
/// as `cargo xtask reproduce cmbh --seeds 42,1,2 --bits 12,48 --ablation` trains them, on the
/// test split: over the three seeds 48-bit codes are not worse than 12-bit ones (mean gain ≥ 0),
/// and the cross-layer module (+L) lifts B by more than 0.02 mAP at both code lengths. The
/// ranking's other steps do not hold there (the region branch lowers the mAP); the printed
/// notes say so, and docs/cmbh.md has the measured rows.
#[test]
#[ignore = "trains the four Table-4 variants at 12 and 48 bits on three seeds of the default preset: about 25 min on 2 cores"]
fn default_preset_shows_the_code_length_and_cross_layer_trends() {
    const MARGIN: f64 = 0.02;
    let _guard = relata_train::generator_turn();
    let device = Device::flex();
    let root = tempfile::tempdir().unwrap();
    let mut opts = ReproduceOptions::new(Preset::Default);
    opts.bits = vec![12, 48];
    opts.ablation = true;
    opts.seeds = vec![42, 1, 2];
    opts.settings.out = root.path().to_path_buf();
    opts.settings.verbosity = Verbosity::Quiet;
    let outcome = reproduce(&opts, &device).unwrap();
    let results = &outcome.results;
    eprintln!("{}", results.to_markdown());
    let per_seed = |variant: &str, bits: u64| -> Vec<f64> {
        let row = results
            .rows
            .iter()
            .find(|r| r["variant"] == variant && r["bits"] == bits)
            .unwrap();
        opts.seeds
            .iter()
            .map(|s| row[&format!("seed {s}")].as_f64().unwrap())
            .collect()
    };
    let compare = |(bv, bb): (&str, u64), (vv, vb): (&str, u64)| {
        let mut c = relata_train::SeedComparison::new("map");
        for ((seed, b), v) in opts
            .seeds
            .iter()
            .zip(per_seed(bv, bb))
            .zip(per_seed(vv, vb))
        {
            c.push(*seed, b, v);
        }
        c
    };
    let codes = compare(("full", 12), ("full", 48));
    eprintln!("48 against 12 bits\n{}", codes.summary(0.0));
    assert!(codes.mean_gain() >= 0.0, "{}", codes.summary(0.0));
    assert!(
        results
            .notes
            .iter()
            .any(|n| n.contains("not worse") && !n.starts_with("**"))
    );
    for bits in [12, 48] {
        let cross = compare(("B", bits), ("B+L", bits));
        eprintln!("B+L against B at {bits} bits\n{}", cross.summary(MARGIN));
        assert!(cross.holds(MARGIN), "{}", cross.summary(MARGIN));
    }
}

/// Stopping after epoch 1 and resuming ends with exactly the model and codes of an
/// uninterrupted run: the code cache b^{(t−1)}, the proxies and u survive the checkpoint.
#[test]
fn resume_restores_the_code_cache_exactly() {
    let _guard = relata_train::generator_turn();
    let device = Device::flex();
    let data = synth_config(Preset::Smoke, 3).generate().unwrap().dataset;
    let train = data.split("train").unwrap();
    let test = data.split("test").unwrap();
    let config =
        preset_config(Preset::Smoke, None, "synth-fine", 4, 8, Ablation::FULL).with_epochs(3);
    let root = tempfile::tempdir().unwrap();
    let full = fit(&config, train, None, &device, &options(root.path(), "a")).unwrap();
    let mut first = options(root.path(), "b");
    first.stop_after_epochs = Some(1);
    let stopped = fit(&config, train, None, &device, &first).unwrap();
    assert!(!stopped.completed);
    let mut second = options(root.path(), "b");
    second.run = second.run.with_resume(true);
    let resumed = fit(&config, train, None, &device, &second).unwrap();
    assert!(resumed.completed);
    let losses = |t: &relata_cmbh::TrainedCmbh| -> Vec<f64> {
        t.epochs.iter().map(|e| e.loss["total"]).collect()
    };
    assert_eq!(losses(&full), losses(&resumed));
    let pipeline = Pipeline::cmbh_test_sized(config.resize, config.crop);
    let codes = |t: relata_cmbh::TrainedCmbh| {
        evaluate(&t.model.into_encoder(), train, test, &pipeline, 32, &device)
            .unwrap()
            .queries
    };
    assert_eq!(codes(full), codes(resumed));
}

#[test]
fn reproduce_smoke_writes_results_and_search_finds_neighbours() {
    let _guard = relata_train::generator_turn();
    let device = Device::flex();
    let root = tempfile::tempdir().unwrap();
    let mut opts = ReproduceOptions::new(Preset::Smoke);
    opts.bits = vec![8, 12];
    opts.settings.out = root.path().to_path_buf();
    opts.settings.verbosity = Verbosity::Quiet;
    let outcome = reproduce(&opts, &device).unwrap();
    let rows = &outcome.results.rows;
    assert_eq!(rows.len(), 2);
    for (row, bits) in rows.iter().zip([8, 12]) {
        assert_eq!(row["variant"], "full");
        assert_eq!(row["bits"], bits);
        let map = row["map"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&map), "{map}");
    }
    assert!(
        outcome.results.paper.is_empty(),
        "no paper numbers for synth-fine"
    );
    for f in ["metrics.json", "report.md", "config.json"] {
        assert!(outcome.dir.join(f).is_file(), "{f}");
    }
    let run_dir = outcome.dir.join("full-12bits");
    for f in [
        "encoder/encoder.json",
        "encoder/encoder.bpk",
        "index.bin",
        "result.json",
    ] {
        assert!(run_dir.join(f).is_file(), "{f}");
    }

    // Search: the query image written to disk and read back gives the same neighbours as its
    // code from the evaluation.
    let data = synth_config(Preset::Smoke, opts.settings.seed)
        .generate()
        .unwrap()
        .dataset;
    let query = &data.split("test").unwrap()[3];
    let path = root.path().join("query.png");
    query.image.load_rgb().unwrap().save(&path).unwrap();
    let run = SearchRun::open(&outcome.dir, None, &device).unwrap();
    assert_eq!(run.encoder.bits(), 12, "defaults to the largest bit length");
    let hits = run.search_image(&path, 5, &device).unwrap();
    assert_eq!(hits.len(), 5);
    assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
    let img = Pipeline::cmbh_test_sized(36, 32)
        .augment(query.image.load_rgb().unwrap(), &mut SeededRng::new(0))
        .unwrap();
    let mut pixels = vec![0f32; 3 * 32 * 32];
    run.pipeline.normalize_into(&img, &mut pixels);
    let x = burn::tensor::Tensor::from_data(
        burn::tensor::TensorData::new(pixels, [1, 3, 32, 32]),
        &device,
    );
    let code = run.encoder.encode(x).unwrap();
    let direct = run.index.search(code.code(0), 5).unwrap();
    let ids: Vec<usize> = hits.iter().map(|h| h.entry.index).collect();
    assert_eq!(
        ids,
        direct.ids.iter().map(|&i| i as usize).collect::<Vec<_>>()
    );

    // The 8-bit run is reachable by --bits; a missing length is a clear error.
    assert_eq!(
        SearchRun::open(&outcome.dir, Some(8), &device)
            .unwrap()
            .encoder
            .bits(),
        8
    );
    let err = SearchRun::open(&outcome.dir, Some(48), &device)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("48 bits") && err.contains("full-12bits"),
        "{err}"
    );

    // --resume keeps finished runs: the same numbers without retraining.
    let mut again = opts.clone();
    again.settings.resume = true;
    let resumed = reproduce(&again, &device).unwrap();
    assert_eq!(resumed.dir, outcome.dir);
    assert_eq!(resumed.results.rows, outcome.results.rows);
}
