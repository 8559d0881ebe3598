//! HREM's losses (spec "Losses"):
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

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Int, Tensor, TensorData};
use relata_dataset::rng::SeededRng;

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
/// row-major; `positive[r·cols + c]` marks pairs of the same image).
pub fn distance_weighted_triples(
    sims: &[f32],
    positive: &[bool],
    rows: usize,
    cols: usize,
    n: usize,
    cutoff: f64,
    rng: &mut SeededRng,
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
        for p in (0..cols).filter(|&c| pos[c]) {
            let mut x = rng.next_f64() * total;
            let mut pick = eligible[eligible.len() - 1].0;
            for (e, w) in eligible.iter().zip(&weights) {
                if x < *w {
                    pick = e.0;
                    break;
                }
                x -= w;
            }
            out.push((a, p, pick));
        }
    }
    out
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
/// `v`, which holds caption j's image). `rng` draws the distance-weighted negatives.
pub fn triplet_loss(
    v: Tensor<2>,
    u: Tensor<2>,
    image_ids: &[usize],
    margin: f64,
    negatives: Negatives,
    rng: &mut SeededRng,
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
            distance_weighted_triples(&host, &positive, n, n, dim, cutoff, rng),
            distance_weighted_triples(&host_t, &positive, n, n, dim, cutoff, rng),
        ),
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
        let t = distance_weighted_triples(&sims, &positive, 3, 3, 512, 1.7, &mut rng);
        assert_eq!(t.len(), 3);
        assert_eq!(t[0], (0, 0, 1));
        for &(a, p, neg) in &t {
            assert!(positive[a * 3 + p] && !positive[a * 3 + neg]);
        }
        let mut rng2 = SeededRng::new(1);
        assert_eq!(
            t,
            distance_weighted_triples(&sims, &positive, 3, 3, 512, 1.7, &mut rng2)
        );
        // Nothing eligible → no triple for that anchor.
        let t = distance_weighted_triples(&sims, &positive, 3, 3, 512, 0.1, &mut rng);
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
        let mut rng = SeededRng::new(0);
        let got = value(triplet_loss(
            v,
            eye,
            &[0, 1],
            0.2,
            Negatives::Hardest,
            &mut rng,
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
