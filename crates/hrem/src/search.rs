//! `cargo xtask search hrem`: query a trained run with a caption (→ the nearest test images)
//! or with a test image (→ the nearest test captions), by the dot product of the encoders'
//! embeddings — HREM's inference path.

use std::fs;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use relata_dataset::PrecompDataset;
use serde_json::Value;

use crate::data::TextTokenizer;
use crate::error::HremError;
use crate::eval::{SplitEmbeddings, embed_split};
use crate::model::HremModel;

/// A trained run opened for search: the model and its test split's embeddings.
pub struct SearchRun {
    /// The run directory.
    pub dir: PathBuf,
    /// The model (HREM's encoders).
    pub model: HremModel,
    /// Its tokeniser.
    pub tokenizer: TextTokenizer,
    /// The split searched (the reproduction's test split).
    pub data: PrecompDataset,
    /// Name of that split.
    pub split: String,
    /// Embeddings of its images and captions.
    pub embeddings: SplitEmbeddings,
}

/// One hit.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Image or caption index in the split.
    pub index: usize,
    /// Similarity vᵀu.
    pub score: f32,
    /// The caption (caption hits) or the image's first caption (image hits).
    pub text: String,
}

fn read_json(path: &Path) -> Result<Value, HremError> {
    let text = fs::read_to_string(path).map_err(|e| {
        HremError::file(
            path,
            format!("{e}; is this a `reproduce hrem` run directory?"),
        )
    })?;
    serde_json::from_str(&text).map_err(|e| HremError::file(path, e.to_string()))
}

impl SearchRun {
    /// Opens a `reproduce hrem` run (`<run>/full/model`, its data and test split).
    pub fn open(run: &Path, device: &Device) -> Result<Self, HremError> {
        let top = read_json(&run.join("config.json"))?;
        let model_dir = run.join("full").join("model");
        let (model, _, tokenizer) = HremModel::load(&model_dir, device)?;
        let data_dir = match top.get("data_dir").and_then(Value::as_str) {
            Some(d) => PathBuf::from(d),
            None => run.join("data"),
        };
        let split = top
            .get("test_split")
            .and_then(Value::as_str)
            .unwrap_or("test")
            .to_string();
        let data = PrecompDataset::open(&data_dir)?;
        let embeddings = embed_split(&model, &tokenizer, data.split(&split)?, device)?;
        Ok(Self {
            dir: run.to_path_buf(),
            model,
            tokenizer,
            data,
            split,
            embeddings,
        })
    }

    fn top_k(scores: Vec<f32>, k: usize) -> Vec<(usize, f32)> {
        let mut order: Vec<usize> = (0..scores.len()).collect();
        // Ties by index, ascending (docs/design.md, Evaluation contract).
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        order.into_iter().take(k).map(|i| (i, scores[i])).collect()
    }

    /// The `k` test images nearest to `caption`.
    pub fn text_to_images(
        &self,
        caption: &str,
        k: usize,
        device: &Device,
    ) -> Result<Vec<Hit>, HremError> {
        let query = self
            .model
            .embed_captions(&self.tokenizer, &[caption], device)?
            .into_data()
            .try_into_vec_as::<f32>()
            .map_err(|e| HremError::Input(format!("reading the query embedding: {e:?}")))?;
        let d = self.embeddings.dim;
        let scores: Vec<f32> = self
            .embeddings
            .images
            .chunks_exact(d)
            .map(|v| v.iter().zip(&query).map(|(a, b)| a * b).sum())
            .collect();
        let split = self.data.split(&self.split)?;
        Ok(Self::top_k(scores, k)
            .into_iter()
            .map(|(index, score)| Hit {
                index,
                score,
                text: split.captions[index * split.captions_per_image].clone(),
            })
            .collect())
    }

    /// The `k` test captions nearest to test image `image`.
    pub fn image_to_texts(&self, image: usize, k: usize) -> Result<Vec<Hit>, HremError> {
        let split = self.data.split(&self.split)?;
        if image >= split.num_images {
            return Err(HremError::Input(format!(
                "--image {image}: the {} split has {} images (0..{})",
                self.split, split.num_images, split.num_images
            )));
        }
        let d = self.embeddings.dim;
        let v = &self.embeddings.images[image * d..(image + 1) * d];
        let scores: Vec<f32> = self
            .embeddings
            .captions
            .chunks_exact(d)
            .map(|u| v.iter().zip(u).map(|(a, b)| a * b).sum())
            .collect();
        Ok(Self::top_k(scores, k)
            .into_iter()
            .map(|(index, score)| Hit {
                index,
                score,
                text: split.captions[index].clone(),
            })
            .collect())
    }
}
