//! Which instruction-set paths the kernels take.
//!
//! The 3×3 convolutions have AVX-512 kernels (`kernels::direct`, `kernels::direct::lanes`);
//! everything else, and those layers on a CPU without AVX-512F, runs the portable paths —
//! im2col + `gemm` (which picks AVX2/FMA or scalar code itself) and the per-tap products, plain
//! Rust the compiler vectorises. Both compute the same sums to within f32 rounding; the tests
//! run each path against burn's ops.
//!
//! The choice is made when an op is called, on the calling thread (a backward pass: on the
//! thread that calls `backward`), so [`portable`] can force the portable paths for one piece of
//! work while other threads keep theirs.

use std::cell::Cell;
use std::sync::OnceLock;

/// Environment variable that switches the AVX-512 kernels off for the whole process
/// (`RELATA_FLEX_AVX512=0`): the run then takes the portable paths, as on a CPU without
/// AVX-512F — to compare the two, or to rule a kernel out when a result looks wrong.
pub const AVX512_ENV: &str = "RELATA_FLEX_AVX512";

thread_local! {
    static FORCED_PORTABLE: Cell<bool> = const { Cell::new(false) };
}

/// Are the AVX-512 kernels compiled in (x86-64 with the `x86-kernels` feature) and does this
/// CPU have AVX-512F?
pub fn avx512_available() -> bool {
    #[cfg(x86_kernels)]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(x86_kernels))]
    {
        false
    }
}

/// Do the kernels take their AVX-512 paths on this thread now: available, not switched off by
/// [`AVX512_ENV`], and not inside [`portable`].
pub fn avx512_enabled() -> bool {
    static ENV_OFF: OnceLock<bool> = OnceLock::new();
    let env_off = *ENV_OFF.get_or_init(|| {
        std::env::var(AVX512_ENV).is_ok_and(|v| matches!(v.trim(), "0" | "off" | "false"))
    });
    !env_off && !FORCED_PORTABLE.with(Cell::get) && avx512_available()
}

/// Runs `f` with the portable paths on this thread (the AVX-512 kernels switched off), then
/// restores the previous choice — also when `f` panics.
pub fn portable<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORCED_PORTABLE.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(FORCED_PORTABLE.with(|c| c.replace(true)));
    f()
}

/// [`avx512_enabled`], under the name the kernels' selection reads.
#[cfg(feature = "flex")]
pub(crate) fn avx512() -> bool {
    avx512_enabled()
}

/// For the tests of the AVX-512 kernels themselves: whether they can run here; where not, says
/// on stderr that `test` was skipped and why, so a green run on a machine without AVX-512 does
/// not read as the kernels having been checked.
#[cfg(all(test, feature = "flex"))]
pub(crate) fn avx512_or_skip(test: &str) -> bool {
    let enabled = avx512_enabled();
    if !enabled {
        eprintln!(
            "SKIPPED {test}: the AVX-512 kernels do not run here (compiled in: {}, available \
             on this CPU: {}, {AVX512_ENV}={:?})",
            cfg!(x86_kernels),
            avx512_available(),
            std::env::var(AVX512_ENV).ok()
        );
    }
    enabled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_switches_off_on_this_thread_only_and_restores() {
        let before = avx512_enabled();
        portable(|| {
            assert!(!avx512_enabled());
            // Another thread keeps the process's choice.
            assert_eq!(std::thread::spawn(avx512_enabled).join().unwrap(), before);
            portable(|| assert!(!avx512_enabled()));
            assert!(!avx512_enabled());
        });
        assert_eq!(avx512_enabled(), before);
        let caught = std::panic::catch_unwind(|| portable(|| panic!("inside")));
        assert!(caught.is_err());
        assert_eq!(avx512_enabled(), before);
    }
}
