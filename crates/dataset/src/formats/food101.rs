//! Food-101: `meta/classes.txt` (101 names), `meta/{train,test}.txt` (`<class>/<id>` per line),
//! `images/<class>/<id>.jpg`.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Format, archive_root, class_index, dataset, image_at, read_lines};
use crate::error::DatasetError;
use crate::source::{ImageDataset, ReadOptions, Sample};

pub(crate) fn open(root: &Path, options: ReadOptions) -> Result<ImageDataset, DatasetError> {
    let root = archive_root(root, "food-101", "meta");
    let classes_txt = root.join("meta/classes.txt");
    let classes: Vec<String> = read_lines(&classes_txt, "one class name per line")?
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    let index = class_index(&classes);
    let image_dir = root.join("images");
    let mut splits = BTreeMap::new();
    let mut problems = Vec::new();
    for split in ["train", "test"] {
        let list = root.join(format!("meta/{split}.txt"));
        let mut samples = Vec::new();
        for (line, text) in read_lines(&list, "`<class>/<image id>` per line")? {
            let (class, _) = text.split_once('/').ok_or_else(|| {
                DatasetError::malformed(
                    &list,
                    Some(line),
                    format!("expected `<class>/<image id>`, got {text:?}"),
                )
            })?;
            let label = *index.get(class).ok_or_else(|| DatasetError::UnknownLabel {
                path: list.clone(),
                line: Some(line),
                label: class.to_string(),
                expected: format!("a class of {}", classes_txt.display()),
            })?;
            if let Some(image) = image_at(
                &image_dir,
                &format!("{text}.jpg"),
                options.skip_unreadable,
                &mut problems,
            )? {
                samples.push(Sample { image, label });
            }
        }
        splits.insert(split.to_string(), samples);
    }
    Ok(dataset(Format::Food101, &root, classes, splits, problems))
}
