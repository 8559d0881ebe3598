//! `synth-fine`: an embedded fine-grained image dataset (docs/design.md, Data).
//!
//! Classes come in *families*. A family fixes an object's build — body proportions, head
//! placement, tail shape, two body colours — so sibling classes share most of their
//! appearance and differ only in two subtle attributes: the head's colour (three close hues per
//! family) and the number of stripes on the body (0–3). That is the inter-class similarity of
//! fine-grained data. Intra-class diversity comes from *modes* (each class has `modes` visual
//! modes: a different pose family and body-colour variant) and from per-image pose (rotation,
//! mirror), scale, position, illumination, colour cast and a cluttered background.
//!
//! Everything is a function of `(seed, split, index)`: the same configuration always yields the
//! same pixels, at any image size.

use std::collections::BTreeMap;

use image::{Rgb, RgbImage};
use serde::{Deserialize, Serialize};

use crate::error::DatasetError;
use crate::rng::SeededRng;
use crate::source::{ImageDataset, RawImages, raw_samples};
use crate::transform::hsv_to_rgb;

/// Head colours per family and stripe counts: the sibling-distinguishing attributes.
pub const HEAD_COLOURS: usize = 3;
/// Stripe counts 0..STRIPE_COUNTS.
pub const STRIPE_COUNTS: usize = 4;

/// Parameters of `synth-fine`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthFineConfig {
    /// Number of families.
    pub families: usize,
    /// Classes per family (at most 12 = 3 head colours × 4 stripe counts).
    pub classes_per_family: usize,
    /// Visual modes per class (≥ 2 by design; 1 allowed for ablations).
    pub modes: usize,
    /// Training images per class.
    pub train_per_class: usize,
    /// Test images per class.
    pub test_per_class: usize,
    /// Image side in pixels.
    pub image_size: u32,
    /// Seed.
    pub seed: u64,
}

impl Default for SynthFineConfig {
    /// 16 classes (4 families × 4), 2 modes, 40 + 20 images per class, 64×64: sized so the
    /// methods' default reproductions finish in minutes on two CPU cores.
    fn default() -> Self {
        Self {
            families: 4,
            classes_per_family: 4,
            modes: 2,
            train_per_class: 40,
            test_per_class: 20,
            image_size: 64,
            seed: 0,
        }
    }
}

/// Seed of [`SynthFineConfig::pretraining_source`]: far from the small seeds the reproductions
/// draw their target data with (0, 1, 2, 42, ...).
pub const PRETRAINING_SOURCE_SEED: u64 = 0x5EED_5011_7CE0;

impl SynthFineConfig {
    /// The source set a small backbone is pretrained on before a method fine-tunes it on
    /// synth-fine, standing in for ImageNet: 48 classes (12 families × 4) of 80 training and 10
    /// test images at 64×64, drawn from another seed than any target split, so its families
    /// (build, colours) and classes are other draws of the generator than the target's — the
    /// same kind of images, none of the target's classes.
    pub fn pretraining_source() -> Self {
        Self {
            families: 12,
            classes_per_family: 4,
            modes: 2,
            train_per_class: 80,
            test_per_class: 10,
            image_size: 64,
            seed: PRETRAINING_SOURCE_SEED,
        }
    }
}

/// The generated dataset plus the ground truth behind it.
pub struct SynthFine {
    /// Images and labels (`train` and `test` splits), in memory.
    pub dataset: ImageDataset,
    /// Family of each class.
    pub class_family: Vec<usize>,
    /// Per split, per image: `[family one-hot, head colour one-hot, stripes one-hot, mode]`
    /// — the true attributes a perfect feature extractor would recover.
    pub attributes: BTreeMap<String, Vec<Vec<f32>>>,
}

/// A family's build.
#[derive(Debug, Clone)]
struct Family {
    body: (f32, f32),
    head_angle: f32,
    head_radius: f32,
    tail: (f32, f32),
    body_colours: [[f32; 3]; 2],
    head_colours: [[f32; 3]; HEAD_COLOURS],
    stripe_colour: [f32; 3],
}

/// An HSV colour (components in [0, 1]) as RGB in [0, 255].
fn hsv(h: f32, s: f32, v: f32) -> [f32; 3] {
    let (r, g, b) = hsv_to_rgb(h, s, v);
    [r * 255.0, g * 255.0, b * 255.0]
}

impl Family {
    fn new(seed: u64, index: usize) -> Self {
        let mut r = SeededRng::derive(seed, &[0xFA, index as u64]);
        let hue = (index as f32 * 0.618_034 + r.next_f32() * 0.1).rem_euclid(1.0);
        let head_hue = r.next_f32();
        Self {
            body: (r.uniform(0.5, 0.8) as f32, r.uniform(0.28, 0.5) as f32),
            head_angle: r.uniform(-0.6, 0.6) as f32,
            head_radius: r.uniform(0.17, 0.26) as f32,
            tail: (r.uniform(0.25, 0.5) as f32, r.uniform(0.12, 0.3) as f32),
            body_colours: [hsv(hue, 0.55, 0.85), hsv(hue + 0.08, 0.35, 0.55)],
            // Three close hues: siblings differ subtly.
            head_colours: std::array::from_fn(|k| hsv(head_hue + 0.07 * k as f32, 0.7, 0.9)),
            stripe_colour: hsv(hue + 0.5, 0.4, 0.3),
        }
    }
}

impl SynthFineConfig {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), DatasetError> {
        let bad = |r: String| Err(DatasetError::invalid("synth-fine config", r));
        if self.families == 0 || self.classes_per_family == 0 {
            return bad("families and classes_per_family must be at least 1".into());
        }
        if self.classes_per_family > HEAD_COLOURS * STRIPE_COUNTS {
            return bad(format!(
                "classes_per_family {} exceeds the {} distinct attribute combinations",
                self.classes_per_family,
                HEAD_COLOURS * STRIPE_COUNTS
            ));
        }
        if self.modes == 0 {
            return bad("modes must be at least 1".into());
        }
        if self.image_size < 8 {
            return bad(format!("image_size {} is below 8 pixels", self.image_size));
        }
        Ok(())
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.families * self.classes_per_family
    }

    /// `(head colour, stripes)` of each class slot within a family: distinct combinations in a
    /// seeded order, so siblings never coincide.
    fn combos(&self) -> Vec<(usize, usize)> {
        let mut all: Vec<(usize, usize)> = (0..HEAD_COLOURS)
            .flat_map(|h| (0..STRIPE_COUNTS).map(move |s| (h, s)))
            .collect();
        SeededRng::derive(self.seed, &[0xC0]).shuffle(&mut all);
        all.truncate(self.classes_per_family);
        all
    }

    /// Generates the dataset.
    pub fn generate(&self) -> Result<SynthFine, DatasetError> {
        use rayon::prelude::*;
        self.validate()?;
        let families: Vec<Family> = (0..self.families)
            .map(|f| Family::new(self.seed, f))
            .collect();
        let combos = self.combos();
        let classes: Vec<String> = (0..self.num_classes())
            .map(|c| {
                let (h, s) = combos[c % self.classes_per_family];
                format!("family{}-head{h}-stripes{s}", c / self.classes_per_family)
            })
            .collect();
        let class_family = (0..self.num_classes())
            .map(|c| c / self.classes_per_family)
            .collect();
        let mut splits = BTreeMap::new();
        let mut attributes = BTreeMap::new();
        for (split_id, (split, per_class)) in [
            ("train", self.train_per_class),
            ("test", self.test_per_class),
        ]
        .into_iter()
        .enumerate()
        {
            let n = per_class * self.num_classes();
            let rendered: Vec<(Vec<u8>, Vec<f32>)> = (0..n)
                .into_par_iter()
                .map(|i| {
                    let class = i % self.num_classes();
                    let mut rng = SeededRng::derive(self.seed, &[split_id as u64, i as u64]);
                    let mode = rng.below(self.modes);
                    let family = class / self.classes_per_family;
                    let (head, stripes) = combos[class % self.classes_per_family];
                    let img = render(
                        &families[family],
                        head,
                        stripes,
                        mode,
                        self.modes,
                        self.image_size,
                        &mut rng,
                    );
                    let mut attr = vec![0f32; self.families + HEAD_COLOURS + STRIPE_COUNTS + 1];
                    attr[family] = 1.0;
                    attr[self.families + head] = 1.0;
                    attr[self.families + HEAD_COLOURS + stripes] = 1.0;
                    attr[self.families + HEAD_COLOURS + STRIPE_COUNTS] = mode as f32;
                    (img.into_raw(), attr)
                })
                .collect();
            let mut data = Vec::with_capacity(n * (self.image_size as usize).pow(2) * 3);
            let mut attrs = Vec::with_capacity(n);
            for (px, a) in rendered {
                data.extend_from_slice(&px);
                attrs.push(a);
            }
            let store = RawImages {
                width: self.image_size,
                height: self.image_size,
                data,
            };
            let labels = (0..n).map(|index| index % self.num_classes());
            splits.insert(split.to_string(), raw_samples(store, labels));
            attributes.insert(split.to_string(), attrs);
        }
        Ok(SynthFine {
            dataset: ImageDataset {
                source: "synth-fine".into(),
                root: std::path::PathBuf::from("<embedded:synth-fine>"),
                classes,
                splits,
                problems: Vec::new(),
            },
            class_family,
            attributes,
        })
    }
}

/// Draws one image.
fn render(
    fam: &Family,
    head: usize,
    stripes: usize,
    mode: usize,
    modes: usize,
    size: u32,
    rng: &mut SeededRng,
) -> RgbImage {
    // Background: a two-colour gradient at a random angle, soft blobs, pixel noise.
    let bg_a = hsv(
        rng.next_f32(),
        rng.uniform(0.1, 0.5) as f32,
        rng.uniform(0.35, 0.95) as f32,
    );
    let bg_b = hsv(
        rng.next_f32(),
        rng.uniform(0.1, 0.5) as f32,
        rng.uniform(0.35, 0.95) as f32,
    );
    let bg_angle = rng.uniform(0.0, std::f64::consts::TAU) as f32;
    let blobs: Vec<([f32; 2], f32, [f32; 3])> = (0..4)
        .map(|_| {
            (
                [rng.uniform(-1.0, 1.0) as f32, rng.uniform(-1.0, 1.0) as f32],
                rng.uniform(0.15, 0.5) as f32,
                hsv(rng.next_f32(), 0.4, rng.uniform(0.3, 0.9) as f32),
            )
        })
        .collect();
    // Pose: the mode picks the base orientation and body colour; jitter on top.
    let base = std::f32::consts::PI * mode as f32 / modes.max(1) as f32;
    let theta = base + rng.uniform(-0.45, 0.45) as f32;
    let mirror = rng.bernoulli(0.5);
    let scale = rng.uniform(0.5, 0.8) as f32;
    let shift = [
        rng.uniform(-0.18, 0.18) as f32,
        rng.uniform(-0.18, 0.18) as f32,
    ];
    let light = rng.uniform(0.8, 1.2) as f32;
    let cast: [f32; 3] = std::array::from_fn(|_| rng.uniform(-14.0, 14.0) as f32);
    let body_colour = fam.body_colours[mode % 2];
    let (rx, ry) = fam.body;
    let head_c = [
        rx * 0.95 * fam.head_angle.cos(),
        ry * 0.95 * fam.head_angle.sin(),
    ];
    let (cos, sin) = (theta.cos(), theta.sin());
    let mut img = RgbImage::new(size, size);
    let stripe_xs: Vec<f32> = (0..stripes)
        .map(|k| -rx * 0.55 + rx * 1.1 * (k as f32 + 1.0) / (stripes as f32 + 1.0))
        .collect();
    for (px, py, pixel) in img.enumerate_pixels_mut() {
        let u = (px as f32 + 0.5) / size as f32 * 2.0 - 1.0;
        let v = (py as f32 + 0.5) / size as f32 * 2.0 - 1.0;
        // Background.
        let g = 0.5 + 0.5 * (u * bg_angle.cos() + v * bg_angle.sin()) / std::f32::consts::SQRT_2;
        let mut c: [f32; 3] = std::array::from_fn(|k| bg_a[k] * (1.0 - g) + bg_b[k] * g);
        for (centre, radius, colour) in &blobs {
            let d = ((u - centre[0]).powi(2) + (v - centre[1]).powi(2)).sqrt() / radius;
            if d < 1.0 {
                let a = 0.5 * (1.0 - d);
                for k in 0..3 {
                    c[k] = c[k] * (1.0 - a) + colour[k] * a;
                }
            }
        }
        // Object frame.
        let (du, dv) = ((u - shift[0]) / scale, (v - shift[1]) / scale);
        let mut x = du * cos + dv * sin;
        let y = -du * sin + dv * cos;
        if mirror {
            x = -x;
        }
        let in_body = (x / rx).powi(2) + (y / ry).powi(2) <= 1.0;
        let tail_x = -x - rx * 0.9;
        let in_tail = tail_x >= 0.0
            && tail_x <= fam.tail.0
            && y.abs() <= fam.tail.1 * (1.0 - tail_x / fam.tail.0 * 0.3);
        let dh = ((x - head_c[0]).powi(2) + (y - head_c[1]).powi(2)).sqrt();
        let in_head = dh <= fam.head_radius;
        let eye = ((x - head_c[0] - fam.head_radius * 0.35).powi(2)
            + (y - head_c[1] + fam.head_radius * 0.2).powi(2))
        .sqrt()
            <= fam.head_radius * 0.22;
        let shade = 0.85 + 0.15 * (-y / ry).clamp(-1.0, 1.0);
        if in_tail && !in_body {
            c = body_colour.map(|v| v * 0.8 * shade);
        }
        if in_body {
            c = body_colour.map(|v| v * shade);
            if stripe_xs.iter().any(|sx| (x - sx).abs() < rx * 0.07) {
                c = fam.stripe_colour;
            }
        }
        if in_head {
            c = if eye {
                [20.0, 20.0, 20.0]
            } else {
                fam.head_colours[head]
            };
        }
        let noise = (rng.next_f32() - 0.5) * 16.0;
        *pixel = Rgb(std::array::from_fn(|k| {
            (c[k] * light + cast[k] + noise).round().clamp(0.0, 255.0) as u8
        }));
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_any_size_and_balanced() {
        let cfg = SynthFineConfig {
            train_per_class: 3,
            test_per_class: 2,
            image_size: 24,
            ..Default::default()
        };
        let a = cfg.generate().unwrap();
        let b = cfg.generate().unwrap();
        let pa = a.dataset.splits["train"][5].image.load_rgb().unwrap();
        let pb = b.dataset.splits["train"][5].image.load_rgb().unwrap();
        assert_eq!(pa, pb);
        assert_eq!(pa.dimensions(), (24, 24));
        assert_eq!(a.dataset.splits["train"].len(), 48);
        assert_eq!(a.dataset.splits["test"].len(), 32);
        assert_eq!(a.dataset.num_classes(), 16);
        let other = SynthFineConfig {
            seed: 1,
            ..cfg.clone()
        }
        .generate()
        .unwrap();
        assert_ne!(
            other.dataset.splits["train"][5].image.load_rgb().unwrap(),
            pa
        );
        assert!(
            SynthFineConfig {
                classes_per_family: 13,
                ..cfg
            }
            .generate()
            .is_err()
        );
    }
}
