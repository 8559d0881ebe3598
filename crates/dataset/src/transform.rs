//! The image pipeline: decode → geometric transforms on 8-bit RGB →
//! normalise into CHW `f32`, with torchvision's semantics and every random choice drawn from a
//! per-sample stream `SeededRng::derive(seed, [epoch, sample])`, so a batch is the same
//! whichever thread prepares which image.
//!
//! Resizing uses `fast_image_resize` (SIMD convolution with the kernel scaled to the reduction,
//! like PIL's antialiased bilinear that torchvision's `Resize` calls on PIL images).

use fast_image_resize::images::Image as FirImage;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::error::DatasetError;
use crate::rng::SeededRng;

/// ImageNet channel means (RGB, in [0, 1]).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// CIFAR statistics as ISL's code uses them (also for CIFAR-100 and SVHN).
pub const CIFAR_MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
/// CIFAR standard deviations as ISL's code uses them.
pub const CIFAR_STD: [f32; 3] = [0.2023, 0.1994, 0.2010];
/// CIFAR statistics as CSRMS's code writes them: (125.3, 123.0, 113.9) / 255.
pub const CSRMS_CIFAR_MEAN: [f32; 3] = [125.3 / 255.0, 123.0 / 255.0, 113.9 / 255.0];
/// CSRMS's CIFAR standard deviations: (63.0, 62.1, 66.7) / 255.
pub const CSRMS_CIFAR_STD: [f32; 3] = [63.0 / 255.0, 62.1 / 255.0, 66.7 / 255.0];

/// One step of the pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Transform {
    /// Resize so the shorter side is `size` (torchvision `Resize(int)`).
    Resize {
        /// Target shorter side.
        size: u32,
    },
    /// Resize to exactly `width × height` (torchvision `Resize((h, w))`).
    ResizeExact {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
    /// Random `size × size` crop after optional reflect padding (torchvision `RandomCrop` with
    /// `padding_mode='reflect'`, as CSRMS's CIFAR pipeline uses).
    RandomCrop {
        /// Crop side.
        size: u32,
        /// Reflect padding on every side.
        #[serde(default)]
        padding: u32,
    },
    /// Central `size × size` crop.
    CenterCrop {
        /// Crop side.
        size: u32,
    },
    /// Horizontal flip with probability `p`.
    HorizontalFlip {
        /// Probability.
        p: f64,
    },
    /// torchvision `RandomResizedCrop(size, scale, ratio)`.
    RandomResizedCrop {
        /// Output side.
        size: u32,
        /// Area fraction range.
        scale: [f64; 2],
        /// Aspect-ratio range.
        ratio: [f64; 2],
    },
    /// torchvision `ColorJitter`: factors drawn from `[max(0, 1−b), 1+b]` etc., hue shift from
    /// `[−h, h]`, the four operations applied in random order.
    ColorJitter {
        /// Brightness strength.
        brightness: f64,
        /// Contrast strength.
        contrast: f64,
        /// Saturation strength.
        saturation: f64,
        /// Hue strength (≤ 0.5).
        hue: f64,
    },
    /// Greyscale (kept 3-channel) with probability `p`.
    RandomGrayscale {
        /// Probability.
        p: f64,
    },
}

/// A pipeline: transforms, then normalisation to `(x/255 − mean) / std`, CHW.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    /// Name (preset name or `custom`).
    pub name: String,
    /// Steps in order.
    pub transforms: Vec<Transform>,
    /// Per-channel mean.
    pub mean: [f32; 3],
    /// Per-channel standard deviation.
    pub std: [f32; 3],
}

impl Pipeline {
    /// CMBH training: resize to 255×255 → random crop 224 → horizontal flip; ImageNet statistics.
    pub fn cmbh_train() -> Self {
        Self::cmbh_train_sized(255, 224)
    }

    /// CMBH test: resize to 255×255 → centre crop 224.
    pub fn cmbh_test() -> Self {
        Self::cmbh_test_sized(255, 224)
    }

    /// CMBH's training pipeline at another scale (the embedded datasets use small images).
    pub fn cmbh_train_sized(resize: u32, crop: u32) -> Self {
        Self::cmbh_train_with(resize, crop, true)
    }

    /// CMBH's training pipeline, with or without the horizontal flip after the crop (the
    /// paper's protocol has none).
    pub fn cmbh_train_with(resize: u32, crop: u32, flip: bool) -> Self {
        let mut transforms = vec![
            Transform::ResizeExact {
                width: resize,
                height: resize,
            },
            Transform::RandomCrop {
                size: crop,
                padding: 0,
            },
        ];
        if flip {
            transforms.push(Transform::HorizontalFlip { p: 0.5 });
        }
        Self {
            name: "cmbh_train".into(),
            transforms,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }

    /// CMBH's test pipeline at another scale.
    pub fn cmbh_test_sized(resize: u32, crop: u32) -> Self {
        Self {
            name: "cmbh_test".into(),
            transforms: vec![
                Transform::ResizeExact {
                    width: resize,
                    height: resize,
                },
                Transform::CenterCrop { size: crop },
            ],
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }

    /// CIFAR training (CSRMS's code): reflect-pad 4 → random crop 32 → flip; CSRMS statistics.
    pub fn cifar_train() -> Self {
        Self {
            name: "cifar_train".into(),
            transforms: vec![
                Transform::RandomCrop {
                    size: 32,
                    padding: 4,
                },
                Transform::HorizontalFlip { p: 0.5 },
            ],
            mean: CSRMS_CIFAR_MEAN,
            std: CSRMS_CIFAR_STD,
        }
    }

    /// CIFAR test: normalisation only.
    pub fn cifar_test() -> Self {
        Self {
            name: "cifar_test".into(),
            transforms: Vec::new(),
            mean: CSRMS_CIFAR_MEAN,
            std: CSRMS_CIFAR_STD,
        }
    }

    /// ISL training on small images: random resized crop (scale 0.2–1) → colour jitter 0.4 ×4 →
    /// random greyscale 0.2; no flip (commented out in ISL's code); CIFAR statistics.
    pub fn isl_train(size: u32) -> Self {
        Self {
            name: "isl_train".into(),
            transforms: vec![
                Transform::RandomResizedCrop {
                    size,
                    scale: [0.2, 1.0],
                    ratio: [3.0 / 4.0, 4.0 / 3.0],
                },
                Transform::ColorJitter {
                    brightness: 0.4,
                    contrast: 0.4,
                    saturation: 0.4,
                    hue: 0.4,
                },
                Transform::RandomGrayscale { p: 0.2 },
            ],
            mean: CIFAR_MEAN,
            std: CIFAR_STD,
        }
    }

    /// ISL test: normalisation only.
    pub fn isl_test() -> Self {
        Self {
            name: "isl_test".into(),
            transforms: Vec::new(),
            mean: CIFAR_MEAN,
            std: CIFAR_STD,
        }
    }

    /// A preset by name (`cmbh_train`, `cmbh_test`, `cifar_train`, `cifar_test`, `isl_train`,
    /// `isl_test`).
    pub fn preset(name: &str) -> Result<Self, DatasetError> {
        Ok(match name {
            "cmbh_train" => Self::cmbh_train(),
            "cmbh_test" => Self::cmbh_test(),
            "cifar_train" => Self::cifar_train(),
            "cifar_test" => Self::cifar_test(),
            "isl_train" => Self::isl_train(32),
            "isl_test" => Self::isl_test(),
            other => {
                return Err(DatasetError::invalid(
                    "pipeline preset",
                    format!(
                        "unknown `{other}`; known: cmbh_train, cmbh_test, cifar_train, \
                         cifar_test, isl_train, isl_test"
                    ),
                ));
            }
        })
    }

    /// Checks every parameter.
    pub fn validate(&self) -> Result<(), DatasetError> {
        let bad = |reason: String| {
            Err(DatasetError::invalid(
                format!("pipeline `{}`", self.name),
                reason,
            ))
        };
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return bad(format!("std must be positive, got {:?}", self.std));
        }
        for t in &self.transforms {
            match t {
                Transform::Resize { size } | Transform::CenterCrop { size } if *size == 0 => {
                    return bad(format!("{t:?}: size must be positive"));
                }
                Transform::ResizeExact { width, height } if *width == 0 || *height == 0 => {
                    return bad(format!("{t:?}: sizes must be positive"));
                }
                Transform::RandomCrop { size: 0, .. } => return bad("random_crop size 0".into()),
                Transform::HorizontalFlip { p } | Transform::RandomGrayscale { p }
                    if !(0.0..=1.0).contains(p) =>
                {
                    return bad(format!("{t:?}: probability must be in [0, 1]"));
                }
                Transform::RandomResizedCrop { size, scale, ratio }
                    if *size == 0
                        || !(0.0 < scale[0] && scale[0] <= scale[1] && scale[1] <= 1.0)
                        || !(0.0 < ratio[0] && ratio[0] <= ratio[1]) =>
                {
                    return bad(format!(
                        "{t:?}: need size > 0, 0 < scale₀ ≤ scale₁ ≤ 1, 0 < ratio₀ ≤ ratio₁"
                    ));
                }
                Transform::ColorJitter {
                    brightness,
                    contrast,
                    saturation,
                    hue,
                } if [brightness, contrast, saturation].iter().any(|v| **v < 0.0)
                    || !(0.0..=0.5).contains(hue) =>
                {
                    return bad(format!("{t:?}: strengths must be ≥ 0 and hue ≤ 0.5"));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Applies the geometric and colour transforms to `img`, drawing from `rng`.
    pub fn augment(
        &self,
        mut img: RgbImage,
        rng: &mut SeededRng,
    ) -> Result<RgbImage, DatasetError> {
        for t in &self.transforms {
            img = apply(t, img, rng)?;
        }
        Ok(img)
    }

    /// Writes `img` normalised, CHW, into `out` (length `3·h·w`).
    pub fn normalize_into(&self, img: &RgbImage, out: &mut [f32]) {
        let (w, h) = img.dimensions();
        let plane = (w * h) as usize;
        let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * self.std[c]));
        let shift: [f32; 3] = std::array::from_fn(|c| -self.mean[c] / self.std[c]);
        let (r, rest) = out.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
            r[i] = f32::from(px[0]) * scale[0] + shift[0];
            g[i] = f32::from(px[1]) * scale[1] + shift[1];
            b[i] = f32::from(px[2]) * scale[2] + shift[2];
        }
    }

    /// The output size for an input of `(width, height)`, when the pipeline fixes one.
    pub fn output_size(&self, input: (u32, u32)) -> (u32, u32) {
        let mut size = input;
        for t in &self.transforms {
            size = match *t {
                Transform::Resize { size: s } => shorter_side(size, s),
                Transform::ResizeExact { width, height } => (width, height),
                Transform::RandomCrop { size: s, .. }
                | Transform::CenterCrop { size: s }
                | Transform::RandomResizedCrop { size: s, .. } => (s, s),
                _ => size,
            };
        }
        size
    }
}

fn shorter_side((w, h): (u32, u32), s: u32) -> (u32, u32) {
    // torchvision: the shorter side becomes s, the longer one int(s · long / short).
    if w <= h {
        (
            s,
            (u64::from(s) * u64::from(h) / u64::from(w.max(1))) as u32,
        )
    } else {
        (
            (u64::from(s) * u64::from(w) / u64::from(h.max(1))) as u32,
            s,
        )
    }
}

/// Resizes (optionally a sub-rectangle of) `img` to `width × height` with antialiased bilinear.
pub fn resize(
    img: &RgbImage,
    width: u32,
    height: u32,
    crop: Option<(f64, f64, f64, f64)>,
) -> Result<RgbImage, DatasetError> {
    let (sw, sh) = img.dimensions();
    if crop.is_none() && (sw, sh) == (width, height) {
        return Ok(img.clone());
    }
    let src = fast_image_resize::images::ImageRef::new(sw, sh, img.as_raw(), PixelType::U8x3)
        .map_err(|e| DatasetError::invalid("resize", e.to_string()))?;
    let mut dst = FirImage::new(width, height, PixelType::U8x3);
    let mut options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    if let Some((left, top, w, h)) = crop {
        options = options.crop(left, top, w, h);
    }
    thread_local! {
        static RESIZER: std::cell::RefCell<Resizer> = std::cell::RefCell::new(Resizer::new());
    }
    RESIZER
        .with(|r| r.borrow_mut().resize(&src, &mut dst, &options))
        .map_err(|e| DatasetError::invalid("resize", e.to_string()))?;
    RgbImage::from_raw(width, height, dst.into_vec())
        .ok_or_else(|| DatasetError::invalid("resize", "output buffer size".to_string()))
}

fn crop(img: &RgbImage, x: u32, y: u32, w: u32, h: u32) -> RgbImage {
    image::imageops::crop_imm(img, x, y, w, h).to_image()
}

/// Reflect padding (`numpy.pad(mode='reflect')`, torchvision `padding_mode='reflect'`).
fn reflect_pad(img: &RgbImage, pad: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let reflect = |i: i64, n: i64| -> u32 {
        if n == 1 {
            return 0;
        }
        let period = 2 * (n - 1);
        let m = i.rem_euclid(period);
        (if m < n { m } else { period - m }) as u32
    };
    RgbImage::from_fn(w + 2 * pad, h + 2 * pad, |x, y| {
        let sx = reflect(i64::from(x) - i64::from(pad), i64::from(w));
        let sy = reflect(i64::from(y) - i64::from(pad), i64::from(h));
        *img.get_pixel(sx, sy)
    })
}

fn too_small(t: &Transform, (w, h): (u32, u32)) -> DatasetError {
    DatasetError::invalid(
        "transform",
        format!("{t:?} cannot apply to a {w}×{h} image"),
    )
}

fn luma(px: &[u8]) -> f32 {
    // PIL's L conversion (ITU-R 601-2), as torchvision's grayscale uses.
    (f32::from(px[0]) * 299.0 + f32::from(px[1]) * 587.0 + f32::from(px[2]) * 114.0) / 1000.0
}

fn blend(img: &mut RgbImage, other: impl Fn(usize, usize) -> f32, factor: f32) {
    for (i, px) in img.as_mut().chunks_exact_mut(3).enumerate() {
        for (c, v) in px.iter_mut().enumerate() {
            let o = other(i, c);
            *v = (o + factor * (f32::from(*v) - o)).round().clamp(0.0, 255.0) as u8;
        }
    }
}

fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let d = max - min;
    let h = if d == 0.0 {
        0.0
    } else if max == r {
        ((g - b) / d).rem_euclid(6.0) / 6.0
    } else if max == g {
        ((b - r) / d + 2.0) / 6.0
    } else {
        ((r - g) / d + 4.0) / 6.0
    };
    let s = if max == 0.0 { 0.0 } else { d / max };
    (h, s, max)
}

pub(crate) fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let h6 = h.rem_euclid(1.0) * 6.0;
    let i = h6.floor();
    let f = h6 - i;
    let p = v * (1.0 - s);
    let q = v * (1.0 - s * f);
    let t = v * (1.0 - s * (1.0 - f));
    match i as i32 % 6 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

fn apply(t: &Transform, img: RgbImage, rng: &mut SeededRng) -> Result<RgbImage, DatasetError> {
    let (w, h) = img.dimensions();
    Ok(match *t {
        Transform::Resize { size } => {
            let (nw, nh) = shorter_side((w, h), size);
            resize(&img, nw, nh, None)?
        }
        Transform::ResizeExact { width, height } => resize(&img, width, height, None)?,
        Transform::RandomCrop { size, padding } => {
            let img = if padding > 0 {
                reflect_pad(&img, padding)
            } else {
                img
            };
            let (w, h) = img.dimensions();
            if w < size || h < size {
                return Err(too_small(t, (w, h)));
            }
            let x = rng.below((w - size + 1) as usize) as u32;
            let y = rng.below((h - size + 1) as usize) as u32;
            crop(&img, x, y, size, size)
        }
        Transform::CenterCrop { size } => {
            if w < size || h < size {
                return Err(too_small(t, (w, h)));
            }
            // torchvision rounds the offsets: int(round((w - size) / 2)).
            let x = ((f64::from(w - size)) / 2.0).round() as u32;
            let y = ((f64::from(h - size)) / 2.0).round() as u32;
            crop(&img, x, y, size, size)
        }
        Transform::HorizontalFlip { p } => {
            if rng.bernoulli(p) {
                image::imageops::flip_horizontal(&img)
            } else {
                img
            }
        }
        Transform::RandomResizedCrop { size, scale, ratio } => {
            let area = f64::from(w) * f64::from(h);
            let (lr0, lr1) = (ratio[0].ln(), ratio[1].ln());
            let mut chosen = None;
            for _ in 0..10 {
                let target = area * rng.uniform(scale[0], scale[1]);
                let aspect = rng.uniform(lr0, lr1).exp();
                let cw = (target * aspect).sqrt().round();
                let ch = (target / aspect).sqrt().round();
                if cw > 0.0 && ch > 0.0 && cw <= f64::from(w) && ch <= f64::from(h) {
                    let y = rng.below((f64::from(h) - ch) as usize + 1) as f64;
                    let x = rng.below((f64::from(w) - cw) as usize + 1) as f64;
                    chosen = Some((x, y, cw, ch));
                    break;
                }
            }
            let (x, y, cw, ch) = chosen.unwrap_or_else(|| {
                // Fallback: central crop with the aspect ratio clamped into range.
                let in_ratio = f64::from(w) / f64::from(h);
                let (cw, ch) = if in_ratio < ratio[0] {
                    (f64::from(w), (f64::from(w) / ratio[0]).round())
                } else if in_ratio > ratio[1] {
                    ((f64::from(h) * ratio[1]).round(), f64::from(h))
                } else {
                    (f64::from(w), f64::from(h))
                };
                (
                    ((f64::from(w) - cw) / 2.0).floor(),
                    ((f64::from(h) - ch) / 2.0).floor(),
                    cw,
                    ch,
                )
            });
            resize(&img, size, size, Some((x, y, cw, ch)))?
        }
        Transform::ColorJitter {
            brightness,
            contrast,
            saturation,
            hue,
        } => {
            let factor =
                |rng: &mut SeededRng, s: f64| rng.uniform((1.0 - s).max(0.0), 1.0 + s) as f32;
            let mut img = img;
            for op in rng.permutation(4) {
                match op {
                    0 if brightness > 0.0 => {
                        let f = factor(rng, brightness);
                        blend(&mut img, |_, _| 0.0, f);
                    }
                    1 if contrast > 0.0 => {
                        let f = factor(rng, contrast);
                        let n = (img.width() * img.height()).max(1) as f32;
                        let mean = img.as_raw().chunks_exact(3).map(luma).sum::<f32>() / n;
                        let mean = mean.round();
                        blend(&mut img, |_, _| mean, f);
                    }
                    2 if saturation > 0.0 => {
                        let f = factor(rng, saturation);
                        let grey: Vec<f32> = img
                            .as_raw()
                            .chunks_exact(3)
                            .map(|p| luma(p).round())
                            .collect();
                        blend(&mut img, |i, _| grey[i], f);
                    }
                    3 if hue > 0.0 => {
                        let shift = rng.uniform(-hue, hue) as f32;
                        for px in img.as_mut().chunks_exact_mut(3) {
                            let (h, s, v) = rgb_to_hsv(
                                f32::from(px[0]) / 255.0,
                                f32::from(px[1]) / 255.0,
                                f32::from(px[2]) / 255.0,
                            );
                            let (r, g, b) = hsv_to_rgb(h + shift, s, v);
                            px[0] = (r * 255.0).round().clamp(0.0, 255.0) as u8;
                            px[1] = (g * 255.0).round().clamp(0.0, 255.0) as u8;
                            px[2] = (b * 255.0).round().clamp(0.0, 255.0) as u8;
                        }
                    }
                    _ => {}
                }
            }
            img
        }
        Transform::RandomGrayscale { p } => {
            if rng.bernoulli(p) {
                let mut img = img;
                for px in img.as_mut().chunks_exact_mut(3) {
                    let l = luma(px).round().clamp(0.0, 255.0) as u8;
                    px.copy_from_slice(&[l, l, l]);
                }
                img
            } else {
                img
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CMBH's paper protocol crops without flipping; the smaller presets keep the flip.
    #[test]
    fn cmbh_train_flips_only_when_asked() {
        let flips = |p: &Pipeline| {
            p.transforms
                .iter()
                .filter(|t| matches!(t, Transform::HorizontalFlip { .. }))
                .count()
        };
        assert_eq!(flips(&Pipeline::cmbh_train_with(255, 224, false)), 0);
        assert_eq!(flips(&Pipeline::cmbh_train_with(255, 224, true)), 1);
        assert_eq!(flips(&Pipeline::cmbh_train_sized(72, 64)), 1);
    }

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, 90])
        })
    }

    #[test]
    fn presets_produce_their_sizes() {
        let mut rng = SeededRng::new(1);
        let img = gradient(500, 375);
        for (p, size) in [
            (Pipeline::cmbh_train(), 224),
            (Pipeline::cmbh_test(), 224),
            (Pipeline::isl_train(32), 32),
        ] {
            p.validate().unwrap();
            let out = p.augment(img.clone(), &mut rng).unwrap();
            assert_eq!(out.dimensions(), (size, size), "{}", p.name);
            assert_eq!(p.output_size((500, 375)), (size, size));
        }
        let small = gradient(32, 32);
        let out = Pipeline::cifar_train().augment(small, &mut rng).unwrap();
        assert_eq!(out.dimensions(), (32, 32));
        assert_eq!(
            Pipeline {
                name: "r".into(),
                transforms: vec![Transform::Resize { size: 100 }],
                mean: [0.0; 3],
                std: [1.0; 3]
            }
            .output_size((500, 375)),
            (133, 100)
        );
    }

    #[test]
    fn center_crop_and_flip_are_exact() {
        let img = gradient(10, 8);
        let mut rng = SeededRng::new(0);
        let c = apply(&Transform::CenterCrop { size: 4 }, img.clone(), &mut rng).unwrap();
        // offsets round((10-4)/2)=3, round((8-4)/2)=2
        assert_eq!(c.get_pixel(0, 0), img.get_pixel(3, 2));
        let f = apply(&Transform::HorizontalFlip { p: 1.0 }, img.clone(), &mut rng).unwrap();
        assert_eq!(f.get_pixel(0, 0), img.get_pixel(9, 0));
    }

    #[test]
    fn reflect_padding_matches_numpy() {
        // np.pad([0,1,2,3], 2, mode='reflect') == [2,1,0,1,2,3,2,1]
        let img = RgbImage::from_fn(4, 1, |x, _| image::Rgb([x as u8, 0, 0]));
        let p = reflect_pad(&img, 2);
        let row: Vec<u8> = (0..8).map(|x| p.get_pixel(x, 2).0[0]).collect();
        assert_eq!(row, vec![2, 1, 0, 1, 2, 3, 2, 1]);
    }

    #[test]
    fn normalisation_and_greyscale() {
        let img = RgbImage::from_pixel(2, 2, image::Rgb([255, 0, 128]));
        let p = Pipeline::cmbh_test();
        let mut out = vec![0.0; 12];
        p.normalize_into(&img, &mut out);
        assert!((out[0] - (1.0 - 0.485) / 0.229).abs() < 1e-5);
        assert!((out[4] - (0.0 - 0.456) / 0.224).abs() < 1e-5);
        let mut rng = SeededRng::new(0);
        let g = apply(&Transform::RandomGrayscale { p: 1.0 }, img, &mut rng).unwrap();
        let px = g.get_pixel(0, 0).0;
        assert!(px[0] == px[1] && px[1] == px[2]);
    }

    #[test]
    fn jitter_is_seeded_and_changes_pixels() {
        let img = gradient(16, 16);
        let p = Pipeline::isl_train(16);
        let a = p
            .augment(img.clone(), &mut SeededRng::derive(3, &[0, 5]))
            .unwrap();
        let b = p
            .augment(img.clone(), &mut SeededRng::derive(3, &[0, 5]))
            .unwrap();
        let c = p.augment(img, &mut SeededRng::derive(3, &[1, 5])).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn hsv_roundtrip() {
        for &(r, g, b) in &[(0.2f32, 0.5f32, 0.9f32), (1.0, 0.0, 0.0), (0.3, 0.3, 0.3)] {
            let (h, s, v) = rgb_to_hsv(r, g, b);
            let (r2, g2, b2) = hsv_to_rgb(h, s, v);
            assert!((r - r2).abs() < 1e-5 && (g - g2).abs() < 1e-5 && (b - b2).abs() < 1e-5);
        }
    }

    #[test]
    fn too_small_input_is_an_error() {
        let err = Pipeline::cmbh_train_sized(20, 24)
            .augment(gradient(30, 30), &mut SeededRng::new(0))
            .unwrap_err();
        assert!(err.to_string().contains("cannot apply"), "{err}");
    }
}
