//! The sentence-encoder options shared by `embed` and `similarity`: the model, how it pools
//! and normalises, batch size, truncation, backend.

use std::num::NonZeroUsize;

use anyhow::{Context, Result};
use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use mtl_bert::{EncodeOptions, Pooling, SentenceEncoder};

use mtl_hub::ModelSource;

use crate::backend::{BackendArgs, PrecisionArgs};

/// Which model embeds the texts, and how.
#[derive(Debug, Clone, Args)]
pub struct EncoderArgs {
    /// The model: a local model directory (config.json, model.safetensors or
    /// pytorch_model.bin, tokenizer.json or vocab.txt), or a Hugging Face hub id such as
    /// sentence-transformers/all-MiniLM-L6-v2, downloaded into the hub cache ($HF_HOME/hub,
    /// else ~/.cache/huggingface/hub) from $HF_ENDPOINT (else https://huggingface.co), with
    /// $HF_TOKEN for private models; once cached it needs no network (HF_HUB_OFFLINE=1 forbids
    /// it). Default: all-MiniLM-L6-v2 from the project's cache ($MTL_CACHE_DIR/models), fetched on
    /// first use (`cargo xtask fetch-model` fetches it ahead).
    #[arg(long, short = 'm', value_name = "DIR|OWNER/NAME")]
    pub model: Option<String>,
    /// Branch, tag or commit of a hub model. Default: main.
    #[arg(long, value_name = "REV")]
    pub revision: Option<String>,
    /// How token vectors become one vector per text: cls (the [CLS] token), pooler (BERT's
    /// pooler on [CLS]; needs pooler weights), mean or max (over the real tokens). Default: the
    /// model's 1_Pooling/config.json, else mean.
    #[arg(long, value_parser = PossibleValuesParser::new(Pooling::ALL.map(Pooling::name))
        .try_map(|s| s.parse::<Pooling>()))]
    pub pooling: Option<Pooling>,
    /// L2-normalise every embedding. Default: the model's choice (whether its modules.json
    /// lists a Normalize module; all-MiniLM-L6-v2 does).
    #[arg(long, overrides_with = "no_normalize")]
    pub normalize: bool,
    /// Do not L2-normalise, whatever the model says.
    #[arg(long, overrides_with = "normalize")]
    pub no_normalize: bool,
    /// Texts per forward pass. Larger batches are faster up to a point and use more memory.
    #[arg(long, short = 'b', default_value = "32", value_name = "N")]
    pub batch_size: NonZeroUsize,
    /// Truncate texts to N tokens, [CLS] and [SEP] included (at least 3, at most the
    /// model's max_position_embeddings). Default: the model's max_seq_length
    /// (sentence_bert_config.json, else tokenizer_config.json's model_max_length).
    #[arg(long, value_name = "N")]
    pub max_seq_length: Option<usize>,
    #[command(flatten)]
    pub backend: BackendArgs,
    #[command(flatten)]
    pub precision: PrecisionArgs,
}

impl EncoderArgs {
    /// The model's source, as `--model` and `--revision` name it.
    pub fn source(&self) -> Result<ModelSource> {
        crate::model_arg::parse(self.model.as_deref(), self.revision.as_deref())
    }

    /// Finds (downloading if needed) and loads the model on the chosen backend, and prints
    /// what will run on standard error.
    pub fn load(&self) -> Result<SentenceEncoder> {
        let source = self.source()?;
        let device = self.backend.device()?;
        let dir = crate::model_arg::resolve(&source)?;
        let precision = self.precision.precision();
        let encoder =
            SentenceEncoder::load_with_precision(&dir, &device, precision).with_context(|| {
                format!(
                    "loading the model in {}; a model directory needs config.json, \
                 model.safetensors (or pytorch_model.bin) and tokenizer.json (or vocab.txt). \
                 Leave --model out for the default all-MiniLM-L6-v2 (`cargo xtask fetch-model` \
                 fetches it)",
                    dir.display()
                )
            })?;
        let defaults = encoder.defaults();
        eprintln!(
            "model: {} (dim {}, pooling {}, normalize {}, max {} tokens)",
            dir.display(),
            encoder.dim(),
            self.pooling.unwrap_or(defaults.pooling),
            self.normalize().unwrap_or(defaults.normalize),
            self.max_seq_length.unwrap_or(defaults.max_seq_length),
        );
        Ok(encoder)
    }

    /// `--normalize` / `--no-normalize`; `None` for the model's default.
    pub fn normalize(&self) -> Option<bool> {
        match (self.normalize, self.no_normalize) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }

    /// The library's options for these flags.
    pub fn options(&self) -> EncodeOptions {
        EncodeOptions {
            batch_size: self.batch_size.get(),
            pooling: self.pooling,
            normalize: self.normalize(),
            max_seq_length: self.max_seq_length,
        }
    }
}
