//! Every parameter of HREM's training model is its own: no two modules share a `ParamId` (a
//! shared id makes burn's optimiser, gradient clipping and checkpoints treat two modules as one
//! set of weights).

use std::path::PathBuf;

use burn::tensor::Device;
use relata_backbone::check_own_params;
use relata_hrem::config::{Interaction, RelationConfig};
use relata_hrem::data::TextTokenizer;
use relata_hrem::reproduce::{CaptionData, preset_config};
use relata_train::Preset;

fn tiny_bert() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/backbone/bert-tiny")
}

#[test]
fn every_training_model_owns_each_parameter() {
    let device = Device::flex().autodiff();
    let captions = ["a red cube left of a blue ball", "two green cones"];
    for preset in [Preset::Smoke, Preset::Default, Preset::Paper] {
        for bert in [None, Some(tiny_bert())] {
            for interaction in [Interaction::Fusion, Interaction::Standalone] {
                let config =
                    preset_config(preset, &CaptionData::SynthCaptions, 32, bert.as_deref())
                        .with_relation(RelationConfig::new().with_interaction(interaction));
                let tokenizer: TextTokenizer = config.tokenizer(captions).unwrap();
                let model = config.init(&tokenizer, false, &device).unwrap();
                assert!(model.relation.is_some());
                if let Err(shared) = check_own_params(&model) {
                    panic!("{preset:?}, bert {bert:?}, {interaction:?}: {shared}");
                }
            }
        }
    }
}
