//! VegFru: list files in `vegfru_list/` named `<subset>_<split>.txt` (`vegfru_train.txt`,
//! `vegfru_val.txt`, `vegfru_test.txt`; also `veg200_*`, `fru92_*`), each line
//! `<image path relative to the root> <integer label>`. The `vegfru` subset (292 classes) is
//! read when present, otherwise the first subset found. Class names come from the image paths'
//! parent directories.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Format, dataset, image_at, parse_int, read_lines};
use crate::error::DatasetError;
use crate::source::{ImageDataset, ReadOptions, Sample};

const SPLITS: [&str; 4] = ["train", "val", "trainval", "test"];

pub(crate) fn open(root: &Path, options: ReadOptions) -> Result<ImageDataset, DatasetError> {
    let list_dir = root.join("vegfru_list");
    let entries = std::fs::read_dir(&list_dir).map_err(|_| DatasetError::Missing {
        path: list_dir.clone(),
        expected: "the vegfru_list/ directory of `<subset>_<split>.txt` lists".into(),
    })?;
    let mut subsets: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".txt") else {
            continue;
        };
        for split in SPLITS {
            if let Some(subset) = stem.strip_suffix(&format!("_{split}")) {
                subsets.entry(subset.to_string()).or_default().push(split);
            }
        }
    }
    let subset = if subsets.contains_key("vegfru") {
        "vegfru".to_string()
    } else {
        subsets
            .keys()
            .next()
            .cloned()
            .ok_or_else(|| DatasetError::Missing {
                path: list_dir.join("vegfru_train.txt"),
                expected: "list files named `<subset>_{train,val,test}.txt`".into(),
            })?
    };
    let present = &subsets[&subset];
    for required in ["train", "test"] {
        if !present.contains(&required) {
            return Err(DatasetError::Missing {
                path: list_dir.join(format!("{subset}_{required}.txt")),
                expected: format!("the {required} list of the `{subset}` subset"),
            });
        }
    }
    let mut names: BTreeMap<usize, String> = BTreeMap::new();
    let mut raw: BTreeMap<String, Vec<(String, usize)>> = BTreeMap::new();
    for split in SPLITS.into_iter().filter(|s| present.contains(s)) {
        let list = list_dir.join(format!("{subset}_{split}.txt"));
        let mut items = Vec::new();
        for (line, text) in read_lines(&list, "`<image path> <label>` per line")? {
            let (path, label) = text.rsplit_once(char::is_whitespace).ok_or_else(|| {
                DatasetError::malformed(
                    &list,
                    Some(line),
                    format!("expected `<image path> <label>`, got {text:?}"),
                )
            })?;
            let label: usize = parse_int(&list, line, label.trim(), "label")?;
            let class = Path::new(path.trim())
                .parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("class_{label}"));
            names.entry(label).or_insert(class);
            items.push((path.trim().to_string(), label));
        }
        raw.insert(split.to_string(), items);
    }
    let num_classes = names.keys().next_back().map_or(0, |m| m + 1);
    let classes: Vec<String> = (0..num_classes)
        .map(|i| {
            names
                .get(&i)
                .cloned()
                .unwrap_or_else(|| format!("class_{i}"))
        })
        .collect();
    // Labels must be covered by the training list: a test label never seen in training is a
    // sign of a mixed-up subset.
    let train_labels: std::collections::HashSet<usize> = raw["train"].iter().map(|x| x.1).collect();
    let mut splits = BTreeMap::new();
    let mut problems = Vec::new();
    for (split, items) in raw {
        let mut samples = Vec::with_capacity(items.len());
        for (path, label) in items {
            if !train_labels.contains(&label) {
                return Err(DatasetError::UnknownLabel {
                    path: list_dir.join(format!("{subset}_{split}.txt")),
                    line: None,
                    label: label.to_string(),
                    expected: format!("a label that occurs in {subset}_train.txt"),
                });
            }
            if let Some(image) = image_at(root, &path, options.skip_unreadable, &mut problems)? {
                samples.push(Sample { image, label });
            }
        }
        splits.insert(split, samples);
    }
    Ok(dataset(Format::Vegfru, root, classes, splits, problems))
}
