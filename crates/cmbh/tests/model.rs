//! The model and the inference path: the encoder computes exactly the training network's hash
//! path, carries only backbone-to-l + N_sub-l + C + W_h (its parameter count is Table 5's),
//! saves and loads bit-exactly, and bad configurations or files are clear errors.

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use relata_backbone::{ResNetConfig, ResNetDepth};
use relata_cmbh::{Ablation, CmbhConfig, CmbhEncoder, CmbhError};

fn small(ablation: Ablation) -> CmbhConfig {
    CmbhConfig::new(
        ResNetConfig::new(ResNetDepth::ResNet18).with_width(4),
        5,
        12,
    )
    .with_dim(8)
    .with_sub_hidden(8)
    .with_ablation(ablation)
}

fn images(n: usize, device: &Device) -> Tensor<4> {
    Tensor::random([n, 3, 64, 64], Distribution::Normal(0.0, 1.0), device)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

#[test]
fn encoder_is_the_training_networks_hash_path() {
    let device = Device::flex();
    for ablation in Ablation::table4() {
        let config = small(ablation);
        device.seed(3);
        let model = config.init(&device);
        let x = images(3, &device);
        let out = model.forward(x.clone());
        assert_eq!(out.u.dims(), [3, 12]);
        assert_eq!(out.matching.dims(), [3, 5, 2]);
        assert_eq!(out.logits_fused.is_some(), ablation.cross_layer);
        assert_eq!(
            out.logits_stages.len(),
            if ablation.cross_layer { 2 } else { 0 }
        );
        let encoder = model.into_encoder();
        // Stage l = layer3: layer4 is gone.
        assert!(encoder.backbone.layer4.is_empty());
        let u = values(encoder.relaxed(x.clone()));
        let expected = values(out.u);
        let err = u
            .iter()
            .zip(&expected)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err < 1e-6,
            "{}: encoder differs by {err}",
            ablation.variant()
        );
        let codes = encoder.encode(x).unwrap();
        assert_eq!((codes.len(), codes.bits()), (3, 12));
        for (i, row) in expected.chunks(12).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                assert_eq!(codes.bit(i, j), u8::from(v >= 0.0));
            }
        }
    }
}

/// The encoder module holds exactly what `inference_cost` counts: Table 5's 4,232,960
/// parameters for ResNet-18 / CUB / 12 bits (+ C, + BN running statistics, which burn counts).
#[test]
fn encoder_parameters_are_table5s() {
    let device = Device::flex();
    let config = CmbhConfig::paper(ResNetDepth::ResNet18, 200, 12);
    let cost = config.inference_cost([224, 224]);
    assert_eq!(cost.params_without_cvectors, 4_232_960);
    assert_eq!(cost.params, 4_232_960 + 200 * 2 * 512);
    // BN channels: stem 64, layer1 4·64, layer2 5·128, layer3 5·256; N_sub: 512 + 256 + 256 + 512.
    let bn_channels = 64 + 4 * 64 + 5 * 128 + 5 * 256 + 512 + 256 + 256 + 512;
    let encoder = config.init_encoder(&device);
    assert_eq!(
        encoder.num_params() as u64,
        cost.params + 2 * bn_channels as u64
    );
    let r50 = CmbhConfig::paper(ResNetDepth::ResNet50, 200, 48).inference_cost([224, 224]);
    assert_eq!(r50.params_without_cvectors, 14_336_320);
}

#[test]
fn encoder_saves_and_loads_bit_exactly() {
    let device = Device::flex();
    let config = small(Ablation::FULL);
    device.seed(5);
    let encoder = config.init(&device).into_encoder();
    let dir = tempfile::tempdir().unwrap();
    encoder.save(&config, dir.path()).unwrap();
    let (loaded, loaded_config) = CmbhEncoder::load(dir.path(), &device).unwrap();
    assert_eq!(loaded_config, config);
    let x = images(4, &device);
    assert_eq!(
        values(encoder.relaxed(x.clone())),
        values(loaded.relaxed(x))
    );

    // A truncated record names the file.
    let record = dir.path().join("encoder.bpk");
    let bytes = std::fs::read(&record).unwrap();
    std::fs::write(&record, &bytes[..bytes.len() / 2]).unwrap();
    let err = CmbhEncoder::load(dir.path(), &device)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("encoder.bpk"), "{err}");
    // A missing directory says what was expected.
    let err = CmbhEncoder::load(&dir.path().join("nope"), &device)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("encoder.json") && err.contains("encoder"),
        "{err}"
    );
}

#[test]
fn bad_configurations_are_named() {
    let msg = |c: CmbhConfig| match c.check() {
        Err(CmbhError::Config(m)) => m,
        other => panic!("expected a config error, got {other:?}"),
    };
    assert!(msg(small(Ablation::FULL).with_hash_stage(4)).contains("hash_stage"));
    let mut zero_bits = small(Ablation::FULL);
    zero_bits.bits = 0;
    assert!(msg(zero_bits).contains("bits"));
    assert!(msg(small(Ablation::FULL).with_alpha(f64::NAN)).contains("alpha"));
    let t_without_l = Ablation {
        cross_layer: false,
        transfer: true,
        regions: false,
    };
    assert!(msg(small(t_without_l)).contains("cross_layer"));
    assert!(Ablation::parse("B+X").is_err());
    assert_eq!(Ablation::parse("b+l+t").unwrap(), Ablation::table4()[2]);
    let names: Vec<String> = Ablation::table4().iter().map(Ablation::variant).collect();
    assert_eq!(names, ["B", "B+L", "B+L+T", "full"]);
}
