//! ISL's GAN losses against PyTorch reference values (`fixtures/isl/make_gan.py`): the same
//! weights and triplets give the same proxy, D loss, G loss and G-loss gradient within 1e-4.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use relata_backbone::import_with_remap;
use relata_isl::GanConfig;
use relata_metrics::npy::NpyArray;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/isl")
}

fn npy(name: &str) -> (Vec<f32>, Vec<usize>) {
    let path = dir().join(format!("gan_{name}.npy"));
    let a = NpyArray::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (a.to_f32(), a.shape.clone())
}

fn tensor(name: &str, device: &Device) -> Tensor<2> {
    let (v, s) = npy(name);
    Tensor::from_data(TensorData::new(v, [s[0], s[1]]), device)
}

fn rel_error(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    got.iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

#[test]
fn gan_losses_match_pytorch() {
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir().join("gan_ref.json")).unwrap()).unwrap();
    let device = Device::flex().autodiff();
    let dim = reference["dim"].as_u64().unwrap() as usize;
    let mut gan = GanConfig::new().with_dim(dim).init(&device);
    let report = import_with_remap(&mut gan, &dir().join("gan_weights.pth"), &[], &[]).unwrap();
    assert_eq!(report.applied, 12);
    let (a, p, n) = (
        tensor("a", &device),
        tensor("p", &device),
        tensor("n", &device),
    );

    let proxy: Vec<f32> = gan
        .generator
        .forward(a.clone(), p.clone(), n.clone())
        .into_data()
        .iter::<f32>()
        .collect();
    assert!(rel_error(&proxy, &npy("proxy").0) < 1e-4);

    let d = gan
        .discriminator_loss(a.clone(), p.clone(), n.clone())
        .into_scalar::<f32>();
    let want = reference["d_loss"].as_f64().unwrap() as f32;
    assert!((d - want).abs() / want < 1e-4, "D loss {d} vs {want}");

    let g_loss = gan.generator_loss(a, p, n);
    let g = g_loss.clone().into_scalar::<f32>();
    let want = reference["g_loss"].as_f64().unwrap() as f32;
    assert!((g - want).abs() / want < 1e-4, "G loss {g} vs {want}");
    let grads = g_loss.backward();
    // burn's Linear weight is [in, out]; PyTorch's [out, in].
    let grad: Vec<f32> = gan
        .generator
        .fc1
        .weight
        .val()
        .grad(&grads)
        .unwrap()
        .transpose()
        .into_data()
        .iter::<f32>()
        .collect();
    let err = rel_error(&grad, &npy("grad_g_fc1").0);
    assert!(
        err < 1e-4,
        "G-loss gradient w.r.t. G.fc1: relative error {err}"
    );
}
