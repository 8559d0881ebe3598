//! HREM end to end on the embedded synth-captions (written in the SCAN precomp layout and read
//! back by the real loader): it learns, a stopped run resumes to the same result, the saved
//! model loads back and searches, and the BERT text encoder trains from a checkpoint directory.

use std::path::{Path, PathBuf};

use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use relata_dataset::{PrecompDataset, PrecompSplit};
use relata_hrem::config::{Interaction, RelationConfig, TextEncoderKind};
use relata_hrem::relation::RelevanceMlp;
use relata_hrem::reproduce::{CaptionData, preset_config, synth_config};
use relata_hrem::train::trainer_config;
use relata_hrem::training::{Clock, NamedOptimizer, RunOptions, Verbosity};
use relata_hrem::{FitOptions, HremConfig, HremModel, TrainedHrem, embed_split, evaluate, fit};
use relata_train::Preset;

fn data(root: &Path) -> PrecompDataset {
    synth_config(Preset::Smoke, 5)
        .write(&root.join("data"))
        .unwrap()
}

fn options(root: &Path, name: &str) -> FitOptions {
    FitOptions {
        run: RunOptions::new("hrem", "synth-captions").with_dir(root.join(name)),
        verbosity: Verbosity::Quiet,
        stop_after_epochs: None,
        weights: None,
        initial: None,
        save_initial: None,
        log_steps: false,
    }
}

/// Trains `config` on `train` without a dev split, on flex, in `root/run`.
fn train_run(config: &HremConfig, train: &PrecompSplit, root: &Path) -> TrainedHrem {
    fit(config, train, None, &Device::flex(), &options(root, "run")).unwrap()
}

fn smoke(dim: usize) -> HremConfig {
    preset_config(Preset::Smoke, &CaptionData::SynthCaptions, dim, None)
}

/// With relations on (after a 10-step warm-up), a stopped and resumed run ends with the same
/// losses, dev scores and embeddings as an uninterrupted one.
#[test]
fn resume_is_exact_with_relations_on() {
    let _turn = relata_train::generator_turn();
    let root = tempfile::tempdir().unwrap();
    let data = data(root.path());
    let (train, dev, test) = (
        data.split("train").unwrap(),
        data.split("dev").unwrap(),
        data.split("test").unwrap(),
    );
    let config = smoke(train.dim);
    let device = Device::flex();
    let whole = fit(
        &config,
        train,
        Some(dev),
        &device,
        &options(root.path(), "whole"),
    )
    .unwrap();
    let mut first = options(root.path(), "split");
    first.stop_after_epochs = Some(2);
    let part = fit(&config, train, Some(dev), &device, &first).unwrap();
    assert!(!part.completed);
    let mut second = options(root.path(), "split");
    second.run = second.run.with_resume(true);
    let resumed = fit(&config, train, Some(dev), &device, &second).unwrap();
    assert!(resumed.completed);
    assert_eq!(whole.epochs.len(), resumed.epochs.len());
    for (a, b) in whole.epochs.iter().zip(&resumed.epochs) {
        assert_eq!(a.loss, b.loss, "epoch {}", a.epoch);
        assert_eq!(a.val, b.val, "epoch {}", a.epoch);
    }
    // Relations were on in the last epoch: its loss has the cross and regulariser terms.
    let last = whole.epochs.last().unwrap();
    assert!(
        last.loss.contains_key("cross") && last.loss.contains_key("reg"),
        "{last:?}"
    );
    let a = embed_split(&whole.model, &whole.extra.tokenizer, test, &device).unwrap();
    let b = embed_split(&resumed.model, &resumed.extra.tokenizer, test, &device).unwrap();
    assert_eq!(a, b);
}

/// The saved model (encoders + vocabulary) embeds exactly like the trained one; a directory
/// without a model is an error naming the file.
#[test]
fn saved_model_loads_back() {
    let _turn = relata_train::generator_turn();
    let root = tempfile::tempdir().unwrap();
    let data = data(root.path());
    let (train, test) = (data.split("train").unwrap(), data.split("test").unwrap());
    let config = smoke(train.dim).with_epochs(1);
    let device = Device::flex();
    let trained = train_run(&config, train, root.path());
    let (model, loaded_config, tokenizer) =
        HremModel::load(&trained.run_dir.join("model"), &device).unwrap();
    assert!(
        model.relation.is_none(),
        "inference needs no relation module"
    );
    assert_eq!(loaded_config.encoder, config.encoder);
    assert_eq!(
        embed_split(&trained.model, &trained.extra.tokenizer, test, &device).unwrap(),
        embed_split(&model, &tokenizer, test, &device).unwrap()
    );
    let e = HremModel::load(&root.path().join("nowhere"), &device)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("nowhere") && e.contains("model.json"), "{e}");
}

/// Learning smoke test: the baseline's test rSum after 12 epochs is well above what an untrained
/// model scores (chance on 20 images is about 2 × (5 + 25 + 50) = 160).
#[test]
fn learns_on_synth_captions() {
    let _turn = relata_train::generator_turn();
    let root = tempfile::tempdir().unwrap();
    let data = data(root.path());
    let (train, test) = (data.split("train").unwrap(), data.split("test").unwrap());
    let device = Device::flex();
    let config = smoke(train.dim).with_relations(false);
    let untrained = config
        .init(
            &config
                .tokenizer(train.captions.iter().map(String::as_str))
                .unwrap(),
            false,
            &device,
        )
        .unwrap();
    let tokenizer = config
        .tokenizer(train.captions.iter().map(String::as_str))
        .unwrap();
    let before = evaluate(&untrained, &tokenizer, test, None, &device).unwrap();
    let config = config.with_epochs(12).with_lr_milestones(vec![9]);
    let trained = train_run(&config, train, root.path());
    let after = evaluate(
        &trained.model,
        &trained.extra.tokenizer,
        test,
        None,
        &device,
    )
    .unwrap();
    assert!(
        after.rsum > before.rsum + 60.0 && after.rsum > 250.0,
        "rSum {:.1} → {:.1}",
        before.rsum,
        after.rsum
    );
}

/// The Standalone mechanism and neighbour batches train too.
#[test]
fn standalone_with_neighbour_batches_trains() {
    let _turn = relata_train::generator_turn();
    let root = tempfile::tempdir().unwrap();
    let data = data(root.path());
    let train = data.split("train").unwrap();
    let config = smoke(train.dim)
        .with_relation(
            RelationConfig::new()
                .with_top_k(4)
                .with_interaction(Interaction::Standalone),
        )
        .with_neighbour_batches(Some([4, 4]))
        .with_epochs(2);
    let trained = train_run(&config, train, root.path());
    let last = trained.epochs.last().unwrap();
    // 60 images in clusters, 16 captions per batch.
    assert!(last.steps >= 3, "{last:?}");
    assert!(last.loss.contains_key("cross"));
    // It trains: L_tri(v, u), the one term of both epochs (the relation terms switch on in the
    // second), falls.
    let first = &trained.epochs[0];
    assert!(
        last.loss["tri"] < first.loss["tri"],
        "{:?} → {:?}",
        first.loss,
        last.loss
    );
}

fn bert_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/backbone/bert-tiny")
}

/// The BERT text encoder: a Hugging Face checkpoint directory (the tiny test checkpoint)
/// trains with its own learning-rate group and the saved model reloads it.
#[test]
fn bert_text_encoder_trains_and_reloads() {
    let _turn = relata_train::generator_turn();
    let root = tempfile::tempdir().unwrap();
    let data = data(root.path());
    let (train, test) = (data.split("train").unwrap(), data.split("test").unwrap());
    let config = preset_config(
        Preset::Smoke,
        &CaptionData::SynthCaptions,
        train.dim,
        Some(&bert_dir()),
    )
    .with_epochs(1);
    assert!(matches!(config.encoder.text, TextEncoderKind::Bert { .. }));
    let device = Device::flex();
    let trained = train_run(&config, train, root.path());
    let (model, _, tokenizer) = HremModel::load(&trained.run_dir.join("model"), &device).unwrap();
    assert_eq!(
        embed_split(&trained.model, &trained.extra.tokenizer, test, &device).unwrap(),
        embed_split(&model, &tokenizer, test, &device).unwrap()
    );
    // A missing checkpoint directory names what is missing.
    let mut bad = config.clone();
    bad.encoder.text = TextEncoderKind::Bert {
        path: root.path().join("no-bert"),
        max_len: 32,
    };
    let e = fit(&bad, train, None, &device, &options(root.path(), "bad"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no-bert"), "{e}");
}

/// Wrong region dimensions and bad settings are refused with the field named.
#[test]
fn bad_input_is_refused() {
    let _turn = relata_train::generator_turn();
    let root = tempfile::tempdir().unwrap();
    let data = data(root.path());
    let train = data.split("train").unwrap();
    let device = Device::flex();
    let config = smoke(train.dim + 1);
    let e = fit(&config, train, None, &device, &options(root.path(), "a"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("region_dim"), "{e}");
    let config = smoke(train.dim).with_batch_size(1);
    let e = fit(&config, train, None, &device, &options(root.path(), "b"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("batch_size"), "{e}");
    // Backbone weights do not apply: HREM's images arrive as region features.
    let with_weights = FitOptions {
        weights: Some(root.path().join("resnet18.pth")),
        ..options(root.path(), "c")
    };
    let e = fit(&smoke(train.dim), train, None, &device, &with_weights)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("do not apply to HREM"), "{e}");
}

fn weights(mlp: &RelevanceMlp) -> Vec<f32> {
    [mlp.fc1.weight.val(), mlp.fc2.weight.val()]
        .into_iter()
        .flat_map(|w| w.into_data().iter::<f32>().collect::<Vec<f32>>())
        .collect()
}

/// A loss on the I→T relevance alone moves the I→T MLP and leaves the T→I MLP where it was,
/// through relata's optimiser (gradients registered by parameter id, AdamW, global-norm
/// clipping). Built with a plain `clone`, the two MLPs shared their parameter ids: the update
/// meant for one went to the other.
#[test]
fn relevance_mlps_are_two_sets_of_parameters() {
    let _turn = relata_train::generator_turn();
    let device = Device::flex().autodiff();
    let config = smoke(16);
    let tokenizer = config.tokenizer(["a red cube"]).unwrap();
    let model = config.init(&tokenizer, false, &device).unwrap();
    let before = model.relation.clone().unwrap();
    let q = Tensor::<3>::ones([2, 3, config.relation.top_k], &device);
    let loss = model.relation.as_ref().unwrap().i2t.forward(q).sum();
    let mut grads = loss.backward();
    let params = GradientsParams::from_module(&mut grads, &model);
    let trainer = trainer_config(&config, false);
    let mut optimizer = NamedOptimizer::new(trainer.optimizers[0].clone());
    let clock = Clock {
        epoch: 0,
        iteration: 0,
        iterations_per_epoch: 1,
        iteration_in_epoch: 0,
    };
    let after = optimizer
        .apply(model, params, &clock, 1.0)
        .0
        .relation
        .unwrap();
    assert_ne!(
        weights(&before.i2t),
        weights(&after.i2t),
        "the I→T MLP trains"
    );
    assert_eq!(
        weights(&before.t2i),
        weights(&after.t2i),
        "the T→I MLP had no gradient"
    );
}

/// In a whole training run both relevance MLPs start from the same values (the released code's
/// `deepcopy`), both train, and they end apart.
#[test]
fn relevance_mlps_train_independently() {
    let _turn = relata_train::generator_turn();
    let root = tempfile::tempdir().unwrap();
    let data = data(root.path());
    let train = data.split("train").unwrap();
    let config = smoke(train.dim).with_epochs(2);
    // The initial model exactly as `fit` builds it.
    let autodiff = Device::flex().autodiff();
    relata_train::seed_device(&autodiff, config.seed);
    let tokenizer = config
        .tokenizer(train.captions.iter().map(String::as_str))
        .unwrap();
    let initial = config.init(&tokenizer, true, &autodiff).unwrap();
    let initial = initial.relation.unwrap();
    assert_eq!(weights(&initial.t2i), weights(&initial.i2t));

    let trained = train_run(&config, train, root.path());
    assert!(trained.epochs.last().unwrap().loss.contains_key("reg"));
    let relation = trained.model.relation.as_ref().unwrap();
    for (name, before, after) in [
        ("t2i", &initial.t2i, &relation.t2i),
        ("i2t", &initial.i2t, &relation.i2t),
    ] {
        let moved = weights(before)
            .iter()
            .zip(weights(after))
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            moved > 1e-4,
            "relation.{name} did not train (moved {moved})"
        );
    }
    assert_ne!(weights(&relation.t2i), weights(&relation.i2t));
}
