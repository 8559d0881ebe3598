//! The encoders (the paper's "Encoders"; docs/hrem.md) — the whole inference path:
//! - image: R = Linear(X) + MLP(X) (MLP = Linear → BN → ReLU → Linear) over the regions;
//! - text: the BiGRU's per-word outputs, or BERT's last hidden states → Linear;
//! - both pooled the same way: v = β·g_max + (1−β)·mean(TransformerLayer(R)), g_max = the mean
//!   of the top-2 values per channel over the valid positions; L2-normalised (x / (‖x‖ + 1e-8),
//!   the authors' `l2norm`).
//!
//! Similarity is vᵀu. The per-region / per-word features (R, C) are returned too: the relation
//! module's fragment scores read them.

use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use relata_backbone::ops::batch_norm;
use relata_backbone::{BertModel, BiGruEncoder, BiGruEncoderConfig};

use crate::attention::{TransformerLayer, TransformerLayerConfig, key_padding_mask, zero_bias};
use crate::config::EncoderConfig;

/// The authors' `l2norm`: x / (‖x‖₂ + 1e-8) along the last axis.
pub fn l2norm<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let norm = x
        .clone()
        .powi_scalar(2)
        .sum_dim(D - 1)
        .sqrt()
        .add_scalar(1e-8);
    x / norm
}

/// `[b, l, 1]` with 1 at positions before each length.
pub fn valid_mask(lengths: &[usize], l: usize, device: &Device) -> Tensor<3> {
    let data: Vec<f32> = lengths
        .iter()
        .flat_map(|&len| (0..l).map(move |t| if t < len { 1.0 } else { 0.0 }))
        .collect();
    Tensor::from_data(TensorData::new(data, [lengths.len(), l, 1]), device)
}

/// Mean of the top-2 values per channel over the valid positions (`[b, l, d]` → `[b, d]`);
/// a sequence of one position gives that position.
pub fn top2_mean(x: Tensor<3>, lengths: &[usize]) -> Tensor<2> {
    let [b, l, d] = x.dims();
    let device = x.device();
    let valid = valid_mask(lengths, l, &device);
    // Invalid positions far below any value, so they are never among the top 2 of a sequence
    // with two valid positions.
    let masked = x * valid.clone() + (valid.neg().add_scalar(1.0)).mul_scalar(-1.0e30);
    let k = 2.min(l);
    let top = masked.topk(k, 1); // [b, k, d]
    let counts: Vec<f32> = lengths.iter().map(|&n| n.clamp(1, k) as f32).collect();
    let keep: Vec<f32> = lengths
        .iter()
        .flat_map(|&n| (0..k).map(move |j| if j < n.max(1) { 1.0 } else { 0.0 }))
        .collect();
    let keep = Tensor::<3>::from_data(TensorData::new(keep, [b, k, 1]), &device);
    let counts = Tensor::<2>::from_data(TensorData::new(counts, [b, 1]), &device);
    (top * keep).sum_dim(1).reshape([b, d]) / counts
}

/// Mean over the valid positions (`[b, l, d]` → `[b, d]`).
pub fn masked_mean(x: Tensor<3>, lengths: &[usize]) -> Tensor<2> {
    let [b, l, d] = x.dims();
    let device = x.device();
    let valid = valid_mask(lengths, l, &device);
    let counts: Vec<f32> = lengths.iter().map(|&n| n.max(1) as f32).collect();
    let counts = Tensor::<2>::from_data(TensorData::new(counts, [b, 1]), &device);
    (x * valid).sum_dim(1).reshape([b, d]) / counts
}

/// The shared pooling: β·top2_mean(x) + (1−β)·mean(TransformerLayer(x)), L2-normalised.
#[derive(Module, Debug)]
pub struct Pooling {
    /// The one Transformer layer (16 heads, ff 1024, dropout 0.1).
    pub layer: TransformerLayer,
    /// β.
    #[module(skip)]
    pub beta: f64,
}

impl Pooling {
    fn new(config: &EncoderConfig, device: &Device) -> Self {
        Self {
            layer: TransformerLayerConfig::new(config.embed, config.heads, config.ff)
                .with_dropout(config.dropout)
                .init(device),
            beta: config.beta,
        }
    }

    /// The pooled, normalised embedding of `x` (`[b, l, d]`) with `lengths` valid positions.
    pub fn forward(&self, x: Tensor<3>, lengths: &[usize]) -> Tensor<2> {
        let l = x.dims()[1];
        let mask = key_padding_mask(lengths, l, &x.device());
        let g_max = top2_mean(x.clone(), lengths);
        let g_avg = masked_mean(self.layer.forward(x, None, Some(mask)), lengths);
        l2norm(g_max.mul_scalar(self.beta) + g_avg.mul_scalar(1.0 - self.beta))
    }
}

/// The region encoder.
#[derive(Module, Debug)]
pub struct ImageEncoder {
    /// Linear(2048 → d).
    pub fc: Linear,
    /// MLP first layer (2048 → d/2).
    pub mlp1: Linear,
    /// MLP batch norm.
    pub mlp_bn: BatchNorm,
    /// MLP second layer (d/2 → d).
    pub mlp2: Linear,
    /// Pooling.
    pub pool: Pooling,
}

/// An embedding and the per-position features it was pooled from.
pub struct Encoded {
    /// `[b, d]`, L2-normalised.
    pub embedding: Tensor<2>,
    /// `[b, l, d]`, before pooling (R for images, C for captions).
    pub parts: Tensor<3>,
    /// Valid positions per item.
    pub lengths: Vec<usize>,
}

/// The authors' `init_weights` for `FC_MLP`: Xavier-uniform weights, zero biases.
fn xavier(input: usize, output: usize, device: &Device) -> Linear {
    let linear = LinearConfig::new(input, output)
        .with_initializer(Initializer::XavierUniform { gain: 1.0 })
        .init(device);
    zero_bias(linear, device)
}

impl ImageEncoder {
    /// Builds the encoder (Xavier-uniform weights and zero biases, as the authors' `FC_MLP`).
    pub fn new(config: &EncoderConfig, device: &Device) -> Self {
        let (r, d) = (config.region_dim, config.embed);
        Self {
            fc: xavier(r, d, device),
            mlp1: xavier(r, d / 2, device),
            mlp_bn: BatchNormConfig::new(d / 2).init(device),
            mlp2: xavier(d / 2, d, device),
            pool: Pooling::new(config, device),
        }
    }

    /// R (`[b, l, d]`) of zero-padded regions `[b, l, region_dim]`. The MLP's batch norm sees
    /// every region slot, padding included (as in the authors' code).
    pub fn regions(&self, regions: Tensor<3>) -> Tensor<3> {
        let [b, l, c] = regions.dims();
        let flat = regions.reshape([b * l, c]);
        let hidden = relu(batch_norm(&self.mlp_bn, self.mlp1.forward(flat.clone())));
        let out = self.fc.forward(flat) + self.mlp2.forward(hidden);
        let d = out.dims()[1];
        out.reshape([b, l, d])
    }

    /// Embeddings of a batch of images with `lengths` valid regions each.
    pub fn forward(&self, regions: Tensor<3>, lengths: &[usize]) -> Encoded {
        let parts = self.regions(regions);
        Encoded {
            embedding: self.pool.forward(parts.clone(), lengths),
            parts,
            lengths: lengths.to_vec(),
        }
    }
}

/// The caption encoder: BiGRU or BERT → Linear, then the pooling.
#[derive(Module, Debug)]
pub struct TextEncoder {
    /// The BiGRU (BiGRU variant).
    pub gru: Option<BiGruEncoder>,
    /// BERT (BERT variant).
    pub bert: Option<BertModel>,
    /// BERT's hidden size → d.
    pub bert_fc: Option<Linear>,
    /// Pooling.
    pub pool: Pooling,
}

impl TextEncoder {
    /// A BiGRU encoder over `vocab_size` words.
    pub fn bigru(
        config: &EncoderConfig,
        vocab_size: usize,
        word_dim: usize,
        device: &Device,
    ) -> Self {
        Self {
            gru: Some(BiGruEncoderConfig::new(vocab_size, word_dim, config.embed).init(device)),
            bert: None,
            bert_fc: None,
            pool: Pooling::new(config, device),
        }
    }

    /// A BERT encoder (weights loaded by the caller).
    pub fn bert(config: &EncoderConfig, bert: BertModel, hidden: usize, device: &Device) -> Self {
        Self {
            gru: None,
            bert: Some(bert),
            // The authors' `EncoderText_BERT.linear` keeps `nn.Linear`'s default, which is
            // burn's: U(±1/√hidden) for weights and bias.
            bert_fc: Some(LinearConfig::new(hidden, config.embed).init(device)),
            pool: Pooling::new(config, device),
        }
    }

    /// C (`[b, l, d]`): per-token features of `tokens` (`[b, l]`, padded) with `lengths` real
    /// tokens each.
    pub fn tokens(&self, tokens: Tensor<2, Int>, lengths: &[usize]) -> Tensor<3> {
        if let (Some(bert), Some(fc)) = (&self.bert, &self.bert_fc) {
            let [b, l] = tokens.dims();
            let mask: Vec<i64> = lengths
                .iter()
                .flat_map(|&n| (0..l).map(move |t| (t < n) as i64))
                .collect();
            let mask = Tensor::from_data(TensorData::new(mask, [b, l]), &tokens.device());
            fc.forward(bert.forward(tokens, mask))
        } else {
            self.gru
                .as_ref()
                .expect("a text encoder has a GRU or BERT")
                .forward(tokens, lengths)
        }
    }

    /// Embeddings of a batch of captions.
    pub fn forward(&self, tokens: Tensor<2, Int>, lengths: &[usize]) -> Encoded {
        let parts = self.tokens(tokens, lengths);
        Encoded {
            embedding: self.pool.forward(parts.clone(), lengths),
            parts,
            lengths: lengths.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::max_abs_weight;
    use relata_backbone::BertConfig;

    fn vec3(v: Vec<f32>, shape: [usize; 3]) -> Tensor<3> {
        Tensor::from_data(TensorData::new(v, shape), &Device::flex())
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    fn bias(linear: &Linear) -> Vec<f32> {
        values(linear.bias.as_ref().unwrap().val())
    }

    /// The authors' initialisation: `FC_MLP` Xavier-uniform with zero biases; the BERT
    /// projection `nn.Linear`'s default, U(±1/√hidden) with a drawn bias.
    #[test]
    fn initialisation_follows_the_authors() {
        let device = Device::flex();
        device.seed(5);
        let config = EncoderConfig::new(256).with_embed(128).with_heads(4);
        let image = ImageEncoder::new(&config, &device);
        for (layer, fans) in [
            (&image.fc, 256 + 128),
            (&image.mlp1, 256 + 64),
            (&image.mlp2, 64 + 128),
        ] {
            assert!(bias(layer).iter().all(|&b| b == 0.0));
            let bound = (6.0 / fans as f32).sqrt();
            let max = max_abs_weight(layer);
            assert!(max <= bound && max > 0.95 * bound, "{max} against {bound}");
        }
        let bert = BertConfig::new(30, 48, 1, 2, 64).init(&device);
        let text = TextEncoder::bert(&config, bert, 48, &device);
        let fc = text.bert_fc.as_ref().unwrap();
        let bound = 1.0 / 48f32.sqrt();
        let (max, b) = (max_abs_weight(fc), bias(fc));
        assert!(max <= bound && max > 0.95 * bound, "{max} against {bound}");
        assert!(b.iter().all(|x| x.abs() <= bound) && b.iter().any(|&x| x != 0.0));
    }

    #[test]
    fn pooling_ignores_padding() {
        // Two sequences of 3 positions, 2 channels; the second has one valid position.
        let x = vec3(
            vec![1.0, -1.0, 3.0, 5.0, 2.0, 0.0, 4.0, -2.0, 9.0, 9.0, 9.0, 9.0],
            [2, 3, 2],
        );
        let top = values(top2_mean(x.clone(), &[3, 1]));
        // Seq 0: channel 0 top-2 of {1, 3, 2} → 2.5; channel 1 of {−1, 5, 0} → 2.5.
        // Seq 1: only (4, −2).
        assert_eq!(top, vec![2.5, 2.5, 4.0, -2.0]);
        let mean = values(masked_mean(x, &[3, 1]));
        assert_eq!(mean, vec![2.0, 4.0 / 3.0, 4.0, -2.0]);
        let n = values(l2norm(Tensor::<2>::from_data(
            TensorData::new(vec![3.0f32, 4.0], [1, 2]),
            &Device::flex(),
        )));
        assert!((n[0] - 0.6).abs() < 1e-6 && (n[1] - 0.8).abs() < 1e-6);
    }
}
