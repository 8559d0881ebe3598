//! `cargo xtask data inspect <format> <dir>`: one JSON object describing a dataset on disk.
//!
//! A broken layout (missing list file, malformed line, count mismatch, unknown label) is an
//! error; images that are missing, truncated or undecodable are named in `problems` (every
//! image's header is read, and JPEG/PNG end markers are checked).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::error::DatasetError;
use crate::formats::Format;
use crate::formats::precomp::PrecompDataset;
use crate::source::ReadOptions;

/// Inspects `dir` as `format` (an image format name or `precomp`).
pub fn inspect(format: &str, dir: &Path) -> Result<Value, DatasetError> {
    if format.eq_ignore_ascii_case("precomp") {
        let ds = PrecompDataset::open(dir)?;
        let splits: BTreeMap<&str, usize> = ds
            .splits
            .iter()
            .map(|(k, s)| (k.as_str(), s.num_images))
            .collect();
        let captions: BTreeMap<&str, usize> = ds
            .splits
            .iter()
            .map(|(k, s)| (k.as_str(), s.captions.len()))
            .collect();
        let first = ds.splits.values().next().expect("open() requires a split");
        return Ok(json!({
            "format": "precomp",
            "root": dir.display().to_string(),
            "classes": Value::Null,
            "splits": splits,
            "captions": captions,
            "image_size": {"regions": first.regions, "dim": first.dim},
            "problems": Vec::<String>::new(),
        }));
    }
    let format: Format = format
        .parse()
        .map_err(|e: String| DatasetError::invalid("format", e))?;
    let ds = format.open(
        dir,
        ReadOptions {
            skip_unreadable: true,
            verify_images: false,
        },
    )?;
    let (sizes, header_problems) = ds.size_summary();
    let mut problems = ds.problems.clone();
    problems.extend(header_problems);
    let splits: BTreeMap<&str, usize> = ds
        .splits
        .iter()
        .map(|(k, v)| (k.as_str(), v.len()))
        .collect();
    let count: usize = sizes.values().map(|s| s.count).sum();
    let measured: Vec<_> = sizes.values().filter(|s| s.count > 0).collect();
    let min = measured.iter().fold([u32::MAX, u32::MAX], |m, s| {
        [m[0].min(s.min[0]), m[1].min(s.min[1])]
    });
    let max = measured
        .iter()
        .fold([0, 0], |m, s| [m[0].max(s.max[0]), m[1].max(s.max[1])]);
    let image_size = if count == 0 {
        json!({"count": 0})
    } else {
        json!({"count": count, "min": min, "max": max})
    };
    Ok(json!({
        "format": format.name(),
        "root": ds.root.display().to_string(),
        "classes": ds.num_classes(),
        "splits": splits,
        "image_size": image_size,
        "problems": problems,
    }))
}
