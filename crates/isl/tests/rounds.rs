//! ISL's rounds end to end on a tiny synth-fine (labels hidden from training): every phase
//! runs, the GAN trains, mining grows the positive sets, and both evaluations are reported.

use burn::module::Module;
use burn::tensor::Device;
use relata_backbone::{ResNetConfig, ResNetDepth};
use relata_dataset::{ImageDataset, Pipeline};
use relata_isl::reproduce::{Preset, synth_config};
use relata_isl::train::trainer_config;
use relata_isl::{
    FitOptions, GanConfig, GanStop, IslConfig, IslLrSchedule, IslNet, IslTask, MiningConfig,
    TrainedIsl, evaluate, fit,
};
use relata_train::{RunOptions, Verbosity};

struct Tiny {
    data: ImageDataset,
    config: IslConfig,
    test_pipeline: Pipeline,
}

/// A tiny synth-fine (4 classes) and a one-round configuration whose mining threshold and
/// radius are lowered so that every anchor mines.
fn tiny() -> Tiny {
    // The smoke preset's synth-fine: 4 classes × 16 training / 8 test images, 32×32.
    let data = synth_config(Preset::Smoke, 2).generate().unwrap().dataset;
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
    .with_rounds(2)
    .with_backbone_epochs(2)
    .with_gan_stop(GanStop::Fixed { epochs: 2 })
    .with_max_mining_epochs(2)
    .with_batch_size(32)
    .with_image_size(32);
    Tiny {
        data,
        config,
        test_pipeline: Pipeline::isl_test(),
    }
}

fn run(tiny: &Tiny, options: &RunOptions, stop_after: Option<usize>) -> TrainedIsl {
    let (train, test) = (
        tiny.data.split("train").unwrap(),
        tiny.data.split("test").unwrap(),
    );
    let options = FitOptions {
        run: options.clone(),
        verbosity: Verbosity::Quiet,
        stop_after_epochs: stop_after,
        weights: None,
        initial: None,
        save_initial: None,
        log_steps: false,
    };
    fit(&tiny.config, train, test, &Device::flex(), &options).unwrap()
}

#[test]
fn a_round_of_backbone_gan_and_mining() {
    let _lock = relata_train::generator_turn();
    let tiny = tiny();
    let root = tempfile::tempdir().unwrap();
    let options = RunOptions::new("isl", "synth-fine").with_dir(root.path().join("run"));
    let trained = run(&tiny, &options, None);
    assert!(trained.completed);
    let phases: Vec<&str> = trained.epochs.iter().map(|e| e.phase.as_str()).collect();
    assert_eq!(&phases[..4], ["backbone-0", "backbone-0", "gan-0", "gan-0"]);
    assert_eq!(phases.last(), Some(&"backbone-1"));
    let gan_epoch = &trained.epochs[2];
    assert!(gan_epoch.loss["d"].is_finite() && gan_epoch.loss["g"].is_finite());
    // Both phases learn: instance discrimination's loss falls over round 0's two epochs, and
    // the discriminator's over the GAN phase's two.
    let backbone = &trained.epochs[..2];
    assert!(backbone[0].loss["hard"] >= 0.0);
    assert!(
        backbone[1].loss["inst"] < backbone[0].loss["inst"],
        "L_inst {} → {}",
        backbone[0].loss["inst"],
        backbone[1].loss["inst"]
    );
    let gan = &trained.epochs[2..4];
    assert!(
        gan[1].loss["d"] < gan[0].loss["d"],
        "L_D {} → {}",
        gan[0].loss["d"],
        gan[1].loss["d"]
    );
    // With the threshold and radius lowered every anchor mines: the sets grew.
    assert!(trained.extra.mining.pairs > 0, "{:?}", trained.extra.mining);
    let round0 = trained.extra.round0.expect("round-0 evaluation");
    for e in [round0, trained.extra.last] {
        assert!((0.0..=100.0).contains(&e.knn_top1));
        assert!((0.0..=1.0).contains(&e.acc) && e.nmi.is_finite() && e.ari.is_finite());
    }
}

/// With D's threshold out of reach nothing is mined; `mining_patience` ends the phase after that
/// many barren epochs instead of running all `max_mining_epochs`, and the epoch records say why.
#[test]
fn mining_patience_ends_a_barren_phase() {
    let _lock = relata_train::generator_turn();
    let mut tiny = tiny();
    tiny.config = tiny
        .config
        .clone()
        .with_backbone_epochs(1)
        .with_gan_stop(GanStop::Fixed { epochs: 1 })
        .with_mining(MiningConfig::new().with_negatives(16).with_threshold(1.0))
        .with_max_mining_epochs(5)
        .with_mining_patience(Some(2));
    let root = tempfile::tempdir().unwrap();
    let trained = run(
        &tiny,
        &RunOptions::new("isl", "synth-fine").with_dir(root.path().join("run")),
        None,
    );
    let mining: Vec<_> = trained
        .epochs
        .iter()
        .filter(|e| e.phase == "mine-0")
        .collect();
    assert_eq!(mining.len(), 2);
    // The embedding's own neighbour precision, the yardstick for mining, once per phase.
    let yardstick = mining[0].extra["neighbour_precision"];
    assert!((0.0..=1.0).contains(&yardstick), "{yardstick}");
    assert!(!mining[1].extra.contains_key("neighbour_precision"));
    for e in mining {
        assert_eq!(e.loss["mined_new_pairs"], 0.0);
        assert_eq!(e.loss["above_threshold"], 0.0);
        assert!(e.loss["mean_score"] < 1.0 && e.loss["proxy_nearest_cosine"].is_finite());
    }
    assert_eq!(trained.extra.mining.pairs, 0);
}

/// Interrupted in the GAN phase and resumed, a run ends exactly where an uninterrupted one does:
/// memory bank, positive sets, GAN history and random streams are all in the checkpoint.
#[test]
fn resume_mid_round_is_exact() {
    let _lock = relata_train::generator_turn();
    let tiny = tiny();
    let root = tempfile::tempdir().unwrap();
    let whole = run(
        &tiny,
        &RunOptions::new("isl", "synth-fine").with_dir(root.path().join("whole")),
        None,
    );
    let split = RunOptions::new("isl", "synth-fine").with_dir(root.path().join("split"));
    let first = run(&tiny, &split, Some(3));
    assert!(!first.completed);
    assert_eq!(first.epochs.last().unwrap().phase, "gan-0");
    assert!(
        !first.run_dir.join("encoder").exists(),
        "an unfinished run must not export its encoder"
    );
    let resumed = run(&tiny, &split.with_resume(true), None);
    assert!(resumed.completed);
    let losses = |t: &TrainedIsl| -> Vec<(String, Vec<(String, f64)>)> {
        t.epochs
            .iter()
            .map(|e| {
                let mut l: Vec<(String, f64)> =
                    e.loss.iter().map(|(k, v)| (k.clone(), *v)).collect();
                l.sort_by(|a, b| a.0.cmp(&b.0));
                (e.phase.clone(), l)
            })
            .collect()
    };
    assert_eq!(losses(&whole), losses(&resumed));
    assert_eq!(whole.extra.mining, resumed.extra.mining);
    assert_eq!(whole.extra.round0, resumed.extra.round0);
    assert_eq!(whole.extra.last, resumed.extra.last);
    // The exported encoders are the same network.
    let device = Device::flex();
    let (a, _) = IslNet::load(&whole.run_dir.join("encoder"), &device).unwrap();
    let (b, config) = IslNet::load(&resumed.run_dir.join("encoder"), &device).unwrap();
    assert_eq!(config, tiny.config);
    let x = burn::tensor::Tensor::<4>::ones([2, 3, 32, 32], &device);
    assert_eq!(a.forward(x.clone()).into_data(), b.forward(x).into_data());
}

#[test]
fn reproduce_smoke_writes_baseline_round0_and_full_rows() {
    let _lock = relata_train::generator_turn();
    use relata_isl::reproduce::{ReproduceOptions, reproduce};
    let root = tempfile::tempdir().unwrap();
    let mut opts = ReproduceOptions::new(Preset::Smoke);
    opts.settings.out = root.path().to_path_buf();
    opts.settings.verbosity = Verbosity::Quiet;
    let outcome = reproduce(&opts, &Device::flex()).unwrap();
    let variants: Vec<&str> = outcome
        .results
        .rows
        .iter()
        .map(|r| r["variant"].as_str().unwrap())
        .collect();
    assert_eq!(variants, ["baseline", "round0", "full"]);
    // The baseline trains as many backbone epochs as ISL, in one round of instance
    // discrimination alone.
    let full = relata_isl::reproduce::preset_config(Preset::Smoke);
    let baseline = relata_isl::reproduce::equal_budget_baseline(&full);
    assert_eq!(
        (
            baseline.rounds,
            baseline.backbone_epochs,
            baseline.hard_weight
        ),
        (1, full.rounds * full.backbone_epochs, 0.0)
    );
    let epochs = |run: &str| -> usize {
        let text = std::fs::read_to_string(outcome.dir.join(run).join("metrics.jsonl")).unwrap();
        text.lines()
            .filter(|l| l.contains("\"phase\":\"backbone-"))
            .count()
    };
    assert_eq!(epochs("baseline"), epochs("full"));
    for r in &outcome.results.rows {
        for k in ["knn_top1", "knn_top5", "acc", "nmi", "ari"] {
            assert!(r[k].as_f64().unwrap().is_finite(), "{k}");
        }
    }
    assert!(outcome.dir.join("metrics.json").is_file());
    assert!(outcome.dir.join("report.md").is_file());
}

/// Trains round 0 only, with S_i either {i} (instance discrimination) or, as an oracle for
/// perfect mining, every training image of i's hidden class; returns the test kNN top-1.
fn round0_knn(tiny: &Tiny, oracle: bool, seed: u64) -> f64 {
    // Batch 8: 48 steps, so that BatchNorm's running statistics (momentum 0.1) forget their
    // initial values before the inference-mode evaluation.
    let config = tiny
        .config
        .clone()
        .with_rounds(1)
        .with_backbone_epochs(6)
        .with_batch_size(8)
        .with_lr(0.01)
        .with_lr_schedule(IslLrSchedule::CosinePerRound)
        .with_seed(seed);
    let (train, test) = (
        tiny.data.split("train").unwrap(),
        tiny.data.split("test").unwrap(),
    );
    let autodiff = Device::flex().autodiff();
    relata_train::seed_device(&autodiff, config.seed);
    let model = config.init(&autodiff);
    let mut task = IslTask::new(
        config.clone(),
        train,
        &[],
        test,
        tiny.test_pipeline.clone(),
        &autodiff,
    )
    .unwrap();
    if oracle {
        for (i, a) in train.iter().enumerate() {
            for (j, b) in train.iter().enumerate() {
                if a.label == b.label {
                    task.sets.add_pair(i, j);
                }
            }
        }
    }
    let root = tempfile::tempdir().unwrap();
    let options = RunOptions::new("isl", "synth-fine").with_dir(root.path().join("run"));
    let run_dir =
        relata_train::RunDir::open(&options, &serde_json::to_value(&config).unwrap()).unwrap();
    let trainer = relata_train::Trainer::new(
        trainer_config(&config).with_verbosity(Verbosity::Quiet),
        &autodiff,
        run_dir,
    )
    .unwrap();
    let outcome = trainer.fit(&mut task, model).unwrap();
    let net = outcome.model.valid().net;
    evaluate(
        &net,
        train,
        test,
        &tiny.test_pipeline,
        &config,
        &Device::flex(),
    )
    .unwrap()
    .knn_top1
}

/// The backbone objective learns from positives: with the positive sets a perfect miner would
/// find (L₁ over same-class instances, L₂ towards the least similar one), six epochs lift the
/// test kNN above instance discrimination's.
///
/// Ignored: it measures noise. On 64 images the embedding stays close to one
/// direction either way (pairwise cosine ≈ 0.98 in the features and in the memory bank), and
/// the test split has 32 images, 3.1 points each. Its first five seeds gave 35.0% vs 25.0%
/// with burn's `conv2d`; seeds 5–9 do not follow (ten seeds: 31.9% vs 27.2%), and with
/// relata's flex convolution kernels (the same arithmetic summed in another order) ten seeds
/// give 30.3% vs 27.2%, the first five 30.0% vs 26.2%. Leave-one-out kNN on the training
/// images, class separation in the memory bank, 12 or 20 epochs and lr 0.05 / 0.1 show no
/// reliable gap either (docs/isl.md). A test of this claim needs a setting where the features
/// do not collapse; until then it runs on request:
/// `cargo test -p relata-isl --test rounds -- --ignored mined_positives`.
#[test]
#[ignore = "measures noise on 64 images: docs/isl.md, \"The oracle-positives test\""]
fn mined_positives_teach_the_backbone() {
    let _lock = relata_train::generator_turn();
    let tiny = tiny();
    let seeds = [0u64, 1, 2, 3, 4];
    let mean = |oracle: bool| {
        seeds
            .iter()
            .map(|&s| round0_knn(&tiny, oracle, s))
            .sum::<f64>()
            / seeds.len() as f64
    };
    let (plain, oracle) = (mean(false), mean(true));
    assert!(
        oracle > plain + 5.0 && oracle > 30.0,
        "mean kNN top-1 over {} seeds: {oracle:.1}% with same-class positives vs {plain:.1}% \
         without (chance 25%)",
        seeds.len()
    );
}

/// `FitOptions::weights` starts the backbone from a torchvision state dict: a width-4 CIFAR
/// ResNet-18 checkpoint of the same shape is imported (its `fc` left out), one with the
/// ImageNet stem is refused with the mismatching tensor named.
#[test]
fn backbone_weights_are_imported() {
    let _lock = relata_train::generator_turn();
    let tiny = tiny();
    let (train, test) = (
        tiny.data.split("train").unwrap(),
        tiny.data.split("test").unwrap(),
    );
    let root = tempfile::tempdir().unwrap();
    let mut config = tiny.config.clone();
    config.backbone = ResNetConfig::new(ResNetDepth::ResNet18)
        .with_width(4)
        .with_cifar_stem(true);
    let with = |name: &str, case: &str| FitOptions {
        run: RunOptions::new("isl", "synth-fine").with_dir(root.path().join(name)),
        verbosity: Verbosity::Quiet,
        stop_after_epochs: Some(1),
        weights: Some(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../fixtures/backbone")
                .join(case)
                .join("weights.pth"),
        ),
        initial: None,
        save_initial: None,
        log_steps: false,
    };
    let device = Device::flex();
    assert!(fit(&config, train, test, &device, &with("a", "resnet18_cifar")).is_ok());
    let e = fit(&config, train, test, &device, &with("b", "resnet18"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("conv1"), "{e}");
}

/// One plateau rule across rounds, as the authors run it: the encoder's learning rate is
/// `lr × factor^drops`, where the drops are those PyTorch's `ReduceLROnPlateau` takes on the
/// held-out monitor's kNN values seen so far; round 1 starts where round 0 left it instead of
/// restarting; the GAN's Adam rates never move; the held-out images are not trained on; and a
/// run resumed after round 0 continues the same rule.
#[test]
fn one_plateau_schedule_across_rounds_on_held_out_training_images() {
    let _lock = relata_train::generator_turn();
    let mut tiny = tiny();
    tiny.config = tiny
        .config
        .clone()
        .with_backbone_epochs(3)
        .with_monitor_share(0.25)
        .with_lr_schedule(IslLrSchedule::Plateau {
            every: 1,
            factor: 0.5,
            patience: 0,
        });
    let root = tempfile::tempdir().unwrap();
    let whole = run(
        &tiny,
        &RunOptions::new("isl", "synth-fine").with_dir(root.path().join("whole")),
        None,
    );
    let train_len = tiny.data.split("train").unwrap().len();
    assert_eq!(whole.extra.monitor_images, train_len / 4);
    let backbone: Vec<_> = whole
        .epochs
        .iter()
        .filter(|e| e.phase.starts_with("backbone-"))
        .collect();
    assert_eq!(backbone.len(), 6);
    let mut rule = relata_train::ReduceOnPlateau::new(relata_train::Goal::Maximize, 0.5, 0);
    for e in &backbone {
        let want = tiny.config.lr * rule.scale();
        assert!(
            (e.lr["sgd"] - want).abs() < 1e-12,
            "{} epoch {}: lr {} vs {want}",
            e.phase,
            e.epoch_in_phase,
            e.lr["sgd"]
        );
        rule.observe(e.extra["monitor_knn_top1"]);
    }
    assert!(rule.drops() >= 1, "the values exercise a drop");
    for e in &whole.epochs {
        assert_eq!(e.lr["adam_d"], tiny.config.gan_lr);
        assert_eq!(e.lr["adam_g"], tiny.config.gan_lr);
    }
    // Mining is recorded per round, with its yardstick.
    assert_eq!(whole.extra.rounds.len(), 1);
    let r0 = whole.extra.rounds[0];
    assert_eq!(r0.round, 0);
    assert!(r0.epochs >= 1 && (0.0..=1.0).contains(&r0.neighbour_precision));
    assert_eq!(r0.mined_per_instance, whole.extra.mining.mined_per_instance);

    let split = RunOptions::new("isl", "synth-fine").with_dir(root.path().join("split"));
    assert!(!run(&tiny, &split, Some(3)).completed);
    let resumed = run(&tiny, &split.with_resume(true), None);
    let lrs = |t: &TrainedIsl| t.epochs.iter().map(|e| e.lr["sgd"]).collect::<Vec<_>>();
    assert_eq!(lrs(&resumed), lrs(&whole));
    assert_eq!(resumed.extra.rounds, whole.extra.rounds);
    assert_eq!(resumed.extra.last, whole.extra.last);
}
