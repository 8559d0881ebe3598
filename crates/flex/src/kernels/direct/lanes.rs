//! 3×3, padding-1 convolutions with small outputs (up to 14 rows: ResNet's layer2 to layer4 at
//! 112², where the stacked layout of [`super`] computes 7–14% more than the layer), at stride 1
//! or 2, with the batch in the vector lanes: the forward, the input gradient (the adjoint, written as a
//! scatter), and the weight gradient, which runs on the same micro-kernel with the input
//! channels in the lanes ([`weight_gradient`]).
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
//! place ([`TapRuns`]). At stride 2 the input is read as four phase planes of the output's
//! size ([`Layer::input_planes`]), which makes every tap a fixed offset into one plane again.
//! One micro-kernel ([`super::strided_tile`], 8 output channels × 3 positions × 16 images) sums
//! over the input channels with a fixed stride and adds the tap's sum to the output; at stride
//! 1 the centre tap, which covers every position, comes first and writes instead. The weights
//! are packed per tile of 8 output channels, tap-major, right before the tile's work, so that
//! they are still in cache when it starts. Batches that are not a multiple of 16 stay, for the
//! forward and input gradient, with the direct kernels (10 to 14 rows), the per-tap products
//! (below) or im2col (stride 2).
//!
//! Measured (docs/notes/2026-11-performance-log.md), 16 images, forward + input gradient + weight gradient:
//! 512 → 512 at 4² 17.7 → 15.2 ms and 256 → 256 at 7² 14.3 → 13.0 ms against the per-tap
//! products, 128 → 128 at 14² 14.5 → 13.4 ms against the direct kernels; at stride 2, 128 →
//! 256 from 14² 8.6 → 7.4–7.6 ms and 256 → 512 from 7² 10.9–11.1 → 7.8–7.9 ms against im2col.

use rayon::prelude::*;

use super::super::conv::{ChannelAffine, nchw_from_planes};
use super::super::{valid_outputs, with_work_buffers};
use super::{Kernel, TILE_CHANNELS, avx512, strided_tile};

/// Images per vector.
const LANES: usize = 16;
/// Output positions per micro-kernel tile (its three vectors).
const TILE_VECTORS: usize = 3;
/// Floats after a packed operand that a tile's reads may reach: a partial last tile reads
/// whole vectors past its run's end (the results of those lanes are not stored).
const TAIL: usize = TILE_VECTORS * LANES;
/// The centre tap, `(1, 1)`: it reads inside the image at every output position.
const CENTRE: usize = 4;
/// The most output rows these kernels take at stride 1, and for the weight gradient at
/// stride 2. Above it their planes (64 bytes per position and channel) outgrow L2 and they
/// lose: 64 → 64 at 28², forward and input gradient 5.7–5.9 ms each against the direct
/// kernels' 4.8. At 14² they win (128 → 128, forward / input gradient / weight gradient
/// 4.56 / 4.55 / 4.34 ms against the direct kernels' 4.75 / 4.84 / 4.97; with the rows
/// between images the direct kernels compute 7% more there, 15% more for the weight
/// gradient).
const MAX_ROWS: usize = 14;
/// The most output rows the forward and input gradient take at stride 2: from 28² to 14²
/// (64 → 128) they ran 3.1 / 2.9 ms against im2col's 2.76 / 2.75 (the weight gradient 2.6
/// against 2.87 ms, so it takes [`MAX_ROWS`]).
const MAX_ROWS_STRIDE_2: usize = 9;

/// A 3×3, padding-1 convolution at stride 1 or 2, as these kernels see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::kernels) struct Layer {
    pub batch: usize,
    pub c_in: usize,
    pub c_out: usize,
    /// The input map.
    pub h: usize,
    pub w: usize,
    /// 1 or 2.
    pub stride: usize,
}

impl Layer {
    /// Stride 1 or 2, a map that is not empty, and at most `max_rows` output rows.
    fn fits(&self, max_rows: usize) -> bool {
        matches!(self.stride, 1 | 2) && self.h > 0 && self.w > 0 && self.out_size().0 <= max_rows
    }

    /// The input and output channels of product `kernel`: the layer's `(C_in, C_out)` for
    /// the forward, `(C_out, C_in)` for the input gradient.
    fn channels(&self, kernel: Kernel) -> (usize, usize) {
        match kernel {
            Kernel::Forward => (self.c_in, self.c_out),
            Kernel::InputGradient => (self.c_out, self.c_in),
        }
    }

    /// The output map: `⌊(H − 1)/s⌋ + 1` by `⌊(W − 1)/s⌋ + 1`.
    fn out_size(&self) -> (usize, usize) {
        (
            (self.h - 1) / self.stride + 1,
            (self.w - 1) / self.stride + 1,
        )
    }

    /// The input as `s²` planes of the output's size (stride 1: the input itself): plane
    /// `(py, px)` holds pixel `(s·qy + py, s·qx + px)` at `(qy, qx)`, zero where that lies
    /// outside the image. At stride 2 every tap then reads one plane at a fixed offset, as at
    /// stride 1.
    fn input_planes(&self) -> Planes {
        let (h, w) = self.out_size();
        Planes {
            stride: self.stride,
            h,
            w,
            image: (self.h, self.w),
        }
    }

    /// The output map as one plane.
    fn output_planes(&self) -> Planes {
        let (h, w) = self.out_size();
        Planes {
            stride: 1,
            h,
            w,
            image: (h, w),
        }
    }
}

/// The most `(position, image)` pairs the weight gradient sums in registers before adding the
/// sums to the result. One call per tap run summed up to 3,136 pairs at 14² (16 images), one
/// running f32 sum each: 1.1e-4 from the f64 truth (relative to `1 + |dW|`, 128 → 128), twice
/// `conv2d`'s error and above the 1e-4 the project holds to; in pieces of 256 the result has
/// about seven partial sums to add, for 24 vector adds per 256 pairs' 6,144 multiply-adds.
const MAX_PAIRS: usize = 256;

/// Does this product of `layer` take the batch-lane path? AVX-512F, whole blocks of 16 images
/// and whole tiles of the product's output channels (the layer's `C_out` for the forward,
/// `C_in` for the input gradient), stride 1 or 2, at most [`MAX_ROWS`] output rows at stride 1
/// and [`MAX_ROWS_STRIDE_2`] at stride 2.
pub(in crate::kernels) fn applies(layer: &Layer, kernel: Kernel) -> bool {
    let (_, outs) = layer.channels(kernel);
    let max_rows = if layer.stride == 1 {
        MAX_ROWS
    } else {
        MAX_ROWS_STRIDE_2
    };
    layer.batch > 0
        && layer.batch.is_multiple_of(LANES)
        && outs.is_multiple_of(TILE_CHANNELS)
        && layer.c_in > 0
        && layer.c_out > 0
        && layer.fits(max_rows)
        && avx512()
}

/// `stride²` planes of `h × w` positions standing for an `image` map (see
/// [`Layer::input_planes`]).
#[derive(Debug, Clone, Copy)]
struct Planes {
    stride: usize,
    h: usize,
    w: usize,
    image: (usize, usize),
}

impl Planes {
    /// Positions per image: all planes.
    fn positions(&self) -> usize {
        self.stride * self.stride * self.h * self.w
    }

    /// The image pixel (flat) at `position`, if inside the image.
    fn pixel(&self, position: usize) -> Option<usize> {
        let (plane, q) = (position / (self.h * self.w), position % (self.h * self.w));
        let y = self.stride * (q / self.w) + plane / self.stride;
        let x = self.stride * (q % self.w) + plane % self.stride;
        (y < self.image.0 && x < self.image.1).then_some(y * self.image.1 + x)
    }

    /// The position holding image pixel `pixel`.
    fn position(&self, pixel: usize) -> usize {
        let (y, x) = (pixel / self.image.1, pixel % self.image.1);
        let plane = (y % self.stride) * self.stride + x % self.stride;
        plane * self.h * self.w + (y / self.stride) * self.w + x / self.stride
    }
}

/// Tap `t`'s work ([`TapRuns::new`]): where in the input planes ([`Layer::input_planes`]) it
/// reads for each output position, and at which output positions it reads inside the image.
struct TapRuns {
    /// The input plane it reads.
    plane: usize,
    /// The flat offset, within a plane, from an output position to the position it reads.
    shift: isize,
    /// The runs `(first position, length)` of output positions where the tap reads inside
    /// the image: one run when it spans whole rows, one per row otherwise; none when it reads
    /// only padding (a map of one row or column).
    runs: Vec<(usize, usize)>,
}

impl TapRuns {
    fn new(t: usize, layer: &Layer) -> Self {
        let (ky, kx) = (t / 3, t % 3);
        let s = layer.stride;
        let (h, w) = layer.out_size();
        // Input row s·y + ky − 1 lies in plane row py = (ky − 1) mod s, at plane row y + dy.
        let (py, px) = ((ky + s - 1) % s, (kx + s - 1) % s);
        let offset = |k: usize, p: usize| (k as isize - 1 - p as isize) / s as isize;
        let shift = offset(ky, py) * w as isize + offset(kx, px);
        let (y0, y1) = valid_outputs(ky, 1, s, layer.h, h);
        let (x0, x1) = valid_outputs(kx, 1, s, layer.w, w);
        let runs: Vec<(usize, usize)> = if x1 - x0 == w {
            vec![(y0 * w, (y1 - y0) * w)]
        } else {
            (y0..y1).map(|y| (y * w + x0, x1 - x0)).collect()
        };
        Self {
            plane: py * s + px,
            shift,
            runs: runs.into_iter().filter(|&(_, len)| len > 0).collect(),
        }
    }

    /// The position (across the input planes) that output position `p` reads.
    fn source(&self, p: usize, plane_len: usize) -> usize {
        (self.plane * plane_len + p).wrapping_add_signed(self.shift)
    }
}

/// Writes `x` (`[batch, channels, H, W]`) as `planes` in the lane layout,
/// `[channel][block][position][lane]`, into `out` (zeros where a position lies outside the
/// image), then zeros the [`TAIL`].
fn to_lanes(x: &[f32], channels: usize, planes: &Planes, out: &mut [f32]) {
    let image = planes.image.0 * planes.image.1;
    let positions = planes.positions();
    let blocks = x.len() / (channels * image * LANES);
    let plane = blocks * positions * LANES;
    let (body, tail) = out.split_at_mut(channels * plane);
    tail.fill(0.0);
    let pixels: Vec<Option<usize>> = (0..positions).map(|p| planes.pixel(p)).collect();
    body.par_chunks_mut(plane).enumerate().for_each(|(c, dst)| {
        for (b, block) in dst.chunks_mut(positions * LANES).enumerate() {
            for lane in 0..LANES {
                let map = &x[((b * LANES + lane) * channels + c) * image..][..image];
                for (p, pixel) in pixels.iter().enumerate() {
                    block[p * LANES + lane] = pixel.map_or(0.0, |i| map[i]);
                }
            }
        }
    });
}

/// `weights` (`[C_out, C_in, 3, 3]` of the layer) as [`super::strided_tile`] reads them for
/// tile `tile` of the product's output channels: `[tap][input channel][channel of the tile]`,
/// the input channels being the layer's `C_in` for the forward, its `C_out` for the input
/// gradient. One input channel at a time: its 8 × 9 weights are gathered from the tile's rows
/// (one run of 72 floats for the input gradient, whose tile is 8 of the layer's input
/// channels) and written as nine runs of 8.
fn pack_tile(weights: &[f32], layer: &Layer, kernel: Kernel, tile: usize, packed: &mut [f32]) {
    let (ins, outs) = layer.channels(kernel);
    let mut block = [[0.0f32; TILE_CHANNELS]; 9];
    for c in 0..ins {
        for (m, o) in (tile * TILE_CHANNELS..(tile + 1) * TILE_CHANNELS).enumerate() {
            let taps = match kernel {
                Kernel::Forward => &weights[(o * ins + c) * 9..][..9],
                Kernel::InputGradient => &weights[(c * outs + o) * 9..][..9],
            };
            for (t, &v) in taps.iter().enumerate() {
                block[t][m] = v;
            }
        }
        for (t, lanes) in block.iter().enumerate() {
            packed[(t * ins + c) * TILE_CHANNELS..][..TILE_CHANNELS].copy_from_slice(lanes);
        }
    }
}

/// The product `kernel` of `layer` (`weights` `[C_out, C_in, 3, 3]`): the forward from the
/// input `[batch, C_in, H, W]` to a new `[batch, C_out, H_out, W_out]` vector with `epilogue`
/// applied per output channel, or the input gradient from the output gradient to a new
/// `[batch, C_in, H, W]`. The caller checks [`applies`].
///
/// Both run tap by tap over the tap's runs of output positions ([`TapRuns`]): the forward
/// reads the input planes at the tap's offset and adds to the output position; the input
/// gradient reads the output gradient at the output position and adds to the input planes at
/// the tap's offset, with the weights transposed (not flipped: this is the adjoint written as
/// a scatter, which needs no flipped-kernel identity and holds at stride 2).
pub(in crate::kernels) fn convolve(
    input: &[f32],
    weights: &[f32],
    layer: &Layer,
    kernel: Kernel,
    epilogue: Option<&ChannelAffine>,
) -> Vec<f32> {
    let (ins, outs) = layer.channels(kernel);
    let (from, to) = match kernel {
        Kernel::Forward => (layer.input_planes(), layer.output_planes()),
        Kernel::InputGradient => (layer.output_planes(), layer.input_planes()),
    };
    let (image_in, image_out) = (from.image.0 * from.image.1, to.image.0 * to.image.1);
    assert!(
        applies(layer, kernel)
            && input.len() == layer.batch * ins * image_in
            && weights.len() == ins * outs * 9,
        "relata_flex::kernels::direct::lanes: buffers do not match the layer, or the layer is not taken"
    );
    let blocks = layer.batch / LANES;
    let plane_len = layer.out_size().0 * layer.out_size().1;
    let (positions_in, positions_out) = (from.positions(), to.positions());
    // One channel's floats in the lane layout, on each side.
    let (plane_in, plane_out) = (
        blocks * positions_in * LANES,
        blocks * positions_out * LANES,
    );
    // The centre tap first: at stride 1 it covers every output position of the forward and
    // every input position of the input gradient, and writes them; otherwise the output
    // starts at zero and every tap adds.
    let taps: Vec<(usize, TapRuns)> = std::iter::once(CENTRE)
        .chain((0..9).filter(|&t| t != CENTRE))
        .map(|t| (t, TapRuns::new(t, layer)))
        .collect();
    let centre_writes = layer.stride == 1;
    with_work_buffers(
        [ins * plane_in + TAIL, outs * plane_out],
        |[packed, out]| {
            to_lanes(input, ins, &from, packed);
            if !centre_writes {
                out.par_chunks_mut(1 << 16).for_each(|c| c.fill(0.0));
            }
            let packed = &*packed;
            out.par_chunks_mut(TILE_CHANNELS * plane_out)
                .enumerate()
                .for_each(|(tile, rows)| {
                    with_work_buffers([9 * ins * TILE_CHANNELS], |[a]| {
                        pack_tile(weights, layer, kernel, tile, a);
                        for b in 0..blocks {
                            for (i, (t, tap)) in taps.iter().enumerate() {
                                let a_t = &a[t * ins * TILE_CHANNELS..];
                                for &(first, run) in &tap.runs {
                                    for j in (0..run).step_by(TILE_VECTORS) {
                                        let (o, shifted) =
                                            (first + j, tap.source(first + j, plane_len));
                                        let (at_in, at_out) = match kernel {
                                            Kernel::Forward => (shifted, o),
                                            Kernel::InputGradient => (o, shifted),
                                        };
                                        let at_in = b * positions_in + at_in;
                                        let at_out = b * positions_out + at_out;
                                        // SAFETY: applies() checked AVX-512F; a_t holds ins rows of
                                        // TILE_CHANNELS weights; both positions lie in their block
                                        // (the run reads inside the image), so the 48 floats after
                                        // `at_in` in each of the ins channels lie in `packed` (the
                                        // next block or channel, or the TAIL after the last);
                                        // `rows` holds TILE_CHANNELS rows of `plane_out` floats with
                                        // the vectors `at_out..at_out + vectors` inside (a partial
                                        // tile stores only its run's), written by the centre tap
                                        // (or zeroed above) before the others add to them.
                                        unsafe {
                                            strided_tile(
                                                a_t.as_ptr(),
                                                (packed.as_ptr().add(at_in * LANES), plane_in),
                                                ins,
                                                rows.as_mut_ptr().add(at_out * LANES),
                                                plane_out,
                                                i > 0 || !centre_writes,
                                                TILE_VECTORS.min(run - j),
                                            );
                                        }
                                    }
                                }
                            }
                        }
                    });
                });
            // Lanes back to NCHW.
            let out = &*out;
            let positions: Vec<usize> = (0..image_out).map(|i| to.position(i)).collect();
            let positions = &positions;
            nchw_from_planes((layer.batch, outs, image_out), epilogue, |n, c| {
                let (b, lane) = (n / LANES, n % LANES);
                let src = &out[c * plane_out + b * positions_out * LANES + lane..];
                positions.iter().map(move |&p| src[p * LANES])
            })
        },
    )
}

/// Can this machine and layer take [`weight_gradient`]? AVX-512F, whole tiles of output
/// channels and whole vectors of input channels (any batch), stride 1 or 2, at most
/// [`MAX_ROWS`] output rows.
pub(in crate::kernels) fn weight_gradient_applies(layer: &Layer) -> bool {
    layer.batch > 0
        && layer.c_out.is_multiple_of(TILE_CHANNELS)
        && layer.c_in > 0
        && layer.c_in.is_multiple_of(LANES)
        && layer.fits(MAX_ROWS)
        && avx512()
}

/// The weight gradient `[C_out, C_in, 3, 3]` of `layer` from its input `[batch, C_in, H, W]`
/// and output gradient `[batch, C_out, H_out, W_out]`:
/// `dW[o][c][t] = Σ dY[o][p][n] · X[c][source_t(p)][n]` over the images `n` and the positions
/// `p` of tap `t`'s runs ([`TapRuns`]), so the padding is skipped as in the forward.
///
/// The sum runs over `(position, image)` pairs, so here the input channels are in the lanes:
/// the input planes are laid out `[position][image][channel]`, each task takes 8 output
/// channels with their gradient laid out `[position][image][channel of the tile]`, and
/// [`super::strided_tile`] multiplies 8 broadcast gradients by 48 input channels per pair, over
/// at most [`MAX_PAIRS`] pairs per call. Each task writes its own rows of the result: no
/// per-thread partial sums to add.
pub(in crate::kernels) fn weight_gradient(input: &[f32], grad: &[f32], layer: &Layer) -> Vec<f32> {
    let (batch, ins, outs) = (layer.batch, layer.c_in, layer.c_out);
    let (from, plane_len) = (
        layer.input_planes(),
        layer.out_size().0 * layer.out_size().1,
    );
    let image = layer.h * layer.w;
    assert!(
        weight_gradient_applies(layer)
            && input.len() == batch * ins * image
            && grad.len() == batch * outs * plane_len,
        "relata_flex::kernels::direct::lanes: buffers do not match the layer, or the layer is not taken"
    );
    let pairs = from.positions() * batch;
    let taps: Vec<TapRuns> = (0..9).map(|t| TapRuns::new(t, layer)).collect();
    // Positions per kernel call: each call's sums are at most MAX_PAIRS terms long.
    let piece = (MAX_PAIRS / batch).max(1);
    let taps_len = 9 * ins;
    let len = outs * taps_len;
    let mut dw = Vec::with_capacity(len);
    with_work_buffers([pairs * ins + TAIL], |[x]| {
        // The input planes as [position][image][channel].
        let (body, tail) = x.split_at_mut(pairs * ins);
        tail.fill(0.0);
        body.par_chunks_mut(batch * ins)
            .enumerate()
            .for_each(|(p, out)| {
                let pixel = from.pixel(p);
                for (n, row) in out.chunks_mut(ins).enumerate() {
                    let maps = &input[n * ins * image..][..ins * image];
                    for (c, o) in row.iter_mut().enumerate() {
                        *o = pixel.map_or(0.0, |i| maps[c * image + i]);
                    }
                }
            });
        let x = &*x;
        dw.spare_capacity_mut()[..len]
            .par_chunks_mut(TILE_CHANNELS * taps_len)
            .enumerate()
            .for_each(|(tile, out)| {
                let lens = [plane_len * batch * TILE_CHANNELS, TILE_CHANNELS * taps_len];
                with_work_buffers(lens, |[dy, rows]| {
                    for n in 0..batch {
                        for m in 0..TILE_CHANNELS {
                            let map = &grad[(n * outs + tile * TILE_CHANNELS + m) * plane_len..]
                                [..plane_len];
                            for (p, &v) in map.iter().enumerate() {
                                dy[(p * batch + n) * TILE_CHANNELS + m] = v;
                            }
                        }
                    }
                    // The tile's rows as [channel of the tile][tap][C_in]: tap t's rows start
                    // at t·C_in, 9·C_in apart.
                    for (t, tap) in taps.iter().enumerate() {
                        if tap.runs.is_empty() {
                            // A map of one row or column: this tap reads only padding.
                            for row in rows.chunks_mut(taps_len) {
                                row[t * ins..][..ins].fill(0.0);
                            }
                        }
                        // The tap's runs cut into pieces of at most MAX_PAIRS pairs each.
                        let pieces = tap.runs.iter().flat_map(|&(first, run)| {
                            (first..first + run)
                                .step_by(piece)
                                .map(move |start| (start, piece.min(first + run - start)))
                        });
                        for c in (0..ins).step_by(TILE_VECTORS * LANES) {
                            let vectors = TILE_VECTORS.min((ins - c) / LANES);
                            for (i, (first, run)) in pieces.clone().enumerate() {
                                let from = tap.source(first, plane_len);
                                // SAFETY: applies() checked AVX-512F; `dy` holds the run's
                                // run·batch pairs of TILE_CHANNELS gradients from pair
                                // first·batch; the run's input positions lie in the planes,
                                // so every pair's 48 floats from channel c lie in `x` (the
                                // next pair's channels, or the TAIL); `rows` has
                                // TILE_CHANNELS rows of 9·C_in with the `vectors` vectors of
                                // channels c.. of tap t inside (C_in is whole vectors),
                                // written by the first run before the others add to them.
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
                    // [tap][C_in] → [C_in][tap] while the rows are in cache, instead of a
                    // second pass over the whole gradient (9.4 MB at layer4; the same speed,
                    // one buffer less); every element of `out` is written.
                    for (out, row) in out.chunks_mut(taps_len).zip(rows.chunks(taps_len)) {
                        for (ci, taps) in out.chunks_mut(9).enumerate() {
                            for (t, v) in taps.iter_mut().enumerate() {
                                v.write(row[t * ins + ci]);
                            }
                        }
                    }
                });
            });
    });
    // SAFETY: the loop above wrote all `len` elements.
    unsafe { dw.set_len(len) };
    dw
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The weight gradient's sums are added up in pieces: summing 16 images × 14² = 3,136
    /// pairs of 0.1 × 1 in one running f32 sum per tap drifts ~1e-4 from the exact value.
    #[test]
    fn weight_gradient_sums_long_runs_in_pieces() {
        if !crate::paths::avx512_or_skip("weight_gradient_sums_long_runs_in_pieces") {
            return;
        }
        let layer = Layer {
            batch: 16,
            c_in: 16,
            c_out: 8,
            h: 14,
            w: 14,
            stride: 1,
        };
        let input = vec![0.1f32; 16 * 16 * 14 * 14];
        let grad = vec![1.0f32; 16 * 8 * 14 * 14];
        let dw = weight_gradient(&input, &grad, &layer);
        for (i, &v) in dw.iter().enumerate() {
            // Tap (ky, kx) reads inside the image at 13 or 14 rows and columns of each image.
            let (ky, kx) = ((i % 9) / 3, i % 3);
            let side = |k: usize| if k == 1 { 14.0 } else { 13.0 };
            let exact = 16.0 * side(ky) * side(kx) * f64::from(0.1f32);
            let error = (f64::from(v) - exact).abs() / exact;
            assert!(error < 1e-5, "dW[{i}] = {v}, exactly {exact}: {error:.1e}");
        }
    }

    /// Every tap's runs are exactly the output positions where it reads inside the image, and
    /// each reads the planes' position holding the right pixel.
    #[test]
    fn tap_runs_cover_the_positions_that_read_inside_the_image() {
        for stride in [1, 2] {
            for (h, w) in [(4, 4), (7, 7), (1, 1), (2, 5), (5, 3), (8, 6)] {
                let layer = Layer {
                    batch: 16,
                    c_in: 8,
                    c_out: 8,
                    h,
                    w,
                    stride,
                };
                let (ho, wo) = layer.out_size();
                let planes = layer.input_planes();
                for t in 0..9 {
                    let (ky, kx) = (t / 3, t % 3);
                    let tap = TapRuns::new(t, &layer);
                    let mut covered = vec![false; ho * wo];
                    for &(first, len) in &tap.runs {
                        for (p, seen) in covered.iter_mut().enumerate().skip(first).take(len) {
                            assert!(!*seen, "{h}×{w}/{stride} tap {t}: position {p} twice");
                            *seen = true;
                        }
                    }
                    for (p, &c) in covered.iter().enumerate() {
                        let (y, x) = ((p / wo) as isize, (p % wo) as isize);
                        let s = stride as isize;
                        let (iy, ix) = (s * y + ky as isize - 1, s * x + kx as isize - 1);
                        let inside = (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix);
                        assert_eq!(c, inside, "{h}×{w}/{stride} tap {t} at {p}");
                        if inside {
                            let source = tap.source(p, ho * wo);
                            assert_eq!(
                                planes.pixel(source),
                                Some((iy * w as isize + ix) as usize),
                                "{h}×{w}/{stride} tap {t} at {p}"
                            );
                            assert_eq!(planes.position((iy * w as isize + ix) as usize), source);
                        }
                    }
                }
            }
        }
    }
}
