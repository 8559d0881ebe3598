//! Image–text retrieval: R@1/5/10 both ways, median and mean rank, rSum, COCO 5-fold 1K.
//!
//! Input: a row-major similarity matrix of `n_images × (captions_per_image · n_images)`;
//! caption `j` belongs to image `j / captions_per_image` (5 for Flickr30K and COCO).
//! The rank of an item is the number of competitors that beat it, with ties broken by index:
//! a competitor at equal similarity ranks first when its index is lower. This equals a stable
//! descending sort, and it is computed by counting, without sorting.
//!
//! - image → text: the rank of an image's *best* caption among all captions;
//! - text → image: the rank of a caption's image among all images;
//! - R@K: percentage of queries with rank < K; medr = floor(median(rank)) + 1; meanr =
//!   mean(rank) + 1 (as the VSE family's evaluator prints them); rSum = the six recalls summed.

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Result, invalid, shape};

/// Recalls (percent) and ranks for one direction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DirectionRecall {
    /// R@1, percent.
    pub r1: f64,
    /// R@5, percent.
    pub r5: f64,
    /// R@10, percent.
    pub r10: f64,
    /// Median rank (1-based).
    pub medr: f64,
    /// Mean rank (1-based).
    pub meanr: f64,
}

/// Both directions and their sum.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RecallReport {
    /// Image → text.
    pub i2t: DirectionRecall,
    /// Text → image.
    pub t2i: DirectionRecall,
    /// Sum of the six recalls.
    pub rsum: f64,
}

fn direction(ranks: &[u32]) -> DirectionRecall {
    let n = ranks.len().max(1) as f64;
    let pct = |k: u32| 100.0 * ranks.iter().filter(|&&r| r < k).count() as f64 / n;
    let mut sorted = ranks.to_vec();
    sorted.sort_unstable();
    let median = if sorted.is_empty() {
        0.0
    } else if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2] as f64
    } else {
        (sorted[sorted.len() / 2 - 1] as f64 + sorted[sorted.len() / 2] as f64) / 2.0
    };
    DirectionRecall {
        r1: pct(1),
        r5: pct(5),
        r10: pct(10),
        medr: median.floor() + 1.0,
        meanr: ranks.iter().map(|&r| r as f64).sum::<f64>() / n + 1.0,
    }
}

/// Ranks for both directions on an `n_images × (per · n_images)` block.
fn ranks(sims: &[f32], n_images: usize, per: usize) -> (Vec<u32>, Vec<u32>) {
    let n_caps = n_images * per;
    // image → text. The own caption with the highest similarity (lowest index among equals)
    // always has the smallest rank: everything that beats it beats the others too. So one
    // pass per row: captions strictly above it, plus equal ones with a lower index.
    let i2t: Vec<u32> = (0..n_images)
        .into_par_iter()
        .map(|i| {
            let row = &sims[i * n_caps..(i + 1) * n_caps];
            let (mut c, mut target) = (i * per, row[i * per]);
            for o in 1..per {
                if row[i * per + o] > target {
                    (c, target) = (i * per + o, row[i * per + o]);
                }
            }
            let above = row.iter().fold(0u32, |n, &s| n + (s > target) as u32);
            let ties_before = row[..c].iter().fold(0u32, |n, &s| n + (s == target) as u32);
            above + ties_before
        })
        .collect();
    // text → image: for caption j, how many images beat image j / per on column j.
    // Walk rows (cache friendly) and accumulate per caption; `i < own[j]` is the tie rule.
    let targets: Vec<f32> = (0..n_caps).map(|j| sims[(j / per) * n_caps + j]).collect();
    let own: Vec<u32> = (0..n_caps).map(|j| (j / per) as u32).collect();
    let t2i = (0..n_images)
        .into_par_iter()
        .fold(
            || vec![0u32; n_caps],
            |mut acc, i| {
                let row = &sims[i * n_caps..(i + 1) * n_caps];
                let i = i as u32;
                for (((a, &s), &t), &o) in acc.iter_mut().zip(row).zip(&targets).zip(&own) {
                    *a += ((s > t) | ((s == t) & (i < o))) as u32;
                }
                acc
            },
        )
        .reduce(
            || vec![0u32; n_caps],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
                a
            },
        );
    (i2t, t2i)
}

fn check(sims: &[f32], n_images: usize, per: usize) -> Result<()> {
    if per == 0 || n_images == 0 {
        return Err(shape("need at least one image and one caption per image"));
    }
    if sims.len() != n_images * n_images * per {
        return Err(shape(format!(
            "similarity matrix has {} entries, expected {n_images} × {} ({per} captions per image)",
            sims.len(),
            n_images * per
        )));
    }
    if sims.iter().any(|s| s.is_nan()) {
        return Err(invalid("similarity matrix contains NaN"));
    }
    Ok(())
}

/// R@K both ways on the whole matrix.
pub fn recall_at_k(sims: &[f32], n_images: usize, per: usize) -> Result<RecallReport> {
    check(sims, n_images, per)?;
    let (i2t, t2i) = ranks(sims, n_images, per);
    let (i2t, t2i) = (direction(&i2t), direction(&t2i));
    Ok(RecallReport {
        i2t,
        t2i,
        rsum: i2t.r1 + i2t.r5 + i2t.r10 + t2i.r1 + t2i.r5 + t2i.r10,
    })
}

/// COCO 1K protocol: split into `folds` consecutive blocks of `n_images / folds` images (and
/// their captions), evaluate each block alone, and average every number over the folds.
pub fn recall_at_k_folds(
    sims: &[f32],
    n_images: usize,
    per: usize,
    folds: usize,
) -> Result<RecallReport> {
    check(sims, n_images, per)?;
    if folds == 0 || !n_images.is_multiple_of(folds) {
        return Err(shape(format!(
            "{n_images} images do not split into {folds} equal folds"
        )));
    }
    let m = n_images / folds;
    let n_caps = n_images * per;
    let mut sum = [0f64; 11];
    for f in 0..folds {
        let mut block = Vec::with_capacity(m * m * per);
        for i in f * m..(f + 1) * m {
            block
                .extend_from_slice(&sims[i * n_caps + f * m * per..i * n_caps + (f + 1) * m * per]);
        }
        let r = recall_at_k(&block, m, per)?;
        let v = [
            r.i2t.r1,
            r.i2t.r5,
            r.i2t.r10,
            r.i2t.medr,
            r.i2t.meanr,
            r.t2i.r1,
            r.t2i.r5,
            r.t2i.r10,
            r.t2i.medr,
            r.t2i.meanr,
            r.rsum,
        ];
        for (s, x) in sum.iter_mut().zip(v) {
            *s += x;
        }
    }
    let a: Vec<f64> = sum.iter().map(|s| s / folds as f64).collect();
    let d = |o: usize| DirectionRecall {
        r1: a[o],
        r5: a[o + 1],
        r10: a[o + 2],
        medr: a[o + 3],
        meanr: a[o + 4],
    };
    Ok(RecallReport {
        i2t: d(0),
        t2i: d(5),
        rsum: a[10],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_hand_computed() {
        // 2 images, 2 captions each: image i matches captions 2i, 2i+1.
        let sims = [
            0.9, 0.1, 0.5, 0.2, // image 0: best own caption rank 0
            0.3, 0.95, 0.4, 0.1, // image 1: own captions 2 (0.4, rank 1), 3 (0.1, rank 3)
        ];
        let r = recall_at_k(&sims, 2, 2).unwrap();
        assert_eq!(r.i2t.r1, 50.0);
        assert_eq!(r.i2t.r5, 100.0);
        assert_eq!(r.i2t.medr, 1.0); // ranks [0, 1] → median 0.5 → floor + 1
        // t2i: caption 0 → image 0 wins (0.9 vs 0.3): rank 0; caption 1: image 1 has 0.95 >
        // 0.1 → rank 1; caption 2: 0.5 > 0.4 → rank 1; caption 3: 0.2 > 0.1 → rank 1.
        assert_eq!(r.t2i.r1, 25.0);
        assert_eq!(r.t2i.meanr, 1.75);
        assert!((r.rsum - (50.0 + 100.0 + 100.0 + 25.0 + 100.0 + 100.0)).abs() < 1e-9);
    }

    #[test]
    fn ties_rank_by_index() {
        // All similarities equal: image i's first caption has i*per lower-index captions.
        let sims = vec![0.5f32; 3 * 15];
        let r = recall_at_k(&sims, 3, 5).unwrap();
        // i2t ranks [0, 5, 10]; t2i rank of caption j is its image index.
        assert!((r.i2t.r1 - 100.0 / 3.0).abs() < 1e-9);
        assert!((r.i2t.r10 - 200.0 / 3.0).abs() < 1e-9);
        assert!((r.t2i.r1 - 100.0 / 3.0).abs() < 1e-9);
        assert_eq!(r.t2i.r5, 100.0);
    }

    #[test]
    fn folds_average_blocks() {
        let n = 4;
        let mut sims = vec![0f32; n * n * 5];
        for i in 0..n {
            for j in 0..n * 5 {
                sims[i * n * 5 + j] = if j / 5 == i {
                    1.0
                } else {
                    ((i * 31 + j * 7) % 10) as f32 / 20.0
                };
            }
        }
        let f = recall_at_k_folds(&sims, n, 5, 2).unwrap();
        assert_eq!(f.rsum, 600.0);
        assert!(recall_at_k_folds(&sims, n, 5, 3).is_err());
        assert!(recall_at_k(&sims[1..], n, 5).is_err());
    }
}
