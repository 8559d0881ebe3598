//! Hamming distance by popcount, with the instruction set picked at run time.
//!
//! The kernel is one generic loop (`xor` then `count_ones` per word) compiled several times
//! under different `#[target_feature]`s: plain x86-64 has no POPCNT instruction, so without
//! run-time dispatch `count_ones` becomes a ~15-instruction bit trick unless the user passes
//! `-C target-cpu`. With POPCNT it is one instruction; with AVX2 LLVM vectorises the loop
//! (nibble-lookup popcount); with AVX-512 VPOPCNTQ it is one vector instruction per 8 codes.
//! The choice is made once per process ([`kernel`]) and can be forced through
//! `RELATA_POPCOUNT=scalar|popcnt|avx2|avx512` for benchmarking and tests.

use std::sync::OnceLock;

use crate::codes::PackedCodes;

/// Which compiled variant of the distance loop runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Portable Rust (`count_ones` without POPCNT).
    Scalar,
    /// x86-64 POPCNT.
    Popcnt,
    /// x86-64 AVX2 + POPCNT (vectorised popcount).
    Avx2,
    /// x86-64 AVX-512F + VPOPCNTQ.
    Avx512,
}

impl Kernel {
    /// Name as accepted by `RELATA_POPCOUNT`.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Popcnt => "popcnt",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
        }
    }

    /// Whether this CPU can run the kernel.
    pub fn supported(self) -> bool {
        match self {
            Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Popcnt => std::arch::is_x86_feature_detected!("popcnt"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("popcnt")
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every kernel this CPU supports, slowest first.
    pub fn available() -> Vec<Kernel> {
        [Kernel::Scalar, Kernel::Popcnt, Kernel::Avx2, Kernel::Avx512]
            .into_iter()
            .filter(|k| k.supported())
            .collect()
    }
}

/// The kernel used by this process: `RELATA_POPCOUNT` if set and supported, else the fastest
/// the CPU supports.
pub fn kernel() -> Kernel {
    static CHOSEN: OnceLock<Kernel> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let available = Kernel::available();
        if let Ok(name) = std::env::var("RELATA_POPCOUNT")
            && let Some(k) = available.iter().find(|k| k.name() == name.trim())
        {
            return *k;
        }
        *available.last().unwrap_or(&Kernel::Scalar)
    })
}

#[inline(always)]
fn distances_generic(query: &[u64], db: &[u64], out: &mut [u16]) {
    let words = query.len();
    if words == 1 {
        let q = query[0];
        for (o, &d) in out.iter_mut().zip(db) {
            *o = (q ^ d).count_ones() as u16;
        }
    } else {
        for (o, code) in out.iter_mut().zip(db.chunks_exact(words)) {
            let mut s = 0u32;
            for (a, b) in query.iter().zip(code) {
                s += (a ^ b).count_ones();
            }
            *o = s as u16;
        }
    }
}

/// Defines `$name(kernel, args..)`, which runs `$generic(args..)` compiled for the given
/// [`Kernel`]'s instruction set. `$generic` must be `#[inline(always)]` so that each variant
/// gets its own copy of the loop, vectorised and scheduled for that instruction set.
macro_rules! multiversion {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? = $generic:path;
    ) => {
        $(#[$meta])*
        $vis fn $name(kernel: $crate::hamming::Kernel, $($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "popcnt")]
            fn popcnt($($arg: $ty),*) $(-> $ret)? { $generic($($arg),*) }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,popcnt")]
            fn avx2($($arg: $ty),*) $(-> $ret)? { $generic($($arg),*) }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512vpopcntdq,popcnt")]
            fn avx512($($arg: $ty),*) $(-> $ret)? { $generic($($arg),*) }
            assert!(kernel.supported(), "popcount kernel {kernel:?} is not supported by this CPU");
            match kernel {
                $crate::hamming::Kernel::Scalar => $generic($($arg),*),
                // SAFETY: `supported()` confirmed the CPU has the arm's target features.
                #[cfg(target_arch = "x86_64")]
                $crate::hamming::Kernel::Popcnt => unsafe { popcnt($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                $crate::hamming::Kernel::Avx2 => unsafe { avx2($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                $crate::hamming::Kernel::Avx512 => unsafe { avx512($($arg),*) },
                #[cfg(not(target_arch = "x86_64"))]
                _ => $generic($($arg),*),
            }
        }
    };
}
pub(crate) use multiversion;

multiversion! {
    fn distances_dispatch(query: &[u64], db: &[u64], out: &mut [u16]) = distances_generic;
}

/// Distances from `query` (one packed code) to the packed codes in `db` (row-major words, a
/// whole number of codes), written to `out[..db.len() / query.len()]`, with a given kernel.
///
/// # Panics
/// If `k` is not supported by this CPU or `out` is too short (internal callers guarantee both).
pub fn distances_with(k: Kernel, query: &[u64], db: &[u64], out: &mut [u16]) {
    let n = db.len() / query.len();
    distances_dispatch(k, query, db, &mut out[..n])
}

/// [`distances_with`] on the process-wide [`kernel`].
#[inline]
pub fn distances(query: &[u64], db: &[u64], out: &mut [u16]) {
    distances_with(kernel(), query, db, out)
}

/// Hamming distance between two packed codes.
#[inline]
pub fn hamming(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// Distances from code `qi` of `queries` to every code in `db`.
pub fn distances_to_all(queries: &PackedCodes, qi: usize, db: &PackedCodes, out: &mut [u16]) {
    distances(queries.code(qi), db.as_words(), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_agrees_with_naive() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 7;
            state ^= state >> 9;
            state
        };
        for bits in [1usize, 12, 63, 64, 65, 130, 1024] {
            let words = PackedCodes::words_for(bits);
            let mask_last = if bits % 64 == 0 {
                !0
            } else {
                (1u64 << (bits % 64)) - 1
            };
            let mut data: Vec<u64> = (0..37 * words).map(|_| next()).collect();
            for c in data.chunks_exact_mut(words) {
                c[words - 1] &= mask_last;
            }
            let codes = PackedCodes::from_words(bits, data).unwrap();
            let naive: Vec<u16> = (0..codes.len())
                .map(|i| {
                    (0..bits)
                        .filter(|&j| codes.bit(0, j) != codes.bit(i, j))
                        .count() as u16
                })
                .collect();
            for k in Kernel::available() {
                let mut out = vec![0u16; codes.len()];
                distances_with(k, codes.code(0), codes.as_words(), &mut out);
                assert_eq!(out, naive, "kernel {k:?}, {bits} bits");
            }
        }
    }
}
