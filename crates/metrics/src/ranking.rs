//! Full Hamming ranking of a database for one query (docs/design.md, Retrieval).
//!
//! Distances are small integers (0..=bits), so the ranking is a counting sort: one pass builds
//! a histogram of distances, a prefix sum turns it into bucket starts, a second pass scatters
//! item ids in index order. The result is ordered by (distance, database index) — the stable
//! tie rule every relata metric uses — in O(n + bits), with no comparison sort.

use crate::codes::PackedCodes;
use crate::hamming::distances;

/// Reusable buffers for ranking many queries against one database.
#[derive(Debug, Clone, Default)]
pub struct RankScratch {
    pub(crate) dist: Vec<u16>,
    pub(crate) count: Vec<u32>,
}

impl RankScratch {
    /// Buffers sized for `db` of `bits`-bit codes.
    pub fn new(db_len: usize, bits: usize) -> Self {
        Self {
            dist: vec![0; db_len],
            count: vec![0; bits + 2],
        }
    }

    pub(crate) fn fit(&mut self, db_len: usize, bits: usize) {
        self.dist.resize(db_len, 0);
        self.count.clear();
        self.count.resize(bits + 2, 0);
    }

    /// The distances computed by the last call that filled this scratch.
    pub fn distances(&self) -> &[u16] {
        &self.dist
    }
}

/// Ranks every code of `db` for `query` (a packed code of the same length) by
/// (Hamming distance, database index), writing ids into `order` (resized to `db.len()`).
pub fn hamming_rank_into(
    query: &[u64],
    db: &PackedCodes,
    scratch: &mut RankScratch,
    order: &mut Vec<u32>,
) {
    let n = db.len();
    let bits = db.bits();
    scratch.fit(n, bits);
    distances(query, db.as_words(), &mut scratch.dist);
    // count[d + 1] = number of items at distance d; prefix sums give bucket starts.
    for &d in &scratch.dist {
        scratch.count[d as usize + 1] += 1;
    }
    for d in 1..scratch.count.len() {
        scratch.count[d] += scratch.count[d - 1];
    }
    order.clear();
    order.resize(n, 0);
    for (i, &d) in scratch.dist.iter().enumerate() {
        let slot = &mut scratch.count[d as usize];
        order[*slot as usize] = i as u32;
        *slot += 1;
    }
}

/// The full ranking of `db` for code `qi` of `queries`.
pub fn hamming_rank(queries: &PackedCodes, qi: usize, db: &PackedCodes) -> Vec<u32> {
    let mut scratch = RankScratch::default();
    let mut order = Vec::new();
    hamming_rank_into(queries.code(qi), db, &mut scratch, &mut order);
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hamming::hamming;

    #[test]
    fn ranking_is_distance_then_index() {
        let vals: Vec<f32> = (0..40 * 12)
            .map(|i| {
                if (i * 7919 + i / 3) % 5 < 2 {
                    1.0
                } else {
                    -1.0
                }
            })
            .collect();
        let codes = PackedCodes::from_values(&vals, 12).unwrap();
        for qi in [0, 5, 39] {
            let order = hamming_rank(&codes, qi, &codes);
            let mut expect: Vec<u32> = (0..codes.len() as u32).collect();
            expect.sort_by_key(|&i| (hamming(codes.code(qi), codes.code(i as usize)), i));
            assert_eq!(order, expect);
        }
    }
}
