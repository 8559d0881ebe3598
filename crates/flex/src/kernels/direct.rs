//! 3×3, stride-1, padding-1 convolutions (every 3×3 layer of a ResNet block) as an implicit
//! GEMM with AVX-512 micro-kernels: the forward, the input gradient (the same convolution of
//! `dY` with the kernel flipped and its channel axes swapped), and the weight gradient (a sum
//! over positions of `dY` against the shifted input planes, [`weight_gradient`]).
//!
//! Why: with im2col the convolution's right-hand side is a `9·C_in × H·W` patch matrix,
//! megabytes per image, written once and read back by the GEMM's packing from L3 — the
//! `gemm` crate runs at ~82 GFLOP/s per thread on it against ~102 on cache-hot data, and
//! oneDNN's direct convolution (PyTorch) at ~105 (docs/notes/2026-11-performance-log.md).
//!
//! Here the input is laid out once so that every kernel position reads it at one flat offset:
//! per channel, one zero, then the batch's images stacked as rows of stride `S = W`, one zero
//! row between images and at the top. Output position `p = R·S + x` (stacked row `R`, column
//! `x`) then needs, for kernel position `(ky, kx)`, element `p + ky·S + kx` of each channel's
//! plane: row `k = (c, ky, kx)` of the patch matrix *is* the channel's plane shifted by
//! `ky·S + kx`, and the micro-kernel reads it in place — except where the window reads the
//! left or right padding: at column 0 the `kx = 0` tap's element is the row above's last, at
//! column `W − 1` the `kx = 2` tap's the next row's first, so those taps are read with the
//! lanes of those columns masked to zero ([`column_masks`]). The price: the outputs on the
//! rows between images are computed and thrown away, `1/H` of the work (4% at 28², 7% at 14²,
//! 14% at 7²), so [`applies`] keeps the smallest maps on other paths. The weight gradient
//! keeps a zero column between rows instead of the masks ([`Columns`]), which throws away
//! `(H+1)(W+1)/(H·W) − 1` (7% at 28², 15% at 14²).

#[cfg(x86_kernels)]
use std::arch::x86_64::{
    __m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_maskz_loadu_ps,
    _mm512_reduce_add_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
};

use rayon::prelude::*;

use super::conv::{ChannelAffine, nchw_from_planes};
use super::with_work_buffers;
use crate::paths::avx512;

pub(super) mod lanes;

/// Output channels per micro-kernel tile (broadcast weights).
const TILE_CHANNELS: usize = 8;
/// Output positions per micro-kernel tile: three 16-lane vectors.
const TILE_POSITIONS: usize = 48;
/// The largest share of thrown-away work (the rows between images) the direct path accepts;
/// above it the per-tap products are faster (measured: 16 × 256 × 7², 14% thrown away,
/// forward 5.2–5.7 ms against 4.6–4.8 ms per tap).
const MAX_WASTE: f64 = 0.1;
/// Rows of the patch matrix (16 input channels × 9 taps) one pass of the micro-kernel sums
/// before adding to the output, as a GEMM's k-blocking does: the block's weights (4.5 KiB) stay
/// in L1 across the tiles, and the running f32 sums are at most 144 terms long.
const K_BLOCK: usize = 144;
/// Packed input per block of tiles the kernel sweeps for all output channels before moving on,
/// so that the block stays in L2 while every weight row passes over it.
const BLOCK_BYTES: usize = 512 * 1024;

/// The sizes of one 3×3 convolution: `[batch, C_in, C_out, H, W]` (output as large as the
/// input).
#[derive(Debug, Clone, Copy)]
pub(super) struct Shape {
    pub batch: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub h: usize,
    pub w: usize,
}

/// How the packed planes hold the padding columns (module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Columns {
    /// The rows as they are (stride `W`); the outer taps are read through [`column_masks`].
    /// The forward and the input gradient.
    Masked,
    /// A zero column between rows (stride `W + 1`). The weight gradient: with the masks it
    /// was no faster at 28² and 4% faster at 14², and this way its per-lane sums cover the
    /// positions they always did, so training runs stay bit for bit what the results in
    /// `docs/` were measured with (the forward and input gradient are unchanged by the masks:
    /// the same sums of the same terms, a masked lane adding the zero the column held).
    Zero,
}

impl Shape {
    /// Row stride of the packed planes.
    fn row_stride(&self, columns: Columns) -> usize {
        match columns {
            Columns::Masked => self.w,
            Columns::Zero => self.w + 1,
        }
    }

    /// Elements before the first packed row: one zero with [`Columns::Masked`] (what the first
    /// position's `kx = 0` tap points at, masked), none with [`Columns::Zero`] (each row
    /// starts with its zero).
    fn lead(columns: Columns) -> usize {
        match columns {
            Columns::Masked => 1,
            Columns::Zero => 0,
        }
    }

    /// The lead, then the packed rows: `H + 1` per image (its rows and the zero row below),
    /// one zero row on top.
    fn plane(&self, columns: Columns) -> usize {
        Self::lead(columns) + (self.batch * (self.h + 1) + 1) * self.row_stride(columns)
    }

    /// Output positions the kernel computes: every stacked row but the top one.
    fn positions(&self, columns: Columns) -> usize {
        self.batch * (self.h + 1) * self.row_stride(columns)
    }

    /// The packed input's length: the planes, then zeros that the last tile's reads may reach.
    fn packed_len(&self, columns: Columns) -> usize {
        self.c_in * self.plane(columns) + 2 * self.row_stride(columns) + TILE_POSITIONS
    }

    /// Row stride of the output scratch (forward and input gradient, [`Columns::Masked`]): the
    /// positions rounded up to whole tiles.
    fn scratch_stride(&self) -> usize {
        self.positions(Columns::Masked).div_ceil(TILE_POSITIONS) * TILE_POSITIONS
    }

    /// The shape of the product `kernel` computes for this layer: the layer itself for the
    /// forward, its channel counts swapped for the input gradient.
    pub(super) fn product(&self, kernel: Kernel) -> Shape {
        match kernel {
            Kernel::Forward => *self,
            Kernel::InputGradient => Shape {
                c_in: self.c_out,
                c_out: self.c_in,
                ..*self
            },
        }
    }
}

/// Does this machine and shape take the direct path? AVX-512F, whole tiles of output
/// channels, and little thrown-away work.
pub(super) fn applies(shape: &Shape) -> bool {
    let computed = ((shape.h + 1) * shape.w) as f64;
    let useful = (shape.h * shape.w) as f64;
    shape.c_out.is_multiple_of(TILE_CHANNELS)
        && shape.c_in > 0
        && computed <= useful * (1.0 + MAX_WASTE)
        && avx512()
}

/// How the weights `[C_out, C_in, 3, 3]` enter the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kernel {
    /// `y = W ⋆ x`: the forward.
    Forward,
    /// `dx = W̃ ⋆ dy`, `W̃[ci][co][ky][kx] = W[co][ci][2−ky][2−kx]`: the input gradient of a
    /// stride-1, padding-1 convolution is this convolution of the output gradient.
    InputGradient,
}

/// `weights` (`[C_out, C_in, 3, 3]` of the layer) as the micro-kernel reads them: per tile of
/// [`TILE_CHANNELS`] output channels of *this* product, `[k][channel]` with
/// `k = (c, ky, kx)` over its input channels `c`.
fn pack_weights(weights: &[f32], layer: &Shape, kernel: Kernel, packed: &mut [f32]) {
    let product = layer.product(kernel);
    let (outs, ins) = (product.c_out, product.c_in);
    let k_len = ins * 9;
    packed
        .par_chunks_mut(k_len * TILE_CHANNELS)
        .enumerate()
        .for_each(|(tile, block)| {
            for (k, lanes) in block.chunks_mut(TILE_CHANNELS).enumerate() {
                let (c, tap) = (k / 9, k % 9);
                for (m, lane) in lanes.iter_mut().enumerate() {
                    let o = tile * TILE_CHANNELS + m;
                    *lane = match kernel {
                        Kernel::Forward => weights[(o * ins + c) * 9 + tap],
                        Kernel::InputGradient => weights[(c * outs + o) * 9 + 8 - tap],
                    };
                }
            }
        });
}

/// Writes `x` (`[batch, channels, H, W]`) into the stacked, zero-separated planes the kernel
/// reads (module comment), every element of `packed` included.
fn pack_input(x: &[f32], shape: &Shape, columns: Columns, packed: &mut [f32]) {
    let (s, plane, (h, w)) = (
        shape.row_stride(columns),
        shape.plane(columns),
        (shape.h, shape.w),
    );
    let lead = Shape::lead(columns);
    let channels = shape.c_in;
    let (planes, tail) = packed.split_at_mut(channels * plane);
    tail.fill(0.0);
    planes
        .par_chunks_mut(plane)
        .enumerate()
        .for_each(|(c, dst)| {
            dst[..lead + s].fill(0.0);
            for b in 0..shape.batch {
                let image = &x[(b * channels + c) * h * w..][..h * w];
                let rows = &mut dst[lead + (b * (h + 1) + 1) * s..][..(h + 1) * s];
                match columns {
                    Columns::Masked => rows[..h * w].copy_from_slice(image),
                    Columns::Zero => {
                        for (line, out) in image.chunks(w).zip(rows.chunks_mut(s)) {
                            out[0] = 0.0;
                            out[1..].copy_from_slice(line);
                        }
                    }
                }
                rows[h * s..].fill(0.0);
            }
        });
}

/// Per vector of 16 output positions of the stacked layout, the lanes the `kx = 0` and
/// `kx = 2` taps may read: `[0]` all but those at column 0 (where the `kx = 0` tap's element
/// is the row above's last), `[1]` all but those at column `W − 1` (the `kx = 2` tap's is the
/// next row's first). A masked lane reads nothing and adds nothing: the padding's zero.
fn column_masks(shape: &Shape, vectors: usize) -> Vec<[u16; 2]> {
    let w = shape.w;
    (0..vectors)
        .map(|v| {
            let mut masks = [0; 2];
            for lane in 0..16 {
                let x = (16 * v + lane) % w;
                if x != 0 {
                    masks[0] |= 1 << lane;
                }
                if x != w - 1 {
                    masks[1] |= 1 << lane;
                }
            }
            masks
        })
        .collect()
}

/// `asm!` with the micro-kernels' 24 accumulators `$acc[m][v]` pinned to `zmm8`–`zmm31`
/// (in and out), `zmm0`–`zmm3` free for the loop's vectors, and no stack or memory writes.
///
/// Why assembly: written with intrinsics a micro-kernel's loop needs 27–28 of the 32 vector
/// registers, and whether LLVM kept the accumulators in them depended on unrelated code
/// elsewhere in the crate: one build of [`weight_tile`] kept 8 of them on the stack (126 stack
/// references against 29) and ran ~70% slower, 5% of a ResNet-18 training step. The assembly
/// runs the same fused multiply-adds in the same order as the intrinsics did, so the results
/// are bit-identical.
#[cfg(x86_kernels)]
macro_rules! asm_with_accumulators {
    ($acc:ident; $($template_and_operands:tt)*) => {
        std::arch::asm!(
            $($template_and_operands)*
            out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _,
            inout("zmm8") $acc[0][0], inout("zmm9") $acc[0][1], inout("zmm10") $acc[0][2],
            inout("zmm11") $acc[1][0], inout("zmm12") $acc[1][1], inout("zmm13") $acc[1][2],
            inout("zmm14") $acc[2][0], inout("zmm15") $acc[2][1], inout("zmm16") $acc[2][2],
            inout("zmm17") $acc[3][0], inout("zmm18") $acc[3][1], inout("zmm19") $acc[3][2],
            inout("zmm20") $acc[4][0], inout("zmm21") $acc[4][1], inout("zmm22") $acc[4][2],
            inout("zmm23") $acc[5][0], inout("zmm24") $acc[5][1], inout("zmm25") $acc[5][2],
            inout("zmm26") $acc[6][0], inout("zmm27") $acc[6][1], inout("zmm28") $acc[6][2],
            inout("zmm29") $acc[7][0], inout("zmm30") $acc[7][1], inout("zmm31") $acc[7][2],
            options(nostack, readonly),
        )
    };
}

/// One row of the patch matrix in a micro-kernel's loop: its three vectors of positions
/// (`zmm0`–`zmm2`, loaded by the caller) against the [`TILE_CHANNELS`] weights at `{a}`, each
/// broadcast to `zmm3`, into the accumulators of [`asm_with_accumulators`]; then `{a}` moves on
/// to the next row's weights.
#[cfg(x86_kernels)]
macro_rules! weight_rows {
    () => {
        concat!(
            "vbroadcastss zmm3, dword ptr [{a}]\n",
            "vfmadd231ps zmm8, zmm3, zmm0\n",
            "vfmadd231ps zmm9, zmm3, zmm1\n",
            "vfmadd231ps zmm10, zmm3, zmm2\n",
            "vbroadcastss zmm3, dword ptr [{a} + 4]\n",
            "vfmadd231ps zmm11, zmm3, zmm0\n",
            "vfmadd231ps zmm12, zmm3, zmm1\n",
            "vfmadd231ps zmm13, zmm3, zmm2\n",
            "vbroadcastss zmm3, dword ptr [{a} + 8]\n",
            "vfmadd231ps zmm14, zmm3, zmm0\n",
            "vfmadd231ps zmm15, zmm3, zmm1\n",
            "vfmadd231ps zmm16, zmm3, zmm2\n",
            "vbroadcastss zmm3, dword ptr [{a} + 12]\n",
            "vfmadd231ps zmm17, zmm3, zmm0\n",
            "vfmadd231ps zmm18, zmm3, zmm1\n",
            "vfmadd231ps zmm19, zmm3, zmm2\n",
            "vbroadcastss zmm3, dword ptr [{a} + 16]\n",
            "vfmadd231ps zmm20, zmm3, zmm0\n",
            "vfmadd231ps zmm21, zmm3, zmm1\n",
            "vfmadd231ps zmm22, zmm3, zmm2\n",
            "vbroadcastss zmm3, dword ptr [{a} + 20]\n",
            "vfmadd231ps zmm23, zmm3, zmm0\n",
            "vfmadd231ps zmm24, zmm3, zmm1\n",
            "vfmadd231ps zmm25, zmm3, zmm2\n",
            "vbroadcastss zmm3, dword ptr [{a} + 24]\n",
            "vfmadd231ps zmm26, zmm3, zmm0\n",
            "vfmadd231ps zmm27, zmm3, zmm1\n",
            "vfmadd231ps zmm28, zmm3, zmm2\n",
            "vbroadcastss zmm3, dword ptr [{a} + 28]\n",
            "vfmadd231ps zmm29, zmm3, zmm0\n",
            "vfmadd231ps zmm30, zmm3, zmm1\n",
            "vfmadd231ps zmm31, zmm3, zmm2\n",
            "add {a}, 32\n",
        )
    };
}

/// One tile: `TILE_CHANNELS × TILE_POSITIONS` outputs, each the sum over `k` of
/// `a[k][m] · b[offsets[k] + n]`, stored to `c` (rows `ldc` apart), or added to it when
/// `accumulate`. The offsets come in `(kx = 0, 1, 2)` triples; the first and last of each
/// are read through the tile's three vectors' [`column_masks`], `masks`. The loop is inline
/// assembly ([`asm_with_accumulators`]).
///
/// # Safety
/// AVX-512F must be available; `a` holds `offsets.len() · TILE_CHANNELS` floats; every
/// `b + offsets[k]` is followed by `TILE_POSITIONS` readable floats; `c` has `TILE_CHANNELS`
/// rows of `TILE_POSITIONS` writable floats, `ldc` apart, initialised when `accumulate`.
#[cfg(x86_kernels)]
#[target_feature(enable = "avx512f")]
unsafe fn tile(
    a: *const f32,
    (b, masks): (*const f32, &[[u16; 2]]),
    offsets: &[usize],
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    const _: () = assert!(TILE_CHANNELS == 8, "the assembly below has 8 weight rows");
    let mut acc: [[__m512; 3]; TILE_CHANNELS] = [[_mm512_setzero_ps(); 3]; TILE_CHANNELS];
    let triples = offsets.len() / 3;
    if triples > 0 {
        let [left, right]: [[u16; 3]; 2] =
            std::array::from_fn(|side| std::array::from_fn(|v| masks[v][side]));
        // SAFETY: the caller guarantees TILE_POSITIONS readable floats at b + offset for every
        // offset and TILE_CHANNELS at a for every row; masked-off lanes are not read; the loop
        // writes no memory.
        unsafe {
            asm_with_accumulators!(
                acc;
                "2:",
                "mov {off}, qword ptr [{offsets}]",
                "vmovups zmm0 {{{l0}}} {{z}}, zmmword ptr [{b} + 4*{off}]",
                "vmovups zmm1 {{{l1}}} {{z}}, zmmword ptr [{b} + 4*{off} + 64]",
                "vmovups zmm2 {{{l2}}} {{z}}, zmmword ptr [{b} + 4*{off} + 128]",
                weight_rows!(),
                "mov {off}, qword ptr [{offsets} + 8]",
                "vmovups zmm0, zmmword ptr [{b} + 4*{off}]",
                "vmovups zmm1, zmmword ptr [{b} + 4*{off} + 64]",
                "vmovups zmm2, zmmword ptr [{b} + 4*{off} + 128]",
                weight_rows!(),
                "mov {off}, qword ptr [{offsets} + 16]",
                "vmovups zmm0 {{{r0}}} {{z}}, zmmword ptr [{b} + 4*{off}]",
                "vmovups zmm1 {{{r1}}} {{z}}, zmmword ptr [{b} + 4*{off} + 64]",
                "vmovups zmm2 {{{r2}}} {{z}}, zmmword ptr [{b} + 4*{off} + 128]",
                weight_rows!(),
                "add {offsets}, 24",
                "dec {n}",
                "jnz 2b",
                a = inout(reg) a => _,
                b = in(reg) b,
                offsets = inout(reg) offsets.as_ptr() => _,
                off = out(reg) _,
                n = inout(reg) triples => _,
                l0 = in(kreg) left[0], l1 = in(kreg) left[1], l2 = in(kreg) left[2],
                r0 = in(kreg) right[0], r1 = in(kreg) right[1], r2 = in(kreg) right[2],
            );
        }
    }
    // SAFETY: the caller guarantees the tile's rows are writable (and initialised when
    // accumulating).
    unsafe { store_tile(&acc, c, ldc, accumulate, 3) };
}

/// Stores (or, when `accumulate`, adds) the first `vectors` of each accumulator row's `V`
/// vectors to row `m` of `c` (rows `ldc` apart).
///
/// # Safety
/// AVX-512F must be available; `c` has `TILE_CHANNELS` rows of `16 · vectors` writable floats,
/// `ldc` apart, initialised when `accumulate`.
#[cfg(x86_kernels)]
#[target_feature(enable = "avx512f")]
unsafe fn store_tile<const V: usize>(
    acc: &[[__m512; V]; TILE_CHANNELS],
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    vectors: usize,
) {
    for (m, acc) in acc.iter().enumerate() {
        // SAFETY: the caller guarantees the rows are writable (and initialised when
        // accumulating).
        unsafe {
            let row = c.add(m * ldc);
            for (v, &sum) in acc.iter().take(vectors).enumerate() {
                let out = row.add(16 * v);
                let total = if accumulate {
                    _mm512_add_ps(_mm512_loadu_ps(out), sum)
                } else {
                    sum
                };
                _mm512_storeu_ps(out, total);
            }
        }
    }
}

/// One tile of [`lanes`]: `TILE_CHANNELS` rows of three 16-float vectors, each the sum over
/// `k < len` of `a[k][m] · b[k·stride + 16·v + lane]`; the first `vectors` of each row are
/// stored to `c` (rows `ldc` apart), or added to it when `accumulate`. The loop is inline
/// assembly ([`asm_with_accumulators`]).
///
/// # Safety
/// AVX-512F must be available; `a` holds `len · TILE_CHANNELS` floats; `b + k·stride` is
/// followed by 48 readable floats for every `k < len`; `c` has `TILE_CHANNELS` rows of
/// `16 · vectors` writable floats, `ldc` apart, initialised when `accumulate`.
#[cfg(x86_kernels)]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn strided_tile(
    a: *const f32,
    (b, stride): (*const f32, usize),
    len: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    vectors: usize,
) {
    const _: () = assert!(TILE_CHANNELS == 8, "the assembly below has 8 weight rows");
    // A partial tile computes only its vectors (bit for bit what the full tile computes in
    // them): the weight gradient's last block of input channels is one or two vectors where
    // C_in is not a multiple of 48 (256 = 5·48 + 16), a third of its work thrown away.
    match vectors {
        // SAFETY: as the caller guarantees.
        1 => return unsafe { narrow_tile::<1>(a, (b, stride), len, c, ldc, accumulate) },
        2 => return unsafe { narrow_tile::<2>(a, (b, stride), len, c, ldc, accumulate) },
        _ => {}
    }
    let mut acc: [[__m512; 3]; TILE_CHANNELS] = [[_mm512_setzero_ps(); 3]; TILE_CHANNELS];
    if len > 0 {
        // SAFETY: the caller guarantees 48 readable floats at b + k·stride and TILE_CHANNELS
        // at a for every k < len; the loop writes no memory.
        unsafe {
            asm_with_accumulators!(
                acc;
                "2:",
                "vmovups zmm0, zmmword ptr [{b}]",
                "vmovups zmm1, zmmword ptr [{b} + 64]",
                "vmovups zmm2, zmmword ptr [{b} + 128]",
                weight_rows!(),
                "add {b}, {stride}",
                "dec {n}",
                "jnz 2b",
                a = inout(reg) a => _,
                b = inout(reg) b => _,
                stride = in(reg) 4 * stride,
                n = inout(reg) len => _,
            );
        }
    }
    // SAFETY: as the caller guarantees.
    unsafe { store_tile(&acc, c, ldc, accumulate, vectors) };
}

/// [`strided_tile`] with `V` < 3 vectors: the same fused multiply-adds in the same order for
/// those vectors, in intrinsics (8·V ≤ 16 accumulators leave LLVM registers to spare).
///
/// # Safety
/// As [`strided_tile`], with `16 · V` readable floats at `b + k·stride`.
#[cfg(x86_kernels)]
#[target_feature(enable = "avx512f")]
unsafe fn narrow_tile<const V: usize>(
    a: *const f32,
    (b, stride): (*const f32, usize),
    len: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let mut acc: [[__m512; V]; TILE_CHANNELS] = [[_mm512_setzero_ps(); V]; TILE_CHANNELS];
    for k in 0..len {
        // SAFETY: the caller guarantees 16·V readable floats at b + k·stride and
        // TILE_CHANNELS at a + 8k.
        unsafe {
            let x: [__m512; V] =
                std::array::from_fn(|v| _mm512_loadu_ps(b.add(k * stride + 16 * v)));
            for (m, row) in acc.iter_mut().enumerate() {
                let w = _mm512_set1_ps(*a.add(k * TILE_CHANNELS + m));
                for (sum, &x) in row.iter_mut().zip(&x) {
                    *sum = _mm512_fmadd_ps(w, x, *sum);
                }
            }
        }
    }
    // SAFETY: as the caller guarantees.
    unsafe { store_tile(&acc, c, ldc, accumulate, V) };
}

/// Without the x86 kernels [`lanes::applies`] is always false and this is never called.
#[cfg(not(x86_kernels))]
#[allow(clippy::too_many_arguments)]
unsafe fn strided_tile(
    _: *const f32,
    _: (*const f32, usize),
    _: usize,
    _: *mut f32,
    _: usize,
    _: bool,
    _: usize,
) {
    unreachable!("relata_flex::kernels::direct::lanes runs only where applies() found AVX-512")
}

/// Without the x86 kernels [`applies`] is always false and [`convolve`] never gets here.
#[cfg(not(x86_kernels))]
unsafe fn tile(
    _: *const f32,
    _: (*const f32, &[[u16; 2]]),
    _: &[usize],
    _: *mut f32,
    _: usize,
    _: bool,
) {
    unreachable!("relata_flex::kernels::direct runs only where applies() found AVX-512")
}

/// One weight-gradient tile: for [`TILE_CHANNELS`] rows of the packed output gradient (`dy`,
/// rows `ldy` apart) and three adjacent taps of one input row (`x`, `x + 1`, `x + 2`), the sums
/// over positions `p < len` of `dy[m][p] · x[p + kx]`, as `[m][kx]`.
///
/// Positions run in the vector lanes, so each sum is sixteen running lane sums added at the
/// end; the lanes of the last vector past `len` are masked off (not read).
///
/// The whole vectors run in inline assembly ([`asm_with_accumulators`]), the partial last one
/// in intrinsics.
///
/// # Safety
/// AVX-512F must be available; `dy + m·ldy` has `len` readable floats for every `m`, and `x`
/// has `len + 2`.
#[cfg(x86_kernels)]
#[target_feature(enable = "avx512f")]
unsafe fn weight_tile(
    dy: *const f32,
    ldy: usize,
    x: *const f32,
    len: usize,
) -> [[f32; 3]; TILE_CHANNELS] {
    const _: () = assert!(TILE_CHANNELS == 8, "the assembly below has 8 gradient rows");
    let mut acc: [[__m512; 3]; TILE_CHANNELS] = [[_mm512_setzero_ps(); 3]; TILE_CHANNELS];
    let vectors = len / 16;
    if vectors > 0 {
        let row = 4 * ldy; // bytes
        // SAFETY: the caller guarantees len readable floats from every dy row and len + 2 from
        // x; the loop reads 16 · vectors ≤ len floats from each row (rows 4–7 through dy4 =
        // dy + 4 rows) and 16 · vectors + 2 from x, and writes no memory.
        unsafe {
            asm_with_accumulators!(
                acc;
                "2:",
                "vmovups zmm0, zmmword ptr [{x}]",
                "vmovups zmm1, zmmword ptr [{x} + 4]",
                "vmovups zmm2, zmmword ptr [{x} + 8]",
                "vmovups zmm3, zmmword ptr [{dy}]",
                "vfmadd231ps zmm8, zmm3, zmm0",
                "vfmadd231ps zmm9, zmm3, zmm1",
                "vfmadd231ps zmm10, zmm3, zmm2",
                "vmovups zmm3, zmmword ptr [{dy} + {row}]",
                "vfmadd231ps zmm11, zmm3, zmm0",
                "vfmadd231ps zmm12, zmm3, zmm1",
                "vfmadd231ps zmm13, zmm3, zmm2",
                "vmovups zmm3, zmmword ptr [{dy} + 2*{row}]",
                "vfmadd231ps zmm14, zmm3, zmm0",
                "vfmadd231ps zmm15, zmm3, zmm1",
                "vfmadd231ps zmm16, zmm3, zmm2",
                "vmovups zmm3, zmmword ptr [{dy} + {row3}]",
                "vfmadd231ps zmm17, zmm3, zmm0",
                "vfmadd231ps zmm18, zmm3, zmm1",
                "vfmadd231ps zmm19, zmm3, zmm2",
                "vmovups zmm3, zmmword ptr [{dy4}]",
                "vfmadd231ps zmm20, zmm3, zmm0",
                "vfmadd231ps zmm21, zmm3, zmm1",
                "vfmadd231ps zmm22, zmm3, zmm2",
                "vmovups zmm3, zmmword ptr [{dy4} + {row}]",
                "vfmadd231ps zmm23, zmm3, zmm0",
                "vfmadd231ps zmm24, zmm3, zmm1",
                "vfmadd231ps zmm25, zmm3, zmm2",
                "vmovups zmm3, zmmword ptr [{dy4} + 2*{row}]",
                "vfmadd231ps zmm26, zmm3, zmm0",
                "vfmadd231ps zmm27, zmm3, zmm1",
                "vfmadd231ps zmm28, zmm3, zmm2",
                "vmovups zmm3, zmmword ptr [{dy4} + {row3}]",
                "vfmadd231ps zmm29, zmm3, zmm0",
                "vfmadd231ps zmm30, zmm3, zmm1",
                "vfmadd231ps zmm31, zmm3, zmm2",
                "add {x}, 64",
                "add {dy}, 64",
                "add {dy4}, 64",
                "dec {n}",
                "jnz 2b",
                x = inout(reg) x => _,
                dy = inout(reg) dy => _,
                dy4 = inout(reg) dy.add(4 * ldy) => _,
                row = in(reg) row,
                row3 = in(reg) 3 * row,
                n = inout(reg) vectors => _,
            );
        }
    }
    let whole = vectors * 16;
    if whole < len {
        // The last, partial vector: its lanes past len are masked off (not read).
        let mask: u16 = (1 << (len - whole)) - 1;
        // SAFETY: as above; the masked-off lanes are not read.
        unsafe {
            let load = |ptr: *const f32| _mm512_maskz_loadu_ps(mask, ptr);
            let taps = [
                load(x.add(whole)),
                load(x.add(whole + 1)),
                load(x.add(whole + 2)),
            ];
            for (m, acc) in acc.iter_mut().enumerate() {
                let g = load(dy.add(m * ldy + whole));
                for (sum, &tap) in acc.iter_mut().zip(&taps) {
                    *sum = _mm512_fmadd_ps(g, tap, *sum);
                }
            }
        }
    }
    acc.map(|row| row.map(|sum| _mm512_reduce_add_ps(sum)))
}

/// Without the x86 kernels [`applies`] is always false and [`weight_gradient`] never gets here.
#[cfg(not(x86_kernels))]
unsafe fn weight_tile(
    _: *const f32,
    _: usize,
    _: *const f32,
    _: usize,
) -> [[f32; 3]; TILE_CHANNELS] {
    unreachable!("relata_flex::kernels::direct runs only where applies() found AVX-512")
}

/// The weight gradient of a 3×3, stride-1, padding-1 layer (`[C_out, C_in, 3, 3]`) from its
/// input `[batch, C_in, H, W]` and output gradient `[batch, C_out, H, W]`, without a patch
/// matrix: `dW[o][c][ky][kx] = Σ_p dY[o][p] · X[c][p + ky·S + kx]` over the packed positions.
///
/// The output gradient is packed like an input (module comment): shifted by `S + 1`, that
/// layout has each output position's gradient at its position and zeros at the thrown-away
/// ones (the zero column and the rows between images, [`Columns::Zero`]), so those add
/// nothing. Each task takes [`TILE_CHANNELS`] output channels: their gradient rows (8 × 54 KiB
/// at 16 × 28²) stay in L2 while every input channel's plane passes by three times (once per
/// kernel row). The caller checks [`applies`] on the layer's shape.
pub(super) fn weight_gradient(input: &[f32], grad: &[f32], layer: &Shape) -> Vec<f32> {
    assert!(
        applies(layer),
        "direct 3×3 weight gradient called on a shape it does not take"
    );
    let grad_shape = layer.product(Kernel::InputGradient);
    let columns = Columns::Zero;
    let (s, plane) = (layer.row_stride(columns), layer.plane(columns));
    let positions = layer.positions(columns);
    let (ins, image) = (layer.c_in, layer.h * layer.w);
    assert!(
        input.len() == layer.batch * ins * image && grad.len() == layer.batch * layer.c_out * image,
        "relata_flex::kernels::direct: buffers do not match the shape"
    );
    let mut dw = vec![0.0f32; layer.c_out * ins * 9];
    with_work_buffers(
        [layer.packed_len(columns), grad_shape.packed_len(columns)],
        |[packed_x, packed_dy]| {
            pack_input(input, layer, columns, packed_x);
            pack_input(grad, &grad_shape, columns, packed_dy);
            let (packed_x, packed_dy) = (&*packed_x, &*packed_dy);
            // The furthest reads (the micro-kernel reads raw pointers): the last gradient row's
            // positions, shifted by S + 1, end at element C_out·plane; the last input plane's
            // at the largest tap offset, 2·S + 2.
            assert!(
                layer.c_out * plane < packed_dy.len()
                    && (ins - 1) * plane + 2 * s + 2 + positions <= packed_x.len(),
                "relata_flex::kernels::direct: packed buffers too short"
            );
            dw.par_chunks_mut(TILE_CHANNELS * ins * 9)
                .enumerate()
                .for_each(|(tile, dw_tile)| {
                    let dy = &packed_dy[tile * TILE_CHANNELS * plane + s + 1..];
                    for c in 0..ins {
                        for ky in 0..3 {
                            let x = &packed_x[c * plane + ky * s..];
                            // SAFETY: applies() checked AVX-512F; the assertion above keeps
                            // `positions` floats after each of the tile's gradient rows and
                            // `positions + 2` after `x` inside the packed buffers.
                            let sums =
                                unsafe { weight_tile(dy.as_ptr(), plane, x.as_ptr(), positions) };
                            for (m, row) in sums.iter().enumerate() {
                                let at = (m * ins + c) * 9 + ky * 3;
                                dw_tile[at..at + 3].copy_from_slice(row);
                            }
                        }
                    }
                });
        },
    );
    dw
}

/// The 3×3 convolution of `input` (`[batch, ins, H, W]`; `ins` = the layer's `C_in` for
/// [`Kernel::Forward`], `C_out` for [`Kernel::InputGradient`]) with the layer's `weights`, as a
/// new `[batch, outs, H, W]` vector, with `epilogue` applied per output channel. The caller
/// checks [`applies`] (for the input gradient, on the shape with the channels swapped).
pub(super) fn convolve(
    input: &[f32],
    weights: &[f32],
    layer: &Shape,
    kernel: Kernel,
    epilogue: Option<&ChannelAffine>,
) -> Vec<f32> {
    let shape = layer.product(kernel);
    assert!(
        applies(&shape),
        "direct 3×3 convolution called on a shape it does not take"
    );
    let columns = Columns::Masked;
    let (s, plane) = (shape.row_stride(columns), shape.plane(columns));
    let ldc = shape.scratch_stride();
    let k_len = shape.c_in * 9;
    let offsets: Vec<usize> = (0..k_len)
        .map(|k| (k / 9) * plane + (k % 9 / 3) * s + k % 3)
        .collect();
    let tiles = ldc / TILE_POSITIONS;
    // The furthest read of the last tile stays inside the packed input (the micro-kernel reads
    // raw pointers).
    assert!(
        offsets.last().map_or(0, |&o| o + ldc) <= shape.packed_len(columns)
            && input.len() == shape.batch * shape.c_in * shape.h * shape.w
            && weights.len() == shape.c_in * shape.c_out * 9,
        "relata_flex::kernels::direct: buffers do not match the shape"
    );
    let block = (BLOCK_BYTES / (4 * shape.c_in * TILE_POSITIONS)).clamp(1, tiles);
    let masks = column_masks(&shape, ldc / 16);
    let (h, image) = (shape.h, shape.h * shape.w);
    let lens = [
        shape.packed_len(columns),
        shape.c_out * k_len,
        shape.c_out * ldc,
    ];
    with_work_buffers(lens, |[packed, a, scratch]| {
        pack_input(input, &shape, columns, packed);
        pack_weights(weights, layer, kernel, a);
        let (packed, a) = (&*packed, &*a);
        let tiles_per_task = shape.c_out / TILE_CHANNELS / rayon::current_num_threads().max(1);
        scratch
            .par_chunks_mut(ldc * TILE_CHANNELS * tiles_per_task.max(1))
            .enumerate()
            .for_each(|(task, rows)| {
                let first_tile = task * tiles_per_task.max(1);
                for t0 in (0..tiles).step_by(block) {
                    for (j, c_rows) in rows.chunks_mut(ldc * TILE_CHANNELS).enumerate() {
                        let a_tile = &a[(first_tile + j) * k_len * TILE_CHANNELS..];
                        for k0 in (0..k_len).step_by(K_BLOCK) {
                            let k1 = (k0 + K_BLOCK).min(k_len);
                            for t in t0..(t0 + block).min(tiles) {
                                // SAFETY: applies() checked AVX-512F; a_tile holds k_len rows of
                                // TILE_CHANNELS weights; the packed input has TILE_POSITIONS
                                // floats after every offset of tile t (packed_len), whose
                                // offsets come in kx triples (K_BLOCK = 16·9); c_rows has
                                // TILE_CHANNELS rows of ldc ≥ (t + 1)·TILE_POSITIONS, written by
                                // the first k-block before the others add to them.
                                unsafe {
                                    tile(
                                        a_tile.as_ptr().add(k0 * TILE_CHANNELS),
                                        (
                                            packed.as_ptr().add(t * TILE_POSITIONS),
                                            &masks[3 * t..3 * t + 3],
                                        ),
                                        &offsets[k0..k1],
                                        c_rows.as_mut_ptr().add(t * TILE_POSITIONS),
                                        ldc,
                                        k0 > 0,
                                    );
                                }
                            }
                        }
                    }
                }
            });
        // Stacked rows back to NCHW, dropping the rows between images (each image's rows are
        // contiguous, stride W, its zero row after them).
        let scratch = &*scratch;
        nchw_from_planes((shape.batch, shape.c_out, image), epilogue, |b, c| {
            scratch[c * ldc + b * (h + 1) * s..][..image]
                .iter()
                .copied()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A partial tile (the narrow path) stores, bit for bit, what the full tile computes in
    /// its vectors, and leaves the rest of the rows alone.
    #[test]
    fn partial_tiles_match_the_full_tile() {
        if !crate::paths::avx512_or_skip("partial_tiles_match_the_full_tile") {
            return;
        }
        let (len, stride, ldc) = (37, 53, 50);
        let wave =
            |n: usize, f: f32| -> Vec<f32> { (0..n).map(|i| (i as f32 * f).sin()).collect() };
        let a = wave(len * TILE_CHANNELS, 0.37);
        let b = wave(len * stride + 48, 0.71);
        let start = wave(TILE_CHANNELS * ldc, 0.13);
        // The rows after one tile of `vectors` vectors over `start`.
        let run = |accumulate: bool, vectors: usize| {
            let mut c = start.clone();
            // SAFETY: AVX-512F checked; the buffers hold what the kernel reads and writes.
            unsafe {
                strided_tile(
                    a.as_ptr(),
                    (b.as_ptr(), stride),
                    len,
                    c.as_mut_ptr(),
                    ldc,
                    accumulate,
                    vectors,
                )
            };
            c
        };
        for accumulate in [false, true] {
            let full = run(accumulate, 3);
            for vectors in [1, 2] {
                let part = run(accumulate, vectors);
                for (m, (p, f)) in part.chunks(ldc).zip(full.chunks(ldc)).enumerate() {
                    let s = &start[m * ldc..(m + 1) * ldc];
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&p[..16 * vectors]),
                        bits(&f[..16 * vectors]),
                        "row {m}"
                    );
                    assert_eq!(
                        bits(&p[16 * vectors..]),
                        bits(&s[16 * vectors..]),
                        "row {m}"
                    );
                }
            }
        }
    }
}
