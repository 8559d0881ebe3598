//! Evaluation (the paper's "Evaluation"; docs/cmbh.md): queries = test split, database = train
//! split, relevance = same label, Hamming ranking with ties broken by database index, mAP@all.

use burn::tensor::Device;
use relata_dataset::{BatchLoader, Pipeline, Sample};
use relata_metrics::{HammingIndex, Labels, PackedCodes, mean_average_precision};

use crate::encoder::CmbhEncoder;
use crate::error::CmbhError;

/// Codes for every sample of a split (test-time pipeline), in split order.
pub fn encode_samples(
    encoder: &CmbhEncoder,
    samples: &[Sample],
    pipeline: &Pipeline,
    batch_size: usize,
    device: &Device,
) -> Result<PackedCodes, CmbhError> {
    if samples.is_empty() {
        return Err(CmbhError::Input("no images to encode".into()));
    }
    let loader = BatchLoader::new(samples, pipeline.clone(), 0)?;
    let indices: Vec<usize> = (0..samples.len()).collect();
    let mut codes: Option<PackedCodes> = None;
    for chunk in indices.chunks(batch_size.max(1)) {
        let batch = loader.load(chunk, 0, device)?;
        let c = encoder.encode(batch.images)?;
        match codes.as_mut() {
            None => codes = Some(c),
            Some(all) => all.extend(&c)?,
        }
    }
    Ok(codes.expect("at least one batch"))
}

/// Labels of a split as the metrics crate wants them.
pub fn split_labels(samples: &[Sample]) -> Labels {
    Labels::single(samples.iter().map(|s| s.label as i64).collect())
}

/// What [`evaluate`] measures.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// mAP@all, a fraction.
    pub map: f64,
    /// Database codes (the train split), for the search index.
    pub database: PackedCodes,
    /// Query codes (the test split).
    pub queries: PackedCodes,
}

impl Evaluation {
    /// The Hamming index over the database codes.
    pub fn index(&self) -> Result<HammingIndex, CmbhError> {
        Ok(HammingIndex::new(self.database.clone())?)
    }
}

/// mAP@all of `encoder` with `queries` against `database`.
pub fn evaluate(
    encoder: &CmbhEncoder,
    database: &[Sample],
    queries: &[Sample],
    pipeline: &Pipeline,
    batch_size: usize,
    device: &Device,
) -> Result<Evaluation, CmbhError> {
    let db = encode_samples(encoder, database, pipeline, batch_size, device)?;
    let q = encode_samples(encoder, queries, pipeline, batch_size, device)?;
    let map = mean_average_precision(
        &q,
        &db,
        &split_labels(queries),
        &split_labels(database),
        None,
    )?;
    Ok(Evaluation {
        map,
        database: db,
        queries: q,
    })
}
