//! Hashing-retrieval metrics: mAP@all, mAP@k, precision/recall@k, precision within Hamming
//! radius r and the precision–recall curve over radii.
//!
//! Every query ranks the whole database by (Hamming distance, database index). No ranking is
//! materialised: one pass over the database computes each item's distance, a running histogram
//! of distances (so an item's position is `start[d] + #earlier items at d`), and the same for
//! relevant items only. Positions of the relevant items then give every metric exactly, ties
//! included, in O(n + bits) per query.
//!
//! Conventions (published toolkits disagree, so they are explicit here):
//! - AP@all = (1/R) Σ_{j=1..R} j / pos_j over the R relevant items (pos 1-based).
//! - mAP@k, [`TopKMode::Positions`] (default; DPSH/DeepHash `CalcTopMap`): AP over the first k
//!   *positions*, normalised by the number of relevant items among them.
//! - mAP@k, [`TopKMode::RelevantHits`]: AP over the first k *relevant hits*,
//!   (1/min(k, R)) Σ_{j=1..min(k,R)} j / pos_j.
//! - A query with no relevant item in the database has AP 0 (all modes) and is counted in
//!   `no_relevant`; the mean is over all queries.
//! - Precision within radius r: relevant / retrieved among items at distance ≤ r, 0 when
//!   nothing is retrieved (the usual "P@H≤2").
//! - PR curve: for radius r = 0..=bits, precision averaged over queries that retrieve ≥ 1 item
//!   at that radius, recall over queries with ≥ 1 relevant item.

use rayon::prelude::*;
use serde::Serialize;

use crate::codes::PackedCodes;
use crate::error::{Result, shape};
use crate::hamming::{distances, hamming, kernel, multiversion};
use crate::labels::{Labels, Relevance};

/// How one query finds its relevant database items.
enum Relevant<'a> {
    /// Ascending ids of the relevant items (single-label data, from an inverted index).
    Sorted(&'a [u32]),
    /// A per-item test (multi-label data).
    Test(Relevance<'a>),
}

/// How mAP@k truncates the ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TopKMode {
    /// The first k positions of the ranking (default).
    #[default]
    Positions,
    /// The first k relevant items retrieved.
    RelevantHits,
}

/// What to compute besides mAP@all.
#[derive(Debug, Clone, PartialEq)]
pub struct HashingEvalConfig {
    /// Also compute mAP@k, P@k and R@k for this k.
    pub topk: Option<usize>,
    /// Truncation rule for mAP@k.
    pub topk_mode: TopKMode,
    /// Hamming radius for precision within radius.
    pub radius: u32,
    /// Compute the PR curve over all radii.
    pub pr_curve: bool,
}

impl Default for HashingEvalConfig {
    fn default() -> Self {
        Self {
            topk: None,
            topk_mode: TopKMode::Positions,
            radius: 2,
            pr_curve: false,
        }
    }
}

/// One point of the precision–recall curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PrPoint {
    /// Hamming radius.
    pub radius: u32,
    /// Mean precision of queries that retrieve something within the radius.
    pub precision: f64,
    /// Mean recall of queries with at least one relevant item.
    pub recall: f64,
}

/// Hashing-retrieval results, fractions in [0, 1].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HashingMetrics {
    /// mAP over the whole ranking.
    pub map: f64,
    /// mAP@k (when `topk` was given).
    pub map_at_k: Option<f64>,
    /// Precision@k.
    pub precision_at_k: Option<f64>,
    /// Recall@k.
    pub recall_at_k: Option<f64>,
    /// k used for the @k metrics.
    pub topk: Option<usize>,
    /// Truncation rule of mAP@k.
    pub topk_mode: TopKMode,
    /// Precision within `radius`.
    pub precision_at_radius: f64,
    /// The radius used.
    pub radius: u32,
    /// PR curve over radii 0..=bits (when asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pr_curve: Option<Vec<PrPoint>>,
    /// Number of queries.
    pub queries: usize,
    /// Queries with no relevant database item (their AP counts as 0).
    pub no_relevant: usize,
}

/// Per-query numbers, summed over queries afterwards.
#[derive(Default, Clone)]
struct QueryStats {
    ap: f64,
    ap_k: f64,
    prec_k: f64,
    rec_k: f64,
    prec_r: f64,
    no_relevant: usize,
    // PR curve: per radius, (precision, has_retrieved), recall.
    pr_prec: Vec<f64>,
    pr_prec_n: Vec<u32>,
    pr_rec: Vec<f64>,
    pr_rec_n: u32,
}

impl QueryStats {
    fn add(mut self, o: QueryStats) -> QueryStats {
        self.ap += o.ap;
        self.ap_k += o.ap_k;
        self.prec_k += o.prec_k;
        self.rec_k += o.rec_k;
        self.prec_r += o.prec_r;
        self.no_relevant += o.no_relevant;
        if self.pr_prec.is_empty() {
            self.pr_prec = o.pr_prec;
            self.pr_prec_n = o.pr_prec_n;
            self.pr_rec = o.pr_rec;
        } else {
            for (a, b) in self.pr_prec.iter_mut().zip(&o.pr_prec) {
                *a += b;
            }
            for (a, b) in self.pr_prec_n.iter_mut().zip(&o.pr_prec_n) {
                *a += b;
            }
            for (a, b) in self.pr_rec.iter_mut().zip(&o.pr_rec) {
                *a += b;
            }
        }
        self.pr_rec_n += o.pr_rec_n;
        self
    }
}

/// Interleaved histograms: consecutive items often share a distance (always, with short codes),
/// and a single histogram then serialises on store-to-load forwarding.
const LANES: usize = 4;

/// Adds the distances from `query` to `codes` (one stretch of the database) to the interleaved
/// histograms, computing each popcount in registers.
#[inline(always)]
fn histogram_generic(query: &[u64], codes: &[u64], hist: &mut [u32], stride: usize) {
    let (h0, rest) = hist.split_at_mut(stride);
    let (h1, rest) = rest.split_at_mut(stride);
    let (h2, h3) = rest.split_at_mut(stride);
    let words = query.len();
    if words == 1 {
        let q = query[0];
        let mut chunks = codes.chunks_exact(LANES);
        for c in &mut chunks {
            h0[(q ^ c[0]).count_ones() as usize] += 1;
            h1[(q ^ c[1]).count_ones() as usize] += 1;
            h2[(q ^ c[2]).count_ones() as usize] += 1;
            h3[(q ^ c[3]).count_ones() as usize] += 1;
        }
        for &c in chunks.remainder() {
            h0[(q ^ c).count_ones() as usize] += 1;
        }
    } else {
        let mut chunks = codes.chunks_exact(LANES * words);
        for c in &mut chunks {
            h0[hamming(query, &c[..words]) as usize] += 1;
            h1[hamming(query, &c[words..2 * words]) as usize] += 1;
            h2[hamming(query, &c[2 * words..3 * words]) as usize] += 1;
            h3[hamming(query, &c[3 * words..]) as usize] += 1;
        }
        for c in chunks.remainder().chunks_exact(words) {
            h0[hamming(query, c) as usize] += 1;
        }
    }
}

multiversion! {
    fn histogram(query: &[u64], codes: &[u64], hist: &mut [u32], stride: usize) = histogram_generic;
}

/// Items counted so far at distance `d`, over all lanes.
#[inline]
fn counted(hist: &[u32], d: usize, stride: usize) -> u32 {
    (0..LANES).map(|l| hist[l * stride + d]).sum()
}

/// Database ids of each class, ascending: single-label relevance without touching labels in
/// the per-item loop.
fn inverted_index(db_labels: &Labels) -> Option<std::collections::HashMap<i64, Vec<u32>>> {
    let Labels::Single(ids) = db_labels else {
        return None;
    };
    let mut map: std::collections::HashMap<i64, Vec<u32>> = std::collections::HashMap::new();
    for (i, &c) in ids.iter().enumerate() {
        map.entry(c).or_default().push(i as u32);
    }
    Some(map)
}

/// Scratch buffers for one worker.
struct Scratch {
    /// Per-item distances, filled only by the multi-label path (single-label never needs them).
    dist: Vec<u16>,
    /// LANES interleaved histograms of distances (lane-major, `bits + 1` each).
    hist: Vec<u32>,
    count: Vec<u32>,
    rel_count: Vec<u32>,
    // (distance, earlier items at that distance, earlier relevant items at that distance)
    hits: Vec<(u16, u32, u32)>,
    pos: Vec<u32>,
}

impl Scratch {
    fn new(bits: usize) -> Self {
        Self {
            dist: Vec::new(),
            hist: vec![0; LANES * (bits + 1)],
            count: vec![0; bits + 1],
            rel_count: vec![0; bits + 1],
            hits: Vec::new(),
            pos: Vec::new(),
        }
    }
}

fn validate(
    queries: &PackedCodes,
    db: &PackedCodes,
    query_labels: &Labels,
    db_labels: &Labels,
) -> Result<()> {
    if queries.bits() != db.bits() {
        return Err(shape(format!(
            "query codes have {} bits but database codes have {}",
            queries.bits(),
            db.bits()
        )));
    }
    if query_labels.len() != queries.len() {
        return Err(shape(format!(
            "{} query codes but {} query labels",
            queries.len(),
            query_labels.len()
        )));
    }
    if db_labels.len() != db.len() {
        return Err(shape(format!(
            "{} database codes but {} database labels",
            db.len(),
            db_labels.len()
        )));
    }
    if db.is_empty() {
        return Err(shape("the database is empty"));
    }
    query_labels.check_compatible(db_labels)
}

/// Computes mAP@all and the configured extras for every query against the database.
pub fn evaluate_hashing(
    queries: &PackedCodes,
    db: &PackedCodes,
    query_labels: &Labels,
    db_labels: &Labels,
    config: &HashingEvalConfig,
) -> Result<HashingMetrics> {
    validate(queries, db, query_labels, db_labels)?;
    let bits = db.bits();
    let nq = queries.len();
    let topk = config.topk.map(|k| k.max(1));
    let radius = config.radius.min(bits as u32);
    let inverted = inverted_index(db_labels);
    let total = (0..nq)
        .into_par_iter()
        .map_init(
            || Scratch::new(bits),
            |s, qi| {
                let relevant = match (&inverted, query_labels) {
                    (Some(inv), Labels::Single(q)) => {
                        Relevant::Sorted(inv.get(&q[qi]).map_or(&[][..], Vec::as_slice))
                    }
                    _ => Relevant::Test(query_labels.relevance(qi, db_labels)),
                };
                query_stats(
                    s,
                    queries.code(qi),
                    db,
                    relevant,
                    topk,
                    config.topk_mode,
                    radius,
                    config.pr_curve,
                )
            },
        )
        .reduce(QueryStats::default, QueryStats::add);
    let q = nq.max(1) as f64;
    let pr_curve = config.pr_curve.then(|| {
        (0..=bits)
            .map(|r| PrPoint {
                radius: r as u32,
                precision: if total.pr_prec_n[r] > 0 {
                    total.pr_prec[r] / total.pr_prec_n[r] as f64
                } else {
                    0.0
                },
                recall: if total.pr_rec_n > 0 {
                    total.pr_rec[r] / total.pr_rec_n as f64
                } else {
                    0.0
                },
            })
            .collect()
    });
    Ok(HashingMetrics {
        map: total.ap / q,
        map_at_k: topk.map(|_| total.ap_k / q),
        precision_at_k: topk.map(|_| total.prec_k / q),
        recall_at_k: topk.map(|_| total.rec_k / q),
        topk,
        topk_mode: config.topk_mode,
        precision_at_radius: total.prec_r / q,
        radius,
        pr_curve,
        queries: nq,
        no_relevant: total.no_relevant,
    })
}

/// mAP@all (or mAP@k with `topk`, first-k-positions convention) — the headline number.
pub fn mean_average_precision(
    queries: &PackedCodes,
    db: &PackedCodes,
    query_labels: &Labels,
    db_labels: &Labels,
    topk: Option<usize>,
) -> Result<f64> {
    let config = HashingEvalConfig {
        topk,
        ..Default::default()
    };
    let m = evaluate_hashing(queries, db, query_labels, db_labels, &config)?;
    Ok(m.map_at_k.unwrap_or(m.map))
}

#[allow(clippy::too_many_arguments)]
fn query_stats(
    s: &mut Scratch,
    query: &[u64],
    db: &PackedCodes,
    relevant: Relevant<'_>,
    topk: Option<usize>,
    mode: TopKMode,
    radius: u32,
    pr_curve: bool,
) -> QueryStats {
    let bits = db.bits();
    let stride = bits + 1;
    let words = db.words_per_code();
    let all = db.as_words();
    let k = kernel();
    s.hist.iter_mut().for_each(|c| *c = 0);
    s.rel_count.iter_mut().for_each(|c| *c = 0);
    s.hits.clear();
    // One pass in index order: every relevant item records how many items (and relevant
    // items) precede it at its own distance; the histograms give the bucket starts.
    match relevant {
        Relevant::Sorted(ids) => {
            let mut from = 0usize;
            for &i in ids {
                let i = i as usize;
                histogram(k, query, &all[from * words..i * words], &mut s.hist, stride);
                let d = hamming(query, db.code(i)) as usize;
                s.hits
                    .push((d as u16, counted(&s.hist, d, stride), s.rel_count[d]));
                s.rel_count[d] += 1;
                s.hist[d] += 1;
                from = i + 1;
            }
            histogram(k, query, &all[from * words..], &mut s.hist, stride);
        }
        Relevant::Test(rel) => {
            s.dist.resize(db.len(), 0);
            distances(query, all, &mut s.dist);
            for (i, &d) in s.dist.iter().enumerate() {
                let d = d as usize;
                if rel.is_relevant(i) {
                    s.hits
                        .push((d as u16, counted(&s.hist, d, stride), s.rel_count[d]));
                    s.rel_count[d] += 1;
                }
                s.hist[(i % LANES) * stride + d] += 1;
            }
        }
    }
    for d in 0..stride {
        s.count[d] = counted(&s.hist, d, stride);
    }
    let mut stats = QueryStats::default();
    let r_total = s.hits.len();
    // Bucket starts (exclusive prefix sums), in place.
    let (mut acc, mut racc) = (0u32, 0u32);
    for d in 0..=bits {
        let (c, rc) = (s.count[d], s.rel_count[d]);
        s.count[d] = acc;
        s.rel_count[d] = racc;
        acc += c;
        racc += rc;
    }
    let retrieved_r = s.count.get(radius as usize + 1).copied().unwrap_or(acc);
    let relevant_r = s
        .rel_count
        .get(radius as usize + 1)
        .copied()
        .unwrap_or(racc);
    stats.prec_r = if retrieved_r > 0 {
        relevant_r as f64 / retrieved_r as f64
    } else {
        0.0
    };
    if pr_curve {
        stats.pr_prec = vec![0.0; bits + 1];
        stats.pr_prec_n = vec![0; bits + 1];
        stats.pr_rec = vec![0.0; bits + 1];
        for r in 0..=bits {
            let retrieved = s.count.get(r + 1).copied().unwrap_or(acc);
            let relevant = s.rel_count.get(r + 1).copied().unwrap_or(racc);
            if retrieved > 0 {
                stats.pr_prec[r] = relevant as f64 / retrieved as f64;
                stats.pr_prec_n[r] = 1;
            }
            if r_total > 0 {
                stats.pr_rec[r] = relevant as f64 / r_total as f64;
            }
        }
        stats.pr_rec_n = (r_total > 0) as u32;
    }
    if r_total == 0 {
        stats.no_relevant = 1;
        return stats;
    }
    // Positions (1-based) of relevant items, and how many relevant items rank at or above them.
    s.pos.clear();
    let mut ap = 0.0;
    for &(d, before, rel_before) in &s.hits {
        let pos = s.count[d as usize] + before + 1;
        let hits = s.rel_count[d as usize] + rel_before + 1;
        ap += hits as f64 / pos as f64;
        s.pos.push(pos);
    }
    stats.ap = ap / r_total as f64;
    if let Some(k) = topk {
        // Relevant items sorted by position: hit number j has position pos_sorted[j-1].
        s.pos.sort_unstable();
        let in_top = s.pos.partition_point(|&p| p as usize <= k);
        stats.prec_k = in_top as f64 / k as f64;
        stats.rec_k = in_top as f64 / r_total as f64;
        // Mean precision at the first `m` relevant hits (positions sorted ascending).
        let mean_precision = |m: usize| {
            if m == 0 {
                return 0.0;
            }
            let sum: f64 = s.pos[..m]
                .iter()
                .enumerate()
                .map(|(j, &p)| (j + 1) as f64 / p as f64)
                .sum();
            sum / m as f64
        };
        stats.ap_k = match mode {
            TopKMode::Positions => mean_precision(in_top),
            TopKMode::RelevantHits => mean_precision(k.min(r_total)),
        };
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ranking::hamming_rank;

    /// Straightforward reference: materialise the ranking, walk it.
    fn naive_ap(
        q: &PackedCodes,
        db: &PackedCodes,
        ql: &[i64],
        dl: &[i64],
        qi: usize,
        k: Option<usize>,
    ) -> f64 {
        let order = hamming_rank(q, qi, db);
        let limit = k.unwrap_or(order.len());
        let (mut hits, mut sum) = (0, 0.0);
        for (p, &i) in order.iter().take(limit).enumerate() {
            if dl[i as usize] == ql[qi] {
                hits += 1;
                sum += hits as f64 / (p + 1) as f64;
            }
        }
        if hits == 0 { 0.0 } else { sum / hits as f64 }
    }

    fn toy(bits: usize, n: usize, seed: u64) -> (PackedCodes, Vec<i64>) {
        let mut s = seed;
        let mut vals = Vec::with_capacity(n * bits);
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            labels.push(((s >> 33) % 4) as i64);
            for _ in 0..bits {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                vals.push(if (s >> 40) & 1 == 1 { 1.0f32 } else { -1.0 });
            }
        }
        (PackedCodes::from_values(&vals, bits).unwrap(), labels)
    }

    #[test]
    fn matches_naive_ranking_with_heavy_ties() {
        for bits in [4usize, 12, 70] {
            let (q, ql) = toy(bits, 23, 1);
            let (db, dl) = toy(bits, 151, 2);
            let m = evaluate_hashing(
                &q,
                &db,
                &Labels::single(ql.clone()),
                &Labels::single(dl.clone()),
                &HashingEvalConfig {
                    topk: Some(10),
                    ..Default::default()
                },
            )
            .unwrap();
            let expect: f64 = (0..q.len())
                .map(|i| naive_ap(&q, &db, &ql, &dl, i, None))
                .sum::<f64>()
                / q.len() as f64;
            let expect_k: f64 = (0..q.len())
                .map(|i| naive_ap(&q, &db, &ql, &dl, i, Some(10)))
                .sum::<f64>()
                / q.len() as f64;
            assert!(
                (m.map - expect).abs() < 1e-12,
                "{bits}: {} vs {expect}",
                m.map
            );
            assert!((m.map_at_k.unwrap() - expect_k).abs() < 1e-12);
        }
    }

    #[test]
    fn every_kernel_builds_the_same_histogram() {
        for bits in [12usize, 64, 130] {
            let (q, _) = toy(bits, 1, 7);
            let (db, _) = toy(bits, 203, 8);
            let stride = bits + 1;
            let mut naive = vec![0u32; stride];
            for i in 0..db.len() {
                naive[hamming(q.code(0), db.code(i)) as usize] += 1;
            }
            for k in crate::hamming::Kernel::available() {
                let mut hist = vec![0u32; LANES * stride];
                histogram(k, q.code(0), db.as_words(), &mut hist, stride);
                let merged: Vec<u32> = (0..stride).map(|d| counted(&hist, d, stride)).collect();
                assert_eq!(merged, naive, "kernel {k:?}, {bits} bits");
            }
        }
    }

    #[test]
    fn query_without_relevant_items_counts_as_zero() {
        let q = PackedCodes::from_values(&[1.0f32, 1.0, -1.0, -1.0], 2).unwrap();
        let db = PackedCodes::from_values(&[1.0f32, 1.0, -1.0, -1.0, 1.0, -1.0], 2).unwrap();
        let m = evaluate_hashing(
            &q,
            &db,
            &Labels::single(vec![0, 9]),
            &Labels::single(vec![0, 1, 0]),
            &HashingEvalConfig::default(),
        )
        .unwrap();
        // Query 0: ranking [0 (d0, rel), 2 (d1, rel), 1 (d2)] → AP 1. Query 1: no relevant.
        assert_eq!(m.no_relevant, 1);
        assert!((m.map - 0.5).abs() < 1e-12);
        // Radius 2 retrieves everything for query 0 (2/3 relevant); query 1 retrieves all, 0.
        assert!((m.precision_at_radius - (2.0 / 3.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn hand_computed_ties_and_topk_modes() {
        // 1-bit codes: query 1; db [0,1,1,0,1] → distances [1,0,0,1,0];
        // ranking [1,2,4,0,3]; relevant {0,2} → positions 4 and 2.
        let q = PackedCodes::from_values(&[1u8], 1).unwrap();
        let db = PackedCodes::from_values(&[0u8, 1, 1, 0, 1], 1).unwrap();
        let ql = Labels::single(vec![7]);
        let dl = Labels::single(vec![7, 3, 7, 3, 3]);
        let cfg = |k, mode| HashingEvalConfig {
            topk: Some(k),
            topk_mode: mode,
            radius: 0,
            pr_curve: true,
        };
        let m = evaluate_hashing(&q, &db, &ql, &dl, &cfg(3, TopKMode::Positions)).unwrap();
        assert!((m.map - (1.0 / 2.0 + 2.0 / 4.0) / 2.0).abs() < 1e-12);
        assert!((m.map_at_k.unwrap() - 0.5).abs() < 1e-12); // only pos 2 in top 3: 1/2
        assert!((m.precision_at_k.unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert!((m.recall_at_k.unwrap() - 0.5).abs() < 1e-12);
        assert!((m.precision_at_radius - 1.0 / 3.0).abs() < 1e-12);
        let pr = m.pr_curve.unwrap();
        assert_eq!(pr.len(), 2);
        assert!((pr[1].precision - 0.4).abs() < 1e-12 && (pr[1].recall - 1.0).abs() < 1e-12);
        let m = evaluate_hashing(&q, &db, &ql, &dl, &cfg(1, TopKMode::RelevantHits)).unwrap();
        assert!((m.map_at_k.unwrap() - 0.5).abs() < 1e-12); // first hit at pos 2
        let m = evaluate_hashing(&q, &db, &ql, &dl, &cfg(5, TopKMode::RelevantHits)).unwrap();
        assert!((m.map_at_k.unwrap() - m.map).abs() < 1e-12);
    }

    #[test]
    fn multi_label_relevance_is_any_shared_label() {
        let q = PackedCodes::from_values(&[1u8, 1], 2).unwrap();
        let db = PackedCodes::from_values(&[1u8, 1, 0, 0, 1, 0], 2).unwrap();
        let ql = Labels::multi_hot(&[1u8, 0, 1], 3).unwrap();
        let dl = Labels::multi_hot(&[0u8, 1, 0, 0, 0, 1, 1, 1, 0], 3).unwrap();
        // distances [0, 2, 1]; ranking [0, 2, 1]; relevant: item 1 (label 2), item 2 (label 0).
        let m = evaluate_hashing(&q, &db, &ql, &dl, &HashingEvalConfig::default()).unwrap();
        assert!((m.map - (1.0 / 2.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn shape_errors_are_reported() {
        let q = PackedCodes::from_values(&[1u8, 1], 2).unwrap();
        let db = PackedCodes::from_values(&[1u8, 1, 0], 3).unwrap();
        let l = Labels::single(vec![0]);
        let e = evaluate_hashing(&q, &db, &l, &l, &HashingEvalConfig::default()).unwrap_err();
        assert!(e.to_string().contains("bits"), "{e}");
        let db = PackedCodes::from_values(&[1u8, 1, 0, 0], 2).unwrap();
        let e = evaluate_hashing(&q, &db, &l, &l, &HashingEvalConfig::default()).unwrap_err();
        assert!(e.to_string().contains("database labels"), "{e}");
    }
}
