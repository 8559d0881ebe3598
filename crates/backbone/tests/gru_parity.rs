//! BiGRU parity with `nn.GRU(bidirectional=True)` over `pack_padded_sequence`
//! (`fixtures/backbone/make_gru.py`): both directions' outputs and their mean within 1e-4,
//! zero past each caption's length.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use relata_backbone::gru::PYTORCH_GRU_REMAP;
use relata_backbone::{BiGruEncoderConfig, import_with_remap};
use relata_metrics::npy::{NpyArray, NpyData};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/backbone/gru")
}

fn max_err(got: Tensor<3>, path: &Path) -> f32 {
    let expected = NpyArray::read(path).unwrap();
    assert_eq!(got.dims().to_vec(), expected.shape);
    got.into_data()
        .iter::<f32>()
        .zip(expected.to_f32())
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
}

#[test]
fn packed_bigru_matches_pytorch() {
    let device = Device::flex();
    let case: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir().join("case.json")).unwrap()).unwrap();
    let cfg = BiGruEncoderConfig::new(
        case["vocab"].as_u64().unwrap() as usize,
        case["word_dim"].as_u64().unwrap() as usize,
        case["hidden"].as_u64().unwrap() as usize,
    );
    let mut model = cfg.init(&device);
    let report = import_with_remap(
        &mut model,
        &dir().join("weights.pth"),
        &PYTORCH_GRU_REMAP,
        &[],
    )
    .unwrap();
    assert_eq!(report.applied, 9, "{report:?}");
    let tokens = NpyArray::read(dir().join("tokens.npy")).unwrap();
    let ids: Vec<i64> = match &tokens.data {
        NpyData::Int(v) => v.clone(),
        other => panic!("tokens must be int64, got {other:?}"),
    };
    let [b, l] = [tokens.shape[0], tokens.shape[1]];
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, l]), &device);
    let lengths: Vec<usize> = case["lengths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let both = model.forward_directions(tokens.clone(), &lengths);
    let err = max_err(both.clone(), &dir().join("directions.npy"));
    assert!(err < 1e-5, "directions: {err}");
    let err = max_err(model.forward(tokens, &lengths), &dir().join("mean.npy"));
    assert!(err < 1e-5, "mean: {err}");
    // Nothing past a caption's end.
    let tail = both.slice([2..3, 2..l]).abs().sum().into_scalar::<f32>();
    assert_eq!(tail, 0.0);
}
