//! Minimal reproduction for an upstream report to burn (docs/upstream/flex-conv.md): the three
//! pieces of a convolution's training step on `flex`, one at a time, at ResNet-18 shapes (batch
//! 16, 112×112 input). Self-contained — it uses only `burn` (0.22.1 with `flex`, `rayon`,
//! `simd`), so it can be pasted into a new crate as it is.
//!
//! ```text
//! cargo run -p xtask --example flex_conv_repro           # flex, best of 10
//! python xtask/examples/flex_conv_repro.py 2             # PyTorch, same shapes, 2 threads
//! ```
//!
//! - forward: `conv2d` (flex: im2col + GEMM);
//! - input gradient: what burn-autodiff calls for it — burn-backend's default
//!   `conv2d_x_backward`, i.e. `conv_transpose2d(grad, weight)` (flex: a direct loop nest,
//!   `conv_transpose3d_impl`, no GEMM);
//! - weight gradient: burn-backend's default `conv2d_weight_backward`, i.e. a `conv2d` of the
//!   input with batch and channels swapped, the output gradient as an H_out × W_out kernel
//!   dilated by the stride.

use std::time::Instant;

use burn::tensor::module::{conv_transpose2d, conv2d, conv2d_weight_backward};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Device, Distribution, Tensor};

/// `(c_in, c_out, kernel, stride, input side)`: ResNet-18's stem and stages at 112×112.
const CASES: [(usize, usize, usize, usize, usize); 5] = [
    (3, 64, 7, 2, 112),
    (64, 64, 3, 1, 28),
    (128, 128, 3, 1, 14),
    (256, 256, 3, 1, 7),
    (64, 128, 3, 2, 28),
];
const BATCH: usize = 16;
const REPS: usize = 10;

/// Best of `REPS` after one warm-up.
fn best(mut f: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for i in 0..=REPS {
        let t = Instant::now();
        f();
        if i > 0 {
            best = best.min(t.elapsed().as_secs_f64());
        }
    }
    best
}

fn main() {
    let device = Device::flex();
    println!("| conv (c_in→c_out, k/s, input) | forward (s) | input grad (s) | weight grad (s) |");
    println!("| --- | --- | --- | --- |");
    for (cin, cout, k, s, hw) in CASES {
        let p = k / 2;
        let out = (hw + 2 * p - k) / s + 1;
        // The output padding that makes conv_transpose2d give back the input's size.
        let pad_out = (hw + 2 * p - k) % s;
        let x = Tensor::<4>::random([BATCH, cin, hw, hw], Distribution::Default, &device);
        let w = Tensor::<4>::random([cout, cin, k, k], Distribution::Default, &device);
        let g = Tensor::<4>::random([BATCH, cout, out, out], Distribution::Default, &device);
        let conv = ConvOptions::new([s, s], [p, p], [1, 1], 1);
        let fwd = best(|| {
            let _ = conv2d(x.clone(), w.clone(), None, conv.clone()).into_data();
        });
        let dx = best(|| {
            let t = ConvTransposeOptions::new([s, s], [p, p], [pad_out, pad_out], [1, 1], 1);
            let _ = conv_transpose2d(g.clone(), w.clone(), None, t).into_data();
        });
        let dw = best(|| {
            let _ =
                conv2d_weight_backward(x.clone(), w.clone(), g.clone(), conv.clone()).into_data();
        });
        println!("| {cin}→{cout}, {k}×{k}/{s}, {hw}² | {fwd:.4} | {dx:.4} | {dw:.4} |");
    }
}
