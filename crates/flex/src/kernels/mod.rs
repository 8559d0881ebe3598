//! relata's own kernels for the `flex` backend, for the ResNet ops where burn-flex 0.22 is
//! slowest against PyTorch (docs/notes/2026-11-performance-log.md): [`conv`] (every convolution), [`pool`]
//! (max pooling's backward) and [`norm`] (batch normalisation, training and inference).
//!
//! How they plug in: burn's `extension` feature exposes a tensor's backend primitive
//! (`Tensor::try_into_primitive::<Flex>()`, or `::<Autodiff<Flex>>()` under autodiff) and
//! burn-autodiff's `Backward` trait, so an op computes on `FlexTensor` buffers directly and
//! registers its own backward node. Each entry point hands its inputs back untouched when they
//! are not f32 tensors on a flex device (autodiff without gradient checkpointing, or plain), and
//! the caller falls back to burn's op.

pub(crate) mod activation;
pub(crate) mod conv;
mod direct;
pub(crate) mod norm;
pub(crate) mod pool;

use burn::backend::DispatchDevice;
use burn::backend::flex::FlexTensor;
use burn::tensor::TensorData;
use rayon::prelude::*;

/// Kernel size, stride and padding (`[top, left, bottom, right]`) of a sliding-window op
/// (dilation 1): a convolution or a max pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowGeometry {
    /// `[k_h, k_w]`.
    pub kernel: [usize; 2],
    /// `[s_h, s_w]`.
    pub stride: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub padding: [usize; 4],
}

impl WindowGeometry {
    /// `[H_out, W_out]` on an `[h, w]` map (floor rounding), or `None` for a zero stride or a
    /// padded map smaller than the kernel.
    fn output_size(&self, [h, w]: [usize; 2]) -> Option<[usize; 2]> {
        let ([k_h, k_w], [s_h, s_w]) = (self.kernel, self.stride);
        let [top, left, bottom, right] = self.padding;
        let (h_pad, w_pad) = (h + top + bottom, w + left + right);
        if s_h == 0 || s_w == 0 || h_pad < k_h || w_pad < k_w {
            return None;
        }
        Some([(h_pad - k_h) / s_h + 1, (w_pad - k_w) / s_w + 1])
    }
}

/// Output positions `[start, end)` along one axis of an output of `out` where kernel position
/// `k` reads inside an input of `size` (padding `pad` before it, stride `s`):
/// `o·s + k − pad` in `[0, size)`. im2col zeroes the others (`conv`), the per-tap products
/// (`conv::taps`) and the batch-lane kernels (`direct::lanes`) skip them.
fn valid_outputs(k: usize, pad: usize, s: usize, size: usize, out: usize) -> (usize, usize) {
    // First output with o·s + k ≥ pad.
    let first = pad.saturating_sub(k).div_ceil(s);
    // One past the last with o·s + k − pad < size.
    let end = if size + pad > k {
        ((size + pad - k - 1) / s + 1).min(out)
    } else {
        0
    };
    (first.min(end), end)
}

/// The tensor's elements in row-major order (a copy only when it is a strided view).
fn contiguous(t: &FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t.clone()
    } else {
        t.to_contiguous()
    }
}

/// The f32 elements of a tensor made contiguous by [`contiguous`].
fn elements(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("relata_flex: tensors are made contiguous f32 first")
}

/// Runs `f` with `N` f32 work buffers of lengths `lens`, kept per thread between calls.
///
/// Why: the convolution's patch matrices are megabytes per call; a fresh `vec![0.0; n]` costs
/// a memset and, when the allocator hands back unmapped memory, a page fault per 4 KiB —
/// together about 4% of a ResNet training step. The buffers' contents are whatever an earlier
/// call left: callers write every element they read. A nested call on the same thread (none
/// today) would find the buffers taken and allocate its own.
fn with_work_buffers<const N: usize, R>(
    lens: [usize; N],
    f: impl FnOnce([&mut [f32]; N]) -> R,
) -> R {
    thread_local! {
        static BUFFERS: std::cell::Cell<Vec<Vec<f32>>> = const { std::cell::Cell::new(Vec::new()) };
    }
    let mut buffers = BUFFERS.take();
    if buffers.len() < N {
        buffers.resize_with(N, Vec::new);
    }
    for (buffer, &len) in buffers.iter_mut().zip(&lens) {
        if buffer.len() < len {
            buffer.resize(len, 0.0);
        }
    }
    let mut slices = buffers.iter_mut().zip(lens).map(|(b, len)| &mut b[..len]);
    let result = f(std::array::from_fn(|_| {
        slices.next().expect("N buffers were made above")
    }));
    BUFFERS.set(buffers);
    result
}

/// `len` zeros, written by rayon's threads in chunks.
///
/// Why: `vec![0.0; len]` zeroes on the calling thread while the others wait. Once freed memory
/// stays in the process ([`crate::retain_freed_memory`]) the allocator cannot hand out fresh
/// zero pages, so every op's output buffer — up to 13 MB in a ResNet-18 step at 112² — would
/// be a serial memset.
fn zeros(len: usize) -> Vec<f32> {
    /// Below this (256 KiB) one thread zeroes faster than rayon hands out the work.
    const CHUNK: usize = 1 << 16;
    if len <= CHUNK {
        return vec![0.0; len];
    }
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(CHUNK)
        .for_each(|chunk| chunk.fill(std::mem::MaybeUninit::new(0.0)));
    // SAFETY: the loop above initialised all `len` elements.
    unsafe { out.set_len(len) };
    out
}

/// `len` values made by rayon's threads in chunks of `chunk` (the last may be shorter), at
/// least `min_chunks` per task: chunk `i` is zeroed and handed to `fill(i, chunk)` at once.
///
/// Why: [`zeros`] followed by a pass that writes the buffer sends it through memory twice;
/// zeroed here, a chunk of a row or plane is still in cache when `fill` writes (or adds into)
/// it. The batch-norm and pooling outputs and gradients are ~100 MB per ResNet-18 training
/// step at 112², and the separate zeroing was ~1.8% of the step.
fn par_filled<T: Copy + Default + Send + Sync>(
    len: usize,
    chunk: usize,
    min_chunks: usize,
    fill: impl Fn(usize, &mut [T]) + Sync,
) -> Vec<T> {
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .with_min_len(min_chunks.max(1))
        .enumerate()
        .for_each(|(i, values)| fill(i, zeroed(values)));
    // SAFETY: `zeroed` initialised each of the `len` elements above (a panic in `fill` ends
    // the function before this line, and the vector is dropped empty).
    unsafe { out.set_len(len) };
    out
}

/// `values` initialised to `T::default()`, as an initialised slice.
fn zeroed<T: Copy + Default>(values: &mut [std::mem::MaybeUninit<T>]) -> &mut [T] {
    for value in values.iter_mut() {
        value.write(T::default());
    }
    // SAFETY: every element was written above, and `MaybeUninit<T>` has `T`'s layout.
    unsafe { &mut *(values as *mut [std::mem::MaybeUninit<T>] as *mut [T]) }
}

/// The element-wise sum of `parts` (all of one length; empty for no parts), in parallel
/// chunks: per-thread partial results (the weight gradient's) are megabytes at layer4
/// (512 × 4,608), and adding them on one thread was a serial pass per layer.
fn sum_parts(parts: Vec<Vec<f32>>) -> Vec<f32> {
    let mut parts = parts.into_iter();
    let Some(mut total) = parts.next() else {
        return Vec::new();
    };
    let rest: Vec<Vec<f32>> = parts.collect();
    const CHUNK: usize = 1 << 14;
    total
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(i, chunk)| {
            for part in &rest {
                for (a, b) in chunk.iter_mut().zip(&part[i * CHUNK..]) {
                    *a += b;
                }
            }
        });
    total
}

/// A flex tensor of `values` with `shape` (an array or a `Vec` of dimensions).
fn tensor(values: Vec<f32>, shape: impl Into<Vec<usize>>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.into()))
}

/// Is `device` a `flex` device (with autodiff or without), and is it autodiff?
fn flex_device(device: &burn::tensor::Device) -> Option<bool> {
    match device.as_dispatch() {
        DispatchDevice::Flex(_) => Some(false),
        DispatchDevice::Autodiff(_) => matches!(
            device.as_dispatch().clone().inner(),
            DispatchDevice::Flex(_)
        )
        .then_some(true),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_outputs_keep_the_tap_inside_the_map() {
        // 3 taps, padding 1.
        assert_eq!(valid_outputs(0, 1, 1, 4, 4), (1, 4));
        assert_eq!(valid_outputs(1, 1, 1, 4, 4), (0, 4));
        assert_eq!(valid_outputs(2, 1, 1, 4, 4), (0, 3));
        // A one-pixel map: only the centre tap reads inside it.
        assert_eq!(valid_outputs(0, 1, 1, 1, 1), (1, 1));
        assert_eq!(valid_outputs(1, 1, 1, 1, 1), (0, 1));
        assert_eq!(valid_outputs(2, 1, 1, 1, 1), (0, 0));
        // Stride 2 on 7 (4 outputs: inputs −1..7 by 2) and 8 (4 outputs).
        assert_eq!(valid_outputs(0, 1, 2, 7, 4), (1, 4));
        assert_eq!(valid_outputs(2, 1, 2, 7, 4), (0, 3));
        assert_eq!(valid_outputs(2, 1, 2, 8, 4), (0, 4));
        // The stem: 7 taps, padding 3, stride 2 on 112 (56 outputs).
        assert_eq!(valid_outputs(0, 3, 2, 112, 56), (2, 56));
        assert_eq!(valid_outputs(6, 3, 2, 112, 56), (0, 55));
    }
}
