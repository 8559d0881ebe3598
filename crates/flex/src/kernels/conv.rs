//! 2-D convolution on the `flex` backend: relata's own im2col + GEMM kernels, forward and
//! backward, registered with burn's autodiff through the `extension` API (see [`super`]).
//!
//! Why: burn-flex's `conv2d` pays a layout copy (NCHW → NHWC) and per-tile allocations before
//! its GEMMs, and its backward is burn-backend's default: the input gradient as a transposed
//! convolution and the weight gradient as a forward convolution with batch and channels
//! swapped and `H_out × W_out` kernels, i.e. GEMMs with a handful of columns
//! (docs/upstream/flex-conv.md). Here every piece is one GEMM per image on NCHW data with a
//! large inner dimension:
//!
//! - forward: `Y_n = W · cols(X_n)`, `W` as `[C_out × C_in·k_h·k_w]`, `cols(X_n)` the image's
//!   `[C_in·k_h·k_w × H_out·W_out]` patch matrix (im2col);
//! - input gradient: `dX_n = col2im(Wᵀ · dY_n)`;
//! - weight gradient: `dW = Σ_n dY_n · cols(X_n)ᵀ`, one partial sum per worker thread;
//!
//! with the images spread over rayon's threads and each GEMM single-threaded (the same `gemm`
//! crate flex uses). 3×3, stride-1, padding-1 layers take faster paths for all three products:
//! where the machine has AVX-512, on maps above 14 rows `kernels::direct` (no patch matrix) and up
//! to 14 rows `kernels::direct::lanes` for blocks of 16 images (the batch in the vector lanes, the
//! padding skipped; `kernels::direct` for other batches from 10 rows); elsewhere one product per
//! kernel tap over the positions where it reads inside the image (`kernels::conv::taps`). 3×3,
//! stride-2, padding-1 layers with outputs below 10 rows take `kernels::direct::lanes` too (up to
//! 14 rows for the weight gradient); im2col reads the others, and the stem, through phase
//! planes (`Dims::phase_stride`). Gradients that autodiff does not ask for (the input
//! image's) are not computed. Only plain convolutions take this path — f32, groups 1,
//! dilation 1, explicit padding, no bias (a bias is added outside, as a broadcast) — on a
//! `flex` device without gradient checkpointing; [`try_conv2d`] hands everything else back to
//! `conv2d`.
//!
//! For inference, [`try_conv2d_affine`] also applies a per-channel `scale·y + shift` (+ ReLU)
//! to each output row right after its GEMM ([`ChannelAffine`]): a following batch norm with
//! running statistics, folded in by `ops::conv_batch_norm`.

use std::borrow::Cow;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::{DType, Tensor};
use rayon::prelude::*;

use super::direct::{self, Kernel};

mod taps;
use super::{
    WindowGeometry, contiguous, elements, flex_device, sum_parts, tensor, valid_outputs,
    with_work_buffers, zeros,
};

/// The sizes one convolution call works with.
#[derive(Debug, Clone, Copy)]
struct Dims {
    batch: usize,
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
    h_out: usize,
    w_out: usize,
    geometry: WindowGeometry,
}

impl Dims {
    fn new(x: [usize; 4], weight: [usize; 4], geometry: WindowGeometry) -> Option<Self> {
        let [batch, c_in, h, w] = x;
        let [c_out, c_in_w, k_h, k_w] = weight;
        if c_in != c_in_w || [k_h, k_w] != geometry.kernel || batch == 0 || c_out == 0 {
            return None;
        }
        let [h_out, w_out] = geometry.output_size([h, w])?;
        Some(Self {
            batch,
            c_in,
            c_out,
            h,
            w,
            h_out,
            w_out,
            geometry,
        })
    }

    /// A 1×1 kernel at stride 1 without padding: an image is its own patch matrix, so im2col
    /// and col2im are identities and are skipped (ResNet-50's bottlenecks).
    fn is_pointwise(&self) -> bool {
        let g = &self.geometry;
        g.kernel == [1, 1] && g.stride == [1, 1] && g.padding == [0; 4]
    }

    /// Rows of the patch matrix: `C_in · k_h · k_w`.
    fn patch(&self) -> usize {
        self.c_in * self.geometry.kernel[0] * self.geometry.kernel[1]
    }

    fn image(&self) -> usize {
        self.c_in * self.h * self.w
    }

    fn out_pixels(&self) -> usize {
        self.h_out * self.w_out
    }

    /// For kernel column `kx`, the output columns that read inside the image.
    fn valid_columns(&self, kx: usize) -> (usize, usize) {
        let (s, left) = (self.geometry.stride[1], self.geometry.padding[1]);
        valid_outputs(kx, left, s, self.w, self.w_out)
    }

    /// For kernel row `ky`, the output rows that read inside the image.
    fn valid_rows(&self, ky: usize) -> (usize, usize) {
        let (s, top) = (self.geometry.stride[0], self.geometry.padding[0]);
        valid_outputs(ky, top, s, self.h, self.h_out)
    }

    /// The stride `s` when the image splits into `s × s` phase planes as wide as the output
    /// (plane `(py, px)` holds pixel `(s·qy + py, s·qx + px)` at `(qy, qx)`): equal strides,
    /// `W = s · W_out`, and a kernel at least `s` wide each way (so every plane is read; a 1×1
    /// kernel at stride 2 reads a quarter of the image and keeps the strided copies, which
    /// were faster there) — at stride 1 an output as wide as the input (the plane is the
    /// image), at stride 2 ResNet's stem and 3×3 downsampling layers on even maps. Kernel
    /// position `(ky, kx)` then reads one phase plane shifted by one flat offset
    /// ([`Self::phase_shift`]).
    fn phase_stride(&self) -> Option<usize> {
        let [s_h, s_w] = self.geometry.stride;
        let [k_h, k_w] = self.geometry.kernel;
        (s_h == s_w && self.w == s_w * self.w_out && k_h.min(k_w) >= s_w).then_some(s_w)
    }

    /// Rows of each phase plane (see [`Self::phase_stride`]); the planes that reach past the
    /// image's last row hold zeros there.
    fn phase_rows(&self, s: usize) -> usize {
        self.h.div_ceil(s)
    }

    /// Where kernel position `(ky, kx)` reads when [`Self::phase_stride`] applies: patch-matrix
    /// entry `p` is element `p + delta` of phase plane `plane` (`py·s + px`), except in the
    /// output rows and columns outside `rows` and `columns`, where the window reads the
    /// padding (at most `⌈k_w / s⌉` columns per row).
    fn phase_shift(&self, ky: usize, kx: usize) -> Option<PhaseShift> {
        let s = self.phase_stride()?;
        let [top, left, ..] = self.geometry.padding;
        // Input row s·oy + ky − top = s·(oy + a) + py, and the same for columns.
        let (ry, rx) = (ky as isize - top as isize, kx as isize - left as isize);
        let si = s as isize;
        let (a, py) = (ry.div_euclid(si), ry.rem_euclid(si) as usize);
        let (b, px) = (rx.div_euclid(si), rx.rem_euclid(si) as usize);
        let (first_row, end_row) = self.valid_rows(ky);
        let (first, end) = self.valid_columns(kx);
        Some(PhaseShift {
            plane: py * s + px,
            delta: a * self.w_out as isize + b,
            rows: first_row..end_row,
            columns: first..end,
        })
    }

    /// Input row read by output row `oy` at kernel row `ky`, if inside the image.
    fn input_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.geometry.stride[0] + ky)
            .checked_sub(self.geometry.padding[0])
            .filter(|&y| y < self.h)
    }
}

/// See [`Dims::phase_shift`].
struct PhaseShift {
    plane: usize,
    delta: isize,
    rows: std::ops::Range<usize>,
    columns: std::ops::Range<usize>,
}

/// Channel `plane` (`H × W`) as its `s × s` phase planes (`[s·s][phase rows × W_out]`, see
/// [`Dims::phase_stride`]) in `phases`; at stride 1 the plane itself, uncopied.
fn split_phases<'a>(plane: &'a [f32], d: &Dims, s: usize, phases: &'a mut [f32]) -> &'a [f32] {
    if s == 1 {
        return plane;
    }
    let (rows, w_out) = (d.phase_rows(s), d.w_out);
    let phases = &mut phases[..s * s * rows * w_out];
    for (y, line) in plane.chunks(d.w).enumerate() {
        let (qy, py) = (y / s, y % s);
        for px in 0..s {
            let out = &mut phases[((py * s + px) * rows + qy) * w_out..][..w_out];
            for (o, v) in out.iter_mut().zip(line[px..].iter().step_by(s)) {
                *o = *v;
            }
        }
    }
    // The planes of the phases past the image's last row end with a row of zeros.
    let short = d.h % s;
    if short != 0 {
        for plane in phases.chunks_mut(rows * w_out).skip(short * s) {
            plane[(rows - 1) * w_out..].fill(0.0);
        }
    }
    phases
}

/// Floats of the phase-plane scratch [`im2col`] and [`col2im`] need (none at stride 1).
fn phase_scratch(d: &Dims) -> usize {
    match d.phase_stride() {
        Some(s) if s > 1 => s * s * d.phase_rows(s) * d.w_out,
        _ => 0,
    }
}

/// Writes image `x` (`[C_in × H × W]`) as its patch matrix `[C_in·k_h·k_w × H_out·W_out]`,
/// whose rows start `row_stride` apart in `cols` (several images side by side share rows);
/// `phases` is scratch of [`phase_scratch`] floats.
///
/// Where [`Dims::phase_stride`] applies, each patch-matrix row is one copy of a shifted phase
/// plane and zeros in the padding; at stride 2 that replaced a strided copy per output row,
/// which was a third of the stem's time (docs/notes/2026-11-performance-log.md).
fn im2col(x: &[f32], d: &Dims, cols: &mut [f32], row_stride: usize, phases: &mut [f32]) {
    let [k_h, k_w] = d.geometry.kernel;
    let (s, left) = (d.geometry.stride[1], d.geometry.padding[1]);
    let (pixels, w_out) = (d.out_pixels(), d.w_out);
    for c in 0..d.c_in {
        let plane = &x[c * d.h * d.w..(c + 1) * d.h * d.w];
        let split = d
            .phase_stride()
            .map(|s| (split_phases(plane, d, s, phases), d.phase_rows(s) * w_out));
        for ky in 0..k_h {
            for kx in 0..k_w {
                let row = &mut cols[((c * k_h + ky) * k_w + kx) * row_stride..][..pixels];
                if let (Some((planes, len)), Some(shift)) = (split, d.phase_shift(ky, kx)) {
                    // One copy of the shifted plane, then zeros where the window is in the
                    // padding: whole rows, and the few columns at the ends of each row.
                    let plane = &planes[shift.plane * len..][..len];
                    let rows = shift.rows.clone();
                    let span = flat_span(rows.start * w_out..rows.end * w_out, shift.delta, len);
                    row[..span.start].fill(0.0);
                    row[span.end..].fill(0.0);
                    if !span.is_empty() {
                        let from = span.start.wrapping_add_signed(shift.delta);
                        row[span.clone()].copy_from_slice(&plane[from..from + span.len()]);
                    }
                    zero_padding_columns(row, rows, w_out, shift.columns);
                    continue;
                }
                let (first, end) = d.valid_columns(kx);
                for oy in 0..d.h_out {
                    let out = &mut row[oy * w_out..(oy + 1) * w_out];
                    let Some(y) = d.input_row(oy, ky) else {
                        out.fill(0.0);
                        continue;
                    };
                    let line = &plane[y * d.w..(y + 1) * d.w];
                    out[..first].fill(0.0);
                    out[end..].fill(0.0);
                    let x0 = first * s + kx - left;
                    for (o, v) in out[first..end].iter_mut().zip(line[x0..].iter().step_by(s)) {
                        *o = *v;
                    }
                }
            }
        }
    }
}

/// The part of the flat output range `range` whose shifted positions `p + delta` lie inside a
/// plane of `len` pixels (what [`Dims::phase_shift`]'s copy covers).
fn flat_span(range: std::ops::Range<usize>, delta: isize, len: usize) -> std::ops::Range<usize> {
    let start = range.start.max(delta.min(0).unsigned_abs());
    let end = range.end.min(len.saturating_sub(delta.max(0) as usize));
    start.min(end)..end
}

/// Zeros, in output rows `rows` of a patch-matrix row, the columns outside `valid` (where the
/// window reads the left or right padding).
fn zero_padding_columns(
    row: &mut [f32],
    rows: std::ops::Range<usize>,
    w_out: usize,
    valid: std::ops::Range<usize>,
) {
    if valid.start == 0 && valid.end == w_out {
        return;
    }
    for oy in rows {
        let line = &mut row[oy * w_out..(oy + 1) * w_out];
        line[..valid.start].fill(0.0);
        line[valid.end..].fill(0.0);
    }
}

/// Adds the patch matrix `cols` (rows `row_stride` apart) onto image gradient `dx`
/// (`[C_in × H × W]`, zeroed by the caller): the adjoint of [`im2col`], with the same
/// `phases` scratch. Entries of `cols` that lie in the padding are zeroed on the way (they are
/// the caller's scratch).
fn col2im(cols: &mut [f32], d: &Dims, dx: &mut [f32], row_stride: usize, phases: &mut [f32]) {
    let [k_h, k_w] = d.geometry.kernel;
    let (s, left) = (d.geometry.stride[1], d.geometry.padding[1]);
    let (pixels, w_out) = (d.out_pixels(), d.w_out);
    let phase_stride = d.phase_stride();
    for c in 0..d.c_in {
        let plane = &mut dx[c * d.h * d.w..(c + 1) * d.h * d.w];
        if let Some(s) = phase_stride {
            // The adjoint of the phase split: sums per phase plane (the plane itself at
            // stride 1), then interleaved back onto the image.
            let len = d.phase_rows(s) * w_out;
            let planes: &mut [f32] = if s == 1 {
                &mut *plane
            } else {
                let planes = &mut phases[..s * s * len];
                planes.fill(0.0);
                planes
            };
            for ky in 0..k_h {
                for kx in 0..k_w {
                    let row = &mut cols[((c * k_h + ky) * k_w + kx) * row_stride..][..pixels];
                    let shift = d.phase_shift(ky, kx).expect("phase_stride applies");
                    if shift.columns.is_empty() {
                        continue;
                    }
                    // Entries in the padding columns would land on a neighbouring row's
                    // pixel in the flat add: zero them, then one contiguous add.
                    let rows = shift.rows.clone();
                    zero_padding_columns(row, rows.clone(), w_out, shift.columns);
                    let span = flat_span(rows.start * w_out..rows.end * w_out, shift.delta, len);
                    if !span.is_empty() {
                        let target = &mut planes[shift.plane * len..][..len];
                        let from = span.start.wrapping_add_signed(shift.delta);
                        for (o, v) in target[from..from + span.len()].iter_mut().zip(&row[span]) {
                            *o += v;
                        }
                    }
                }
            }
            if s > 1 {
                merge_phases(&phases[..s * s * len], d, s, plane);
            }
            continue;
        }
        for ky in 0..k_h {
            for kx in 0..k_w {
                let row = &mut cols[((c * k_h + ky) * k_w + kx) * row_stride..][..pixels];
                let (first, end) = d.valid_columns(kx);
                if first == end {
                    continue;
                }
                for oy in 0..d.h_out {
                    let Some(y) = d.input_row(oy, ky) else {
                        continue;
                    };
                    let line = &mut plane[y * d.w..(y + 1) * d.w];
                    let src = &row[oy * w_out + first..oy * w_out + end];
                    let x0 = first * s + kx - left;
                    for (o, v) in line[x0..].iter_mut().step_by(s).zip(src) {
                        *o += v;
                    }
                }
            }
        }
    }
}

/// Adds phase planes `phases` (as [`split_phases`] writes them) onto channel `plane`: the
/// adjoint of the split.
fn merge_phases(phases: &[f32], d: &Dims, s: usize, plane: &mut [f32]) {
    let (rows, w_out) = (d.phase_rows(s), d.w_out);
    for (y, line) in plane.chunks_mut(d.w).enumerate() {
        let (qy, py) = (y / s, y % s);
        for px in 0..s {
            let from = &phases[((py * s + px) * rows + qy) * w_out..][..w_out];
            for (o, v) in line[px..].iter_mut().step_by(s).zip(from) {
                *o += v;
            }
        }
    }
}

/// Writes the patch matrices of images `first..first + count` side by side into `cols` (row
/// stride `count · H_out·W_out`), the right-hand side of one GEMM for the group.
fn group_patches(
    xs: &[f32],
    d: &Dims,
    (first, count): (usize, usize),
    cols: &mut [f32],
    phases: &mut [f32],
) {
    let (pixels, image) = (d.out_pixels(), d.image());
    for g in 0..count {
        let n = first + g;
        im2col(
            &xs[n * image..(n + 1) * image],
            d,
            &mut cols[g * pixels..],
            count * pixels,
            phases,
        );
    }
}

/// `dst (m × n, row-major, row stride dst_rs) (+)= lhs (m × k) · rhs (k × n)`, with
/// `(row stride, column stride)` for both operands; single-threaded.
fn matmul(
    dims: [usize; 3],
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: (&[f32], [usize; 2]),
    rhs: (&[f32], [usize; 2]),
) {
    // SAFETY: `dst` is a live, exclusively borrowed slice of `dst.len()` elements, all
    // initialised.
    unsafe {
        matmul_raw(
            dims,
            (dst.as_mut_ptr(), dst.len()),
            dst_rs,
            accumulate,
            lhs,
            rhs,
        )
    }
}

/// `lhs (m × k) · rhs (k × n)` as a new row-major vector. Without accumulation the product
/// writes every element of its destination and reads none, so the vector is not zeroed first:
/// the weight gradient's per-thread sums are megabytes per call (layer4: 512 × 4,608), and
/// zeroing them was most of the ~4% of a training step spent in `memset`.
fn product(dims: [usize; 3], lhs: (&[f32], [usize; 2]), rhs: (&[f32], [usize; 2])) -> Vec<f32> {
    let [m, n, k] = dims;
    assert!(
        k > 0,
        "relata_flex::kernels::conv: an empty product would leave its result unwritten"
    );
    let mut dst = Vec::with_capacity(m * n);
    // SAFETY: the capacity holds the m × n elements addressed at row stride n; gemm writes
    // each of them (no accumulation: the destination is not read), so all are initialised
    // when the length is set.
    unsafe {
        matmul_raw(dims, (dst.as_mut_ptr(), m * n), n, false, lhs, rhs);
        dst.set_len(m * n);
    }
    dst
}

/// [`matmul`] on a destination given as `(pointer, elements)`.
///
/// # Safety
/// `dst.0` must be valid for writes of `dst.1` f32 elements, not aliased by `lhs` or `rhs`,
/// and initialised when `accumulate` is set (the destination is read only then).
unsafe fn matmul_raw(
    [m, n, k]: [usize; 3],
    (dst, dst_len): (*mut f32, usize),
    dst_rs: usize,
    accumulate: bool,
    lhs: (&[f32], [usize; 2]),
    rhs: (&[f32], [usize; 2]),
) {
    let ((a, [a_rs, a_cs]), (b, [b_rs, b_cs])) = (lhs, rhs);
    // The extents the strides reach must lie inside the buffers (gemm reads raw pointers).
    let reach = |rows: usize, cols: usize, rs: usize, cs: usize| {
        if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * rs + (cols - 1) * cs + 1
        }
    };
    assert!(
        reach(m, n, dst_rs, 1) <= dst_len
            && reach(m, k, a_rs, a_cs) <= a.len()
            && reach(k, n, b_rs, b_cs) <= b.len(),
        "relata_flex::kernels::conv: matrix product out of bounds"
    );
    // SAFETY: every element the strides address lies inside its buffer (checked above), the
    // caller guarantees the destination is writable and does not overlap the operands.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// The direct kernel's shape for this convolution when it takes it (and `fast_paths`): a 3×3
/// kernel at stride 1 with padding 1 on a machine and map size [`direct::applies`] accepts (for
/// the input gradient, with the layer's input channels as the product's outputs; the weight
/// gradient's product has the forward's shape).
fn direct_shape(d: &Dims, kernel: Kernel, fast_paths: bool) -> Option<direct::Shape> {
    if !tap_products(d, fast_paths) {
        return None;
    }
    let shape = direct::Shape {
        batch: d.batch,
        c_in: d.c_in,
        c_out: d.c_out,
        h: d.h,
        w: d.w,
    };
    direct::applies(&shape.product(kernel)).then_some(shape)
}

/// The batch-lane kernels' layer for this convolution when they take its product `kernel`
/// (and `fast_paths`): a 3×3, padding-1 layer at stride 1 or 2 with a small output map, on a
/// machine and batch [`direct::lanes::applies`] accepts. Where both take a product (10 to 14
/// rows at stride 1) these kernels go first: they skip the padding and the rows between
/// images that [`direct`] computes.
fn lanes_layer(d: &Dims, kernel: Kernel, fast_paths: bool) -> Option<direct::lanes::Layer> {
    lanes_geometry(d, fast_paths).filter(|layer| direct::lanes::applies(layer, kernel))
}

/// As [`lanes_layer`], for the weight gradient ([`direct::lanes::weight_gradient_applies`]).
fn lanes_weight_layer(d: &Dims, fast_paths: bool) -> Option<direct::lanes::Layer> {
    lanes_geometry(d, fast_paths).filter(direct::lanes::weight_gradient_applies)
}

/// The layer as the batch-lane kernels see it, if it is 3×3 with padding 1 at stride 1 or 2
/// (and `fast_paths`).
fn lanes_geometry(d: &Dims, fast_paths: bool) -> Option<direct::lanes::Layer> {
    let g = &d.geometry;
    let fits = fast_paths
        && g.kernel == [3, 3]
        && g.padding == [1; 4]
        && matches!(g.stride, [1, 1] | [2, 2]);
    fits.then_some(direct::lanes::Layer {
        batch: d.batch,
        c_in: d.c_in,
        c_out: d.c_out,
        h: d.h,
        w: d.w,
        stride: g.stride[0],
    })
}

/// Is this a 3×3 layer at stride 1 with padding 1 (and `fast_paths`)? Those take [`direct`]
/// where it applies and [`taps`] elsewhere.
fn tap_products(d: &Dims, fast_paths: bool) -> bool {
    fast_paths && d.geometry == SAME_3X3
}

/// A 3×3 kernel at stride 1 with padding 1: the geometry [`direct`] and [`taps`] handle.
const SAME_3X3: WindowGeometry = WindowGeometry {
    kernel: [3, 3],
    stride: [1, 1],
    padding: [1; 4],
};

/// Images per worker thread (one contiguous run each, so each keeps one weight-gradient sum)
/// and images per GEMM within a run.
///
/// Why groups: on small maps (layer3's 14², layer4's 7²) one image's patch matrix has 196 or
/// 49 columns, too few for the GEMM to run at speed; images side by side give it at least
/// [`GEMM_COLUMNS`] columns, at the price of copying the output (and the output gradient) between
/// the side-by-side and NCHW layouts.
fn schedule(d: &Dims) -> (usize, usize) {
    let per_thread = images_per_thread(d);
    let gemms = (per_thread * d.out_pixels())
        .div_ceil(GEMM_COLUMNS)
        .clamp(1, per_thread);
    (per_thread, per_thread.div_ceil(gemms))
}

/// Images per worker thread: the batch in one contiguous run per rayon thread.
fn images_per_thread(d: &Dims) -> usize {
    d.batch.div_ceil(rayon::current_num_threads().max(1))
}

/// The fewest columns a GEMM gets when images can be put side by side (see [`schedule`]).
const GEMM_COLUMNS: usize = 384;

/// What an inference forward applies to each output channel right after its GEMM, while the
/// rows are still in cache: `y·scale + shift`, then ReLU when `relu` — a following batch norm
/// with running statistics (and its ReLU) folded into the convolution, which saves a pass
/// over the activation each (batch norm's inference pass alone was ~7% of a ResNet-18
/// forward).
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelAffine {
    /// Per output channel.
    pub scale: Vec<f32>,
    /// Per output channel.
    pub shift: Vec<f32>,
    /// Clamp negatives to 0 afterwards (NaN stays NaN, as burn's and PyTorch's ReLU).
    pub relu: bool,
}

impl ChannelAffine {
    /// Applies channel `c`'s affine map (and ReLU) to one row of output pixels.
    pub(super) fn apply(&self, c: usize, row: &mut [f32]) {
        let (scale, shift) = (self.scale[c], self.shift[c]);
        if self.relu {
            for v in row {
                let z = *v * scale + shift;
                *v = if z < 0.0 { 0.0 } else { z };
            }
        } else {
            for v in row {
                *v = *v * scale + shift;
            }
        }
    }
}

/// A new NCHW vector of `batch · channels` planes of `image` values each: plane `(n, c)` is
/// what `plane(n, c)` yields, then passed through channel `c` of `epilogue`. Written by rayon's
/// threads into uninitialised memory: the direct kernels' outputs are megabytes, and zeroing
/// them first was a serial pass.
///
/// # Panics
/// If a plane yields fewer than `image` values.
pub(super) fn nchw_from_planes<I: Iterator<Item = f32>>(
    (batch, channels, image): (usize, usize, usize),
    epilogue: Option<&ChannelAffine>,
    plane: impl Fn(usize, usize) -> I + Sync,
) -> Vec<f32> {
    let len = batch * channels * image;
    let mut y = Vec::with_capacity(len);
    if image > 0 {
        y.spare_capacity_mut()[..len]
            .par_chunks_mut(image)
            .enumerate()
            .for_each(|(index, out)| {
                let (n, c) = (index / channels, index % channels);
                let mut written = 0;
                for (o, v) in out.iter_mut().zip(plane(n, c)) {
                    o.write(v);
                    written += 1;
                }
                assert_eq!(written, image, "flex: an output plane came out short");
                // SAFETY: every element of `out` was written just above (asserted).
                let out = unsafe { &mut *(out as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
                if let Some(epilogue) = epilogue {
                    epilogue.apply(c, out);
                }
            });
    }
    // SAFETY: the planes above cover all `len` elements, each written in full.
    unsafe { y.set_len(len) };
    y
}

/// The convolution of `x` with `weight`, then `epilogue`. `fast_paths`: the direct, batch-lane
/// and per-tap kernels where they apply (off, im2col + GEMM everywhere: the tests compare
/// both). A per-tap layer also hands back its weights as [`taps::weights_by_tap`] laid them
/// out, for [`backward`]: the input gradient reads the same layout, and laying it out again
/// cost 0.48 ms per 512 → 512 layer.
fn forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    d: &Dims,
    epilogue: Option<&ChannelAffine>,
    fast_paths: bool,
) -> (FlexTensor, Option<Vec<f32>>) {
    let (x, weight) = (contiguous(x), contiguous(weight));
    let (xs, ws) = (elements(&x), elements(&weight));
    let out_shape = [d.batch, d.c_out, d.h_out, d.w_out];
    if let Some(layer) = lanes_layer(d, Kernel::Forward, fast_paths) {
        let y = direct::lanes::convolve(xs, ws, &layer, Kernel::Forward, epilogue);
        return (tensor(y, out_shape), None);
    }
    if let Some(shape) = direct_shape(d, Kernel::Forward, fast_paths) {
        let y = direct::convolve(xs, ws, &shape, Kernel::Forward, epilogue);
        return (tensor(y, out_shape), None);
    }
    if tap_products(d, fast_paths) {
        let by_tap = taps::weights_by_tap(ws, d.c_in);
        let y = taps::convolve(xs, &by_tap, d, taps::Direction::Forward, epilogue);
        return (tensor(y, out_shape), Some(by_tap));
    }
    let (patch, pixels, image) = (d.patch(), d.out_pixels(), d.image());
    let out_image = d.c_out * pixels;
    if patch == 0 {
        // No input channels: the products are empty and write nothing.
        return (tensor(zeros(d.batch * out_image), out_shape), None);
    }
    let (per_thread, group) = schedule(d);
    // The output is written by the GEMMs (or copied from their side-by-side result) group by
    // group without being zeroed first: a separate zeroing pass over it was 2.3% of a
    // ResNet-50 forward (its 1×1 layers' outputs are up to 13 MB).
    let len = d.batch * out_image;
    let mut y = Vec::with_capacity(len);
    y.spare_capacity_mut()[..len]
        .par_chunks_mut(per_thread * out_image)
        .enumerate()
        .for_each(|(t, y_run)| {
            let direct = group == 1 && d.is_pointwise();
            let lens = [
                if direct { 0 } else { patch * group * pixels },
                if group > 1 { out_image * group } else { 0 },
                if direct { 0 } else { phase_scratch(d) },
            ];
            with_work_buffers(lens, |[cols, side_by_side, phases]| {
                for (j, y_group) in y_run.chunks_mut(group * out_image).enumerate() {
                    let first = t * per_thread + j * group;
                    let count = y_group.len() / out_image;
                    let width = count * pixels;
                    let lhs = (ws, [patch, 1]);
                    let out = (y_group.as_mut_ptr().cast::<f32>(), y_group.len());
                    // SAFETY (the three products): `out` is this group's exclusively borrowed
                    // part of the output, not aliased by the operands, and is not read
                    // (no accumulation); with `patch > 0` the GEMM writes every element of it.
                    if direct {
                        let x_n = &xs[first * image..(first + 1) * image];
                        let rhs = (x_n, [pixels, 1]);
                        unsafe {
                            matmul_raw([d.c_out, pixels, patch], out, pixels, false, lhs, rhs)
                        };
                    } else if count == 1 {
                        group_patches(xs, d, (first, count), cols, phases);
                        let rhs = (&*cols, [pixels, 1]);
                        unsafe {
                            matmul_raw([d.c_out, pixels, patch], out, pixels, false, lhs, rhs)
                        };
                    } else {
                        group_patches(xs, d, (first, count), cols, phases);
                        let rhs = (&*cols, [width, 1]);
                        matmul(
                            [d.c_out, width, patch],
                            side_by_side,
                            width,
                            false,
                            lhs,
                            rhs,
                        );
                        for (g, y_n) in y_group.chunks_mut(out_image).enumerate() {
                            for (co, row) in y_n.chunks_mut(pixels).enumerate() {
                                let from = &side_by_side[co * width + g * pixels..][..pixels];
                                for (o, &v) in row.iter_mut().zip(from) {
                                    o.write(v);
                                }
                            }
                        }
                    }
                    // SAFETY: every element of the group was written just above.
                    let y_group = unsafe {
                        &mut *(y_group as *mut [std::mem::MaybeUninit<f32>] as *mut [f32])
                    };
                    if let Some(epilogue) = epilogue {
                        for y_n in y_group.chunks_mut(out_image) {
                            for (co, row) in y_n.chunks_mut(pixels).enumerate() {
                                epilogue.apply(co, row);
                            }
                        }
                    }
                }
            });
        });
    // SAFETY: the groups above cover all `len` elements, each written (a panic ends the
    // function before this line, and the vector is dropped empty).
    unsafe { y.set_len(len) };
    (tensor(y, out_shape), None)
}

/// The weight gradient's share of one group of `count` images from `first`, whose output
/// gradient `g_matrix` is `[C_out × count·HW]`: `dW += dY · colsᵀ`, or `dW = …` when `fresh`
/// (the run's first group; `dw` is then replaced). `direct`: a 1×1, stride-1 layer one image at
/// a time, whose input is its own patch matrix. `scratch` is `(cols, phases)`.
fn weight_gradient_group(
    xs: &[f32],
    g_matrix: &[f32],
    d: &Dims,
    (first, count, direct): (usize, usize, bool),
    (dw, fresh): (&mut Vec<f32>, bool),
    (cols, phases): (&mut [f32], &mut [f32]),
) {
    let (patch, width, image) = (d.patch(), count * d.out_pixels(), d.image());
    let patches: &[f32] = if direct {
        &xs[first * image..(first + 1) * image]
    } else {
        group_patches(xs, d, (first, count), cols, phases);
        cols
    };
    let (lhs, rhs) = ((g_matrix, [width, 1]), (patches, [1, width]));
    if fresh {
        *dw = product([d.c_out, patch, width], lhs, rhs);
    } else {
        matmul([d.c_out, patch, width], dw, patch, true, lhs, rhs);
    }
}

/// The input gradient of one group of `count` images (`dx`: their `count` image gradients),
/// from their output gradient `g_matrix` (`[C_out × count·HW]`): `Wᵀ · dY` straight into the
/// image's gradient when `direct` (as for [`weight_gradient_group`]), else into the patch
/// matrix and folded back onto each image (col2im). `scratch` is `(cols, phases)`.
fn input_gradient_group(
    ws: &[f32],
    g_matrix: &[f32],
    d: &Dims,
    (count, direct): (usize, bool),
    dx: &mut [f32],
    (cols, phases): (&mut [f32], &mut [f32]),
) {
    let (patch, pixels, image) = (d.patch(), d.out_pixels(), d.image());
    let width = count * pixels;
    if direct {
        matmul(
            [patch, pixels, d.c_out],
            dx,
            pixels,
            false,
            (ws, [1, patch]),
            (g_matrix, [pixels, 1]),
        );
        return;
    }
    matmul(
        [patch, width, d.c_out],
        cols,
        width,
        false,
        (ws, [1, patch]),
        (g_matrix, [width, 1]),
    );
    for (g, dx_n) in dx.chunks_mut(image).enumerate() {
        col2im(&mut cols[g * pixels..], d, dx_n, width, phases);
    }
}

/// `(dX, dW)`, each only when asked for; `fast_paths` as for [`forward`], `by_tap` the
/// weights' per-tap layout when the forward made it.
fn backward(
    (x, weight, by_tap): (&FlexTensor, &FlexTensor, Option<&[f32]>),
    grad: &FlexTensor,
    d: &Dims,
    [want_x, want_w]: [bool; 2],
    fast_paths: bool,
) -> (Option<FlexTensor>, Option<FlexTensor>) {
    let (x, weight, grad) = (contiguous(x), contiguous(weight), contiguous(grad));
    let (xs, ws, gs) = (elements(&x), elements(&weight), elements(&grad));
    // The gradients of a 3×3 layer by the direct or batch-lane kernels where they apply, at
    // stride 1 by one product per tap elsewhere; the loop below computes what is left (nothing
    // when both were taken).
    let per_tap = tap_products(d, fast_paths);
    let fast_dx = want_x.then(|| {
        if let Some(layer) = lanes_layer(d, Kernel::InputGradient, fast_paths) {
            Some(direct::lanes::convolve(
                gs,
                ws,
                &layer,
                Kernel::InputGradient,
                None,
            ))
        } else if let Some(shape) = direct_shape(d, Kernel::InputGradient, fast_paths) {
            Some(direct::convolve(
                gs,
                ws,
                &shape,
                Kernel::InputGradient,
                None,
            ))
        } else {
            per_tap.then(|| {
                let by_tap = by_tap.map_or_else(
                    || Cow::Owned(taps::weights_by_tap(ws, d.c_in)),
                    Cow::Borrowed,
                );
                taps::convolve(gs, &by_tap, d, taps::Direction::InputGradient, None)
            })
        }
    });
    let fast_dw = want_w.then(|| {
        if let Some(layer) = lanes_weight_layer(d, fast_paths) {
            Some(direct::lanes::weight_gradient(xs, gs, &layer))
        } else if let Some(shape) = direct_shape(d, Kernel::Forward, fast_paths) {
            Some(direct::weight_gradient(xs, gs, &shape))
        } else {
            per_tap.then(|| taps::weight_gradient(xs, gs, d))
        }
    });
    let (fast_dx, fast_dw) = (fast_dx.flatten(), fast_dw.flatten());
    let want_x = want_x && fast_dx.is_none();
    let want_w = want_w && fast_dw.is_none();
    let (patch, pixels, image) = (d.patch(), d.out_pixels(), d.image());
    let out_image = d.c_out * pixels;
    let (per_thread, group) = schedule(d);
    let mut dx = zeros(if want_x { d.batch * image } else { 0 });
    let runs: Vec<(usize, &mut [f32])> = if want_x {
        dx.chunks_mut(per_thread * image)
            .enumerate()
            .map(|(t, chunk)| (t * per_thread, chunk))
            .collect()
    } else if want_w {
        (0..d.batch)
            .step_by(per_thread)
            .map(|start| (start, &mut [][..]))
            .collect()
    } else {
        Vec::new()
    };
    let weight_sums: Vec<Vec<f32>> = runs
        .into_par_iter()
        .map(|(start, dx_run)| {
            let run = per_thread.min(d.batch - start);
            let direct = group == 1 && d.is_pointwise();
            let lens = [
                if direct { 0 } else { patch * group * pixels },
                if group > 1 { out_image * group } else { 0 },
                if direct { 0 } else { phase_scratch(d) },
            ];
            // This run's weight-gradient sum: the first group's product, then accumulated.
            let mut dw = Vec::new();
            with_work_buffers(lens, |[cols, side_by_side, phases]| {
                for (j, first) in (start..start + run).step_by(group).enumerate() {
                    let count = group.min(start + run - first);
                    let width = count * pixels;
                    // dY of the group as one `[C_out × count·HW]` matrix.
                    let g_group = &gs[first * out_image..(first + count) * out_image];
                    let g_matrix: &[f32] = if count == 1 {
                        g_group
                    } else {
                        for (g, g_n) in g_group.chunks(out_image).enumerate() {
                            for (co, row) in g_n.chunks(pixels).enumerate() {
                                side_by_side[co * width + g * pixels..][..pixels]
                                    .copy_from_slice(row);
                            }
                        }
                        side_by_side
                    };
                    if want_w {
                        let group_dw = (&mut dw, j == 0);
                        let scratch = (&mut *cols, &mut *phases);
                        weight_gradient_group(
                            xs,
                            g_matrix,
                            d,
                            (first, count, direct),
                            group_dw,
                            scratch,
                        );
                    }
                    if want_x {
                        let local = first - start;
                        let dx_group = &mut dx_run[local * image..(local + count) * image];
                        let scratch = (&mut *cols, &mut *phases);
                        input_gradient_group(ws, g_matrix, d, (count, direct), dx_group, scratch);
                    }
                }
            });
            dw
        })
        .collect();
    let dw = fast_dw.or_else(|| want_w.then(|| sum_parts(weight_sums)));
    let [k_h, k_w] = d.geometry.kernel;
    let dw = dw.map(|dw| tensor(dw, [d.c_out, d.c_in, k_h, k_w]));
    let dx = match fast_dx {
        Some(dx) => Some(dx),
        None => want_x.then_some(dx),
    };
    let dx = dx.map(|dx| tensor(dx, [d.batch, d.c_in, d.h, d.w]));
    (dx, dw)
}

/// The convolution's node in the autodiff graph.
#[derive(Debug)]
struct FlexConvBackward;

impl Backward<Flex, 2> for FlexConvBackward {
    /// The input, the weights, the layer, and the weights' per-tap layout (per-tap layers).
    type State = (FlexTensor, FlexTensor, Dims, Option<Vec<f32>>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, weight, dims, by_tap) = ops.state;
        let (dx, dw) = backward(
            (&x, &weight, by_tap.as_deref()),
            &grad,
            &dims,
            [node_x.is_some(), node_w.is_some()],
            true,
        );
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<Flex>(node.id, dx);
        }
        if let (Some(node), Some(dw)) = (node_w, dw) {
            grads.register::<Flex>(node.id, dw);
        }
    }
}

/// The convolution of `x` (`[N, C_in, H, W]`) with `weight` (`[C_out, C_in, k_h, k_w]`) by
/// relata's kernels, when both live on a `flex` device (autodiff with the default, no
/// checkpointing, or plain) as f32; otherwise the inputs come back unchanged for `conv2d`.
#[allow(clippy::result_large_err)] // the tensors are moved in and, unused, handed back.
pub fn try_conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    geometry: WindowGeometry,
) -> Result<Tensor<4>, (Tensor<4>, Tensor<4>)> {
    conv2d_on_flex(x, weight, geometry, None)
}

/// [`try_conv2d`] followed by a per-channel affine map (and ReLU), in one pass, for inference:
/// only on a plain `flex` device (no autodiff) with f32 tensors; otherwise the inputs come
/// back unchanged. `epilogue` must have one scale and shift per output channel.
#[allow(clippy::result_large_err)] // the tensors are moved in and, unused, handed back.
pub fn try_conv2d_affine(
    x: Tensor<4>,
    weight: Tensor<4>,
    geometry: WindowGeometry,
    epilogue: &ChannelAffine,
) -> Result<Tensor<4>, (Tensor<4>, Tensor<4>)> {
    conv2d_on_flex(x, weight, geometry, Some(epilogue))
}

/// [`try_conv2d`] and [`try_conv2d_affine`]: the checks, then the plain or autodiff path. An
/// epilogue is only taken without autodiff (the backward knows nothing of it).
#[allow(clippy::result_large_err)]
fn conv2d_on_flex(
    x: Tensor<4>,
    weight: Tensor<4>,
    geometry: WindowGeometry,
    epilogue: Option<&ChannelAffine>,
) -> Result<Tensor<4>, (Tensor<4>, Tensor<4>)> {
    let (Some(autodiff), Some(dims)) = (
        flex_device(&x.device()),
        Dims::new(x.dims(), weight.dims(), geometry),
    ) else {
        return Err((x, weight));
    };
    let epilogue_fits = epilogue
        .is_none_or(|e| !autodiff && e.scale.len() == dims.c_out && e.shift.len() == dims.c_out);
    let f32s = x.dtype() == DType::F32 && weight.dtype() == DType::F32;
    if !epilogue_fits || !f32s || x.device() != weight.device() {
        return Err((x, weight));
    }
    if !autodiff {
        let (Ok(xp), Ok(wp)) = (
            x.clone().try_into_primitive::<Flex>(),
            weight.clone().try_into_primitive::<Flex>(),
        ) else {
            return Err((x, weight));
        };
        let (y, _) = forward(&xp, &wp, &dims, epilogue, true);
        return Ok(Tensor::from_primitive::<Flex>(y));
    }
    type Ad = Autodiff<Flex, NoCheckpointing>;
    let (Ok(xa), Ok(wa)) = (
        x.clone().try_into_primitive::<Ad>(),
        weight.clone().try_into_primitive::<Ad>(),
    ) else {
        return Err((x, weight));
    };
    let guards = [xa.node(), wa.node()];
    let (xp, wp) = (xa.into_primitive(), wa.into_primitive());
    let (y, by_tap) = forward(&xp, &wp, &dims, None, true);
    let out = match FlexConvBackward
        .prepare::<NoCheckpointing>(guards)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((xp, wp, dims, by_tap), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Ok(Tensor::from_primitive::<Ad>(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(x: [usize; 4], c_out: usize, k: usize, s: usize, p: usize) -> Dims {
        let g = WindowGeometry {
            kernel: [k, k],
            stride: [s, s],
            padding: [p; 4],
        };
        Dims::new(x, [c_out, x[1], k, k], g).unwrap()
    }

    /// im2col by the definition, one element at a time.
    fn im2col_naive(x: &[f32], d: &Dims) -> Vec<f32> {
        let [k_h, k_w] = d.geometry.kernel;
        let mut out = Vec::new();
        for c in 0..d.c_in {
            for ky in 0..k_h {
                for kx in 0..k_w {
                    for oy in 0..d.h_out {
                        for ox in 0..d.w_out {
                            let y = (oy * d.geometry.stride[0] + ky) as isize
                                - d.geometry.padding[0] as isize;
                            let xx = (ox * d.geometry.stride[1] + kx) as isize
                                - d.geometry.padding[1] as isize;
                            let inside =
                                y >= 0 && xx >= 0 && (y as usize) < d.h && (xx as usize) < d.w;
                            out.push(if inside {
                                x[c * d.h * d.w + y as usize * d.w + xx as usize]
                            } else {
                                0.0
                            });
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn phase_planes_take_the_stem_and_the_3x3_downsampling() {
        // ResNet's stem at 112² and 224², its 3×3 stride-2 layers on even maps, the same-size
        // 3×3 layers (the plane is the image).
        assert_eq!(dims([1, 3, 112, 112], 64, 7, 2, 3).phase_stride(), Some(2));
        assert_eq!(dims([1, 3, 224, 224], 64, 7, 2, 3).phase_stride(), Some(2));
        assert_eq!(dims([1, 64, 28, 28], 128, 3, 2, 1).phase_stride(), Some(2));
        assert_eq!(dims([1, 64, 28, 28], 64, 3, 1, 1).phase_stride(), Some(1));
        // A 1×1 kernel at stride 2 (a quarter of the image read) and odd widths do not.
        assert_eq!(dims([1, 64, 28, 28], 128, 1, 2, 0).phase_stride(), None);
        assert_eq!(dims([1, 256, 7, 7], 512, 3, 2, 1).phase_stride(), None);
        // Tap (0, 6) of the stem: input row 2·oy − 3 = 2·(oy − 2) + 1, column 2·ox + 3 =
        // 2·(ox + 1) + 1: plane (1, 1), shifted by −2 rows and +1 column.
        let stem = dims([1, 3, 112, 112], 64, 7, 2, 3);
        let shift = stem.phase_shift(0, 6).unwrap();
        assert_eq!((shift.plane, shift.delta), (2 + 1, -2 * 56 + 1));
        assert_eq!((shift.rows, shift.columns), (2..56, 0..55));
    }

    #[test]
    fn im2col_and_col2im_match_the_definition_and_are_adjoint() {
        for (x, k, s, p) in [
            ([1, 2, 5, 7], 3, 1, 1),
            // Stride 2 through phase planes: even maps, an odd height (the planes' zero
            // rows), the stem's 7×7 kernel; an odd width takes the strided copies.
            ([1, 2, 6, 6], 3, 2, 1),
            ([1, 1, 9, 8], 7, 2, 3),
            ([1, 2, 7, 6], 3, 2, 1),
            ([1, 3, 16, 16], 7, 2, 3),
            ([1, 2, 7, 7], 3, 2, 1),
            ([1, 2, 6, 6], 3, 3, 1),
            ([1, 3, 4, 4], 1, 2, 0),
            ([1, 1, 3, 3], 5, 1, 2),
            ([1, 2, 2, 3], 3, 1, 1),
            ([1, 1, 1, 1], 3, 1, 1),
        ] {
            let d = dims(x, 2, k, s, p);
            let xs: Vec<f32> = (0..d.image()).map(|i| (i as f32 * 0.37).sin()).collect();
            let mut cols = vec![f32::NAN; d.patch() * d.out_pixels()];
            let mut phases = vec![f32::NAN; phase_scratch(&d)];
            im2col(&xs, &d, &mut cols, d.out_pixels(), &mut phases);
            assert_eq!(cols, im2col_naive(&xs, &d), "{x:?} k{k} s{s} p{p}");
            // <im2col(x), c> = <x, col2im(c)>
            let c: Vec<f32> = (0..cols.len()).map(|i| (i as f32 * 0.11).cos()).collect();
            let mut back = vec![0.0; d.image()];
            col2im(&mut c.clone(), &d, &mut back, d.out_pixels(), &mut phases);
            let lhs: f64 = cols.iter().zip(&c).map(|(a, b)| (a * b) as f64).sum();
            let rhs: f64 = xs.iter().zip(&back).map(|(a, b)| (a * b) as f64).sum();
            assert!((lhs - rhs).abs() < 1e-4, "{lhs} vs {rhs}");
        }
    }

    /// Output, input gradient and weight gradient against the definition summed in f64, for
    /// batches that fill one image per GEMM (28²) and that put several side by side (5²).
    #[test]
    fn kernels_match_the_definition_in_f64() {
        for (x, c_out, k, s, padding) in [
            ([3, 4, 5, 5], 3, 3, 2, [1, 0, 2, 1]),
            ([5, 2, 5, 6], 4, 3, 1, [1; 4]),
            ([2, 3, 28, 28], 2, 3, 1, [1; 4]),
            ([3, 2, 11, 9], 3, 7, 2, [3; 4]),
            // Stride 1 with the output as wide as the input: im2col/col2im as one flat shifted
            // copy/add per kernel position, with asymmetric padding, a 5×5 kernel, and maps
            // smaller than the kernel.
            ([2, 3, 6, 5], 2, 3, 1, [0, 2, 1, 0]),
            ([2, 2, 6, 7], 3, 5, 1, [2; 4]),
            ([2, 2, 2, 3], 2, 3, 1, [1; 4]),
            ([1, 2, 1, 1], 2, 3, 1, [1; 4]),
            // 1×1 at stride 1: the patch matrix is the image (no im2col), one image per GEMM
            // from 20² up, side by side below.
            ([3, 5, 20, 20], 4, 1, 1, [0; 4]),
            ([5, 6, 4, 3], 2, 1, 1, [0; 4]),
            // 3×3, stride 1, padding 1 with whole tiles of channels on maps of 10 rows and up: the
            // direct kernels (forward and weight gradient with C_out a multiple of 8, input
            // gradient with C_in a multiple of 8), on machines with AVX-512. Positions that
            // leave a partial vector: 2·13·13 = 338 = 21·16 + 2.
            ([2, 8, 12, 13], 16, 3, 1, [1; 4]),
            ([3, 5, 11, 20], 8, 3, 1, [1; 4]),
            ([1, 16, 30, 11], 24, 3, 1, [1; 4]),
            // 3×3, stride 1, padding 1 below 10 rows: with AVX-512, the batch-lane kernels
            // (direct::lanes) for whole blocks of 16 images — forward with C_out a multiple of
            // 8, input gradient with C_in a multiple of 8 — and the weight gradient for any
            // batch with C_out a multiple of 8 and C_in of 16; the per-tap products otherwise.
            // Two blocks, a map that is not square, a partial last tile (35 = 11·3 + 2), a map
            // of one pixel (eight taps read only padding), other batches.
            ([16, 16, 4, 4], 8, 3, 1, [1; 4]),
            ([32, 16, 7, 5], 24, 3, 1, [1; 4]),
            ([16, 8, 2, 3], 16, 3, 1, [1; 4]),
            ([16, 16, 1, 1], 8, 3, 1, [1; 4]),
            ([3, 16, 4, 4], 8, 3, 1, [1; 4]),
            // Up to 14 rows they go before the direct kernels (which take other batches).
            ([16, 16, 13, 4], 8, 3, 1, [1; 4]),
            ([5, 16, 14, 6], 8, 3, 1, [1; 4]),
            // Stride 2 with padding 1: the batch-lane kernels read the input as four phase
            // planes. Odd and even maps, a map of one pixel, other batches.
            ([16, 16, 7, 7], 8, 3, 2, [1; 4]),
            ([16, 16, 8, 6], 16, 3, 2, [1; 4]),
            ([16, 8, 1, 1], 8, 3, 2, [1; 4]),
            ([5, 16, 5, 5], 8, 3, 2, [1; 4]),
            // 12 output rows: im2col for the forward and input gradient, the batch-lane weight
            // gradient.
            ([16, 16, 24, 6], 8, 3, 2, [1; 4]),
        ] {
            let g = WindowGeometry {
                kernel: [k, k],
                stride: [s, s],
                padding,
            };
            let d = Dims::new(x, [c_out, x[1], k, k], g).unwrap();
            let wave = |len: usize, f: f32| -> Vec<f32> {
                (0..len).map(|i| (i as f32 * f).sin() * 1.5).collect()
            };
            let xs = wave(d.batch * d.image(), 0.731);
            let ws = wave(c_out * d.patch(), 0.377);
            let gs = wave(d.batch * c_out * d.out_pixels(), 0.191);
            let (xt, wt, gt) = (
                tensor(xs.clone(), x),
                tensor(ws.clone(), [c_out, x[1], k, k]),
                tensor(gs.clone(), [d.batch, c_out, d.h_out, d.w_out]),
            );
            for fast_paths in [false, true] {
                let (y, by_tap) = forward(&xt, &wt, &d, None, fast_paths);
                let per_tap = tap_products(&d, fast_paths)
                    && direct_shape(&d, Kernel::Forward, fast_paths).is_none()
                    && lanes_layer(&d, Kernel::Forward, fast_paths).is_none();
                assert_eq!(by_tap.is_some(), per_tap);
                let layer = (&xt, &wt, by_tap.as_deref());
                let (dx, dw) = backward(layer, &gt, &d, [true, true], fast_paths);
                let (y, dx, dw) = (elements(&y), dx.unwrap(), dw.unwrap());
                let (dx, dw) = (elements(&dx), elements(&dw));
                // Without the forward's layout the backward lays the weights out itself.
                let (dx_own, _) = backward((&xt, &wt, None), &gt, &d, [true, false], fast_paths);
                assert_eq!(elements(&dx_own.unwrap()), dx);
                // Truth: y[n, o, p] = Σ_r W[o, r] · cols_n[r, p], and the two adjoints.
                let (pixels, patch) = (d.out_pixels(), d.patch());
                let mut y64 = vec![0.0f64; y.len()];
                let mut dx64 = vec![0.0f64; dx.len()];
                let mut dw64 = vec![0.0f64; dw.len()];
                for n in 0..d.batch {
                    let cols = im2col_naive(&xs[n * d.image()..(n + 1) * d.image()], &d);
                    let mut dcols = vec![0.0f64; cols.len()];
                    for o in 0..c_out {
                        for r in 0..patch {
                            let w = ws[o * patch + r] as f64;
                            for p in 0..pixels {
                                let (c, gy) = (
                                    cols[r * pixels + p] as f64,
                                    gs[(n * c_out + o) * pixels + p] as f64,
                                );
                                y64[(n * c_out + o) * pixels + p] += w * c;
                                dw64[o * patch + r] += gy * c;
                                dcols[r * pixels + p] += w * gy;
                            }
                        }
                    }
                    // col2im by the definition: each patch entry goes back to the pixel it read.
                    let ones: Vec<f32> = (0..d.image()).map(|i| i as f32).collect();
                    let index = im2col_naive(&ones, &d);
                    let inside = im2col_naive(&vec![1.0; d.image()], &d);
                    for (e, v) in dcols.iter().enumerate() {
                        if inside[e] == 1.0 {
                            dx64[n * d.image() + index[e] as usize] += v;
                        }
                    }
                }
                for (name, ours, truth) in [("y", y, &y64), ("dX", dx, &dx64), ("dW", dw, &dw64)] {
                    let worst = ours
                        .iter()
                        .zip(truth)
                        .map(|(a, t)| (*a as f64 - t).abs() / (1.0 + t.abs()))
                        .fold(0.0, f64::max);
                    // The direct kernel sums 9·C terms in one running f32 sum per block of 16
                    // channels, as oneDNN's direct convolution does; im2col's input gradient
                    // sums C terms, then 9: less rounding against the f64 truth.
                    let tolerance = if fast_paths { 5e-5 } else { 1e-5 };
                    assert!(
                        worst < tolerance,
                        "{name} {x:?} k{k} s{s} fast paths {fast_paths}: {worst:.2e}"
                    );
                }
            }
        }
    }

    /// The shapes above that should take the direct kernel do, wherever it can run.
    #[test]
    fn direct_kernel_takes_resnet_3x3_layers() {
        check_direct_kernel_choice(crate::paths::avx512_enabled());
        // Switched off, no layer takes the AVX-512 kernels.
        crate::paths::portable(|| check_direct_kernel_choice(false));
    }

    /// `avx512`: whether the AVX-512 kernels can be taken (what the shapes' answers depend on).
    fn check_direct_kernel_choice(avx512: bool) {
        let g = SAME_3X3;
        for (x, c_out, forward, input_gradient) in [
            ([2, 8, 12, 13], 16, true, true),
            ([3, 5, 11, 20], 8, true, false),
            ([16, 64, 28, 28], 64, true, true),
            // 7² maps: 14% of the work thrown away (the rows between images): batch lanes.
            ([16, 256, 7, 7], 256, false, false),
            // Output channels not a multiple of 8.
            ([2, 8, 12, 12], 12, false, true),
        ] {
            let d = Dims::new(x, [c_out, x[1], 3, 3], g).unwrap();
            // The weight gradient's product has the forward's shape, and takes the same path.
            let taken = |kernel| direct_shape(&d, kernel, true).is_some();
            assert_eq!(taken(Kernel::Forward), forward && avx512, "{x:?} → {c_out}");
            assert_eq!(
                taken(Kernel::InputGradient),
                input_gradient && avx512,
                "{x:?} → {c_out}"
            );
            assert!(direct_shape(&d, Kernel::Forward, false).is_none());
        }
        // Up to 14 rows: the batch-lane kernels for whole blocks of 16 images (the weight
        // gradient for any batch), the per-tap products (below 10 rows) or the direct kernels
        // for other batches (and off AVX-512); above 14 rows the direct kernels.
        for (x, c_out, forward, input_gradient, weight_gradient) in [
            ([16, 256, 7, 7], 256, true, true, true),
            ([32, 512, 4, 4], 512, true, true, true),
            ([16, 8, 4, 4], 12, false, true, false),
            ([8, 256, 7, 7], 256, false, false, true),
            ([16, 128, 14, 14], 128, true, true, true),
            ([8, 128, 14, 14], 128, false, false, true),
            ([16, 64, 28, 28], 64, false, false, false),
            ([16, 64, 15, 15], 64, false, false, false),
        ] {
            let d = Dims::new(x, [c_out, x[1], 3, 3], g).unwrap();
            let lanes = |kernel| lanes_layer(&d, kernel, true).is_some();
            assert_eq!(lanes(Kernel::Forward), forward && avx512, "{x:?} → {c_out}");
            assert_eq!(
                lanes(Kernel::InputGradient),
                input_gradient && avx512,
                "{x:?} → {c_out}"
            );
            assert_eq!(
                lanes_weight_layer(&d, true).is_some(),
                weight_gradient && avx512,
                "{x:?} → {c_out}"
            );
            assert!(lanes_layer(&d, Kernel::Forward, false).is_none());
        }
        let stride_2 = WindowGeometry {
            stride: [2, 2],
            ..g
        };
        let d = Dims::new([2, 8, 28, 28], [8, 8, 3, 3], stride_2).unwrap();
        assert!(direct_shape(&d, Kernel::Forward, true).is_none());
        // At stride 2 the batch-lane kernels take outputs below 10 rows (ResNet's first
        // layer3 and layer4 convolutions at 112²), and up to 14 rows for the weight gradient
        // (layer2's); im2col the rest.
        for (x, c_out, lanes, weight_gradient) in [
            ([16, 128, 14, 14], 256, true, true),
            ([16, 256, 7, 7], 512, true, true),
            ([16, 64, 28, 28], 128, false, true),
            ([16, 64, 56, 56], 128, false, false),
        ] {
            let d = Dims::new(x, [c_out, x[1], 3, 3], stride_2).unwrap();
            for kernel in [Kernel::Forward, Kernel::InputGradient] {
                assert_eq!(lanes_layer(&d, kernel, true).is_some(), lanes && avx512);
            }
            assert_eq!(
                lanes_weight_layer(&d, true).is_some(),
                weight_gradient && avx512
            );
        }
    }

    /// The path is taken on flex, with autodiff and without, and hands back what it cannot do.
    #[test]
    fn flex_tensors_take_the_path_and_others_come_back() {
        use burn::tensor::Distribution;
        let g = SAME_3X3;
        for device in [
            burn::tensor::Device::flex(),
            burn::tensor::Device::flex().autodiff(),
        ] {
            let x = Tensor::<4>::random([1, 2, 5, 5], Distribution::Default, &device);
            let w = Tensor::<4>::random([3, 2, 3, 3], Distribution::Default, &device);
            let y = try_conv2d(x.clone(), w, g).expect("flex takes the path");
            assert_eq!(y.dims(), [1, 3, 5, 5]);
            // Channels that do not match the weight: back to `conv2d`, which reports it.
            let w = Tensor::<4>::random([3, 4, 3, 3], Distribution::Default, &device);
            let (x_back, _) = try_conv2d(x.clone(), w, g).unwrap_err();
            assert_eq!(x_back.dims(), x.dims());
        }
    }

    #[test]
    fn geometry_that_does_not_fit_is_refused() {
        let g = WindowGeometry {
            kernel: [3, 3],
            stride: [1, 1],
            padding: [0; 4],
        };
        assert!(Dims::new([1, 2, 2, 2], [4, 2, 3, 3], g).is_none());
        assert!(Dims::new([1, 3, 8, 8], [4, 2, 3, 3], g).is_none());
        let zero_stride = WindowGeometry {
            stride: [0, 1],
            ..g
        };
        assert!(Dims::new([1, 2, 8, 8], [4, 2, 3, 3], zero_stride).is_none());
    }
}
