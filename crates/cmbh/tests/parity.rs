//! Parity of CMBH's full training loss and its gradients with a PyTorch implementation written
//! from relata's reading of the paper (`fixtures/cmbh/make_cmbh.py`; it checks the reading, not
//! fidelity to released code, of which there is none): same weights, same batch, same code
//! cache; every term of Eq. 15 under both reductions (the paper's, the default, and every term a
//! mean), u, Algorithm 1's boxes and the gradients of the paper reading's total w.r.t.
//! parameters in every part of the network, within 1e-4 relative.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use relata_backbone::resnet::Block;
use relata_backbone::{ResNetConfig, ResNetDepth, import_with_remap};
use relata_cmbh::region::{heat_maps, localize};
use relata_cmbh::train::{LossInputs, training_loss};
use relata_cmbh::{CmbhConfig, CmbhModel, LossReduction};
use relata_metrics::npy::NpyArray;
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/cmbh")
}

fn npy(name: &str) -> (Vec<f32>, Vec<usize>) {
    let path = dir().join(format!("{name}.npy"));
    let a = NpyArray::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (a.to_f32(), a.shape.clone())
}

fn tensor2(name: &str, device: &Device) -> Tensor<2> {
    let (v, s) = npy(name);
    Tensor::from_data(TensorData::new(v, [s[0], s[1]]), device)
}

/// max |a − b| / max |b|.
fn rel_error(got: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(got.len(), expected.len());
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    got.iter()
        .zip(expected)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// A `[in, out]` burn Linear weight as PyTorch's `[out, in]`.
fn transposed(t: Tensor<2>) -> Vec<f32> {
    values(t.transpose())
}

fn model(meta: &Value, device: &Device) -> (CmbhModel, CmbhConfig) {
    let get = |k: &str| meta[k].as_u64().unwrap() as usize;
    let config = CmbhConfig::new(
        ResNetConfig::new(ResNetDepth::ResNet18).with_width(get("width")),
        get("classes"),
        get("bits"),
    )
    .with_k(get("k"))
    .with_dim(get("dim"))
    .with_sub_hidden(get("sub_hidden"))
    .with_alpha(meta["alpha"].as_f64().unwrap())
    .with_hash_stage(get("hash_stage"))
    .with_regions(get("regions"));
    config.check().unwrap();
    let mut model = config.init(device);
    let remap = [
        (r"^(.+)\.downsample\.0\.(.+)$", "$1.downsample.conv.$2"),
        (r"^(.+)\.downsample\.1\.(.+)$", "$1.downsample.bn.$2"),
    ];
    let report =
        import_with_remap(&mut model, &dir().join("cmbh_weights.pth"), &remap, &[]).unwrap();
    assert!(report.applied > 100, "{report:?}");
    (model, config)
}

#[test]
fn full_loss_and_gradients_match_pytorch() {
    let meta: Value =
        serde_json::from_slice(&std::fs::read(dir().join("cmbh_ref.json")).unwrap()).unwrap();
    let device = Device::flex().autodiff();
    let (model, config) = model(&meta, &device);
    let (pixels, shape) = npy("images");
    let labels: Vec<usize> = meta["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let all_labels: Vec<usize> = meta["all_labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let inputs = LossInputs {
        pixels: &pixels,
        shape: [shape[0], shape[1], shape[2], shape[3]],
        batch_labels: &labels,
        all_labels: &all_labels,
        prev_codes: tensor2("prev_codes", &device),
        proxies: tensor2("proxies", &device),
        pair_negative: meta["pair_negative"].as_f64().unwrap(),
        proxy_negative: meta["proxy_negative"].as_f64().unwrap(),
    };
    let (terms, out) = training_loss(&model, &config, &inputs, &device).unwrap();

    // Algorithm 1 on the same heat maps.
    let maps: Vec<Tensor<4>> = out.maps.iter().map(|m| m.clone().detach()).collect();
    let boxes: Vec<Vec<[usize; 4]>> = heat_maps(&maps)
        .unwrap()
        .iter()
        .map(|a| {
            localize(a, config.regions)
                .iter()
                .map(|b| [b.x1, b.y1, b.x2, b.y2])
                .collect()
        })
        .collect();
    let expected_boxes: Vec<Vec<[usize; 4]>> =
        serde_json::from_value(meta["boxes"].clone()).unwrap();
    assert_eq!(boxes, expected_boxes);

    let (u_ref, _) = npy("u");
    let err = rel_error(&values(out.u.clone()), &u_ref);
    assert!(err < 1e-4, "u: relative error {err}");

    let mut total: Option<Tensor<1>> = None;
    for (name, t) in &terms {
        let got = t.clone().into_scalar::<f32>();
        let want = meta["losses"][*name].as_f64().unwrap() as f32;
        let err = (got - want).abs() / want.abs().max(1e-12);
        assert!(
            err < 1e-4,
            "{name}: {got} vs PyTorch {want} (relative {err})"
        );
        total = Some(match total {
            None => t.clone(),
            Some(s) => s + t.clone(),
        });
    }
    let names: Vec<&str> = terms.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["hash_pair", "hash_proxy", "cls", "trans", "region"]);
    let total = total.unwrap();
    let want = meta["losses"]["total"].as_f64().unwrap() as f32;
    let got = total.clone().into_scalar::<f32>();
    assert!((got - want).abs() / want < 1e-4, "total {got} vs {want}");

    // Every term a batch mean: the hash terms as above, the classification-type ones the batch
    // size (4) times smaller.
    let mean_config = config.clone().with_reduction(LossReduction::Mean);
    let (mean_terms, _) = training_loss(&model, &mean_config, &inputs, &device).unwrap();
    for (name, t) in &mean_terms {
        let got = t.clone().into_scalar::<f32>();
        let want = meta["losses_mean"][*name].as_f64().unwrap() as f32;
        let err = (got - want).abs() / want.abs().max(1e-12);
        assert!(err < 1e-4, "mean reading, {name}: {got} vs PyTorch {want}");
    }
    assert_eq!(
        config.reduction,
        LossReduction::Paper,
        "the default reading"
    );

    let grads = total.backward();
    let Block::Basic(block) = &model.backbone.layer3[0] else {
        panic!("ResNet-18 has basic blocks")
    };
    let downsample = block.downsample.as_ref().unwrap();
    let ours: Vec<(&str, Vec<f32>)> = vec![
        (
            "cvectors",
            values(model.cvectors.val().grad(&grads).unwrap()),
        ),
        (
            "hash.weight",
            transposed(model.hash.weight.val().grad(&grads).unwrap()),
        ),
        (
            "fusion.weight",
            transposed(
                model
                    .fusion
                    .as_ref()
                    .unwrap()
                    .weight
                    .val()
                    .grad(&grads)
                    .unwrap(),
            ),
        ),
        (
            "classifiers.0.weight",
            transposed(model.classifiers[0].weight.val().grad(&grads).unwrap()),
        ),
        (
            "subnets.1.fc.weight",
            transposed(model.subnets[1].fc.weight.val().grad(&grads).unwrap()),
        ),
        (
            "subnets.1.conv2.weight",
            values(model.subnets[1].conv2.weight.val().grad(&grads).unwrap()),
        ),
        (
            "subnets.2.bn_out.weight",
            values(model.subnets[2].bn_out.gamma.val().grad(&grads).unwrap()),
        ),
        (
            "backbone.conv1.weight",
            values(model.backbone.conv1.weight.val().grad(&grads).unwrap()),
        ),
        (
            "backbone.layer3.0.downsample.0.weight",
            values(downsample.conv.weight.val().grad(&grads).unwrap()),
        ),
    ];
    for (name, got) in ours {
        let (want, _) = npy(&format!("grad.{name}"));
        let err = rel_error(&got, &want);
        assert!(err < 1e-4, "gradient of {name}: relative error {err}");
    }
}
