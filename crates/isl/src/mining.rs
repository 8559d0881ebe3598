//! Mining positives on the feature manifold (the paper's "Mining positives"; docs/isl.md): for each
//! anchor, the best-scoring of K proxies g = G(a, p, n) (one per freshly drawn hardest negative),
//! its score s = D(a, g, n); only when s > h, the confidence-dependent radius r = R + (1 − s)(1 −
//! R) and, among the top-10 memory entries by cosine with g (the anchor excluded), those with
//! cosine > r join S_i — symmetrically.

use burn::config::Config;
use burn::tensor::{Device, Tensor, TensorData};
use relata_dataset::SeededRng;

use crate::error::IslError;
use crate::gan::{Gan, hardest_negatives};
use crate::memory::{MemoryBank, l2_normalize};
use crate::positives::PositiveSets;

/// Mining hyper-parameters.
#[derive(Config, Debug, PartialEq)]
pub struct MiningConfig {
    /// Score threshold h (0.5 small images, 0.3 ImageNet).
    #[config(default = 0.5)]
    pub threshold: f64,
    /// Base radius R (0.6 small images, 0.3 ImageNet).
    #[config(default = 0.6)]
    pub base_radius: f64,
    /// Neighbours of the proxy considered (10).
    #[config(default = 10)]
    pub neighbours: usize,
    /// Proxies per anchor K (1 in the authors' code); the best-scoring one is used.
    #[config(default = 1)]
    pub proposals: usize,
    /// Random non-members drawn for each hardest negative (4,096).
    #[config(default = 4096)]
    pub negatives: usize,
}

/// The radius for a score: r = R + (1 − s)(1 − R).
pub fn radius(score: f64, base: f64) -> f64 {
    base + (1.0 - score) * (1.0 - base)
}

/// One anchor's mining decision, before it is applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// The anchor instance.
    pub anchor: usize,
    /// D's score of the chosen proxy.
    pub score: f64,
    /// The proxy's highest cosine with a memory entry other than the anchor's: where nothing
    /// is mined although D is confident, this says the proxies lie off the data (the radius r
    /// is above it).
    pub nearest: f64,
    /// Instances that join S_anchor (empty when the score is at most h).
    pub added: Vec<usize>,
}

fn host(t: Tensor<2>) -> Result<Vec<f32>, IslError> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| IslError::Input(format!("reading a tensor: {e:?}")))
}

/// Mines one batch: `features` are the anchors' current embeddings (`[b, d]`, backbone frozen),
/// `indices` their instances. Returns each anchor's proposal; apply them with
/// [`apply_proposals`].
pub fn mine_batch(
    gan: &Gan,
    features: Tensor<2>,
    indices: &[usize],
    sets: &PositiveSets,
    memory: &MemoryBank,
    config: &MiningConfig,
    rng: &mut SeededRng,
) -> Result<Vec<Proposal>, IslError> {
    let device: Device = features.device();
    let [b, dim] = features.dims();
    if b != indices.len() {
        return Err(IslError::Input(format!(
            "{b} features for {} anchors",
            indices.len()
        )));
    }
    let memory_host = memory.to_vec()?;
    let anchors = host(features.clone())?;
    let positives = memory.rows(indices).to_device(&device);
    let mut best: Vec<Option<(f64, Vec<f32>)>> = vec![None; b];
    for _ in 0..config.proposals.max(1) {
        let negatives = hardest_negatives(
            &anchors,
            indices,
            sets,
            &memory_host,
            dim,
            config.negatives,
            rng,
        );
        let n = memory.rows(&negatives).to_device(&device);
        let g = gan
            .generator
            .forward(features.clone(), positives.clone(), n.clone());
        let scores: Vec<f32> = gan
            .discriminator
            .forward(features.clone(), g.clone(), n)
            .into_data()
            .try_into_vec_as::<f32>()
            .map_err(|e| IslError::Input(format!("reading scores: {e:?}")))?;
        let proxies = host(g)?;
        for (row, &s) in scores.iter().enumerate() {
            if best[row].as_ref().is_none_or(|(bs, _)| f64::from(s) > *bs) {
                best[row] = Some((f64::from(s), proxies[row * dim..(row + 1) * dim].to_vec()));
            }
        }
    }
    // Cosine of every chosen proxy with every (normalised) memory entry.
    let chosen: Vec<f32> = best
        .iter()
        .flat_map(|b| b.as_ref().expect("one proposal at least").1.clone())
        .collect();
    let g = Tensor::<2>::from_data(TensorData::new(chosen, [b, dim]), &device);
    let m = l2_normalize(memory.values().to_device(&device));
    let cos = host(g.matmul(m.transpose()))?;
    let n_all = memory.dims()[0];
    Ok(best
        .into_iter()
        .enumerate()
        .map(|(row, b)| {
            let (score, _) = b.expect("one proposal at least");
            let anchor = indices[row];
            let sims = &cos[row * n_all..(row + 1) * n_all];
            // A linear scan: the full ranking below is only needed for accepted anchors.
            let nearest = (0..n_all)
                .filter(|&j| j != anchor)
                .map(|j| sims[j])
                .max_by(f32::total_cmp)
                .map_or(f64::NAN, f64::from);
            let mut added = Vec::new();
            if score > config.threshold {
                let r = radius(score, config.base_radius) as f32;
                let mut order: Vec<usize> = (0..n_all).filter(|&j| j != anchor).collect();
                // Top-k by cosine, ties by index.
                order.sort_by(|&x, &y| sims[y].total_cmp(&sims[x]).then(x.cmp(&y)));
                added = order
                    .into_iter()
                    .take(config.neighbours)
                    .filter(|&j| sims[j] > r)
                    .collect();
            }
            Proposal {
                anchor,
                score,
                nearest,
                added,
            }
        })
        .collect())
}

/// Adds every proposal's pairs to S, symmetrically. Returns the number of new pairs.
pub fn apply_proposals(sets: &mut PositiveSets, proposals: &[Proposal]) -> usize {
    proposals
        .iter()
        .flat_map(|p| p.added.iter().map(move |&j| (p.anchor, j)))
        .filter(|&(i, j)| sets.add_pair(i, j))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radius_shrinks_with_confidence() {
        assert!((radius(1.0, 0.6) - 0.6).abs() < 1e-12);
        assert!((radius(0.5, 0.6) - 0.8).abs() < 1e-12);
        assert!((radius(0.0, 0.6) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn proposals_apply_symmetrically() {
        let mut sets = PositiveSets::identity(3);
        let proposals = vec![
            Proposal {
                anchor: 0,
                score: 0.9,
                nearest: 0.95,
                added: vec![2],
            },
            Proposal {
                anchor: 2,
                score: 0.9,
                nearest: 0.95,
                added: vec![0],
            },
        ];
        assert_eq!(apply_proposals(&mut sets, &proposals), 1);
        assert!(sets.get(0).contains(&2) && sets.get(2).contains(&0));
    }
}
