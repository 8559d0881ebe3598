//! `HammingIndex`: exhaustive exact top-k search over packed codes, with a file format.
//!
//! Search keeps the k best (distance, index) pairs in distance buckets. Because the database is
//! scanned in index order, a new item never beats an earlier item at the same distance, so the
//! buckets stay sorted by index for free and the result honours the (distance, index) tie rule
//! with no sort. Once k items are held, only items strictly closer than the current k-th
//! distance can enter; the scan computes distances a block at a time with the run-time-chosen
//! popcount kernel and skips whole 16-code chunks whose minimum is not below that threshold,
//! so the common case is xor + popcount + a vector min per code.
//!
//! File layout (little endian): magic `RELATAHX`, format version u32, bits u32, count u64,
//! `count × words` u64 words, then a CRC-32 of everything before it. Loading checks every field
//! and the checksum: a truncated or corrupted file is an error, never a panic or a wrong answer.

use std::fs;
use std::io::Write;
use std::path::Path;

use rayon::prelude::*;

use crate::codes::{MAX_BITS, PackedCodes};
use crate::error::{MetricsError, Result, shape};
use crate::hamming::{kernel, multiversion};

const MAGIC: &[u8; 8] = b"RELATAHX";
const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 4 + 8;
/// Codes per database block in batched search: 4096 64-bit codes (32 KiB) stay in L1 while
/// a group of queries scans them.
const BLOCK: usize = 4096;
const CHUNK: usize = 16;
/// Queries sharing one pass over the database in [`HammingIndex::search_batch`].
pub const QUERY_GROUP: usize = 16;

/// Result of one search: database ids and their distances, best first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Neighbours {
    /// Database indices, ordered by (distance, index).
    pub ids: Vec<u32>,
    /// Hamming distances, aligned with `ids`.
    pub distances: Vec<u32>,
}

/// An exhaustive Hamming index over packed codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HammingIndex {
    codes: PackedCodes,
}

/// Bucketed top-k state for one query.
struct TopK {
    k: usize,
    held: usize,
    /// Items at distance d are `buckets[d]`, in index order.
    buckets: Vec<Vec<u32>>,
    /// Largest distance with a non-empty bucket (meaningful when `held > 0`).
    worst: usize,
}

impl TopK {
    fn new(k: usize, bits: usize) -> Self {
        Self {
            k,
            held: 0,
            buckets: vec![Vec::new(); bits + 1],
            worst: 0,
        }
    }

    /// Items must have distance strictly below this to enter (u32::MAX while not full).
    #[inline]
    fn threshold(&self) -> u32 {
        if self.held < self.k {
            u32::MAX
        } else {
            self.worst as u32
        }
    }

    #[inline]
    fn offer(&mut self, id: u32, d: usize) {
        if self.held < self.k {
            self.buckets[d].push(id);
            self.held += 1;
            self.worst = self.worst.max(d);
        } else if d < self.worst {
            self.buckets[d].push(id);
            // Drop the last (highest-index) item of the worst bucket.
            self.buckets[self.worst].pop();
            while self.buckets[self.worst].is_empty() && self.worst > 0 {
                self.worst -= 1;
            }
        }
    }

    fn write_neighbours(&self, out: &mut Neighbours) {
        out.ids.clear();
        out.distances.clear();
        for (d, b) in self.buckets.iter().enumerate() {
            out.ids.extend_from_slice(b);
            out.distances.extend(std::iter::repeat_n(d as u32, b.len()));
        }
    }
}

/// Distances of one 16-code chunk of multi-word codes, computed in registers. They stay
/// 64-bit, like the one-word path's vectorised popcount lanes.
#[inline(always)]
fn chunk_distances(query: &[u64], chunk: &[u64]) -> [u64; CHUNK] {
    let mut d = [0u64; CHUNK];
    for (o, code) in d.iter_mut().zip(chunk.chunks_exact(query.len())) {
        *o = crate::hamming::hamming(query, code) as u64;
    }
    d
}

/// One vector compare of a chunk's distances against the current k-th distance; per-code work
/// only when some code of the chunk can enter the top-k.
#[inline(always)]
fn consider_chunk(top: &mut TopK, d: &[u64; CHUNK], id: usize) {
    let threshold = top.threshold() as u64;
    if d.iter().fold(false, |any, &x| any | (x < threshold)) {
        offer_chunk(top, d, id);
    }
}

/// The search loop: distances of 16 codes at a time, then [`consider_chunk`].
#[inline(always)]
fn scan_generic(query: &[u64], codes: &[u64], base: usize, top: &mut TopK) {
    let mut id = base;
    let tail = if let [q] = query {
        // 64-bit codes: fixed-size chunks so the loop is fully unrolled and vectorised.
        let (chunks, rest) = codes.as_chunks::<CHUNK>();
        for chunk in chunks {
            let d: [u64; CHUNK] = std::array::from_fn(|l| (q ^ chunk[l]).count_ones() as u64);
            consider_chunk(top, &d, id);
            id += CHUNK;
        }
        rest
    } else {
        let mut chunks = codes.chunks_exact(CHUNK * query.len());
        for chunk in &mut chunks {
            consider_chunk(top, &chunk_distances(query, chunk), id);
            id += CHUNK;
        }
        chunks.remainder()
    };
    for code in tail.chunks_exact(query.len()) {
        let d = crate::hamming::hamming(query, code);
        if d < top.threshold() {
            top.offer(id as u32, d as usize);
        }
        id += 1;
    }
}

/// The rare path: some code of the chunk beats the current k-th distance.
#[cold]
#[inline(never)]
fn offer_chunk(top: &mut TopK, d: &[u64; CHUNK], id: usize) {
    for (j, &dj) in d.iter().enumerate() {
        if dj < top.threshold() as u64 {
            top.offer((id + j) as u32, dj as usize);
        }
    }
}

multiversion! {
    fn scan_dispatch(query: &[u64], codes: &[u64], base: usize, top: &mut TopK) = scan_generic;
}

impl HammingIndex {
    /// Builds an index over `codes` (which it owns; ids are positions in `codes`).
    pub fn new(codes: PackedCodes) -> Result<Self> {
        if codes.len() > u32::MAX as usize {
            return Err(shape("a HammingIndex holds at most 2^32 - 1 codes"));
        }
        Ok(Self { codes })
    }

    /// The indexed codes.
    pub fn codes(&self) -> &PackedCodes {
        &self.codes
    }

    /// Number of indexed codes.
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// Code length in bits.
    pub fn bits(&self) -> usize {
        self.codes.bits()
    }

    fn check_query(&self, query: &[u64]) -> Result<()> {
        if query.len() != self.codes.words_per_code() {
            return Err(shape(format!(
                "query has {} words but the index holds {}-bit codes ({} words)",
                query.len(),
                self.bits(),
                self.codes.words_per_code()
            )));
        }
        Ok(())
    }

    /// Scans database codes `[start, end)` for one query, updating its top-k state.
    #[inline]
    fn scan_block(&self, query: &[u64], start: usize, end: usize, top: &mut TopK) {
        let words = self.codes.words_per_code();
        let codes = &self.codes.as_words()[start * words..end * words];
        scan_dispatch(kernel(), query, codes, start, top);
    }

    fn search_into(&self, query: &[u64], top: &mut TopK, out: &mut Neighbours) {
        let n = self.codes.len();
        for start in (0..n).step_by(BLOCK) {
            self.scan_block(query, start, (start + BLOCK).min(n), top);
        }
        top.write_neighbours(out);
    }

    /// The `k` nearest codes to `query` (packed, same length), ordered by (distance, index).
    pub fn search(&self, query: &[u64], k: usize) -> Result<Neighbours> {
        self.check_query(query)?;
        let mut top = TopK::new(k.min(self.len()), self.bits());
        let mut out = Neighbours::default();
        if top.k > 0 {
            self.search_into(query, &mut top, &mut out);
        }
        Ok(out)
    }

    /// [`search`](Self::search) for every code in `queries`, in parallel (rayon).
    ///
    /// Queries are processed in groups of [`QUERY_GROUP`]: each database block is loaded once
    /// per group and scanned for every query of the group while it sits in L1, so memory
    /// traffic is amortised and the cost per code approaches the popcount floor.
    pub fn search_batch(&self, queries: &PackedCodes, k: usize) -> Result<Vec<Neighbours>> {
        if queries.bits() != self.bits() {
            return Err(shape(format!(
                "queries have {} bits but the index holds {}-bit codes",
                queries.bits(),
                self.bits()
            )));
        }
        let k = k.min(self.len());
        let bits = self.bits();
        let n = self.len();
        let ids: Vec<usize> = (0..queries.len()).collect();
        let groups: Vec<Vec<Neighbours>> = ids
            .par_chunks(QUERY_GROUP)
            .map(|group| {
                let mut tops: Vec<TopK> = group.iter().map(|_| TopK::new(k, bits)).collect();
                if k > 0 {
                    for start in (0..n).step_by(BLOCK) {
                        let end = (start + BLOCK).min(n);
                        for (&qi, top) in group.iter().zip(&mut tops) {
                            self.scan_block(queries.code(qi), start, end, top);
                        }
                    }
                }
                tops.iter()
                    .map(|top| {
                        let mut out = Neighbours::default();
                        top.write_neighbours(&mut out);
                        out
                    })
                    .collect()
            })
            .collect();
        Ok(groups.into_iter().flatten().collect())
    }

    /// Serialises the index (header, codes, checksum).
    pub fn to_bytes(&self) -> Vec<u8> {
        let words = self.codes.as_words();
        let mut buf = Vec::with_capacity(HEADER + words.len() * 8 + 4);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&VERSION.to_le_bytes());
        buf.extend_from_slice(&(self.bits() as u32).to_le_bytes());
        buf.extend_from_slice(&(self.len() as u64).to_le_bytes());
        for w in words {
            buf.extend_from_slice(&w.to_le_bytes());
        }
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        buf
    }

    /// Parses [`to_bytes`](Self::to_bytes) output; `origin` names the source in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self> {
        let corrupt = |reason: String| MetricsError::Corrupt {
            path: origin.to_string(),
            reason,
        };
        if bytes.len() < HEADER + 4 {
            return Err(corrupt(format!(
                "file is {} bytes, shorter than a HammingIndex header; it is truncated or not \
                 a relata Hamming index",
                bytes.len()
            )));
        }
        if &bytes[..8] != MAGIC {
            return Err(corrupt(
                "not a relata Hamming index (bad magic); write one with HammingIndex::save".into(),
            ));
        }
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap_or([0; 4]));
        let version = u32_at(8);
        if version != VERSION {
            return Err(corrupt(format!(
                "index format version {version}, this build reads version {VERSION}"
            )));
        }
        let bits = u32_at(12) as usize;
        if bits == 0 || bits > MAX_BITS {
            return Err(corrupt(format!("header says {bits}-bit codes")));
        }
        let count = u64::from_le_bytes(bytes[16..24].try_into().unwrap_or([0; 8]));
        let words = PackedCodes::words_for(bits);
        let expected = (count as u128) * (words as u128) * 8 + (HEADER as u128) + 4;
        if expected != bytes.len() as u128 {
            return Err(corrupt(format!(
                "header says {count} codes of {bits} bits ({expected} bytes) but the file has \
                 {} bytes: truncated or corrupted",
                bytes.len()
            )));
        }
        let body = bytes.len() - 4;
        let stored = u32_at(body);
        let actual = crc32fast::hash(&bytes[..body]);
        if stored != actual {
            return Err(corrupt(format!(
                "checksum mismatch (stored {stored:08x}, computed {actual:08x}): the file is \
                 corrupted; rebuild the index"
            )));
        }
        let data: Vec<u64> = bytes[HEADER..body]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        let codes = PackedCodes::from_words(bits, data).map_err(|e| corrupt(e.to_string()))?;
        Self::new(codes)
    }

    /// Writes the index to `path` atomically (temporary file, then rename).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let io = |source| MetricsError::Io {
            path: path.display().to_string(),
            source,
        };
        let tmp = path.with_extension("tmp");
        {
            let mut f = fs::File::create(&tmp).map_err(io)?;
            f.write_all(&self.to_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        fs::rename(&tmp, path).map_err(io)
    }

    /// Reads an index written by [`save`](Self::save).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = fs::read(path).map_err(|source| MetricsError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ranking::hamming_rank;

    fn random_codes(n: usize, bits: usize, seed: u64) -> PackedCodes {
        let mut s = seed;
        let vals: Vec<u8> = (0..n * bits)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 41) & 1) as u8
            })
            .collect();
        PackedCodes::from_values(&vals, bits).unwrap()
    }

    #[test]
    fn search_equals_prefix_of_full_ranking() {
        for bits in [12usize, 64, 100] {
            let db = random_codes(9000, bits, 3);
            // More queries than one batch group, more codes than one block, a ragged tail.
            let q = random_codes(QUERY_GROUP + 5, bits, 4);
            let index = HammingIndex::new(db.clone()).unwrap();
            let batch = index.search_batch(&q, 57).unwrap();
            assert_eq!(batch.len(), q.len());
            for (qi, batched) in batch.iter().enumerate() {
                let order = hamming_rank(&q, qi, &db);
                let single = index.search(q.code(qi), 57).unwrap();
                assert_eq!(&single, batched);
                assert_eq!(single.ids, order[..57].to_vec(), "{bits} bits, query {qi}");
                for (&id, &d) in single.ids.iter().zip(&single.distances) {
                    assert_eq!(d, crate::hamming::hamming(q.code(qi), db.code(id as usize)));
                }
            }
        }
    }

    #[test]
    fn every_kernel_scans_alike() {
        for bits in [64usize, 100] {
            let db = random_codes(1000, bits, 5);
            let q = random_codes(1, bits, 6);
            let order = hamming_rank(&q, 0, &db);
            for k in crate::hamming::Kernel::available() {
                let mut top = TopK::new(33, bits);
                scan_dispatch(k, q.code(0), db.as_words(), 0, &mut top);
                let mut out = Neighbours::default();
                top.write_neighbours(&mut out);
                assert_eq!(out.ids, order[..33].to_vec(), "kernel {k:?}, {bits} bits");
            }
        }
    }

    #[test]
    fn k_larger_than_database_and_zero() {
        let db = random_codes(5, 12, 1);
        let index = HammingIndex::new(db.clone()).unwrap();
        assert_eq!(index.search(db.code(0), 50).unwrap().ids.len(), 5);
        assert!(index.search(db.code(0), 0).unwrap().ids.is_empty());
        assert!(index.search(&[0, 0], 1).is_err());
    }

    #[test]
    fn save_load_round_trip_and_corruption() {
        let dir = std::env::temp_dir().join(format!("relata-index-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("codes.rhx");
        let index = HammingIndex::new(random_codes(33, 70, 9)).unwrap();
        index.save(&path).unwrap();
        assert_eq!(HammingIndex::load(&path).unwrap(), index);

        let bytes = index.to_bytes();
        // Truncated anywhere: an error, never a panic.
        for cut in [0, 5, HEADER, HEADER + 3, bytes.len() - 1] {
            let e = HammingIndex::from_bytes(&bytes[..cut], "x.rhx").unwrap_err();
            assert!(e.to_string().starts_with("x.rhx: "), "{e}");
        }
        // Any flipped byte is caught (header fields or checksum).
        for pos in [0, 9, 13, 17, HEADER + 10, bytes.len() - 2] {
            let mut bad = bytes.clone();
            bad[pos] ^= 0x40;
            assert!(
                HammingIndex::from_bytes(&bad, "x.rhx").is_err(),
                "byte {pos}"
            );
        }
        let e = HammingIndex::load(dir.join("missing.rhx")).unwrap_err();
        assert!(e.to_string().contains("missing.rhx"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
