//! Every parameter of CMBH's training network is its own: no two modules share a `ParamId` (a
//! shared id makes burn's optimiser, gradient clipping and checkpoints treat them as one).

use burn::tensor::Device;
use relata_backbone::{ResNetDepth, check_own_params};
use relata_cmbh::Ablation;
use relata_cmbh::reproduce::preset_config;
use relata_train::Preset;

#[test]
fn every_training_network_owns_each_parameter() {
    let device = Device::flex().autodiff();
    for (preset, depth) in [
        (Preset::Smoke, None),
        (Preset::Default, None),
        (Preset::Paper, Some(ResNetDepth::ResNet18)),
        (Preset::Paper, Some(ResNetDepth::ResNet50)),
    ] {
        for ablation in Ablation::table4() {
            let config = preset_config(preset, depth, "synth-fine", 10, 12, ablation);
            let model = config.model.init(&device);
            if let Err(shared) = check_own_params(&model) {
                panic!("{preset:?} {depth:?} {}: {shared}", ablation.variant());
            }
        }
    }
}
