//! The allocator of mtl's programs: the `mtl` binaries and the Python extension module each
//! declare [`MiMalloc`] their global allocator and call [`keep_freed_memory`] first.
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: mtl_alloc::MiMalloc = mtl_alloc::MiMalloc;
//! ```
//!
//! Libraries never choose an allocator; only these final artifacts do.

pub use mimalloc::MiMalloc;

/// Makes the allocator (mimalloc) keep freed memory instead of returning it to the system:
/// training and inference free and reallocate the same large tensor buffers at every step, and
/// memory returned to the system is zeroed by the kernel again on its next use (measured in
/// docs/BENCHMARKS.md: with glibc's allocator, batch-128 embedding ran 19% slower from Python).
/// Call first thing in `main` (or when the extension module loads).
pub fn keep_freed_memory() {
    // `mi_option_purge_delay` (milliseconds before freed memory is returned; -1: never). The
    // -sys crate names only the older options, so the index is the one of mimalloc v3's
    // `mi_option_e`, checked against the option's documented default (1000 ms).
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: reading and setting a mimalloc option has no preconditions.
    unsafe {
        if libmimalloc_sys::mi_option_get(PURGE_DELAY) == 1000 {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, -1);
        }
    }
}
