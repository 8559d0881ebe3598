//! 3×3, stride-1, padding-1 convolutions on small maps as nine products, one per kernel tap,
//! each over only the output positions where that tap lands inside the image.
//!
//! Why: im2col multiplies the padding's zeros like any other entry. On a 4×4 map (ResNet's
//! layer4 at 112²) 44 of the 144 tap × position pairs fall in the padding, 31% of the work; on
//! 7×7, 18%. oneDNN's direct convolution (PyTorch) skips them. For tap `(ky, kx)` the output
//! positions whose input `(y + ky − 1, x + kx − 1)` lies inside the image form a rectangle;
//! gathering the input over it gives a `C_in × positions` matrix without zeros, and
//! `Y[:, rect] += W[:, :, ky, kx] · X[:, rect + shift]`. The input gradient is the same with
//! the roles swapped: `dX[:, rect + shift] += W[:, :, ky, kx]ᵀ · dY[:, rect]`.

use rayon::prelude::*;

use super::{ChannelAffine, Dims, matmul, with_work_buffers, zeros};

/// Which product of the layer: `X → Y` or `dY → dX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    Forward,
    InputGradient,
}

/// Output rows (or columns) `[start, end)` where kernel row `k` of a 3-tap, padding-1 window
/// reads inside a map of `size`: input `y + k − 1` in `[0, size)`.
fn valid(k: usize, size: usize) -> (usize, usize) {
    let start = 1usize.saturating_sub(k);
    let end = (size + 1).saturating_sub(k).min(size);
    (start, end.max(start))
}

/// The layer's product in `direction` (`src` = `X` or `dY`, NCHW), as a new NCHW vector, with
/// `epilogue` applied per output channel (forward only).
pub(super) fn convolve(
    src: &[f32],
    ws: &[f32],
    d: &Dims,
    direction: Direction,
    epilogue: Option<&ChannelAffine>,
) -> Vec<f32> {
    let (h, w, hw) = (d.h, d.w, d.h * d.w);
    let (c_src, c_dst) = match direction {
        Direction::Forward => (d.c_in, d.c_out),
        Direction::InputGradient => (d.c_out, d.c_in),
    };
    let per_thread = d.batch.div_ceil(rayon::current_num_threads().max(1));
    let mut dst = zeros(d.batch * c_dst * hw);
    let taps_len = d.c_out * d.c_in;
    with_work_buffers([9 * taps_len], |[by_tap]| {
        // The weights tap-major, `[tap][C_out][C_in]`: each tap's matrix contiguous (read
        // transposed for the input gradient), once for both threads.
        by_tap
            .par_chunks_mut(taps_len)
            .enumerate()
            .for_each(|(t, w_t)| {
                for (i, v) in w_t.iter_mut().enumerate() {
                    *v = ws[i * 9 + t];
                }
            });
        let by_tap = &*by_tap;
        dst.par_chunks_mut(per_thread * c_dst * hw)
            .enumerate()
            .for_each(|(run, dst_run)| {
                let first = run * per_thread;
                let count = dst_run.len() / (c_dst * hw);
                let lens = [c_src * count * hw, c_dst * count * hw];
                with_work_buffers(lens, |[gathered, product]| {
                    for t in 0..9 {
                        let (ky, kx) = (t / 3, t % 3);
                        let ((y0, y1), (x0, x1)) = (valid(ky, h), valid(kx, w));
                        let (rows, cols) = (y1 - y0, x1 - x0);
                        let n = count * rows * cols;
                        if n == 0 {
                            continue;
                        }
                        // Where the rectangle's row `y` reads and writes: the input side is
                        // shifted by the tap, the output side is not.
                        let (read, write) = match direction {
                            Direction::Forward => ((ky, kx), (1, 1)),
                            Direction::InputGradient => ((1, 1), (ky, kx)),
                        };
                        let at =
                            |(oy, ox): (usize, usize), y: usize| (y + oy - 1) * w + x0 + ox - 1;
                        for c in 0..c_src {
                            for g in 0..count {
                                let plane = &src[((first + g) * c_src + c) * hw..][..hw];
                                for y in y0..y1 {
                                    let to = c * n + (g * rows + y - y0) * cols;
                                    gathered[to..to + cols]
                                        .copy_from_slice(&plane[at(read, y)..][..cols]);
                                }
                            }
                        }
                        let w_t = &by_tap[t * taps_len..(t + 1) * taps_len];
                        let lhs = match direction {
                            Direction::Forward => (w_t, [d.c_in, 1]),
                            Direction::InputGradient => (w_t, [1, d.c_in]),
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
                                for y in y0..y1 {
                                    let from = c * n + (g * rows + y - y0) * cols;
                                    plane[at(write, y)..][..cols]
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
    });
    dst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_rows_keep_the_tap_inside_the_map() {
        assert_eq!(valid(0, 4), (1, 4));
        assert_eq!(valid(1, 4), (0, 4));
        assert_eq!(valid(2, 4), (0, 3));
        // A one-pixel map: only the centre tap reads inside it.
        assert_eq!(valid(0, 1), (1, 1));
        assert_eq!(valid(1, 1), (0, 1));
        assert_eq!(valid(2, 1), (0, 0));
    }
}
