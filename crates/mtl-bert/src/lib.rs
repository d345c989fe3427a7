//! A BERT-family sentence encoder on [Burn](https://burn.dev).
//!
//! Loads any Hugging Face BERT checkpoint directory (`config.json`, `model.safetensors` or
//! `pytorch_model.bin`, `tokenizer.json` or `vocab.txt`) and computes the same numbers as
//! `transformers` / `sentence-transformers`: last hidden states, the pooler output, and
//! sentence embeddings with CLS, pooler, mean or max pooling and optional L2 normalisation.
//!
//! ```no_run
//! use mtl_bert::{Backend, EncodeOptions, SentenceEncoder};
//!
//! let device = Backend::Flex.device(0)?;
//! let encoder = SentenceEncoder::load(".cache/models/all-MiniLM-L6-v2", &device)?;
//! let embeddings = encoder.encode(&["A sentence.", "Another one."], &EncodeOptions::default())?;
//! assert_eq!(embeddings.len(), 2);
//! assert_eq!(embeddings.dim, 384);
//! # Ok::<(), mtl_bert::Error>(())
//! ```
//!
//! Backends are Cargo features (`flex`, the default, and `ndarray`); [`Backend`] picks one
//! of those compiled in at run time.

pub mod attention;
pub mod backend;
pub mod bias_gelu;
pub mod checkpoint;
pub mod config;
pub mod dropout;
pub mod embeddings;
pub mod error;
pub mod layer;
pub mod model;
pub mod model_dir;
pub mod pooling;
pub mod sentence_encoder;
pub mod similarity;
pub mod tokenizer;

pub use backend::Backend;
pub use burn;
pub use checkpoint::Checkpoint;
pub use config::{BertConfig, HiddenAct};
pub use dropout::DropoutKey;
pub use error::{Error, Result};
pub use model::{BertInput, BertModel};
pub use model_dir::{ModelDir, SentenceDefaults};
pub use pooling::Pooling;
pub use sentence_encoder::{Embeddings, EncodeOptions, SentenceEncoder};
pub use tokenizer::{BertTokenizer, TokenBatch};
pub use tokenizers::Encoding;
