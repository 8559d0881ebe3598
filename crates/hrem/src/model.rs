//! The trained model: the two encoders (the inference path) and the relation module (training
//! only). A trained model is saved as `model.json` (configuration) + `model.bpk` (weights) +
//! `vocab.json` (BiGRU runs); [`HremModel::load`] rebuilds it.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use relata_backbone::{BertConfig, BertModel, BertTokenizer, Vocab};

use crate::config::{HremConfig, TextEncoderKind};
use crate::data::{TextTokenizer, pad_ids};
use crate::encoder::{ImageEncoder, TextEncoder};
use crate::error::HremError;
use crate::relation::{RelationModule, relation_module};

/// Encoders + relation module.
#[derive(Module, Debug)]
pub struct HremModel {
    /// Region encoder.
    pub image: ImageEncoder,
    /// Caption encoder.
    pub text: TextEncoder,
    /// The relation module (absent in the baseline).
    pub relation: Option<RelationModule>,
}

const STEM: &str = "model";
const VOCAB: &str = "vocab.json";

/// The BERT config and tokenizer of a checkpoint directory.
fn bert_parts(path: &Path, max_len: usize) -> Result<(BertConfig, BertTokenizer), HremError> {
    let config = BertConfig::from_hf_json(&path.join("config.json"))?;
    // Never longer than the checkpoint's position table.
    let tokenizer = BertTokenizer::from_dir(path, max_len.min(config.max_position_embeddings))?;
    Ok((config, tokenizer))
}

impl HremConfig {
    /// The caption tokeniser: a vocabulary built from `captions` (BiGRU) or the BERT
    /// checkpoint's.
    pub fn tokenizer<'a>(
        &self,
        captions: impl IntoIterator<Item = &'a str>,
    ) -> Result<TextTokenizer, HremError> {
        Ok(match &self.encoder.text {
            TextEncoderKind::BiGru { .. } => {
                TextTokenizer::Vocab(Vocab::build(captions, self.vocab_min_count))
            }
            TextEncoderKind::Bert { path, max_len } => {
                TextTokenizer::Bert(Box::new(bert_parts(path, *max_len)?.1))
            }
        })
    }

    /// Builds the model; BERT weights come from the checkpoint directory when `load_bert`.
    pub fn init(
        &self,
        tokenizer: &TextTokenizer,
        load_bert: bool,
        device: &Device,
    ) -> Result<HremModel, HremError> {
        let e = &self.encoder;
        let text = match &e.text {
            TextEncoderKind::BiGru { word_dim } => {
                TextEncoder::bigru(e, tokenizer.vocab_size(), *word_dim, device)
            }
            TextEncoderKind::Bert { path, .. } => {
                let bert_config = BertConfig::from_hf_json(&path.join("config.json"))?;
                let hidden = bert_config.hidden_size;
                let bert = if load_bert {
                    let (model, report) = BertModel::from_hf_dir(path, device)?;
                    tracing::info!("BERT from {}: {} tensors", path.display(), report.applied);
                    model
                } else {
                    bert_config.init(device)
                };
                TextEncoder::bert(e, bert, hidden, device)
            }
        };
        Ok(HremModel {
            image: ImageEncoder::new(e, device),
            text,
            relation: self
                .relations
                .then(|| relation_module(&self.relation, e, device)),
        })
    }
}

impl HremModel {
    /// Image embeddings `[b, d]` of zero-padded regions `[b, l, region_dim]`.
    pub fn embed_images(&self, regions: Tensor<3>, lengths: &[usize]) -> Tensor<2> {
        self.image.forward(regions, lengths).embedding
    }

    /// Caption embeddings `[b, d]` of padded ids `[b, l]`.
    pub fn embed_tokens(&self, ids: Tensor<2, Int>, lengths: &[usize]) -> Tensor<2> {
        self.text.forward(ids, lengths).embedding
    }

    /// Caption embeddings of raw captions (tokenised with `tokenizer`, no augmentation).
    pub fn embed_captions(
        &self,
        tokenizer: &TextTokenizer,
        captions: &[&str],
        device: &Device,
    ) -> Result<Tensor<2>, HremError> {
        if captions.is_empty() {
            return Err(HremError::Input("no captions to embed".into()));
        }
        let rows: Vec<Vec<i64>> = captions
            .iter()
            .map(|c| tokenizer.tokens(c).map(|t| t.ids))
            .collect::<Result<_, _>>()?;
        let (ids, shape, lengths) = pad_ids(&rows);
        let ids = Tensor::from_data(TensorData::new(ids, shape), device);
        Ok(self.embed_tokens(ids, &lengths))
    }

    /// Writes `model.json`, `model.bpk` and (BiGRU) `vocab.json` into `dir`. The relation
    /// module is not part of the saved model: inference never uses it.
    pub fn save(
        &self,
        config: &HremConfig,
        tokenizer: &TextTokenizer,
        dir: &Path,
    ) -> Result<(), HremError> {
        let encoders = HremModel {
            image: self.image.clone(),
            text: self.text.clone(),
            relation: None,
        };
        let config = config.clone().with_relations(false);
        relata_train::export::save_module(&encoders, &config, dir, STEM)?;
        if let TextTokenizer::Vocab(v) = tokenizer {
            v.save(&dir.join(VOCAB))?;
        }
        Ok(())
    }

    /// Loads a model saved by [`HremModel::save`] with its configuration and tokeniser.
    pub fn load(
        dir: &Path,
        device: &Device,
    ) -> Result<(Self, HremConfig, TextTokenizer), HremError> {
        let config: HremConfig =
            relata_train::export::load_config(dir, STEM, "an HREM run's `model` directory")?;
        config.check()?;
        let tokenizer = match &config.encoder.text {
            TextEncoderKind::BiGru { .. } => TextTokenizer::Vocab(Vocab::load(&dir.join(VOCAB))?),
            TextEncoderKind::Bert { path, max_len } => {
                TextTokenizer::Bert(Box::new(bert_parts(path, *max_len)?.1))
            }
        };
        let skeleton = config.init(&tokenizer, false, device)?;
        let model = relata_train::export::load_module(skeleton, dir, STEM)?;
        Ok((model, config, tokenizer))
    }
}
