//! A validation split carved from a training split, for choosing settings without looking at
//! the test set.
//!
//! Stratified: the same number of images of every class is held out, drawn by a seeded shuffle
//! of each class's images, so that the split is reproducible and every class is scored.

use crate::error::DatasetError;
use crate::rng::{SeededRng, mix_seed};
use crate::source::Sample;

/// The samples left to train on and the held-out validation samples.
#[derive(Debug, Clone)]
pub struct HeldOut {
    /// What remains for training, in the original order.
    pub train: Vec<Sample>,
    /// `per_class` images of every class, in the original order.
    pub validation: Vec<Sample>,
}

/// Holds out `per_class` samples of each of the `classes` classes from `samples`.
///
/// Fails, naming the class, when a class has no more than `per_class` samples (at least one
/// must be left to train on), and when `per_class` is 0.
pub fn hold_out_per_class(
    samples: &[Sample],
    classes: usize,
    per_class: usize,
    seed: u64,
) -> Result<HeldOut, DatasetError> {
    if per_class == 0 {
        return Err(DatasetError::invalid(
            "validation",
            "hold out at least one image per class (got 0)",
        ));
    }
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, s) in samples.iter().enumerate() {
        let Some(members) = by_class.get_mut(s.label) else {
            return Err(DatasetError::invalid(
                "validation",
                format!(
                    "sample {i} has label {} but there are {classes} classes",
                    s.label
                ),
            ));
        };
        members.push(i);
    }
    let mut held = vec![false; samples.len()];
    for (class, members) in by_class.iter_mut().enumerate() {
        if members.len() <= per_class {
            return Err(DatasetError::invalid(
                "validation",
                format!(
                    "class {class} has {} training images; holding out {per_class} would leave \
                     none to train on (use a smaller number)",
                    members.len()
                ),
            ));
        }
        SeededRng::new(mix_seed(seed, &[0x7661_6c69, class as u64])).shuffle(members);
        for &i in &members[..per_class] {
            held[i] = true;
        }
    }
    let (validation, train): (Vec<_>, Vec<_>) = samples.iter().zip(&held).partition(|(_, h)| **h);
    Ok(HeldOut {
        train: train.into_iter().map(|(s, _)| s.clone()).collect(),
        validation: validation.into_iter().map(|(s, _)| s.clone()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ImageRef;

    fn samples(per_class: &[usize]) -> Vec<Sample> {
        let mut out = Vec::new();
        for (label, &n) in per_class.iter().enumerate() {
            for i in 0..n {
                out.push(Sample {
                    image: ImageRef::File(format!("{label}-{i}.png").into()),
                    label,
                });
            }
        }
        out
    }

    fn names(s: &[Sample]) -> Vec<String> {
        s.iter().map(|s| format!("{:?}", s.image)).collect()
    }

    #[test]
    fn stratified_disjoint_and_seeded() {
        let all = samples(&[10, 6, 8]);
        let a = hold_out_per_class(&all, 3, 2, 7).unwrap();
        assert_eq!(a.validation.len(), 6);
        assert_eq!(a.train.len(), 18);
        for c in 0..3 {
            assert_eq!(a.validation.iter().filter(|s| s.label == c).count(), 2);
        }
        let (t, v) = (names(&a.train), names(&a.validation));
        assert!(v.iter().all(|n| !t.contains(n)));
        let b = hold_out_per_class(&all, 3, 2, 7).unwrap();
        assert_eq!(names(&b.validation), v);
        let other: Vec<_> = (0..20)
            .map(|seed| names(&hold_out_per_class(&all, 3, 2, seed).unwrap().validation))
            .collect();
        assert!(
            other.iter().any(|o| *o != v),
            "the seed never changed the split"
        );
    }

    #[test]
    fn too_few_images_names_the_class() {
        let all = samples(&[10, 2]);
        let e = hold_out_per_class(&all, 2, 2, 0).unwrap_err().to_string();
        assert!(e.contains("class 1 has 2 training images"), "{e}");
        assert!(hold_out_per_class(&all, 2, 0, 0).is_err());
        assert!(hold_out_per_class(&all, 1, 1, 0).is_err());
    }
}
