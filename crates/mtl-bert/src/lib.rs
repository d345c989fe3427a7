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
//!
//! # Public items
//!
//! Loading and encoding:
//! - [`SentenceEncoder`]: a model directory's encoder, tokenizer and pooling defaults;
//!   [`SentenceEncoder::encode`] returns [`Embeddings`] in the caller's order, with the
//!   [`EncodeOptions`] sentence-transformers users expect.
//! - [`ModelDir`]: the files of a checkpoint directory and its [`SentenceDefaults`]
//!   (sentence-transformers' `modules.json`, read as [`ModuleEntry`] rows;
//!   [`pooling_module_dir`] and [`is_plain_relative`] are the rules for their paths).
//! - [`BertTokenizer`]: a `tokenizer.json` or `vocab.txt` tokenizer with the model's length
//!   limit; it pads [`Encoding`]s into a [`TokenBatch`].
//! - [`Backend`]: the backends compiled in, and a device of one; [`row_groups`] is how many
//!   row groups a batch is split into on a device.
//! - [`Error`], [`TextError`], [`Result`]: what went wrong, with the file, tensor or text.
//!
//! The model (its module tree follows the checkpoint's key tree):
//! - [`BertConfig`] and [`HiddenAct`]: Hugging Face's `config.json`, field by field.
//! - [`BertModel`] on a [`BertInput`]: [`BertEmbeddings`], a [`BertEncoder`] of [`BertLayer`]s
//!   ([`BertAttention`] = [`BertSelfAttention`] + [`BertSelfOutput`], then [`BertIntermediate`]
//!   and [`BertOutput`]) and an optional [`BertPooler`].
//! - [`Pooling`] and [`pool`]: CLS, pooler, mean or max pooling of the last hidden states.
//! - [`Precision`]: f32, or int8 linear layers quantised at load
//!   ([`BertModel::with_precision`], on the [`INT8_BACKENDS`]).
//! - [`LoraAdapter`] ([`LoraConfig`], [`LoraTargets`]; a [`LayerLora`] of [`Lora`]s per layer):
//!   LoRA adapters on the layers ([`BertModel::forward_adapted`]), saved and loaded in PEFT's
//!   format ([`peft`]).
//! - [`DropoutKey`] and [`dropout`]: dropout masks drawn from a counter-based generator, the
//!   same for a batch however it is split into row groups.
//!
//! Weights and vectors:
//! - [`Checkpoint`]: a safetensors or PyTorch checkpoint read into a module, every tensor
//!   accounted for; [`collect_tensors`], [`hf_name`] and [`write_safetensors`] save one under
//!   Hugging Face's names.
//! - [`cosine_matrix`] and [`l2_normalize_row`]: similarities of embedding rows.
//! - [`burn`]: the Burn this crate is built on (its tensors appear in the API).

#![warn(unreachable_pub)]

mod attention;
mod backend;
mod checkpoint;
mod config;
mod dropout;
mod embeddings;
mod error;
mod kernels;
mod layer;
mod lora;
mod model;
mod model_dir;
mod pooling;
mod precision;
mod sentence_encoder;
mod similarity;
mod tokenizer;

pub use attention::{BertAttention, BertSelfAttention, BertSelfOutput};
pub use backend::{Backend, row_groups};
pub use burn;
pub use checkpoint::{Checkpoint, collect_tensors, hf_name, write_safetensors};
pub use config::{BertConfig, HiddenAct};
pub use dropout::{DropoutKey, dropout};
pub use embeddings::BertEmbeddings;
pub use error::{Error, Result, TextError};
pub use layer::{BertIntermediate, BertLayer, BertOutput};
pub use lora::{LayerLora, Lora, LoraAdapter, LoraConfig, LoraTargets, peft};
pub use model::{BertEncoder, BertInput, BertModel, BertPooler};
pub use model_dir::{
    ModelDir, ModuleEntry, SentenceDefaults, is_plain_relative, pooling_module_dir,
};
pub use pooling::{Pooling, pool};
pub use precision::{INT8_BACKENDS, INT8_KERNEL_ENV, Precision};
pub use sentence_encoder::{Embeddings, EncodeOptions, SentenceEncoder};
pub use similarity::{cosine_matrix, l2_normalize_row};
pub use tokenizer::{BertTokenizer, TokenBatch};
pub use tokenizers::Encoding;
