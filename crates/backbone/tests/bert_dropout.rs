//! BERT dropout (`hidden_dropout_prob`, `attention_probs_dropout_prob` from `config.json`): in
//! training only. Its own test binary: dropout draws from flex's process-wide generator, which
//! another test's weight initialisation would advance between a seed and a forward pass.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use relata_backbone::{BertModel, BertTokenizer};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/backbone")
}

/// The tiny checkpoint with both dropout probabilities of bert-base (0.1) in its `config.json`.
fn tiny_with_dropout(root: &Path) -> PathBuf {
    let dir = root.join("bert-tiny-dropout");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["model.safetensors", "vocab.txt"] {
        std::fs::copy(fixtures().join("bert-tiny").join(f), dir.join(f)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("bert-tiny/config.json")).unwrap())
            .unwrap();
    config["hidden_dropout_prob"] = 0.1.into();
    config["attention_probs_dropout_prob"] = 0.1.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir
}

fn values(t: Tensor<3>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// Dropout comes from `config.json` and acts in training only: on an autodiff device two calls
/// seeded differently differ; the inference model (`valid`) gives the same states every time,
/// whatever the seed, and equals the no-dropout checkpoint's.
#[test]
fn dropout_follows_the_config_in_training_only() {
    let root = tempfile::tempdir().unwrap();
    let dir = tiny_with_dropout(root.path());
    let config = relata_backbone::BertConfig::from_hf_json(&dir.join("config.json")).unwrap();
    assert_eq!(
        (
            config.hidden_dropout_prob,
            config.attention_probs_dropout_prob
        ),
        (0.1, 0.1)
    );
    let plain =
        relata_backbone::BertConfig::from_hf_json(&fixtures().join("bert-tiny/config.json"))
            .unwrap();
    assert_eq!(plain.hidden_dropout_prob, 0.0);

    let device = Device::flex().autodiff();
    let tok = BertTokenizer::from_dir(&dir, 32).unwrap();
    let batch = tok.encode(&["a man rides a horse", "two dogs"]).unwrap();
    let (ids, mask) = batch.tensors(&device);
    let (model, _) = BertModel::from_hf_dir(&dir, &device).unwrap();
    let train = |seed: u64| {
        device.seed(seed);
        values(model.forward(ids.clone(), mask.clone()))
    };
    let (a, b, a_again) = (train(1), train(2), train(1));
    assert_ne!(a, b, "dropout draws follow the seed");
    assert_eq!(a, a_again, "the same seed draws the same dropout");

    let inference = model.valid();
    let plain_device = Device::flex();
    let (ids, mask) = batch.tensors(&plain_device);
    plain_device.seed(1);
    let x = values(inference.forward(ids.clone(), mask.clone()));
    plain_device.seed(2);
    assert_eq!(x, values(inference.forward(ids.clone(), mask.clone())));
    let (no_dropout, _) =
        BertModel::from_hf_dir(&fixtures().join("bert-tiny"), &plain_device).unwrap();
    assert_eq!(x, values(no_dropout.forward(ids, mask)));
    assert_ne!(a, x, "training mode drops units");

    // A probability outside [0, 1) is refused, naming the field.
    let mut bad: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    bad["hidden_dropout_prob"] = 1.5.into();
    std::fs::write(dir.join("config.json"), bad.to_string()).unwrap();
    let e = BertModel::from_hf_dir(&dir, &plain_device)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("hidden_dropout_prob"), "{e}");
}
