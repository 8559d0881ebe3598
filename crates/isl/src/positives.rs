//! The positive sets S_i (the paper's "Backbone and memory bank", "Mining positives"; docs/isl.md):
//! every instance starts as its own only positive; mining adds pairs symmetrically and nothing is
//! removed.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// S_1..S_N.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositiveSets {
    sets: Vec<BTreeSet<usize>>,
}

/// Mined-pair statistics against hidden labels (reporting only).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MiningReport {
    /// Σ_i (|S_i| − 1) / N.
    pub mined_per_instance: f64,
    /// Mined ordered pairs (i, j), i ≠ j.
    pub pairs: usize,
    /// Fraction of those pairs with the same hidden label; `None` when nothing was mined (a
    /// precision of an empty set would read as perfect mining in logs and curves).
    pub precision: Option<f64>,
}

impl PositiveSets {
    /// S_i = {i} for i in 0..n.
    pub fn identity(n: usize) -> Self {
        Self {
            sets: (0..n).map(|i| BTreeSet::from([i])).collect(),
        }
    }

    /// N.
    pub fn len(&self) -> usize {
        self.sets.len()
    }

    /// Whether there are no instances.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// S_i (always contains i).
    pub fn get(&self, i: usize) -> &BTreeSet<usize> {
        &self.sets[i]
    }

    /// Adds j to S_i and i to S_j. Returns whether the pair was new.
    pub fn add_pair(&mut self, i: usize, j: usize) -> bool {
        if i == j {
            return false;
        }
        let new = self.sets[i].insert(j);
        self.sets[j].insert(i);
        new
    }

    /// Σ_i (|S_i| − 1) / N, the quantity the mining quota compares with (round + 1)·0.5.
    pub fn mined_per_instance(&self) -> f64 {
        let extra: usize = self.sets.iter().map(|s| s.len() - 1).sum();
        extra as f64 / self.sets.len().max(1) as f64
    }

    /// Mined pairs and their precision against `labels` (labels never reach training).
    pub fn report(&self, labels: &[usize]) -> MiningReport {
        let mut pairs = 0;
        let mut correct = 0;
        for (i, s) in self.sets.iter().enumerate() {
            for &j in s {
                if j != i {
                    pairs += 1;
                    correct += usize::from(labels[i] == labels[j]);
                }
            }
        }
        MiningReport {
            mined_per_instance: self.mined_per_instance(),
            pairs,
            precision: (pairs > 0).then(|| correct as f64 / pairs as f64),
        }
    }

    /// Row-major `[indices.len(), n]` 0/1 membership mask of the given anchors' sets.
    pub fn mask(&self, indices: &[usize]) -> Vec<f32> {
        let n = self.sets.len();
        let mut m = vec![0f32; indices.len() * n];
        for (row, &i) in indices.iter().enumerate() {
            for &j in &self.sets[i] {
                m[row * n + j] = 1.0;
            }
        }
        m
    }
}

/// The precision a miner would reach by taking each anchor's own `k` nearest memory entries
/// (cosine, the anchor excluded): the share of those neighbours with the anchor's hidden label,
/// over the anchors in `sample`. Beside the mined pairs' precision it says whether the embedding
/// has class structure to mine, and whether the GAN's proxies find more or less of it.
pub fn neighbour_precision(
    memory: &[f32],
    dim: usize,
    labels: &[usize],
    k: usize,
    sample: &[usize],
) -> f64 {
    let n = labels.len();
    let norm = |i: usize| {
        memory[i * dim..(i + 1) * dim]
            .iter()
            .map(|v| v * v)
            .sum::<f32>()
            .sqrt()
            .max(1e-12)
    };
    let norms: Vec<f32> = (0..n).map(norm).collect();
    let (mut hits, mut total) = (0usize, 0usize);
    for &i in sample {
        let a = &memory[i * dim..(i + 1) * dim];
        let mut sims: Vec<(f32, usize)> = (0..n)
            .filter(|&j| j != i)
            .map(|j| {
                let dot: f32 = memory[j * dim..(j + 1) * dim]
                    .iter()
                    .zip(a)
                    .map(|(x, y)| x * y)
                    .sum();
                (dot / norms[j], j)
            })
            .collect();
        let k = k.min(sims.len());
        if k == 0 {
            continue;
        }
        sims.select_nth_unstable_by(k - 1, |x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        hits += sims[..k]
            .iter()
            .filter(|(_, j)| labels[*j] == labels[i])
            .count();
        total += k;
    }
    if total == 0 {
        f64::NAN
    } else {
        hits as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbour_precision_by_hand() {
        // Points on a line in 2-d (cosine after normalising): 0 and 1 point the same way,
        // 2 and 3 the other; labels make 0–1 a match and 2–3 a mismatch.
        let memory = [1.0, 0.0, 0.9, 0.1, 0.0, 1.0, 0.1, 0.9];
        let labels = [0, 0, 1, 2];
        assert_eq!(neighbour_precision(&memory, 2, &labels, 1, &[0, 1]), 1.0);
        assert_eq!(neighbour_precision(&memory, 2, &labels, 1, &[2, 3]), 0.0);
        assert_eq!(
            neighbour_precision(&memory, 2, &labels, 1, &[0, 1, 2, 3]),
            0.5
        );
    }

    #[test]
    fn symmetric_growth_and_report() {
        let mut s = PositiveSets::identity(4);
        assert_eq!(s.mined_per_instance(), 0.0);
        assert!(s.add_pair(0, 1));
        assert!(!s.add_pair(1, 0), "already there (symmetric)");
        assert!(!s.add_pair(2, 2), "an instance is always its own positive");
        assert!(s.add_pair(0, 3));
        assert_eq!(s.get(0).iter().copied().collect::<Vec<_>>(), [0, 1, 3]);
        assert!(s.get(3).contains(&0) && s.get(1).contains(&0));
        // Σ(|S_i| − 1) = 2 + 1 + 0 + 1 = 4 over N = 4.
        assert_eq!(s.mined_per_instance(), 1.0);
        let r = s.report(&[0, 0, 1, 1]);
        assert_eq!(r.pairs, 4);
        // (0,1) and (1,0) are same-label; (0,3) and (3,0) are not.
        assert_eq!(r.precision, Some(0.5));
        assert_eq!(PositiveSets::identity(3).report(&[0, 1, 2]).precision, None);
        assert_eq!(s.mask(&[3]), vec![1.0, 0.0, 0.0, 1.0]);
    }
}
