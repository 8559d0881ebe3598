//! A small pretrained backbone shipped with the crate: the ImageNet stand-in of the default
//! presets, which train on 64×64 synth-fine on a CPU.
//!
//! The papers fine-tune ImageNet-pretrained ResNets. From scratch on the embedded data, a
//! method's relation losses work on a random feature space, which is not the regime the papers
//! describe. [`SYNTH_RESNET18_W8`] is a width-8 ResNet-18 (torchvision layout and stem) trained
//! by cross-entropy on `SynthFineConfig::pretraining_source()` — 48 classes drawn from another
//! seed than any target split, so it knows the kind of image but none of the target classes.
//! `fixtures/backbone/synth_pretrained/make.py` made it (PyTorch, about two minutes on two
//! cores); its `train_log.json` holds the schedule and the source accuracy (0.985 on held-out
//! source images). See docs/datasets.md, "Pretraining source".

use std::path::{Path, PathBuf};

use crate::error::BackboneError;
use crate::resnet::{ResNetConfig, ResNetDepth};

/// The torchvision state dict (`torch.save(model.state_dict())`) of the width-8 ResNet-18
/// pretrained on synth-fine's pretraining source, its `fc` a 48-class head.
pub const SYNTH_RESNET18_W8: &[u8] =
    include_bytes!("../../../fixtures/backbone/synth_pretrained/resnet18_w8.pth");

/// The file name [`write_synth_resnet18_w8`] writes.
pub const SYNTH_RESNET18_W8_FILE: &str = "synth-pretrained-resnet18-w8.pth";

/// The network [`SYNTH_RESNET18_W8`] fits: ResNet-18, width 8, ImageNet stem.
pub fn synth_resnet18_w8_config() -> ResNetConfig {
    ResNetConfig::new(ResNetDepth::ResNet18).with_width(8)
}

/// Writes [`SYNTH_RESNET18_W8`] into `dir` (a run directory) and returns its path, for the
/// weight import that takes files. An existing identical file is kept.
pub fn write_synth_resnet18_w8(dir: &Path) -> Result<PathBuf, BackboneError> {
    let path = dir.join(SYNTH_RESNET18_W8_FILE);
    if std::fs::read(&path).is_ok_and(|b| b == SYNTH_RESNET18_W8) {
        return Ok(path);
    }
    let io = |source| BackboneError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::write(&path, SYNTH_RESNET18_W8).map_err(io)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::import_state_dict;
    use burn::tensor::Device;

    /// The shipped weights load into the network they are for, every tensor but the source's
    /// classifier, and are not a fresh initialisation.
    #[test]
    fn the_shipped_backbone_loads_into_a_width_8_resnet18() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_synth_resnet18_w8(dir.path()).unwrap();
        assert_eq!(write_synth_resnet18_w8(dir.path()).unwrap(), path);
        let device = Device::flex();
        let mut model = synth_resnet18_w8_config().init(&device);
        let before = model.conv1.weight.val().into_data();
        let report = import_state_dict(&mut model, &path, &["fc."]).unwrap();
        // 20 convolutions and BN layers: 60 conv + BN weight tensors, 40 running statistics.
        assert!(report.applied >= 100, "{report:?}");
        assert_ne!(model.conv1.weight.val().into_data(), before);
        // ResNet-50 does not take it, and says so.
        let mut wrong = ResNetConfig::new(ResNetDepth::ResNet50)
            .with_width(8)
            .init(&device);
        assert!(import_state_dict(&mut wrong, &path, &["fc."]).is_err());
    }
}
