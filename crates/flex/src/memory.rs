//! Process memory settings for CPU training: large tensors freed by one step are kept for the
//! next instead of going back to the kernel (docs/notes/2026-11-performance-log.md, "glibc's malloc").

/// Keeps memory a CPU computation frees inside the process, for the next step to reuse,
/// instead of handing it back to the kernel. Returns whether the allocator took the setting
/// (glibc on Linux; elsewhere it does nothing and returns `false`).
///
/// Why: every op of a training step allocates its output fresh, megabytes each. glibc's
/// `malloc` serves large blocks with `mmap` and trims the heap's free top back to the kernel,
/// so each step pays page faults on memory it freed a moment ago — and, with two threads, the
/// inter-processor interrupts of the TLB flushes. That was 8–12% of a ResNet-18 training step at
/// 112² on `flex` (docs/notes/2026-11-performance-log.md). With this, blocks up to 32 MiB (glibc's limit) come from the
/// heap and the heap never shrinks: the process keeps its peak footprint, as PyTorch's caching
/// allocators do on GPUs. It sets process-wide `mallopt` options, so it is the application's
/// choice: `cargo xtask` makes it at start-up.
pub fn retain_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD_MAX: libc::c_int = 32 << 20;
        // SAFETY: mallopt only changes malloc's tuning parameters; it takes no pointers.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_the_settings() {
        assert!(retain_freed_memory());
    }
}
