//! A trained model as a user keeps it: `<dir>/<stem>.json` (the configuration that rebuilds the
//! module's skeleton) next to `<dir>/<stem>.bpk` (burn's record of its weights). Every method's
//! inference export uses this pair, so one loader serves them all and its errors always name
//! the file at fault.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::checkpoint::write_atomic;
use crate::error::TrainError;

fn paths(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{stem}.json")),
        dir.join(format!("{stem}.bpk")),
    )
}

fn at(path: &Path, what: impl std::fmt::Display) -> TrainError {
    TrainError::msg(format!("{}: {what}", path.display()))
}

/// Writes `config` and `module`'s weights into `dir` (created if missing).
pub fn save_module<M: Module, C: Serialize>(
    module: &M,
    config: &C,
    dir: &Path,
    stem: &str,
) -> Result<(), TrainError> {
    fs::create_dir_all(dir).map_err(|e| at(dir, format!("creating: {e}")))?;
    let (config_path, record_path) = paths(dir, stem);
    let json = serde_json::to_vec_pretty(config).map_err(|e| at(&config_path, e))?;
    fs::write(&config_path, json).map_err(|e| at(&config_path, e))?;
    save_record(module, &record_path)
}

/// Writes `module`'s weights (burn's record) to `path`, whole or not at all; creates the
/// parent directory.
pub fn save_record<M: Module>(module: &M, path: &Path) -> Result<(), TrainError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| at(dir, format!("creating: {e}")))?;
    }
    let bytes = module
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| at(path, e))?;
    write_atomic(path, &bytes)
}

/// Fills `skeleton` with the weights [`save_record`] wrote to `path`; `mismatch` says what a
/// record of another module means here.
pub fn load_record<M: Module>(skeleton: M, path: &Path, mismatch: &str) -> Result<M, TrainError> {
    let bytes = fs::read(path).map_err(|e| at(path, e))?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| at(path, format!("corrupt record: {e}")))?;
    skeleton
        .try_load_record(record)
        .map_err(|e| at(path, format!("{mismatch}: {e}")))
}

/// Reads the configuration saved by [`save_module`]; `what` names the expected content in the
/// error ("a CMBH run's `encoder` directory").
pub fn load_config<C: DeserializeOwned>(
    dir: &Path,
    stem: &str,
    what: &str,
) -> Result<C, TrainError> {
    let (config_path, _) = paths(dir, stem);
    let text = fs::read_to_string(&config_path)
        .map_err(|e| at(&config_path, format!("{e}; is this {what}?")))?;
    serde_json::from_str(&text).map_err(|e| at(&config_path, format!("not {what}: {e}")))
}

/// Fills `skeleton` (built from the configuration [`load_config`] returned) with the saved
/// weights.
pub fn load_module<M: Module>(skeleton: M, dir: &Path, stem: &str) -> Result<M, TrainError> {
    let (config_path, record_path) = paths(dir, stem);
    let mismatch = format!("does not match {}", config_path.display());
    load_record(skeleton, &record_path, &mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;

    #[test]
    fn round_trip_and_errors_name_the_file() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let linear: Linear = LinearConfig::new(3, 2).init(&device);
        save_module(&linear, &[3usize, 2], dir.path(), "head").unwrap();
        let shape: [usize; 2] = load_config(dir.path(), "head", "a head").unwrap();
        let loaded = load_module(
            LinearConfig::new(shape[0], shape[1]).init(&device),
            dir.path(),
            "head",
        )
        .unwrap();
        assert_eq!(
            loaded.weight.val().into_data(),
            linear.weight.val().into_data()
        );
        // A skeleton of another shape is refused.
        let err = load_module(LinearConfig::new(4, 2).init(&device), dir.path(), "head");
        assert!(err.is_err());
        // Truncated weights and a missing directory name their file.
        let record = dir.path().join("head.bpk");
        let bytes = fs::read(&record).unwrap();
        fs::write(&record, &bytes[..bytes.len() / 2]).unwrap();
        let err = load_module(linear, dir.path(), "head").unwrap_err();
        assert!(err.to_string().contains("head.bpk"), "{err}");
        let err = load_config::<[usize; 2]>(&dir.path().join("nope"), "head", "a head")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("head.json") && err.contains("is this a head"),
            "{err}"
        );
    }
}
