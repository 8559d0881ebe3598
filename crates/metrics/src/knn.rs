//! Weighted k-nearest-neighbour classification (ISL / InstDisc protocol).
//!
//! Features are L2-normalised; for each test feature the `k` most cosine-similar training
//! features vote for their class with weight exp(sim / τ); the prediction is the class with the
//! largest total. top-1 = the best class is right; top-5 = the right class is among the five
//! best. Ties rank by index (neighbours by training index, classes by class id). Defaults as in
//! ISL: k = 200, τ = 0.1. Results are percentages.

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Result, invalid, shape};

/// kNN parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnnConfig {
    /// Number of neighbours.
    pub k: usize,
    /// Temperature of the vote weights.
    pub tau: f64,
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self { k: 200, tau: 0.1 }
    }
}

/// kNN accuracies in percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KnnReport {
    /// Top-1 accuracy, percent.
    pub top1: f64,
    /// Top-5 accuracy, percent.
    pub top5: f64,
}

/// A row-major `rows × dim` matrix of features.
#[derive(Debug, Clone, Copy)]
pub struct Features<'a> {
    /// Values, row-major.
    pub data: &'a [f32],
    /// Feature dimension.
    pub dim: usize,
}

impl Features<'_> {
    fn rows(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }
}

pub(crate) fn normalise_rows(data: &[f32], dim: usize) -> Vec<f32> {
    let mut out = data.to_vec();
    for row in out.chunks_exact_mut(dim) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
    }
    out
}

/// Row-major `a (m×d) · bᵀ (n×d)` → `m × n`.
pub(crate) fn matmul_abt(a: &[f32], b: &[f32], m: usize, n: usize, d: usize) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    // Split rows across threads; each block is one sgemm call.
    let rows_per = 256;
    c.par_chunks_mut(rows_per * n)
        .enumerate()
        .for_each(|(blk, out)| {
            let r0 = blk * rows_per;
            let rows = out.len() / n;
            // SAFETY: pointers and strides describe the in-bounds row-major slices above.
            unsafe {
                matrixmultiply::sgemm(
                    rows,
                    d,
                    n,
                    1.0,
                    a[r0 * d..].as_ptr(),
                    d as isize,
                    1,
                    b.as_ptr(),
                    1,
                    d as isize,
                    0.0,
                    out.as_mut_ptr(),
                    n as isize,
                    1,
                );
            }
        });
    c
}

fn check_labels(labels: &[i64], rows: usize, what: &str) -> Result<()> {
    if labels.len() != rows {
        return Err(shape(format!(
            "{rows} {what} features but {} {what} labels",
            labels.len()
        )));
    }
    if labels.iter().any(|&l| l < 0) {
        return Err(invalid(format!(
            "{what} labels must be non-negative class ids"
        )));
    }
    Ok(())
}

/// Weighted kNN top-1/top-5 of `test` against `train`.
pub fn knn_classify(
    train: Features<'_>,
    train_labels: &[i64],
    test: Features<'_>,
    test_labels: &[i64],
    config: KnnConfig,
) -> Result<KnnReport> {
    if train.dim == 0 || train.dim != test.dim {
        return Err(shape(format!(
            "train features have dimension {} but test features {}",
            train.dim, test.dim
        )));
    }
    if !train.data.len().is_multiple_of(train.dim) || !test.data.len().is_multiple_of(test.dim) {
        return Err(shape("feature matrices are not whole rows"));
    }
    let (n, m, d) = (train.rows(), test.rows(), train.dim);
    check_labels(train_labels, n, "train")?;
    check_labels(test_labels, m, "test")?;
    if n == 0 {
        return Err(shape("no training features"));
    }
    if config.k == 0 || config.tau.is_nan() || config.tau <= 0.0 {
        return Err(invalid("kNN needs k ≥ 1 and τ > 0"));
    }
    if train.data.iter().chain(test.data).any(|v| !v.is_finite()) {
        return Err(invalid("features contain NaN or infinity"));
    }
    let classes = train_labels
        .iter()
        .chain(test_labels)
        .copied()
        .max()
        .unwrap_or(0) as usize
        + 1;
    let k = config.k.min(n);
    let tr = normalise_rows(train.data, d);
    let te = normalise_rows(test.data, d);
    // Process test rows in blocks so the similarity block stays bounded in memory.
    let block = (64 * 1024 * 1024 / 4 / n).clamp(1, 4096);
    let mut correct1 = 0usize;
    let mut correct5 = 0usize;
    for start in (0..m).step_by(block) {
        let rows = block.min(m - start);
        let sims = matmul_abt(&te[start * d..(start + rows) * d], &tr, rows, n, d);
        let (c1, c5) = sims
            .par_chunks(n)
            .enumerate()
            .map_init(
                || (Vec::<u32>::with_capacity(n), vec![0f64; classes]),
                |(idx, votes), (r, row)| {
                    idx.clear();
                    idx.extend(0..n as u32);
                    let by = |a: &u32, b: &u32| {
                        row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b))
                    };
                    if k < n {
                        idx.select_nth_unstable_by(k - 1, by);
                    }
                    votes.iter_mut().for_each(|v| *v = 0.0);
                    for &i in &idx[..k] {
                        let w = (row[i as usize] as f64 / config.tau).exp();
                        votes[train_labels[i as usize] as usize] += w;
                    }
                    let truth = test_labels[start + r] as usize;
                    // Rank of the true class: classes with more votes, or equal votes and a
                    // lower id, come first.
                    let t = votes[truth];
                    let above = votes
                        .iter()
                        .enumerate()
                        .filter(|&(c, &v)| v > t || (v == t && c < truth))
                        .count();
                    ((above == 0) as usize, (above < 5) as usize)
                },
            )
            .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        correct1 += c1;
        correct5 += c5;
    }
    let m = m.max(1) as f64;
    Ok(KnnReport {
        top1: 100.0 * correct1 as f64 / m,
        top5: 100.0 * correct5 as f64 / m,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_votes() {
        // 2-D features; train: two of class 0 near (1,0), one of class 1 at (0,1).
        let train = [1.0f32, 0.0, 0.9, 0.1, 0.0, 1.0];
        let tl = [0i64, 0, 1];
        let test = [0.0f32, 1.0, 1.0, 0.05];
        let run = |k, tau| {
            knn_classify(
                Features {
                    data: &train,
                    dim: 2,
                },
                &tl,
                Features {
                    data: &test,
                    dim: 2,
                },
                &[1, 0],
                KnnConfig { k, tau },
            )
            .unwrap()
        };
        let r = run(1, 0.1);
        assert_eq!(r.top1, 100.0);
        assert_eq!(r.top5, 100.0);
        // k = 3 with a large τ: the two class-0 votes outweigh the single class-1 one.
        let r = run(3, 100.0);
        assert_eq!(r.top1, 50.0);
    }

    #[test]
    fn matmul_matches_naive() {
        let (m, n, d) = (300, 7, 5);
        let a: Vec<f32> = (0..m * d).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
        let b: Vec<f32> = (0..n * d).map(|i| ((i * 13) % 7) as f32 - 3.0).collect();
        let c = matmul_abt(&a, &b, m, n, d);
        for i in 0..m {
            for j in 0..n {
                let e: f32 = (0..d).map(|t| a[i * d + t] * b[j * d + t]).sum();
                assert_eq!(c[i * n + j], e);
            }
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        let f = [1.0f32, 0.0];
        let e = knn_classify(
            Features { data: &f, dim: 2 },
            &[0, 1],
            Features { data: &f, dim: 2 },
            &[0],
            KnnConfig::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("train labels"), "{e}");
    }
}
