//! Readers for the official on-disk layouts.
//!
//! Each reader returns an [`ImageDataset`] with the format's official train/test split. Text
//! lists are parsed strictly: a missing file, a line that does not parse, a count that does not
//! match another file, or a label outside the class list is a [`DatasetError`] naming the file
//! and line. Images are checked for existence (and, with `verify_images`, decodability) and
//! skipped only with `skip_unreadable`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;

use crate::error::DatasetError;
use crate::source::{ImageDataset, ImageRef, ReadOptions, Sample};

mod aircraft;
mod cifar;
mod cub;
mod food101;
mod imagefolder;
mod nabirds;
pub mod precomp;
mod svhn;
mod vegfru;

pub use imagefolder::{IMAGE_EXTENSIONS, is_image};

/// The supported image layouts (SCAN precomp, which holds features rather than images, is read
/// by [`precomp::PrecompDataset`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// CUB-200-2011.
    Cub,
    /// FGVC-Aircraft (variant level, 100 classes).
    Aircraft,
    /// Food-101.
    Food101,
    /// NABirds (555 leaf classes).
    Nabirds,
    /// VegFru.
    Vegfru,
    /// CIFAR-10 binary version.
    Cifar10,
    /// CIFAR-100 binary version (fine labels).
    Cifar100,
    /// SVHN format 2 (`.mat`).
    Svhn,
    /// `root/<split>/<class>/<image>`.
    ImageFolder,
}

impl Format {
    /// Every image format, in CLI order.
    pub const ALL: [Format; 9] = [
        Format::Cub,
        Format::Aircraft,
        Format::Food101,
        Format::Nabirds,
        Format::Vegfru,
        Format::Cifar10,
        Format::Cifar100,
        Format::Svhn,
        Format::ImageFolder,
    ];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Cub => "cub",
            Format::Aircraft => "aircraft",
            Format::Food101 => "food101",
            Format::Nabirds => "nabirds",
            Format::Vegfru => "vegfru",
            Format::Cifar10 => "cifar10",
            Format::Cifar100 => "cifar100",
            Format::Svhn => "svhn",
            Format::ImageFolder => "imagefolder",
        }
    }

    /// Reads the dataset at `root`.
    pub fn open(self, root: &Path, options: ReadOptions) -> Result<ImageDataset, DatasetError> {
        if !root.is_dir() {
            return Err(DatasetError::Missing {
                path: root.to_path_buf(),
                expected: format!("the {} dataset directory", self.name()),
            });
        }
        let mut ds = match self {
            Format::Cub => cub::open(root, options)?,
            Format::Aircraft => aircraft::open(root, options)?,
            Format::Food101 => food101::open(root, options)?,
            Format::Nabirds => nabirds::open(root, options)?,
            Format::Vegfru => vegfru::open(root, options)?,
            Format::Cifar10 => cifar::open(root, false)?,
            Format::Cifar100 => cifar::open(root, true)?,
            Format::Svhn => svhn::open(root)?,
            Format::ImageFolder => imagefolder::open(root, options)?,
        };
        if options.verify_images {
            ds.verify(options.skip_unreadable)?;
        }
        Ok(ds)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        Format::ALL
            .into_iter()
            .find(|f| f.name() == lower)
            .ok_or_else(|| {
                format!(
                    "unknown format `{s}`; known: {}, precomp",
                    Format::ALL.map(Format::name).join(", ")
                )
            })
    }
}

/// The archive's own directory when `root` is its parent: `root/<nested>` is used when `root`
/// lacks `marker` and `root/<nested>` exists (a file missing inside it is then reported at its
/// real path).
pub(crate) fn archive_root(root: &Path, nested: &str, marker: &str) -> PathBuf {
    if !root.join(marker).exists() && root.join(nested).is_dir() {
        root.join(nested)
    } else {
        root.to_path_buf()
    }
}

/// Class name → index.
pub(crate) fn class_index(classes: &[String]) -> HashMap<&str, usize> {
    classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect()
}

/// The non-empty lines of a required text file, with 1-based line numbers.
pub(crate) fn read_lines(
    path: &Path,
    expected: &str,
) -> Result<Vec<(usize, String)>, DatasetError> {
    let bytes = std::fs::read(path).map_err(|e| DatasetError::opening(path, expected, e))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| DatasetError::malformed(path, None, format!("not UTF-8 text ({e})")))?;
    Ok(text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim().to_string()))
        .filter(|(_, l)| !l.is_empty())
        .collect())
}

/// Parses `<key> <value>` lines (value may contain spaces) into a map, rejecting duplicates.
pub(crate) fn read_pairs(
    path: &Path,
    expected: &str,
) -> Result<Vec<(usize, String, String)>, DatasetError> {
    let mut seen = std::collections::HashSet::new();
    read_lines(path, expected)?
        .into_iter()
        .map(|(n, line)| {
            let (k, v) = line.split_once(char::is_whitespace).ok_or_else(|| {
                DatasetError::malformed(
                    path,
                    Some(n),
                    format!("expected `<id> <value>`, got {line:?}"),
                )
            })?;
            if !seen.insert(k.to_string()) {
                return Err(DatasetError::malformed(
                    path,
                    Some(n),
                    format!("id {k} appears twice"),
                ));
            }
            Ok((n, k.to_string(), v.trim().to_string()))
        })
        .collect()
}

/// Parses an integer field, naming the file and line.
pub(crate) fn parse_int<T: FromStr>(
    path: &Path,
    line: usize,
    value: &str,
    what: &str,
) -> Result<T, DatasetError> {
    value.parse::<T>().map_err(|_| {
        DatasetError::malformed(
            path,
            Some(line),
            format!("{what} must be an integer, got {value:?}"),
        )
    })
}

/// Resolves an image path under `base` and checks that it exists; a missing image is an error,
/// or with `skip` a problem to report.
pub(crate) fn image_at(
    base: &Path,
    rel: &str,
    skip: bool,
    problems: &mut Vec<String>,
) -> Result<Option<ImageRef>, DatasetError> {
    let path: PathBuf = base.join(rel);
    if path.is_file() {
        return Ok(Some(ImageRef::File(path)));
    }
    let err = DatasetError::Missing {
        path,
        expected: "an image file listed by the dataset".into(),
    };
    if skip {
        tracing::warn!("skipping {err}");
        problems.push(err.to_string());
        Ok(None)
    } else {
        Err(err)
    }
}

/// Assembles an [`ImageDataset`].
pub(crate) fn dataset(
    format: Format,
    root: &Path,
    classes: Vec<String>,
    splits: BTreeMap<String, Vec<Sample>>,
    problems: Vec<String>,
) -> ImageDataset {
    ImageDataset {
        source: format.name().to_string(),
        root: root.to_path_buf(),
        classes,
        splits,
        problems,
    }
}
