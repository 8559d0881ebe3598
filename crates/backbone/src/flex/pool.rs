//! 2-D max pooling on the `flex` backend: the forward keeps each output's argmax, the backward
//! adds the output gradient at those positions (see [`super`]).
//!
//! Why: burn-flex's max pool with its backward took 2.3× PyTorch's time on ResNet's stem pool
//! (3×3/2 over 64 × 56², batch 16; docs/performance.md), about 5% of a ResNet-18 training step
//! at 112². Here one pass per channel plane computes maxima and their positions, and the
//! backward is one scatter per plane (dilation 1, floor rounding of the output size). Ties go to the first position in row-major order, and a
//! NaN wins over any number, as in PyTorch.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::{DType, Tensor};
use rayon::prelude::*;

use super::{WindowGeometry, contiguous, elements, flex_device, tensor};

/// Sizes of one pooling call.
#[derive(Debug, Clone, Copy)]
struct Dims {
    planes: usize,
    h: usize,
    w: usize,
    h_out: usize,
    w_out: usize,
    geometry: WindowGeometry,
}

impl Dims {
    fn new([n, c, h, w]: [usize; 4], geometry: WindowGeometry) -> Option<Self> {
        let [k_h, k_w] = geometry.kernel;
        let [s_h, s_w] = geometry.stride;
        let [top, left, bottom, right] = geometry.padding;
        // Every window must hold at least one pixel of the image: padding under the kernel.
        if k_h == 0 || k_w == 0 || s_h == 0 || s_w == 0 || top.max(bottom) >= k_h {
            return None;
        }
        if left.max(right) >= k_w || h + top + bottom < k_h || w + left + right < k_w {
            return None;
        }
        Some(Self {
            planes: n * c,
            h,
            w,
            h_out: (h + top + bottom - k_h) / s_h + 1,
            w_out: (w + left + right - k_w) / s_w + 1,
            geometry,
        })
    }

    /// The input rows (or columns) window `o` covers along one axis, clipped to the image.
    fn window(o: usize, stride: usize, pad: usize, k: usize, size: usize) -> (usize, usize) {
        let start = (o * stride).saturating_sub(pad);
        let end = (o * stride + k).saturating_sub(pad).min(size);
        (start, end)
    }
}

/// Maxima `[planes × H_out·W_out]` and their positions within each plane.
fn forward(x: &FlexTensor, d: &Dims) -> (Vec<f32>, Vec<u32>) {
    let x = contiguous(x);
    let xs = elements(&x);
    let (plane_in, plane_out) = (d.h * d.w, d.h_out * d.w_out);
    let [k_h, k_w] = d.geometry.kernel;
    let [s_h, s_w] = d.geometry.stride;
    let [top, left, ..] = d.geometry.padding;
    let mut out = vec![0.0f32; d.planes * plane_out];
    let mut argmax = vec![0u32; d.planes * plane_out];
    out.par_chunks_mut(plane_out)
        .zip(argmax.par_chunks_mut(plane_out))
        .enumerate()
        .for_each(|(p, (out, argmax))| {
            let plane = &xs[p * plane_in..(p + 1) * plane_in];
            for oy in 0..d.h_out {
                let (y0, y1) = Dims::window(oy, s_h, top, k_h, d.h);
                for ox in 0..d.w_out {
                    let (x0, x1) = Dims::window(ox, s_w, left, k_w, d.w);
                    let mut best = (f32::NEG_INFINITY, y0 * d.w + x0);
                    for y in y0..y1 {
                        for (i, &v) in plane[y * d.w + x0..y * d.w + x1].iter().enumerate() {
                            if v > best.0 || v.is_nan() {
                                best = (v, y * d.w + x0 + i);
                                if v.is_nan() {
                                    break;
                                }
                            }
                        }
                        if best.0.is_nan() {
                            break;
                        }
                    }
                    out[oy * d.w_out + ox] = best.0;
                    argmax[oy * d.w_out + ox] = best.1 as u32;
                }
            }
        });
    (out, argmax)
}

/// The input gradient: each output's gradient added at its argmax.
fn backward(grad: &FlexTensor, argmax: &[u32], d: &Dims) -> Vec<f32> {
    let grad = contiguous(grad);
    let gs = elements(&grad);
    let (plane_in, plane_out) = (d.h * d.w, d.h_out * d.w_out);
    let mut dx = vec![0.0f32; d.planes * plane_in];
    dx.par_chunks_mut(plane_in).enumerate().for_each(|(p, dx)| {
        let range = p * plane_out..(p + 1) * plane_out;
        for (&g, &i) in gs[range.clone()].iter().zip(&argmax[range]) {
            dx[i as usize] += g;
        }
    });
    dx
}

/// The pool's node in the autodiff graph.
#[derive(Debug)]
struct MaxPoolBackward;

impl Backward<Flex, 1> for MaxPoolBackward {
    type State = (Arc<Vec<u32>>, Dims, [usize; 4]);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (argmax, dims, shape) = ops.state;
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, tensor(backward(&grad, &argmax, &dims), shape));
        }
    }
}

/// Max pooling of `x` (`[N, C, H, W]`) by relata's kernel when `x` is an f32 tensor on a
/// `flex` device (autodiff without gradient checkpointing, or plain); otherwise `x` comes back
/// unchanged for burn's `max_pool2d`.
#[allow(clippy::result_large_err)] // the tensor is moved in and, unused, handed back.
pub fn try_max_pool2d(x: Tensor<4>, geometry: WindowGeometry) -> Result<Tensor<4>, Tensor<4>> {
    let Some(autodiff) = flex_device(&x.device()) else {
        return Err(x);
    };
    let shape = x.dims();
    let Some(dims) = Dims::new(shape, geometry) else {
        return Err(x);
    };
    if x.dtype() != DType::F32 {
        return Err(x);
    }
    let out_shape = [shape[0], shape[1], dims.h_out, dims.w_out];
    if !autodiff {
        let Ok(xp) = x.clone().try_into_primitive::<Flex>() else {
            return Err(x);
        };
        let (out, _) = forward(&xp, &dims);
        return Ok(Tensor::from_primitive::<Flex>(tensor(out, out_shape)));
    }
    type Ad = Autodiff<Flex, NoCheckpointing>;
    let Ok(xa) = x.clone().try_into_primitive::<Ad>() else {
        return Err(x);
    };
    let guard = xa.node();
    let (out, argmax) = forward(&xa.into_primitive(), &dims);
    let out = tensor(out, out_shape);
    let out = match MaxPoolBackward
        .prepare::<NoCheckpointing>([guard])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((Arc::new(argmax), dims, shape), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Ok(Tensor::from_primitive::<Ad>(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_clipped_to_the_image() {
        // 3×3/2 with padding 1 on 5 pixels: windows [-1, 2), [1, 4), [3, 6) → clipped.
        assert_eq!(Dims::window(0, 2, 1, 3, 5), (0, 2));
        assert_eq!(Dims::window(1, 2, 1, 3, 5), (1, 4));
        assert_eq!(Dims::window(2, 2, 1, 3, 5), (3, 5));
        let g = WindowGeometry {
            kernel: [3, 3],
            stride: [2, 2],
            padding: [1; 4],
        };
        let d = Dims::new([2, 3, 5, 6], g).unwrap();
        assert_eq!((d.planes, d.h_out, d.w_out), (6, 3, 3));
        // Padding as wide as the kernel would leave windows without a pixel.
        let wide = WindowGeometry {
            padding: [3; 4],
            ..g
        };
        assert!(Dims::new([1, 1, 5, 5], wide).is_none());
    }

    #[test]
    fn first_maximum_wins_and_nan_propagates() {
        let g = WindowGeometry {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0; 4],
        };
        let d = Dims::new([1, 1, 2, 4], g).unwrap();
        let x = tensor(
            vec![1.0, 3.0, 0.0, f32::NAN, 3.0, 2.0, 5.0, 9.0],
            [1, 1, 2, 4],
        );
        let (out, argmax) = forward(&x, &d);
        assert_eq!(out[0], 3.0);
        assert_eq!(argmax[0], 1, "ties go to the first position");
        assert!(out[1].is_nan());
        assert_eq!(argmax[1], 3);
        let grad = tensor(vec![1.0, 2.0], [1, 1, 1, 2]);
        assert_eq!(
            backward(&grad, &argmax, &d),
            vec![0.0, 1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0]
        );
    }
}
