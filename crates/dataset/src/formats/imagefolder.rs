//! ImageFolder: `root/<split>/<class>/<image>`, one directory per split (`train`, `test`,
//! `val`, ...) and one per class inside it. Class indices follow the sorted union of class
//! directory names across splits, so a class missing from one split does not shift the others.
//!
//! A folder of class directories with no split level (`root/<class>/<image>`, how photo
//! collections are usually sorted) is one split named `all`; a method that needs a test split
//! holds one out of it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{Format, dataset};
use crate::error::DatasetError;
use crate::source::{ImageDataset, ImageRef, ReadOptions, Sample};

/// File extensions treated as images (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "bmp"];

/// Does `path` name an image file by its extension ([`IMAGE_EXTENSIONS`], case-insensitive)?
pub fn is_image(path: &Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DatasetError::io(dir, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    v.sort();
    Ok(v)
}

pub(crate) fn open(root: &Path, _options: ReadOptions) -> Result<ImageDataset, DatasetError> {
    let split_dirs: Vec<PathBuf> = sorted_entries(root)?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    if split_dirs.is_empty() {
        return Err(DatasetError::Missing {
            path: root.join("train"),
            expected: "split directories root/<split>/<class>/<image>".into(),
        });
    }
    let holds_images = |d: &PathBuf| {
        sorted_entries(d)
            .map(|e| e.iter().any(|p| p.is_file() && is_image(p)))
            .unwrap_or(false)
    };
    let holds_dirs = |d: &PathBuf| {
        sorted_entries(d)
            .map(|e| e.iter().any(|p| p.is_dir()))
            .unwrap_or(false)
    };
    if split_dirs.iter().any(holds_images) {
        if split_dirs.iter().any(|d| !holds_images(d) && holds_dirs(d)) {
            return Err(DatasetError::malformed(
                root,
                None,
                "some directories below the root hold images and some hold class directories: \
                 use root/<split>/<class>/<image> or root/<class>/<image>, not both",
            ));
        }
        return open_classes(root, &split_dirs);
    }
    let mut per_split: BTreeMap<String, Vec<(String, PathBuf)>> = BTreeMap::new();
    let mut class_set = BTreeSet::new();
    for split_dir in &split_dirs {
        let split = split_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut items = Vec::new();
        for class_dir in sorted_entries(split_dir)?
            .into_iter()
            .filter(|p| p.is_dir())
        {
            let class = class_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            class_set.insert(class.clone());
            for file in sorted_entries(&class_dir)? {
                if file.is_file() && is_image(&file) {
                    items.push((class.clone(), file));
                }
            }
        }
        if items.is_empty() {
            return Err(DatasetError::Missing {
                path: split_dir.clone(),
                expected: format!(
                    "class directories with images ({})",
                    IMAGE_EXTENSIONS.join(", ")
                ),
            });
        }
        per_split.insert(split, items);
    }
    finish(root, class_set, per_split)
}

/// `root/<class>/<image>`: one split, `all`.
fn open_classes(root: &Path, class_dirs: &[PathBuf]) -> Result<ImageDataset, DatasetError> {
    let mut class_set = BTreeSet::new();
    let mut items = Vec::new();
    for class_dir in class_dirs {
        let class = class_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let before = items.len();
        for file in sorted_entries(class_dir)? {
            if file.is_file() && is_image(&file) {
                items.push((class.clone(), file));
            }
        }
        if items.len() == before {
            return Err(DatasetError::Missing {
                path: class_dir.clone(),
                expected: format!("images ({})", IMAGE_EXTENSIONS.join(", ")),
            });
        }
        class_set.insert(class);
    }
    finish(
        root,
        class_set,
        BTreeMap::from([("all".to_string(), items)]),
    )
}

fn finish(
    root: &Path,
    class_set: BTreeSet<String>,
    per_split: BTreeMap<String, Vec<(String, PathBuf)>>,
) -> Result<ImageDataset, DatasetError> {
    let classes: Vec<String> = class_set.into_iter().collect();
    let index: BTreeMap<&str, usize> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let splits = per_split
        .into_iter()
        .map(|(split, items)| {
            let samples = items
                .into_iter()
                .map(|(class, path)| Sample {
                    image: ImageRef::File(path),
                    label: index[class.as_str()],
                })
                .collect();
            (split, samples)
        })
        .collect();
    Ok(dataset(
        Format::ImageFolder,
        root,
        classes,
        splits,
        Vec::new(),
    ))
}
