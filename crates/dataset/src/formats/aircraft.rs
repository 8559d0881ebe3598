//! FGVC-Aircraft at the variant level (100 classes): `data/variants.txt`,
//! `data/images_variant_{trainval,test}.txt` (`<image id> <variant name>`), `data/images/<id>.jpg`.
//! The official protocol trains on `trainval` (6,667 images) and tests on `test` (3,333); the
//! reader calls those splits `train` and `test`.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Format, archive_root, class_index, dataset, image_at, read_lines};
use crate::error::DatasetError;
use crate::source::{ImageDataset, ReadOptions, Sample};

pub(crate) fn open(root: &Path, options: ReadOptions) -> Result<ImageDataset, DatasetError> {
    // The archive unpacks to `fgvc-aircraft-2013b/data/`; accept the parent too.
    let root = &archive_root(root, "fgvc-aircraft-2013b", "data");
    let data = if root.join("data").is_dir() {
        root.join("data")
    } else if root.join("variants.txt").exists() {
        root.to_path_buf()
    } else {
        root.join("data")
    };
    let variants_txt = data.join("variants.txt");
    let classes: Vec<String> = read_lines(&variants_txt, "one variant name per line")?
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    let index = class_index(&classes);
    let image_dir = data.join("images");
    let mut splits = BTreeMap::new();
    let mut problems = Vec::new();
    for (file, split) in [("trainval", "train"), ("test", "test")] {
        let list = data.join(format!("images_variant_{file}.txt"));
        let mut samples = Vec::new();
        for (line, text) in read_lines(&list, "`<image id> <variant name>` per line")? {
            let (id, variant) = text.split_once(' ').ok_or_else(|| {
                DatasetError::malformed(
                    &list,
                    Some(line),
                    format!("expected `<image id> <variant>`, got {text:?}"),
                )
            })?;
            let label = *index
                .get(variant.trim())
                .ok_or_else(|| DatasetError::UnknownLabel {
                    path: list.clone(),
                    line: Some(line),
                    label: variant.to_string(),
                    expected: format!(
                        "one of the {} names in {}",
                        classes.len(),
                        variants_txt.display()
                    ),
                })?;
            if let Some(image) = image_at(
                &image_dir,
                &format!("{id}.jpg"),
                options.skip_unreadable,
                &mut problems,
            )? {
                samples.push(Sample { image, label });
            }
        }
        splits.insert(split.to_string(), samples);
    }
    Ok(dataset(Format::Aircraft, &data, classes, splits, problems))
}
