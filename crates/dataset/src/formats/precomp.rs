//! SCAN "precomp" features: `{split}_ims.npy` (N × regions × dim float32, bottom-up region
//! features) and `{split}_caps.txt` (one caption per line, five per image), as read by SCAN,
//! VSE∞ and HREM. As in SCAN's loader, a split whose caption count equals its image count
//! repeats each image per caption (`im_div = 1`); otherwise it must have exactly 5 captions per
//! image. The `.npy` file is memory-mapped, so COCO's 33 GB training features are paged in on
//! demand and never read into RAM at once.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::read_lines;
use crate::error::DatasetError;

/// Shape and data offset of a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyHeader {
    /// `descr`, e.g. `<f4`.
    pub descr: String,
    /// Array shape.
    pub shape: Vec<usize>,
    /// Byte offset of the data.
    pub data_offset: usize,
}

/// Parses the header of a `.npy` file (versions 1–3, C order).
pub fn parse_npy_header(bytes: &[u8], path: &Path) -> Result<NpyHeader, DatasetError> {
    let bad = |reason: String| DatasetError::malformed(path, None, reason);
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file (bad magic)".into()));
    }
    let major = bytes[6];
    let (len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad("truncated .npy header".into()));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(bad(format!("unsupported .npy version {v}"))),
    };
    let header = bytes
        .get(start..start + len)
        .ok_or_else(|| bad("truncated .npy header".into()))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text".into()))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))?;
        let rest = &header[at + key.len() + 2..];
        Some(rest[rest.find(':')? + 1..].trim_start())
    };
    let descr = field("descr")
        .and_then(|r| r.strip_prefix('\''))
        .and_then(|r| r.split('\'').next())
        .ok_or_else(|| bad("header has no descr".into()))?
        .to_string();
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err(bad(
            "Fortran-order arrays are not supported; save with C order".into(),
        ));
    }
    let shape_text = field("shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| bad("header has no shape".into()))?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad(format!("bad shape entry {s:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NpyHeader {
        descr,
        shape,
        data_offset: start + len,
    })
}

/// One split of a precomp dataset.
#[derive(Debug)]
pub struct PrecompSplit {
    /// Split name (`train`, `dev`, `test`, `testall`, ...).
    pub name: String,
    /// The feature file.
    pub features_path: PathBuf,
    map: Mmap,
    offset: usize,
    /// Rows in the `.npy` file.
    pub num_images: usize,
    /// Regions per image (36 for the bottom-up features).
    pub regions: usize,
    /// Feature dimension (2048).
    pub dim: usize,
    /// Captions, in file order.
    pub captions: Vec<String>,
    /// Captions per feature row: 5 normally, 1 when rows repeat per caption.
    pub captions_per_image: usize,
}

impl PrecompSplit {
    /// The `regions × dim` features of image row `i` (borrowed from the memory map).
    pub fn image_features(&self, i: usize) -> &[f32] {
        let n = self.regions * self.dim;
        let bytes = &self.map[self.offset..self.offset + self.num_images * n * 4];
        let all: &[f32] = bytemuck::cast_slice(bytes);
        &all[i * n..(i + 1) * n]
    }

    /// The image row caption `j` describes.
    pub fn image_of_caption(&self, j: usize) -> usize {
        j / self.captions_per_image
    }
}

/// A SCAN precomp directory.
#[derive(Debug)]
pub struct PrecompDataset {
    /// The directory.
    pub root: PathBuf,
    /// Splits by name.
    pub splits: BTreeMap<String, PrecompSplit>,
}

impl PrecompDataset {
    /// Opens every `{split}_ims.npy` + `{split}_caps.txt` pair under `root`.
    pub fn open(root: &Path) -> Result<Self, DatasetError> {
        let entries = std::fs::read_dir(root).map_err(|e| {
            DatasetError::opening(
                root,
                "a SCAN precomp directory ({split}_ims.npy, {split}_caps.txt)",
                e,
            )
        })?;
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .strip_suffix("_ims.npy")
                    .map(str::to_string)
            })
            .collect();
        names.sort();
        if names.is_empty() {
            return Err(DatasetError::Missing {
                path: root.join("train_ims.npy"),
                expected: "at least one {split}_ims.npy feature file".into(),
            });
        }
        let mut splits = BTreeMap::new();
        for name in names {
            splits.insert(name.clone(), open_split(root, &name)?);
        }
        Ok(Self {
            root: root.to_path_buf(),
            splits,
        })
    }

    /// A split by name, or an error listing the splits there are.
    pub fn split(&self, name: &str) -> Result<&PrecompSplit, DatasetError> {
        self.splits
            .get(name)
            .ok_or_else(|| crate::source::missing_split(&self.root, name, self.splits.keys()))
    }
}

fn open_split(root: &Path, name: &str) -> Result<PrecompSplit, DatasetError> {
    let path = root.join(format!("{name}_ims.npy"));
    let file = File::open(&path).map_err(|e| DatasetError::io(&path, e))?;
    // SAFETY: the map is read-only; relata never writes the file while it is mapped. A file
    // truncated by another process underneath would fault, as any mmap reader would.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| DatasetError::io(&path, e))?;
    let header = parse_npy_header(&map[..map.len().min(4096)], &path)?;
    if header.descr != "<f4" {
        return Err(DatasetError::malformed(
            &path,
            None,
            format!("dtype {} is not little-endian float32 (<f4)", header.descr),
        ));
    }
    let (num_images, regions, dim) = match header.shape[..] {
        [n, r, d] => (n, r, d),
        [n, d] => (n, 1, d),
        _ => {
            return Err(DatasetError::malformed(
                &path,
                None,
                format!("shape {:?}, expected (images, regions, dim)", header.shape),
            ));
        }
    };
    let need = header.data_offset + num_images * regions * dim * 4;
    if map.len() < need {
        return Err(DatasetError::malformed(
            &path,
            None,
            format!(
                "{} bytes, the header's shape {:?} needs {need}: the file is truncated",
                map.len(),
                header.shape
            ),
        ));
    }
    if header.data_offset % 4 != 0 {
        return Err(DatasetError::malformed(
            &path,
            None,
            "data offset not 4-byte aligned",
        ));
    }
    let caps_path = root.join(format!("{name}_caps.txt"));
    let captions: Vec<String> = read_lines(&caps_path, "one caption per line, five per image")?
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    let captions_per_image = if captions.len() == num_images {
        1
    } else if captions.len() == 5 * num_images {
        5
    } else {
        return Err(DatasetError::Count {
            path: caps_path,
            what: "captions".into(),
            expected: 5 * num_images,
            found: captions.len(),
        });
    };
    Ok(PrecompSplit {
        name: name.to_string(),
        features_path: path,
        map,
        offset: header.data_offset,
        num_images,
        regions,
        dim,
        captions,
        captions_per_image,
    })
}

/// Writes a float32 array as `.npy` (version 1, C order): how the embedded caption dataset is
/// exported in the precomp layout.
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), DatasetError> {
    use std::io::Write;
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(bytemuck::cast_slice(data));
    let mut f = File::create(path).map_err(|e| DatasetError::io(path, e))?;
    f.write_all(&out).map_err(|e| DatasetError::io(path, e))
}
