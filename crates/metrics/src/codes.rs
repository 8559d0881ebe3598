//! Binary codes packed into `u64` words (docs/design.md, Retrieval).
//!
//! Bit `j` of a code lives in word `j / 64` at bit position `j % 64`; bits past `bits` in the
//! last word are always zero, so Hamming distance is a plain popcount of the XOR of all words,
//! for any length 1..=1024 (not only multiples of 64).

use crate::error::{Result, invalid, shape};

/// The longest code supported (distances then fit in `u16`, rankings bucket over 0..=bits).
pub const MAX_BITS: usize = 1024;

/// `n` binary codes of `bits` bits each, packed row-major into `u64` words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedCodes {
    bits: usize,
    words: usize,
    data: Vec<u64>,
}

impl PackedCodes {
    /// Number of `u64` words needed for one code of `bits` bits.
    pub fn words_for(bits: usize) -> usize {
        bits.div_ceil(64)
    }

    fn check_bits(bits: usize) -> Result<()> {
        if bits == 0 || bits > MAX_BITS {
            return Err(invalid(format!(
                "code length must be 1..={MAX_BITS} bits, got {bits}"
            )));
        }
        Ok(())
    }

    /// Wraps already packed words (`n × words_for(bits)`, unused high bits zero).
    pub fn from_words(bits: usize, data: Vec<u64>) -> Result<Self> {
        Self::check_bits(bits)?;
        let words = Self::words_for(bits);
        if !data.len().is_multiple_of(words) {
            return Err(shape(format!(
                "{} words is not a whole number of {bits}-bit codes ({words} words each)",
                data.len()
            )));
        }
        let tail = bits % 64;
        if tail != 0 {
            let mask = !0u64 << tail;
            if data.chunks_exact(words).any(|c| c[words - 1] & mask != 0) {
                return Err(invalid(format!(
                    "packed {bits}-bit codes have bits set past bit {bits}"
                )));
            }
        }
        Ok(Self { bits, words, data })
    }

    /// Packs a row-major `n × bits` matrix of code values. A value > 0 is bit 1; a value
    /// ≤ 0 is bit 0, so both {−1, +1} and {0, 1} codes work. NaN is an error.
    pub fn from_values<T: Copy + Into<f64>>(values: &[T], bits: usize) -> Result<Self> {
        Self::check_bits(bits)?;
        if !values.len().is_multiple_of(bits) {
            return Err(shape(format!(
                "{} values is not a whole number of {bits}-bit codes",
                values.len()
            )));
        }
        let words = Self::words_for(bits);
        let n = values.len() / bits;
        let mut data = vec![0u64; n * words];
        for (row, code) in values.chunks_exact(bits).zip(data.chunks_exact_mut(words)) {
            for (j, &v) in row.iter().enumerate() {
                let v: f64 = v.into();
                if v.is_nan() {
                    return Err(invalid("code value is NaN"));
                }
                if v > 0.0 {
                    code[j / 64] |= 1u64 << (j % 64);
                }
            }
        }
        Ok(Self { bits, words, data })
    }

    /// Unpacks NumPy `np.packbits(codes, axis=1)` output (`n × ceil(bits/8)` bytes, most
    /// significant bit first, the default `bitorder='big'`).
    pub fn from_packbits(bytes: &[u8], n: usize, bits: usize) -> Result<Self> {
        Self::check_bits(bits)?;
        let row = bits.div_ceil(8);
        if bytes.len() != n * row {
            return Err(shape(format!(
                "packbits input has {} bytes, expected {n} × {row} for {bits}-bit codes",
                bytes.len()
            )));
        }
        let words = Self::words_for(bits);
        let mut data = vec![0u64; n * words];
        for (src, code) in bytes.chunks_exact(row).zip(data.chunks_exact_mut(words)) {
            for j in 0..bits {
                if src[j / 8] & (0x80 >> (j % 8)) != 0 {
                    code[j / 64] |= 1u64 << (j % 64);
                }
            }
        }
        Ok(Self { bits, words, data })
    }

    /// Code length in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// `u64` words per code.
    pub fn words_per_code(&self) -> usize {
        self.words
    }

    /// Number of codes.
    pub fn len(&self) -> usize {
        self.data.len() / self.words
    }

    /// Whether there are no codes.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The packed words of code `i`.
    pub fn code(&self, i: usize) -> &[u64] {
        &self.data[i * self.words..(i + 1) * self.words]
    }

    /// All packed words, row-major.
    pub fn as_words(&self) -> &[u64] {
        &self.data
    }

    /// Bit `j` of code `i` as 0/1.
    pub fn bit(&self, i: usize, j: usize) -> u8 {
        ((self.code(i)[j / 64] >> (j % 64)) & 1) as u8
    }

    /// Appends the codes of `other` (same length in bits).
    pub fn extend(&mut self, other: &PackedCodes) -> Result<()> {
        if other.bits != self.bits {
            return Err(shape(format!(
                "cannot append {}-bit codes to {}-bit codes",
                other.bits, self.bits
            )));
        }
        self.data.extend_from_slice(&other.data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_signs_and_binary_alike() {
        let signs = [1.0f32, -1.0, -1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, 1.0];
        let binary = [1u8, 0, 0, 1, 1, 1, 0, 0, 0, 1];
        let a = PackedCodes::from_values(&signs, 5).unwrap();
        let b = PackedCodes::from_values(&binary, 5).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 2);
        assert_eq!(a.code(0), &[0b11001]);
        assert_eq!(a.code(1), &[0b10001]);
    }

    #[test]
    fn odd_lengths_use_several_words() {
        let bits = 130;
        let mut v = vec![0.0f32; bits];
        v[0] = 1.0;
        v[64] = 1.0;
        v[129] = 1.0;
        let c = PackedCodes::from_values(&v, bits).unwrap();
        assert_eq!(c.words_per_code(), 3);
        assert_eq!(c.code(0), &[1, 1, 2]);
        assert_eq!(c.bit(0, 129), 1);
        assert_eq!(c.bit(0, 128), 0);
    }

    #[test]
    fn packbits_matches_numpy_bit_order() {
        // np.packbits([[1,0,0,0,0,0,0,1, 1,1,0]]) == [[0b1000_0001, 0b1100_0000]]
        let c = PackedCodes::from_packbits(&[0b1000_0001, 0b1100_0000], 1, 11).unwrap();
        let expect = PackedCodes::from_values(&[1u8, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0], 11).unwrap();
        assert_eq!(c, expect);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(PackedCodes::from_values(&[1.0f32; 7], 2).is_err());
        assert!(PackedCodes::from_values(&[f32::NAN, 1.0], 2).is_err());
        assert!(PackedCodes::from_values(&[1.0f32; 4], 0).is_err());
        assert!(PackedCodes::from_words(3, vec![0b1000]).is_err());
        assert!(PackedCodes::from_words(1025, vec![0; 17]).is_err());
    }
}
