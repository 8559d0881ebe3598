//! k-means (Lloyd's algorithm with k-means++ seeding), deterministic for a seed: the clustering
//! behind ISL's ACC/NMI/ARI report and a building block for CSRMS and HREM's neighbour batches.

use crate::error::{MetricsError, Result};

/// Settings of [`kmeans`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KMeansConfig {
    /// Clusters.
    pub k: usize,
    /// Independent seedings; the one with the lowest inertia wins (scikit-learn: 10 / "auto").
    pub n_init: usize,
    /// Lloyd iterations at most.
    pub max_iter: usize,
    /// Seed.
    pub seed: u64,
}

/// A clustering.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansResult {
    /// Cluster of each point.
    pub labels: Vec<i64>,
    /// `k × dim` centres, row-major.
    pub centres: Vec<f32>,
    /// Sum of squared distances to the assigned centres.
    pub inertia: f64,
}

/// splitmix64: a tiny, portable generator (the metrics crate has no RNG dependency).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn dist2(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum()
}

fn run_once(
    data: &[f32],
    dim: usize,
    k: usize,
    max_iter: usize,
    rng: &mut SplitMix,
) -> KMeansResult {
    let n = data.len() / dim;
    let row = |i: usize| &data[i * dim..(i + 1) * dim];
    // k-means++ seeding.
    let mut centres: Vec<f32> = Vec::with_capacity(k * dim);
    let first = (rng.next() % n as u64) as usize;
    centres.extend_from_slice(row(first));
    let mut closest: Vec<f64> = (0..n).map(|i| dist2(row(i), row(first))).collect();
    for _ in 1..k {
        let total: f64 = closest.iter().sum();
        let pick = if total <= 0.0 {
            (rng.next() % n as u64) as usize
        } else {
            let mut target = rng.unit() * total;
            let mut chosen = n - 1;
            for (i, &d) in closest.iter().enumerate() {
                if target < d {
                    chosen = i;
                    break;
                }
                target -= d;
            }
            chosen
        };
        centres.extend_from_slice(row(pick));
        for (i, c) in closest.iter_mut().enumerate() {
            *c = c.min(dist2(row(i), row(pick)));
        }
    }
    let mut labels = vec![0i64; n];
    let mut inertia = f64::INFINITY;
    for _ in 0..max_iter.max(1) {
        // Assign (ties to the lower cluster index).
        let mut changed = false;
        let mut new_inertia = 0.0;
        for (i, label) in labels.iter_mut().enumerate() {
            let (best, d) = (0..k)
                .map(|c| (c, dist2(row(i), &centres[c * dim..(c + 1) * dim])))
                .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
                .expect("k ≥ 1");
            new_inertia += d;
            if *label != best as i64 {
                *label = best as i64;
                changed = true;
            }
        }
        inertia = new_inertia;
        // Update; an empty cluster keeps its centre.
        let mut sums = vec![0f64; k * dim];
        let mut counts = vec![0usize; k];
        for (i, &label) in labels.iter().enumerate() {
            let c = label as usize;
            counts[c] += 1;
            for (s, &v) in sums[c * dim..(c + 1) * dim].iter_mut().zip(row(i)) {
                *s += f64::from(v);
            }
        }
        for c in 0..k {
            if counts[c] > 0 {
                for d in 0..dim {
                    centres[c * dim + d] = (sums[c * dim + d] / counts[c] as f64) as f32;
                }
            }
        }
        if !changed {
            break;
        }
    }
    KMeansResult {
        labels,
        centres,
        inertia,
    }
}

/// Clusters the rows of `data` (`n × dim`, row-major) into `config.k` clusters.
pub fn kmeans(data: &[f32], dim: usize, config: KMeansConfig) -> Result<KMeansResult> {
    if dim == 0 || data.is_empty() || !data.len().is_multiple_of(dim) {
        return Err(MetricsError::Shape(format!(
            "k-means: {} values do not form rows of {dim}",
            data.len()
        )));
    }
    let n = data.len() / dim;
    if config.k == 0 || config.k > n {
        return Err(MetricsError::Shape(format!(
            "k-means: k = {} for {n} points (need 1 ≤ k ≤ n)",
            config.k
        )));
    }
    if data.iter().any(|v| !v.is_finite()) {
        return Err(MetricsError::Invalid(
            "k-means: non-finite values in the data".into(),
        ));
    }
    let mut rng = SplitMix(config.seed);
    let mut best: Option<KMeansResult> = None;
    for _ in 0..config.n_init.max(1) {
        let r = run_once(data, dim, config.k, config.max_iter, &mut rng);
        if best.as_ref().is_none_or(|b| r.inertia < b.inertia) {
            best = Some(r);
        }
    }
    Ok(best.expect("n_init ≥ 1"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_scores;

    #[test]
    fn separates_well_separated_blobs() {
        // Three blobs of 10 points around (0,0), (10,0), (0,10).
        let mut data = Vec::new();
        let mut truth = Vec::new();
        let mut rng = SplitMix(1);
        for (c, (x, y)) in [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)].iter().enumerate() {
            for _ in 0..10 {
                data.push(x + rng.unit() as f32);
                data.push(y + rng.unit() as f32);
                truth.push(c as i64);
            }
        }
        let cfg = KMeansConfig {
            k: 3,
            n_init: 3,
            max_iter: 100,
            seed: 7,
        };
        let r = kmeans(&data, 2, cfg).unwrap();
        let scores = cluster_scores(&truth, &r.labels).unwrap();
        assert_eq!(scores.acc, 1.0);
        assert!((scores.nmi - 1.0).abs() < 1e-12);
        // Deterministic for a seed.
        assert_eq!(kmeans(&data, 2, cfg).unwrap(), r);
        assert!(kmeans(&data, 2, KMeansConfig { k: 31, ..cfg }).is_err());
        assert!(kmeans(&[f32::NAN, 0.0], 2, KMeansConfig { k: 1, ..cfg }).is_err());
    }
}
