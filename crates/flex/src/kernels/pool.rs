//! 2-D max pooling on the `flex` backend: the forward keeps each output's argmax, the backward
//! adds the output gradient at those positions (see [`super`]).
//!
//! Why: burn-flex's max pool with its backward took 2.3× PyTorch's time on ResNet's stem pool
//! (3×3/2 over 64 × 56², batch 16; docs/notes/2026-11-performance-log.md), about 5% of a ResNet-18 training step
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

use super::{WindowGeometry, contiguous, elements, flex_device, par_filled, tensor, zeroed};

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
        let [top, left, bottom, right] = geometry.padding;
        // Every window must hold at least one pixel of the image: padding under the kernel.
        if k_h == 0 || k_w == 0 || top.max(bottom) >= k_h || left.max(right) >= k_w {
            return None;
        }
        let [h_out, w_out] = geometry.output_size([h, w])?;
        Some(Self {
            planes: n * c,
            h,
            w,
            h_out,
            w_out,
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
    let k_h = d.geometry.kernel[0];
    let s_h = d.geometry.stride[0];
    let top = d.geometry.padding[0];
    // Both outputs zeroed plane by plane right before the plane is written, in cache (as
    // `par_filled` does for one output).
    let len = d.planes * plane_out;
    let (mut out, mut argmax) = (Vec::with_capacity(len), Vec::with_capacity(len));
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(plane_out)
        .zip(argmax.spare_capacity_mut()[..len].par_chunks_mut(plane_out))
        .enumerate()
        .for_each(|(p, (out, argmax))| {
            let (out, argmax): (&mut [f32], &mut [u32]) = (zeroed(out), zeroed(argmax));
            let plane = &xs[p * plane_in..(p + 1) * plane_in];
            // Each input row's maxima over the window's columns, for every output column
            // (values and positions as separate arrays, so the combining loops vectorise);
            // then, per output row, the window's rows combined in order.
            let mut values = vec![f32::NEG_INFINITY; d.h * d.w_out];
            let mut positions = vec![0u32; d.h * d.w_out];
            let mut columns = (Vec::new(), Vec::new());
            for (y, (val, pos)) in values
                .chunks_mut(d.w_out)
                .zip(positions.chunks_mut(d.w_out))
                .enumerate()
            {
                let row = &plane[y * d.w..(y + 1) * d.w];
                row_maxima(row, (y * d.w) as u32, d, (val, pos), &mut columns);
            }
            for oy in 0..d.h_out {
                let (y0, y1) = Dims::window(oy, s_h, top, k_h, d.h);
                let line = oy * d.w_out..(oy + 1) * d.w_out;
                let (val, pos) = (&mut out[line.clone()], &mut argmax[line]);
                val.copy_from_slice(&values[y0 * d.w_out..(y0 + 1) * d.w_out]);
                pos.copy_from_slice(&positions[y0 * d.w_out..(y0 + 1) * d.w_out]);
                for y in y0 + 1..y1 {
                    let next = y * d.w_out..(y + 1) * d.w_out;
                    let candidates = values[next.clone()].iter().zip(&positions[next]);
                    for ((v, p), (&cv, &cp)) in val.iter_mut().zip(pos.iter_mut()).zip(candidates) {
                        (*v, *p) = keep_first_max((*v, *p), (cv, cp));
                    }
                }
            }
        });
    // SAFETY: `zeroed` initialised all `len` elements of both (a panic above ends the function
    // before this line, and the vectors are dropped empty).
    unsafe {
        out.set_len(len);
        argmax.set_len(len);
    }
    (out, argmax)
}

/// For one input row (its first pixel at plane position `offset`), each output column's
/// maximum over the window's columns and its plane position. ResNet's stem pool (3 wide,
/// stride 2, one column of padding on the left) takes a path whose inner loop reads three
/// contiguous arrays — the row's odd, even and odd columns — and vectorises.
/// `columns` is scratch for the row's even and odd columns, reused from row to row.
fn row_maxima(
    row: &[f32],
    offset: u32,
    d: &Dims,
    (values, positions): (&mut [f32], &mut [u32]),
    (even, odd): &mut (Vec<f32>, Vec<f32>),
) {
    let g = &d.geometry;
    let generic = |ox: usize| {
        let (x0, x1) = Dims::window(ox, g.stride[1], g.padding[1], g.kernel[1], d.w);
        let mut best = (row[x0], offset + x0 as u32);
        for (x, &v) in row.iter().enumerate().take(x1).skip(x0 + 1) {
            best = keep_first_max(best, (v, offset + x as u32));
        }
        best
    };
    if g.kernel[1] != 3 || g.stride[1] != 2 || g.padding[1] != 1 {
        for (ox, (v, p)) in values.iter_mut().zip(positions.iter_mut()).enumerate() {
            (*v, *p) = generic(ox);
        }
        return;
    }
    // Output ox reads columns 2ox − 1, 2ox, 2ox + 1: odd[ox − 1], even[ox], odd[ox].
    even.resize(row.len().div_ceil(2), 0.0);
    odd.resize(row.len() / 2, 0.0);
    for (e, &v) in even.iter_mut().zip(row.iter().step_by(2)) {
        *e = v;
    }
    for (o, &v) in odd.iter_mut().zip(row.iter().skip(1).step_by(2)) {
        *o = v;
    }
    // Outputs with all three columns inside the row: 1 ≤ ox and 2ox + 1 < w.
    let full = 1..(d.w / 2).min(d.w_out).max(1);
    for ox in full.clone() {
        let first = (odd[ox - 1], offset + 2 * ox as u32 - 1);
        let best = keep_first_max(first, (even[ox], offset + 2 * ox as u32));
        (values[ox], positions[ox]) = keep_first_max(best, (odd[ox], offset + 2 * ox as u32 + 1));
    }
    for ox in (0..d.w_out).filter(|ox| !full.contains(ox)) {
        (values[ox], positions[ox]) = generic(ox);
    }
}

/// Of a running maximum `best` and a later candidate (in row-major order), the one to keep:
/// the candidate when it is greater, or when it is the first NaN (a NaN wins over any number,
/// and a NaN already kept is never replaced: comparisons with it are false). So ties keep the
/// first position, as PyTorch.
///
/// Why bit masks rather than `if`: on random activations the comparison is a coin flip, and
/// the compiler turned selects into branches — max pool's forward ran at ~90 cycles per output
/// (3×3 window), mostly mispredictions.
#[inline(always)]
fn keep_first_max(best: (f32, u32), candidate: (f32, u32)) -> (f32, u32) {
    let (v, b) = (candidate.0, best.0);
    let take = (v > b) | (v.is_nan() & !b.is_nan());
    let mask = (take as u32).wrapping_neg();
    let value = f32::from_bits(b.to_bits() ^ ((b.to_bits() ^ v.to_bits()) & mask));
    (value, best.1 ^ ((best.1 ^ candidate.1) & mask))
}

/// The input gradient: each output's gradient added at its argmax.
fn backward(grad: &FlexTensor, argmax: &[u32], d: &Dims) -> Vec<f32> {
    let grad = contiguous(grad);
    let gs = elements(&grad);
    let (plane_in, plane_out) = (d.h * d.w, d.h_out * d.w_out);
    par_filled(d.planes * plane_in, plane_in, 1, |p, dx| {
        let range = p * plane_out..(p + 1) * plane_out;
        for (&g, &i) in gs[range.clone()].iter().zip(&argmax[range]) {
            dx[i as usize] += g;
        }
    })
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

    /// The stem pool's vectorised path (3 wide, stride 2, left padding 1) and the generic one
    /// against the definition — the first maximum in row-major order, the first NaN over any
    /// number — on values with many ties and a few NaNs, every width from 1 to 9.
    #[test]
    fn every_path_keeps_the_first_maximum() {
        for (k, s, p) in [(3, 2, 1), (3, 2, 0), (2, 2, 0), (3, 1, 1)] {
            let g = WindowGeometry {
                kernel: [k, k],
                stride: [s, s],
                padding: [p; 4],
            };
            for w in 1..=9usize {
                let h = 5;
                let Some(d) = Dims::new([1, 2, h, w], g) else {
                    continue;
                };
                // Ties everywhere (values in {0, 1, 2}), a NaN every 7th pixel of plane 1.
                let xs: Vec<f32> = (0..2 * h * w)
                    .map(|i| match i {
                        i if i >= h * w && i % 7 == 3 => f32::NAN,
                        i => ((i * 5 + i / 3) % 3) as f32,
                    })
                    .collect();
                let (out, argmax) = forward(&tensor(xs.clone(), [1, 2, h, w]), &d);
                for plane in 0..2 {
                    let px = &xs[plane * h * w..(plane + 1) * h * w];
                    for oy in 0..d.h_out {
                        for ox in 0..d.w_out {
                            let (y0, y1) = Dims::window(oy, s, p, k, h);
                            let (x0, x1) = Dims::window(ox, s, p, k, w);
                            let window = (y0..y1).flat_map(|y| (x0..x1).map(move |x| y * w + x));
                            let first_nan = window.clone().find(|&i| px[i].is_nan());
                            let best = window.clone().filter(|&i| !px[i].is_nan()).fold(
                                None,
                                |b: Option<usize>, i| match b {
                                    Some(j) if px[j] >= px[i] => Some(j),
                                    _ => Some(i),
                                },
                            );
                            let want = first_nan.or(best).unwrap();
                            let o = (plane * d.h_out + oy) * d.w_out + ox;
                            assert_eq!(
                                argmax[o] as usize, want,
                                "k{k} s{s} p{p} w{w} ({oy}, {ox})"
                            );
                            assert!(out[o] == px[want] || (out[o].is_nan() && px[want].is_nan()));
                        }
                    }
                }
            }
        }
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
