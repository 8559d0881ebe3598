//! Which convolution path is faster (docs/notes/2026-11-performance-log.md, "1×1 convolutions as matrix
//! products"): burn's `conv2d` against the same convolution built from tensor ops, forward and
//! forward + backward under autodiff, at ResNet-18/50 shapes (batch 16, 112×112 input), on flex
//! or on any compiled device named as the argument (`tch` needs xtask built with `--features tch`).
//!
//! - on flex, `relata_backbone::ops::conv2d` runs every kernel through relata's own
//!   im2col + GEMM kernels with their backward (`relata-flex`), training and
//!   inference;
//! - on other backends it computes 1×1 kernels as a subsampling and one batched matrix product
//!   when training, and leaves the rest (and inference) to `conv2d`, so those rows compare
//!   `conv2d` with itself.
//!
//! An im2col built from k² strided tensor slices was slower than both (its rows:
//! docs/notes/2026-11-performance-log.md).
//!
//! ```text
//! cargo run -p xtask --example conv_paths            # flex
//! cargo run -p xtask --features tch --example conv_paths -- tch
//! ```

use std::time::Instant;

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::tensor::{Distribution, Tensor};
use relata_backbone::ops::conv2d;

const CASES: [(usize, usize, usize, usize, usize); 12] = [
    (256, 64, 1, 1, 28),
    (64, 256, 1, 1, 28),
    (512, 128, 1, 1, 14),
    (128, 512, 1, 1, 14),
    (1024, 256, 1, 1, 7),
    (256, 1024, 1, 1, 7),
    (3, 64, 7, 2, 112),
    (64, 64, 3, 1, 28),
    (128, 128, 3, 1, 14),
    (256, 256, 3, 1, 7),
    (64, 128, 3, 2, 28),
    (64, 128, 1, 2, 28),
];

fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut b = f64::INFINITY;
    for i in 0..=reps {
        let t = Instant::now();
        f();
        if i > 0 {
            b = b.min(t.elapsed().as_secs_f64());
        }
    }
    b
}

fn main() -> anyhow::Result<()> {
    let name = std::env::args().nth(1);
    let (choice, base) = relata_train::device::select_device(name.as_deref())?;
    println!("device: {choice:?}");
    println!(
        "| conv (c_in-c_out-k/s-input) | conv2d fwd (s) | relata path fwd (s) | conv2d fwd+bwd (s) | relata path fwd+bwd (s) | max abs diff |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (cin, cout, k, s, hw) in CASES {
        let p = k / 2;
        let ad = base.clone().autodiff();
        let conv = Conv2dConfig::new([cin, cout], [k, k])
            .with_stride([s, s])
            .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
            .with_bias(false)
            .init(&ad);
        let x = Tensor::<4>::random([16, cin, hw, hw], Distribution::Normal(0.0, 1.0), &ad);
        let diff = (conv.forward(x.clone()) - conv2d(&conv, x.clone()))
            .abs()
            .max()
            .into_scalar::<f32>();
        let fb = best(5, || {
            let xg = x.clone().require_grad();
            drop(conv.forward(xg).sum().backward());
        });
        let ib = best(5, || {
            let xg = x.clone().require_grad();
            drop(conv2d(&conv, xg).sum().backward());
        });
        let xi = Tensor::<4>::random([16, cin, hw, hw], Distribution::Normal(0.0, 1.0), &base);
        let convi = Conv2dConfig::new([cin, cout], [k, k])
            .with_stride([s, s])
            .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
            .with_bias(false)
            .init(&base);
        let ff = best(5, || {
            let _ = convi.forward(xi.clone()).into_data();
        });
        let fi = best(5, || {
            let _ = conv2d(&convi, xi.clone()).into_data();
        });
        println!(
            "| {cin}-{cout}-{k}/{s}-{hw} | {ff:.4} | {fi:.4} | {fb:.4} | {ib:.4} | {diff:.2e} |"
        );
    }
    Ok(())
}
