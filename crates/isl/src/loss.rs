//! ISL's backbone objective (the paper's "Backbone objective"; docs/isl.md): the positive-set
//! likelihood L₁ = −log Σ_{j∈S_i} p_ij (instance discrimination −log p_ii when S_i = {i}) and the
//! hard-positive enhancement L₂ = λ·KL(p_i ‖ softmax(M m_hp / τ)) with the target detached; both
//! averaged over the batch.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::memory::MemoryBank;
use crate::positives::PositiveSets;

/// The anchors' positive sets as gather indices: `ids` `[b, k]` (k = the largest set; a short
/// row is padded with its first member) and `valid` `[b, k]` (1 for a member, 0 for padding).
/// Built in O(Σ|S_i|) on the host — a dense `[b, N]` membership mask would cost 25 MB per step
/// at CIFAR's N = 50,000.
pub struct Members {
    /// Member instance ids.
    pub ids: Tensor<2, Int>,
    /// 1 where `ids` holds a member, 0 where it pads.
    pub valid: Tensor<2>,
}

impl Members {
    /// The sets of `indices` on `device`.
    pub fn of(sets: &PositiveSets, indices: &[usize], device: &Device) -> Self {
        let k = indices
            .iter()
            .map(|&i| sets.get(i).len())
            .max()
            .unwrap_or(1)
            .max(1);
        let b = indices.len();
        let mut ids = Vec::with_capacity(b * k);
        let mut valid = Vec::with_capacity(b * k);
        for &i in indices {
            let members = sets.get(i);
            let first = members.iter().next().copied().unwrap_or(i);
            for &j in members {
                ids.push(j as i64);
                valid.push(1f32);
            }
            for _ in members.len()..k {
                ids.push(first as i64);
                valid.push(0.0);
            }
        }
        Self {
            ids: Tensor::from_data(TensorData::new(ids, [b, k]), device),
            valid: Tensor::from_data(TensorData::new(valid, [b, k]), device),
        }
    }
}

/// L₁ for logits z (`[b, n]`) and the anchors' positive sets: −log Σ_{j∈S_i} softmax(z_i)_j
/// = logsumexp(z_i) − logsumexp_{j∈S_i}(z_ij), averaged over the batch.
pub fn positive_set_loss(logits: Tensor<2>, members: &Members) -> Tensor<1> {
    let log_p = log_softmax(logits, 1).gather(1, members.ids.clone());
    // log Σ_{S} p = logsumexp over the members of log p (padding pushed to −∞).
    let masked = log_p + (members.valid.clone() - 1.0).mul_scalar(1e30);
    let max = masked.clone().max_dim(1);
    let lse = (masked - max.clone()).exp().sum_dim(1).log() + max;
    lse.mean().neg()
}

/// The hard positive of each anchor: the member of S_i∖{i} least similar to m_i in memory
/// (lowest m_jᵀ m_i); for S_i = {i}, i itself (its memory entry, the average of its earlier
/// augmented views).
pub fn hard_positives(
    indices: &[usize],
    sets: &PositiveSets,
    memory: &[f32],
    dim: usize,
) -> Vec<usize> {
    hard_positives_with(indices, sets, |i| &memory[i * dim..(i + 1) * dim])
}

/// [`hard_positives`] reading memory rows through `row` (only the anchors' and their members'
/// rows are needed).
pub fn hard_positives_with<'m>(
    indices: &[usize],
    sets: &PositiveSets,
    row: impl Fn(usize) -> &'m [f32],
) -> Vec<usize> {
    indices
        .iter()
        .map(|&i| {
            let mi = row(i);
            sets.get(i)
                .iter()
                .copied()
                .filter(|&j| j != i)
                .map(|j| {
                    let sim: f32 = row(j).iter().zip(mi).map(|(a, b)| a * b).sum();
                    (j, sim)
                })
                // Least similar; ties to the smaller index.
                .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
                .map_or(i, |(j, _)| j)
        })
        .collect()
}

/// L₂ = λ · mean_i KL(p_i ‖ q_i) with p_i = softmax(z_i) and the constant target
/// q_i = softmax(M m_hp(i) / τ). KL(p‖q) = Σ p (log p − log q): gradients reach the anchor's
/// logits only.
pub fn hard_positive_loss(
    logits: Tensor<2>,
    memory: &MemoryBank,
    hard: &[usize],
    weight: f64,
) -> Tensor<1> {
    let target_logits = memory.logits(memory.rows(hard)).detach();
    let log_q = log_softmax(target_logits.to_device(&logits.device()), 1);
    let log_p = log_softmax(logits.clone(), 1);
    let p = softmax(logits, 1);
    (p * (log_p - log_q)).sum_dim(1).mean().mul_scalar(weight)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        Device::flex()
    }

    fn t2(v: &[f32], shape: [usize; 2], device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v.to_vec(), shape), device)
    }

    /// z = (ln 1, ln 2, ln 3, ln 4): p = (0.1, 0.2, 0.3, 0.4). S = {0}: −ln 0.1; S = {0, 2}:
    /// −ln 0.4.
    #[test]
    fn positive_set_loss_by_hand() {
        let d = device();
        let z: Vec<f32> = [1f32, 2.0, 3.0, 4.0].iter().map(|v| v.ln()).collect();
        let mut sets = PositiveSets::identity(4);
        let single = positive_set_loss(t2(&z, [1, 4], &d), &Members::of(&sets, &[0], &d));
        assert!((single.into_scalar::<f32>() - (-(0.1f32).ln())).abs() < 1e-5);
        sets.add_pair(0, 2);
        let pair = positive_set_loss(t2(&z, [1, 4], &d), &Members::of(&sets, &[0], &d));
        assert!((pair.into_scalar::<f32>() - (-(0.4f32).ln())).abs() < 1e-5);
        // Batch mean, with row 1 (S = {1}) padded to row 0's two members: −ln 0.2, −ln 0.4.
        let both = positive_set_loss(
            t2(&[z.clone(), z].concat(), [2, 4], &d),
            &Members::of(&sets, &[1, 0], &d),
        );
        let want = (-(0.2f32).ln() - (0.4f32).ln()) / 2.0;
        assert!((both.into_scalar::<f32>() - want).abs() < 1e-5);
    }

    /// The gathered L₁ equals the dense-mask form and has its gradient.
    #[test]
    fn gathered_loss_matches_the_dense_mask() {
        let d = device().autodiff();
        let mut sets = PositiveSets::identity(6);
        sets.add_pair(0, 3);
        sets.add_pair(0, 5);
        sets.add_pair(2, 4);
        let batch = [0, 2, 1];
        let z: Vec<f32> = (0..18).map(|v| ((v * 7) % 11) as f32 * 0.3 - 1.0).collect();
        let dense = |z: Tensor<2>| {
            let mask = t2(&sets.mask(&batch), [3, 6], &z.device());
            let log_p = log_softmax(z, 1);
            let masked = log_p + (mask - 1.0).mul_scalar(1e30);
            let max = masked.clone().max_dim(1);
            ((masked - max.clone()).exp().sum_dim(1).log() + max)
                .mean()
                .neg()
        };
        let z1 = t2(&z, [3, 6], &d).require_grad();
        let z2 = t2(&z, [3, 6], &d).require_grad();
        let a = positive_set_loss(z1.clone(), &Members::of(&sets, &batch, &d));
        let b = dense(z2.clone());
        let (va, vb) = (
            a.clone().into_scalar::<f32>(),
            b.clone().into_scalar::<f32>(),
        );
        assert!((va - vb).abs() < 1e-6, "{va} vs {vb}");
        let (ga, gb) = (a.backward(), b.backward());
        let g1: Vec<f32> = z1.grad(&ga).unwrap().into_data().iter::<f32>().collect();
        let g2: Vec<f32> = z2.grad(&gb).unwrap().into_data().iter::<f32>().collect();
        for (x, y) in g1.iter().zip(&g2) {
            assert!((x - y).abs() < 1e-6, "{g1:?} vs {g2:?}");
        }
    }

    #[test]
    fn hard_positive_is_the_least_similar_member() {
        let mut sets = PositiveSets::identity(4);
        sets.add_pair(0, 1);
        sets.add_pair(0, 2);
        // m_0 = (1, 0), m_1 = (0.9, 0.1), m_2 = (0, 1), m_3 = (1, 0).
        let memory = [1.0, 0.0, 0.9, 0.1, 0.0, 1.0, 1.0, 0.0];
        assert_eq!(hard_positives(&[0, 1, 3], &sets, &memory, 2), vec![2, 0, 3]);
    }

    /// KL(p‖q) by hand, and the target gets no gradient: only the anchor's logits do.
    #[test]
    fn hard_positive_loss_by_hand_and_gradient_to_anchor_only() {
        let d = device().autodiff();
        // Memory rows (1, 0) and (0, 1), τ = 1: target for hp = 1 is softmax((0, 1)).
        let bank = MemoryBank::from_values(vec![1.0, 0.0, 0.0, 1.0], 2, 1.0, 0.5, &d).unwrap();
        let z: Tensor<2> = t2(&[0.0, 0.0], [1, 2], &d).require_grad();
        let loss = hard_positive_loss(z.clone(), &bank, &[1], 0.5);
        // p = (½, ½), q = (1, e)/(1 + e): KL = Σ ½ (ln ½ − ln q).
        let e = std::f32::consts::E;
        let (q0, q1) = (1.0 / (1.0 + e), e / (1.0 + e));
        let kl = 0.5 * ((0.5f32 / q0).ln() + (0.5f32 / q1).ln());
        assert!((loss.clone().into_scalar::<f32>() - 0.5 * kl).abs() < 1e-5);
        let grads = loss.backward();
        let g: Vec<f32> = z.grad(&grads).unwrap().into_data().iter::<f32>().collect();
        // ∂KL/∂z = p ⊙ (log p − log q − KL): pushes z towards q (up for class 1).
        assert!(g[1] < 0.0 && g[0] > 0.0, "{g:?}");
    }
}
