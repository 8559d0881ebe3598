//! Deterministic random numbers for sampling, shuffling and augmentation.
//!
//! Reproducibility across resumes is the point: every epoch draws from a generator derived from
//! `(run seed, epoch)` alone ([`SeededRng::for_epoch`]), and the backend's own generator (weight
//! init, dropout) is re-seeded from the same pair at each epoch start. A run resumed after epoch
//! `k` therefore sees exactly the random numbers an uninterrupted run sees in epoch `k + 1`,
//! without having to serialise the backend's generator (which burn does not expose).
//!
//! The algorithm is xoshiro256++ seeded through SplitMix64: small, fast, and fixed here so a
//! dependency upgrade can never change a run's numbers.

use serde::{Deserialize, Serialize};

/// SplitMix64 step: a bijective mixer used to seed xoshiro and to combine seed components.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mixes a seed and a list of stream identifiers (epoch, sample index, ...) into one seed, so
/// that nearby inputs give unrelated streams.
pub fn mix_seed(seed: u64, streams: &[u64]) -> u64 {
    let mut state = seed;
    let mut out = splitmix64(&mut state);
    for &s in streams {
        state ^= s.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        out ^= splitmix64(&mut state);
        state = out;
    }
    out
}

/// A seedable xoshiro256++ generator whose state can be saved in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeededRng {
    state: [u64; 4],
}

impl SeededRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let state = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        Self { state }
    }

    /// The generator of one epoch of a run: a function of `(seed, epoch)` only.
    pub fn for_epoch(seed: u64, epoch: usize) -> Self {
        Self::new(mix_seed(seed, &[0xE90C, epoch as u64]))
    }

    /// An independent generator for a named sub-stream (a sample index, a worker, ...).
    pub fn derive(seed: u64, streams: &[u64]) -> Self {
        Self::new(mix_seed(seed, streams))
    }

    /// The raw state, for checkpoints.
    pub fn state(&self) -> [u64; 4] {
        self.state
    }

    /// Restores a generator saved with [`SeededRng::state`].
    pub fn from_state(state: [u64; 4]) -> Self {
        Self { state }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[0, 1)` with 24 bits of precision.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Uniform in `[low, high)`.
    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.next_f64()
    }

    /// Uniform integer in `0..n` without modulo bias (Lemire's method). `n` must be positive.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "SeededRng::below needs a positive bound");
        let n = n as u64;
        let threshold = n.wrapping_neg() % n;
        loop {
            let product = (self.next_u64() as u128) * (n as u128);
            if (product as u64) >= threshold {
                return (product >> 64) as usize;
            }
        }
    }

    /// `true` with probability `p`.
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// A standard normal sample (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]: ln is finite
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Fisher–Yates shuffle in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    /// A shuffled `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        self.shuffle(&mut p);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_epochs_differ() {
        let a: Vec<u64> = (0..8).map(|_| SeededRng::new(7).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut e0 = SeededRng::for_epoch(7, 0);
        let mut e1 = SeededRng::for_epoch(7, 1);
        assert_ne!(e0.next_u64(), e1.next_u64());
        let mut r = SeededRng::new(3);
        r.next_u64();
        let mut restored = SeededRng::from_state(r.state());
        assert_eq!(r.next_u64(), restored.next_u64());
    }

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut r = SeededRng::new(11);
        let mut counts = [0usize; 5];
        for _ in 0..50_000 {
            counts[r.below(5)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut p = SeededRng::new(5).permutation(100);
        assert_ne!(p, (0..100).collect::<Vec<_>>());
        p.sort_unstable();
        assert_eq!(p, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn floats_in_unit_interval_and_normal_moments() {
        let mut r = SeededRng::new(9);
        let xs: Vec<f64> = (0..20_000).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
        for _ in 0..1000 {
            let f = r.next_f32();
            assert!((0.0..1.0).contains(&f));
        }
    }
}
