//! The retrieval product (issue point 4): a trained run's encoder and Hamming index loaded back
//! from its directory, queried with an image file.

use std::fs;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use relata_dataset::source::decode_rgb;
use relata_dataset::{Pipeline, SeededRng};
use relata_metrics::HammingIndex;
use serde_json::Value;

use crate::config::CmbhConfig;
use crate::encoder::CmbhEncoder;
use crate::error::CmbhError;
use crate::reproduce::DatabaseEntry;

/// A loaded run, ready to answer queries.
pub struct SearchRun {
    /// The run directory used (a `<variant>-<bits>bits` directory).
    pub dir: PathBuf,
    /// The encoder.
    pub encoder: CmbhEncoder,
    /// Its configuration.
    pub config: CmbhConfig,
    /// Database codes.
    pub index: HammingIndex,
    /// Database images, in index order.
    pub database: Vec<DatabaseEntry>,
    /// The test-time pipeline.
    pub pipeline: Pipeline,
}

/// One result.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Hamming distance to the query.
    pub distance: u32,
    /// The database image.
    pub entry: DatabaseEntry,
}

/// Picks the run directory inside `path`: `path` itself when it holds an `encoder/`; otherwise
/// the `full-<bits>bits` sub-directory (the largest bit length when `bits` is `None`).
pub fn resolve_run(path: &Path, bits: Option<usize>) -> Result<PathBuf, CmbhError> {
    if path.join("encoder").is_dir() {
        return Ok(path.to_path_buf());
    }
    let entries = fs::read_dir(path).map_err(|e| {
        CmbhError::file(
            path,
            format!("{e}; pass a `cargo xtask reproduce cmbh` run directory"),
        )
    })?;
    let mut runs: Vec<(String, usize, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (variant, rest) = name.rsplit_once('-')?;
            let b: usize = rest.strip_suffix("bits")?.parse().ok()?;
            e.path()
                .join("encoder")
                .is_dir()
                .then(|| (variant.to_string(), b, e.path()))
        })
        .collect();
    runs.sort();
    let full: Vec<&(String, usize, PathBuf)> = runs.iter().filter(|r| r.0 == "full").collect();
    let pool: Vec<&(String, usize, PathBuf)> = if full.is_empty() {
        runs.iter().collect()
    } else {
        full
    };
    let chosen = match bits {
        Some(b) => pool.iter().find(|r| r.1 == b),
        None => pool.iter().max_by_key(|r| r.1),
    };
    match chosen {
        Some(r) => Ok(r.2.clone()),
        None => {
            let have: Vec<String> = runs
                .iter()
                .map(|r| format!("{}-{}bits", r.0, r.1))
                .collect();
            Err(CmbhError::file(
                path,
                format!(
                    "no finished CMBH run{} here (found: {}); train one with `cargo xtask \
                     reproduce cmbh`",
                    bits.map_or(String::new(), |b| format!(" with {b} bits")),
                    if have.is_empty() {
                        "none".into()
                    } else {
                        have.join(", ")
                    }
                ),
            ))
        }
    }
}

impl SearchRun {
    /// Loads the encoder, index, database list and pipeline of a run.
    pub fn open(path: &Path, bits: Option<usize>, device: &Device) -> Result<Self, CmbhError> {
        let dir = resolve_run(path, bits)?;
        let (encoder, config) = CmbhEncoder::load(&dir.join("encoder"), device)?;
        let index = HammingIndex::load(dir.join("index.bin"))?;
        let db_path = dir.join("database.json");
        let text =
            fs::read_to_string(&db_path).map_err(|e| CmbhError::file(&db_path, e.to_string()))?;
        let database: Vec<DatabaseEntry> = serde_json::from_str(&text)
            .map_err(|e| CmbhError::file(&db_path, format!("not a database list: {e}")))?;
        if database.len() != index.len() {
            return Err(CmbhError::file(
                &db_path,
                format!(
                    "{} entries but the index holds {} codes: the run directory is inconsistent",
                    database.len(),
                    index.len()
                ),
            ));
        }
        if index.bits() != encoder.bits() {
            return Err(CmbhError::file(
                dir.join("index.bin"),
                format!(
                    "{}-bit codes but the encoder makes {}-bit codes",
                    index.bits(),
                    encoder.bits()
                ),
            ));
        }
        let pipe_path = dir.join("pipeline.json");
        let pipe: Value = fs::read_to_string(&pipe_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or_else(|| CmbhError::file(&pipe_path, "missing or not JSON"))?;
        let size = |k: &str| {
            pipe.get(k)
                .and_then(Value::as_u64)
                .map(|v| v as u32)
                .ok_or_else(|| CmbhError::file(&pipe_path, format!("no `{k}`")))
        };
        let pipeline = Pipeline::cmbh_test_sized(size("resize")?, size("crop")?);
        Ok(Self {
            dir,
            encoder,
            config,
            index,
            database,
            pipeline,
        })
    }

    /// The `k` nearest database images to the image file `query` (ties by database index).
    pub fn search_image(
        &self,
        query: &Path,
        k: usize,
        device: &Device,
    ) -> Result<Vec<Hit>, CmbhError> {
        self.search_rgb(decode_rgb(query)?, k, device)
    }

    /// The `k` nearest database images to a decoded image (an upload, a frame in memory).
    pub fn search_rgb(
        &self,
        image: image::RgbImage,
        k: usize,
        device: &Device,
    ) -> Result<Vec<Hit>, CmbhError> {
        let img = self.pipeline.augment(image, &mut SeededRng::new(0))?;
        let (w, h) = img.dimensions();
        let mut pixels = vec![0f32; 3 * (w * h) as usize];
        self.pipeline.normalize_into(&img, &mut pixels);
        let images = Tensor::from_data(
            TensorData::new(pixels, [1, 3, h as usize, w as usize]),
            device,
        );
        let codes = self.encoder.encode(images)?;
        let found = self.index.search(codes.code(0), k.min(self.index.len()))?;
        Ok(found
            .ids
            .iter()
            .zip(&found.distances)
            .map(|(&i, &d)| Hit {
                distance: d,
                entry: self.database[i as usize].clone(),
            })
            .collect())
    }
}
