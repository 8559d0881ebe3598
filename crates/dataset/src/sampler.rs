//! Batch composition: which sample indices make up each batch of an epoch.
//!
//! [`BatchComposer`] is the hook: the epoch sampler and the class-balanced P×K sampler
//! implement it, and a method with its own batch structure (CSRMS's anchors + positives +
//! negatives, HREM's neighbour batches) implements it too and hands the result to the training
//! scaffold's `epoch_batches`.

use crate::error::DatasetError;
use crate::rng::SeededRng;

/// Produces the batches of one epoch.
pub trait BatchComposer {
    /// The batches of `epoch`, drawing randomness from `rng` (the trainer's per-epoch stream).
    fn compose(
        &mut self,
        epoch: usize,
        rng: &mut SeededRng,
    ) -> Result<Vec<Vec<usize>>, DatasetError>;
}

/// Every index once per epoch, shuffled or in order, in batches of `batch_size`.
#[derive(Debug, Clone)]
pub struct EpochSampler {
    /// Number of samples.
    pub len: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Shuffle every epoch.
    pub shuffle: bool,
    /// Drop a last, smaller batch (CSRMS's loader does).
    pub drop_last: bool,
    /// Fold a last batch of a single sample into the one before it: one sample breaks batch
    /// norm's statistics and leaves a triplet loss without negatives.
    pub fold_single: bool,
}

impl EpochSampler {
    /// A shuffling sampler that keeps the last partial batch.
    pub fn new(len: usize, batch_size: usize) -> Self {
        Self {
            len,
            batch_size,
            shuffle: true,
            drop_last: false,
            fold_single: false,
        }
    }

    /// A shuffling sampler whose last batch is never a single sample (the training loops of
    /// relata's methods).
    pub fn folding_single(len: usize, batch_size: usize) -> Self {
        Self {
            fold_single: true,
            ..Self::new(len, batch_size)
        }
    }
}

impl BatchComposer for EpochSampler {
    fn compose(
        &mut self,
        _epoch: usize,
        rng: &mut SeededRng,
    ) -> Result<Vec<Vec<usize>>, DatasetError> {
        if self.batch_size == 0 {
            return Err(DatasetError::invalid(
                "sampler",
                "batch_size must be at least 1",
            ));
        }
        let order = if self.shuffle {
            rng.permutation(self.len)
        } else {
            (0..self.len).collect()
        };
        let mut batches: Vec<Vec<usize>> = order
            .chunks(self.batch_size)
            .filter(|c| !self.drop_last || c.len() == self.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        if self.fold_single && batches.len() > 1 && batches.last().is_some_and(|b| b.len() < 2) {
            let last = batches.pop().expect("checked");
            batches.last_mut().expect("checked").extend(last);
        }
        Ok(batches)
    }
}

/// Class-balanced batches: `p` classes × `k` samples each. Classes are visited in a shuffled
/// cycle; each class's samples are drawn without replacement from a shuffled pool that refills
/// when empty (so classes with fewer than `k` samples repeat some). An epoch has
/// `max(1, n / (p·k))` batches.
#[derive(Debug, Clone)]
pub struct PkSampler {
    by_class: Vec<Vec<usize>>,
    p: usize,
    k: usize,
    total: usize,
}

impl PkSampler {
    /// A sampler over `labels` (sample → class).
    pub fn new(labels: &[usize], p: usize, k: usize) -> Result<Self, DatasetError> {
        if p == 0 || k == 0 {
            return Err(DatasetError::invalid(
                "P×K sampler",
                "p and k must be at least 1",
            ));
        }
        let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
        let mut by_class = vec![Vec::new(); classes];
        for (i, &l) in labels.iter().enumerate() {
            by_class[l].push(i);
        }
        by_class.retain(|v| !v.is_empty());
        if by_class.len() < p {
            return Err(DatasetError::invalid(
                "P×K sampler",
                format!(
                    "p = {p} classes per batch, but only {} classes have samples",
                    by_class.len()
                ),
            ));
        }
        Ok(Self {
            by_class,
            p,
            k,
            total: labels.len(),
        })
    }
}

impl BatchComposer for PkSampler {
    fn compose(
        &mut self,
        _epoch: usize,
        rng: &mut SeededRng,
    ) -> Result<Vec<Vec<usize>>, DatasetError> {
        let batches = (self.total / (self.p * self.k)).max(1);
        let mut pools: Vec<Vec<usize>> = vec![Vec::new(); self.by_class.len()];
        let mut class_cycle: Vec<usize> = Vec::new();
        let mut out = Vec::with_capacity(batches);
        for _ in 0..batches {
            let mut batch = Vec::with_capacity(self.p * self.k);
            let mut chosen: Vec<usize> = Vec::with_capacity(self.p);
            while chosen.len() < self.p {
                if class_cycle.is_empty() {
                    class_cycle = rng.permutation(self.by_class.len());
                }
                let c = class_cycle.pop().expect("refilled");
                if chosen.contains(&c) {
                    // Put it back for the next batch; only possible at a cycle boundary.
                    class_cycle.insert(0, c);
                    continue;
                }
                chosen.push(c);
            }
            for c in chosen {
                for _ in 0..self.k {
                    if pools[c].is_empty() {
                        pools[c] = self.by_class[c].clone();
                        rng.shuffle(&mut pools[c]);
                    }
                    batch.push(pools[c].pop().expect("refilled"));
                }
            }
            out.push(batch);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_sampler_covers_everything_once() {
        let mut folded = EpochSampler::folding_single(9, 4);
        let b = folded.compose(0, &mut SeededRng::new(1)).unwrap();
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 5]);
        let b = EpochSampler::new(9, 4)
            .compose(0, &mut SeededRng::new(1))
            .unwrap();
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 1]);
        let mut s = EpochSampler::new(10, 4);
        let b = s.compose(0, &mut SeededRng::new(1)).unwrap();
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 2]);
        let mut all: Vec<usize> = b.concat();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        s.drop_last = true;
        assert_eq!(s.compose(0, &mut SeededRng::new(1)).unwrap().len(), 2);
        // Same stream, same batches.
        assert_eq!(
            s.compose(0, &mut SeededRng::new(5)).unwrap(),
            s.compose(0, &mut SeededRng::new(5)).unwrap()
        );
    }

    #[test]
    fn pk_batches_have_p_classes_of_k() {
        let labels: Vec<usize> = (0..60).map(|i| i % 6).collect();
        let mut s = PkSampler::new(&labels, 3, 4).unwrap();
        let batches = s.compose(0, &mut SeededRng::new(2)).unwrap();
        assert_eq!(batches.len(), 5);
        for b in &batches {
            assert_eq!(b.len(), 12);
            let mut classes: Vec<usize> = b.iter().map(|&i| labels[i]).collect();
            classes.dedup();
            assert_eq!(classes.len(), 3, "{b:?}");
        }
        assert!(PkSampler::new(&labels, 7, 2).is_err());
    }

    #[test]
    fn custom_composer_plugs_in() {
        /// Anchor + its neighbour, as a method would compose.
        struct Pairs(usize);
        impl BatchComposer for Pairs {
            fn compose(
                &mut self,
                _: usize,
                _: &mut SeededRng,
            ) -> Result<Vec<Vec<usize>>, DatasetError> {
                Ok((0..self.0).step_by(2).map(|i| vec![i, i + 1]).collect())
            }
        }
        let composers: Vec<Box<dyn BatchComposer>> =
            vec![Box::new(Pairs(4)), Box::new(EpochSampler::new(4, 2))];
        for mut c in composers {
            assert_eq!(c.compose(0, &mut SeededRng::new(0)).unwrap().len(), 2);
        }
    }
}
