//! Instance-level relation modelling (the paper's "Instance-level relation modelling", train only;
//! docs/hrem.md):
//! - fragment scores from the detached, per-fragment-normalised R and C:
//!   S = LeakyReLU₀.₁(C Rᵀ); t2i: normalise over words, per-word max over regions → mean p_{T→I}
//!   and top-k maxima q_{T→I}; i2t: normalise over regions, per-region max over words → p_{I→T},
//!   q_{I→T};
//! - connections (boolean, N × N blocks): intra-modal top-⌊0.5N⌋ by embedding similarity
//!   (self included — relata's decision, docs/hrem.md: the corrected products v·vᵀ and u·uᵀ), cross-modal
//!   top-⌊0.5N⌋ by p;
//! - relevance: cross-modal s = MLP(q) + p (one MLP per direction, Linear(k→k) → ReLU →
//!   Linear(k→1)); intra-modal exp(−‖x_i − x_j‖/σ) with gradient;
//! - Fusion: one Transformer layer over [v; u] (2N long) whose attention logits get + λ·S and
//!   −∞ where there is no connection → v̄, ū (L2-normalised); Standalone: cross-attention on the
//!   cross-modal blocks, then self-attention on the intra-modal blocks.
//!
//! Rows are images for I→I and I→T, captions for T→T and T→I. A connection row keeps every
//! column scoring at least the row's k-th largest score, as the released code's
//! `scores >= topk(scores)[:, -1:]`: tied columns at the boundary are all connected (a batch
//! that holds one image twice has exactly tied columns). The q top-k's ties go to the lower
//! index.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::{leaky_relu, relu};
use burn::tensor::{Bool, Device, Tensor, TensorData};
use relata_backbone::fresh_params;

use crate::attention::{TransformerLayer, TransformerLayerConfig};
use crate::config::{EncoderConfig, FragmentSlots, Interaction, RelationConfig};
use crate::encoder::{l2norm, valid_mask};

/// Where a logit is masked out (see `attention::MASKED`).
const FAR: f64 = -1.0e30;

/// MLP(q): Linear(k → k) → ReLU → Linear(k → 1).
#[derive(Module, Debug)]
pub struct RelevanceMlp {
    /// First layer.
    pub fc1: Linear,
    /// Second layer.
    pub fc2: Linear,
}

impl RelevanceMlp {
    fn new(k: usize, device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(k, k).init(device),
            fc2: LinearConfig::new(k, 1).init(device),
        }
    }

    /// `[a, b, k]` → `[a, b]`.
    pub fn forward(&self, q: Tensor<3>) -> Tensor<2> {
        let [a, b, _] = q.dims();
        self.fc2.forward(relu(self.fc1.forward(q))).reshape([a, b])
    }
}

/// The relation module's parameters.
#[derive(Module, Debug)]
pub struct RelationModule {
    /// MLP of the T→I relevance.
    pub t2i: RelevanceMlp,
    /// MLP of the I→T relevance: its own parameters, starting from the same values as `t2i`'s
    /// (the authors build it with `copy.deepcopy`).
    pub i2t: RelevanceMlp,
    /// Fusion: the layer over [v; u]. Standalone: the cross-attention layer.
    pub layer: TransformerLayer,
    /// Standalone only: the intra-modal self-attention layer.
    pub intra: Option<TransformerLayer>,
    /// Settings.
    #[module(skip)]
    pub config: RelationConfig,
}

/// Builds the relation module for embeddings of `encoder.embed` dimensions.
pub fn relation_module(
    config: &RelationConfig,
    encoder: &EncoderConfig,
    device: &Device,
) -> RelationModule {
    let t2i = RelevanceMlp::new(config.top_k, device);
    let layer = || {
        TransformerLayerConfig::new(encoder.embed, encoder.heads, encoder.ff)
            .with_dropout(encoder.dropout)
            .init(device)
    };
    RelationModule {
        // A plain `clone` would keep `t2i`'s parameter ids: one set of weights reached twice.
        i2t: fresh_params(t2i.clone()),
        t2i,
        layer: layer(),
        intra: (config.interaction == Interaction::Standalone).then(layer),
        config: config.clone(),
    }
}

/// The cross-modal fragment scores of a batch.
#[derive(Debug, Clone)]
pub struct FragmentScores {
    /// p_{T→I}, `[captions, images]`.
    pub p_t2i: Tensor<2>,
    /// q_{T→I}, `[captions, images, k]`.
    pub q_t2i: Tensor<3>,
    /// p_{I→T}, `[images, captions]`.
    pub p_i2t: Tensor<2>,
    /// q_{I→T}, `[images, captions, k]`.
    pub q_i2t: Tensor<3>,
}

/// The k largest of `x` along `dim` (3-D → 3-D), where positions at `FAR` (masked) count as
/// zero — a caption with fewer than k words contributes zeros for the missing maxima.
fn top_k_or_zero(x: Tensor<4>, k: usize, dim: usize) -> Tensor<4> {
    let len = x.dims()[dim];
    let top = x.topk(k.min(len), dim);
    let real = top.clone().greater_elem(FAR / 2.0).float();
    let top = top * real;
    if k <= len {
        return top;
    }
    // Fewer positions than k: pad with zeros.
    let mut shape = top.dims();
    shape[dim] = k - len;
    let zeros = Tensor::zeros(shape, &top.device());
    Tensor::cat(vec![top, zeros], dim)
}

/// Fragment scores of every (caption, image) pair from region features `regions`
/// (`[images, lr, d]`, `region_lengths` valid) and word features `words` (`[captions, lw, d]`,
/// `word_lengths` valid). The inputs are detached and each fragment L2-normalised here.
///
/// `slots` says which fragments take part: [`FragmentSlots::Valid`] reads the valid ones only;
/// [`FragmentSlots::Released`] reads what the released code reads — every region slot, and the
/// first max(len, k) word slots in S, its normalisation and the top-k (with zero features past
/// `lw`), while the mean p_{T→I} and the per-region maxima over words keep the first len words.
pub fn fragment_scores(
    regions: Tensor<3>,
    region_lengths: &[usize],
    words: Tensor<3>,
    word_lengths: &[usize],
    k: usize,
    slots: FragmentSlots,
) -> FragmentScores {
    let device = regions.device();
    let [ni, lr, d] = regions.dims();
    let [nt, lw, _] = words.dims();
    // Regions in S; words in S (their normalisation and top-k); words read by the mean p_{T→I}
    // and the per-region maxima.
    let (regions_read, words, lw, words_read) = match slots {
        FragmentSlots::Valid => (region_lengths.to_vec(), words, lw, word_lengths.to_vec()),
        FragmentSlots::Released => {
            let width = lw.max(k);
            let words = if width > lw {
                let zeros = Tensor::zeros([nt, width - lw, d], &device);
                Tensor::cat(vec![words, zeros], 1)
            } else {
                words
            };
            let read = word_lengths.iter().map(|&n| n.max(k).min(width)).collect();
            (vec![lr; ni], words, width, read)
        }
    };
    let (regions_mask, words_mask) = (
        valid_mask(&regions_read, lr, &device), // [ni, lr, 1]
        valid_mask(&words_read, lw, &device),   // [nt, lw, 1]
    );
    let r = l2norm(regions.detach()) * regions_mask.clone();
    let c = l2norm(words.detach()) * words_mask.clone();
    // S[t, i, w, r] = LeakyReLU(c_{t,w} · r_{i,r}).
    let s = c
        .reshape([nt * lw, d])
        .matmul(r.reshape([ni * lr, d]).transpose())
        .reshape([nt, lw, ni, lr])
        .swap_dims(1, 2);
    let s = leaky_relu(s, 0.1);
    // Validity of (word, region) cells, [nt, ni, lw, lr].
    let word_in_s = words_mask.reshape([nt, 1, lw, 1]);
    let word_ok = valid_mask(word_lengths, lw, &device).reshape([nt, 1, lw, 1]);
    let region_ok = regions_mask.reshape([1, ni, 1, lr]);
    let s = s * (word_in_s.clone() * region_ok.clone()); // broadcast → [nt, ni, lw, lr]
    let far = |valid: Tensor<4>| valid.neg().add_scalar(1.0).mul_scalar(FAR);
    let count = |lengths: &[usize], shape: [usize; 2]| {
        let v: Vec<f32> = lengths.iter().map(|&n| n.max(1) as f32).collect();
        Tensor::<2>::from_data(TensorData::new(v, shape), &device)
    };

    // t2i: normalise over words (per region), max over regions per word.
    let t2i = s.clone() / s.clone().powi_scalar(2).sum_dim(2).sqrt().add_scalar(1e-8);
    let word_max = (t2i + far(region_ok.clone())).max_dim(3); // [nt, ni, lw, 1]
    let p_t2i = (word_max.clone() * word_ok.clone())
        .sum_dim(2)
        .reshape([nt, ni])
        / count(word_lengths, [nt, 1]);
    let q_t2i =
        top_k_or_zero(word_max * word_in_s.clone() + far(word_in_s), k, 2).reshape([nt, ni, k]);

    // i2t: normalise over regions (per word), max over words per region.
    let i2t = s.clone() / s.powi_scalar(2).sum_dim(3).sqrt().add_scalar(1e-8);
    let region_max = (i2t + far(word_ok)).max_dim(2); // [nt, ni, 1, lr]
    let region_max = region_max * region_ok.clone();
    let p = region_max.clone().sum_dim(3).reshape([nt, ni]);
    let p_i2t = p.transpose() / count(&regions_read, [ni, 1]);
    let q = top_k_or_zero(region_max + far(region_ok), k, 3).reshape([nt, ni, k]);
    let q_i2t = q.swap_dims(0, 1);
    FragmentScores {
        p_t2i,
        q_t2i,
        p_i2t,
        q_i2t,
    }
}

/// Row-wise top-⌊fraction·n⌋ (at least 1) of an `rows × cols` score matrix as a boolean
/// connection matrix: every column scoring at least the row's k-th largest score, so columns
/// tied at the boundary are all kept (a row may hold more than k).
pub fn top_fraction(scores: &[f32], rows: usize, cols: usize, fraction: f64) -> Vec<bool> {
    let k = ((fraction * cols as f64).floor() as usize).clamp(1, cols.max(1));
    let mut out = vec![false; rows * cols];
    let mut sorted: Vec<f32> = Vec::with_capacity(cols);
    for r in 0..rows {
        let row = &scores[r * cols..(r + 1) * cols];
        sorted.clear();
        sorted.extend_from_slice(row);
        sorted.sort_by(|a, b| b.total_cmp(a));
        let kth = sorted[k - 1];
        for (c, &x) in row.iter().enumerate() {
            out[r * cols + c] = x >= kth;
        }
    }
    out
}

/// The four connection blocks (true = connected), row-major N × N each.
#[derive(Debug, Clone, PartialEq)]
pub struct Connections {
    /// Images × images.
    pub ii: Vec<bool>,
    /// Captions × captions.
    pub tt: Vec<bool>,
    /// Images × captions (by p_{I→T}).
    pub it: Vec<bool>,
    /// Captions × images (by p_{T→I}).
    pub ti: Vec<bool>,
    /// N.
    pub n: usize,
}

impl Connections {
    /// How many cells of the four blocks differ from `other`'s.
    pub fn differing_cells(&self, other: &Connections) -> usize {
        [
            (&self.ii, &other.ii),
            (&self.tt, &other.tt),
            (&self.it, &other.it),
            (&self.ti, &other.ti),
        ]
        .iter()
        .map(|(a, b)| a.iter().zip(b.iter()).filter(|(x, y)| x != y).count())
        .sum()
    }
}

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .expect("float tensors read back as f32")
}

/// Connections of a batch from its embeddings (`[N, d]` each) and fragment scores.
pub fn connections(
    v: &Tensor<2>,
    u: &Tensor<2>,
    scores: &FragmentScores,
    threshold: f64,
) -> Connections {
    let n = v.dims()[0];
    let vv = host(v.clone().detach().matmul(v.clone().detach().transpose()));
    let uu = host(u.clone().detach().matmul(u.clone().detach().transpose()));
    Connections {
        ii: top_fraction(&vv, n, n, threshold),
        tt: top_fraction(&uu, n, n, threshold),
        it: top_fraction(&host(scores.p_i2t.clone()), n, n, threshold),
        ti: top_fraction(&host(scores.p_t2i.clone()), n, n, threshold),
        n,
    }
}

/// Euclidean distances between the rows of `a` (`[n, d]`) and `b` (`[m, d]`), by differences
/// (so a zero distance has a zero, not an infinite, gradient).
pub fn pairwise_distance(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    let [n, d] = a.dims();
    let m = b.dims()[0];
    let diff = a.reshape([n, 1, d]) - b.reshape([1, m, d]);
    diff.powi_scalar(2)
        .sum_dim(2)
        .reshape([n, m])
        .add_scalar(1e-12)
        .sqrt()
}

/// exp(−dist/σ).
pub fn distance_kernel(a: Tensor<2>, b: Tensor<2>, sigma: f64) -> Tensor<2> {
    pairwise_distance(a, b).div_scalar(sigma).neg().exp()
}

/// Everything the relation module produced for one batch.
pub struct RelationOutput {
    /// v̄, `[N, d]`, L2-normalised.
    pub v_bar: Tensor<2>,
    /// ū.
    pub u_bar: Tensor<2>,
    /// Cross-modal relevance S_{I→T}, `[N, N]` (rows images).
    pub s_i2t: Tensor<2>,
    /// S_{T→I} (rows captions).
    pub s_t2i: Tensor<2>,
}

fn bool_tensor(v: &[bool], n: usize, m: usize, device: &Device) -> Tensor<2, Bool> {
    Tensor::from_data(TensorData::new(v.to_vec(), [n, m]), device)
}

impl RelationModule {
    /// Cross-modal relevance (S_{I→T}, S_{T→I}) = MLP(q) + p.
    pub fn relevance(&self, scores: &FragmentScores) -> (Tensor<2>, Tensor<2>) {
        (
            self.i2t.forward(scores.q_i2t.clone()) + scores.p_i2t.clone(),
            self.t2i.forward(scores.q_t2i.clone()) + scores.p_t2i.clone(),
        )
    }

    /// v̄ and ū for embeddings `v`, `u` (`[N, d]`), fragment scores and connections.
    pub fn forward(
        &self,
        v: Tensor<2>,
        u: Tensor<2>,
        scores: &FragmentScores,
        links: &Connections,
    ) -> RelationOutput {
        let device = v.device();
        let [n, d] = v.dims();
        let sigma = self.config.sigma;
        let lambda = self.config.lambda;
        let (s_i2t, s_t2i) = self.relevance(scores);
        let s_ii = distance_kernel(v.clone(), v.clone(), sigma);
        let s_tt = distance_kernel(u.clone(), u.clone(), sigma);
        let not = |b: &[bool]| b.iter().map(|x| !x).collect::<Vec<bool>>();
        let (v_bar, u_bar) = match self.config.interaction {
            Interaction::Fusion => {
                let x = Tensor::cat(vec![v, u], 0).reshape([1, 2 * n, d]);
                let top = Tensor::cat(vec![s_ii, s_i2t.clone()], 1);
                let bottom = Tensor::cat(vec![s_t2i.clone(), s_tt], 1);
                let bias = Tensor::cat(vec![top, bottom], 0)
                    .mul_scalar(lambda)
                    .reshape([1, 2 * n, 2 * n]);
                let mut blocked = vec![false; 4 * n * n];
                for r in 0..n {
                    for c in 0..n {
                        blocked[r * 2 * n + c] = !links.ii[r * n + c];
                        blocked[r * 2 * n + n + c] = !links.it[r * n + c];
                        blocked[(n + r) * 2 * n + c] = !links.ti[r * n + c];
                        blocked[(n + r) * 2 * n + n + c] = !links.tt[r * n + c];
                    }
                }
                let mask = bool_tensor(&blocked, 2 * n, 2 * n, &device).reshape([1, 2 * n, 2 * n]);
                let out = self
                    .layer
                    .forward(x, Some(bias), Some(mask))
                    .reshape([2 * n, d]);
                (out.clone().slice(0..n), out.slice(n..2 * n))
            }
            Interaction::Standalone => {
                let intra = self
                    .intra
                    .as_ref()
                    .expect("the Standalone mechanism has an intra-modal layer");
                let seq = |x: Tensor<2>| x.reshape([1, n, d]);
                let mask = |b: &[bool]| bool_tensor(&not(b), n, n, &device).reshape([1, n, n]);
                let bias = |s: Tensor<2>| s.mul_scalar(lambda).reshape([1, n, n]);
                let v1 = self.layer.forward_with(
                    seq(v.clone()),
                    seq(u.clone()),
                    Some(bias(s_i2t.clone())),
                    Some(mask(&links.it)),
                );
                let u1 = self.layer.forward_with(
                    seq(u),
                    seq(v),
                    Some(bias(s_t2i.clone())),
                    Some(mask(&links.ti)),
                );
                let v2 = intra.forward(v1, Some(bias(s_ii)), Some(mask(&links.ii)));
                let u2 = intra.forward(u1, Some(bias(s_tt)), Some(mask(&links.tt)));
                (v2.reshape([n, d]), u2.reshape([n, d]))
            }
        };
        RelationOutput {
            v_bar: l2norm(v_bar),
            u_bar: l2norm(u_bar),
            s_i2t,
            s_t2i,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_fraction_keeps_half_of_each_row_and_its_ties() {
        let s = [0.9, 0.1, 0.5, 0.5, 0.0, 1.0, 0.2, 0.3];
        let m = top_fraction(&s, 2, 4, 0.5);
        // Row 0: the 2nd largest is 0.5, held by two columns: both connected.
        assert_eq!(m, vec![true, false, true, true, false, true, false, true]);
        // At least one per row.
        assert_eq!(top_fraction(&[1.0, 2.0], 1, 2, 0.1), vec![false, true]);
    }

    #[test]
    fn distances_have_finite_gradients_at_zero() {
        let device = Device::flex().autodiff();
        let a = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 4.0, 6.0], [2, 2]),
            &device,
        )
        .require_grad();
        let d = pairwise_distance(a.clone(), a.clone());
        let values = d.clone().into_data().try_to_vec::<f32>().unwrap();
        assert!((values[1] - 5.0).abs() < 1e-5 && values[0] < 1e-5);
        let grads = d.sum().backward();
        let g = a
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(g.iter().all(|x| x.is_finite()), "{g:?}");
    }
}
