//! Atomic, self-checking checkpoint directories.
//!
//! A checkpoint is a directory `<root>/<name>/` of files plus `MANIFEST.json`, which lists every
//! file with its size and CRC-32. It is written as `<name>.partial/`, each file is flushed to
//! disk, the manifest is written last, and only then is the directory renamed to `<name>/` —
//! so a crash mid-write leaves a `.partial` directory that is never read, and a file damaged
//! later (a truncated copy, a full disk) fails its checksum. Readers fall back to the newest
//! checkpoint that verifies, and say which ones they skipped and why.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::TrainError;

/// File name of the manifest inside a checkpoint directory.
pub const MANIFEST: &str = "MANIFEST.json";

#[derive(Debug, Serialize, Deserialize)]
struct ManifestEntry {
    bytes: u64,
    crc32: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    files: BTreeMap<String, ManifestEntry>,
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let mut f = fs::File::create(path).map_err(|e| TrainError::io("creating", path, e))?;
    f.write_all(bytes)
        .map_err(|e| TrainError::io("writing", path, e))?;
    f.sync_all().map_err(|e| TrainError::io("syncing", path, e))
}

/// Writes a file atomically: to `<path>.tmp`, flushed, then renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = path.with_extension(match path.extension() {
        Some(ext) => format!("{}.tmp", ext.to_string_lossy()),
        None => "tmp".to_string(),
    });
    write_synced(&tmp, bytes)?;
    fs::rename(&tmp, path).map_err(|e| TrainError::io("renaming into place", path, e))
}

/// Writes the checkpoint `<root>/<name>/` holding `files` (name → bytes), atomically.
pub fn write_checkpoint(
    root: &Path,
    name: &str,
    files: &[(String, Vec<u8>)],
) -> Result<PathBuf, TrainError> {
    fs::create_dir_all(root).map_err(|e| TrainError::io("creating", root, e))?;
    let final_dir = root.join(name);
    let partial = root.join(format!("{name}.partial"));
    if partial.exists() {
        fs::remove_dir_all(&partial).map_err(|e| TrainError::io("removing", &partial, e))?;
    }
    fs::create_dir(&partial).map_err(|e| TrainError::io("creating", &partial, e))?;
    let mut manifest = Manifest {
        format: 1,
        files: BTreeMap::new(),
    };
    for (file, bytes) in files {
        if file.contains('/') || file == MANIFEST {
            return Err(TrainError::Checkpoint {
                path: partial.join(file),
                reason: "invalid file name inside a checkpoint".into(),
            });
        }
        write_synced(&partial.join(file), bytes)?;
        manifest.files.insert(
            file.clone(),
            ManifestEntry {
                bytes: bytes.len() as u64,
                crc32: crc32fast::hash(bytes),
            },
        );
    }
    let manifest_json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    write_synced(&partial.join(MANIFEST), &manifest_json)?;
    if final_dir.exists() {
        fs::remove_dir_all(&final_dir).map_err(|e| TrainError::io("removing", &final_dir, e))?;
    }
    fs::rename(&partial, &final_dir).map_err(|e| TrainError::io("renaming", &final_dir, e))?;
    // Make the rename itself durable.
    if let Ok(d) = fs::File::open(root) {
        let _ = d.sync_all();
    }
    Ok(final_dir)
}

/// Reads and verifies a checkpoint directory: every file listed in the manifest must exist with
/// the recorded size and CRC-32.
pub fn read_checkpoint(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>, TrainError> {
    let bad = |reason: String| TrainError::Checkpoint {
        path: dir.to_path_buf(),
        reason,
    };
    let manifest_path = dir.join(MANIFEST);
    let manifest_bytes = fs::read(&manifest_path).map_err(|e| {
        bad(format!(
            "cannot read {MANIFEST} ({e}); the write was interrupted"
        ))
    })?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| bad(format!("{MANIFEST} is not valid ({e})")))?;
    let mut out = BTreeMap::new();
    for (file, entry) in manifest.files {
        let path = dir.join(&file);
        let bytes = fs::read(&path).map_err(|e| bad(format!("cannot read {file} ({e})")))?;
        if bytes.len() as u64 != entry.bytes {
            return Err(bad(format!(
                "{file} has {} bytes, the manifest says {} (truncated?)",
                bytes.len(),
                entry.bytes
            )));
        }
        let crc = crc32fast::hash(&bytes);
        if crc != entry.crc32 {
            return Err(bad(format!(
                "{file} fails its checksum (crc32 {crc:08x}, expected {:08x})",
                entry.crc32
            )));
        }
        out.insert(file, bytes);
    }
    Ok(out)
}

/// Checkpoint directories `<root>/<prefix><number>` (no `.partial`), newest (highest number)
/// first.
pub fn list_checkpoints(root: &Path, prefix: &str) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut found: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let number = name.strip_prefix(prefix)?.parse::<u64>().ok()?;
            e.path().is_dir().then(|| (number, e.path()))
        })
        .collect();
    found.sort_by_key(|c| std::cmp::Reverse(c.0));
    found
}

/// A verified checkpoint and the ones skipped on the way to it.
pub struct LatestCheckpoint {
    /// Its directory.
    pub dir: PathBuf,
    /// Its files.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Newer checkpoints that failed verification, with the reason.
    pub skipped: Vec<TrainError>,
}

/// The newest checkpoint under `root` named `<prefix><number>` that verifies.
pub fn latest_valid(root: &Path, prefix: &str) -> Result<LatestCheckpoint, TrainError> {
    let mut skipped = Vec::new();
    for (_, dir) in list_checkpoints(root, prefix) {
        match read_checkpoint(&dir) {
            Ok(files) => {
                return Ok(LatestCheckpoint {
                    dir,
                    files,
                    skipped,
                });
            }
            Err(e) => {
                tracing::warn!("{e}; trying an older checkpoint");
                skipped.push(e);
            }
        }
    }
    let reason = if skipped.is_empty() {
        format!("no `{prefix}N` checkpoint directory")
    } else {
        let reasons: Vec<String> = skipped.iter().map(ToString::to_string).collect();
        format!(
            "every checkpoint failed verification: {}",
            reasons.join("; ")
        )
    };
    Err(TrainError::NothingToResume {
        dir: root.to_path_buf(),
        reason,
    })
}

/// Deletes all but the newest `keep` checkpoints named `<prefix><number>` (and stale
/// `.partial` directories), never touching `protect`.
pub fn prune(root: &Path, prefix: &str, keep: usize, protect: Option<&Path>) {
    for (_, dir) in list_checkpoints(root, prefix).into_iter().skip(keep) {
        if Some(dir.as_path()) != protect
            && let Err(e) = fs::remove_dir_all(&dir)
        {
            tracing::warn!("could not remove old checkpoint {}: {e}", dir.display());
        }
    }
    if let Ok(entries) = fs::read_dir(root) {
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(prefix) && name.ends_with(".partial") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(tag: u8) -> Vec<(String, Vec<u8>)> {
        vec![
            ("model.bpk".into(), vec![tag; 1000]),
            ("state.json".into(), b"{}".to_vec()),
        ]
    }

    #[test]
    fn roundtrip_and_fallback_on_truncation() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write_checkpoint(root, "epoch-1", &files(1)).unwrap();
        let newest = write_checkpoint(root, "epoch-2", &files(2)).unwrap();
        let latest = latest_valid(root, "epoch-").unwrap();
        assert_eq!(latest.dir, newest);
        assert_eq!(latest.files["model.bpk"], vec![2u8; 1000]);

        // Truncate the newest checkpoint's model as a crash mid-copy would.
        let f = fs::OpenOptions::new()
            .write(true)
            .open(newest.join("model.bpk"))
            .unwrap();
        f.set_len(10).unwrap();
        let latest = latest_valid(root, "epoch-").unwrap();
        assert!(latest.dir.ends_with("epoch-1"));
        assert_eq!(latest.skipped.len(), 1);
        assert!(latest.skipped[0].to_string().contains("truncated"));
    }

    #[test]
    fn partial_directories_are_ignored_and_corruption_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write_checkpoint(root, "epoch-1", &files(1)).unwrap();
        // An interrupted write: a .partial directory without manifest.
        fs::create_dir(root.join("epoch-2.partial")).unwrap();
        fs::write(root.join("epoch-2.partial/model.bpk"), b"half").unwrap();
        // A checkpoint whose manifest never got written.
        fs::create_dir(root.join("epoch-3")).unwrap();
        let latest = latest_valid(root, "epoch-").unwrap();
        assert!(latest.dir.ends_with("epoch-1"));
        assert!(latest.skipped[0].to_string().contains("interrupted"));

        // Same size, flipped byte: checksum.
        let p = root.join("epoch-1/model.bpk");
        let mut bytes = fs::read(&p).unwrap();
        bytes[3] ^= 0xFF;
        fs::write(&p, bytes).unwrap();
        let err = latest_valid(root, "epoch-").err().unwrap();
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn prune_keeps_newest() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for i in 1..=4 {
            write_checkpoint(root, &format!("epoch-{i}"), &files(i as u8)).unwrap();
        }
        prune(root, "epoch-", 2, None);
        let left: Vec<u64> = list_checkpoints(root, "epoch-")
            .into_iter()
            .map(|c| c.0)
            .collect();
        assert_eq!(left, vec![4, 3]);
    }

    #[test]
    fn atomic_file_write() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("metrics.json");
        write_atomic(&p, b"{\"a\":1}").unwrap();
        write_atomic(&p, b"{\"a\":2}").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"{\"a\":2}");
        assert!(!tmp.path().join("metrics.json.tmp").exists());
    }
}
