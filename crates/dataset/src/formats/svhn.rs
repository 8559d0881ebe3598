//! SVHN format 2: `train_32x32.mat`, `test_32x32.mat` (and `extra_32x32.mat` when present),
//! MATLAB level-5 files with `X` (32×32×3×N uint8, column-major) and `y` (N×1, digits 1–10
//! where 10 stands for 0, relabelled to 0). Read with the `matfile` crate.

use std::collections::BTreeMap;
use std::path::Path;

use matfile::{MatFile, NumericData};

use super::{Format, dataset};
use crate::error::DatasetError;
use crate::source::{ImageDataset, RawImages, raw_samples};

fn read_split(path: &Path) -> Result<(RawImages, Vec<usize>), DatasetError> {
    let bad = |reason: String| DatasetError::malformed(path, None, reason);
    let file = std::fs::File::open(path).map_err(|e| {
        DatasetError::opening(
            path,
            "an SVHN format-2 .mat file (X: 32×32×3×N uint8, y: N×1)",
            e,
        )
    })?;
    let mat = MatFile::parse(std::io::BufReader::new(file))
        .map_err(|e| bad(format!("not a readable MATLAB v5 file ({e})")))?;
    let x = mat
        .find_by_name("X")
        .ok_or_else(|| bad("no variable `X`".into()))?;
    let y = mat
        .find_by_name("y")
        .ok_or_else(|| bad("no variable `y`".into()))?;
    let size = x.size();
    if size.len() != 4 || size[0] != 32 || size[1] != 32 || size[2] != 3 {
        return Err(bad(format!(
            "`X` has shape {size:?}, expected [32, 32, 3, N]"
        )));
    }
    let n = size[3];
    let NumericData::UInt8 { real: pixels, .. } = x.data() else {
        return Err(bad("`X` must be uint8".into()));
    };
    let raw_labels: Vec<f64> = match y.data() {
        NumericData::Double { real, .. } => real.clone(),
        NumericData::UInt8 { real, .. } => real.iter().map(|&v| f64::from(v)).collect(),
        NumericData::Int32 { real, .. } => real.iter().map(|&v| f64::from(v)).collect(),
        NumericData::Int64 { real, .. } => real.iter().map(|&v| v as f64).collect(),
        _ => return Err(bad("`y` must be numeric (double or integer)".into())),
    };
    if raw_labels.len() != n {
        return Err(DatasetError::Count {
            path: path.to_path_buf(),
            what: "labels in `y`".into(),
            expected: n,
            found: raw_labels.len(),
        });
    }
    let mut labels = Vec::with_capacity(n);
    for (i, &v) in raw_labels.iter().enumerate() {
        if v.fract() != 0.0 || !(1.0..=10.0).contains(&v) {
            return Err(DatasetError::UnknownLabel {
                path: path.to_path_buf(),
                line: None,
                label: format!("{v} (image {i})"),
                expected: "SVHN labels are 1..10 (10 = digit 0)".into(),
            });
        }
        labels.push(v as usize % 10);
    }
    // Column-major X[h, w, c, n] → HWC per image.
    let mut data = vec![0u8; n * 3072];
    for img in 0..n {
        let out = &mut data[img * 3072..(img + 1) * 3072];
        for c in 0..3 {
            for w in 0..32 {
                for h in 0..32 {
                    out[(h * 32 + w) * 3 + c] = pixels[h + 32 * w + 1024 * c + 3072 * img];
                }
            }
        }
    }
    Ok((
        RawImages {
            width: 32,
            height: 32,
            data,
        },
        labels,
    ))
}

pub(crate) fn open(root: &Path) -> Result<ImageDataset, DatasetError> {
    let mut splits = BTreeMap::new();
    for split in ["train", "test", "extra"] {
        let path = root.join(format!("{split}_32x32.mat"));
        if split == "extra" && !path.exists() {
            continue;
        }
        let (store, labels) = read_split(&path)?;
        splits.insert(split.to_string(), raw_samples(store, labels));
    }
    let classes = (0..10).map(|d| d.to_string()).collect();
    Ok(dataset(Format::Svhn, root, classes, splits, Vec::new()))
}
