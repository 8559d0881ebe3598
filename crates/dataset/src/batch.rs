//! Batch assembly: decode + augment every image of a batch in parallel (rayon), normalise into
//! one CHW buffer, and hand it to burn as one tensor on the target device.

use burn::tensor::{Device, Int, Tensor, TensorData};
use image::RgbImage;
use rayon::prelude::*;

use crate::error::DatasetError;
use crate::rng::SeededRng;
use crate::source::Sample;
use crate::transform::Pipeline;

/// A batch on a device.
pub struct ImageBatch {
    /// `[n, 3, h, w]`, normalised.
    pub images: Tensor<4>,
    /// `[n]` class labels.
    pub labels: Tensor<1, Int>,
    /// The sample indices, in batch order (ISL's memory bank and CMBH's code cache key on them).
    pub indices: Vec<usize>,
}

/// A batch on the host, before it becomes a tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct HostBatch {
    /// `n · 3 · h · w` normalised values, CHW per image.
    pub pixels: Vec<f32>,
    /// `[n, 3, h, w]`.
    pub shape: [usize; 4],
    /// Labels.
    pub labels: Vec<i64>,
}

/// Loads batches of a split through a pipeline, seeded per `(seed, epoch, sample)`.
pub struct BatchLoader<'a> {
    samples: &'a [Sample],
    pipeline: Pipeline,
    seed: u64,
}

impl<'a> BatchLoader<'a> {
    /// A loader over `samples`.
    pub fn new(samples: &'a [Sample], pipeline: Pipeline, seed: u64) -> Result<Self, DatasetError> {
        pipeline.validate()?;
        Ok(Self {
            samples,
            pipeline,
            seed,
        })
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The label of sample `i`.
    pub fn label(&self, i: usize) -> usize {
        self.samples[i].label
    }

    /// Decodes and augments one sample (the random stream depends on epoch and index only).
    pub fn augmented(&self, index: usize, epoch: usize) -> Result<RgbImage, DatasetError> {
        let sample = self.samples.get(index).ok_or_else(|| {
            DatasetError::invalid(
                "batch",
                format!(
                    "sample index {index} out of range (split has {})",
                    self.samples.len()
                ),
            )
        })?;
        let img = sample.image.load_rgb()?;
        let mut rng = SeededRng::derive(self.seed, &[epoch as u64, index as u64]);
        self.pipeline.augment(img, &mut rng).map_err(|e| match e {
            DatasetError::Invalid { what, reason } => DatasetError::Invalid {
                what,
                reason: format!("{reason} ({})", sample.image.describe()),
            },
            other => other,
        })
    }

    /// Prepares a batch on the host, in parallel.
    pub fn load_host(&self, indices: &[usize], epoch: usize) -> Result<HostBatch, DatasetError> {
        if indices.is_empty() {
            return Err(DatasetError::invalid("batch", "no indices"));
        }
        let images: Vec<RgbImage> = indices
            .par_iter()
            .map(|&i| self.augmented(i, epoch))
            .collect::<Result<_, _>>()?;
        let (w, h) = images[0].dimensions();
        if let Some((k, img)) = images
            .iter()
            .enumerate()
            .find(|(_, im)| im.dimensions() != (w, h))
        {
            return Err(DatasetError::invalid(
                "batch",
                format!(
                    "images of different sizes in one batch ({} is {}×{}, {} is {w}×{h}); end \
                     the pipeline with a fixed-size crop or resize",
                    self.samples[indices[k]].image.describe(),
                    img.width(),
                    img.height(),
                    self.samples[indices[0]].image.describe()
                ),
            ));
        }
        let per = 3 * (w * h) as usize;
        let mut pixels = vec![0f32; per * images.len()];
        pixels
            .par_chunks_mut(per)
            .zip(images.par_iter())
            .for_each(|(out, img)| self.pipeline.normalize_into(img, out));
        Ok(HostBatch {
            pixels,
            shape: [indices.len(), 3, h as usize, w as usize],
            labels: indices
                .iter()
                .map(|&i| self.samples[i].label as i64)
                .collect(),
        })
    }

    /// Prepares a batch and moves it to `device`.
    pub fn load(
        &self,
        indices: &[usize],
        epoch: usize,
        device: &Device,
    ) -> Result<ImageBatch, DatasetError> {
        let host = self.load_host(indices, epoch)?;
        let n = host.labels.len();
        Ok(ImageBatch {
            images: Tensor::from_data(TensorData::new(host.pixels, host.shape), device),
            labels: Tensor::from_data(TensorData::new(host.labels, [n]), device),
            indices: indices.to_vec(),
        })
    }
}
