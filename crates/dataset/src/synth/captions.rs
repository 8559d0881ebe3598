//! `synth-captions`: an embedded image–text dataset (docs/design.md, Data), written in the SCAN precomp
//! layout and read back through [`PrecompDataset`], the reader real data goes through.
//!
//! A scene holds 2–4 objects, each a (shape, colour, size, position). Its "region features"
//! mimic bottom-up attention features: one region per object (shape and colour embeddings, a
//! size direction, a position code, noise), fragments of objects (a partial, noisier copy), and
//! background regions of pure noise, in random order. Five captions per scene come from a small
//! grammar (several templates: attributes, relations, counts, positions), so captions of one
//! image differ in wording and in which objects they mention.
//!
//! Scenes are drawn independently by default. With `families > 0` each scene is instead an
//! edited copy of one of `families` prototype scenes (shared by the three splits): objects
//! keep their shape, change colour or size with probability `family_edit`, are replaced or
//! added/dropped with half that, and move a little — graded relations between instances (two
//! scenes share none, some or all of their objects and layout), as photographs of recurring
//! situations have, for methods such as HREM that model relations between a batch's instances.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::DatasetError;
use crate::formats::precomp::{PrecompDataset, write_npy_f32};
use crate::rng::SeededRng;

const SHAPES: [&str; 8] = [
    "cube", "ball", "cylinder", "cone", "ring", "pyramid", "star", "cup",
];
const COLOURS: [&str; 8] = [
    "red", "blue", "green", "yellow", "purple", "orange", "white", "black",
];
const SIZES: [&str; 3] = ["small", "medium", "large"];

/// Parameters of `synth-captions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthCaptionsConfig {
    /// Training scenes.
    pub train: usize,
    /// Validation scenes (`dev`, as in SCAN's layout).
    pub dev: usize,
    /// Test scenes.
    pub test: usize,
    /// Regions per scene (36 in the real features).
    pub regions: usize,
    /// Feature dimension (2048 in the real features).
    pub dim: usize,
    /// Standard deviation of the feature noise.
    pub noise: f32,
    /// Seed.
    pub seed: u64,
    /// Scene families: 0 draws every scene independently (the default); `n > 0` makes each
    /// scene an edited copy of one of `n` prototype scenes (module documentation).
    #[serde(default)]
    pub families: usize,
    /// How far a family member strays from its prototype: the probability that an object
    /// changes colour, and separately size; objects are replaced, added or dropped with half
    /// of it. In [0, 1]; only read when `families > 0`.
    #[serde(default = "default_family_edit")]
    pub family_edit: f32,
}

fn default_family_edit() -> f32 {
    0.3
}

impl Default for SynthCaptionsConfig {
    /// 1,000 / 100 / 100 scenes, 12 regions of 64 dimensions.
    fn default() -> Self {
        Self {
            train: 1000,
            dev: 100,
            test: 100,
            regions: 12,
            dim: 64,
            noise: 0.3,
            seed: 0,
            families: 0,
            family_edit: default_family_edit(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Object {
    shape: usize,
    colour: usize,
    size: usize,
    x: f32,
    y: f32,
}

fn random_object(rng: &mut SeededRng) -> Object {
    Object {
        shape: rng.below(SHAPES.len()),
        colour: rng.below(COLOURS.len()),
        size: rng.below(SIZES.len()),
        x: rng.next_f32(),
        y: rng.next_f32(),
    }
}

/// An independent scene: 2–4 random objects.
fn random_scene(rng: &mut SeededRng) -> Vec<Object> {
    let count = 2 + rng.below(3);
    (0..count).map(|_| random_object(rng)).collect()
}

/// An edited copy of a family's prototype scene (2–4 objects, as independent scenes).
fn family_member(proto: &[Object], edit: f64, rng: &mut SeededRng) -> Vec<Object> {
    let mut objects: Vec<Object> = proto
        .iter()
        .map(|o| {
            if rng.bernoulli(edit / 2.0) {
                return random_object(rng);
            }
            let mut o = *o;
            if rng.bernoulli(edit) {
                o.colour = rng.below(COLOURS.len());
            }
            if rng.bernoulli(edit) {
                o.size = rng.below(SIZES.len());
            }
            o.x = (o.x + 0.1 * rng.normal() as f32).clamp(0.0, 1.0);
            o.y = (o.y + 0.1 * rng.normal() as f32).clamp(0.0, 1.0);
            o
        })
        .collect();
    if objects.len() < 4 && rng.bernoulli(edit / 2.0) {
        objects.push(random_object(rng));
    } else if objects.len() > 2 && rng.bernoulli(edit / 2.0) {
        objects.remove(rng.below(objects.len()));
    }
    objects
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn noun_phrase(o: &Object, with_size: bool) -> String {
    let words = if with_size {
        format!(
            "{} {} {}",
            SIZES[o.size], COLOURS[o.colour], SHAPES[o.shape]
        )
    } else {
        format!("{} {}", COLOURS[o.colour], SHAPES[o.shape])
    };
    format!("{} {words}", article(&words))
}

fn relation(a: &Object, b: &Object) -> &'static str {
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    if dx.abs() >= dy.abs() {
        if dx > 0.0 {
            "to the left of"
        } else {
            "to the right of"
        }
    } else if dy > 0.0 {
        "above"
    } else {
        "below"
    }
}

fn position(o: &Object) -> &'static str {
    match (o.x < 0.4, o.x > 0.6, o.y < 0.4, o.y > 0.6) {
        (true, _, true, _) => "in the top left corner",
        (true, _, _, true) => "in the bottom left corner",
        (_, true, true, _) => "in the top right corner",
        (_, true, _, true) => "in the bottom right corner",
        (true, _, _, _) => "on the left",
        (_, true, _, _) => "on the right",
        (_, _, true, _) => "at the top",
        (_, _, _, true) => "at the bottom",
        _ => "in the middle",
    }
}

const NUMBERS: [&str; 5] = ["zero", "one", "two", "three", "four"];

/// Five distinct captions for a scene.
fn captions(objects: &[Object], rng: &mut SeededRng) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut attempts = 0;
    while out.len() < 5 {
        attempts += 1;
        let a = &objects[rng.below(objects.len())];
        let mut b = &objects[rng.below(objects.len())];
        if objects.len() > 1 {
            while std::ptr::eq(a, b) {
                b = &objects[rng.below(objects.len())];
            }
        }
        let sized = rng.bernoulli(0.5);
        let text = match rng.below(6) {
            0 if objects.len() > 1 => format!(
                "{} {} {}",
                noun_phrase(a, sized),
                relation(a, b),
                noun_phrase(b, !sized)
            ),
            1 if objects.len() > 1 => {
                format!(
                    "there is {} and {}",
                    noun_phrase(a, sized),
                    noun_phrase(b, sized)
                )
            }
            2 => format!(
                "{} objects including {}",
                NUMBERS[objects.len().min(4)],
                noun_phrase(a, sized)
            ),
            3 => format!("{} {}", noun_phrase(a, true), position(a)),
            4 => {
                let list: Vec<String> = objects.iter().map(|o| noun_phrase(o, false)).collect();
                let (last, rest) = list.split_last().expect("scenes have objects");
                if rest.is_empty() {
                    format!("a picture of {last}")
                } else {
                    format!("a picture of {} and {last}", rest.join(" , "))
                }
            }
            _ => format!(
                "the {} {} is {}",
                COLOURS[a.colour], SHAPES[a.shape], SIZES[a.size]
            ),
        };
        let text = format!("{text} .");
        if !out.contains(&text) || attempts > 50 {
            out.push(text);
        }
    }
    out
}

/// Per-vocabulary embeddings shared by all scenes.
struct Embeddings {
    shape: Vec<Vec<f32>>,
    colour: Vec<Vec<f32>>,
    size: Vec<f32>,
    pos_x: Vec<f32>,
    pos_y: Vec<f32>,
}

impl Embeddings {
    fn new(seed: u64, dim: usize) -> Self {
        let mut r = SeededRng::derive(seed, &[0xE3B]);
        let mut vec =
            |scale: f64| -> Vec<f32> { (0..dim).map(|_| (r.normal() * scale) as f32).collect() };
        Self {
            shape: (0..SHAPES.len()).map(|_| vec(1.0)).collect(),
            colour: (0..COLOURS.len()).map(|_| vec(0.8)).collect(),
            size: vec(0.5),
            pos_x: vec(0.4),
            pos_y: vec(0.4),
        }
    }
}

impl SynthCaptionsConfig {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), DatasetError> {
        if self.regions < 4 || self.dim == 0 {
            return Err(DatasetError::invalid(
                "synth-captions config",
                format!(
                    "need at least 4 regions and dim ≥ 1, got {} × {}",
                    self.regions, self.dim
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.family_edit) {
            return Err(DatasetError::invalid(
                "synth-captions config",
                format!(
                    "family_edit is a probability in [0, 1], got {}",
                    self.family_edit
                ),
            ));
        }
        if self.train == 0 || self.test == 0 {
            return Err(DatasetError::invalid(
                "synth-captions config",
                "train and test must be non-empty",
            ));
        }
        Ok(())
    }

    /// Writes `{train,dev,test}_ims.npy` and `_caps.txt` to `dir` and opens it with the
    /// precomp reader.
    pub fn write(&self, dir: &Path) -> Result<PrecompDataset, DatasetError> {
        self.validate()?;
        std::fs::create_dir_all(dir).map_err(|e| DatasetError::io(dir, e))?;
        let emb = Embeddings::new(self.seed, self.dim);
        let prototypes: Vec<Vec<Object>> = (0..self.families)
            .map(|f| random_scene(&mut SeededRng::derive(self.seed, &[0xFA3, f as u64])))
            .collect();
        for (split_id, (split, n)) in [
            ("train", self.train),
            ("dev", self.dev),
            ("test", self.test),
        ]
        .into_iter()
        .enumerate()
        {
            if n == 0 {
                continue;
            }
            let mut feats = Vec::with_capacity(n * self.regions * self.dim);
            let mut caps = String::new();
            for i in 0..n {
                let mut rng = SeededRng::derive(self.seed, &[0xCA9, split_id as u64, i as u64]);
                let objects = if prototypes.is_empty() {
                    random_scene(&mut rng)
                } else {
                    let proto = &prototypes[rng.below(prototypes.len())];
                    family_member(proto, self.family_edit as f64, &mut rng)
                };
                feats.extend(self.regions_of(&objects, &emb, &mut rng));
                for c in captions(&objects, &mut rng) {
                    caps.push_str(&c);
                    caps.push('\n');
                }
            }
            write_npy_f32(
                &dir.join(format!("{split}_ims.npy")),
                &[n, self.regions, self.dim],
                &feats,
            )?;
            let caps_path = dir.join(format!("{split}_caps.txt"));
            std::fs::write(&caps_path, caps).map_err(|e| DatasetError::io(&caps_path, e))?;
        }
        PrecompDataset::open(dir)
    }

    fn regions_of(&self, objects: &[Object], emb: &Embeddings, rng: &mut SeededRng) -> Vec<f32> {
        let d = self.dim;
        let mut regions: Vec<Vec<f32>> = Vec::with_capacity(self.regions);
        let object_vec = |o: &Object, weight: f32, rng: &mut SeededRng| -> Vec<f32> {
            (0..d)
                .map(|k| {
                    weight
                        * (emb.shape[o.shape][k]
                            + emb.colour[o.colour][k]
                            + emb.size[k] * (o.size as f32 - 1.0)
                            + emb.pos_x[k] * (o.x - 0.5)
                            + emb.pos_y[k] * (o.y - 0.5))
                        + self.noise * rng.normal() as f32
                })
                .collect()
        };
        for o in objects {
            regions.push(object_vec(o, 1.0, rng));
        }
        // Fragments: each object may appear again, weaker and noisier.
        while regions.len() < self.regions * 2 / 3 {
            let o = &objects[rng.below(objects.len())];
            let w = rng.uniform(0.3, 0.7) as f32;
            regions.push(object_vec(o, w, rng));
        }
        while regions.len() < self.regions {
            regions.push((0..d).map(|_| 0.6 * rng.normal() as f32).collect());
        }
        regions.truncate(self.regions);
        rng.shuffle(&mut regions);
        // Bottom-up features are non-negative (post-ReLU): keep that property.
        regions.into_iter().flatten().map(|v| v.max(0.0)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Family members keep their prototype's shapes (unless replaced); without edits they are
    /// the prototype moved a little, and heavier edits change more attributes.
    #[test]
    fn family_members_are_graded_copies_of_their_prototype() {
        let mut rng = SeededRng::new(5);
        let proto: Vec<Object> = (0..3).map(|_| random_object(&mut rng)).collect();
        let unchanged = family_member(&proto, 0.0, &mut rng);
        assert_eq!(unchanged.len(), 3);
        for (a, b) in proto.iter().zip(&unchanged) {
            assert_eq!((a.shape, a.colour, a.size), (b.shape, b.colour, b.size));
            assert!((a.x - b.x).abs() < 0.6 && (0.0..=1.0).contains(&b.x));
        }
        let changed = |edit: f64, rng: &mut SeededRng| -> usize {
            (0..200)
                .map(|_| {
                    let m = family_member(&proto, edit, rng);
                    proto
                        .iter()
                        .zip(&m)
                        .filter(|(a, b)| (a.shape, a.colour, a.size) != (b.shape, b.colour, b.size))
                        .count()
                        + m.len().abs_diff(proto.len())
                })
                .sum()
        };
        let (light, heavy) = (changed(0.1, &mut rng), changed(0.5, &mut rng));
        assert!(light > 0 && heavy > 2 * light, "{light} vs {heavy}");
        for _ in 0..200 {
            let m = family_member(&proto, 1.0, &mut rng);
            assert!((2..=4).contains(&m.len()));
        }
    }

    /// With families, scenes repeat their family's objects: far fewer distinct (shape, colour)
    /// pairs per caption set than independent scenes; the edit probability is checked.
    #[test]
    fn families_share_objects_across_scenes() {
        let distinct_pictures = |families: usize| -> usize {
            let tmp = tempfile::tempdir().unwrap();
            let cfg = SynthCaptionsConfig {
                train: 200,
                dev: 2,
                test: 2,
                families,
                family_edit: 0.0,
                ..Default::default()
            };
            let ds = cfg.write(tmp.path()).unwrap();
            // "a picture of …" lists every object without size: one per scene at most.
            let pictures: std::collections::HashSet<&String> = ds
                .split("train")
                .unwrap()
                .captions
                .iter()
                .filter(|c| c.starts_with("a picture of"))
                .collect();
            pictures.len()
        };
        let (independent, families) = (distinct_pictures(0), distinct_pictures(5));
        assert!(
            families <= 5 && independent > 50,
            "{families} vs {independent}"
        );
        let bad = SynthCaptionsConfig {
            families: 3,
            family_edit: 1.5,
            ..Default::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("family_edit"), "{err}");
    }

    #[test]
    fn writes_precomp_read_back_by_the_real_reader() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = SynthCaptionsConfig {
            train: 20,
            dev: 4,
            test: 6,
            ..Default::default()
        };
        let ds = cfg.write(tmp.path()).unwrap();
        assert_eq!(
            ds.splits.keys().cloned().collect::<Vec<_>>(),
            vec!["dev", "test", "train"]
        );
        let train = ds.split("train").unwrap();
        assert_eq!((train.num_images, train.regions, train.dim), (20, 12, 64));
        assert_eq!(train.captions.len(), 100);
        assert_eq!(train.captions_per_image, 5);
        assert_eq!(train.image_features(19).len(), 12 * 64);
        assert!(train.captions.iter().all(|c| c.ends_with(" .")));
        // The five captions of an image differ.
        let five: std::collections::HashSet<&String> = train.captions[..5].iter().collect();
        assert!(five.len() >= 4);
        // Deterministic.
        let tmp2 = tempfile::tempdir().unwrap();
        let again = cfg.write(tmp2.path()).unwrap();
        assert_eq!(again.split("train").unwrap().captions, train.captions);
        assert_eq!(
            again.split("train").unwrap().image_features(3),
            train.image_features(3)
        );
    }
}
