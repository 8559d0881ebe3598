//! Weight import (PyTorch `.pth` / `.safetensors` state dicts, through burn-store) and relata's
//! own checkpoints (burnpack).
//!
//! torchvision names map onto these modules directly except `downsample.0/1`, which become
//! `downsample.conv/bn`; burn-store transposes `Linear` weights and maps BatchNorm
//! `weight/bias` to `gamma/beta` itself. Anything that does not line up — a parameter the file
//! lacks, a tensor the model has no place for, a shape that differs — is listed in one error,
//! so a wrong depth, width or stem is diagnosed in one go.

use std::fmt;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{
    ApplyError, ApplyResult, KeyRemapper, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter,
    PytorchStore, SafetensorsStore,
};

use crate::error::BackboneError;

/// torchvision key → relata path rewrites.
const TORCHVISION_REMAP: [(&str, &str); 2] = [
    (r"^(.+)\.downsample\.0\.(.+)$", "$1.downsample.conv.$2"),
    (r"^(.+)\.downsample\.1\.(.+)$", "$1.downsample.bn.$2"),
];

/// What an import applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportReport {
    /// Tensors loaded.
    pub applied: usize,
    /// Tensors in the file the model ignores by design (BatchNorm `num_batches_tracked`, the
    /// `fc` head of a model built without one).
    pub ignored: Vec<String>,
}

/// Parameters that did not line up.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mismatch {
    /// In the model, not in the file.
    pub missing: Vec<String>,
    /// In the file, not in the model.
    pub unexpected: Vec<String>,
    /// In both with different shapes: `path: model [..] vs file [..]`.
    pub shapes: Vec<String>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = |what: &str, items: &[String]| -> fmt::Result {
            if items.is_empty() {
                return Ok(());
            }
            let shown: Vec<&str> = items.iter().take(12).map(String::as_str).collect();
            let more = if items.len() > 12 {
                format!(" … and {} more", items.len() - 12)
            } else {
                String::new()
            };
            write!(
                f,
                "\n  {what} ({}): {}{more}",
                items.len(),
                shown.join(", ")
            )
        };
        list("missing from the file", &self.missing)?;
        list("unexpected in the file", &self.unexpected)?;
        list("shape mismatches", &self.shapes)
    }
}

/// Which on-disk format a path holds, by extension.
fn is_safetensors(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "safetensors")
}

/// Loads a PyTorch state dict (`.pth`/`.pt` from `torch.save(model.state_dict())`, or
/// `.safetensors`) into `model`. `ignore` names file keys (by prefix) the model leaves out on
/// purpose, e.g. `fc.` for a feature extractor.
pub fn import_state_dict<M: Module + ModuleSnapshot>(
    model: &mut M,
    path: &Path,
    ignore: &[&str],
) -> Result<ImportReport, BackboneError> {
    import_with_remap(model, path, &TORCHVISION_REMAP, ignore)
}

/// [`import_state_dict`] with explicit key rewrites (`(regex, replacement)`, applied in order),
/// for modules whose PyTorch names differ from relata's (the GRU's fused weights).
pub fn import_with_remap<M: Module + ModuleSnapshot>(
    model: &mut M,
    path: &Path,
    remap: &[(&str, &str)],
    ignore: &[&str],
) -> Result<ImportReport, BackboneError> {
    if !path.is_file() {
        return Err(BackboneError::Missing {
            path: path.to_path_buf(),
            expected: "a PyTorch state dict (.pth, .pt or .safetensors)".into(),
        });
    }
    // One fallible remapper for both readers (the stores' `with_key_remapping` panics on a bad
    // pattern, and the patterns of `import_with_remap` come from callers).
    let remapper = KeyRemapper::from_patterns(remap.to_vec()).map_err(|e| BackboneError::Read {
        path: path.to_path_buf(),
        reason: format!("invalid key remapping pattern: {e}"),
    })?;
    let result = if is_safetensors(path) {
        let mut store = SafetensorsStore::from_file(path)
            .with_from_adapter(PyTorchToBurnAdapter)
            .remap(remapper)
            .allow_partial(true)
            .validate(false);
        apply(model, &mut store, path)?
    } else {
        let mut store = PytorchStore::from_file(path)
            .remap(remapper)
            .allow_partial(true)
            .validate(false);
        apply(model, &mut store, path)?
    };
    report(result, path, ignore)
}

/// Applies a configured store to `model`, naming the file on failure.
fn apply<M: ModuleSnapshot, S: ModuleStore>(
    model: &mut M,
    store: &mut S,
    path: &Path,
) -> Result<ApplyResult, BackboneError> {
    model.load_from(store).map_err(|e| BackboneError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn report(
    result: ApplyResult,
    path: &Path,
    ignore: &[&str],
) -> Result<ImportReport, BackboneError> {
    let mut mismatch = Mismatch::default();
    let mut ignored = Vec::new();
    for key in result.unused {
        if key.ends_with("num_batches_tracked") || ignore.iter().any(|p| key.starts_with(p)) {
            ignored.push(key);
        } else {
            mismatch.unexpected.push(key);
        }
    }
    mismatch.missing = result.missing.into_iter().map(|(p, _)| p).collect();
    for e in result.errors {
        mismatch.shapes.push(match e {
            ApplyError::ShapeMismatch {
                path,
                expected,
                found,
            } => format!("{path}: model {expected:?} vs file {found:?}"),
            other => format!("{other:?}"),
        });
    }
    if mismatch != Mismatch::default() {
        return Err(BackboneError::Weights {
            path: path.to_path_buf(),
            mismatch,
        });
    }
    Ok(ImportReport {
        applied: result.applied.len(),
        ignored,
    })
}

/// Saves `model` as a relata checkpoint (burnpack), atomically.
pub fn save_checkpoint<M: Module>(model: &M, path: &Path) -> Result<(), BackboneError> {
    let tmp: PathBuf = path.with_extension("bpk.tmp");
    model
        .clone()
        .into_record()
        .save(&tmp)
        .map_err(|e| BackboneError::Read {
            path: tmp.clone(),
            reason: e.to_string(),
        })?;
    std::fs::rename(&tmp, path).map_err(|e| BackboneError::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

/// Loads a checkpoint written by [`save_checkpoint`] into `model` (same configuration).
pub fn load_checkpoint<M: Module>(model: M, path: &Path) -> Result<M, BackboneError> {
    if !path.is_file() {
        return Err(BackboneError::Missing {
            path: path.to_path_buf(),
            expected: "a relata checkpoint (.bpk)".into(),
        });
    }
    model.try_load_file(path).map_err(|e| BackboneError::Read {
        path: path.to_path_buf(),
        reason: format!("{e} (was it saved from a model with the same configuration?)"),
    })
}
