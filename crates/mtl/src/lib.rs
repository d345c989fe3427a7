//! The `mtl` command line: sentence embeddings (`embed`, `similarity`), multi-task training
//! (`train`), evaluation (`eval`), prediction (`predict`) and serving (`serve`). The binary is
//! `src/main.rs`; the commands live here so tests can call them. This crate holds flags,
//! terminal output, plots and file formats; the work is done by the libraries (`mtl-bert`,
//! `mtl-model`, `mtl-data`, `mtl-train`, `mtl-hub`, `mtl-serve`).
// The flags' doc comments are `--help` text, written for a terminal ("[CLS]", "TEXT<TAB>PAIR",
// bare URLs), not rustdoc markup.
#![allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::bare_urls,
    rustdoc::invalid_html_tags
)]

pub mod backend;
pub mod embed;
pub mod embedding_output;
pub mod encoder_args;
pub mod eval;
pub mod model_arg;
pub mod plot;
pub mod predict;
pub mod progress;
pub mod serve;
pub mod similarity;
pub mod text_input;
pub mod train;

/// Makes the binaries' allocator (mimalloc) keep freed memory instead of returning it to the
/// system: training and inference free and reallocate the same large tensor buffers at every
/// step, and memory returned to the system is zeroed by the kernel again on its next use
/// (measured in docs/BENCHMARKS.md). Call first thing in `main`.
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
