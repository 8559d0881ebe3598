//! What every image-format reader returns: samples (an image reference and a label) grouped by
//! the format's official splits, the class names, and the problems met on the way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;
use serde::Serialize;

use crate::error::DatasetError;

/// Images held in memory (CIFAR, SVHN, the embedded datasets): `len` RGB images of
/// `height × width`, stored HWC, one after the other.
#[derive(Debug)]
pub struct RawImages {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `len · height · width · 3` bytes.
    pub data: Vec<u8>,
}

impl RawImages {
    /// Bytes per image.
    pub fn image_bytes(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.data.len() / self.image_bytes().max(1)
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The HWC bytes of image `index`.
    pub fn pixels(&self, index: usize) -> &[u8] {
        let n = self.image_bytes();
        &self.data[index * n..(index + 1) * n]
    }
}

/// Where a sample's image comes from.
#[derive(Debug, Clone)]
pub enum ImageRef {
    /// An image file (JPEG / PNG / BMP).
    File(PathBuf),
    /// Image `index` of an in-memory store.
    Raw {
        /// The store.
        store: Arc<RawImages>,
        /// Index in the store.
        index: usize,
    },
}

impl ImageRef {
    /// Decodes the image to 8-bit RGB.
    pub fn load_rgb(&self) -> Result<RgbImage, DatasetError> {
        match self {
            ImageRef::File(path) => decode_rgb(path),
            ImageRef::Raw { store, index } => {
                RgbImage::from_raw(store.width, store.height, store.pixels(*index).to_vec())
                    .ok_or_else(|| DatasetError::invalid("raw image", "buffer size mismatch"))
            }
        }
    }

    /// `(width, height)` without decoding the pixels (reads only the file header).
    pub fn dimensions(&self) -> Result<(u32, u32), DatasetError> {
        match self {
            ImageRef::File(path) => image::ImageReader::open(path)
                .map_err(|e| DatasetError::io(path, e))?
                .with_guessed_format()
                .map_err(|e| DatasetError::io(path, e))?
                .into_dimensions()
                .map_err(|e| DatasetError::Decode {
                    path: path.clone(),
                    reason: e.to_string(),
                }),
            ImageRef::Raw { store, .. } => Ok((store.width, store.height)),
        }
    }

    /// A name for messages.
    pub fn describe(&self) -> String {
        match self {
            ImageRef::File(p) => p.display().to_string(),
            ImageRef::Raw { index, .. } => format!("in-memory image {index}"),
        }
    }
}

/// Decodes an image file to RGB8, naming the file in the error.
pub fn decode_rgb(path: &Path) -> Result<RgbImage, DatasetError> {
    let bytes = std::fs::read(path).map_err(|e| DatasetError::io(path, e))?;
    decode_rgb_bytes(&bytes, path)
}

/// Decodes encoded image bytes (the file's contents) to RGB8.
pub fn decode_rgb_bytes(bytes: &[u8], path: &Path) -> Result<RgbImage, DatasetError> {
    let decode_err = |reason: String| DatasetError::Decode {
        path: path.to_path_buf(),
        reason,
    };
    if let Some(reason) = truncation(bytes) {
        return Err(decode_err(reason));
    }
    let img = image::load_from_memory(bytes).map_err(|e| decode_err(e.to_string()))?;
    Ok(img.into_rgb8())
}

/// Cheap truncation check: JPEGs end with an EOI marker and PNGs with an IEND chunk. Decoders
/// may silently pad a cut-off JPEG with grey, so the end marker is checked explicitly.
pub fn truncation(bytes: &[u8]) -> Option<String> {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        // Allow trailing padding after EOI (some encoders append zeros or newlines).
        let tail = &bytes[bytes.len().saturating_sub(64)..];
        if !tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
            return Some("truncated JPEG: no end-of-image marker".into());
        }
    } else if bytes.starts_with(b"\x89PNG") {
        let tail = &bytes[bytes.len().saturating_sub(16)..];
        if !tail.windows(4).any(|w| w == b"IEND") {
            return Some("truncated PNG: no IEND chunk".into());
        }
    } else if bytes.is_empty() {
        return Some("empty file".into());
    }
    None
}

/// Samples over an in-memory store, image `i` labelled `labels[i]`.
pub fn raw_samples(store: RawImages, labels: impl IntoIterator<Item = usize>) -> Vec<Sample> {
    let store = Arc::new(store);
    labels
        .into_iter()
        .enumerate()
        .map(|(index, label)| Sample {
            image: ImageRef::Raw {
                store: store.clone(),
                index,
            },
            label,
        })
        .collect()
}

/// The error for a split that is not there, listing those that are.
pub(crate) fn missing_split<'a>(
    root: &Path,
    name: &str,
    have: impl Iterator<Item = &'a String>,
) -> DatasetError {
    DatasetError::invalid(
        "split",
        format!(
            "{} has no split `{name}`; it has: {}",
            root.display(),
            have.cloned().collect::<Vec<_>>().join(", ")
        ),
    )
}

/// One labelled image.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The image.
    pub image: ImageRef,
    /// Class index, `0..classes.len()`.
    pub label: usize,
}

/// Options for opening a dataset.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// Skip images that are missing or unreadable (each one is logged and listed in
    /// `problems`) instead of failing.
    pub skip_unreadable: bool,
    /// Read every image's header and check for truncation at open time (slower; catches
    /// damaged files before training starts).
    pub verify_images: bool,
}

/// A dataset in one of the supported layouts.
#[derive(Debug, Clone)]
pub struct ImageDataset {
    /// The layout it was read from (`cub`, `cifar10`, ...) or the embedded dataset's name
    /// (`synth-fine`).
    pub source: String,
    /// Where it was read from.
    pub root: PathBuf,
    /// Class names; labels index this list.
    pub classes: Vec<String>,
    /// Samples per official split (`train`, `test`, ...).
    pub splits: BTreeMap<String, Vec<Sample>>,
    /// Images skipped or found damaged, with the reason.
    pub problems: Vec<String>,
}

/// Size statistics of a split's images.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SizeSummary {
    /// Images measured.
    pub count: usize,
    /// Smallest width and height seen.
    pub min: [u32; 2],
    /// Largest width and height seen.
    pub max: [u32; 2],
}

impl ImageDataset {
    /// A split by name, or an error listing the splits there are.
    pub fn split(&self, name: &str) -> Result<&[Sample], DatasetError> {
        self.splits
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| missing_split(&self.root, name, self.splits.keys()))
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// Checks images in parallel (header + truncation) and removes the bad ones, or fails
    /// naming every one of them.
    pub(crate) fn verify(&mut self, skip: bool) -> Result<(), DatasetError> {
        use rayon::prelude::*;
        if !skip {
            let mut files = Vec::new();
            for samples in self.splits.values() {
                let bad: Vec<String> = samples
                    .par_iter()
                    .filter_map(|s| check_image(&s.image).err().map(|e| e.to_string()))
                    .collect();
                files.extend(bad);
            }
            if files.is_empty() {
                return Ok(());
            }
            return Err(DatasetError::Unreadable {
                root: self.root.clone(),
                files,
            });
        }
        for samples in self.splits.values_mut() {
            let bad: Vec<(usize, DatasetError)> = samples
                .par_iter()
                .enumerate()
                .filter_map(|(i, s)| check_image(&s.image).err().map(|e| (i, e)))
                .collect();
            if bad.is_empty() {
                continue;
            }
            let mut drop = vec![false; samples.len()];
            for (i, e) in bad {
                tracing::warn!("skipping {e}");
                self.problems.push(e.to_string());
                drop[i] = true;
            }
            let mut k = 0;
            samples.retain(|_| {
                k += 1;
                !drop[k - 1]
            });
        }
        Ok(())
    }

    /// Width/height ranges of every image of every split (headers only), plus the images whose
    /// header cannot be read or which are truncated.
    pub fn size_summary(&self) -> (BTreeMap<String, SizeSummary>, Vec<String>) {
        use rayon::prelude::*;
        let mut out = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, samples) in &self.splits {
            let dims: Vec<Result<(u32, u32), DatasetError>> =
                samples.par_iter().map(|s| check_image(&s.image)).collect();
            let mut summary = SizeSummary {
                count: 0,
                min: [u32::MAX, u32::MAX],
                max: [0, 0],
            };
            for d in dims {
                match d {
                    Ok((w, h)) => {
                        summary.count += 1;
                        summary.min = [summary.min[0].min(w), summary.min[1].min(h)];
                        summary.max = [summary.max[0].max(w), summary.max[1].max(h)];
                    }
                    Err(e) => problems.push(e.to_string()),
                }
            }
            if summary.count == 0 {
                summary.min = [0, 0];
            }
            out.insert(name.clone(), summary);
        }
        (out, problems)
    }
}

/// Reads an image file once: header readable, not truncated; returns `(width, height)`.
pub(crate) fn check_image(image: &ImageRef) -> Result<(u32, u32), DatasetError> {
    let ImageRef::File(path) = image else {
        return image.dimensions();
    };
    let bytes = std::fs::read(path).map_err(|e| DatasetError::io(path, e))?;
    if let Some(reason) = truncation(&bytes) {
        return Err(DatasetError::Decode {
            path: path.clone(),
            reason,
        });
    }
    image::ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| DatasetError::io(path, e))?
        .into_dimensions()
        .map_err(|e| DatasetError::Decode {
            path: path.clone(),
            reason: e.to_string(),
        })
}
