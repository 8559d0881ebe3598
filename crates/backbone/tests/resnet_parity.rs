//! ResNet parity with PyTorch/torchvision: random-weight torchvision
//! ResNets (small base width) saved with `torch.save(state_dict)` by
//! `fixtures/backbone/make_resnet.py`, loaded here through `import_state_dict`; every stage's
//! output in eval mode, the pooled vector and the logits within 1e-4 relative, and one
//! train-mode forward's output and BatchNorm running statistics.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use relata_backbone::{
    ResNet, ResNetConfig, ResNetDepth, import_state_dict, load_checkpoint, save_checkpoint,
};
use relata_metrics::npy::NpyArray;

fn case_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/backbone")
        .join(name)
}

fn npy(path: &Path) -> (Vec<f32>, Vec<usize>) {
    let a = NpyArray::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (a.to_f32(), a.shape.clone())
}

fn config(dir: &Path) -> ResNetConfig {
    let case: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("case.json")).unwrap()).unwrap();
    let depth = match case["block"].as_str().unwrap() {
        "BasicBlock" => ResNetDepth::ResNet18,
        _ => ResNetDepth::ResNet50,
    };
    ResNetConfig::new(depth)
        .with_width(case["width"].as_u64().unwrap() as usize)
        .with_cifar_stem(case["cifar_stem"].as_bool().unwrap())
        .with_num_classes(Some(10))
}

fn load(dir: &Path, device: &Device) -> ResNet {
    let mut model = config(dir).init(device);
    let report = import_state_dict(&mut model, &dir.join("weights.pth"), &[]).unwrap();
    assert!(report.applied > 20, "{report:?}");
    model
}

fn input(dir: &Path, device: &Device) -> Tensor<4> {
    let (x, shape) = npy(&dir.join("input.npy"));
    Tensor::from_data(
        TensorData::new(x, [shape[0], shape[1], shape[2], shape[3]]),
        device,
    )
}

/// max |a − b| / max |b| ≤ tol.
fn assert_close<const D: usize>(ours: Tensor<D>, reference: &Path, tol: f32) {
    let (expected, shape) = npy(reference);
    assert_eq!(ours.dims().to_vec(), shape, "{}", reference.display());
    let got: Vec<f32> = ours.into_data().iter::<f32>().collect();
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let err = got
        .iter()
        .zip(&expected)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        err / scale <= tol,
        "{}: max abs error {err} vs scale {scale}",
        reference.display()
    );
}

#[test]
fn eval_mode_every_stage_matches_torchvision() {
    let device = Device::flex();
    for case in ["resnet18", "resnet50", "resnet18_cifar"] {
        let dir = case_dir(case);
        let model = load(&dir, &device);
        let x = input(&dir, &device);
        let f = model.features(x.clone());
        assert_close(f.stem, &dir.join("eval_stem.npy"), 1e-4);
        assert_close(f.layer1, &dir.join("eval_layer1.npy"), 1e-4);
        assert_close(f.layer2, &dir.join("eval_layer2.npy"), 1e-4);
        assert_close(f.layer3, &dir.join("eval_layer3.npy"), 1e-4);
        assert_close(f.layer4, &dir.join("eval_layer4.npy"), 1e-4);
        assert_close(f.pooled, &dir.join("eval_pooled.npy"), 1e-4);
        assert_close(model.forward(x), &dir.join("eval_logits.npy"), 1e-4);
    }
}

#[test]
fn train_mode_forward_and_batchnorm_statistics_match() {
    let device = Device::flex().autodiff();
    for case in ["resnet18", "resnet50"] {
        let dir = case_dir(case);
        let model = load(&dir, &device);
        let f = model.features(input(&dir, &device));
        // Batch statistics over as few as 8 values per channel (2 images × 2×2 in ResNet-50's
        // last stage) amplify float32 rounding; the contract for train mode is the BN
        // statistics below (1e-4), the output is checked at 3e-4.
        assert_close(f.layer4, &dir.join("train_layer4.npy"), 3e-4);
        let stats: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("train_bn_stats.json")).unwrap())
                .unwrap();
        let check = |key: &str, t: Tensor<1>| {
            let expected: Vec<f32> = stats[key]
                .as_array()
                .unwrap_or_else(|| panic!("{key} not in the reference"))
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let got: Vec<f32> = t.into_data().iter::<f32>().collect();
            let err = got
                .iter()
                .zip(&expected)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(err <= 1e-4, "{case} {key}: max abs error {err}");
        };
        check("bn1.running_mean", model.bn1.running_mean.value_sync());
        check("bn1.running_var", model.bn1.running_var.value_sync());
        if let relata_backbone::resnet::Block::Basic(b) = &model.layer3[0] {
            check("layer3.0.bn2.running_var", b.bn2.running_var.value_sync());
            let d = b.downsample.as_ref().unwrap();
            check(
                "layer3.0.downsample.1.running_mean",
                d.bn.running_mean.value_sync(),
            );
            check(
                "layer3.0.downsample.1.running_var",
                d.bn.running_var.value_sync(),
            );
        }
        if let relata_backbone::resnet::Block::Bottleneck(b) = &model.layer4[0] {
            check("layer4.0.bn3.running_var", b.bn3.running_var.value_sync());
            check("layer4.0.bn2.running_mean", b.bn2.running_mean.value_sync());
        }
    }
}

#[test]
fn mismatched_weights_are_listed_in_one_error() {
    let device = Device::flex();
    let dir = case_dir("resnet18");
    // Wrong width and wrong depth.
    for cfg in [
        ResNetConfig::new(ResNetDepth::ResNet18)
            .with_width(8)
            .with_num_classes(Some(10)),
        ResNetConfig::new(ResNetDepth::ResNet50)
            .with_width(4)
            .with_num_classes(Some(10)),
    ] {
        let mut model = cfg.init(&device);
        let err = import_state_dict(&mut model, &dir.join("weights.pth"), &[]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("weights.pth") && msg.contains("do not fit"),
            "{msg}"
        );
        assert!(
            msg.contains("shape mismatches") || msg.contains("missing from the file"),
            "{msg}"
        );
    }
    // A feature extractor without fc: the head is ignored only when asked.
    let mut headless = ResNetConfig::new(ResNetDepth::ResNet18)
        .with_width(4)
        .init(&device);
    let err = import_state_dict(&mut headless, &dir.join("weights.pth"), &[]).unwrap_err();
    assert!(
        err.to_string().contains("unexpected in the file (2): fc."),
        "{err}"
    );
    let report = import_state_dict(&mut headless, &dir.join("weights.pth"), &["fc."]).unwrap();
    assert!(report.ignored.iter().any(|k| k == "fc.weight"));
    // A caller's bad remapping pattern is an error naming it, not a panic.
    let err = relata_backbone::import_with_remap(
        &mut headless,
        &dir.join("weights.pth"),
        &[("(unclosed", "x")],
        &[],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("invalid key remapping pattern"),
        "{err}"
    );
    // Missing file.
    let err = import_state_dict(&mut headless, &dir.join("nope.pth"), &[]).unwrap_err();
    assert!(err.to_string().contains("nope.pth: missing"), "{err}");
}

#[test]
fn own_checkpoints_roundtrip() {
    let device = Device::flex();
    let dir = case_dir("resnet18_cifar");
    let model = load(&dir, &device);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("model.bpk");
    save_checkpoint(&model, &path).unwrap();
    let fresh = config(&dir).init(&device);
    let restored = load_checkpoint(fresh, &path).unwrap();
    let x = input(&dir, &device);
    assert_eq!(
        model.forward(x.clone()).into_data(),
        restored.forward(x).into_data()
    );
    let wrong = ResNetConfig::new(ResNetDepth::ResNet50).init(&device);
    assert!(load_checkpoint(wrong, &path).is_err());
}

/// Full-size torchvision ResNet-18/50 (width 64, 224×224) on demand:
/// `RELATA_PYTHON=<python with torch + torchvision> cargo test -p relata-backbone --test
/// resnet_parity -- --ignored`. The reference is generated in a temporary directory.
#[test]
#[ignore = "needs PyTorch + torchvision (RELATA_PYTHON); generates ~150 MB of weights"]
fn full_size_torchvision_resnets_match() {
    let python = std::env::var("RELATA_PYTHON").unwrap_or_else(|_| "python3".into());
    let device = Device::flex();
    for (name, depth) in [
        ("resnet18", ResNetDepth::ResNet18),
        ("resnet50", ResNetDepth::ResNet50),
    ] {
        let out = tempfile::tempdir().unwrap();
        let status = std::process::Command::new(&python)
            .arg(case_dir("resnet_reference.py"))
            .arg(name)
            .arg(out.path())
            .status()
            .expect("python runs");
        assert!(status.success());
        let mut model = ResNetConfig::new(depth).init(&device);
        import_state_dict(&mut model, &out.path().join("weights.pth"), &["fc."]).unwrap();
        let f = model.features(input(out.path(), &device));
        assert_close(f.layer3, &out.path().join("eval_layer3.npy"), 1e-4);
        assert_close(f.layer4, &out.path().join("eval_layer4.npy"), 1e-4);
        assert_close(f.pooled, &out.path().join("eval_pooled.npy"), 1e-4);
        eprintln!("{name}: full-size parity ok");
    }
}
