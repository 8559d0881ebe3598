//! Clustering quality: ACC (best one-to-one cluster→class map, Hungarian assignment), NMI
//! (arithmetic normalisation, scikit-learn's default) and ARI (scikit-learn's formula).
//! Labels are arbitrary integer ids on both sides; all three are fractions in [0, 1]
//! (ARI may be negative).

use std::collections::HashMap;

use pathfinding::prelude::{Matrix, kuhn_munkres};
use serde::Serialize;

use crate::error::{Result, shape};

/// Clustering scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClusterReport {
    /// Accuracy under the best one-to-one mapping of clusters to classes.
    pub acc: f64,
    /// Normalised mutual information (arithmetic mean of entropies).
    pub nmi: f64,
    /// Adjusted Rand index.
    pub ari: f64,
}

fn dense_ids(labels: &[i64]) -> (Vec<usize>, usize) {
    let mut map = HashMap::new();
    let mut sorted: Vec<i64> = labels.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    for (i, v) in sorted.iter().enumerate() {
        map.insert(*v, i);
    }
    (labels.iter().map(|v| map[v]).collect(), sorted.len())
}

/// Contingency table `[true][pred]`.
fn contingency(t: &[usize], nt: usize, p: &[usize], np: usize) -> Vec<Vec<u64>> {
    let mut c = vec![vec![0u64; np]; nt];
    for (&a, &b) in t.iter().zip(p) {
        c[a][b] += 1;
    }
    c
}

/// ACC, NMI and ARI of predicted clusters against true classes.
pub fn cluster_scores(labels_true: &[i64], labels_pred: &[i64]) -> Result<ClusterReport> {
    if labels_true.len() != labels_pred.len() {
        return Err(shape(format!(
            "{} true labels but {} predicted labels",
            labels_true.len(),
            labels_pred.len()
        )));
    }
    if labels_true.is_empty() {
        return Err(shape("no labels"));
    }
    let n = labels_true.len();
    let (t, nt) = dense_ids(labels_true);
    let (p, np) = dense_ids(labels_pred);
    let c = contingency(&t, nt, &p, np);
    Ok(ClusterReport {
        acc: accuracy(&c, nt, np, n),
        nmi: nmi(&c, nt, np, n),
        ari: ari(&c, n),
    })
}

fn accuracy(c: &[Vec<u64>], nt: usize, np: usize, n: usize) -> f64 {
    // Square weight matrix rows = clusters, columns = classes (padded with zeros).
    let size = nt.max(np);
    let mut w = Matrix::new(size, size, 0i64);
    for (ti, row) in c.iter().enumerate() {
        for (pi, &v) in row.iter().enumerate() {
            w[(pi, ti)] = v as i64;
        }
    }
    let (total, _) = kuhn_munkres(&w);
    total as f64 / n as f64
}

fn entropy(counts: impl Iterator<Item = u64>, n: f64) -> f64 {
    counts
        .filter(|&c| c > 0)
        .map(|c| {
            let p = c as f64 / n;
            -p * p.ln()
        })
        .sum()
}

fn nmi(c: &[Vec<u64>], nt: usize, np: usize, n: usize) -> f64 {
    if (nt == 1 && np == 1) || (nt == 0 && np == 0) {
        return 1.0; // scikit-learn: identical trivial labelings
    }
    let n = n as f64;
    let rows: Vec<u64> = c.iter().map(|r| r.iter().sum()).collect();
    let cols: Vec<u64> = (0..np).map(|j| c.iter().map(|r| r[j]).sum()).collect();
    let mut mi = 0.0;
    for (i, row) in c.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            if v > 0 {
                let v = v as f64;
                mi += v / n * ((v * n) / (rows[i] as f64 * cols[j] as f64)).ln();
            }
        }
    }
    let ht = entropy(rows.into_iter(), n);
    let hp = entropy(cols.into_iter(), n);
    // As scikit-learn: MI clipped at 0; MI = 0 is no match (the trivial case is above).
    if mi <= 0.0 {
        return 0.0;
    }
    mi / ((ht + hp) / 2.0).max(f64::EPSILON)
}

fn ari(c: &[Vec<u64>], n: usize) -> f64 {
    // scikit-learn's pair-confusion form.
    let n = n as i128;
    let rows: Vec<i128> = c.iter().map(|r| r.iter().sum::<u64>() as i128).collect();
    let np = c.first().map_or(0, |r| r.len());
    let cols: Vec<i128> = (0..np)
        .map(|j| c.iter().map(|r| r[j] as i128).sum())
        .collect();
    let sum_sq: i128 = c.iter().flatten().map(|&v| (v as i128) * (v as i128)).sum();
    let tp = sum_sq - n;
    let fp: i128 = c
        .iter()
        .map(|r| {
            r.iter()
                .zip(&cols)
                .map(|(&v, &k)| v as i128 * k)
                .sum::<i128>()
        })
        .sum::<i128>()
        - sum_sq;
    let fneg: i128 = (0..np)
        .map(|j| {
            c.iter()
                .zip(&rows)
                .map(|(r, &k)| r[j] as i128 * k)
                .sum::<i128>()
        })
        .sum::<i128>()
        - sum_sq;
    let tn = n * n - fp - fneg - sum_sq;
    if fneg == 0 && fp == 0 {
        return 1.0;
    }
    let (tp, tn, fp, fneg) = (tp as f64, tn as f64, fp as f64, fneg as f64);
    2.0 * (tp * tn - fneg * fp) / ((tp + fneg) * (fneg + tn) + (tp + fp) * (fp + tn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permuted_perfect_clustering() {
        let t = [0, 0, 1, 1, 2, 2];
        let p = [5, 5, 3, 3, 9, 9];
        let r = cluster_scores(&t, &p).unwrap();
        assert!((r.acc - 1.0).abs() < 1e-12);
        assert!((r.nmi - 1.0).abs() < 1e-12);
        assert!((r.ari - 1.0).abs() < 1e-12);
    }

    #[test]
    fn hand_computed_example() {
        // sklearn: adjusted_rand_score([0,0,1,1],[0,0,1,2]) = 0.5714285714285715
        //          normalized_mutual_info_score(...) = 0.8
        let r = cluster_scores(&[0, 0, 1, 1], &[0, 0, 1, 2]).unwrap();
        assert!((r.ari - 0.571_428_571_428_571_5).abs() < 1e-12, "{}", r.ari);
        assert!((r.nmi - 0.8).abs() < 1e-12, "{}", r.nmi);
        assert!((r.acc - 0.75).abs() < 1e-12);
        let r = cluster_scores(&[1, 1, 1], &[1, 1, 1]).unwrap();
        assert_eq!((r.acc, r.nmi, r.ari), (1.0, 1.0, 1.0));
        assert!(cluster_scores(&[1], &[1, 2]).is_err());
    }
}
