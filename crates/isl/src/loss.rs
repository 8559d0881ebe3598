//! ISL's backbone objective (the paper's "Backbone objective"; docs/isl.md): the positive-set
//! likelihood L₁ = −log Σ_{j∈S_i} p_ij (instance discrimination −log p_ii when S_i = {i}) and the
//! hard-positive enhancement L₂ = λ·KL(p_i ‖ softmax(M m_hp / τ)) with the target detached; both
//! averaged over the batch.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Tensor, TensorData};

use crate::memory::MemoryBank;
use crate::positives::PositiveSets;

/// L₁ for logits z (`[b, n]`) and the 0/1 membership mask of the anchors' positive sets
/// (`[b, n]`): −log Σ_{j∈S_i} softmax(z_i)_j = logsumexp(z_i) − logsumexp_{j∈S_i}(z_ij).
pub fn positive_set_loss(logits: Tensor<2>, mask: Tensor<2>) -> Tensor<1> {
    let log_p = log_softmax(logits, 1);
    // log Σ_{S} p = logsumexp over the members of log p (non-members pushed to −∞).
    let masked = log_p.clone() + (mask.clone() - 1.0).mul_scalar(1e30);
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

/// The membership mask of `indices`' sets as a tensor.
pub fn mask_tensor(sets: &PositiveSets, indices: &[usize], device: &Device) -> Tensor<2> {
    Tensor::from_data(
        TensorData::new(sets.mask(indices), [indices.len(), sets.len()]),
        device,
    )
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
        let single = positive_set_loss(t2(&z, [1, 4], &d), t2(&[1.0, 0.0, 0.0, 0.0], [1, 4], &d));
        assert!((single.into_scalar::<f32>() - (-(0.1f32).ln())).abs() < 1e-5);
        let pair = positive_set_loss(t2(&z, [1, 4], &d), t2(&[1.0, 0.0, 1.0, 0.0], [1, 4], &d));
        assert!((pair.into_scalar::<f32>() - (-(0.4f32).ln())).abs() < 1e-5);
        // Batch mean.
        let both = positive_set_loss(
            t2(&[z.clone(), z].concat(), [2, 4], &d),
            t2(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0], [2, 4], &d),
        );
        let want = (-(0.1f32).ln() - (0.4f32).ln()) / 2.0;
        assert!((both.into_scalar::<f32>() - want).abs() < 1e-5);
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
