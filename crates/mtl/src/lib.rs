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
pub mod export;
pub mod model_arg;
pub mod plot;
pub mod predict;
pub mod progress;
pub mod serve;
pub mod similarity;
pub mod text_input;
pub mod train;
