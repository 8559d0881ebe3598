//! Multi-head attention with an additive bias and a boolean mask, and PyTorch's
//! `nn.TransformerEncoderLayer` (post-norm, ReLU, dropout on the attention probabilities and
//! the feed-forward path) built on it.
//!
//! burn's `MultiHeadAttention` takes boolean masks only and its Transformer layers use GELU;
//! `burn::tensor::module::attention` takes a bias but has no dropout. HREM needs all three —
//! the Fusion mechanism adds λ·S to every head's logits and masks unconnected pairs with −∞ —
//! so the attention is written out: softmax(QKᵀ/√d_h + bias, masked) · V.
//!
//! Initialisation is PyTorch's, as the authors' layers start from it: `nn.MultiheadAttention`
//! draws its stacked `[3d, d]` in-projection Xavier-uniform (bound √(6 / 4d), where burn's
//! default `Linear` gives 1/√d) and zeroes the in-projection and output biases; the output
//! weight and the feed-forward layers keep `nn.Linear`'s default, which is burn's.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{
    Dropout, DropoutConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::{Bool, Device, Tensor};

/// What masked logits become: exp underflows to exactly 0 after the row maximum is
/// subtracted, as with PyTorch's −∞, but a fully masked row stays finite.
const MASKED: f64 = -1.0e30;

/// `linear` with its bias set to zero (PyTorch's `constant_(bias, 0)`).
pub(crate) fn zero_bias(mut linear: Linear, device: &Device) -> Linear {
    let outputs = linear.weight.dims()[1];
    linear.bias = Some(Initializer::Zeros.init([outputs], device));
    linear
}

/// The largest |weight| of a linear layer: the initialisation tests' probe of a drawn range.
#[cfg(test)]
pub(crate) fn max_abs_weight(linear: &Linear) -> f32 {
    let weight = linear.weight.val().into_data();
    weight.iter::<f32>().fold(0f32, |m, x| m.max(x.abs()))
}

/// Configuration of [`MultiHeadAttention`].
#[derive(Config, Debug, PartialEq)]
pub struct MultiHeadAttentionConfig {
    /// Model width d.
    pub d_model: usize,
    /// Heads (d must be a multiple).
    pub heads: usize,
    /// Dropout on the attention probabilities.
    #[config(default = 0.0)]
    pub dropout: f64,
}

/// PyTorch's `nn.MultiheadAttention` (separate q/k/v projections with biases, output
/// projection), batch-first.
#[derive(Module, Debug)]
pub struct MultiHeadAttention {
    /// Query projection.
    pub query: Linear,
    /// Key projection.
    pub key: Linear,
    /// Value projection.
    pub value: Linear,
    /// Output projection.
    pub output: Linear,
    /// Dropout on the attention probabilities.
    pub dropout: Dropout,
    /// Heads.
    #[module(skip)]
    pub heads: usize,
}

impl MultiHeadAttentionConfig {
    /// Builds the module.
    pub fn init(&self, device: &Device) -> MultiHeadAttention {
        let d = self.d_model;
        // Xavier-uniform over the stacked [3d, d] in-projection: fan_in d, fan_out 3d.
        let bound = (6.0 / (4 * d) as f64).sqrt();
        let projection = || {
            let uniform = Initializer::Uniform {
                min: -bound,
                max: bound,
            };
            zero_bias(
                LinearConfig::new(d, d)
                    .with_initializer(uniform)
                    .init(device),
                device,
            )
        };
        MultiHeadAttention {
            query: projection(),
            key: projection(),
            value: projection(),
            output: zero_bias(LinearConfig::new(d, d).init(device), device),
            dropout: DropoutConfig::new(self.dropout).init(),
            heads: self.heads,
        }
    }
}

impl MultiHeadAttention {
    fn split_heads(&self, x: Tensor<3>) -> Tensor<4> {
        let [b, l, d] = x.dims();
        x.reshape([b, l, self.heads, d / self.heads])
            .swap_dims(1, 2)
    }

    /// Attends from `query` (`[b, lq, d]`) to `context` (`[b, lk, d]`). `bias` (`[b, lq, lk]`)
    /// is added to every head's scaled logits; `mask` (`[b, lq, lk]`, true = no attention)
    /// sets logits to −∞. Returns `[b, lq, d]`.
    pub fn forward(
        &self,
        query: Tensor<3>,
        context: Tensor<3>,
        bias: Option<Tensor<3>>,
        mask: Option<Tensor<3, Bool>>,
    ) -> Tensor<3> {
        let [b, lq, d] = query.dims();
        let head_dim = d / self.heads;
        let q = self.split_heads(self.query.forward(query));
        let k = self.split_heads(self.key.forward(context.clone()));
        let v = self.split_heads(self.value.forward(context));
        let mut logits = q
            .matmul(k.swap_dims(2, 3))
            .mul_scalar(1.0 / (head_dim as f64).sqrt());
        if let Some(bias) = bias {
            logits = logits + bias.unsqueeze_dim(1);
        }
        if let Some(mask) = mask {
            let [mb, mq, mk] = mask.dims();
            let mask = mask.unsqueeze_dim::<4>(1).expand([mb, self.heads, mq, mk]);
            logits = logits.mask_fill(mask, MASKED);
        }
        let weights = self.dropout.forward(softmax(logits, 3));
        let out = weights.matmul(v).swap_dims(1, 2).reshape([b, lq, d]);
        self.output.forward(out)
    }
}

/// Configuration of [`TransformerLayer`].
#[derive(Config, Debug, PartialEq)]
pub struct TransformerLayerConfig {
    /// Model width.
    pub d_model: usize,
    /// Heads.
    pub heads: usize,
    /// Feed-forward width.
    pub ff: usize,
    /// Dropout (attention probabilities, after attention, inside and after the feed-forward).
    #[config(default = 0.1)]
    pub dropout: f64,
}

/// PyTorch's `nn.TransformerEncoderLayer` with its defaults (post-norm, ReLU, LayerNorm eps
/// 1e-5), batch-first; attention may also read another sequence (Standalone's cross step).
#[derive(Module, Debug)]
pub struct TransformerLayer {
    /// Self- (or cross-) attention.
    pub attention: MultiHeadAttention,
    /// First feed-forward map.
    pub linear1: Linear,
    /// Second feed-forward map.
    pub linear2: Linear,
    /// Norm after attention.
    pub norm1: LayerNorm,
    /// Norm after the feed-forward.
    pub norm2: LayerNorm,
    /// Dropout after attention.
    pub dropout1: Dropout,
    /// Dropout inside the feed-forward.
    pub dropout: Dropout,
    /// Dropout after the feed-forward.
    pub dropout2: Dropout,
}

impl TransformerLayerConfig {
    /// Builds the layer.
    pub fn init(&self, device: &Device) -> TransformerLayer {
        let norm = || {
            LayerNormConfig::new(self.d_model)
                .with_epsilon(1e-5)
                .init(device)
        };
        let drop = || DropoutConfig::new(self.dropout).init();
        TransformerLayer {
            attention: MultiHeadAttentionConfig::new(self.d_model, self.heads)
                .with_dropout(self.dropout)
                .init(device),
            linear1: LinearConfig::new(self.d_model, self.ff).init(device),
            linear2: LinearConfig::new(self.ff, self.d_model).init(device),
            norm1: norm(),
            norm2: norm(),
            dropout1: drop(),
            dropout: drop(),
            dropout2: drop(),
        }
    }
}

impl TransformerLayer {
    /// x ← LN(x + Dropout(Attn(x, context))); x ← LN(x + Dropout(W₂ Dropout(ReLU(W₁ x)))).
    pub fn forward_with(
        &self,
        x: Tensor<3>,
        context: Tensor<3>,
        bias: Option<Tensor<3>>,
        mask: Option<Tensor<3, Bool>>,
    ) -> Tensor<3> {
        let attended = self.attention.forward(x.clone(), context, bias, mask);
        let x = self.norm1.forward(x + self.dropout1.forward(attended));
        let ff = self
            .linear2
            .forward(self.dropout.forward(relu(self.linear1.forward(x.clone()))));
        self.norm2.forward(x + self.dropout2.forward(ff))
    }

    /// Self-attention over `x` (`[b, l, d]`).
    pub fn forward(
        &self,
        x: Tensor<3>,
        bias: Option<Tensor<3>>,
        mask: Option<Tensor<3, Bool>>,
    ) -> Tensor<3> {
        self.forward_with(x.clone(), x, bias, mask)
    }
}

/// A key-padding mask `[b, l, l]` (true where the key position is past the sequence's length),
/// as PyTorch's `src_key_padding_mask` broadcast over queries.
pub fn key_padding_mask(lengths: &[usize], l: usize, device: &Device) -> Tensor<3, Bool> {
    let b = lengths.len();
    let data: Vec<bool> = lengths
        .iter()
        .flat_map(|&len| (0..l).flat_map(move |_| (0..l).map(move |k| k >= len)))
        .collect();
    Tensor::from_data(burn::tensor::TensorData::new(data, [b, l, l]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    /// PyTorch's `nn.TransformerEncoderLayer` initialisation: Xavier-uniform over the stacked
    /// in-projection (bound √(6 / 4d), above burn's 1/√d), zero attention biases, the output and
    /// feed-forward weights within 1/√fan_in.
    #[test]
    fn initialisation_follows_pytorch() {
        let device = Device::flex();
        device.seed(4);
        let d = 128;
        let layer = TransformerLayerConfig::new(d, 4, 256).init(&device);
        let a = &layer.attention;
        let xavier = (6.0 / (4 * d) as f32).sqrt();
        for projection in [&a.query, &a.key, &a.value] {
            let max = max_abs_weight(projection);
            assert!(max <= xavier && max > 1.1 / (d as f32).sqrt(), "{max}");
        }
        for linear in [&a.query, &a.key, &a.value, &a.output] {
            let bias = linear.bias.as_ref().unwrap().val().into_data();
            assert!(bias.iter::<f32>().all(|b| b == 0.0));
        }
        for (linear, fan_in) in [(&a.output, d), (&layer.linear1, d), (&layer.linear2, 256)] {
            assert!(max_abs_weight(linear) <= 1.0 / (fan_in as f32).sqrt());
        }
    }

    /// A masked key gets exactly zero attention: changing its value changes nothing.
    #[test]
    fn masked_pairs_get_zero_attention() {
        let device = Device::flex();
        device.seed(3);
        let attn = MultiHeadAttentionConfig::new(8, 2).init(&device);
        let x = Tensor::<3>::random([1, 4, 8], burn::tensor::Distribution::Default, &device);
        // Query 0 may not see key 3; nobody may see key 2.
        let mut m = vec![false; 16];
        m[3] = true;
        for q in 0..4 {
            m[q * 4 + 2] = true;
        }
        let mask: Tensor<3, Bool> = Tensor::from_data(TensorData::new(m, [1, 4, 4]), &device);
        let bias = Tensor::<3>::random([1, 4, 4], burn::tensor::Distribution::Default, &device);
        let a = attn.forward(x.clone(), x.clone(), Some(bias.clone()), Some(mask.clone()));
        // Perturb key/value 2 in the context only.
        let mut ctx = x.clone().into_data().try_to_vec::<f32>().unwrap();
        for v in &mut ctx[16..24] {
            *v += 10.0;
        }
        let ctx = Tensor::<3>::from_data(TensorData::new(ctx, [1, 4, 8]), &device);
        let b = attn.forward(x, ctx, Some(bias), Some(mask));
        let (a, b) = (
            a.into_data().try_to_vec::<f32>().unwrap(),
            b.into_data().try_to_vec::<f32>().unwrap(),
        );
        for (u, v) in a.iter().zip(&b) {
            assert!((u - v).abs() < 1e-5, "{u} vs {v}");
        }
    }

    /// A large positive bias on one key makes every head attend to it alone: the output is
    /// that key's projected value.
    #[test]
    fn bias_steers_attention() {
        let device = Device::flex();
        device.seed(4);
        let attn = MultiHeadAttentionConfig::new(4, 2).init(&device);
        let x = Tensor::<3>::random([1, 3, 4], burn::tensor::Distribution::Default, &device);
        let mut bias = vec![0f32; 9];
        for q in 0..3 {
            bias[q * 3 + 1] = 1e4;
        }
        let bias = Tensor::<3>::from_data(TensorData::new(bias, [1, 3, 3]), &device);
        let out = attn.forward(x.clone(), x.clone(), Some(bias), None);
        let v1 = attn
            .output
            .forward(attn.value.forward(x.slice([0..1, 1..2, 0..4])));
        let (out, v1) = (
            out.into_data().try_to_vec::<f32>().unwrap(),
            v1.into_data().try_to_vec::<f32>().unwrap(),
        );
        for q in 0..3 {
            for k in 0..4 {
                assert!((out[q * 4 + k] - v1[k]).abs() < 1e-4);
            }
        }
    }
}
