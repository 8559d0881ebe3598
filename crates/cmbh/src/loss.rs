//! CMBH's losses (the paper's "Losses"; docs/cmbh.md): L_hash-pair (Eq. 6) and L_hash-proxy (Eq. 7)
//! with balanced similarity matrices, L_cls (Eq. 10), L_trans (Eq. 11) and, through the same two
//! functions on region crops, L_region (Eq. 14). The total (Eq. 15) is assembled in `train.rs` as
//! named terms.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

/// The value the zeros of a 0/1 similarity matrix become: −(ΣS / Σ(1 − S)), so that the
/// dissimilar pairs weigh as much in total as the similar ones.
///
/// For S^p (n × n, same class) `ones = Σ_c n_c²` of `n²` entries; for S^c (n × y, one-hot)
/// `ones = n` of `n·y`.
pub fn balance_ratio(ones: f64, total: f64) -> f64 {
    if total <= ones {
        0.0
    } else {
        -(ones / (total - ones))
    }
}

/// The balance value of the pairwise matrix S^p for the class sizes of the training set.
pub fn pair_balance(class_counts: &[usize]) -> f64 {
    let n: f64 = class_counts.iter().map(|&c| c as f64).sum();
    let ones: f64 = class_counts.iter().map(|&c| (c as f64).powi(2)).sum();
    balance_ratio(ones, n * n)
}

/// The balance value of the proxy matrix S^c: −1/(y − 1).
pub fn proxy_balance(classes: usize) -> f64 {
    balance_ratio(1.0, classes as f64)
}

/// Rows of S^p for a batch against all n training images: 1 for the same class, `negative`
/// otherwise. `[batch, n]` on `device`.
pub fn pair_similarity(
    batch_labels: &[usize],
    all_labels: &[usize],
    negative: f64,
    device: &Device,
) -> Tensor<2> {
    let neg = negative as f32;
    let values: Vec<f32> = batch_labels
        .iter()
        .flat_map(|&a| {
            all_labels
                .iter()
                .map(move |&b| if a == b { 1.0 } else { neg })
        })
        .collect();
    Tensor::from_data(
        TensorData::new(values, [batch_labels.len(), all_labels.len()]),
        device,
    )
}

/// Rows of S^c for a batch: one-hot with `negative` for the other classes. `[batch, y]`.
pub fn proxy_similarity(
    batch_labels: &[usize],
    classes: usize,
    negative: f64,
    device: &Device,
) -> Tensor<2> {
    let neg = negative as f32;
    let values: Vec<f32> = batch_labels
        .iter()
        .flat_map(|&a| (0..classes).map(move |c| if a == c { 1.0 } else { neg }))
        .collect();
    Tensor::from_data(
        TensorData::new(values, [batch_labels.len(), classes]),
        device,
    )
}

/// Eq. 6 on a mini-batch: mean over the batch's i and all n training images j of
/// (u_iᵀ b_j^{(t−1)} − b·S^p_ij)². `u`: `[batch, bits]`; `prev_codes`: `[n, bits]` (±1,
/// constant); `similarity`: `[batch, n]` from [`pair_similarity`].
pub fn hash_pair_loss(u: Tensor<2>, prev_codes: Tensor<2>, similarity: Tensor<2>) -> Tensor<1> {
    let bits = u.dims()[1] as f64;
    let inner = u.matmul(prev_codes.transpose());
    (inner - similarity.mul_scalar(bits)).powi_scalar(2).mean()
}

/// Eq. 7 on a mini-batch: mean over the batch's i and the y classes c of
/// (u_iᵀ c_c^{(t−1)} − b·S^c_ic)². `proxies`: `[y, bits]` (the previous epoch's class means of
/// u, constant); `similarity`: `[batch, y]` from [`proxy_similarity`].
pub fn hash_proxy_loss(u: Tensor<2>, proxies: Tensor<2>, similarity: Tensor<2>) -> Tensor<1> {
    hash_pair_loss(u, proxies, similarity)
}

/// Softmax cross-entropy, mean over the batch (PyTorch's `F.cross_entropy`).
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits, labels)
}

/// Eq. 10: Σ_j CE(ŷ^j, y) over the given class-score vectors, each averaged over the batch.
pub fn classification_loss(logits: &[Tensor<2>], labels: &Tensor<1, Int>) -> Tensor<1> {
    logits
        .iter()
        .map(|l| cross_entropy(l.clone(), labels.clone()))
        .reduce(|a, b| a + b)
        .expect("at least one class-score vector")
}

/// Eq. 11: −softmax(teacher)ᵀ log softmax(student), averaged over the batch, with the teacher
/// (Σ_{j=0..L} ŷ^j) treated as a constant.
pub fn transfer_loss(teacher: Tensor<2>, student: Tensor<2>) -> Tensor<1> {
    let target = softmax(teacher.detach(), 1);
    (target * log_softmax(student, 1)).sum_dim(1).mean().neg()
}

/// Class means of `u` (`[n, bits]`, host, row-major) for the proxies c_c (Eq. 7). A class
/// without samples keeps `fallback`'s row.
pub fn class_means(u: &[f32], bits: usize, labels: &[usize], fallback: &[f32]) -> Vec<f32> {
    let classes = fallback.len() / bits;
    let mut sums = vec![0f64; classes * bits];
    let mut counts = vec![0usize; classes];
    for (row, &c) in u.chunks(bits).zip(labels) {
        counts[c] += 1;
        for (s, &v) in sums[c * bits..(c + 1) * bits].iter_mut().zip(row) {
            *s += v as f64;
        }
    }
    let mut out = fallback.to_vec();
    for c in 0..classes {
        if counts[c] > 0 {
            for b in 0..bits {
                out[c * bits + b] = (sums[c * bits + b] / counts[c] as f64) as f32;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        Device::flex()
    }

    fn t2(values: &[f32], shape: [usize; 2]) -> Tensor<2> {
        Tensor::from_data(TensorData::new(values.to_vec(), shape), &device())
    }

    fn scalar(t: Tensor<1>) -> f32 {
        t.into_scalar::<f32>()
    }

    #[test]
    fn balance_values() {
        // Two classes of two: 8 similar pairs of 16 → zeros become −1.
        assert_eq!(pair_balance(&[2, 2]), -1.0);
        // Classes of 1 and 3: 1 + 9 = 10 similar of 16 → −10/6.
        assert!((pair_balance(&[1, 3]) + 10.0 / 6.0).abs() < 1e-12);
        // S^c one-hot over 4 classes → −1/3.
        assert!((proxy_balance(4) + 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(balance_ratio(4.0, 4.0), 0.0);
    }

    #[test]
    fn similarity_rows() {
        let s = pair_similarity(&[0, 1], &[0, 1, 1], -0.5, &device());
        let v: Vec<f32> = s.into_data().try_into_vec_as::<f32>().unwrap();
        assert_eq!(v, vec![1.0, -0.5, -0.5, -0.5, 1.0, 1.0]);
        let s = proxy_similarity(&[2], 3, -0.5, &device());
        let v: Vec<f32> = s.into_data().try_into_vec_as::<f32>().unwrap();
        assert_eq!(v, vec![-0.5, -0.5, 1.0]);
    }

    /// u = (0.5, −0.5); b_0 = (1, 1) same class, b_1 = (1, −1) other class, S = (1, −1),
    /// b = 2: inner products (0, 1) → ((0 − 2)² + (1 + 2)²) / 2 = 6.5.
    #[test]
    fn hash_pair_by_hand() {
        let u = t2(&[0.5, -0.5], [1, 2]);
        let prev = t2(&[1.0, 1.0, 1.0, -1.0], [2, 2]);
        let s = pair_similarity(&[0], &[0, 1], -1.0, &device());
        assert!((scalar(hash_pair_loss(u, prev, s)) - 6.5).abs() < 1e-6);
    }

    /// Two samples, proxies c_0 = (1, 0), c_1 = (0, −1), S^c negative −1, b = 2:
    /// sample 0 (class 0), u = (1, 1): inner (1, −1) → (1 − 2)² + (−1 + 2)² = 2;
    /// sample 1 (class 1), u = (0, −1): inner (0, 1) → (0 + 2)² + (1 − 2)² = 5; mean 7/4.
    #[test]
    fn hash_proxy_by_hand() {
        let u = t2(&[1.0, 1.0, 0.0, -1.0], [2, 2]);
        let proxies = t2(&[1.0, 0.0, 0.0, -1.0], [2, 2]);
        let s = proxy_similarity(&[0, 1], 2, -1.0, &device());
        assert!((scalar(hash_proxy_loss(u, proxies, s)) - 1.75).abs() < 1e-6);
    }

    /// Teacher (0, 0) → (½, ½); student (0, ln 3) → log softmax (ln ¼, ln ¾):
    /// L = −½(ln ¼ + ln ¾) = 0.836988.
    #[test]
    fn transfer_by_hand() {
        let teacher = t2(&[0.0, 0.0], [1, 2]);
        let student = t2(&[0.0, 3f32.ln()], [1, 2]);
        assert!((scalar(transfer_loss(teacher, student)) - 0.836_988).abs() < 1e-5);
    }

    /// CE((0, ln 3), 1) = −ln ¾ = 0.287682; two score vectors sum.
    #[test]
    fn classification_by_hand() {
        let logits = t2(&[0.0, 3f32.ln()], [1, 2]);
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64], [1]), &device());
        let one = scalar(classification_loss(std::slice::from_ref(&logits), &labels));
        assert!((one - 0.287_682).abs() < 1e-5);
        let two = scalar(classification_loss(&[logits.clone(), logits], &labels));
        assert!((two - 2.0 * 0.287_682).abs() < 1e-5);
    }

    /// Each loss at batch 2 under both reductions, by hand. The hash losses are means in both
    /// readings; the classification-type losses are means in one and sums over the two
    /// samples in the paper's.
    #[test]
    fn batch_of_two_under_both_readings() {
        use crate::config::LossReduction::{Mean, Paper};
        let both = |mean: f32| [Mean, Paper].map(|r| mean * r.classification_scale(2) as f32);
        let close = |a: f32, b: f32| (a - b).abs() < 1e-5;
        // CE((0, ln 3), 1) = −ln ¾ = 0.287682; CE((0, 0), 0) = ln 2 = 0.693147.
        let logits = t2(&[0.0, 3f32.ln(), 0.0, 0.0], [2, 2]);
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 0], [2]), &device());
        let cls = scalar(classification_loss(std::slice::from_ref(&logits), &labels));
        let [mean, paper] = both(cls);
        assert!(
            close(mean, 0.490_415) && close(paper, 0.980_829),
            "{mean} {paper}"
        );
        // Teacher (0, 0) for both; students (0, ln 3) → 0.836988 and (0, 0) → ln 2.
        let teacher = t2(&[0.0, 0.0, 0.0, 0.0], [2, 2]);
        let trans = scalar(transfer_loss(teacher, logits));
        let [mean, paper] = both(trans);
        assert!(
            close(mean, 0.765_068) && close(paper, 1.530_135),
            "{mean} {paper}"
        );
        // Hash losses: u_0 = (0.5, −0.5), u_1 = (1, 1) against b_0 = (1, 1) (class 0) and
        // b_1 = (1, −1) (class 1), S negative −1, b = 2. Sample 0 (class 0): inner (0, 1) →
        // (0 − 2)² + (1 + 2)² = 13; sample 1 (class 1): inner (2, 0) → (2 + 2)² + (0 − 2)² =
        // 20; mean over the 2 × 2 pairs 33/4 in both readings.
        let u = t2(&[0.5, -0.5, 1.0, 1.0], [2, 2]);
        let prev = t2(&[1.0, 1.0, 1.0, -1.0], [2, 2]);
        let s = pair_similarity(&[0, 1], &[0, 1], -1.0, &device());
        assert!(close(
            scalar(hash_pair_loss(u.clone(), prev.clone(), s)),
            8.25
        ));
        let s = proxy_similarity(&[0, 1], 2, -1.0, &device());
        assert!(close(scalar(hash_proxy_loss(u, prev, s)), 8.25));
    }

    /// The transfer loss's teacher is a constant: only the student gets a gradient.
    #[test]
    fn transfer_teacher_gets_no_gradient() {
        let ad = device().autodiff();
        let teacher: Tensor<2> =
            Tensor::from_data(TensorData::new(vec![1.0f32, 0.0], [1, 2]), &ad).require_grad();
        let student: Tensor<2> =
            Tensor::from_data(TensorData::new(vec![0.0f32, 0.0], [1, 2]), &ad).require_grad();
        let grads = transfer_loss(teacher.clone(), student.clone()).backward();
        assert!(teacher.grad(&grads).is_none());
        let g: Vec<f32> = student
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        // d/ds of −p·log softmax(s) = softmax(s) − p = (½ − 0.731, ½ − 0.269).
        let p0 = 1.0 / (1.0 + (-1f32).exp());
        assert!((g[0] - (0.5 - p0)).abs() < 1e-5 && (g[1] - (p0 - 0.5)).abs() < 1e-5);
    }

    #[test]
    fn class_means_keep_empty_classes() {
        let u = [1.0, -1.0, 0.0, 1.0, 0.5, 0.5];
        let fallback = [9.0, 9.0, 8.0, 8.0, 7.0, 7.0];
        let m = class_means(&u, 2, &[0, 0, 2], &fallback);
        assert_eq!(m, vec![0.5, 0.0, 8.0, 8.0, 0.5, 0.5]);
    }
}
