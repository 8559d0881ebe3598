//! Shared input generators for relata's benchmarks (deterministic, seeded).

use relata_metrics::PackedCodes;

/// `n` pseudo-random bytes from `seed` (xorshift64).
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

/// `n` codes of `bits` bits drawn around one random centre per class (each bit flipped with
/// probability 1/4), with their class labels: retrieval-shaped data, not uniform noise.
pub fn structured_codes(
    n: usize,
    classes: usize,
    bits: usize,
    seed: u64,
) -> (PackedCodes, Vec<i64>) {
    let centres = random_bytes(classes * bits, 1000 + seed);
    let noise = random_bytes(n * (bits + 1), seed);
    let mut labels = Vec::with_capacity(n);
    let mut values = Vec::with_capacity(n * bits);
    for i in 0..n {
        let c = noise[i * (bits + 1)] as usize * 7919 % classes;
        labels.push(c as i64);
        for j in 0..bits {
            let flip = noise[i * (bits + 1) + 1 + j] < 64;
            let bit = (centres[c * bits + j] & 1 == 1) ^ flip;
            values.push(bit as u8);
        }
    }
    (
        PackedCodes::from_values(&values, bits).expect("valid sizes"),
        labels,
    )
}
