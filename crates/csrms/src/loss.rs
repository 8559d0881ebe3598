//! CSRMS's losses (the paper's training stage, as relata decided it: docs/csrms.md, Design choices):
//! - L_ce: softmax cross-entropy (both heads);
//! - L_neg = mean_{i,q} w_i / (1 + log(1 + ‖f_i − f_{neg(i,q)}‖₂)): bounded, decreasing with
//!   distance, so minimising it pushes each anchor away from its negatives;
//! - L_inter = mean_{a≠b} 1 / (1 + log(1 + ‖c_a − c_b‖₂)) over the batch's class means, with
//!   gradient (the released code computed it in numpy, detached, and with the sign that pulls
//!   centres together).

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Int, Tensor, TensorData};

/// Keeps the square root's gradient finite when two features coincide.
const DISTANCE_EPS: f64 = 1e-10;

/// Softmax cross-entropy, mean over the batch (PyTorch's `F.cross_entropy`).
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits, labels)
}

/// 1 / (1 + log(1 + d)) of Euclidean distances d between the rows of `a` and `b` (`[n, dim]`
/// each); `[n]`.
pub fn bounded_repulsion(a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
    let n = a.dims()[0];
    let distance = (a - b)
        .powi_scalar(2)
        .sum_dim(1)
        .add_scalar(DISTANCE_EPS)
        .sqrt()
        .reshape([n]);
    distance.log1p().add_scalar(1.0).recip()
}

/// L_neg for `anchors` (`[B, dim]`), their `negatives` (`[B·m, dim]`, anchor b's at rows
/// b·m .. b·m + m) and per-anchor curriculum `weights` (`[B]`).
pub fn negative_loss(anchors: Tensor<2>, negatives: Tensor<2>, weights: Tensor<1>) -> Tensor<1> {
    let [b, dim] = anchors.dims();
    let m = negatives.dims()[0] / b.max(1);
    let repeated = anchors
        .unsqueeze_dim::<3>(1)
        .repeat_dim(1, m)
        .reshape([b * m, dim]);
    let per_pair = bounded_repulsion(repeated, negatives).reshape([b, m]);
    (per_pair * weights.unsqueeze_dim(1)).mean()
}

/// L_inter over the class means of `features` (`[n, dim]`) grouped by `labels`; zero (a
/// constant) when the batch holds fewer than two classes.
pub fn inter_class_loss(features: Tensor<2>, labels: &[usize]) -> Tensor<1> {
    let device = features.device();
    let mut classes: Vec<usize> = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    let k = classes.len();
    if k < 2 {
        return Tensor::zeros([1], &device);
    }
    let n = labels.len();
    // Averaging matrix: row a holds 1/|class a| at the class's samples.
    let mut avg = vec![0f32; k * n];
    for (a, &c) in classes.iter().enumerate() {
        let members = labels.iter().filter(|&&l| l == c).count() as f32;
        for (i, &l) in labels.iter().enumerate() {
            if l == c {
                avg[a * n + i] = 1.0 / members;
            }
        }
    }
    let avg: Tensor<2> = Tensor::from_data(TensorData::new(avg, [k, n]), &device);
    let means = avg.matmul(features);
    let dim = means.dims()[1];
    // All ordered pairs a ≠ b.
    let (mut left, mut right) = (Vec::new(), Vec::new());
    for a in 0..k {
        for b in 0..k {
            if a != b {
                left.push(a as i64);
                right.push(b as i64);
            }
        }
    }
    let pairs = left.len();
    let index = |v: Vec<i64>| Tensor::<1, Int>::from_data(TensorData::new(v, [pairs]), &device);
    let ca = means.clone().select(0, index(left));
    let cb = means.select(0, index(right));
    debug_assert_eq!(ca.dims(), [pairs, dim]);
    bounded_repulsion(ca, cb).mean()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn t2(v: &[f32], shape: [usize; 2], device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v.to_vec(), shape), device)
    }

    fn value(t: Tensor<1>) -> f64 {
        t.into_scalar::<f32>() as f64
    }

    fn g(d: f64) -> f64 {
        1.0 / (1.0 + (1.0 + d).ln())
    }

    #[test]
    fn negative_loss_hand_values() {
        let device = Device::flex();
        // Anchor 0 at the origin, negatives at distance 3 and 4; anchor 1 at (1, 0) with
        // negatives at distance 0 and 5.
        let anchors = t2(&[0.0, 0.0, 1.0, 0.0], [2, 2], &device);
        let negatives = t2(&[3.0, 0.0, 0.0, 4.0, 1.0, 0.0, 4.0, 4.0], [4, 2], &device);
        let weights = Tensor::from_data(TensorData::new(vec![1.0f32, 0.5], [2]), &device);
        let got = value(negative_loss(anchors, negatives, weights));
        let want = (g(3.0) + g(4.0) + 0.5 * (g(0.0) + g(5.0))) / 4.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn inter_class_loss_hand_values() {
        let device = Device::flex();
        // Class 0 at (0,0) and (2,0) → mean (1,0); class 1 at (1,3) → mean (1,3); d = 3.
        let f = t2(&[0.0, 0.0, 2.0, 0.0, 1.0, 3.0], [3, 2], &device);
        let got = value(inter_class_loss(f.clone(), &[0, 0, 1]));
        assert!((got - g(3.0)).abs() < 1e-5, "{got}");
        // One class: zero.
        assert_eq!(value(inter_class_loss(f, &[1, 1, 1])), 0.0);
    }

    /// Gradient signs: a step down each loss's gradient moves the features apart.
    #[test]
    fn both_losses_push_apart() {
        let device = Device::flex().autodiff();
        let anchors = t2(&[0.0, 0.0], [1, 2], &device).require_grad();
        let negatives = t2(&[1.0, 1.0, -2.0, 0.5], [2, 2], &device).require_grad();
        let weights = Tensor::ones([1], &device);
        let loss = negative_loss(anchors.clone(), negatives.clone(), weights);
        let grads = loss.backward();
        let ga = anchors
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let gn = negatives
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        // −∇ on each negative points away from the anchor (same direction as neg − anchor).
        let neg = [1.0f32, 1.0, -2.0, 0.5];
        for q in 0..2 {
            let dot = -(gn[2 * q] * neg[2 * q] + gn[2 * q + 1] * neg[2 * q + 1]);
            assert!(dot > 0.0, "negative {q}: {gn:?}");
        }
        // −∇ on the anchor points away from the negatives' pull: its dot with the sum of the
        // unit vectors towards the negatives is negative.
        let towards: [f32; 2] = [
            1.0 / 2f32.sqrt() - 2.0 / 4.25f32.sqrt(),
            1.0 / 2f32.sqrt() + 0.5 / 4.25f32.sqrt(),
        ];
        assert!(-(ga[0] * towards[0] + ga[1] * towards[1]) < 0.0, "{ga:?}");

        let f = t2(&[0.0, 0.0, 1.0, 0.0], [2, 2], &device).require_grad();
        let loss = inter_class_loss(f.clone(), &[0, 1]);
        let grads = loss.backward();
        let gf = f
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        // Class 0 (at x = 0) is pushed to −x, class 1 (x = 1) to +x.
        assert!(-gf[0] < 0.0 && -gf[2] > 0.0, "{gf:?}");
    }
}
