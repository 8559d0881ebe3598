//! Evaluation (the paper's "Evaluation"; docs/hrem.md): every image and caption of a split through
//! the encoders (no relation module, no augmentation), sims = images × captions, R@1/5/10 both
//! ways, rSum and median rank; COCO 1K = the mean over 5 folds of 1,000 images. Ties rank by index.

use burn::tensor::{Device, Tensor, TensorData};
use relata_dataset::PrecompSplit;
use relata_metrics::{RecallReport, recall_at_k, recall_at_k_folds};

use crate::data::{TextTokenizer, pad_ids, region_batch};
use crate::error::HremError;
use crate::model::HremModel;

/// Embeddings of one split, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitEmbeddings {
    /// `images × d`.
    pub images: Vec<f32>,
    /// `captions × d`.
    pub captions: Vec<f32>,
    /// d.
    pub dim: usize,
}

impl SplitEmbeddings {
    /// sims = images × captionsᵀ, row-major.
    pub fn similarities(&self) -> Vec<f32> {
        let d = self.dim;
        let mut out = Vec::with_capacity(self.images.len() / d * (self.captions.len() / d));
        for v in self.images.chunks_exact(d) {
            for u in self.captions.chunks_exact(d) {
                out.push(v.iter().zip(u).map(|(a, b)| a * b).sum::<f32>());
            }
        }
        out
    }
}

fn read(t: Tensor<2>) -> Result<Vec<f32>, HremError> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| HremError::Input(format!("reading embeddings: {e:?}")))
}

/// Embeddings of images `images` of `split` (in that order).
pub fn embed_images(
    model: &HremModel,
    split: &PrecompSplit,
    images: &[usize],
    batch_size: usize,
    device: &Device,
) -> Result<Vec<f32>, HremError> {
    let mut out = Vec::new();
    for chunk in images.chunks(batch_size.max(1)) {
        let (data, shape, lengths) = region_batch(split, chunk, None)?;
        let regions = Tensor::from_data(TensorData::new(data, shape), device);
        out.extend(read(model.embed_images(regions, &lengths))?);
    }
    Ok(out)
}

/// Embeddings of `captions`.
pub fn embed_captions(
    model: &HremModel,
    tokenizer: &TextTokenizer,
    captions: &[String],
    batch_size: usize,
    device: &Device,
) -> Result<Vec<f32>, HremError> {
    let mut out = Vec::new();
    for chunk in captions.chunks(batch_size.max(1)) {
        let rows: Vec<Vec<i64>> = chunk
            .iter()
            .map(|c| tokenizer.tokens(c).map(|t| t.ids))
            .collect::<Result<_, _>>()?;
        let (ids, shape, lengths) = pad_ids(&rows);
        let ids = Tensor::from_data(TensorData::new(ids, shape), device);
        out.extend(read(model.embed_tokens(ids, &lengths))?);
    }
    Ok(out)
}

/// Every image and caption of `split`, with `model` in inference mode.
pub fn embed_split(
    model: &HremModel,
    tokenizer: &TextTokenizer,
    split: &PrecompSplit,
    device: &Device,
) -> Result<SplitEmbeddings, HremError> {
    let images: Vec<usize> = (0..split.num_images).collect();
    let image_emb = embed_images(model, split, &images, 128, device)?;
    let caption_emb = embed_captions(model, tokenizer, &split.captions, 128, device)?;
    let dim = image_emb.len() / split.num_images.max(1);
    Ok(SplitEmbeddings {
        images: image_emb,
        captions: caption_emb,
        dim,
    })
}

/// R@K both ways on `split` (`folds`: COCO 1K's 5 folds; `None`: the whole split).
pub fn evaluate(
    model: &HremModel,
    tokenizer: &TextTokenizer,
    split: &PrecompSplit,
    folds: Option<usize>,
    device: &Device,
) -> Result<RecallReport, HremError> {
    if split.num_images == 0 {
        return Err(HremError::Input(format!(
            "split `{}` has no images",
            split.name
        )));
    }
    let e = embed_split(model, tokenizer, split, device)?;
    let sims = e.similarities();
    let per = split.captions_per_image;
    Ok(match folds {
        Some(f) => recall_at_k_folds(&sims, split.num_images, per, f)?,
        None => recall_at_k(&sims, split.num_images, per)?,
    })
}
