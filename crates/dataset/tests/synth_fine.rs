//! `synth-fine` is genuinely fine-grained: a linear classifier on raw pixels
//! reaches clearly less accuracy than the same classifier on the true attributes, and sibling
//! classes (same family) are closer in pixel space than classes of different families.
//!
//! The linear classifier is ridge regression onto one-hot labels, solved in its dual form
//! (`(K + λI)A = Y`, `K = XXᵀ`), with λ picked in the pixels' favour (best of several).

use burn::tensor::{Device, Tensor, TensorData};
use relata_dataset::{SynthFine, SynthFineConfig};

fn features(synth: &SynthFine, split: &str) -> (Vec<Vec<f32>>, Vec<usize>) {
    let samples = &synth.dataset.splits[split];
    let x = samples
        .iter()
        .map(|s| {
            s.image
                .load_rgb()
                .unwrap()
                .into_raw()
                .into_iter()
                .map(|v| f32::from(v) / 255.0)
                .collect()
        })
        .collect();
    (x, samples.iter().map(|s| s.label).collect())
}

fn gram(a: &[Vec<f32>], b: &[Vec<f32>], device: &Device) -> Vec<f64> {
    let d = a[0].len();
    let ta = Tensor::<2>::from_data(TensorData::new(a.concat(), [a.len(), d]), device);
    let tb = Tensor::<2>::from_data(TensorData::new(b.concat(), [b.len(), d]), device);
    ta.matmul(tb.transpose())
        .into_data()
        .iter::<f32>()
        .map(f64::from)
        .collect()
}

/// Solves `(K + λI) A = Y` by Cholesky; K is n×n, Y is n×c, both row-major.
fn solve(k: &[f64], n: usize, lambda: f64, y: &[f64], c: usize) -> Vec<f64> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = k[i * n + j] + if i == j { lambda } else { 0.0 };
            for p in 0..j {
                s -= l[i * n + p] * l[j * n + p];
            }
            l[i * n + j] = if i == j { s.sqrt() } else { s / l[j * n + j] };
        }
    }
    let mut a = y.to_vec();
    for col in 0..c {
        for i in 0..n {
            let mut s = a[i * c + col];
            for p in 0..i {
                s -= l[i * n + p] * a[p * c + col];
            }
            a[i * c + col] = s / l[i * n + i];
        }
        for i in (0..n).rev() {
            let mut s = a[i * c + col];
            for p in i + 1..n {
                s -= l[p * n + i] * a[p * c + col];
            }
            a[i * c + col] = s / l[i * n + i];
        }
    }
    a
}

/// Test accuracy of ridge regression from `train` features to one-hot labels (best over λ).
fn ridge_accuracy(
    train: &[Vec<f32>],
    train_y: &[usize],
    test: &[Vec<f32>],
    test_y: &[usize],
    classes: usize,
) -> f64 {
    let device = Device::flex();
    // Centre on the training mean so the implicit bias is handled.
    let d = train[0].len();
    let mean: Vec<f32> = (0..d)
        .map(|j| train.iter().map(|r| r[j]).sum::<f32>() / train.len() as f32)
        .collect();
    let centre = |rows: &[Vec<f32>]| -> Vec<Vec<f32>> {
        rows.iter()
            .map(|r| r.iter().zip(&mean).map(|(a, m)| a - m).collect())
            .collect()
    };
    let (tr, te) = (centre(train), centre(test));
    let n = tr.len();
    let k = gram(&tr, &tr, &device);
    let kt = gram(&te, &tr, &device);
    let mut y = vec![0.0; n * classes];
    for (i, &l) in train_y.iter().enumerate() {
        y[i * classes + l] = 1.0;
    }
    let trace = (0..n).map(|i| k[i * n + i]).sum::<f64>() / n as f64;
    [1e-3, 1e-2, 1e-1, 1.0]
        .iter()
        .map(|&rel| {
            let a = solve(&k, n, rel * trace, &y, classes);
            let correct = test_y
                .iter()
                .enumerate()
                .filter(|&(i, &label)| {
                    let scores: Vec<f64> = (0..classes)
                        .map(|c| (0..n).map(|j| kt[i * n + j] * a[j * classes + c]).sum())
                        .collect();
                    let pred = (0..classes)
                        .max_by(|&p, &q| scores[p].total_cmp(&scores[q]))
                        .unwrap();
                    pred == label
                })
                .count();
            correct as f64 / test_y.len() as f64
        })
        .fold(0.0, f64::max)
}

#[test]
fn pixels_are_harder_than_attributes_and_siblings_are_closer() {
    let cfg = SynthFineConfig {
        train_per_class: 30,
        test_per_class: 15,
        image_size: 32,
        seed: 11,
        ..Default::default()
    };
    let synth = cfg.generate().unwrap();
    let classes = cfg.num_classes();
    let (xtr, ytr) = features(&synth, "train");
    let (xte, yte) = features(&synth, "test");
    let pixel_acc = ridge_accuracy(&xtr, &ytr, &xte, &yte, classes);
    // The true attributes, without the nuisance `mode` entry.
    let strip = |rows: &[Vec<f32>]| -> Vec<Vec<f32>> {
        rows.iter().map(|r| r[..r.len() - 1].to_vec()).collect()
    };
    let atr = strip(&synth.attributes["train"]);
    let ate = strip(&synth.attributes["test"]);
    let attr_acc = ridge_accuracy(&atr, &ytr, &ate, &yte, classes);
    eprintln!(
        "linear accuracy: pixels {pixel_acc:.3}, attributes {attr_acc:.3} (chance {:.3})",
        1.0 / classes as f64
    );
    assert!(
        attr_acc > 0.95,
        "attributes should be linearly sufficient: {attr_acc}"
    );
    assert!(
        pixel_acc < attr_acc - 0.3,
        "pixels {pixel_acc} vs attributes {attr_acc}"
    );
    assert!(
        pixel_acc > 1.5 / classes as f64,
        "pixels should still carry signal: {pixel_acc}"
    );

    // Class-mean images: siblings closer than strangers.
    let d = xtr[0].len();
    let mut means = vec![vec![0.0f64; d]; classes];
    let mut counts = vec![0usize; classes];
    for (x, &l) in xtr.iter().zip(&ytr) {
        counts[l] += 1;
        for (m, v) in means[l].iter_mut().zip(x) {
            *m += f64::from(*v);
        }
    }
    for (m, &c) in means.iter_mut().zip(&counts) {
        m.iter_mut().for_each(|v| *v /= c as f64);
    }
    let dist = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let (mut sib, mut ns, mut other, mut no) = (0.0, 0, 0.0, 0);
    for a in 0..classes {
        for b in a + 1..classes {
            let dd = dist(&means[a], &means[b]);
            if synth.class_family[a] == synth.class_family[b] {
                sib += dd;
                ns += 1;
            } else {
                other += dd;
                no += 1;
            }
        }
    }
    let (sib, other) = (sib / ns as f64, other / no as f64);
    eprintln!("class-mean distance: siblings {sib:.3}, other families {other:.3}");
    assert!(
        sib < 0.9 * other,
        "siblings {sib} vs other families {other}"
    );
}
