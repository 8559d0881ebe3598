//! Fuzzy ART with complement coding (the paper's "Offline stage", step 2; docs/csrms.md): the
//! default clustering of CSRMS's class-level relation modelling. A small reusable type:
//! [`FuzzyArt`] presents one input at a time; [`fuzzy_art`] scales a feature matrix to [0, 1],
//! complement-codes it and makes the single seeded pass relata reads the paper as describing
//! (docs/csrms.md).
//!
//! For an input x (complement-coded, |x|₁ = D) and cluster weights w_j:
//! - match M_j = |x ∧ w_j|₁ / |x|₁ — the vigilance test M_j ≥ ρ;
//! - choice T_j = |x ∧ w_j|₁ / (α + |w_j|₁) — the winner among clusters passing vigilance,
//!   ties to the later cluster (the authors' `>=`);
//! - winner update w_J ← β(x ∧ w_J) + (1−β)w_J; no winner: a new cluster with w = x.
//!
//! ∧ is the element-wise minimum. The vigilance ρ decides how many clusters there are.

use burn::config::Config;
use rayon::prelude::*;
use relata_dataset::rng::SeededRng;

use crate::error::CsrmsError;

/// Fuzzy ART's three parameters (spec: α = 0.01, β = 0.5, ρ = 0.95).
#[derive(Config, Debug, PartialEq)]
pub struct FuzzyArtConfig {
    /// Choice parameter α (> 0): breaks ties towards smaller (more specific) clusters.
    #[config(default = 0.01)]
    pub alpha: f64,
    /// Learning rate β ∈ (0, 1]: 1 is fast learning (w ← x ∧ w).
    #[config(default = 0.5)]
    pub beta: f64,
    /// Vigilance ρ ∈ [0, 1]: the match a cluster must reach to take an input; higher → more,
    /// tighter clusters.
    #[config(default = 0.95)]
    pub rho: f64,
}

impl FuzzyArtConfig {
    /// Checks the ranges, naming the parameter.
    pub fn check(&self) -> Result<(), CsrmsError> {
        if !(self.alpha > 0.0 && self.alpha.is_finite()) {
            return Err(CsrmsError::Config(format!(
                "art.alpha = {}: the choice parameter must be positive",
                self.alpha
            )));
        }
        if !(self.beta > 0.0 && self.beta <= 1.0) {
            return Err(CsrmsError::Config(format!(
                "art.beta = {}: the learning rate must be in (0, 1]",
                self.beta
            )));
        }
        if !(0.0..=1.0).contains(&self.rho) {
            return Err(CsrmsError::Config(format!(
                "art.rho = {}: the vigilance must be in [0, 1]",
                self.rho
            )));
        }
        Ok(())
    }
}

/// Scales each of the `dim` columns of row-major `data` to [0, 1] by its minimum and maximum
/// over the rows; a constant column becomes 0. Non-finite values are an error.
pub fn min_max_scale(data: &[f32], dim: usize) -> Result<Vec<f32>, CsrmsError> {
    if dim == 0 || data.is_empty() || !data.len().is_multiple_of(dim) {
        return Err(CsrmsError::Input(format!(
            "{} feature values do not form rows of {dim}",
            data.len()
        )));
    }
    if let Some(p) = data.iter().position(|v| !v.is_finite()) {
        return Err(CsrmsError::Input(format!(
            "feature {} of row {} is {}: the backbone produced non-finite features",
            p % dim,
            p / dim,
            data[p]
        )));
    }
    let mut lo = vec![f32::INFINITY; dim];
    let mut hi = vec![f32::NEG_INFINITY; dim];
    for row in data.chunks_exact(dim) {
        for (k, &v) in row.iter().enumerate() {
            lo[k] = lo[k].min(v);
            hi[k] = hi[k].max(v);
        }
    }
    Ok(data
        .chunks_exact(dim)
        .flat_map(|row| {
            row.iter().enumerate().map(|(k, &v)| {
                let span = hi[k] - lo[k];
                if span > 0.0 { (v - lo[k]) / span } else { 0.0 }
            })
        })
        .map(|v: f32| v.clamp(0.0, 1.0))
        .collect::<Vec<_>>())
}

/// Complement coding: `x ∈ [0,1]^D → [x, 1 − x] ∈ [0,1]^{2D}`, whose L1 norm is always D.
pub fn complement_code(x: &[f32]) -> Vec<f32> {
    x.iter().copied().chain(x.iter().map(|v| 1.0 - v)).collect()
}

/// A Fuzzy ART network over complement-coded inputs of length `2·dim`.
#[derive(Debug, Clone)]
pub struct FuzzyArt {
    config: FuzzyArtConfig,
    coded_len: usize,
    /// `J × 2·dim` cluster weights, row-major.
    weights: Vec<f32>,
    /// |w_j|₁, kept alongside the weights.
    weight_norms: Vec<f64>,
    /// Inputs each cluster has taken.
    sizes: Vec<usize>,
}

fn min_norm(x: &[f32], w: &[f32]) -> f64 {
    x.iter().zip(w).map(|(&a, &b)| a.min(b) as f64).sum()
}

/// Whether |x ∧ w|₁ can still reach |x|₁ − `slack`: the mass x loses to w, Σ max(0, xₖ − wₖ),
/// only grows, so the vigilance test is decided as soon as it passes `slack` — for most
/// clusters after a fraction of the values. Each block takes 32 features from both halves of
/// the complement code at once (for a point cluster the two halves together lose |v − u| per
/// feature) and keeps the inner loop vectorised. A pass here is not a match: the caller then
/// computes the overlap exactly.
fn may_match(x: &[f32], w: &[f32], slack: f32) -> bool {
    let half = x.len() / 2;
    let lose = |a: &[f32], b: &[f32]| -> f32 {
        a.iter()
            .zip(b)
            .map(|(&p, &q)| (p - q).max(0.0))
            .sum::<f32>()
    };
    let mut lost = 0f32;
    let mut start = 0;
    while start < half {
        let end = (start + 32).min(half);
        lost += lose(&x[start..end], &w[start..end])
            + lose(&x[half + start..half + end], &w[half + start..half + end]);
        if lost > slack {
            return false;
        }
        start = end;
    }
    // An odd length (not complement-coded) leaves one value.
    lost += lose(&x[2 * half..], &w[2 * half..]);
    lost <= slack
}

/// Clusters at which an input is scored against them in parallel (below, rayon's overhead
/// outweighs the work).
const PARALLEL_CLUSTERS: usize = 64;

/// The better of two (cluster, choice) candidates: the higher choice, ties to the later cluster
/// — the authors' sequential `>=` scan, as an order-free reduction so that a parallel search
/// picks the same winner.
fn better(a: Option<(usize, f64)>, b: Option<(usize, f64)>) -> Option<(usize, f64)> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(p), Some(q)) => Some(if q.1 > p.1 || (q.1 == p.1 && q.0 > p.0) {
            q
        } else {
            p
        }),
    }
}

impl FuzzyArt {
    /// An empty network for inputs of `dim` features (before complement coding).
    pub fn new(config: FuzzyArtConfig, dim: usize) -> Result<Self, CsrmsError> {
        config.check()?;
        if dim == 0 {
            return Err(CsrmsError::Input(
                "Fuzzy ART needs at least one feature".into(),
            ));
        }
        Ok(Self {
            config,
            coded_len: 2 * dim,
            weights: Vec::new(),
            weight_norms: Vec::new(),
            sizes: Vec::new(),
        })
    }

    /// Number of clusters so far.
    pub fn clusters(&self) -> usize {
        self.sizes.len()
    }

    /// Weights of cluster `j` (complement-coded, length `2·dim`).
    pub fn weight(&self, j: usize) -> &[f32] {
        &self.weights[j * self.coded_len..(j + 1) * self.coded_len]
    }

    /// Inputs each cluster has taken.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// Presents one complement-coded input (length `2·dim`, values in [0, 1]); returns the
    /// cluster that took it (a new one when none passes vigilance).
    pub fn present(&mut self, x: &[f32]) -> Result<usize, CsrmsError> {
        if x.len() != self.coded_len {
            return Err(CsrmsError::Input(format!(
                "Fuzzy ART input has {} values, expected {} (complement-coded)",
                x.len(),
                self.coded_len
            )));
        }
        let x_norm: f64 = x.iter().map(|&v| v as f64).sum();
        let FuzzyArtConfig { alpha, beta, rho } = self.config;
        // Among the clusters passing vigilance, the highest choice; ties to the later cluster.
        // What x may lose to a cluster and still pass vigilance, with a margin for the f32 sum
        // in `may_match` (only clusters beyond it are skipped; the rest get the exact test).
        let slack = ((1.0 - rho) * x_norm + 1e-3 * x_norm) as f32;
        let score = |j: usize| -> Option<(usize, f64)> {
            if !may_match(x, self.weight(j), slack) {
                return None;
            }
            let overlap = min_norm(x, self.weight(j));
            let matched = if x_norm > 0.0 { overlap / x_norm } else { 1.0 };
            (matched >= rho).then(|| (j, overlap / (alpha + self.weight_norms[j])))
        };
        let clusters = self.sizes.len();
        let winner = if clusters >= PARALLEL_CLUSTERS {
            (0..clusters)
                .into_par_iter()
                .map(score)
                .reduce(|| None, better)
        } else {
            (0..clusters).map(score).fold(None, better)
        };
        let j = match winner {
            Some((j, _)) => {
                let w = &mut self.weights[j * self.coded_len..(j + 1) * self.coded_len];
                for (wk, &xk) in w.iter_mut().zip(x) {
                    *wk = (beta * xk.min(*wk) as f64 + (1.0 - beta) * *wk as f64) as f32;
                }
                self.weight_norms[j] = w.iter().map(|&v| v as f64).sum();
                self.sizes[j] += 1;
                j
            }
            None => {
                self.weights.extend_from_slice(x);
                self.weight_norms.push(x_norm);
                self.sizes.push(1);
                self.sizes.len() - 1
            }
        };
        Ok(j)
    }
}

/// What one clustering produced (Fuzzy ART or k-means).
#[derive(Debug, Clone, PartialEq)]
pub struct Clustering {
    /// Cluster of each input, in input order; clusters are numbered 0..clusters.
    pub assignments: Vec<usize>,
    /// Number of clusters.
    pub clusters: usize,
}

/// Fuzzy ART over the rows of `features` (`n × dim`): min–max scaling, complement coding, one
/// pass in a random order drawn from `seed` (the same seed gives the same clusters).
pub fn fuzzy_art(
    features: &[f32],
    dim: usize,
    config: &FuzzyArtConfig,
    seed: u64,
) -> Result<Clustering, CsrmsError> {
    let scaled = min_max_scale(features, dim)?;
    let n = scaled.len() / dim;
    let mut art = FuzzyArt::new(config.clone(), dim)?;
    let mut assignments = vec![0usize; n];
    let mut rng = SeededRng::derive(seed, &[0xA27]);
    for i in rng.permutation(n) {
        let coded = complement_code(&scaled[i * dim..(i + 1) * dim]);
        assignments[i] = art.present(&coded)?;
    }
    Ok(Clustering {
        assignments,
        clusters: art.clusters(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
    }

    /// With more clusters than the parallel threshold, the parallel search picks what the
    /// authors' sequential scan (`>=`, ties to the later cluster) picks, input by input.
    #[test]
    fn parallel_search_picks_the_sequential_winner() {
        let mut rng = SeededRng::new(4);
        let dim = 4;
        let config = FuzzyArtConfig::new().with_rho(0.93);
        let mut art = FuzzyArt::new(config.clone(), dim).unwrap();
        // The sequential reference: the released scan over (weights, norms).
        let mut weights: Vec<Vec<f32>> = Vec::new();
        for i in 0..600 {
            // Every third input repeats an earlier one exactly: equal choices, the tie rule.
            let row: Vec<f32> = (0..dim).map(|_| rng.uniform(0.0, 1.0) as f32).collect();
            let x = complement_code(&row);
            let x = if i % 3 == 2 && !weights.is_empty() {
                weights[rng.below(weights.len())].clone()
            } else {
                x
            };
            let x_norm: f64 = x.iter().map(|&v| v as f64).sum();
            let mut winner = None;
            let mut best = -1.0;
            for (j, w) in weights.iter().enumerate() {
                let overlap = min_norm(&x, w);
                if overlap / x_norm >= config.rho {
                    let t = overlap / (config.alpha + w.iter().map(|&v| v as f64).sum::<f64>());
                    if t >= best {
                        best = t;
                        winner = Some(j);
                    }
                }
            }
            let want = match winner {
                Some(j) => {
                    for (wk, &xk) in weights[j].iter_mut().zip(&x) {
                        *wk = (config.beta * xk.min(*wk) as f64 + (1.0 - config.beta) * *wk as f64)
                            as f32;
                    }
                    j
                }
                None => {
                    weights.push(x.clone());
                    weights.len() - 1
                }
            };
            assert_eq!(art.present(&x).unwrap(), want, "input {i}");
        }
        assert!(
            art.clusters() > 2 * PARALLEL_CLUSTERS,
            "{} clusters",
            art.clusters()
        );
    }

    /// Worked by hand with α = 0.01, β = 0.5, ρ = 0.7 on 1-D inputs 0.2, 0.3, 0.9:
    /// - 0.2 → [0.2, 0.8] opens cluster 0;
    /// - 0.3 → [0.3, 0.7]: overlap |[0.2, 0.7]| = 0.9 ≥ 0.7·1 → cluster 0,
    ///   w ← 0.5·[0.2, 0.7] + 0.5·[0.2, 0.8] = [0.2, 0.75];
    /// - 0.9 → [0.9, 0.1]: overlap |[0.2, 0.1]| = 0.3 < 0.7 → new cluster 1.
    #[test]
    fn hand_worked_example() {
        let mut art = FuzzyArt::new(FuzzyArtConfig::new().with_rho(0.7), 1).unwrap();
        assert_eq!(art.present(&complement_code(&[0.2])).unwrap(), 0);
        assert_eq!(art.present(&complement_code(&[0.3])).unwrap(), 0);
        assert!(close(art.weight(0), &[0.2, 0.75]));
        assert_eq!(art.present(&complement_code(&[0.9])).unwrap(), 1);
        assert!(close(art.weight(1), &[0.9, 0.1]));
        assert_eq!(art.sizes(), &[2, 1]);
    }

    /// Two clusters pass vigilance; the choice function picks the one with the larger
    /// |x ∧ w| / (α + |w|). w₀ = [0.1, 0.5] (|w| = 0.6), w₁ = [0.4, 0.5] (|w| = 0.9) —
    /// set up by fast learning (β = 1) — and x = [0.5, 0.5]: T₀ = 0.6/0.61 ≈ 0.984,
    /// T₁ = 0.9/0.91 ≈ 0.989 → cluster 1.
    #[test]
    fn choice_prefers_the_larger_overlap_ratio() {
        let mut art = FuzzyArt::new(FuzzyArtConfig::new().with_rho(0.0).with_beta(1.0), 1).unwrap();
        // Set w₀ and w₁ directly.
        art.weights = vec![0.1, 0.5, 0.4, 0.5];
        art.weight_norms = vec![0.6, 0.9];
        art.sizes = vec![1, 1];
        assert_eq!(art.present(&[0.5, 0.5]).unwrap(), 1);
        // Fast learning: w₁ ← x ∧ w₁ = [0.4, 0.5].
        assert!(close(art.weight(1), &[0.4, 0.5]));
    }

    #[test]
    fn complement_coding_keeps_the_norm() {
        let x = [0.0, 0.25, 0.9, 1.0];
        let c = complement_code(&x);
        assert_eq!(c.len(), 8);
        let norm: f32 = c.iter().sum();
        assert!((norm - 4.0).abs() < 1e-6);
        assert!(c.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn scaling_maps_columns_to_unit_range() {
        let data = [1.0, 5.0, 3.0, 5.0, 2.0, 5.0];
        let s = min_max_scale(&data, 2).unwrap();
        assert!(close(&s, &[0.0, 0.0, 1.0, 0.0, 0.5, 0.0]));
        assert!(min_max_scale(&[1.0, f32::NAN], 2).is_err());
        assert!(min_max_scale(&[1.0, 2.0, 3.0], 2).is_err());
    }

    /// Three tight groups on a line: ρ = 0 puts everything in one cluster, a moderate ρ finds
    /// the three groups, ρ = 1 gives every distinct point its own cluster (repeats share).
    #[test]
    fn vigilance_sets_the_number_of_clusters() {
        let points: Vec<f32> = vec![
            0.0, 0.02, 0.04, 0.5, 0.52, 0.54, 1.0, 0.98, 0.96, 0.0, 0.5, 1.0,
        ];
        let count = |rho: f64| {
            fuzzy_art(&points, 1, &FuzzyArtConfig::new().with_rho(rho), 7)
                .unwrap()
                .clusters
        };
        assert_eq!(count(0.0), 1);
        let mid = fuzzy_art(&points, 1, &FuzzyArtConfig::new().with_rho(0.85), 7).unwrap();
        assert_eq!(mid.clusters, 3);
        // Same group ⇔ same cluster.
        let group = |i: usize| [0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 1, 2][i];
        for a in 0..points.len() {
            for b in 0..points.len() {
                assert_eq!(
                    group(a) == group(b),
                    mid.assignments[a] == mid.assignments[b],
                    "points {a} and {b}"
                );
            }
        }
        assert_eq!(count(1.0), 9);
        let counts: Vec<usize> = [0.0, 0.5, 0.85, 0.95, 0.99, 1.0]
            .iter()
            .map(|&r| count(r))
            .collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    }

    #[test]
    fn same_seed_same_clusters() {
        let data: Vec<f32> = (0..200).map(|i| ((i * 37) % 101) as f32 / 101.0).collect();
        let cfg = FuzzyArtConfig::new().with_rho(0.9);
        let a = fuzzy_art(&data, 2, &cfg, 3).unwrap();
        assert_eq!(a, fuzzy_art(&data, 2, &cfg, 3).unwrap());
        assert_eq!(a.assignments.len(), 100);
        assert!(a.assignments.iter().all(|&j| j < a.clusters));
    }

    #[test]
    fn bad_parameters_are_named() {
        let e = FuzzyArtConfig::new().with_rho(1.5).check().unwrap_err();
        assert!(e.to_string().contains("art.rho"), "{e}");
        let e = FuzzyArtConfig::new().with_beta(0.0).check().unwrap_err();
        assert!(e.to_string().contains("art.beta"), "{e}");
        let mut art = FuzzyArt::new(FuzzyArtConfig::new(), 2).unwrap();
        assert!(art.present(&[0.1, 0.2]).is_err());
    }
}
