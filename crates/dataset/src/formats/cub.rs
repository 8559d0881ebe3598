//! CUB-200-2011 (`images.txt`, `image_class_labels.txt`, `train_test_split.txt`, `classes.txt`,
//! `images/`), and the shared reader for NABirds, which uses the same four lists.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use super::{Format, archive_root, dataset, image_at, parse_int, read_pairs};
use crate::error::DatasetError;
use crate::source::{ImageDataset, ReadOptions, Sample};

pub(crate) fn open(root: &Path, options: ReadOptions) -> Result<ImageDataset, DatasetError> {
    // The archive unpacks to `CUB_200_2011/`; accept its parent too.
    let root = archive_root(root, "CUB_200_2011", "images.txt");
    read_id_lists(&root, Format::Cub, options)
}

/// Reads the id-keyed lists shared by CUB and NABirds.
///
/// CUB numbers its classes 1..=200 and every class has images. NABirds lists all 1,011 nodes
/// of its taxonomy in `classes.txt` but only the 555 leaves carry images; the classes that do
/// are remapped, in increasing id order, to `0..555`.
pub(crate) fn read_id_lists(
    root: &Path,
    format: Format,
    options: ReadOptions,
) -> Result<ImageDataset, DatasetError> {
    let images_txt = root.join("images.txt");
    let labels_txt = root.join("image_class_labels.txt");
    let split_txt = root.join("train_test_split.txt");
    let classes_txt = root.join("classes.txt");
    let images = read_pairs(&images_txt, "`<image_id> <relative path>` per line")?;
    let labels = read_pairs(&labels_txt, "`<image_id> <class_id>` per line")?;
    let split = read_pairs(&split_txt, "`<image_id> <1 = train | 0 = test>` per line")?;
    let class_names: Option<Vec<(usize, String, String)>> = if classes_txt.exists() {
        Some(read_pairs(&classes_txt, "`<class_id> <name>` per line")?)
    } else if format == Format::Nabirds {
        return Err(DatasetError::Missing {
            path: classes_txt,
            expected: "`<class_id> <name>` per line (NABirds class list)".into(),
        });
    } else {
        None
    };
    for (path, n) in [(&labels_txt, labels.len()), (&split_txt, split.len())] {
        if n != images.len() {
            return Err(DatasetError::Count {
                path: path.clone(),
                what: "lines".into(),
                expected: images.len(),
                found: n,
            });
        }
    }

    // Known class ids and names.
    let mut names: BTreeMap<u64, String> = BTreeMap::new();
    if let Some(list) = &class_names {
        for (line, id, name) in list {
            names.insert(
                parse_int(&classes_txt, *line, id, "class id")?,
                name.clone(),
            );
        }
    }
    let label_of: HashMap<&str, (usize, &str)> = labels
        .iter()
        .map(|(line, id, class)| (id.as_str(), (*line, class.as_str())))
        .collect();
    let train_of: HashMap<&str, (usize, &str)> = split
        .iter()
        .map(|(line, id, flag)| (id.as_str(), (*line, flag.as_str())))
        .collect();

    // Class ids in use, validated against the class list (or CUB's 1..=200 when absent).
    let mut used: BTreeSet<u64> = BTreeSet::new();
    for (line, _, class) in &labels {
        let id: u64 = parse_int(&labels_txt, *line, class, "class id")?;
        let known = if names.is_empty() {
            (1..=200).contains(&id)
        } else {
            names.contains_key(&id)
        };
        if !known {
            return Err(DatasetError::UnknownLabel {
                path: labels_txt.clone(),
                line: Some(*line),
                label: class.clone(),
                expected: if names.is_empty() {
                    "class ids run from 1 to 200".into()
                } else {
                    format!("not a class id of {}", classes_txt.display())
                },
            });
        }
        used.insert(id);
    }
    let (index_of, classes): (HashMap<u64, usize>, Vec<String>) = match format {
        Format::Nabirds => {
            let ids: Vec<u64> = used.iter().copied().collect();
            (
                ids.iter().enumerate().map(|(i, &id)| (id, i)).collect(),
                ids.iter().map(|id| names[id].clone()).collect(),
            )
        }
        _ => {
            let count = if names.is_empty() {
                200
            } else {
                names.len() as u64
            };
            if !names.is_empty() && names.keys().copied().ne(1..=count) {
                return Err(DatasetError::malformed(
                    &classes_txt,
                    None,
                    format!("class ids must run from 1 to {count}"),
                ));
            }
            (
                (1..=count).map(|id| (id, (id - 1) as usize)).collect(),
                (1..=count)
                    .map(|id| {
                        names
                            .get(&id)
                            .cloned()
                            .unwrap_or_else(|| format!("class_{id:03}"))
                    })
                    .collect(),
            )
        }
    };

    let image_dir = root.join("images");
    if !image_dir.is_dir() {
        return Err(DatasetError::Missing {
            path: image_dir,
            expected: "the images/ directory the lists point into".into(),
        });
    }
    let mut splits: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (line, id, rel) in &images {
        let (lline, class) = label_of.get(id.as_str()).ok_or_else(|| {
            DatasetError::malformed(
                &labels_txt,
                None,
                format!("no label for image id {id} (images.txt line {line})"),
            )
        })?;
        let (sline, flag) = train_of.get(id.as_str()).ok_or_else(|| {
            DatasetError::malformed(
                &split_txt,
                None,
                format!("no split for image id {id} (images.txt line {line})"),
            )
        })?;
        let class_id: u64 = parse_int(&labels_txt, *lline, class, "class id")?;
        let split = match *flag {
            "1" => "train",
            "0" => "test",
            other => {
                return Err(DatasetError::malformed(
                    &split_txt,
                    Some(*sline),
                    format!("split flag must be 1 (train) or 0 (test), got {other:?}"),
                ));
            }
        };
        if let Some(image) = image_at(&image_dir, rel, options.skip_unreadable, &mut problems)? {
            splits.entry(split.to_string()).or_default().push(Sample {
                image,
                label: index_of[&class_id],
            });
        }
    }
    Ok(dataset(format, root, classes, splits, problems))
}
