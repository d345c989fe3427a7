//! The `mtl` command line: sentence embeddings (`embed`, `similarity`), multi-task training
//! (`train`) and evaluation (`eval`). The binary is `src/main.rs`; the commands live here so
//! tests can call them.

pub mod backend;
pub mod embed;
pub mod embedding_output;
pub mod encoder_args;
pub mod eval;
pub mod evaluate;
pub mod metrics;
pub mod model_source;
pub mod progress;
pub mod similarity;
pub mod text_input;
pub mod train;
