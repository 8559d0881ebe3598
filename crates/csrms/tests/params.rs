//! Every parameter of CSRMS's training network is its own: no two modules share a `ParamId` (a
//! shared id makes burn's optimiser, gradient clipping and checkpoints treat them as one).

use burn::tensor::Device;
use relata_backbone::check_own_params;
use relata_csrms::Variant;
use relata_csrms::reproduce::preset_config;
use relata_train::Preset;

#[test]
fn every_training_network_owns_each_parameter() {
    let device = Device::flex().autodiff();
    for preset in [Preset::Smoke, Preset::Default, Preset::Paper] {
        for variant in [Variant::Full, Variant::Baseline] {
            let model = preset_config(preset, 10)
                .with_variant(variant)
                .init(&device);
            if let Err(shared) = check_own_params(&model) {
                panic!("{preset:?} {}: {shared}", variant.name());
            }
        }
    }
}
