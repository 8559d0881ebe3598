//! Every parameter of ISL's training model (encoder, generator, discriminator) is its own: no
//! two modules share a `ParamId` (a shared id makes burn's optimisers, gradient clipping and
//! checkpoints treat them as one).

use burn::tensor::Device;
use relata_backbone::check_own_params;
use relata_isl::reproduce::preset_config;
use relata_train::Preset;

#[test]
fn every_training_model_owns_each_parameter() {
    let device = Device::flex().autodiff();
    for preset in [Preset::Smoke, Preset::Default, Preset::Paper] {
        let model = preset_config(preset).init(&device);
        if let Err(shared) = check_own_params(&model) {
            panic!("{preset:?}: {shared}");
        }
    }
}
