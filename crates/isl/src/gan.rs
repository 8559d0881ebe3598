//! The GAN that mines the feature manifold (the paper's "GAN"; docs/isl.md): generator G (3d → 2d
//! → d → d, LeakyReLU 0.01, L2-normalised proxy) and discriminator D (3d → d → d/2 → 1, LeakyReLU
//! 0.01, sigmoid) — 384 → 256 → 128 → 128 and 384 → 128 → 64 → 1 at d = 128 — over concatenated
//! (anchor, positive, negative) features, their BCE losses, and the triplet sampler (positive =
//! the anchor's own memory entry, negative = the hardest of 4,096 random non-members).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{LeakyRelu, LeakyReluConfig, Linear, LinearConfig};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};

use crate::loss::Members;
use crate::memory::{MemoryBank, l2_normalize};
use crate::positives::PositiveSets;

/// Sizes of G and D.
#[derive(Config, Debug, PartialEq)]
pub struct GanConfig {
    /// Feature dimension (128).
    #[config(default = 128)]
    pub dim: usize,
    /// Random non-members drawn per anchor for the hardest negative (4,096).
    #[config(default = 4096)]
    pub negatives: usize,
}

/// Generator: proxy f^g = normalise(G(a, p, n)).
#[derive(Module, Debug)]
pub struct Generator {
    /// 3d → 2d.
    pub fc1: Linear,
    /// 2d → d.
    pub fc2: Linear,
    /// d → d.
    pub fc3: Linear,
    act: LeakyRelu,
}

/// Discriminator: D(a, x, y) ∈ (0, 1).
#[derive(Module, Debug)]
pub struct Discriminator {
    /// 3d → d.
    pub fc1: Linear,
    /// d → d/2.
    pub fc2: Linear,
    /// d/2 → 1.
    pub fc3: Linear,
    act: LeakyRelu,
}

/// Both networks (one module so that one checkpoint holds them; each has its own optimiser).
#[derive(Module, Debug)]
pub struct Gan {
    /// G.
    pub generator: Generator,
    /// D.
    pub discriminator: Discriminator,
}

impl GanConfig {
    /// Builds G and D, their hidden sizes scaled with d as in the authors' `models/GAN.py`
    /// (G 3d → 2d → d → d, D 3d → d → d/2 → 1; 384 → 256 → 128 → 128 and 384 → 128 → 64 → 1 at
    /// d = 128).
    pub fn init(&self, device: &Device) -> Gan {
        let d = self.dim;
        let act = LeakyReluConfig::new().with_negative_slope(0.01).init();
        Gan {
            generator: Generator {
                fc1: LinearConfig::new(3 * d, 2 * d).init(device),
                fc2: LinearConfig::new(2 * d, d).init(device),
                fc3: LinearConfig::new(d, d).init(device),
                act: act.clone(),
            },
            discriminator: Discriminator {
                fc1: LinearConfig::new(3 * d, d).init(device),
                fc2: LinearConfig::new(d, (d / 2).max(1)).init(device),
                fc3: LinearConfig::new((d / 2).max(1), 1).init(device),
                act,
            },
        }
    }
}

impl Generator {
    /// The proxy for triplets (a, p, n), each `[b, d]`.
    pub fn forward(&self, a: Tensor<2>, p: Tensor<2>, n: Tensor<2>) -> Tensor<2> {
        let x = Tensor::cat(vec![a, p, n], 1);
        let x = self.act.forward(self.fc1.forward(x));
        let x = self.act.forward(self.fc2.forward(x));
        l2_normalize(self.fc3.forward(x))
    }
}

impl Discriminator {
    /// The probability that (a, x, y) is a real (anchor, positive, negative) triplet, `[b]`.
    pub fn forward(&self, a: Tensor<2>, x: Tensor<2>, y: Tensor<2>) -> Tensor<1> {
        let h = Tensor::cat(vec![a, x, y], 1);
        let h = self.act.forward(self.fc1.forward(h));
        let h = self.act.forward(self.fc2.forward(h));
        let [b, _] = h.dims();
        sigmoid(self.fc3.forward(h)).reshape([b])
    }
}

/// Binary cross-entropy of probabilities against a constant target, mean over the batch
/// (PyTorch's `nn.BCELoss`, whose log is clamped at −100).
pub fn bce(prob: Tensor<1>, target: f64) -> Tensor<1> {
    let log_p = prob.clone().log().clamp_min(-100.0);
    let log_1p = prob.neg().add_scalar(1.0).log().clamp_min(-100.0);
    (log_p.mul_scalar(target) + log_1p.mul_scalar(1.0 - target))
        .mean()
        .neg()
}

impl Gan {
    /// D's loss: [BCE(D(a,p,n), 1) + ½·BCE(D(a,p,g), 0) + ½·BCE(D(a,g,n), 0)] / 2 with
    /// g = G(a,p,n) held constant.
    pub fn discriminator_loss(&self, a: Tensor<2>, p: Tensor<2>, n: Tensor<2>) -> Tensor<1> {
        let g = self
            .generator
            .forward(a.clone(), p.clone(), n.clone())
            .detach();
        let d = &self.discriminator;
        let real = bce(d.forward(a.clone(), p.clone(), n.clone()), 1.0);
        let fake_pos = bce(d.forward(a.clone(), p, g.clone()), 0.0);
        let fake_neg = bce(d.forward(a, g, n), 0.0);
        (real + fake_pos.mul_scalar(0.5) + fake_neg.mul_scalar(0.5)).div_scalar(2.0)
    }

    /// G's loss: ½·BCE(D(a,p,g), 1) + ½·BCE(D(a,g,n), 1). Minimise it over G's parameters only.
    pub fn generator_loss(&self, a: Tensor<2>, p: Tensor<2>, n: Tensor<2>) -> Tensor<1> {
        let g = self.generator.forward(a.clone(), p.clone(), n.clone());
        let d = &self.discriminator;
        let as_negative = bce(d.forward(a.clone(), p, g.clone()), 1.0);
        let as_positive = bce(d.forward(a, g, n), 1.0);
        as_negative.mul_scalar(0.5) + as_positive.mul_scalar(0.5)
    }
}

/// For each anchor (feature row `anchors[r]`, instance `indices[r]`): the hardest negative among
/// `draws` instances drawn uniformly (with replacement) — the drawn non-member of S_i with the
/// highest aᵀm_j; the anchor itself when every draw is a member. Returns the instance ids
/// (`[b]`, on the bank's device) and their rows (`[b, d]`).
///
/// Everything of size N stays on the device: the scores a Mᵀ, the draws (the device's
/// generator, which the trainer seeds every epoch) and their exclusion by comparison with the
/// padded member ids. The host builds only those ids, O(Σ|S_i|). The authors redraw a member
/// until it is not one; dropping it instead leaves `draws − (members drawn)` candidates, the
/// same distribution over non-members.
pub fn hardest_negatives(
    anchors: Tensor<2>,
    indices: &[usize],
    sets: &PositiveSets,
    memory: &MemoryBank,
    draws: usize,
) -> (Tensor<1, Int>, Tensor<2>) {
    let device = memory.values().device();
    let [n, _] = memory.dims();
    let b = indices.len();
    let draws = draws.max(1);
    let members = Members::of(sets, indices, &device);
    let k = members.ids.dims()[1];
    let candidates = Tensor::<2>::random([b, draws], Distribution::Uniform(0.0, n as f64), &device)
        .int()
        .clamp(0, n as i64 - 1);
    let is_member = candidates
        .clone()
        .unsqueeze_dim::<3>(2)
        .expand([b, draws, k])
        .equal(members.ids.unsqueeze_dim::<3>(1).expand([b, draws, k]))
        .any_dim(2)
        .squeeze_dim::<2>(2);
    let scores = anchors
        .to_device(&device)
        .matmul(memory.values().transpose())
        .gather(1, candidates.clone())
        .mask_fill(is_member, f32::NEG_INFINITY);
    let (best, at) = scores.max_dim_with_indices(1);
    let chosen = candidates.gather(1, at);
    let anchor_ids = Tensor::<2, Int>::from_data(
        TensorData::new(
            indices.iter().map(|&i| i as i64).collect::<Vec<_>>(),
            [b, 1],
        ),
        &device,
    );
    let ids = chosen
        .mask_where(best.equal_elem(f32::NEG_INFINITY), anchor_ids)
        .reshape([b]);
    let rows = memory.values().select(0, ids.clone());
    (ids, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bce_by_hand() {
        let d = Device::flex();
        let p = Tensor::<1>::from_data(TensorData::new(vec![0.8f32, 0.4], [2]), &d);
        let want = -(0.8f32.ln() + 0.4f32.ln()) / 2.0;
        assert!((bce(p.clone(), 1.0).into_scalar::<f32>() - want).abs() < 1e-6);
        let want = -(0.2f32.ln() + 0.6f32.ln()) / 2.0;
        assert!((bce(p, 0.0).into_scalar::<f32>() - want).abs() < 1e-6);
    }

    #[test]
    fn shapes_and_normalised_proxy() {
        let d = Device::flex();
        let gan = GanConfig::new().with_dim(8).init(&d);
        let x = Tensor::<2>::ones([3, 8], &d);
        let g = gan.generator.forward(x.clone(), x.clone(), x.clone());
        assert_eq!(g.dims(), [3, 8]);
        let norms: Vec<f32> = g
            .powi_scalar(2)
            .sum_dim(1)
            .into_data()
            .iter::<f32>()
            .collect();
        assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-5));
        let p: Vec<f32> = gan
            .discriminator
            .forward(x.clone(), x.clone(), x)
            .into_data()
            .iter::<f32>()
            .collect();
        assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    /// With draws far outnumbering the instances every non-member is drawn, so the device
    /// search and the host reference (which redraws members) must pick the same negative.
    #[test]
    fn device_hardest_negatives_equal_the_host_reference() {
        let d = Device::flex();
        d.seed(5);
        let (n, dim) = (40, 6);
        let mut rng = relata_dataset::SeededRng::new(9);
        let values: Vec<f32> = (0..n * dim)
            .map(|_| rng.uniform(-1.0, 1.0) as f32)
            .collect();
        let memory = MemoryBank::from_values(values.clone(), dim, 0.1, 0.5, &d).unwrap();
        let mut sets = PositiveSets::identity(n);
        for _ in 0..60 {
            sets.add_pair(rng.below(n), rng.below(n));
        }
        let batch: Vec<usize> = (0..n).step_by(3).collect();
        let anchors: Vec<f32> = (0..batch.len() * dim)
            .map(|_| rng.uniform(-1.0, 1.0) as f32)
            .collect();
        let a = Tensor::<2>::from_data(TensorData::new(anchors.clone(), [batch.len(), dim]), &d);
        let (ids, _) = hardest_negatives(a, &batch, &sets, &memory, 4096);
        let device: Vec<usize> = ids.into_data().iter::<i64>().map(|i| i as usize).collect();
        let host = crate::host_reference::hardest_negatives(
            &anchors, &batch, &sets, &values, dim, 4096, &mut rng,
        );
        assert_eq!(device, host);
        for (&i, &j) in batch.iter().zip(&device) {
            assert!(!sets.get(i).contains(&j));
        }
    }

    /// The member most similar to the anchor is never picked, the hardest non-member is (with
    /// 256 draws over 4 instances every one is drawn), and an anchor whose set holds everything
    /// gets itself back.
    #[test]
    fn hardest_negative_skips_members() {
        let d = Device::flex();
        d.seed(1);
        let mut sets = PositiveSets::identity(4);
        sets.add_pair(0, 1);
        // Anchor a = (1, 0); memory: 1 is the most similar but a member; 3 beats 2.
        let memory = MemoryBank::from_values(
            vec![1.0, 0.0, 1.0, 0.0, -1.0, 0.0, 0.5, 0.5],
            2,
            0.1,
            0.5,
            &d,
        )
        .unwrap();
        let a = Tensor::<2>::from_data(TensorData::new(vec![1f32, 0.0, 1.0, 0.0], [2, 2]), &d);
        for s in 2..4 {
            sets.add_pair(1, s);
        }
        sets.add_pair(1, 0);
        // Row 0: anchor 0 with S = {0, 1}; row 1: anchor 1, whose set holds all four.
        let (ids, rows) = hardest_negatives(a, &[0, 1], &sets, &memory, 256);
        let ids: Vec<i64> = ids.into_data().iter::<i64>().collect();
        assert_eq!(ids, vec![3, 1]);
        let rows: Vec<f32> = rows.into_data().iter::<f32>().collect();
        assert_eq!(rows, vec![0.5, 0.5, 1.0, 0.0]);
    }
}
