//! Every parameter of each backbone is its own: no two modules share a `ParamId` (a shared id
//! makes burn's optimiser, gradient clipping and checkpoints treat them as one).

use std::path::Path;

use burn::tensor::Device;
use relata_backbone::{
    BertConfig, BiGruEncoderConfig, ResNetConfig, ResNetDepth, check_own_params,
};

#[test]
fn every_backbone_owns_each_parameter() {
    let device = Device::flex().autodiff();
    for depth in [ResNetDepth::ResNet18, ResNetDepth::ResNet50] {
        for classes in [None, Some(10)] {
            let model = ResNetConfig::new(depth)
                .with_num_classes(classes)
                .init(&device);
            if let Err(shared) = check_own_params(&model) {
                panic!("{depth:?}, classes {classes:?}: {shared}");
            }
        }
    }
    let bert = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/backbone/bert-tiny");
    let bert = BertConfig::from_hf_json(&bert.join("config.json"))
        .unwrap()
        .init(&device);
    check_own_params(&bert).unwrap();
    check_own_params(&BiGruEncoderConfig::new(20, 8, 6).init(&device)).unwrap();
}
