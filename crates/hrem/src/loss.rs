//! HREM's losses (the paper's "Losses"; docs/hrem.md):
//! - L_tri with margin 0.2 in both directions, summed over pairs: negatives by distance-weighted
//!   sampling (the released code's default) or the hardest negative (VSE++, the paper's);
//! - L_reg = KL(softmax(S_{I→T}) ‖ softmax(G)) + KL(softmax(S_{T→I}) ‖ softmax(Gᵀ)), row-wise,
//!   averaged over rows, G = exp(−‖v_i − u_j‖/σ) detached (the gradient reaches the relevance);
//! - L = L_tri(v,u) + L_tri(v̄,ū) + L_tri(v̄,u) + L_tri(v,ū) + 10·L_reg after the warm-up,
//!   L_tri(v,u) alone before (assembled in `train.rs`).
//!
//! Distance-weighted sampling (Wu et al., "Sampling Matters", ICCV 2017) as the authors code it:
//! dist = √(2 − 2s) clamped at ≥ 0.5; log w = (2 − n)·log dist − ((n − 3)/2)·log(1 − dist²/4)
//! (non-finite → 0); only negatives with dist < cutoff; weights max-shifted, exponentiated and
//! normalised per anchor; one negative drawn per positive pair. An anchor without an eligible
//! negative contributes nothing.
//!
//! The released code computes these weights in float32 and shifts them by the maximum over the
//! whole row — positives (log weight 0) and negatives past the cutoff included. A negative far
//! past the cutoff (log weight in the hundreds) can then push every eligible weight of its row
//! below float32's range: the row is all zeros, `torch.multinomial` raises, and the code scores
//! the whole direction of the batch as zero. [`Negatives::DistanceWeightedReleased`] reproduces
//! that arithmetic for comparisons with the authors' code; the default keeps each anchor's own
//! eligible negatives (docs/hrem.md, "Design choices").

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Int, Tensor, TensorData};

use crate::config::Negatives;
use crate::relation::distance_kernel;

/// (anchor row, positive column, negative column) triples for one direction.
pub type Triples = Vec<(usize, usize, usize)>;

/// The distance-weighted log weight of a negative at similarity `s`.
pub fn distance_log_weight(s: f32, n: usize) -> f64 {
    let dist = ((2.0 - 2.0 * s as f64).max(0.0)).sqrt().max(0.5);
    let n = n as f64;
    let w = (2.0 - n) * dist.ln() - ((n - 3.0) / 2.0) * (1.0 - dist * dist / 4.0).ln();
    if w.is_finite() { w } else { 0.0 }
}

/// Draws one negative per positive pair of every anchor row of `sims` (`rows × cols`,
/// row-major; `positive[r·cols + c]` marks pairs of the same image). `uniform` gives the draws'
/// numbers in [0, 1), one per positive pair of an anchor with an eligible negative, anchors in
/// order, positives in column order.
pub fn distance_weighted_triples(
    sims: &[f32],
    positive: &[bool],
    rows: usize,
    cols: usize,
    n: usize,
    cutoff: f64,
    uniform: &mut dyn FnMut() -> f64,
) -> Triples {
    let mut out = Vec::new();
    for a in 0..rows {
        let row = &sims[a * cols..(a + 1) * cols];
        let pos = &positive[a * cols..(a + 1) * cols];
        let eligible: Vec<(usize, f64)> = (0..cols)
            .filter(|&c| !pos[c])
            .filter(|&c| {
                let dist = ((2.0 - 2.0 * row[c] as f64).max(0.0)).sqrt().max(0.5);
                dist < cutoff
            })
            .map(|c| (c, distance_log_weight(row[c], n)))
            .collect();
        if eligible.is_empty() {
            continue;
        }
        let top = eligible
            .iter()
            .map(|e| e.1)
            .fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = eligible.iter().map(|e| (e.1 - top).exp()).collect();
        let total: f64 = weights.iter().sum();
        let columns: Vec<usize> = eligible.iter().map(|e| e.0).collect();
        for p in (0..cols).filter(|&c| pos[c]) {
            out.push((a, p, inverse_cdf(&columns, &weights, total, uniform())));
        }
    }
    out
}

/// The column whose share of `total` holds `u·total` (weights in column order; the last
/// column with a weight when rounding runs past the end).
fn inverse_cdf(columns: &[usize], weights: &[f64], total: f64, u: f64) -> usize {
    let mut x = u * total;
    let mut pick = None;
    for (&c, &w) in columns.iter().zip(weights) {
        if w > 0.0 {
            pick = Some(c);
            if x < w {
                return c;
            }
        }
        x -= w;
    }
    pick.unwrap_or(columns[columns.len() - 1])
}

/// The released code's float32 sampling weights of one anchor row, normalised: log weights of
/// every column (positives and non-finite values at 0), shifted by the row's maximum,
/// exponentiated, kept for negatives closer than `cutoff` only, divided by their sum + 1e-20.
pub fn released_weights(row: &[f32], positive: &[bool], n: usize, cutoff: f64) -> Vec<f32> {
    let d = n as f32;
    // torch's clamp keeps NaN (a similarity above 1), and NaN < cutoff is false.
    let dist = |s: f32| {
        let x = (2.0f32 - 2.0 * s).sqrt();
        if x.is_nan() { x } else { x.max(0.5) }
    };
    let log_weights: Vec<f32> = row
        .iter()
        .zip(positive)
        .map(|(&s, &p)| {
            let x = dist(s);
            let w = (2.0 - d) * x.ln() - ((d - 3.0) / 2.0) * (1.0 - 0.25 * (x * x)).ln();
            if p || !w.is_finite() { 0.0 } else { w }
        })
        .collect();
    let top = log_weights.iter().fold(f32::NEG_INFINITY, |m, &w| m.max(w));
    let weights: Vec<f32> = log_weights
        .iter()
        .zip(row)
        .zip(positive)
        .map(|((&w, &s), &p)| {
            if !p && dist(s) < cutoff as f32 {
                (w - top).exp()
            } else {
                0.0
            }
        })
        .collect();
    let total = weights.iter().sum::<f32>() + 1e-20;
    weights.iter().map(|w| w / total).collect()
}

/// Distance-weighted draws with the released code's float32 weights ([`released_weights`]).
/// `None` when some anchor's weights are all zero: the released code then scores the whole
/// direction as zero, and draws nothing.
pub fn released_distance_weighted_triples(
    sims: &[f32],
    positive: &[bool],
    rows: usize,
    cols: usize,
    n: usize,
    cutoff: f64,
    uniform: &mut dyn FnMut() -> f64,
) -> Option<Triples> {
    let weights: Vec<Vec<f64>> = (0..rows)
        .map(|a| {
            let range = a * cols..(a + 1) * cols;
            released_weights(&sims[range.clone()], &positive[range], n, cutoff)
                .into_iter()
                .map(f64::from)
                .collect()
        })
        .collect();
    // Every row is drawn from (the code passes one weight row per positive pair), so one row
    // without weight fails the whole draw.
    if weights.iter().any(|w| w.iter().sum::<f64>() <= 0.0) {
        return None;
    }
    let columns: Vec<usize> = (0..cols).collect();
    let mut out = Vec::new();
    for (a, w) in weights.iter().enumerate() {
        let total: f64 = w.iter().sum();
        for p in (0..cols).filter(|&c| positive[a * cols + c]) {
            out.push((a, p, inverse_cdf(&columns, w, total, uniform())));
        }
    }
    Some(out)
}

/// For each anchor row, its own column as the positive (row a ↔ column a) and the hardest
/// column that is not a positive as the negative.
pub fn hardest_triples(sims: &[f32], positive: &[bool], n: usize) -> Triples {
    (0..n)
        .filter_map(|a| {
            let row = &sims[a * n..(a + 1) * n];
            (0..n)
                .filter(|&c| !positive[a * n + c])
                .max_by(|&x, &y| row[x].total_cmp(&row[y]).then(y.cmp(&x)))
                .map(|neg| (a, a, neg))
        })
        .collect()
}

/// Σ relu(margin + s[a, neg] − s[a, pos]) over `triples` of the square `sims` tensor
/// (`[n, n]`); zero without triples.
pub fn triplet_sum(sims: Tensor<2>, triples: &Triples, margin: f64) -> Tensor<1> {
    let device = sims.device();
    let n = sims.dims()[1];
    if triples.is_empty() {
        return sims.sum().mul_scalar(0.0);
    }
    let flat = sims.reshape([-1]);
    let index = |f: &dyn Fn(&(usize, usize, usize)) -> usize| {
        let v: Vec<i64> = triples.iter().map(|t| f(t) as i64).collect();
        Tensor::<1, Int>::from_data(TensorData::new(v, [triples.len()]), &device)
    };
    let pos = flat.clone().select(0, index(&|t| t.0 * n + t.1));
    let neg = flat.select(0, index(&|t| t.0 * n + t.2));
    (neg - pos).add_scalar(margin).clamp_min(0.0).sum()
}

/// L_tri(v, u) in both directions. `image_ids[j]` is the image of caption j (and of row j of
/// `v`, which holds caption j's image). `uniform` gives the distance-weighted draws' numbers
/// (images as anchors first, then captions).
pub fn triplet_loss(
    v: Tensor<2>,
    u: Tensor<2>,
    image_ids: &[usize],
    margin: f64,
    negatives: Negatives,
    uniform: &mut dyn FnMut() -> f64,
) -> Tensor<1> {
    let n = image_ids.len();
    let sims = v.matmul(u.transpose());
    let host: Vec<f32> = sims
        .clone()
        .detach()
        .into_data()
        .try_into_vec_as::<f32>()
        .expect("float tensors read back as f32");
    let host_t: Vec<f32> = (0..n * n).map(|k| host[(k % n) * n + k / n]).collect();
    let positive: Vec<bool> = (0..n * n)
        .map(|k| image_ids[k / n] == image_ids[k % n])
        .collect();
    let (rows, cols) = match negatives {
        Negatives::DistanceWeighted { n: dim, cutoff } => (
            distance_weighted_triples(&host, &positive, n, n, dim, cutoff, uniform),
            distance_weighted_triples(&host_t, &positive, n, n, dim, cutoff, uniform),
        ),
        Negatives::DistanceWeightedReleased { n: dim, cutoff } => {
            // A failed draw scores its direction zero (no triples).
            let mut draw = |sims: &[f32]| {
                released_distance_weighted_triples(sims, &positive, n, n, dim, cutoff, uniform)
                    .unwrap_or_default()
            };
            (draw(&host), draw(&host_t))
        }
        Negatives::Hardest => (
            hardest_triples(&host, &positive, n),
            hardest_triples(&host_t, &positive, n),
        ),
    };
    triplet_sum(sims.clone(), &rows, margin) + triplet_sum(sims.transpose(), &cols, margin)
}

/// Row-wise KL(softmax(s) ‖ softmax(g)), averaged over rows (PyTorch's
/// `kl_div(log_softmax(g), softmax(s), reduction='batchmean')`).
pub fn row_kl(s: Tensor<2>, g: Tensor<2>) -> Tensor<1> {
    let rows = s.dims()[0];
    let p = softmax(s.clone(), 1);
    (p * (log_softmax(s, 1) - log_softmax(g, 1)))
        .sum()
        .div_scalar(rows.max(1) as f64)
}

/// L_reg for the relevance (S_{I→T}, S_{T→I}) against G = exp(−‖v_i − u_j‖/σ), detached.
pub fn relevance_regulariser(
    s_i2t: Tensor<2>,
    s_t2i: Tensor<2>,
    v: Tensor<2>,
    u: Tensor<2>,
    sigma: f64,
) -> Tensor<1> {
    let g = distance_kernel(v.detach(), u.detach(), sigma);
    row_kl(s_i2t, g.clone()) + row_kl(s_t2i, g.transpose())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use relata_dataset::rng::SeededRng;

    fn t2(v: Vec<f32>, n: usize, m: usize) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v, [n, m]), &Device::flex())
    }

    fn value(t: Tensor<1>) -> f64 {
        t.into_scalar::<f32>() as f64
    }

    #[test]
    fn log_weight_matches_the_formula() {
        // s = 0 → dist √2: (2−n)·ln √2 − ((n−3)/2)·ln(1/2).
        let n = 512.0f64;
        let d = 2f64.sqrt();
        let want = (2.0 - n) * d.ln() - ((n - 3.0) / 2.0) * (0.5f64).ln();
        assert!((distance_log_weight(0.0, 512) - want).abs() < 1e-9);
        // s = −1 → dist 2 → log(0) → non-finite → 0.
        assert_eq!(distance_log_weight(-1.0, 512), 0.0);
    }

    #[test]
    fn sampled_negatives_are_eligible_and_seeded() {
        // 3 images, one caption each; row 0's candidates: col 1 (s 0.5 → dist 1), col 2
        // (s −0.9 → dist 1.95 ≥ 1.7: excluded).
        let sims = vec![1.0, 0.5, -0.9, 0.2, 1.0, 0.1, 0.0, 0.3, 1.0];
        let positive = vec![true, false, false, false, true, false, false, false, true];
        let mut rng = SeededRng::new(1);
        let t = distance_weighted_triples(&sims, &positive, 3, 3, 512, 1.7, &mut || rng.next_f64());
        assert_eq!(t.len(), 3);
        assert_eq!(t[0], (0, 0, 1));
        for &(a, p, neg) in &t {
            assert!(positive[a * 3 + p] && !positive[a * 3 + neg]);
        }
        let mut rng2 = SeededRng::new(1);
        assert_eq!(
            t,
            distance_weighted_triples(&sims, &positive, 3, 3, 512, 1.7, &mut || rng2.next_f64())
        );
        // Nothing eligible → no triple for that anchor.
        let t = distance_weighted_triples(&sims, &positive, 3, 3, 512, 0.1, &mut || rng.next_f64());
        assert!(t.is_empty());
    }

    /// Hardest-negative triplet by hand: sims [[0.9, 0.5], [0.8, 0.4]], margin 0.2.
    /// Image rows: row 0: relu(0.2 + 0.5 − 0.9) = 0; row 1: relu(0.2 + 0.8 − 0.4) = 0.6.
    /// Caption rows (columns): caption 0: relu(0.2 + 0.8 − 0.9) = 0.1; caption 1:
    /// relu(0.2 + 0.5 − 0.4) = 0.3. Total 1.0.
    #[test]
    fn hardest_negative_hand_value() {
        let v = t2(vec![0.9, 0.5, 0.8, 0.4], 2, 2);
        let eye = t2(vec![1.0, 0.0, 0.0, 1.0], 2, 2);
        let got = value(triplet_loss(
            v,
            eye,
            &[0, 1],
            0.2,
            Negatives::Hardest,
            &mut || unreachable!("the hardest negative draws nothing"),
        ));
        assert!((got - 1.0).abs() < 1e-6, "{got}");
    }

    /// Two captions of the same image are positives of each other, never negatives.
    #[test]
    fn duplicate_images_are_not_negatives() {
        let sims = vec![0.9, 0.95, 0.1, 0.9, 0.95, 0.1, 0.2, 0.3, 0.8];
        let positive: Vec<bool> = (0..9)
            .map(|k| [0, 0, 1][k / 3] == [0, 0, 1][k % 3])
            .collect();
        let t = hardest_triples(&sims, &positive, 3);
        assert_eq!(t[0], (0, 0, 2));
        assert_eq!(t[1], (1, 1, 2));
    }

    #[test]
    fn kl_is_zero_for_equal_rows_and_positive_otherwise() {
        let a = t2(vec![0.1, 0.5, 0.3, 0.2], 2, 2);
        assert!(value(row_kl(a.clone(), a.clone())).abs() < 1e-7);
        let b = t2(vec![0.5, 0.1, 0.3, 0.2], 2, 2);
        // Row 0: p = softmax(0.1, 0.5), q = softmax(0.5, 0.1); row 1 equal → 0.
        let p1 = 1.0 / (1.0 + (0.4f64).exp());
        let want = (p1 * (p1 / (1.0 - p1)).ln() + (1.0 - p1) * ((1.0 - p1) / p1).ln()) / 2.0;
        assert!((value(row_kl(a, b)) - want).abs() < 1e-6);
    }
}
