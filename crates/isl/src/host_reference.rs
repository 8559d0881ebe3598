//! The host algorithms the training steps ran before their N-sized work moved to the device
//! (docs/isl.md, "No N-sized work on the host"): the hardest-negative scan over 4,096 draws on
//! the CPU and the full ranking of the bank per anchor. They stay as the reference that the
//! device versions are tested against and as the "before" of `cargo xtask bench isl`.

use relata_dataset::SeededRng;

use crate::positives::PositiveSets;

/// For each anchor (feature row `anchors[r]`, instance `indices[r]`): the hardest of `draws`
/// uniformly drawn non-members of S_i (members redrawn, as the authors' sampler does), by
/// dot product with the host bank `memory` (`[N, dim]`); the anchor itself when S_i holds
/// every instance.
pub fn hardest_negatives(
    anchors: &[f32],
    indices: &[usize],
    sets: &PositiveSets,
    memory: &[f32],
    dim: usize,
    draws: usize,
    rng: &mut SeededRng,
) -> Vec<usize> {
    let n = sets.len();
    indices
        .iter()
        .enumerate()
        .map(|(row, &i)| {
            let a = &anchors[row * dim..(row + 1) * dim];
            let members = sets.get(i);
            if members.len() >= n {
                return i;
            }
            let mut best: Option<(f32, usize)> = None;
            let mut drawn = 0;
            while drawn < draws {
                let j = rng.below(n);
                if members.contains(&j) {
                    continue;
                }
                drawn += 1;
                let s: f32 = memory[j * dim..(j + 1) * dim]
                    .iter()
                    .zip(a)
                    .map(|(x, y)| x * y)
                    .sum();
                if best.is_none_or(|(bs, bj)| s > bs || (s == bs && j < bj)) {
                    best = Some((s, j));
                }
            }
            best.map_or(i, |(_, j)| j)
        })
        .collect()
}

/// The `k` entries of `similarities` (one anchor's cosines with the whole bank) ranked highest,
/// the anchor excluded, ties by index: a full sort of N entries.
pub fn top_neighbours(similarities: &[f32], anchor: usize, k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..similarities.len()).filter(|&j| j != anchor).collect();
    order.sort_by(|&x, &y| similarities[y].total_cmp(&similarities[x]).then(x.cmp(&y)));
    order.truncate(k);
    order
}
