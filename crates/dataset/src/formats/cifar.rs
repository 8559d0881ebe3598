//! CIFAR-10 / CIFAR-100, binary version.
//!
//! CIFAR-10 (`cifar-10-batches-bin/`): `data_batch_*.bin` and `test_batch.bin`, records of
//! 1 label byte + 3,072 pixel bytes (1,024 R, 1,024 G, 1,024 B, row-major 32×32), class names
//! in `batches.meta.txt`. CIFAR-100 (`cifar-100-binary/`): `train.bin`, `test.bin`, records of
//! a coarse and a fine label byte + 3,072 pixel bytes; the fine label is used, names in
//! `fine_label_names.txt`. Any whole number of records per file is accepted (so subsets work);
//! a partial record is an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Format, archive_root, dataset, read_lines};
use crate::error::DatasetError;
use crate::source::{ImageDataset, RawImages, raw_samples};

const PIXELS: usize = 32 * 32 * 3;
const CIFAR10_NAMES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Decodes CIFAR records into an HWC store plus labels.
fn read_records(
    path: &Path,
    label_bytes: usize,
    num_classes: usize,
    store: &mut Vec<u8>,
    labels: &mut Vec<usize>,
) -> Result<(), DatasetError> {
    let bytes =
        std::fs::read(path).map_err(|e| DatasetError::opening(path, "a CIFAR binary batch", e))?;
    let record = label_bytes + PIXELS;
    if bytes.is_empty() || bytes.len() % record != 0 {
        return Err(DatasetError::malformed(
            path,
            None,
            format!(
                "{} bytes is not a whole number of {record}-byte records ({} full records and {} \
                 bytes left over): the file is truncated or not a CIFAR{} binary batch",
                bytes.len(),
                bytes.len() / record,
                bytes.len() % record,
                if label_bytes == 1 { "-10" } else { "-100" }
            ),
        ));
    }
    for (i, rec) in bytes.chunks_exact(record).enumerate() {
        let label = rec[label_bytes - 1] as usize;
        if label >= num_classes {
            return Err(DatasetError::UnknownLabel {
                path: path.to_path_buf(),
                line: None,
                label: format!("{label} (record {i})"),
                expected: format!("labels run from 0 to {}", num_classes - 1),
            });
        }
        labels.push(label);
        let px = &rec[label_bytes..];
        for p in 0..1024 {
            store.extend_from_slice(&[px[p], px[1024 + p], px[2048 + p]]);
        }
    }
    Ok(())
}

fn class_names(path: &Path, fallback: Vec<String>) -> Result<Vec<String>, DatasetError> {
    if !path.exists() {
        return Ok(fallback);
    }
    let names: Vec<String> = read_lines(path, "one class name per line")?
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    if names.len() != fallback.len() {
        return Err(DatasetError::Count {
            path: path.to_path_buf(),
            what: "class names".into(),
            expected: fallback.len(),
            found: names.len(),
        });
    }
    Ok(names)
}

/// Directory, format, label bytes per record, class names, batch files per split.
type Layout = (
    PathBuf,
    Format,
    usize,
    Vec<String>,
    Vec<(&'static str, Vec<PathBuf>)>,
);

pub(crate) fn open(root: &Path, hundred: bool) -> Result<ImageDataset, DatasetError> {
    let (dir, format, label_bytes, classes, files): Layout = if hundred {
        let dir = archive_root(root, "cifar-100-binary", "train.bin");
        let fallback = (0..100).map(|i| format!("class_{i:02}")).collect();
        let classes = class_names(&dir.join("fine_label_names.txt"), fallback)?;
        let files = vec![
            ("train", vec![dir.join("train.bin")]),
            ("test", vec![dir.join("test.bin")]),
        ];
        (dir, Format::Cifar100, 2, classes, files)
    } else {
        let dir = archive_root(root, "cifar-10-batches-bin", "test_batch.bin");
        let classes = class_names(
            &dir.join("batches.meta.txt"),
            CIFAR10_NAMES.iter().map(|s| s.to_string()).collect(),
        )?;
        let mut batches: Vec<(u32, PathBuf)> = std::fs::read_dir(&dir)
            .map_err(|e| DatasetError::io(&dir, e))?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let n = name
                    .strip_prefix("data_batch_")?
                    .strip_suffix(".bin")?
                    .parse()
                    .ok()?;
                Some((n, e.path()))
            })
            .collect();
        batches.sort();
        if batches.is_empty() {
            return Err(DatasetError::Missing {
                path: dir.join("data_batch_1.bin"),
                expected: "CIFAR-10 training batches data_batch_1.bin … data_batch_5.bin".into(),
            });
        }
        let files = vec![
            ("train", batches.into_iter().map(|b| b.1).collect()),
            ("test", vec![dir.join("test_batch.bin")]),
        ];
        (dir, Format::Cifar10, 1, classes, files)
    };
    let mut splits = BTreeMap::new();
    for (split, paths) in files {
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        for p in &paths {
            read_records(p, label_bytes, classes.len(), &mut pixels, &mut labels)?;
        }
        let store = RawImages {
            width: 32,
            height: 32,
            data: pixels,
        };
        splits.insert(split.to_string(), raw_samples(store, labels));
    }
    Ok(dataset(format, &dir, classes, splits, Vec::new()))
}
