//! Class-aware graph sampling (the paper's "Offline stage" step 4 and "Training stage";
//! docs/csrms.md):
//! - S_dp: the n positives of P(i) farthest from f_i (intra-class diversity);
//! - S_ap: the m negatives of N(i) closest to f_i (inter-class similarity, mixed clusters);
//! - fallbacks: an empty P(i) draws random same-class samples, an empty N(i) random
//!   other-class samples (seeded), never a crash; a set smaller than n (m) is cycled;
//! - the batch sub-graph G_b: anchors first, then each anchor's n positives (anchor b's at
//!   rows B + b·n …), every anchor wired to its own positives, self loops, and
//!   Â = D^{-1/2}(A + I)D^{-1/2}.
//!
//! Distances are Euclidean on the refresh's features; ties rank by sample index.

use relata_dataset::rng::SeededRng;
use serde::{Deserialize, Serialize};

use crate::error::CsrmsError;
use crate::relation::RelationGraph;

/// Every sample's positives and negatives for one refresh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampledSets {
    /// Positives per anchor.
    pub n: usize,
    /// Negatives per anchor.
    pub m: usize,
    /// `N × n` sample indices, row-major.
    pub positives: Vec<usize>,
    /// `N × m` sample indices, row-major.
    pub negatives: Vec<usize>,
    /// Anchors whose P(i) was empty (random same-class positives instead).
    pub positive_fallbacks: usize,
    /// Anchors whose N(i) was empty (random other-class negatives instead).
    pub negative_fallbacks: usize,
}

impl SampledSets {
    /// The positives of anchor i.
    pub fn positives_of(&self, i: usize) -> &[usize] {
        &self.positives[i * self.n..(i + 1) * self.n]
    }

    /// The negatives of anchor i.
    pub fn negatives_of(&self, i: usize) -> &[usize] {
        &self.negatives[i * self.m..(i + 1) * self.m]
    }
}

fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// `count` items of `ranked`, cycling when it is shorter.
fn take_cycled(ranked: &[usize], count: usize) -> Vec<usize> {
    ranked.iter().copied().cycle().take(count).collect()
}

/// Draws S_dp and S_ap for every sample of `graph` from its `features` (`N × dim`), with `n`
/// positives and `m` negatives each. The fallbacks' random draws come from `seed`.
pub fn sample_sets(
    graph: &RelationGraph,
    features: &[f32],
    dim: usize,
    n: usize,
    m: usize,
    seed: u64,
) -> Result<SampledSets, CsrmsError> {
    let len = graph.len();
    if dim == 0 || features.len() != len * dim {
        return Err(CsrmsError::Input(format!(
            "{} feature values for {len} samples of dimension {dim}",
            features.len()
        )));
    }
    let row = |i: usize| &features[i * dim..(i + 1) * dim];
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); graph.num_classes()];
    for i in 0..len {
        by_class[graph.label(i)].push(i);
    }
    if by_class.iter().filter(|c| !c.is_empty()).count() < 2 {
        return Err(CsrmsError::Input(
            "CSRMS needs samples of at least two classes (negatives are other-class samples)"
                .into(),
        ));
    }
    let mut rng = SeededRng::derive(seed, &[0x5A3]);
    let mut out = SampledSets {
        n,
        m,
        positives: Vec::with_capacity(len * n),
        negatives: Vec::with_capacity(len * m),
        positive_fallbacks: 0,
        negative_fallbacks: 0,
    };
    let ranked = |candidates: Vec<usize>, farthest: bool, anchor: usize| {
        let mut scored: Vec<(f32, usize)> = candidates
            .into_iter()
            .map(|k| (squared_distance(row(anchor), row(k)), k))
            .collect();
        scored.sort_by(|a, b| {
            let by_distance = if farthest {
                b.0.total_cmp(&a.0)
            } else {
                a.0.total_cmp(&b.0)
            };
            by_distance.then(a.1.cmp(&b.1))
        });
        scored.into_iter().map(|(_, k)| k).collect::<Vec<_>>()
    };
    for i in 0..len {
        let c = graph.label(i);
        let positives = graph.positives(i);
        if positives.is_empty() {
            out.positive_fallbacks += 1;
            let pool: Vec<usize> = by_class[c].iter().copied().filter(|&k| k != i).collect();
            out.positives.extend((0..n).map(|_| {
                if pool.is_empty() {
                    i
                } else {
                    pool[rng.below(pool.len())]
                }
            }));
        } else {
            out.positives
                .extend(take_cycled(&ranked(positives, true, i), n));
        }
        let negatives = graph.negatives(i);
        if negatives.is_empty() {
            out.negative_fallbacks += 1;
            let others = len - by_class[c].len();
            out.negatives.extend((0..m).map(|_| {
                // The k-th sample outside class c, k uniform.
                let k = rng.below(others);
                (0..len)
                    .filter(|&s| graph.label(s) != c)
                    .nth(k)
                    .expect("k < number of other-class samples")
            }));
        } else {
            out.negatives
                .extend(take_cycled(&ranked(negatives, false, i), m));
        }
    }
    Ok(out)
}

/// Â of the batch sub-graph G_b (dense, row-major, `B(1+n)` square): node b < B is anchor b,
/// node B + b·n + q its q-th positive; edges anchor ↔ its own positives, plus self loops;
/// symmetric normalisation D^{-1/2}(A + I)D^{-1/2}. Anchors have degree n + 1, positives 2.
pub fn batch_adjacency(anchors: usize, n: usize) -> Vec<f32> {
    let nodes = anchors * (1 + n);
    let mut a = vec![0f32; nodes * nodes];
    for v in 0..nodes {
        a[v * nodes + v] = 1.0;
    }
    for b in 0..anchors {
        for q in 0..n {
            let p = anchors + b * n + q;
            a[b * nodes + p] = 1.0;
            a[p * nodes + b] = 1.0;
        }
    }
    let degree: Vec<f32> = a.chunks_exact(nodes).map(|r| r.iter().sum()).collect();
    for u in 0..nodes {
        for v in 0..nodes {
            a[u * nodes + v] /= (degree[u] * degree[v]).sqrt();
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two classes, two clusters. Class 0 = samples 0..4 in cluster 0, except sample 4 which
    /// sits in cluster 1 with class 1 (samples 5..8). Features are 1-D: the sample index.
    fn setup() -> (RelationGraph, Vec<f32>) {
        let labels = [0, 0, 0, 0, 0, 1, 1, 1, 1];
        let assignments = [0, 0, 0, 0, 1, 1, 1, 1, 1];
        let g = RelationGraph::new(&labels, &assignments, 2).unwrap();
        (g, (0..9).map(|i| i as f32).collect())
    }

    #[test]
    fn positives_are_farthest_same_class_in_dominant_cluster() {
        let (g, f) = setup();
        let s = sample_sets(&g, &f, 1, 2, 2, 1).unwrap();
        // Anchor 0: P = {1, 2, 3}; farthest first → 3, 2.
        assert_eq!(s.positives_of(0), &[3, 2]);
        // Anchor 4 (outside its class's dominant cluster 0): P = {0..4} minus none → 0, 1.
        assert_eq!(s.positives_of(4), &[0, 1]);
        for i in 0..9 {
            for &k in s.positives_of(i) {
                assert_eq!(g.label(k), g.label(i));
                assert_ne!(k, i);
                assert_eq!(Some(g.cluster_of(k)), g.dominant_cluster(g.label(i)));
            }
        }
    }

    #[test]
    fn negatives_are_nearest_other_class_in_own_cluster() {
        let (g, f) = setup();
        let s = sample_sets(&g, &f, 1, 2, 3, 1).unwrap();
        // Anchor 5 (class 1, cluster 1): N = {4}; cycled to fill m = 3.
        assert_eq!(s.negatives_of(5), &[4, 4, 4]);
        // Anchor 4 (class 0, cluster 1): N = {5..8}; nearest first → 5, 6, 7.
        assert_eq!(s.negatives_of(4), &[5, 6, 7]);
        // Anchors 0..4 live in a pure cluster: N(i) empty → random class-1 samples.
        assert_eq!(s.negative_fallbacks, 4);
        for i in 0..9 {
            for &k in s.negatives_of(i) {
                assert_ne!(g.label(k), g.label(i));
            }
        }
    }

    #[test]
    fn fallbacks_never_fail_and_are_seeded() {
        // Class 1 has a single sample in its own cluster: P empty, no other member of its
        // class → the anchor itself.
        let g = RelationGraph::new(&[0, 0, 0, 1], &[0, 0, 0, 1], 2).unwrap();
        let f = [0.0, 1.0, 2.0, 3.0];
        let s = sample_sets(&g, &f, 1, 3, 2, 9).unwrap();
        assert_eq!(s.positives_of(3), &[3, 3, 3]);
        assert_eq!(s.positive_fallbacks, 1);
        assert_eq!(s, sample_sets(&g, &f, 1, 3, 2, 9).unwrap());
        // One class only: a clear error.
        let one = RelationGraph::new(&[0, 0], &[0, 0], 1).unwrap();
        let e = sample_sets(&one, &[0.0, 1.0], 1, 1, 1, 0).unwrap_err();
        assert!(e.to_string().contains("two classes"), "{e}");
    }

    #[test]
    fn adjacency_is_symmetrically_normalised() {
        let (b, n) = (3, 2);
        let a = batch_adjacency(b, n);
        let nodes = b * (1 + n);
        // Symmetric.
        for u in 0..nodes {
            for v in 0..nodes {
                assert_eq!(a[u * nodes + v], a[v * nodes + u]);
            }
        }
        // Anchor self loop 1/(n+1), positive self loop 1/2, edge 1/√(2(n+1)).
        assert!((a[0] - 1.0 / 3.0).abs() < 1e-6);
        let p = b; // anchor 0's first positive
        assert!((a[p * nodes + p] - 0.5).abs() < 1e-6);
        assert!((a[p] - 1.0 / 6f32.sqrt()).abs() < 1e-6);
        // Anchor 1 is wired to its own positives (rows b + n .. b + 2n), not anchor 0's.
        assert_eq!(a[nodes + p], 0.0);
        assert!(a[nodes + b + n] > 0.0);
        // Largest eigenvalue of D^{-1/2}(A+I)D^{-1/2} is 1 with eigenvector D^{1/2}·1.
        let d: Vec<f32> = (0..nodes)
            .map(|v| if v < b { (n + 1) as f32 } else { 2.0 })
            .map(f32::sqrt)
            .collect();
        for u in 0..nodes {
            let av: f32 = (0..nodes).map(|v| a[u * nodes + v] * d[v]).sum();
            assert!((av - d[u]).abs() < 1e-5);
        }
    }
}
