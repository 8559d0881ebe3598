//! A BERT encoder that loads a Hugging Face checkpoint directory (`config.json`,
//! `model.safetensors` or `pytorch_model.bin`, `tokenizer.json` or `vocab.txt`): embeddings
//! (word + position + token type → LayerNorm), N post-norm encoder layers (multi-head
//! self-attention with an additive padding mask, GELU feed-forward), any hidden size / heads /
//! depth from `config.json`. HREM uses the last hidden states of every token.
//!
//! Module names follow Hugging Face's (`embeddings.word_embeddings`, `encoder.layer.i.attention.
//! output.LayerNorm`, ...) except `attention.self`, a Rust keyword, which is `self_attn`; a
//! `bert.` prefix (task-head checkpoints) is stripped and the pooler is ignored.
//! Dropout follows the checkpoint's `hidden_dropout_prob` (after the embeddings and after each
//! attention and feed-forward projection) and `attention_probs_dropout_prob` (on the attention
//! probabilities), 0.1 each when `config.json` does not say, as in Hugging Face; it acts only in
//! training (on an autodiff device), so inference is deterministic.
//! Tokenisation is the `tokenizers` crate's WordPiece: lower-casing, `[CLS] … [SEP]`, padding and
//! an attention mask.

#![allow(non_snake_case)]

use std::path::{Path, PathBuf};

use burn::config::Config;
use burn::module::Module;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Deserialize;

use crate::error::BackboneError;
use crate::weights::{ImportReport, import_with_remap};

/// The fields of a Hugging Face `config.json` this encoder uses.
#[derive(Config, Debug, PartialEq)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Feed-forward size.
    pub intermediate_size: usize,
    /// Position embeddings.
    #[config(default = 512)]
    pub max_position_embeddings: usize,
    /// Token types.
    #[config(default = 2)]
    pub type_vocab_size: usize,
    /// LayerNorm ε.
    #[config(default = 1e-12)]
    pub layer_norm_eps: f64,
    /// Dropout after the embeddings and after each attention / feed-forward projection.
    #[config(default = 0.1)]
    pub hidden_dropout_prob: f64,
    /// Dropout on the attention probabilities.
    #[config(default = 0.1)]
    pub attention_probs_dropout_prob: f64,
}

#[derive(Deserialize)]
struct HfConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_positions")]
    max_position_embeddings: usize,
    #[serde(default = "default_types")]
    type_vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default)]
    hidden_act: Option<String>,
    #[serde(default = "default_dropout")]
    hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    attention_probs_dropout_prob: f64,
}

fn default_positions() -> usize {
    512
}
fn default_types() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
/// Hugging Face's `BertConfig` default for both dropout probabilities.
fn default_dropout() -> f64 {
    0.1
}

/// Embeddings.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    /// Token embeddings.
    pub word_embeddings: Embedding,
    /// Learned absolute positions.
    pub position_embeddings: Embedding,
    /// Segment embeddings.
    pub token_type_embeddings: Embedding,
    /// Normalisation.
    pub LayerNorm: LayerNorm,
    /// Hidden dropout.
    pub dropout: Dropout,
}

/// Q, K, V projections.
#[derive(Module, Debug)]
pub struct BertSelfAttention {
    /// Query.
    pub query: Linear,
    /// Key.
    pub key: Linear,
    /// Value.
    pub value: Linear,
    /// Dropout on the attention probabilities.
    pub dropout: Dropout,
}

/// Output projection + residual LayerNorm.
#[derive(Module, Debug)]
pub struct BertSelfOutput {
    /// Projection.
    pub dense: Linear,
    /// Post-norm.
    pub LayerNorm: LayerNorm,
    /// Hidden dropout on the projection, before the residual.
    pub dropout: Dropout,
}

impl BertSelfOutput {
    /// LayerNorm(dropout(dense(x)) + residual).
    fn forward(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        self.LayerNorm
            .forward(self.dropout.forward(self.dense.forward(x)) + residual)
    }
}

/// The attention block.
#[derive(Module, Debug)]
pub struct BertAttention {
    /// Q/K/V (`attention.self` in Hugging Face).
    pub self_attn: BertSelfAttention,
    /// Output.
    pub output: BertSelfOutput,
}

/// Feed-forward expansion.
#[derive(Module, Debug)]
pub struct BertIntermediate {
    /// hidden → intermediate.
    pub dense: Linear,
}

/// One encoder layer.
#[derive(Module, Debug)]
pub struct BertLayer {
    /// Attention.
    pub attention: BertAttention,
    /// Expansion.
    pub intermediate: BertIntermediate,
    /// Contraction + residual LayerNorm.
    pub output: BertSelfOutput,
}

/// The layer stack.
#[derive(Module, Debug)]
pub struct BertEncoderStack {
    /// Layers.
    pub layer: Vec<BertLayer>,
}

/// BERT without pooler.
#[derive(Module, Debug)]
pub struct BertModel {
    /// Embeddings.
    pub embeddings: BertEmbeddings,
    /// Layers.
    pub encoder: BertEncoderStack,
    heads: usize,
}

impl BertConfig {
    /// Reads a Hugging Face `config.json`.
    pub fn from_hf_json(path: &Path) -> Result<Self, BackboneError> {
        let bytes = std::fs::read(path).map_err(|e| BackboneError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let c: HfConfig = serde_json::from_slice(&bytes).map_err(|e| BackboneError::Read {
            path: path.to_path_buf(),
            reason: format!("not a BERT config.json ({e})"),
        })?;
        if let Some(act) = &c.hidden_act
            && act != "gelu"
        {
            return Err(BackboneError::Read {
                path: path.to_path_buf(),
                reason: format!("hidden_act `{act}` is not supported (only `gelu`)"),
            });
        }
        for (name, p) in [
            ("hidden_dropout_prob", c.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                c.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(BackboneError::Read {
                    path: path.to_path_buf(),
                    reason: format!("{name} = {p} is not a probability in [0, 1)"),
                });
            }
        }
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return Err(BackboneError::Read {
                path: path.to_path_buf(),
                reason: format!(
                    "hidden_size {} is not a multiple of num_attention_heads {}",
                    c.hidden_size, c.num_attention_heads
                ),
            });
        }
        Ok(Self {
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            num_hidden_layers: c.num_hidden_layers,
            num_attention_heads: c.num_attention_heads,
            intermediate_size: c.intermediate_size,
            max_position_embeddings: c.max_position_embeddings,
            type_vocab_size: c.type_vocab_size,
            layer_norm_eps: c.layer_norm_eps,
            hidden_dropout_prob: c.hidden_dropout_prob,
            attention_probs_dropout_prob: c.attention_probs_dropout_prob,
        })
    }

    /// Builds a randomly initialised model.
    pub fn init(&self, device: &Device) -> BertModel {
        let h = self.hidden_size;
        let ln = || {
            LayerNormConfig::new(h)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        let lin = |i: usize, o: usize| LinearConfig::new(i, o).init(device);
        let hidden_dropout = || DropoutConfig::new(self.hidden_dropout_prob).init();
        BertModel {
            embeddings: BertEmbeddings {
                word_embeddings: EmbeddingConfig::new(self.vocab_size, h).init(device),
                position_embeddings: EmbeddingConfig::new(self.max_position_embeddings, h)
                    .init(device),
                token_type_embeddings: EmbeddingConfig::new(self.type_vocab_size, h).init(device),
                LayerNorm: ln(),
                dropout: hidden_dropout(),
            },
            encoder: BertEncoderStack {
                layer: (0..self.num_hidden_layers)
                    .map(|_| BertLayer {
                        attention: BertAttention {
                            self_attn: BertSelfAttention {
                                query: lin(h, h),
                                key: lin(h, h),
                                value: lin(h, h),
                                dropout: DropoutConfig::new(self.attention_probs_dropout_prob)
                                    .init(),
                            },
                            output: BertSelfOutput {
                                dense: lin(h, h),
                                LayerNorm: ln(),
                                dropout: hidden_dropout(),
                            },
                        },
                        intermediate: BertIntermediate {
                            dense: lin(h, self.intermediate_size),
                        },
                        output: BertSelfOutput {
                            dense: lin(self.intermediate_size, h),
                            LayerNorm: ln(),
                            dropout: hidden_dropout(),
                        },
                    })
                    .collect(),
            },
            heads: self.num_attention_heads,
        }
    }
}

/// Hugging Face names → this module.
pub const HF_BERT_REMAP: [(&str, &str); 4] = [
    (r"^bert\.(.+)$", "$1"),
    (
        r"^(.+)\.attention\.self\.(.+)$",
        "$1.attention.self_attn.$2",
    ),
    (r"^(.+)LayerNorm\.gamma$", "${1}LayerNorm.weight"),
    (r"^(.+)LayerNorm\.beta$", "${1}LayerNorm.bias"),
];

impl BertModel {
    /// Loads a Hugging Face checkpoint directory: `config.json` plus `model.safetensors` or
    /// `pytorch_model.bin`.
    pub fn from_hf_dir(dir: &Path, device: &Device) -> Result<(Self, ImportReport), BackboneError> {
        let config = BertConfig::from_hf_json(&required(dir, &["config.json"])?)?;
        let weights = required(dir, &["model.safetensors", "pytorch_model.bin"])?;
        let mut model = config.init(device);
        let report = import_with_remap(
            &mut model,
            &weights,
            &HF_BERT_REMAP,
            &["pooler.", "cls.", "embeddings.position_ids"],
        )?;
        Ok((model, report))
    }

    /// Last hidden states `[b, l, hidden]` for token ids `[b, l]` and an attention mask
    /// (`1` = real token, `0` = padding).
    pub fn forward(&self, ids: Tensor<2, Int>, mask: Tensor<2, Int>) -> Tensor<3> {
        let [b, l] = ids.dims();
        let device = ids.device();
        let positions = Tensor::<1, Int>::arange(0..l as i64, &device)
            .unsqueeze::<2>()
            .repeat_dim(0, b);
        let types = Tensor::<2, Int>::zeros([b, l], &device);
        let e = &self.embeddings;
        let x = e.word_embeddings.forward(ids)
            + e.position_embeddings.forward(positions)
            + e.token_type_embeddings.forward(types);
        let mut x = e.dropout.forward(e.LayerNorm.forward(x));
        // Additive mask [b, 1, 1, l]: 0 for tokens, a large negative for padding.
        let bias = mask
            .float()
            .neg()
            .add_scalar(1.0)
            .mul_scalar(-1e9)
            .reshape([b, 1, 1, l]);
        for layer in &self.encoder.layer {
            x = layer.forward(x, bias.clone(), self.heads);
        }
        x
    }
}

impl BertLayer {
    fn forward(&self, x: Tensor<3>, bias: Tensor<4>, heads: usize) -> Tensor<3> {
        let [b, l, h] = x.dims();
        let d = h / heads;
        let split = |t: Tensor<3>| t.reshape([b, l, heads, d]).swap_dims(1, 2);
        let sa = &self.attention.self_attn;
        let q = split(sa.query.forward(x.clone()));
        let k = split(sa.key.forward(x.clone()));
        let v = split(sa.value.forward(x.clone()));
        let scores = q.matmul(k.swap_dims(2, 3)).div_scalar((d as f64).sqrt()) + bias;
        let ctx = sa
            .dropout
            .forward(softmax(scores, 3))
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([b, l, h]);
        let x = self.attention.output.forward(ctx, x);
        let ff = gelu(self.intermediate.dense.forward(x.clone()));
        self.output.forward(ff, x)
    }
}

fn required(dir: &Path, names: &[&str]) -> Result<PathBuf, BackboneError> {
    names
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| BackboneError::Missing {
            path: dir.join(names[0]),
            expected: format!("one of {} in the checkpoint directory", names.join(", ")),
        })
}

/// A batch of tokenised captions.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBatch {
    /// `[b, l]` ids, row-major.
    pub ids: Vec<i64>,
    /// `[b, l]` attention mask.
    pub mask: Vec<i64>,
    /// `[b, l]`.
    pub shape: [usize; 2],
}

impl TokenBatch {
    /// As tensors on `device`.
    pub fn tensors(&self, device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>) {
        (
            Tensor::from_data(TensorData::new(self.ids.clone(), self.shape), device),
            Tensor::from_data(TensorData::new(self.mask.clone(), self.shape), device),
        )
    }
}

/// WordPiece tokenisation through the `tokenizers` crate.
pub struct BertTokenizer {
    inner: tokenizers::Tokenizer,
    max_len: usize,
}

impl BertTokenizer {
    /// From a checkpoint directory: `tokenizer.json`, else `vocab.txt` (BERT uncased rules:
    /// lower-casing, accent stripping, `[CLS] … [SEP]`).
    pub fn from_dir(dir: &Path, max_len: usize) -> Result<Self, BackboneError> {
        let json = dir.join("tokenizer.json");
        let err = |path: &Path, e: String| BackboneError::Read {
            path: path.to_path_buf(),
            reason: e,
        };
        let inner = if json.is_file() {
            let mut tk =
                tokenizers::Tokenizer::from_file(&json).map_err(|e| err(&json, e.to_string()))?;
            // tokenizer.json may carry its own fixed padding/truncation (MiniLM pads to 128):
            // `encode` pads to the batch's longest caption and truncates to `max_len` itself.
            tk.with_padding(None);
            tk.with_truncation(None)
                .map_err(|e| err(&json, e.to_string()))?;
            tk
        } else {
            let vocab = required(dir, &["vocab.txt", "tokenizer.json"])?;
            Self::from_vocab(&vocab).map_err(|e| err(&vocab, e))?
        };
        Ok(Self { inner, max_len })
    }

    fn from_vocab(vocab: &Path) -> Result<tokenizers::Tokenizer, String> {
        use tokenizers::Model as _;
        use tokenizers::models::wordpiece::WordPiece;
        use tokenizers::normalizers::bert::BertNormalizer;
        use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
        use tokenizers::processors::bert::BertProcessing;
        let path = vocab.to_str().ok_or("vocabulary path is not UTF-8")?;
        let model = WordPiece::from_file(path)
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| e.to_string())?;
        let cls = model
            .get_vocab()
            .get("[CLS]")
            .copied()
            .ok_or("no [CLS] in vocab.txt")?;
        let sep = model
            .get_vocab()
            .get("[SEP]")
            .copied()
            .ok_or("no [SEP] in vocab.txt")?;
        let mut tk = tokenizers::Tokenizer::new(model);
        tk.with_normalizer(Some(BertNormalizer::new(true, true, None, true)));
        tk.with_pre_tokenizer(Some(BertPreTokenizer));
        tk.with_post_processor(Some(BertProcessing::new(
            ("[SEP]".into(), sep),
            ("[CLS]".into(), cls),
        )));
        Ok(tk)
    }

    /// One caption's ids (with `[CLS] … [SEP]`, truncated to `max_len` as [`Self::encode`] does)
    /// and, per id, the index of the word it came from (`None` for `[CLS]` and `[SEP]`) — what
    /// word-level augmentation needs to treat a word's pieces together.
    pub fn encode_words(
        &self,
        caption: &str,
    ) -> Result<(Vec<i64>, Vec<Option<u32>>), BackboneError> {
        let enc = self
            .inner
            .encode(caption, true)
            .map_err(|e| BackboneError::Read {
                path: PathBuf::from("<caption>"),
                reason: format!("tokenising {caption:?}: {e}"),
            })?;
        let mut ids: Vec<i64> = enc.get_ids().iter().map(|&i| i64::from(i)).collect();
        let mut words: Vec<Option<u32>> = enc.get_word_ids().to_vec();
        if ids.len() > self.max_len && self.max_len >= 2 {
            let (last_id, last_word) = (ids[ids.len() - 1], words[words.len() - 1]);
            ids.truncate(self.max_len);
            words.truncate(self.max_len);
            ids[self.max_len - 1] = last_id;
            words[self.max_len - 1] = last_word;
        }
        Ok((ids, words))
    }

    /// The id of a special token (`[MASK]`, `[PAD]`, ...), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<i64> {
        self.inner.token_to_id(token).map(i64::from)
    }

    /// Vocabulary size (with added tokens).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Tokenises captions, truncating to `max_len` and padding to the longest.
    pub fn encode(&self, captions: &[&str]) -> Result<TokenBatch, BackboneError> {
        let mut rows = Vec::with_capacity(captions.len());
        for c in captions {
            let enc = self
                .inner
                .encode(*c, true)
                .map_err(|e| BackboneError::Read {
                    path: PathBuf::from("<caption>"),
                    reason: format!("tokenising {c:?}: {e}"),
                })?;
            let mut ids: Vec<i64> = enc.get_ids().iter().map(|&i| i64::from(i)).collect();
            if ids.len() > self.max_len {
                // Keep [CLS] … and the final [SEP].
                let last = *ids.last().expect("non-empty");
                ids.truncate(self.max_len);
                if let Some(end) = ids.last_mut() {
                    *end = last;
                }
            }
            rows.push(ids);
        }
        let l = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = vec![0i64; rows.len() * l];
        let mut mask = vec![0i64; rows.len() * l];
        for (i, r) in rows.iter().enumerate() {
            ids[i * l..i * l + r.len()].copy_from_slice(r);
            mask[i * l..i * l + r.len()].iter_mut().for_each(|m| *m = 1);
        }
        Ok(TokenBatch {
            ids,
            mask,
            shape: [rows.len(), l],
        })
    }
}
