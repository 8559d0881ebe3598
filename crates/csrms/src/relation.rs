//! The three-level relation graph (the paper's "Offline stage", steps 3–6; docs/csrms.md):
//! instances → patterns (clusters) → classes, held in a `petgraph` graph, and everything the
//! samplers and the smoothing read off it:
//! - n_{j,c}, the count of class c in cluster j (the weight of the edge pattern j → class c);
//! - the dominant cluster m(c) = argmax_j n_{j,c} of each class (ties to the later j, as in
//!   the authors' code); a cluster is *dominant* when one class holds the majority of it and
//!   *mixed* otherwise;
//! - the pair counts R_ID (same class, different dominant clusters), R_IS (different classes,
//!   same dominant cluster) and R_MC (different classes, same mixed cluster);
//! - per sample: positives P(i) (same class inside C_{m(y_i)}, without i), negatives N(i) (other
//!   classes inside i's own cluster) and the difficulty from r = n_{a(i),y_i} / |C_{a(i)}|;
//! - the cluster prototypes w_c and class prototypes p_c of step 6.

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};

use crate::error::CsrmsError;

/// A node of the relation graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationNode {
    /// Training sample i.
    Instance(usize),
    /// Cluster (visual pattern) j.
    Pattern(usize),
    /// Class c.
    Class(usize),
}

/// Whether a cluster has a majority class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterKind {
    /// Class `0` holds more than half of the cluster.
    Dominant(usize),
    /// No class holds the majority.
    Mixed,
}

/// Difficulty of a sample (spec step 5): how pure its own cluster is for its class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Difficulty {
    /// r ≥ ρ₁.
    Easy,
    /// 1 − ρ₁ < r < ρ₁.
    Medium,
    /// r ≤ 1 − ρ₁.
    Hard,
}

impl Difficulty {
    /// 0, 1, 2 (the authors' codes in the final release).
    pub fn index(self) -> usize {
        match self {
            Difficulty::Easy => 0,
            Difficulty::Medium => 1,
            Difficulty::Hard => 2,
        }
    }
}

/// The relation counts reported at every refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RelationCounts {
    /// Clusters.
    pub clusters: usize,
    /// Clusters with a majority class.
    pub dominant_clusters: usize,
    /// Clusters without one.
    pub mixed_clusters: usize,
    /// Pairs of R_ID: same class, in two different dominant clusters.
    pub r_id: u64,
    /// Pairs of R_IS: different classes, in the same dominant cluster.
    pub r_is: u64,
    /// Pairs of R_MC: different classes, in the same mixed cluster.
    pub r_mc: u64,
}

/// The relation graph of one refresh.
#[derive(Debug, Clone)]
pub struct RelationGraph {
    graph: DiGraph<RelationNode, u32>,
    patterns: Vec<NodeIndex>,
    classes: Vec<NodeIndex>,
    labels: Vec<usize>,
    assignments: Vec<usize>,
    /// Members of each cluster, by sample index.
    members: Vec<Vec<usize>>,
    /// n_{j,c}, `J × C` row-major (read off the pattern → class edges).
    counts: Vec<u32>,
    dominant: Vec<Option<usize>>,
    kinds: Vec<ClusterKind>,
}

impl RelationGraph {
    /// Builds the graph from each sample's label and cluster. Clusters are `0..clusters`
    /// (`clusters` = 1 + the largest assignment); classes are `0..classes`.
    pub fn new(
        labels: &[usize],
        assignments: &[usize],
        classes: usize,
    ) -> Result<Self, CsrmsError> {
        if labels.len() != assignments.len() || labels.is_empty() {
            return Err(CsrmsError::Input(format!(
                "{} labels for {} cluster assignments: one each, at least one sample",
                labels.len(),
                assignments.len()
            )));
        }
        if let Some(&bad) = labels.iter().find(|&&l| l >= classes) {
            return Err(CsrmsError::Input(format!(
                "label {bad} but {classes} classes"
            )));
        }
        let clusters = assignments.iter().max().map_or(0, |m| m + 1);
        let mut graph = DiGraph::new();
        let instances: Vec<NodeIndex> = (0..labels.len())
            .map(|i| graph.add_node(RelationNode::Instance(i)))
            .collect();
        let patterns: Vec<NodeIndex> = (0..clusters)
            .map(|j| graph.add_node(RelationNode::Pattern(j)))
            .collect();
        let class_nodes: Vec<NodeIndex> = (0..classes)
            .map(|c| graph.add_node(RelationNode::Class(c)))
            .collect();
        let mut tally = vec![0u32; clusters * classes];
        for (i, (&c, &j)) in labels.iter().zip(assignments).enumerate() {
            graph.add_edge(instances[i], patterns[j], 1);
            tally[j * classes + c] += 1;
        }
        for j in 0..clusters {
            for c in 0..classes {
                let n = tally[j * classes + c];
                if n > 0 {
                    graph.add_edge(patterns[j], class_nodes[c], n);
                }
            }
        }
        // Everything below is read off the graph.
        let mut counts = vec![0u32; clusters * classes];
        let mut members = vec![Vec::new(); clusters];
        for (j, &p) in patterns.iter().enumerate() {
            for e in graph.edges_directed(p, Direction::Outgoing) {
                if let RelationNode::Class(c) = graph[petgraph::visit::EdgeRef::target(&e)] {
                    counts[j * classes + c] = *e.weight();
                }
            }
            for n in graph.neighbors_directed(p, Direction::Incoming) {
                if let RelationNode::Instance(i) = graph[n] {
                    members[j].push(i);
                }
            }
            members[j].sort_unstable();
        }
        let dominant: Vec<Option<usize>> = (0..classes)
            .map(|c| {
                // argmax_j n_{j,c}, ties to the later j.
                (0..clusters).filter(|&j| counts[j * classes + c] > 0).fold(
                    None,
                    |best: Option<usize>, j| match best {
                        Some(b) if counts[b * classes + c] > counts[j * classes + c] => Some(b),
                        _ => Some(j),
                    },
                )
            })
            .collect();
        let kinds = (0..clusters)
            .map(|j| {
                let size = members[j].len() as u32;
                (0..classes)
                    .find(|&c| 2 * counts[j * classes + c] > size)
                    .map_or(ClusterKind::Mixed, ClusterKind::Dominant)
            })
            .collect();
        Ok(Self {
            graph,
            patterns,
            classes: class_nodes,
            labels: labels.to_vec(),
            assignments: assignments.to_vec(),
            members,
            counts,
            dominant,
            kinds,
        })
    }

    /// The petgraph graph (instance → pattern edges of weight 1, pattern → class edges of
    /// weight n_{j,c}).
    pub fn graph(&self) -> &DiGraph<RelationNode, u32> {
        &self.graph
    }

    /// Number of clusters.
    pub fn clusters(&self) -> usize {
        self.patterns.len()
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no samples (never: [`RelationGraph::new`] refuses that).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Label of sample i.
    pub fn label(&self, i: usize) -> usize {
        self.labels[i]
    }

    /// Cluster of sample i, a(i).
    pub fn cluster_of(&self, i: usize) -> usize {
        self.assignments[i]
    }

    /// Samples of cluster j, ascending.
    pub fn members(&self, j: usize) -> &[usize] {
        &self.members[j]
    }

    /// The share of the (non-empty) clusters that hold a single image.
    pub fn singleton_share(&self) -> f64 {
        let sizes = self.members.iter().map(Vec::len).filter(|&n| n > 0);
        let (singles, clusters) = sizes.fold((0, 0), |(s, c), n| (s + usize::from(n == 1), c + 1));
        singles as f64 / clusters.max(1) as f64
    }

    /// n_{j,c}.
    pub fn count(&self, j: usize, c: usize) -> u32 {
        self.counts[j * self.classes.len() + c]
    }

    /// m(c), the cluster holding most of class c (`None` for a class without samples).
    pub fn dominant_cluster(&self, c: usize) -> Option<usize> {
        self.dominant[c]
    }

    /// Dominant or mixed.
    pub fn kind(&self, j: usize) -> ClusterKind {
        self.kinds[j]
    }

    /// R_ID, R_IS and R_MC pair counts and the cluster census.
    pub fn relation_counts(&self) -> RelationCounts {
        let classes = self.classes.len();
        let pairs = |total: u64, parts: &mut dyn Iterator<Item = u64>| {
            (total * total - parts.map(|p| p * p).sum::<u64>()) / 2
        };
        let mut out = RelationCounts {
            clusters: self.clusters(),
            ..Default::default()
        };
        for j in 0..self.clusters() {
            let size = self.members[j].len() as u64;
            let mixed_pairs = pairs(size, &mut (0..classes).map(|c| self.count(j, c) as u64));
            match self.kinds[j] {
                ClusterKind::Dominant(_) => {
                    out.dominant_clusters += 1;
                    out.r_is += mixed_pairs;
                }
                ClusterKind::Mixed => {
                    out.mixed_clusters += 1;
                    out.r_mc += mixed_pairs;
                }
            }
        }
        for c in 0..classes {
            let in_dominant: Vec<u64> = (0..self.clusters())
                .filter(|&j| matches!(self.kinds[j], ClusterKind::Dominant(_)))
                .map(|j| self.count(j, c) as u64)
                .collect();
            let total = in_dominant.iter().sum();
            out.r_id += pairs(total, &mut in_dominant.iter().copied());
        }
        out
    }

    /// P(i): the other samples of i's class inside the class's dominant cluster.
    pub fn positives(&self, i: usize) -> Vec<usize> {
        let c = self.labels[i];
        match self.dominant[c] {
            Some(m) => self.members[m]
                .iter()
                .copied()
                .filter(|&k| k != i && self.labels[k] == c)
                .collect(),
            None => Vec::new(),
        }
    }

    /// N(i): the samples of other classes inside i's own cluster.
    pub fn negatives(&self, i: usize) -> Vec<usize> {
        let c = self.labels[i];
        self.members[self.assignments[i]]
            .iter()
            .copied()
            .filter(|&k| self.labels[k] != c)
            .collect()
    }

    /// Difficulty of sample i with threshold ρ₁.
    pub fn difficulty(&self, i: usize, rho1: f64) -> Difficulty {
        let j = self.assignments[i];
        let r = self.count(j, self.labels[i]) as f64 / self.members[j].len() as f64;
        if r >= rho1 {
            Difficulty::Easy
        } else if r <= 1.0 - rho1 {
            Difficulty::Hard
        } else {
            Difficulty::Medium
        }
    }

    /// Cluster prototypes (`C × dim`): w_c = the mean of class c's features inside C_{m(c)}; a
    /// class without samples gets zeros.
    pub fn cluster_prototypes(&self, features: &[f32], dim: usize) -> Result<Vec<f32>, CsrmsError> {
        self.check_features(features, dim)?;
        let classes = self.classes.len();
        let mut out = vec![0f32; classes * dim];
        for c in 0..classes {
            if let Some(m) = self.dominant[c] {
                let rows: Vec<usize> = self.members[m]
                    .iter()
                    .copied()
                    .filter(|&k| self.labels[k] == c)
                    .collect();
                mean_rows(features, dim, &rows, &mut out[c * dim..(c + 1) * dim]);
            }
        }
        Ok(out)
    }

    /// Class prototypes (`C × dim`): p_c = the mean of class c's features over the clusters
    /// where class c's share n_{j,c}/|C_j| is at least ρ₂; the class mean when no cluster
    /// qualifies.
    pub fn class_prototypes(
        &self,
        features: &[f32],
        dim: usize,
        rho2: f64,
    ) -> Result<Vec<f32>, CsrmsError> {
        self.check_features(features, dim)?;
        let classes = self.classes.len();
        let mut out = vec![0f32; classes * dim];
        for c in 0..classes {
            let qualifies = |j: usize| {
                self.count(j, c) as f64 >= rho2 * self.members[j].len() as f64
                    && self.count(j, c) > 0
            };
            let mut rows: Vec<usize> = (0..self.labels.len())
                .filter(|&k| self.labels[k] == c && qualifies(self.assignments[k]))
                .collect();
            if rows.is_empty() {
                rows = (0..self.labels.len())
                    .filter(|&k| self.labels[k] == c)
                    .collect();
            }
            mean_rows(features, dim, &rows, &mut out[c * dim..(c + 1) * dim]);
        }
        Ok(out)
    }

    fn check_features(&self, features: &[f32], dim: usize) -> Result<(), CsrmsError> {
        if dim == 0 || features.len() != self.labels.len() * dim {
            return Err(CsrmsError::Input(format!(
                "{} feature values for {} samples of dimension {dim}",
                features.len(),
                self.labels.len()
            )));
        }
        Ok(())
    }
}

/// The mean of `rows` of `features` into `out` (unchanged when `rows` is empty).
fn mean_rows(features: &[f32], dim: usize, rows: &[usize], out: &mut [f32]) {
    if rows.is_empty() {
        return;
    }
    let mut acc = vec![0f64; dim];
    for &r in rows {
        for (a, &v) in acc.iter_mut().zip(&features[r * dim..(r + 1) * dim]) {
            *a += v as f64;
        }
    }
    for (o, a) in out.iter_mut().zip(acc) {
        *o = (a / rows.len() as f64) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 9 samples, 3 classes, 3 clusters:
    /// - cluster 0: samples 0, 1, 2 (class 0) and 3 (class 1) → dominant for class 0;
    /// - cluster 1: samples 4, 5 (class 1) and 6 (class 0) → dominant for class 1;
    /// - cluster 2: samples 7 (class 2) and 8 (class 1) → mixed (1 of 2 is no majority).
    fn toy() -> RelationGraph {
        let labels = [0, 0, 0, 1, 1, 1, 0, 2, 1];
        let assignments = [0, 0, 0, 0, 1, 1, 1, 2, 2];
        RelationGraph::new(&labels, &assignments, 3).unwrap()
    }

    /// Clusters 0 (3 images), 1 (1), 7 (1) — 2 to 6 empty: two of the three non-empty
    /// clusters are single images.
    #[test]
    fn singleton_share_counts_clusters_of_one() {
        let g = RelationGraph::new(&[0, 0, 1, 0, 1], &[0, 0, 1, 0, 7], 2).unwrap();
        assert!((g.singleton_share() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(toy().singleton_share(), 0.0);
    }

    #[test]
    fn graph_levels_and_counts() {
        let g = toy();
        // 9 instances + 3 patterns + 3 classes; 9 assignment edges + 6 non-zero n_{j,c}.
        assert_eq!(g.graph().node_count(), 15);
        assert_eq!(g.graph().edge_count(), 9 + 6);
        assert_eq!(g.count(0, 0), 3);
        assert_eq!(g.count(1, 1), 2);
        assert_eq!(g.count(2, 1), 1);
        assert_eq!(g.dominant_cluster(0), Some(0));
        assert_eq!(g.dominant_cluster(1), Some(1));
        assert_eq!(g.dominant_cluster(2), Some(2));
        assert_eq!(g.kind(0), ClusterKind::Dominant(0));
        assert_eq!(g.kind(1), ClusterKind::Dominant(1));
        assert_eq!(g.kind(2), ClusterKind::Mixed);
    }

    /// Counted by hand:
    /// - R_IS: cluster 0 has 3×1 cross-class pairs, cluster 1 has 2×1 → 5;
    /// - R_MC: cluster 2 has 1×1 → 1;
    /// - R_ID: class 0 has 3 samples in cluster 0 and 1 in cluster 1 → 3 pairs; class 1 has 1
    ///   in cluster 0 and 2 in cluster 1 → 2 pairs (its sample in the mixed cluster does not
    ///   count); class 2 lies only in the mixed cluster → 0. Total 5.
    #[test]
    fn relation_pair_counts() {
        let r = toy().relation_counts();
        assert_eq!(
            r,
            RelationCounts {
                clusters: 3,
                dominant_clusters: 2,
                mixed_clusters: 1,
                r_id: 5,
                r_is: 5,
                r_mc: 1,
            }
        );
    }

    #[test]
    fn positive_and_negative_sets() {
        let g = toy();
        // Sample 6 (class 0, in cluster 1): positives are class 0 inside cluster 0.
        assert_eq!(g.positives(6), vec![0, 1, 2]);
        assert_eq!(g.positives(0), vec![1, 2]);
        // Class 2 has one sample: no positives.
        assert!(g.positives(7).is_empty());
        // Negatives: other classes in the sample's own cluster.
        assert_eq!(g.negatives(0), vec![3]);
        assert_eq!(g.negatives(6), vec![4, 5]);
        assert_eq!(g.negatives(8), vec![7]);
        for i in 0..g.len() {
            for k in g.positives(i) {
                assert_eq!(g.label(k), g.label(i));
                assert_eq!(Some(g.cluster_of(k)), g.dominant_cluster(g.label(i)));
            }
            for k in g.negatives(i) {
                assert_ne!(g.label(k), g.label(i));
                assert_eq!(g.cluster_of(k), g.cluster_of(i));
            }
        }
    }

    #[test]
    fn difficulty_levels() {
        let g = toy();
        // r = 3/4 for sample 0: medium at ρ₁ = 0.95, easy at ρ₁ = 0.7.
        assert_eq!(g.difficulty(0, 0.95), Difficulty::Medium);
        assert_eq!(g.difficulty(0, 0.7), Difficulty::Easy);
        // r = 1/4 for sample 3 (class 1 in cluster 0): hard at ρ₁ = 0.75.
        assert_eq!(g.difficulty(3, 0.75), Difficulty::Hard);
        assert_eq!(g.difficulty(3, 0.95), Difficulty::Medium);
        // A pure cluster is easy.
        let pure = RelationGraph::new(&[0, 0, 1], &[0, 0, 1], 2).unwrap();
        assert_eq!(pure.difficulty(0, 0.95), Difficulty::Easy);
    }

    #[test]
    fn prototypes() {
        let g = toy();
        // 1-D features = sample index.
        let f: Vec<f32> = (0..9).map(|i| i as f32).collect();
        let w = g.cluster_prototypes(&f, 1).unwrap();
        // Class 0 in cluster 0: samples 0, 1, 2 → 1; class 1 in cluster 1: 4, 5 → 4.5;
        // class 2 in cluster 2: 7.
        assert_eq!(w, vec![1.0, 4.5, 7.0]);
        // ρ₂ = 0.65: class 0's share is 3/4 in cluster 0 (qualifies) and 1/3 in cluster 1 → 1;
        // class 1: 2/3 in cluster 1 → 4.5; class 2: 1/2 in cluster 2 (no) → class mean 7.
        let p = g.class_prototypes(&f, 1, 0.65).unwrap();
        assert_eq!(p, vec![1.0, 4.5, 7.0]);
        // ρ₂ = 0.8: no cluster qualifies for class 0 → its mean (0+1+2+6)/4.
        let p = g.class_prototypes(&f, 1, 0.8).unwrap();
        assert_eq!(p[0], 2.25);
        assert!(g.cluster_prototypes(&f[..5], 1).is_err());
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(RelationGraph::new(&[0, 1], &[0], 2).is_err());
        assert!(RelationGraph::new(&[0, 3], &[0, 0], 2).is_err());
        assert!(RelationGraph::new(&[], &[], 2).is_err());
    }
}
