//! A bidirectional GRU text encoder over a word vocabulary (HREM's BiGRU variant, as in the
//! VSE family: embedding → 1-layer bidirectional GRU → mean of the two directions per token).
//!
//! burn's `BiGru` has no packed sequences: on a padded batch its reverse direction would read
//! the padding first. This GRU runs each direction step by step and only lets a caption's hidden
//! state change at its real tokens, which is exactly what PyTorch's
//! `pack_padded_sequence` computes: the reverse direction of a caption of length `l` starts at
//! token `l − 1` from a zero state, and outputs past `l` are zero, so they never leak into a
//! pooled vector.
//!
//! Gates follow `torch.nn.GRU`: r = σ(W_ir x + b_ir + W_hr h + b_hr),
//! z = σ(W_iz x + b_iz + W_hz h + b_hz), n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),
//! h' = (1 − z) ⊙ n + z ⊙ h; the fused weights keep PyTorch's r | z | n order so
//! `weight_ih_l0` / `weight_hh_l0` import directly.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig};
use burn::tensor::activation::{sigmoid, tanh};
use burn::tensor::{Device, Int, Tensor};

/// One direction: fused input and hidden projections (`[in, 3H]`, `[H, 3H]`).
#[derive(Module, Debug)]
pub struct GruDirection {
    /// `weight_ih`, `bias_ih`.
    pub input: Linear,
    /// `weight_hh`, `bias_hh`.
    pub hidden: Linear,
}

/// Configuration of a [`BiGruEncoder`].
#[derive(Config, Debug, PartialEq)]
pub struct BiGruEncoderConfig {
    /// Vocabulary size (including padding and unknown tokens).
    pub vocab_size: usize,
    /// Word embedding size (300 in the VSE family).
    pub word_dim: usize,
    /// Hidden size per direction (= the joint embedding size, 1024).
    pub hidden: usize,
}

/// Embedding + bidirectional GRU with packed-sequence semantics.
#[derive(Module, Debug)]
pub struct BiGruEncoder {
    /// Word embeddings.
    pub embed: Embedding,
    /// Left-to-right GRU.
    pub forward_gru: GruDirection,
    /// Right-to-left GRU.
    pub backward_gru: GruDirection,
    hidden: usize,
}

impl BiGruEncoderConfig {
    /// Builds the encoder (PyTorch's GRU init: U(−1/√H, 1/√H) for every weight and bias).
    pub fn init(&self, device: &Device) -> BiGruEncoder {
        let k = 1.0 / (self.hidden as f64).sqrt();
        let uniform = Initializer::Uniform { min: -k, max: k };
        let direction = || GruDirection {
            input: LinearConfig::new(self.word_dim, 3 * self.hidden)
                .with_initializer(uniform.clone())
                .init(device),
            hidden: LinearConfig::new(self.hidden, 3 * self.hidden)
                .with_initializer(uniform.clone())
                .init(device),
        };
        BiGruEncoder {
            embed: EmbeddingConfig::new(self.vocab_size, self.word_dim).init(device),
            forward_gru: direction(),
            backward_gru: direction(),
            hidden: self.hidden,
        }
    }
}

impl GruDirection {
    fn step(&self, gates_x: Tensor<2>, h: Tensor<2>, hidden: usize) -> Tensor<2> {
        let gates_h = self.hidden.forward(h.clone());
        let [b, _] = gates_x.dims();
        let xr = gates_x.clone().slice([0..b, 0..hidden]);
        let xz = gates_x.clone().slice([0..b, hidden..2 * hidden]);
        let xn = gates_x.slice([0..b, 2 * hidden..3 * hidden]);
        let hr = gates_h.clone().slice([0..b, 0..hidden]);
        let hz = gates_h.clone().slice([0..b, hidden..2 * hidden]);
        let hn = gates_h.slice([0..b, 2 * hidden..3 * hidden]);
        let r = sigmoid(xr + hr);
        let z = sigmoid(xz + hz);
        let n = tanh(xn + r * hn);
        // h' = (1 − z)·n + z·h = n + z·(h − n)
        n.clone() + z * (h - n)
    }
}

impl BiGruEncoder {
    /// Per-token outputs of both directions `[b, l, 2H]` (forward | backward), zero past each
    /// caption's length. `tokens`: `[b, l]` ids; `lengths`: real tokens per caption.
    pub fn forward_directions(&self, tokens: Tensor<2, Int>, lengths: &[usize]) -> Tensor<3> {
        let [b, l] = tokens.dims();
        assert_eq!(lengths.len(), b, "one length per caption");
        let device = tokens.device();
        let x = self.embed.forward(tokens);
        let h_dim = self.hidden;
        // Mask [b, l]: 1 at real tokens.
        let mask: Vec<f32> = lengths
            .iter()
            .flat_map(|&len| (0..l).map(move |t| if t < len { 1.0 } else { 0.0 }))
            .collect();
        let mask = Tensor::<2>::from_data(burn::tensor::TensorData::new(mask, [b, l]), &device);
        let run = |dir: &GruDirection, order: Vec<usize>| -> Vec<Tensor<2>> {
            let gates_x = dir.input.forward(x.clone()); // [b, l, 3H]
            let mut h = Tensor::<2>::zeros([b, h_dim], &device);
            let mut outs: Vec<Option<Tensor<2>>> = vec![None; l];
            for t in order {
                let gx = gates_x
                    .clone()
                    .slice([0..b, t..t + 1])
                    .reshape([b, 3 * h_dim]);
                let m = mask.clone().slice([0..b, t..t + 1]); // [b, 1]
                let h_new = dir.step(gx, h.clone(), h_dim);
                // Keep the old state where the caption has ended (packed semantics).
                h = h.clone() + (h_new - h) * m.clone();
                outs[t] = Some(h.clone() * m);
            }
            outs.into_iter()
                .map(|o| o.expect("every step ran"))
                .collect()
        };
        let fwd = run(&self.forward_gru, (0..l).collect());
        let bwd = run(&self.backward_gru, (0..l).rev().collect());
        let per_step: Vec<Tensor<3>> = fwd
            .into_iter()
            .zip(bwd)
            .map(|(f, r)| Tensor::cat(vec![f, r], 1).unsqueeze_dim(1))
            .collect();
        Tensor::cat(per_step, 1)
    }

    /// Per-token features `[b, l, H]`: the mean of the two directions (VSE∞ / HREM).
    pub fn forward(&self, tokens: Tensor<2, Int>, lengths: &[usize]) -> Tensor<3> {
        let both = self.forward_directions(tokens, lengths);
        let [b, l, _] = both.dims();
        let h = self.hidden;
        let f = both.clone().slice([0..b, 0..l, 0..h]);
        let r = both.slice([0..b, 0..l, h..2 * h]);
        (f + r).mul_scalar(0.5)
    }
}

/// `nn.Embedding` + `nn.GRU(bidirectional=True)` names (as `embed`, `rnn`) → this module.
pub const PYTORCH_GRU_REMAP: [(&str, &str); 8] = [
    (r"^rnn\.weight_ih_l0$", "forward_gru.input.weight"),
    (r"^rnn\.weight_hh_l0$", "forward_gru.hidden.weight"),
    (r"^rnn\.bias_ih_l0$", "forward_gru.input.bias"),
    (r"^rnn\.bias_hh_l0$", "forward_gru.hidden.bias"),
    (r"^rnn\.weight_ih_l0_reverse$", "backward_gru.input.weight"),
    (r"^rnn\.weight_hh_l0_reverse$", "backward_gru.hidden.weight"),
    (r"^rnn\.bias_ih_l0_reverse$", "backward_gru.input.bias"),
    (r"^rnn\.bias_hh_l0_reverse$", "backward_gru.hidden.bias"),
];
