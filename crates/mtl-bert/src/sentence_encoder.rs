//! Sentence embeddings from a model directory, as sentence-transformers' `encode` makes them.

use std::path::Path;

use burn::prelude::*;

use crate::checkpoint::Checkpoint;
use crate::config::BertConfig;
use crate::error::{Error, Result, TextError};
use crate::model::BertModel;
use crate::model_dir::{ModelDir, SentenceDefaults};
use crate::pooling::{Pooling, l2_normalize, pool};
use crate::precision::Precision;
use crate::tokenizer::{BertTokenizer, TokenBatch};

/// Options of [`SentenceEncoder::encode`]; `None` takes the model directory's default.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodeOptions {
    /// Texts per forward pass. Default: 32.
    pub batch_size: usize,
    /// Pooling. Default: the model's (`1_Pooling/config.json`), else mean.
    pub pooling: Option<Pooling>,
    /// L2-normalise embeddings. Default: whether the model lists a `Normalize` module.
    pub normalize: Option<bool>,
    /// Truncation length in tokens. Default: the model's `max_seq_length`.
    pub max_seq_length: Option<usize>,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self {
            batch_size: 32,
            pooling: None,
            normalize: None,
            max_seq_length: None,
        }
    }
}

/// Embeddings of `len()` texts, `dim` floats each, row-major, in the caller's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// Width of one embedding.
    pub dim: usize,
    /// `[len * dim]` values.
    pub values: Vec<f32>,
}

impl Embeddings {
    /// Number of embeddings.
    pub fn len(&self) -> usize {
        self.values.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The `i`-th embedding.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }

    /// All embeddings, in order.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = &[f32]> {
        self.values.chunks_exact(self.dim.max(1))
    }
}

/// A BERT encoder and its tokenizer, ready to embed sentences.
#[derive(Debug)]
pub struct SentenceEncoder {
    model: BertModel,
    tokenizer: BertTokenizer,
    config: BertConfig,
    defaults: SentenceDefaults,
    device: Device,
}

impl SentenceEncoder {
    /// Loads a model directory (see [`ModelDir`]) onto `device`, for inference (no autodiff
    /// graph is recorded even if `device` has autodiff).
    ///
    /// A multi-task model directory (one with `mtl.json`) works too: its encoder is loaded and
    /// its classification heads (`heads.*`) are left out.
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::load_with_precision(dir, device, Precision::Fp32)
    }

    /// [`Self::load`] at `precision`: [`Precision::Int8`] quantises the encoder's linear layers
    /// as it loads (see [`BertModel::with_precision`]; the files are not changed). Fails with
    /// [`Error::Precision`] on a device without the int8 kernels.
    pub fn load_with_precision(
        dir: impl AsRef<Path>,
        device: &Device,
        precision: Precision,
    ) -> Result<Self> {
        let (dir, config, defaults, tokenizer) = Self::settings(dir.as_ref())?;
        let device = device.clone().without_autodiff();
        let mut checkpoint = Checkpoint::open(dir.weights()?)?;
        let model = BertModel::from_checkpoint_with_precision(
            &mut checkpoint,
            &config,
            &device,
            precision,
        )?;
        let heads: &[&str] = if dir.file("mtl.json").is_file() {
            &["heads."]
        } else {
            &[]
        };
        checkpoint.finish(heads)?;
        Ok(Self::new(model, tokenizer, config, defaults))
    }

    /// A model directory's encoder settings (pooling, normalisation, truncation, tokenizer)
    /// around `model`, the already-loaded encoder of that directory: e.g. the shared encoder of a
    /// multi-task model loaded by `mtl-model`, used as is rather than loaded a second time.
    pub fn with_model(dir: impl AsRef<Path>, model: BertModel) -> Result<Self> {
        let (_, config, defaults, tokenizer) = Self::settings(dir.as_ref())?;
        Ok(Self::new(model, tokenizer, config, defaults))
    }

    /// What [`Self::load`] and [`Self::with_model`] read besides the weights.
    fn settings(dir: &Path) -> Result<(ModelDir, BertConfig, SentenceDefaults, BertTokenizer)> {
        let dir = ModelDir::new(dir)?;
        let config = dir.config()?;
        let defaults = dir.sentence_defaults(&config)?;
        let tokenizer = dir.tokenizer(defaults.max_seq_length)?;
        tokenizer.check_vocab_size(config.vocab_size, &dir.file("config.json"))?;
        Ok((dir, config, defaults, tokenizer))
    }

    /// Assembles an encoder from loaded parts; the device is the model's.
    pub fn new(
        model: BertModel,
        tokenizer: BertTokenizer,
        config: BertConfig,
        defaults: SentenceDefaults,
    ) -> Self {
        let device = model
            .devices()
            .into_iter()
            .next()
            .expect("a BERT model has parameters");
        Self {
            model,
            tokenizer,
            config,
            defaults,
            device,
        }
    }

    /// The encoder.
    pub fn model(&self) -> &BertModel {
        &self.model
    }

    /// The tokenizer (truncating to the model's `max_seq_length`).
    pub fn tokenizer(&self) -> &BertTokenizer {
        &self.tokenizer
    }

    /// The model's configuration.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The model directory's pooling, normalisation and length defaults.
    pub fn defaults(&self) -> &SentenceDefaults {
        &self.defaults
    }

    /// The device the model is on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// How the encoder computes (see [`Precision`]).
    pub fn precision(&self) -> Precision {
        self.model.precision()
    }

    /// Width of the embeddings.
    pub fn dim(&self) -> usize {
        self.config.hidden_size
    }

    /// Embeds `texts`, returned in their order.
    ///
    /// Texts are tokenized, sorted by length and run in batches of `batch_size`, each padded
    /// to its longest text; padding never changes a text's embedding. An empty string embeds
    /// as `[CLS] [SEP]`, as in `transformers`.
    ///
    /// Fails with an [`Error::Text`] naming the text: [`TextError::TokenOutOfRange`], before
    /// any computation, when a text tokenizes to an id the model's embedding tables lack, and
    /// [`TextError::NonFinite`] (the first such text, in order) when an embedding holds NaN
    /// or an infinity. Neither is ever returned as an embedding.
    pub fn encode<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        options: &EncodeOptions,
    ) -> Result<Embeddings> {
        // On a worker thread of the pool: every parallel operation of the forward pass then
        // starts where its work runs, instead of the caller's thread handing each one to the
        // pool and sleeping until it ends (two context switches per operation, a quarter of the
        // time of a one-text batch, measured).
        crate::backend::on_pool(|| self.encode_here(texts, options))
    }

    fn encode_here<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        options: &EncodeOptions,
    ) -> Result<Embeddings> {
        let (pooling, normalize, tokenizer) = self.resolve(options)?;
        let encodings = tokenizer.encode(texts)?;
        BertTokenizer::check_ids(
            &encodings,
            self.config.vocab_size,
            self.config.type_vocab_size,
        )?;
        let dim = self.dim();
        let mut values = vec![0.0f32; texts.len() * dim];
        for batch in tokenizer.length_sorted_batches(encodings, options.batch_size) {
            let (positions, batch) = batch?;
            let embedded = self.embed_batch(&batch, pooling, normalize)?;
            for (row, &i) in embedded.chunks_exact(dim).zip(&positions) {
                values[i * dim..(i + 1) * dim].copy_from_slice(row);
            }
        }
        let embeddings = Embeddings { dim, values };
        if let Some(index) = embeddings
            .rows()
            .position(|row| row.iter().any(|v| !v.is_finite()))
        {
            return Err(Error::Text {
                index,
                problem: TextError::NonFinite,
            });
        }
        Ok(embeddings)
    }

    fn resolve(
        &self,
        options: &EncodeOptions,
    ) -> Result<(Pooling, bool, std::borrow::Cow<'_, BertTokenizer>)> {
        if options.batch_size == 0 {
            return Err(Error::Encoding("batch size must be at least 1".into()));
        }
        let pooling = options.pooling.unwrap_or(self.defaults.pooling);
        if pooling == Pooling::Pooler && self.model.pooler.is_none() {
            return Err(Error::Encoding(
                "pooling `pooler` needs a checkpoint with pooler weights; this model has none"
                    .into(),
            ));
        }
        let normalize = options.normalize.unwrap_or(self.defaults.normalize);
        let tokenizer = match options.max_seq_length {
            Some(n) if n != self.tokenizer.max_length() => {
                if n > self.config.max_position_embeddings {
                    return Err(Error::Encoding(format!(
                        "max sequence length {n} exceeds the model's {} positions",
                        self.config.max_position_embeddings
                    )));
                }
                let mut tokenizer = self.tokenizer.clone();
                tokenizer.set_max_length(n)?;
                std::borrow::Cow::Owned(tokenizer)
            }
            _ => std::borrow::Cow::Borrowed(&self.tokenizer),
        };
        Ok((pooling, normalize, tokenizer))
    }

    /// Embeds one padded batch: `[batch * dim]` values in the batch's order.
    pub fn embed_batch(
        &self,
        batch: &TokenBatch,
        pooling: Pooling,
        normalize: bool,
    ) -> Result<Vec<f32>> {
        let input = batch.to_input(&self.device);
        let hidden = self.model.forward(&input);
        let pooled = pool(
            pooling,
            hidden,
            input.attention_mask,
            self.model.pooler.as_ref(),
        )
        .ok_or_else(|| Error::Encoding("this model has no pooler".into()))?;
        let pooled = if normalize {
            l2_normalize(pooled)
        } else {
            pooled
        };
        pooled
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| Error::Encoding(format!("reading embeddings back: {e:?}")))
    }
}
