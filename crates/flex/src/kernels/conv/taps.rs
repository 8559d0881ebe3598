//! 3×3, stride-1, padding-1 convolutions that neither the direct kernels nor the batch-lane
//! kernels (`kernels::direct::lanes`) take — channels not in tiles of 8, batches not in blocks of
//! 16 images (forward and input gradient), no AVX-512 — as nine products, one per kernel tap,
//! each over only the output positions where that tap lands inside the image.
//!
//! Why: im2col multiplies the padding's zeros like any other entry. On a 4×4 map (ResNet's
//! layer4 at 112²) 44 of the 144 tap × position pairs fall in the padding, 31% of the work; on
//! 7×7, 18%. oneDNN's direct convolution (PyTorch) skips them. For tap `(ky, kx)` the output
//! positions whose input `(y + ky − 1, x + kx − 1)` lies inside the image form a rectangle;
//! gathering the input over it gives a `C_in × positions` matrix without zeros, and
//! `Y[:, rect] += W[:, :, ky, kx] · X[:, rect + shift]`. The input gradient is the same with
//! the roles swapped: `dX[:, rect + shift] += W[:, :, ky, kx]ᵀ · dY[:, rect]`, and the weight
//! gradient is `dW[:, :, ky, kx] = dY[:, rect] · X[:, rect + shift]ᵀ`.

use rayon::prelude::*;

use super::{ChannelAffine, Dims, images_per_thread, matmul, sum_parts, with_work_buffers, zeros};

/// Which product of the layer: `X → Y` or `dY → dX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    Forward,
    InputGradient,
}

/// Kernel tap `t` (`ky = t / 3`, `kx = t % 3`) on an `h × w` map: the rectangle of output
/// positions `[y0, y1) × [x0, x1)` where it reads inside the image.
#[derive(Debug, Clone, Copy)]
struct Tap {
    ky: usize,
    kx: usize,
    y: (usize, usize),
    x: (usize, usize),
}

impl Tap {
    fn new(t: usize, d: &Dims) -> Self {
        let (ky, kx) = (t / 3, t % 3);
        Self {
            ky,
            kx,
            y: d.valid_rows(ky),
            x: d.valid_columns(kx),
        }
    }

    /// The taps whose rectangle holds output positions, each with `t` and its position count
    /// over `count` images (a map of one row or column has taps that read only padding).
    fn nonempty(d: &Dims, count: usize) -> impl Iterator<Item = (usize, Tap, usize)> + '_ {
        (0..9).filter_map(move |t| {
            let tap = Tap::new(t, d);
            let (rows, cols) = tap.size();
            let n = count * rows * cols;
            (n > 0).then_some((t, tap, n))
        })
    }

    /// Output rows and columns of the rectangle.
    fn size(&self) -> (usize, usize) {
        (self.y.1 - self.y.0, self.x.1 - self.x.0)
    }

    /// Where row `y` of the rectangle starts in a plane of width `w`: on the input side
    /// (`shifted`, by the tap) or on the output side.
    fn row_start(&self, y: usize, w: usize, shifted: bool) -> usize {
        let (oy, ox) = if shifted { (self.ky, self.kx) } else { (1, 1) };
        (y + oy - 1) * w + self.x.0 + ox - 1
    }
}

/// Copies the rectangle of `tap` (input side when `shifted`) from images `first..first +
/// count` of `src` (`channels` planes each) into `out` as a `channels × n` matrix, columns in
/// `(image, row, column)` order.
fn gather(
    src: &[f32],
    (channels, d): (usize, &Dims),
    (first, count): (usize, usize),
    (tap, shifted): (&Tap, bool),
    out: &mut [f32],
) {
    let (hw, (rows, cols)) = (d.h * d.w, tap.size());
    let n = count * rows * cols;
    for c in 0..channels {
        for g in 0..count {
            let plane = &src[((first + g) * channels + c) * hw..][..hw];
            for y in tap.y.0..tap.y.1 {
                let to = c * n + (g * rows + y - tap.y.0) * cols;
                out[to..to + cols]
                    .copy_from_slice(&plane[tap.row_start(y, d.w, shifted)..][..cols]);
            }
        }
    }
}

/// The weights `[C_out, C_in, 3, 3]` as `[C_out][tap][C_in]`: tap `t`'s `C_out × C_in` matrix
/// starts at `t·C_in` with rows `9·C_in` apart, the layout [`convolve`] reads in both
/// directions (the forward lays it out once and its autodiff node keeps it for the input
/// gradient). One output channel at a time, so that its `9·C_in` weights are read from L1 (a
/// tap-major copy read all of them nine times, one float in nine), and written in order: 0.48 ms
/// at layer4 against 0.75 ms reading in order and scattering the writes.
pub(super) fn weights_by_tap(ws: &[f32], c_in: usize) -> Vec<f32> {
    let len = ws.len();
    assert!(
        c_in > 0 && len.is_multiple_of(9 * c_in),
        "relata_flex::kernels::conv::taps: weights of {len} floats are not [C_out, {c_in}, 3, 3]"
    );
    let mut by_tap = Vec::with_capacity(len);
    by_tap.spare_capacity_mut()[..len]
        .par_chunks_mut(9 * c_in)
        .enumerate()
        .for_each(|(co, row)| {
            let w_co = &ws[co * c_in * 9..][..c_in * 9];
            for (t, out) in row.chunks_exact_mut(c_in).enumerate() {
                for (ci, o) in out.iter_mut().enumerate() {
                    o.write(w_co[ci * 9 + t]);
                }
            }
        });
    // SAFETY: the chunks above cover all `len` elements (`len` is `C_out · 9·C_in`) and each
    // element was written.
    unsafe { by_tap.set_len(len) };
    by_tap
}

/// The layer's product in `direction` (`src` = `X` or `dY`, NCHW) with the weights `by_tap`
/// ([`weights_by_tap`]), as a new NCHW vector, with `epilogue` applied per output channel
/// (forward only).
pub(super) fn convolve(
    src: &[f32],
    by_tap: &[f32],
    d: &Dims,
    direction: Direction,
    epilogue: Option<&ChannelAffine>,
) -> Vec<f32> {
    let (w, hw) = (d.w, d.h * d.w);
    let (c_src, c_dst) = match direction {
        Direction::Forward => (d.c_in, d.c_out),
        Direction::InputGradient => (d.c_out, d.c_in),
    };
    let per_thread = images_per_thread(d);
    let mut dst = zeros(d.batch * c_dst * hw);
    dst.par_chunks_mut(per_thread * c_dst * hw)
        .enumerate()
        .for_each(|(run, dst_run)| {
            let first = run * per_thread;
            let count = dst_run.len() / (c_dst * hw);
            let lens = [c_src * count * hw, c_dst * count * hw];
            with_work_buffers(lens, |[gathered, product]| {
                for (t, tap, n) in Tap::nonempty(d, count) {
                    let (rows, cols) = tap.size();
                    // The input side is shifted by the tap: read there for the forward,
                    // write there for the input gradient.
                    let forward = direction == Direction::Forward;
                    gather(src, (c_src, d), (first, count), (&tap, forward), gathered);
                    let w_t = &by_tap[t * d.c_in..];
                    let lhs = if forward {
                        (w_t, [9 * d.c_in, 1])
                    } else {
                        (w_t, [1, 9 * d.c_in])
                    };
                    matmul(
                        [c_dst, n, c_src],
                        product,
                        n,
                        false,
                        lhs,
                        (&*gathered, [n, 1]),
                    );
                    for c in 0..c_dst {
                        for g in 0..count {
                            let plane = &mut dst_run[(g * c_dst + c) * hw..][..hw];
                            for y in tap.y.0..tap.y.1 {
                                let from = c * n + (g * rows + y - tap.y.0) * cols;
                                plane[tap.row_start(y, w, !forward)..][..cols]
                                    .iter_mut()
                                    .zip(&product[from..from + cols])
                                    .for_each(|(o, p)| *o += p);
                            }
                        }
                    }
                }
                if let Some(epilogue) = epilogue {
                    for (i, plane) in dst_run.chunks_mut(hw).enumerate() {
                        epilogue.apply(i % c_dst, plane);
                    }
                }
            });
        });
    dst
}

/// The weight gradient `[C_out, C_in, 3, 3]` from the input `xs` and the output gradient
/// `gs`, one product per tap over its rectangle: `dW[:, :, ky, kx] = dY[:, rect] ·
/// X[:, rect + shift]ᵀ`, one partial sum per worker thread.
pub(super) fn weight_gradient(xs: &[f32], gs: &[f32], d: &Dims) -> Vec<f32> {
    let hw = d.h * d.w;
    let per_thread = images_per_thread(d);
    let (c_in, taps_len) = (d.c_in, 9 * d.c_in);
    let parts: Vec<Vec<f32>> = (0..d.batch)
        .step_by(per_thread)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|first| {
            let count = per_thread.min(d.batch - first);
            // This thread's sum as `[C_out][tap][C_in]` (tap t's matrix at t·C_in, rows 9·C_in
            // apart). Taps without positions (maps of one row or column) keep their zeros.
            let mut by_tap = vec![0.0f32; d.c_out * taps_len];
            let lens = [c_in * count * hw, d.c_out * count * hw];
            with_work_buffers(lens, |[gx, gy]| {
                for (t, tap, n) in Tap::nonempty(d, count) {
                    gather(xs, (c_in, d), (first, count), (&tap, true), gx);
                    gather(gs, (d.c_out, d), (first, count), (&tap, false), gy);
                    let (lhs, rhs) = ((&*gy, [n, 1]), (&*gx, [1, n]));
                    let dw_t = &mut by_tap[t * c_in..];
                    matmul([d.c_out, c_in, n], dw_t, taps_len, false, lhs, rhs);
                }
            });
            by_tap
        })
        .collect();
    let by_tap = sum_parts(parts);
    // `[C_out][tap][C_in]` → `[C_out][C_in][tap]`, one output channel's row at a time.
    let mut dw = zeros(d.c_out * taps_len);
    dw.par_chunks_mut(taps_len)
        .zip(by_tap.par_chunks(taps_len))
        .for_each(|(out, row)| {
            for (ci, taps) in out.chunks_mut(9).enumerate() {
                for (t, v) in taps.iter_mut().enumerate() {
                    *v = row[t * c_in + ci];
                }
            }
        });
    dw
}
