//! 3×3, stride-1, padding-1 convolutions on small maps (ResNet's layer3 and layer4 at 112²,
//! where [`super::applies`] refuses the stacked layout) with the batch in the vector lanes: the
//! forward and the input gradient (the same convolution with the kernel flipped and the
//! channel axes swapped, [`Kernel::InputGradient`]); and the weight gradient, which runs on
//! the same micro-kernel with the input channels in the lanes ([`weight_gradient`]).
//!
//! Why: on a 7×7 or 4×4 map a vector of 16 positions mixes rows, so tap `(ky, kx)` reads the
//! padding in some lanes and not in others: im2col multiplies those zeros (18% of the work at
//! 7², 31% at 4²), and the stacked layout of [`super`] also computes the rows between images.
//! The per-tap products (`conv::taps`) skip them but pay for it in copies: each tap gathers its
//! input rectangle, the GEMM packs it and the weights again, and its product is added back
//! into the output — at layer4 the GEMMs' own loop was ~65% of the layer's time.
//!
//! Here lane `i` of every vector holds image `16·b + i` of a block of 16, and the layout is
//! `[channel][block][position][lane]`: all lanes of a vector share one output position, so
//! each tap's output positions are exactly the rectangle where it reads inside the image (as
//! in `conv::taps`), and its input is the same rectangle shifted by one flat offset, read in
//! place. One micro-kernel ([`super::strided_tile`], 8 output channels × 3 positions × 16
//! images) sums over the input channels with a fixed stride and adds the tap's sum to the
//! output; the centre tap, which covers every position, comes first and writes instead.
//! The weights are packed per tile of 8 output channels, tap-major, right before the tile's
//! work, so that they are still in cache when it starts. Batches that are not a multiple of
//! 16 stay with the per-tap products.
//!
//! Measured (docs/performance.md), 16 images, against the per-tap products: 512 → 512 at 4²
//! forward 6.2–6.8 → 4.6–5.1 ms, weight gradient 6.6 → 5.1 ms; 256 → 256 at 7² forward
//! 5.1–5.3 → 3.8–4.0 ms, weight gradient 4.7 → 4.2 ms.

use rayon::prelude::*;

use super::super::conv::ChannelAffine;
use super::super::{valid_taps as valid, with_work_buffers};
use super::{Kernel, Shape, TILE_CHANNELS, avx512, strided_tile};

/// Images per vector.
const LANES: usize = 16;
/// Output positions per micro-kernel tile (its three vectors).
const TILE_VECTORS: usize = 3;
/// Floats after the packed input that a tile's reads may reach: a partial last tile reads
/// whole vectors past the rectangle's end (the results of those lanes are not stored).
const TAIL: usize = TILE_VECTORS * LANES;
/// The centre tap, `(1, 1)`: it reads inside the image at every output position.
const CENTRE: usize = 4;

/// Does this product (for the input gradient, the shape with the channels swapped) take the
/// batch-lane path? AVX-512F, whole blocks of 16 images and whole tiles of output channels.
pub(in crate::flex) fn applies(shape: &Shape) -> bool {
    shape.batch > 0
        && shape.batch.is_multiple_of(LANES)
        && shape.c_out.is_multiple_of(TILE_CHANNELS)
        && shape.c_in > 0
        && shape.h > 0
        && shape.w > 0
        && avx512()
}

/// Tap `t`'s work on an `h × w` map ([`TapRuns::new`]).
struct TapRuns {
    /// The flat offset from an output position to the input position the tap reads.
    shift: isize,
    /// The runs `(first position, length)` of output positions where the tap reads inside
    /// the image: one run when it spans whole rows (`kx = 1`), one per row otherwise; none
    /// when it reads only padding (a map of one row or column).
    runs: Vec<(usize, usize)>,
}

impl TapRuns {
    fn new(t: usize, h: usize, w: usize) -> Self {
        let (ky, kx) = (t / 3, t % 3);
        let shift = (ky as isize - 1) * w as isize + kx as isize - 1;
        let ((y0, y1), (x0, x1)) = (valid(ky, h), valid(kx, w));
        let runs: Vec<(usize, usize)> = if x1 - x0 == w {
            vec![(y0 * w, (y1 - y0) * w)]
        } else {
            (y0..y1).map(|y| (y * w + x0, x1 - x0)).collect()
        };
        Self {
            shift,
            runs: runs.into_iter().filter(|&(_, len)| len > 0).collect(),
        }
    }

    /// The input position output position `p` reads.
    fn source(&self, p: usize) -> usize {
        p.wrapping_add_signed(self.shift)
    }
}

/// Writes `x` (`[batch, channels, P]`, `P` positions per plane) as `[channel][block][P][lane]`
/// into `out`, then zeros the [`TAIL`].
fn to_lanes(x: &[f32], channels: usize, positions: usize, out: &mut [f32]) {
    let plane = x.len() / channels; // batch · P
    let blocks = plane / (LANES * positions);
    let (planes, tail) = out.split_at_mut(channels * plane);
    tail.fill(0.0);
    planes
        .par_chunks_mut(plane)
        .enumerate()
        .for_each(|(c, dst)| {
            for b in 0..blocks {
                let block = &mut dst[b * positions * LANES..][..positions * LANES];
                for lane in 0..LANES {
                    let image = &x[((b * LANES + lane) * channels + c) * positions..][..positions];
                    for (p, &v) in image.iter().enumerate() {
                        block[p * LANES + lane] = v;
                    }
                }
            }
        });
}

/// `weights` (`[C_out, C_in, 3, 3]` of the layer) as [`super::strided_tile`] reads them for
/// tile `tile` of the product's output channels: `[tap][input channel][channel of the tile]`.
/// One input channel at a time: its 8 × 9 weights are gathered from the tile's rows (one run of
/// 72 floats for the input gradient, whose tile is 8 of the layer's input channels) and written
/// as nine runs of 8.
fn pack_tile(weights: &[f32], layer: &Shape, kernel: Kernel, tile: usize, packed: &mut [f32]) {
    let product = layer.product(kernel);
    let (ins, outs) = (product.c_in, product.c_out);
    let mut block = [[0.0f32; TILE_CHANNELS]; 9];
    for c in 0..ins {
        for (m, o) in (tile * TILE_CHANNELS..(tile + 1) * TILE_CHANNELS).enumerate() {
            let taps = match kernel {
                Kernel::Forward => &weights[(o * ins + c) * 9..][..9],
                Kernel::InputGradient => &weights[(c * outs + o) * 9..][..9],
            };
            for (t, &v) in taps.iter().enumerate() {
                let t = match kernel {
                    Kernel::Forward => t,
                    Kernel::InputGradient => 8 - t,
                };
                block[t][m] = v;
            }
        }
        for (t, lanes) in block.iter().enumerate() {
            packed[(t * ins + c) * TILE_CHANNELS..][..TILE_CHANNELS].copy_from_slice(lanes);
        }
    }
}

/// The 3×3 convolution of `input` (`[batch, ins, H, W]`; `ins` = the layer's `C_in` for
/// [`Kernel::Forward`], `C_out` for [`Kernel::InputGradient`]) with the layer's `weights`, as a
/// new `[batch, outs, H, W]` vector, with `epilogue` applied per output channel. The caller
/// checks [`applies`] (for the input gradient, on the shape with the channels swapped).
pub(in crate::flex) fn convolve(
    input: &[f32],
    weights: &[f32],
    layer: &Shape,
    kernel: Kernel,
    epilogue: Option<&ChannelAffine>,
) -> Vec<f32> {
    let shape = layer.product(kernel);
    let (ins, outs) = (shape.c_in, shape.c_out);
    let (h, w, positions) = (shape.h, shape.w, shape.h * shape.w);
    assert!(
        applies(&shape)
            && input.len() == shape.batch * ins * positions
            && weights.len() == ins * outs * 9,
        "flex::direct::lanes: buffers do not match the shape, or the shape is not taken"
    );
    let blocks = shape.batch / LANES;
    // One channel's floats in the lane layout.
    let plane = blocks * positions * LANES;
    // The centre tap first: it covers every output position and writes them.
    let taps: Vec<(usize, TapRuns)> = std::iter::once(CENTRE)
        .chain((0..9).filter(|&t| t != CENTRE))
        .map(|t| (t, TapRuns::new(t, h, w)))
        .collect();
    let len = shape.batch * outs * positions;
    let mut y = Vec::with_capacity(len);
    with_work_buffers([ins * plane + TAIL, outs * plane], |[packed, out]| {
        to_lanes(input, ins, positions, packed);
        let packed = &*packed;
        out.par_chunks_mut(TILE_CHANNELS * plane)
            .enumerate()
            .for_each(|(tile, rows)| {
                with_work_buffers([9 * ins * TILE_CHANNELS], |[a]| {
                    pack_tile(weights, layer, kernel, tile, a);

                    for b in 0..blocks {
                        for (i, (t, tap)) in taps.iter().enumerate() {
                            let a_t = &a[t * ins * TILE_CHANNELS..];
                            for &(first, run) in &tap.runs {
                                for j in (0..run).step_by(TILE_VECTORS) {
                                    let at = b * positions + first + j;
                                    let from = tap.source(at);
                                    // SAFETY: applies() checked AVX-512F; a_t holds ins rows of
                                    // TILE_CHANNELS weights; `from` is an input position of
                                    // this block (the run reads inside the image), so the 48
                                    // floats after `from` in each of the ins planes lie in
                                    // `packed` (the next plane, or the TAIL after the last);
                                    // `rows` holds TILE_CHANNELS rows of `plane` floats with
                                    // the vectors `at..at + vectors` inside, written by the
                                    // centre tap before the others add to them.
                                    unsafe {
                                        strided_tile(
                                            a_t.as_ptr(),
                                            (packed.as_ptr().add(from * LANES), plane),
                                            ins,
                                            rows.as_mut_ptr().add(at * LANES),
                                            plane,
                                            i > 0,
                                            TILE_VECTORS.min(run - j),
                                        );
                                    }
                                }
                            }
                        }
                    }
                });
            });
        // Lanes back to NCHW; every element of the output is written here.
        let out = &*out;
        y.spare_capacity_mut()[..len]
            .par_chunks_mut(positions)
            .enumerate()
            .for_each(|(index, dst)| {
                let (n, c) = (index / outs, index % outs);
                let (b, lane) = (n / LANES, n % LANES);
                let src = &out[c * plane + b * positions * LANES + lane..];
                for (p, o) in dst.iter_mut().enumerate() {
                    o.write(src[p * LANES]);
                }
                // SAFETY: every element of `dst` was written just above.
                let dst = unsafe { &mut *(dst as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
                if let Some(epilogue) = epilogue {
                    epilogue.apply(c, dst);
                }
            });
    });
    // SAFETY: the loop above wrote all `len` elements (`len / positions` planes).
    unsafe { y.set_len(len) };
    y
}

/// Can this machine and layer take [`weight_gradient`]? AVX-512F, whole tiles of output
/// channels and whole vectors of input channels (any batch).
pub(in crate::flex) fn weight_gradient_applies(layer: &Shape) -> bool {
    layer.batch > 0
        && layer.c_out.is_multiple_of(TILE_CHANNELS)
        && layer.c_in > 0
        && layer.c_in.is_multiple_of(LANES)
        && layer.h > 0
        && layer.w > 0
        && avx512()
}

/// The weight gradient `[C_out, C_in, 3, 3]` of a 3×3, stride-1, padding-1 layer from its
/// input `[batch, C_in, H, W]` and output gradient `[batch, C_out, H, W]`:
/// `dW[o][c][t] = Σ dY[o][p][n] · X[c][p + shift_t][n]` over the images `n` and the positions
/// `p` of tap `t`'s runs ([`TapRuns`]), so the padding is skipped as in the forward.
///
/// The sum runs over `(position, image)` pairs, so here the input channels are in the lanes:
/// the input is laid out `[position][image][channel]`, each task takes 8 output channels with
/// their gradient laid out `[position][image][channel of the tile]`, and
/// [`super::strided_tile`] multiplies 8 broadcast gradients by 48 input channels per pair. Each
/// task writes its own rows of the result: no per-thread partial sums to add.
pub(in crate::flex) fn weight_gradient(input: &[f32], grad: &[f32], layer: &Shape) -> Vec<f32> {
    let (batch, ins, outs) = (layer.batch, layer.c_in, layer.c_out);
    let (h, w, positions) = (layer.h, layer.w, layer.h * layer.w);
    assert!(
        weight_gradient_applies(layer)
            && input.len() == batch * ins * positions
            && grad.len() == batch * outs * positions,
        "flex::direct::lanes: buffers do not match the shape, or the shape is not taken"
    );
    let pairs = positions * batch;
    let taps: Vec<TapRuns> = (0..9).map(|t| TapRuns::new(t, h, w)).collect();
    let taps_len = 9 * ins;
    let len = outs * taps_len;
    let mut dw = Vec::with_capacity(len);
    with_work_buffers([pairs * ins + TAIL, len], |[x, by_tap]| {
        // The input as [position][image][channel].
        let (planes, tail) = x.split_at_mut(pairs * ins);
        tail.fill(0.0);
        planes
            .par_chunks_mut(batch * ins)
            .enumerate()
            .for_each(|(p, out)| {
                for (n, row) in out.chunks_mut(ins).enumerate() {
                    let image = &input[n * ins * positions..][..ins * positions];
                    for (c, o) in row.iter_mut().enumerate() {
                        *o = image[c * positions + p];
                    }
                }
            });
        let x = &*x;
        // [C_out][tap][C_in]: tap t's rows start at t·C_in, 9·C_in apart.
        by_tap
            .par_chunks_mut(TILE_CHANNELS * taps_len)
            .enumerate()
            .for_each(|(tile, rows)| {
                with_work_buffers([pairs * TILE_CHANNELS], |[dy]| {
                    for n in 0..batch {
                        for m in 0..TILE_CHANNELS {
                            let plane = &grad[(n * outs + tile * TILE_CHANNELS + m) * positions..]
                                [..positions];
                            for (p, &v) in plane.iter().enumerate() {
                                dy[(p * batch + n) * TILE_CHANNELS + m] = v;
                            }
                        }
                    }
                    for (t, tap) in taps.iter().enumerate() {
                        if tap.runs.is_empty() {
                            // A map of one row or column: this tap reads only padding.
                            for row in rows.chunks_mut(taps_len) {
                                row[t * ins..][..ins].fill(0.0);
                            }
                        }
                        for c in (0..ins).step_by(TILE_VECTORS * LANES) {
                            let vectors = TILE_VECTORS.min((ins - c) / LANES);
                            for (i, &(first, run)) in tap.runs.iter().enumerate() {
                                let from = tap.source(first);
                                // SAFETY: applies() checked AVX-512F; `dy` holds the run's
                                // run·batch pairs of TILE_CHANNELS gradients from pair
                                // first·batch; the run's input positions lie inside the map, so
                                // every pair's 48 floats from channel c lie in `x` (the next
                                // pair's channels, or the TAIL); `rows` has TILE_CHANNELS rows
                                // of 9·C_in with the `vectors` vectors of channels c.. of tap t
                                // inside (C_in is whole vectors), written by the first run
                                // before the others add to them.
                                unsafe {
                                    strided_tile(
                                        dy.as_ptr().add(first * batch * TILE_CHANNELS),
                                        (x.as_ptr().add(from * batch * ins + c), ins),
                                        run * batch,
                                        rows.as_mut_ptr().add(t * ins + c),
                                        taps_len,
                                        i > 0,
                                        vectors,
                                    );
                                }
                            }
                        }
                    }
                });
            });
        // [C_out][tap][C_in] → [C_out][C_in][tap]; every element is written.
        let by_tap = &*by_tap;
        dw.spare_capacity_mut()[..len]
            .par_chunks_mut(taps_len)
            .zip(by_tap.par_chunks(taps_len))
            .for_each(|(out, row)| {
                for (ci, taps) in out.chunks_mut(9).enumerate() {
                    for (t, v) in taps.iter_mut().enumerate() {
                        v.write(row[t * ins + ci]);
                    }
                }
            });
    });
    // SAFETY: the loop above wrote all `len` elements.
    unsafe { dw.set_len(len) };
    dw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_runs_cover_the_positions_that_read_inside_the_image() {
        for (h, w) in [(4, 4), (7, 7), (1, 1), (2, 5), (5, 3)] {
            for t in 0..9 {
                let (ky, kx) = (t / 3, t % 3);
                let tap = TapRuns::new(t, h, w);
                let mut covered = vec![false; h * w];
                for &(first, len) in &tap.runs {
                    for (p, seen) in covered.iter_mut().enumerate().skip(first).take(len) {
                        assert!(!*seen, "{h}×{w} tap {t}: position {p} twice");
                        *seen = true;
                    }
                }
                for (p, &c) in covered.iter().enumerate() {
                    let (y, x) = ((p / w) as isize, (p % w) as isize);
                    let (iy, ix) = (y + ky as isize - 1, x + kx as isize - 1);
                    let inside = (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix);
                    assert_eq!(c, inside, "{h}×{w} tap {t} at {p}");
                    if inside {
                        assert_eq!(tap.source(p) as isize, iy * w as isize + ix);
                    }
                }
            }
        }
    }
}
