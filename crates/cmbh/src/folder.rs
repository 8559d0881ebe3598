//! Indexing any folder of images with a trained run's encoder: the images under a directory
//! become packed codes in a Hamming index beside the list of their files, so a collection that
//! was never part of training can be searched (`cargo xtask index cmbh`).
//!
//! An index directory holds `index.bin` (the codes, [`HammingIndex`]) and `files.json` (the run
//! and code length it was made with, the image files in index order, the files skipped as
//! unreadable, and whether the pass over the folder finished). Both are rewritten after every
//! chunk of images, so an interrupted pass resumes where it stopped, and `append` adds the
//! images of a folder that are not indexed yet without encoding the others again.

use std::fs;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use relata_dataset::formats::{IMAGE_EXTENSIONS, is_image};
use relata_dataset::{ImageRef, Sample};
use relata_metrics::HammingIndex;
use serde::{Deserialize, Serialize};

use crate::error::CmbhError;
use crate::eval::encode_samples;
use crate::search::SearchRun;

/// Images encoded between two saves of the index.
const CHUNK: usize = 256;

/// `files.json` of an index directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FolderIndexList {
    /// The run directory whose encoder made the codes.
    pub run: PathBuf,
    /// Code length.
    pub bits: usize,
    /// The indexed image files, in index order.
    pub files: Vec<PathBuf>,
    /// Files that could not be read, skipped.
    #[serde(default)]
    pub skipped: Vec<PathBuf>,
    /// Whether the last pass over the folder finished.
    pub complete: bool,
}

/// How [`index_folder`] treats an existing index and unreadable images.
#[derive(Debug, Clone, Copy, Default)]
pub struct IndexOptions {
    /// Add the folder's images that are not indexed yet to a finished index.
    pub append: bool,
    /// Skip (and list) images that cannot be decoded instead of stopping at the first.
    pub skip_bad_images: bool,
    /// Images per forward pass (32 when 0).
    pub batch_size: usize,
}

/// What one call of [`index_folder`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexReport {
    /// Images in the index now.
    pub total: usize,
    /// Images encoded by this call.
    pub added: usize,
    /// Images skipped as unreadable by this call.
    pub skipped: Vec<PathBuf>,
}

/// Every image file under `dir` (recursively), sorted by path.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>, CmbhError> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = fs::read_dir(&d).map_err(|e| CmbhError::file(&d, e.to_string()))?;
        for entry in entries {
            let path = entry
                .map_err(|e| CmbhError::file(&d, e.to_string()))?
                .path();
            if path.is_dir() {
                stack.push(path);
            } else if is_image(&path) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

impl FolderIndexList {
    /// An error naming `out`'s `files.json` unless this index was made by the run in `dir` at
    /// `bits` bits; `fix` says what to do instead.
    fn check_run(&self, out: &Path, dir: &Path, bits: usize, fix: &str) -> Result<(), CmbhError> {
        if self.run == dir && self.bits == bits {
            return Ok(());
        }
        Err(CmbhError::file(
            out.join("files.json"),
            format!(
                "made with {} ({} bits), not {} ({bits} bits): {fix}",
                self.run.display(),
                self.bits,
                dir.display()
            ),
        ))
    }
}

/// Reads an index directory's file list.
pub fn read_list(out: &Path) -> Result<FolderIndexList, CmbhError> {
    let path = out.join("files.json");
    let text = fs::read_to_string(&path).map_err(|e| CmbhError::file(&path, e.to_string()))?;
    serde_json::from_str(&text)
        .map_err(|e| CmbhError::file(&path, format!("not an index file list: {e}")))
}

/// Encodes the images under `images` with `run`'s encoder into the index directory `out`,
/// calling `progress(done, total)` after every chunk (see the module comment for resuming and
/// appending).
pub fn index_folder(
    run: &SearchRun,
    images: &Path,
    out: &Path,
    options: IndexOptions,
    device: &Device,
    mut progress: impl FnMut(usize, usize),
) -> Result<IndexReport, CmbhError> {
    let files = list_images(images)?;
    if files.is_empty() {
        return Err(CmbhError::file(
            images,
            format!(
                "no image files ({}) under this directory",
                IMAGE_EXTENSIONS.join(", ")
            ),
        ));
    }
    let bits = run.encoder.bits();
    let (mut list, mut codes) = if out.join("files.json").is_file() {
        let list = read_list(out)?;
        list.check_run(out, &run.dir, bits, "index into another directory")?;
        if list.complete && !options.append {
            return Err(CmbhError::file(
                out,
                format!(
                    "already holds a finished index of {} images; pass --append to add the \
                     folder's new images, or choose another directory",
                    list.files.len()
                ),
            ));
        }
        let codes = HammingIndex::load(out.join("index.bin"))?.codes().clone();
        (list, Some(codes))
    } else {
        fs::create_dir_all(out).map_err(|e| CmbhError::file(out, e.to_string()))?;
        let list = FolderIndexList {
            run: run.dir.clone(),
            bits,
            files: Vec::new(),
            skipped: Vec::new(),
            complete: false,
        };
        (list, None)
    };
    let known: std::collections::HashSet<&PathBuf> =
        list.files.iter().chain(&list.skipped).collect();
    let todo: Vec<PathBuf> = files.into_iter().filter(|f| !known.contains(f)).collect();
    let (total, mut added, mut skipped) = (todo.len(), 0, Vec::new());
    list.complete = false;
    let batch = if options.batch_size == 0 {
        32
    } else {
        options.batch_size
    };
    for chunk in todo.chunks(CHUNK) {
        let (encoded, bad) = encode_files(run, chunk, batch, options.skip_bad_images, device)?;
        if let Some((new, paths)) = encoded {
            match codes.as_mut() {
                Some(c) => c.extend(&new)?,
                None => codes = Some(new),
            }
            added += paths.len();
            list.files.extend(paths);
        }
        list.skipped.extend(bad.iter().cloned());
        skipped.extend(bad);
        save(out, codes.as_ref(), &list)?;
        progress(added + skipped.len(), total);
    }
    list.complete = true;
    save(out, codes.as_ref(), &list)?;
    Ok(IndexReport {
        total: list.files.len(),
        added,
        skipped,
    })
}

/// The codes of `chunk`'s images (with the files they belong to) and the unreadable files,
/// which are an error unless `skip_bad`.
#[allow(clippy::type_complexity)]
fn encode_files(
    run: &SearchRun,
    chunk: &[PathBuf],
    batch: usize,
    skip_bad: bool,
    device: &Device,
) -> Result<
    (
        Option<(relata_metrics::PackedCodes, Vec<PathBuf>)>,
        Vec<PathBuf>,
    ),
    CmbhError,
> {
    let samples = |paths: &[PathBuf]| -> Vec<Sample> {
        paths
            .iter()
            .map(|p| Sample {
                image: ImageRef::File(p.clone()),
                label: 0,
            })
            .collect()
    };
    match encode_samples(&run.encoder, &samples(chunk), &run.pipeline, batch, device) {
        Ok(codes) => return Ok((Some((codes, chunk.to_vec())), Vec::new())),
        Err(e) if !skip_bad => {
            return Err(CmbhError::Input(format!(
                "{e}; pass --skip-bad-images to list unreadable images and go on"
            )));
        }
        Err(_) => {}
    }
    // Some image of the chunk cannot be read: find which, one image at a time.
    let (good, bad): (Vec<PathBuf>, Vec<PathBuf>) = chunk
        .iter()
        .cloned()
        .partition(|p| ImageRef::File(p.clone()).load_rgb().is_ok());
    if good.is_empty() {
        return Ok((None, bad));
    }
    let codes = encode_samples(&run.encoder, &samples(&good), &run.pipeline, batch, device)?;
    Ok((Some((codes, good)), bad))
}

fn save(
    out: &Path,
    codes: Option<&relata_metrics::PackedCodes>,
    list: &FolderIndexList,
) -> Result<(), CmbhError> {
    if let Some(codes) = codes {
        HammingIndex::new(codes.clone())?.save(out.join("index.bin"))?;
    }
    let path = out.join("files.json");
    let tmp = out.join("files.json.tmp");
    let text = serde_json::to_string_pretty(list).expect("the list serialises");
    fs::write(&tmp, text).map_err(|e| CmbhError::file(&tmp, e.to_string()))?;
    fs::rename(&tmp, &path).map_err(|e| CmbhError::file(&path, e.to_string()))
}

impl SearchRun {
    /// This run searching the folder index in `out` (made with this run's encoder by
    /// [`index_folder`]) instead of its training database. An image's class is shown as its
    /// parent folder's name.
    pub fn with_folder_index(mut self, out: &Path) -> Result<Self, CmbhError> {
        let list = read_list(out)?;
        let fix = format!("search it with that run (`--run {}`)", list.run.display());
        list.check_run(out, &self.dir, self.encoder.bits(), &fix)?;
        let index = HammingIndex::load(out.join("index.bin"))?;
        if index.len() != list.files.len() {
            return Err(CmbhError::file(
                out,
                format!(
                    "{} codes but {} files listed: the index is inconsistent; index the folder \
                     again into an empty directory",
                    index.len(),
                    list.files.len()
                ),
            ));
        }
        self.database = list
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| crate::reproduce::DatabaseEntry {
                index: i,
                label: 0,
                class: f
                    .parent()
                    .and_then(Path::file_name)
                    .map(|n| n.to_string_lossy().into_owned()),
                image: f.display().to_string(),
            })
            .collect();
        self.index = index;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_images_recursively_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b/x.JPG", "a/y.png", "a/z.txt", "c.bmp", "a/deep/w.jpeg"] {
            let p = dir.path().join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, b"").unwrap();
        }
        let found: Vec<String> = list_images(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(found, ["a/deep/w.jpeg", "a/y.png", "b/x.JPG", "c.bmp"]);
        assert!(list_images(&dir.path().join("missing")).is_err());
    }
}
