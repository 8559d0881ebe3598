//! Mining positives on the feature manifold (the paper's "Mining positives"; docs/isl.md): for each
//! anchor, the best-scoring of K proxies g = G(a, p, n) (one per freshly drawn hardest negative),
//! its score s = D(a, g, n); only when s > h, the confidence-dependent radius r = R + (1 − s)(1 −
//! R) and, among the top-10 memory entries by cosine with g (the anchor excluded), those with
//! cosine > r join S_i — symmetrically.

use burn::config::Config;
use burn::tensor::{Device, Tensor};

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

/// Mines one batch: `features` are the anchors' current embeddings (`[b, d]`, backbone frozen),
/// `indices` their instances. Returns each anchor's proposal; apply them with
/// [`apply_proposals`].
///
/// The N-sized work stays on the device ([`proxy_neighbours`]: the hardest negatives, the
/// proxies' cosines with the whole bank and their top-(k+1)); the host reads back b scores and
/// b·(k+1) neighbours and decides ([`decide`]), so a mining batch costs O(b·k) on the host at
/// any N.
pub fn mine_batch(
    gan: &Gan,
    features: Tensor<2>,
    indices: &[usize],
    sets: &PositiveSets,
    memory: &MemoryBank,
    config: &MiningConfig,
) -> Result<Vec<Proposal>, IslError> {
    let found = proxy_neighbours(gan, features, indices, sets, memory, config)?;
    Ok(decide(&found, indices, config))
}

/// What the device hands the host for one mining batch: each anchor's best proxy score and
/// the top `take` memory entries by cosine with that proxy (row-major `[b, take]`).
#[doc(hidden)] // public for the host-work benchmark
pub struct ProxyNeighbours {
    /// D's score of each anchor's chosen proxy.
    pub scores: Vec<f32>,
    /// Cosines, best first.
    pub cosines: Vec<f32>,
    /// Their instance ids.
    pub ids: Vec<i64>,
    /// Entries per anchor (k + 1, at most N).
    pub take: usize,
}

/// The device side of [`mine_batch`].
#[doc(hidden)] // public for the host-work benchmark
pub fn proxy_neighbours(
    gan: &Gan,
    features: Tensor<2>,
    indices: &[usize],
    sets: &PositiveSets,
    memory: &MemoryBank,
    config: &MiningConfig,
) -> Result<ProxyNeighbours, IslError> {
    let [b, dim] = features.dims();
    if b != indices.len() {
        return Err(IslError::Input(format!(
            "{b} features for {} anchors",
            indices.len()
        )));
    }
    let device: Device = memory.values().device();
    let features = features.to_device(&device);
    let positives = memory.rows(indices);
    // The best-scoring of `proposals` proxies per anchor, chosen on the device.
    let mut best: Option<(Tensor<2>, Tensor<2>)> = None;
    for _ in 0..config.proposals.max(1) {
        let (_, n) = hardest_negatives(features.clone(), indices, sets, memory, config.negatives);
        let g = gan
            .generator
            .forward(features.clone(), positives.clone(), n.clone());
        let s = gan
            .discriminator
            .forward(features.clone(), g.clone(), n)
            .reshape([b, 1]);
        best = Some(match best {
            None => (s, g),
            Some((bs, bg)) => {
                let better = s.clone().greater(bs.clone());
                (
                    bs.mask_where(better.clone(), s),
                    bg.mask_where(better.expand([b, dim]), g),
                )
            }
        });
    }
    let (scores, proxies) = best.expect("one proposal at least");
    neighbours_of(scores, proxies, memory, config.neighbours)
}

/// Each proxy's top `neighbours + 1` memory entries by cosine (the bank normalised), with its
/// score, read back for [`decide`]: one more than k, so that k remain once the anchor's own
/// entry is dropped.
#[doc(hidden)] // public for the parity test with fixed proxies
pub fn neighbours_of(
    scores: Tensor<2>,
    proxies: Tensor<2>,
    memory: &MemoryBank,
    neighbours: usize,
) -> Result<ProxyNeighbours, IslError> {
    let take = (neighbours + 1).min(memory.dims()[0]);
    let cos = proxies.matmul(l2_normalize(memory.values()).transpose());
    let (top, at) = cos.topk_with_indices(take, 1);
    Ok(ProxyNeighbours {
        scores: host(scores)?,
        cosines: host(top)?,
        ids: at
            .into_data()
            .try_into_vec_as::<i64>()
            .map_err(|e| IslError::Input(format!("reading neighbours: {e:?}")))?,
        take,
    })
}

/// The host side of [`mine_batch`]: per anchor, drop its own entry, keep the top k; when the
/// score beats h, those with cosine above the radius join S_i.
#[doc(hidden)] // public for the host-work benchmark
pub fn decide(found: &ProxyNeighbours, indices: &[usize], config: &MiningConfig) -> Vec<Proposal> {
    let take = found.take;
    indices
        .iter()
        .enumerate()
        .map(|(row, &anchor)| {
            let score = f64::from(found.scores[row]);
            let neighbours: Vec<(usize, f32)> = (row * take..(row + 1) * take)
                .map(|c| (found.ids[c] as usize, found.cosines[c]))
                .filter(|&(j, _)| j != anchor)
                .take(config.neighbours)
                .collect();
            let nearest = neighbours.first().map_or(f64::NAN, |&(_, c)| f64::from(c));
            let added = if score > config.threshold {
                let r = radius(score, config.base_radius) as f32;
                neighbours
                    .iter()
                    .filter(|&&(_, c)| c > r)
                    .map(|&(j, _)| j)
                    .collect()
            } else {
                Vec::new()
            };
            Proposal {
                anchor,
                score,
                nearest,
                added,
            }
        })
        .collect()
}

fn host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, IslError> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| IslError::Input(format!("reading a tensor: {e:?}")))
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
