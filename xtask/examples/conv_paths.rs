//! Which convolution path is faster (docs/performance.md, "1×1 convolutions as matrix
//! products"): burn's `conv2d` against the same convolution built from tensor ops, forward and
//! forward + backward under autodiff, at ResNet-18/50 shapes (batch 16, 112×112 input), on flex
//! or on any compiled device named as the argument (`tch` needs xtask built with `--features tch`).
//!
//! - 1×1 kernels: `relata_backbone::resnet::conv_forward` (a subsampling and one batched
//!   matrix product), the path the ResNets take when training; on a plain (inference) device
//!   `conv_forward` keeps `conv2d`, so its forward column there is `conv2d` again — measured
//!   before that choice: 64→256 at 28² took 20 ms as a product against `conv2d`'s 6 ms;
//! - larger kernels: im2col from k² strided slices and one GEMM — measured, not adopted (it wins
//!   only on layer4's 7×7 maps and loses on the stem and the strided 3×3).
//!
//! ```text
//! cargo run -p xtask --example conv_paths            # flex
//! cargo run -p xtask --features tch --example conv_paths -- tch
//! ```

use std::time::Instant;

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Distribution, Slice, Tensor};
use relata_backbone::resnet::conv_forward;
use relata_train::device::DeviceChoice;

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

/// im2col from k² strided slices of the padded input, then one `[C_out × C·k²]` GEMM.
fn im2col_conv(x: Tensor<4>, w: Tensor<4>, stride: usize, pad: usize) -> Tensor<4> {
    let [n, c, h, wd] = x.dims();
    let [cout, _, k, _] = w.dims();
    let ho = (h + 2 * pad - k) / stride + 1;
    let wo = (wd + 2 * pad - k) / stride + 1;
    // [C, N, H, W], padded.
    let xp = x.permute([1, 0, 2, 3]);
    let xp = if pad > 0 {
        xp.pad([(pad, pad), (pad, pad)], 0.0)
    } else {
        xp
    };
    let mut cols = Vec::with_capacity(k * k);
    for i in 0..k {
        for j in 0..k {
            let si = Slice::new(
                i as isize,
                Some((i + stride * (ho - 1) + 1) as isize),
                stride as isize,
            );
            let sj = Slice::new(
                j as isize,
                Some((j + stride * (wo - 1) + 1) as isize),
                stride as isize,
            );
            cols.push(xp.clone().slice([Slice::full(), Slice::full(), si, sj]));
        }
    }
    // [C, k*k, N, Ho, Wo] → [C*k*k, N*Ho*Wo]
    let cols: Tensor<5> = Tensor::stack(cols, 1);
    let cols = cols.reshape([c * k * k, n * ho * wo]);
    let y = w.reshape([cout, c * k * k]).matmul(cols);
    y.reshape([cout, n, ho, wo]).permute([1, 0, 2, 3])
}

/// `conv_forward` for 1×1 kernels (it reads the module's weight), im2col for the others.
fn relata_path(conv: &Conv2d, x: Tensor<4>, w: Tensor<4>, stride: usize, pad: usize) -> Tensor<4> {
    if conv.kernel_size == [1, 1] {
        conv_forward(conv, x)
    } else {
        im2col_conv(x, w, stride, pad)
    }
}

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
    // im2col's stepped slices: burn-tch cannot take their backward (`slice_assign` fails).
    let im2col_runs = !matches!(choice, DeviceChoice::Tch | DeviceChoice::TchCuda(_));
    for (cin, cout, k, s, hw) in CASES {
        if k > 1 && !im2col_runs {
            println!(
                "| {cin}-{cout}-{k}/{s}-{hw} | skipped: im2col's stepped slices have no tch backward | | | | |"
            );
            continue;
        }
        let p = k / 2;
        let ad = base.clone().autodiff();
        let conv = Conv2dConfig::new([cin, cout], [k, k])
            .with_stride([s, s])
            .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
            .with_bias(false)
            .init(&ad);
        let x = Tensor::<4>::random([16, cin, hw, hw], Distribution::Normal(0.0, 1.0), &ad);
        let w = conv.weight.val();
        let diff = (conv.forward(x.clone()) - relata_path(&conv, x.clone(), w.clone(), s, p))
            .abs()
            .max()
            .into_scalar::<f32>();
        let fb = best(5, || {
            let xg = x.clone().require_grad();
            drop(conv.forward(xg).sum().backward());
        });
        let ib = best(5, || {
            let xg = x.clone().require_grad();
            let wg = w.clone().require_grad();
            drop(relata_path(&conv, xg, wg, s, p).sum().backward());
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
            let _ = relata_path(&convi, xi.clone(), convi.weight.val(), s, p).into_data();
        });
        println!(
            "| {cin}-{cout}-{k}/{s}-{hw} | {ff:.4} | {fi:.4} | {fb:.4} | {ib:.4} | {diff:.2e} |"
        );
    }
    Ok(())
}
