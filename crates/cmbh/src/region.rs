//! Algorithm 1 — parameter-free localisation of M distinct critical regions (the paper's "Algorithm
//! 1", paper Sec. 4.2.3; docs/cmbh.md), the heat map A it runs on, and the crops fed back through
//! the network for L_region (Eq. 13–14).
//!
//! Everything here runs on the host on small arrays (a 7×7 map at 224×224 input): the heat map
//! is detached (no gradient flows through region selection), so nothing is lost by leaving the
//! device, and the crops are cut from the batch's normalised pixels.

use burn::tensor::Tensor;
use burn::tensor::module::adaptive_avg_pool2d;

use crate::error::CmbhError;

/// A box on the heat map, inclusive cell coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellBox {
    /// Left column.
    pub x1: usize,
    /// Top row.
    pub y1: usize,
    /// Right column (inclusive).
    pub x2: usize,
    /// Bottom row (inclusive).
    pub y2: usize,
}

/// A box in input-image pixels, half-open: columns `x1..x2`, rows `y1..y2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelBox {
    /// Left column.
    pub x1: usize,
    /// Top row.
    pub y1: usize,
    /// One past the right column.
    pub x2: usize,
    /// One past the bottom row.
    pub y2: usize,
}

impl CellBox {
    /// Step 6: the image region a cell box covers. Cell (x, y) of a `w × h` map covers pixels
    /// `[x·W/w, (x+1)·W/w)`; the box takes the floor of its left/top edge and the ceiling of its
    /// right/bottom edge, so the region always contains every covered cell.
    pub fn to_pixels(&self, map: [usize; 2], image: [usize; 2]) -> PixelBox {
        let [h, w] = map;
        let [ih, iw] = image;
        PixelBox {
            x1: self.x1 * iw / w,
            y1: self.y1 * ih / h,
            x2: ((self.x2 + 1) * iw).div_ceil(w).min(iw),
            y2: ((self.y2 + 1) * ih).div_ceil(h).min(ih),
        }
    }
}

/// A heat map `A` (row-major, `h × w`).
#[derive(Debug, Clone, PartialEq)]
pub struct HeatMap {
    /// Rows.
    pub h: usize,
    /// Columns.
    pub w: usize,
    /// Values.
    pub values: Vec<f32>,
}

/// Step 4: the largest 8-connected component of `mask` (row-major `h × w`), as a mask. Ties
/// between components of equal size go to the one whose first cell comes first in row-major
/// order (the scan order), so the result is deterministic.
pub fn largest_component(mask: &[bool], h: usize, w: usize) -> Vec<bool> {
    let mut label = vec![usize::MAX; h * w];
    let mut best: Option<(usize, usize)> = None; // (size, label)
    let mut stack = Vec::new();
    let mut next = 0;
    for start in 0..h * w {
        if !mask[start] || label[start] != usize::MAX {
            continue;
        }
        let id = next;
        next += 1;
        let mut size = 0;
        label[start] = id;
        stack.push(start);
        while let Some(p) = stack.pop() {
            size += 1;
            let (py, px) = (p / w, p % w);
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let (ny, nx) = (py as i64 + dy, px as i64 + dx);
                    if ny < 0 || nx < 0 || ny >= h as i64 || nx >= w as i64 {
                        continue;
                    }
                    let q = ny as usize * w + nx as usize;
                    if mask[q] && label[q] == usize::MAX {
                        label[q] = id;
                        stack.push(q);
                    }
                }
            }
        }
        if best.is_none_or(|(s, _)| size > s) {
            best = Some((size, id));
        }
    }
    match best {
        Some((_, id)) => label.iter().map(|&l| l == id).collect(),
        None => vec![false; h * w],
    }
}

/// Step 5: the bounding box of a non-empty mask.
fn bounding_box(mask: &[bool], h: usize, w: usize) -> Option<CellBox> {
    let mut b: Option<CellBox> = None;
    for y in 0..h {
        for x in 0..w {
            if !mask[y * w + x] {
                continue;
            }
            b = Some(match b {
                None => CellBox {
                    x1: x,
                    y1: y,
                    x2: x,
                    y2: y,
                },
                Some(b) => CellBox {
                    x1: b.x1.min(x),
                    y1: b.y1.min(y),
                    x2: b.x2.max(x),
                    y2: b.y2.max(y),
                },
            });
        }
    }
    b
}

/// Algorithm 1 on one heat map: `regions` boxes, in discovery order.
///
/// For m = 1..M: a = max(A); H = [A > a·(0.9 − 0.05m)]; keep H's largest 8-connected
/// component; its bounding box is region m; then A ← A·(1 − H) + (H·a − H·A) (the update uses
/// the whole thresholded mask H, as the paper writes it). Degenerate maps still give a box:
/// when no cell exceeds the threshold (a ≤ 0, e.g. an all-zero or all-equal non-positive map)
/// H is the set of cells equal to the maximum; non-finite values count as −∞.
pub fn localize(map: &HeatMap, regions: usize) -> Vec<CellBox> {
    let (h, w) = (map.h, map.w);
    let mut a: Vec<f32> = map
        .values
        .iter()
        .map(|&v| if v.is_finite() { v } else { f32::NEG_INFINITY })
        .collect();
    let mut boxes = Vec::with_capacity(regions);
    for m in 1..=regions {
        let peak = a.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let threshold = peak * (0.9 - 0.05 * m as f32);
        let mut mask: Vec<bool> = a.iter().map(|&v| v > threshold).collect();
        if !mask.iter().any(|&b| b) {
            mask = a.iter().map(|&v| v == peak).collect();
        }
        if !mask.iter().any(|&b| b) {
            // Every value is −∞ (a map of NaNs): the whole image.
            mask = vec![true; h * w];
        }
        let component = largest_component(&mask, h, w);
        let b = bounding_box(&component, h, w).expect("a non-empty mask has a component");
        boxes.push(b);
        for (v, &on) in a.iter_mut().zip(&mask) {
            if on {
                *v = peak - *v;
            }
        }
    }
    boxes
}

/// Step 1 of the region branch: every stage map average-pooled to the last stage's spatial
/// size, stacked on channels and averaged over all channels. `maps` are F^1..F^L (detached by
/// the caller); returns one heat map per image.
pub fn heat_maps(maps: &[Tensor<4>]) -> Result<Vec<HeatMap>, CmbhError> {
    let Some(last) = maps.last() else {
        return Err(CmbhError::Input("heat map of no stage maps".into()));
    };
    let [n, _, h, w] = last.dims();
    let total_channels: usize = maps.iter().map(|m| m.dims()[1]).sum();
    let sum = maps
        .iter()
        .map(|m| {
            let [_, _, mh, mw] = m.dims();
            let pooled = if [mh, mw] == [h, w] {
                m.clone()
            } else {
                adaptive_avg_pool2d(m.clone(), [h, w])
            };
            pooled.sum_dim(1)
        })
        .reduce(|a, b| a + b)
        .ok_or_else(|| CmbhError::Input("heat map of no stage maps".into()))?
        .div_scalar(total_channels as f64);
    let values: Vec<f32> = sum
        .into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| CmbhError::Input(format!("reading the heat map: {e:?}")))?;
    Ok(values
        .chunks(h * w)
        .take(n)
        .map(|c| HeatMap {
            h,
            w,
            values: c.to_vec(),
        })
        .collect())
}

/// Bilinear resize of one CHW crop `src` (`c × sh × sw`) to `dh × dw`, with PyTorch's
/// `F.interpolate(mode="bilinear", align_corners=False)` sampling.
fn resize_bilinear(src: &[f32], c: usize, sh: usize, sw: usize, dh: usize, dw: usize) -> Vec<f32> {
    let taps = |dst: usize, s: usize, d: usize| -> (usize, usize, f32) {
        let scale = s as f32 / d as f32;
        let x = ((dst as f32 + 0.5) * scale - 0.5).max(0.0);
        let x0 = (x as usize).min(s - 1);
        let x1 = if x0 < s - 1 { x0 + 1 } else { x0 };
        (x0, x1, x - x0 as f32)
    };
    let ys: Vec<_> = (0..dh).map(|y| taps(y, sh, dh)).collect();
    let xs: Vec<_> = (0..dw).map(|x| taps(x, sw, dw)).collect();
    let mut out = Vec::with_capacity(c * dh * dw);
    for ch in 0..c {
        let plane = &src[ch * sh * sw..(ch + 1) * sh * sw];
        for &(y0, y1, ly) in &ys {
            for &(x0, x1, lx) in &xs {
                let top = plane[y0 * sw + x0] * (1.0 - lx) + plane[y0 * sw + x1] * lx;
                let bottom = plane[y1 * sw + x0] * (1.0 - lx) + plane[y1 * sw + x1] * lx;
                out.push(top * (1.0 - ly) + bottom * ly);
            }
        }
    }
    out
}

/// Step 3: cuts `boxes[i]` (for image i, all of its M boxes) out of the CHW batch `pixels`
/// (`[n, c, h, w]`) and resizes each crop back to `h × w`. The output is `[n·M, c, h, w]`,
/// grouped by region: crop m of image i is at `m·n + i`.
pub fn crop_regions(pixels: &[f32], shape: [usize; 4], boxes: &[Vec<PixelBox>]) -> Vec<f32> {
    let [n, c, h, w] = shape;
    let regions = boxes.first().map_or(0, Vec::len);
    let mut out = Vec::with_capacity(n * regions * c * h * w);
    for m in 0..regions {
        for (i, image_boxes) in boxes.iter().enumerate().take(n) {
            let b = image_boxes[m];
            let (bh, bw) = (b.y2 - b.y1, b.x2 - b.x1);
            let image = &pixels[i * c * h * w..(i + 1) * c * h * w];
            let mut crop = Vec::with_capacity(c * bh * bw);
            for ch in 0..c {
                for y in b.y1..b.y2 {
                    let row = ch * h * w + y * w;
                    crop.extend_from_slice(&image[row + b.x1..row + b.x2]);
                }
            }
            out.extend(resize_bilinear(&crop, c, bh, bw, h, w));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(h: usize, w: usize, cells: &[((usize, usize), f32)]) -> HeatMap {
        let mut values = vec![0.0; h * w];
        for &((y, x), v) in cells {
            values[y * w + x] = v;
        }
        HeatMap { h, w, values }
    }

    fn cb(x1: usize, y1: usize, x2: usize, y2: usize) -> CellBox {
        CellBox { x1, y1, x2, y2 }
    }

    /// One peak: region 1 is the peak's cell; it is then suppressed (a − A = 0), the map is all
    /// zero, and the next regions fall back to the whole map.
    #[test]
    fn single_peak() {
        let a = map(5, 5, &[((2, 3), 1.0)]);
        let boxes = localize(&a, 3);
        assert_eq!(boxes[0], cb(3, 2, 3, 2));
        assert_eq!(boxes[1], cb(0, 0, 4, 4));
        assert_eq!(boxes[2], cb(0, 0, 4, 4));
    }

    /// Two peaks above the threshold: the *largest* component wins, not the highest cell; the
    /// update suppresses the whole mask H, so region 2 is found among what remains.
    #[test]
    fn two_peaks_largest_component_first() {
        let a = map(
            6,
            6,
            &[
                ((0, 0), 0.9),
                ((0, 1), 0.9),
                ((1, 0), 0.9),
                ((1, 1), 0.9),
                ((5, 5), 1.0),
                ((3, 3), 0.5),
            ],
        );
        let boxes = localize(&a, 2);
        assert_eq!(boxes[0], cb(0, 0, 1, 1));
        // After m = 1: the blob becomes 1 − 0.9 = 0.1, the peak 0, (3, 3) keeps 0.5.
        assert_eq!(boxes[1], cb(3, 3, 3, 3));
    }

    /// Equal-size components: the first in row-major order.
    #[test]
    fn tie_goes_to_first_component() {
        let a = map(5, 5, &[((0, 4), 1.0), ((4, 0), 1.0)]);
        assert_eq!(localize(&a, 1)[0], cb(4, 0, 4, 0));
    }

    /// A plateau is one component; diagonal neighbours are connected (8-connectivity).
    #[test]
    fn plateau_and_diagonals() {
        let mut cells = Vec::new();
        for y in 2..=4 {
            for x in 2..=4 {
                cells.push(((y, x), 1.0));
            }
        }
        cells.push(((5, 5), 1.0)); // touches (4, 4) diagonally
        let a = map(7, 7, &cells);
        assert_eq!(localize(&a, 1)[0], cb(2, 2, 5, 5));
    }

    /// All-equal and all-zero maps, and a map of NaNs, still give boxes (the whole map).
    #[test]
    fn degenerate_maps_give_whole_image() {
        for values in [vec![0.5; 16], vec![0.0; 16], vec![f32::NAN; 16]] {
            let a = HeatMap { h: 4, w: 4, values };
            let boxes = localize(&a, 4);
            assert_eq!(boxes.len(), 4);
            assert!(boxes.iter().all(|b| *b == cb(0, 0, 3, 3)), "{boxes:?}");
        }
    }

    #[test]
    fn the_threshold_falls_with_m() {
        // 0.84 is below 0.85 (m = 1) but above 0.80 (m = 2).
        let a = map(1, 3, &[((0, 0), 1.0), ((0, 1), 0.84)]);
        let boxes = localize(&a, 2);
        assert_eq!(boxes[0], cb(0, 0, 0, 0));
        // After m = 1 (H = {0}): A = (0, 0.84, 0) → peak 0.84, the cell alone.
        assert_eq!(boxes[1], cb(1, 0, 1, 0));
    }

    #[test]
    fn boxes_map_to_pixels() {
        let p = cb(2, 2, 4, 4).to_pixels([7, 7], [224, 224]);
        assert_eq!(
            p,
            PixelBox {
                x1: 64,
                y1: 64,
                x2: 160,
                y2: 160
            }
        );
        // Non-divisible sizes round outwards and stay inside the image.
        let p = cb(1, 0, 2, 0).to_pixels([2, 3], [64, 64]);
        assert_eq!(
            p,
            PixelBox {
                x1: 21,
                y1: 0,
                x2: 64,
                y2: 32
            }
        );
    }

    #[test]
    fn crops_resize_like_pytorch_bilinear() {
        // One 1-channel 4×4 image; crop its top-left 2×2 [[1, 2], [3, 4]] back to 4×4.
        let mut img = vec![0.0f32; 16];
        img[0] = 1.0;
        img[1] = 2.0;
        img[4] = 3.0;
        img[5] = 4.0;
        let boxes = vec![vec![PixelBox {
            x1: 0,
            y1: 0,
            x2: 2,
            y2: 2,
        }]];
        let out = crop_regions(&img, [1, 1, 4, 4], &boxes);
        // F.interpolate(size=4, bilinear, align_corners=False): row 0 = [1, 1.25, 1.75, 2].
        assert_eq!(&out[0..4], &[1.0, 1.25, 1.75, 2.0]);
        // Column 0 = [1, 1.5, 2.5, 3].
        assert_eq!([out[0], out[4], out[8], out[12]], [1.0, 1.5, 2.5, 3.0]);
        // The whole image is returned unchanged.
        let whole = vec![vec![PixelBox {
            x1: 0,
            y1: 0,
            x2: 4,
            y2: 4,
        }]];
        assert_eq!(crop_regions(&img, [1, 1, 4, 4], &whole), img);
    }

    #[test]
    fn crops_are_grouped_by_region() {
        // Two 1×1×2×2 images with distinct constants, two regions each.
        let img = vec![1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0];
        let b = PixelBox {
            x1: 0,
            y1: 0,
            x2: 1,
            y2: 1,
        };
        let out = crop_regions(&img, [2, 1, 2, 2], &[vec![b, b], vec![b, b]]);
        assert_eq!(out.len(), 16);
        // m = 0: image 0, image 1; m = 1: image 0, image 1.
        assert_eq!([out[0], out[4], out[8], out[12]], [1.0, 2.0, 1.0, 2.0]);
    }

    #[test]
    fn heat_map_averages_pooled_channels() {
        let device = burn::tensor::Device::flex();
        // Stage 1: 1 channel 2×2 of ones → pooled to 1×1 = 1; stage 2: 3 channels 1×1 of 2.
        let f1: Tensor<4> = Tensor::ones([1, 1, 2, 2], &device);
        let f2: Tensor<4> = Tensor::ones([1, 3, 1, 1], &device).mul_scalar(2.0);
        let maps = heat_maps(&[f1, f2]).unwrap();
        assert_eq!(maps.len(), 1);
        assert!((maps[0].values[0] - (1.0 + 6.0) / 4.0).abs() < 1e-6);
    }
}
