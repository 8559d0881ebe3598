//! ISL's rounds end to end on a tiny synth-fine (labels hidden from training): every phase
//! runs, the GAN trains, mining grows the positive sets, and both evaluations are reported.

use burn::tensor::Device;
use relata_backbone::{ResNetConfig, ResNetDepth};
use relata_dataset::{Pipeline, SynthFineConfig, Transform};
use relata_isl::{GanConfig, GanStop, IslConfig, MiningConfig, fit};
use relata_train::{RunOptions, Verbosity};

#[test]
fn a_round_of_backbone_gan_and_mining() {
    let data = SynthFineConfig {
        families: 2,
        classes_per_family: 2,
        modes: 2,
        train_per_class: 16,
        test_per_class: 8,
        image_size: 32,
        seed: 2,
    }
    .generate()
    .unwrap()
    .dataset;
    let (train, test) = (data.split("train").unwrap(), data.split("test").unwrap());
    let config = IslConfig::new(
        ResNetConfig::new(ResNetDepth::ResNet18)
            .with_width(8)
            .with_cifar_stem(true),
    )
    .with_dim(32)
    .with_gan(GanConfig::new().with_dim(32).with_negatives(16))
    .with_mining(
        MiningConfig::new()
            .with_negatives(16)
            .with_threshold(-1.0)
            .with_base_radius(-1.0),
    )
    .with_rounds(1)
    .with_backbone_epochs(2)
    .with_gan_stop(GanStop::Fixed { epochs: 2 })
    .with_max_mining_epochs(2)
    .with_batch_size(32)
    .with_image_size(32);
    let mut test_pipeline = Pipeline::isl_test();
    test_pipeline.transforms.insert(
        0,
        Transform::ResizeExact {
            width: 32,
            height: 32,
        },
    );
    let root = tempfile::tempdir().unwrap();
    let run = RunOptions::new("isl", "synth-fine").with_dir(root.path().join("run"));
    let trained = fit(
        &config,
        train,
        test,
        &test_pipeline,
        &Device::flex(),
        &run,
        Verbosity::Quiet,
        None,
    )
    .unwrap();
    assert!(trained.completed);
    let phases: Vec<&str> = trained.epochs.iter().map(|e| e.phase.as_str()).collect();
    assert_eq!(&phases[..4], ["backbone-0", "backbone-0", "gan-0", "gan-0"]);
    assert_eq!(phases.last(), Some(&"backbone-1"));
    let gan_epoch = &trained.epochs[2];
    assert!(gan_epoch.loss["d"].is_finite() && gan_epoch.loss["g"].is_finite());
    let backbone = &trained.epochs[0];
    assert!(backbone.loss["inst"].is_finite() && backbone.loss["hard"] >= 0.0);
    // With the threshold and radius lowered every anchor mines: the sets grew.
    assert!(trained.mining.pairs > 0, "{:?}", trained.mining);
    let round0 = trained.round0.expect("round-0 evaluation");
    for e in [round0, trained.last] {
        assert!((0.0..=100.0).contains(&e.knn_top1));
        assert!((0.0..=1.0).contains(&e.acc) && e.nmi.is_finite() && e.ari.is_finite());
    }
}

#[test]
fn reproduce_smoke_writes_baseline_and_full_rows() {
    use relata_isl::reproduce::{Preset, ReproduceOptions, reproduce};
    let root = tempfile::tempdir().unwrap();
    let mut opts = ReproduceOptions::new(Preset::Smoke);
    opts.out = root.path().to_path_buf();
    opts.verbosity = Verbosity::Quiet;
    let outcome = reproduce(&opts, &Device::flex()).unwrap();
    let variants: Vec<&str> = outcome
        .results
        .rows
        .iter()
        .map(|r| r["variant"].as_str().unwrap())
        .collect();
    assert_eq!(variants, ["baseline", "full"]);
    for r in &outcome.results.rows {
        for k in ["knn_top1", "knn_top5", "acc", "nmi", "ari"] {
            assert!(r[k].as_f64().unwrap().is_finite(), "{k}");
        }
    }
    assert!(outcome.dir.join("metrics.json").is_file());
    assert!(outcome.dir.join("report.md").is_file());
}
