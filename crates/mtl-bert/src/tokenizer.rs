//! Tokenization with the `tokenizers` crate, and padded batches for the encoder.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use serde::Deserialize;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::utils::padding::{PaddingDirection, PaddingParams, PaddingStrategy, pad_encodings};
use tokenizers::utils::truncation::{TruncationDirection, TruncationParams, TruncationStrategy};
use tokenizers::{AddedToken, EncodeInput, Encoding, Tokenizer};

use crate::error::{Error, Result, TextError};
use crate::model::BertInput;

/// The special tokens and casing of a `tokenizer_config.json` (what the `vocab.txt` fallback
/// needs). Missing keys take the `BertTokenizer` defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct TokenizerConfig {
    do_lower_case: bool,
    strip_accents: Option<bool>,
    tokenize_chinese_chars: bool,
    unk_token: String,
    sep_token: String,
    pad_token: String,
    cls_token: String,
    mask_token: String,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        Self {
            do_lower_case: true,
            strip_accents: None,
            tokenize_chinese_chars: true,
            unk_token: "[UNK]".into(),
            sep_token: "[SEP]".into(),
            pad_token: "[PAD]".into(),
            cls_token: "[CLS]".into(),
            mask_token: "[MASK]".into(),
        }
    }
}

/// A WordPiece tokenizer that truncates to a maximum length (keeping the final `[SEP]`) and
/// pads batches to their longest member.
#[derive(Debug, Clone)]
pub struct BertTokenizer {
    inner: Tokenizer,
    source: PathBuf,
    max_length: usize,
    padding: PaddingParams,
}

impl BertTokenizer {
    /// Loads a `tokenizer.json`, truncating to `max_length` tokens (special tokens included).
    ///
    /// The file's own truncation and padding settings are replaced by ours (MiniLM's file, for
    /// one, pads everything to 128).
    pub fn from_file(path: impl AsRef<Path>, max_length: usize) -> Result<Self> {
        let path = path.as_ref();
        let inner = Tokenizer::from_file(path).map_err(|e| Error::Tokenizer {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::new(inner, path, max_length)
    }

    /// Builds the BERT tokenizer from `vocab.txt` and, when given, `tokenizer_config.json`
    /// (casing, accent stripping, special tokens), as `transformers`' `BertTokenizerFast` does.
    pub fn from_vocab(
        vocab: impl AsRef<Path>,
        config: Option<&Path>,
        max_length: usize,
    ) -> Result<Self> {
        let vocab = vocab.as_ref();
        let settings = match config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
                serde_json::from_str(&text).map_err(|source| Error::Json {
                    path: path.to_path_buf(),
                    source,
                })?
            }
            None => TokenizerConfig::default(),
        };
        let failed = |message: String| Error::Tokenizer {
            path: vocab.to_path_buf(),
            message,
        };
        let vocab_str = vocab
            .to_str()
            .ok_or_else(|| failed("path is not UTF-8".into()))?;
        let model = WordPiece::from_file(vocab_str)
            .unk_token(settings.unk_token.clone())
            .build()
            .map_err(|e| failed(e.to_string()))?;
        let mut inner = Tokenizer::new(model);
        let id = |token: &str| {
            inner
                .token_to_id(token)
                .ok_or_else(|| failed(format!("special token {token} is not in the vocabulary")))
        };
        let (sep, cls) = (id(&settings.sep_token)?, id(&settings.cls_token)?);
        inner
            .with_normalizer(Some(BertNormalizer::new(
                true,
                settings.tokenize_chinese_chars,
                settings.strip_accents,
                settings.do_lower_case,
            )))
            .map_err(|e| failed(e.to_string()))?
            .with_pre_tokenizer(Some(BertPreTokenizer))
            .with_post_processor(Some(BertProcessing::new(
                (settings.sep_token.clone(), sep),
                (settings.cls_token.clone(), cls),
            )))
            .with_decoder(Some(WordPieceDecoder::default()));
        let specials = [
            &settings.pad_token,
            &settings.unk_token,
            &settings.cls_token,
            &settings.sep_token,
            &settings.mask_token,
        ];
        inner
            .add_special_tokens(
                specials
                    .into_iter()
                    .map(|t| AddedToken::from(t.clone(), true)),
            )
            .map_err(|e| failed(e.to_string()))?;
        let mut tokenizer = Self::new(inner, vocab, max_length)?;
        tokenizer.padding.pad_token = settings.pad_token.clone();
        tokenizer.padding.pad_id = tokenizer
            .inner
            .token_to_id(&settings.pad_token)
            .ok_or_else(|| failed(format!("{} is not in the vocabulary", settings.pad_token)))?;
        Ok(tokenizer)
    }

    fn new(mut inner: Tokenizer, source: &Path, max_length: usize) -> Result<Self> {
        let pad_token = ["[PAD]", "<pad>"]
            .into_iter()
            .find(|t| inner.token_to_id(t).is_some())
            .unwrap_or("[PAD]");
        let padding = PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id: inner.token_to_id(pad_token).unwrap_or(0),
            pad_type_id: 0,
            pad_token: pad_token.to_owned(),
        };
        inner.with_padding(None);
        let mut tokenizer = Self {
            inner,
            source: source.to_path_buf(),
            max_length: 0,
            padding,
        };
        tokenizer.set_max_length(max_length)?;
        Ok(tokenizer)
    }

    /// The longest tokenization produced, in tokens including `[CLS]` and `[SEP]`.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Sets the truncation length in tokens, special tokens included. At least 3, the special
    /// tokens of a sentence pair (`[CLS] a [SEP] b [SEP]`).
    pub fn set_max_length(&mut self, max_length: usize) -> Result<()> {
        if max_length < 3 {
            return Err(Error::Tokenizer {
                path: self.source.clone(),
                message: format!("max length {max_length} is too short (at least 3 tokens)"),
            });
        }
        let truncation = TruncationParams {
            max_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        };
        self.inner
            .with_truncation(Some(truncation))
            .map_err(|e| Error::Tokenizer {
                path: self.source.clone(),
                message: e.to_string(),
            })?;
        self.max_length = max_length;
        Ok(())
    }

    /// The id that pads batches.
    pub fn pad_id(&self) -> u32 {
        self.padding.pad_id
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// The file the tokenizer was loaded from (`tokenizer.json` or `vocab.txt`).
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Checks that the model's word embeddings (`vocab_size` rows, from `config`) have a row
    /// for every token id this tokenizer can produce (its vocabulary, added tokens and the
    /// padding id included); a larger tokenizer is [`Error::VocabularyMismatch`].
    pub fn check_vocab_size(&self, vocab_size: usize, config: &Path) -> Result<()> {
        let vocab = self.inner.get_vocab(true);
        let max_id = vocab
            .values()
            .copied()
            .chain([self.padding.pad_id])
            .max()
            .unwrap_or(0);
        if max_id as usize >= vocab_size {
            return Err(Error::VocabularyMismatch {
                tokenizer: self.source.clone(),
                config: config.to_path_buf(),
                tokens: vocab.len(),
                max_id,
                vocab_size,
            });
        }
        Ok(())
    }

    /// Checks that every token id of `encodings` is below `vocab_size` and every token type id
    /// below `type_vocab_size` (the model's embedding tables), so that no id reaches an
    /// embedding lookup out of bounds; the first that is not is an [`Error::Text`] with
    /// [`TextError::TokenOutOfRange`], naming its text's index in `encodings`.
    pub fn check_ids(
        encodings: &[Encoding],
        vocab_size: usize,
        type_vocab_size: usize,
    ) -> Result<()> {
        for (index, encoding) in encodings.iter().enumerate() {
            let tokens = encoding.get_tokens();
            let limits = [
                (encoding.get_ids(), "id", "vocab_size", vocab_size),
                (
                    encoding.get_type_ids(),
                    "type id",
                    "type_vocab_size",
                    type_vocab_size,
                ),
            ];
            for (ids, kind, field, size) in limits {
                if let Some(at) = ids.iter().position(|&id| id as usize >= size) {
                    return Err(Error::Text {
                        index,
                        problem: TextError::TokenOutOfRange {
                            token: tokens.get(at).cloned().unwrap_or_default(),
                            kind,
                            id: ids[at],
                            field,
                            size,
                        },
                    });
                }
            }
        }
        Ok(())
    }

    /// Tokenizes texts (with special tokens, truncated, unpadded), in parallel.
    pub fn encode<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Vec<Encoding>> {
        let inputs: Vec<EncodeInput> = texts.iter().map(|t| t.as_ref().into()).collect();
        self.encode_inputs(inputs)
    }

    /// Tokenizes text pairs: `[CLS] a [SEP] b [SEP]`, token type 0 then 1.
    pub fn encode_pairs<A: AsRef<str>, B: AsRef<str>>(
        &self,
        pairs: &[(A, B)],
    ) -> Result<Vec<Encoding>> {
        let inputs: Vec<EncodeInput> = pairs
            .iter()
            .map(|(a, b)| (a.as_ref(), b.as_ref()).into())
            .collect();
        self.encode_inputs(inputs)
    }

    fn encode_inputs(&self, inputs: Vec<EncodeInput>) -> Result<Vec<Encoding>> {
        self.inner
            .encode_batch(inputs, true)
            .map_err(|e| Error::Encoding(e.to_string()))
    }

    /// Groups tokenizations into batches of at most `batch_size`, longest first, each padded
    /// to its longest member; yields each batch with the positions of its texts in
    /// `encodings`. Sorting by length keeps padding (wasted compute) small.
    pub fn length_sorted_batches(
        &self,
        encodings: Vec<Encoding>,
        batch_size: usize,
    ) -> impl Iterator<Item = Result<(Vec<usize>, TokenBatch)>> + '_ {
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encodings[i].len()));
        let chunks: Vec<Vec<usize>> = order
            .chunks(batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect();
        chunks.into_iter().map(move |chunk| {
            let batch = self.pad(chunk.iter().map(|&i| encodings[i].clone()).collect())?;
            Ok((chunk, batch))
        })
    }

    /// Pads tokenizations to the longest of them: ids, token types and attention mask as the
    /// tokenizer makes them.
    pub fn pad(&self, mut encodings: Vec<Encoding>) -> Result<TokenBatch> {
        pad_encodings(&mut encodings, &self.padding).map_err(|e| Error::Encoding(e.to_string()))?;
        Ok(TokenBatch::from_padded(&encodings))
    }
}

/// A right-padded batch of tokenizations, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBatch {
    /// `[batch * seq]` token ids, row-major.
    pub input_ids: Vec<i64>,
    /// `[batch * seq]` token type ids.
    pub token_type_ids: Vec<i64>,
    /// `[batch * seq]` 1 for tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// Number of rows.
    pub batch_size: usize,
    /// Length of every row (the longest tokenization).
    pub seq_len: usize,
}

impl TokenBatch {
    /// Collects equally long (padded) encodings.
    ///
    /// # Panics
    /// If the encodings have different lengths.
    pub fn from_padded(encodings: &[Encoding]) -> Self {
        let seq_len = encodings.first().map_or(0, |e| e.len());
        let flat = |field: fn(&Encoding) -> &[u32]| -> Vec<i64> {
            encodings
                .iter()
                .flat_map(|e| {
                    assert_eq!(e.len(), seq_len, "encodings must be padded to one length");
                    field(e).iter().map(|&v| i64::from(v))
                })
                .collect()
        };
        Self {
            input_ids: flat(Encoding::get_ids),
            token_type_ids: flat(Encoding::get_type_ids),
            attention_mask: flat(Encoding::get_attention_mask),
            batch_size: encodings.len(),
            seq_len,
        }
    }

    /// Number of real (unpadded) tokens of each row.
    pub fn lengths(&self) -> Vec<usize> {
        self.attention_mask
            .chunks(self.seq_len.max(1))
            .map(|row| row.iter().filter(|&&m| m != 0).count())
            .collect()
    }

    /// Moves the batch to `device` as the encoder's input.
    pub fn to_input(&self, device: &Device) -> BertInput {
        let shape = [self.batch_size, self.seq_len];
        let ints = |values: &[i64]| {
            Tensor::<2, Int>::from_data(TensorData::new(values.to_vec(), shape), device)
        };
        let mask: Vec<f32> = self.attention_mask.iter().map(|&m| m as f32).collect();
        BertInput {
            input_ids: ints(&self.input_ids),
            token_type_ids: ints(&self.token_type_ids),
            attention_mask: Tensor::from_data(TensorData::new(mask, shape), device),
            dropout: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(file: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/tiny-bert")
            .join(file)
    }

    #[test]
    fn ids_beyond_the_embedding_tables_name_their_text_and_token() {
        let tokenizer = BertTokenizer::from_file(tiny("tokenizer.json"), 64).unwrap();
        // "9" is id 118 of the tiny vocabulary; the other tokens are below 100.
        let encodings = tokenizer.encode(&["the cat", "the cat 9"]).unwrap();
        BertTokenizer::check_ids(&encodings, 155, 2).unwrap();
        BertTokenizer::check_ids(&encodings, 119, 1).unwrap();
        let err = BertTokenizer::check_ids(&encodings, 118, 2).unwrap_err();
        assert_eq!(
            err.to_string(),
            "text at index 1: token \"9\" has id 118, but the model's vocab_size is 118 (ids 0 \
             to 117); the tokenizer does not belong to this model"
        );
        let Error::Text { index, problem } = err else {
            panic!("{err}")
        };
        assert_eq!(index, 1);
        assert_eq!(
            problem,
            TextError::TokenOutOfRange {
                token: "9".into(),
                kind: "id",
                id: 118,
                field: "vocab_size",
                size: 118,
            }
        );

        // The second text of a pair has token type 1, which a type_vocab_size of 1 lacks.
        let pairs = tokenizer.encode_pairs(&[("the cat", "the dog")]).unwrap();
        BertTokenizer::check_ids(&pairs, 155, 2).unwrap();
        let err = BertTokenizer::check_ids(&pairs, 155, 1).unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Text {
                    index: 0,
                    problem: TextError::TokenOutOfRange {
                        kind: "type id",
                        id: 1,
                        field: "type_vocab_size",
                        size: 1,
                        ..
                    },
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_tokenizer_larger_than_vocab_size_names_both_files() {
        let config = Path::new("model/config.json");
        let tokenizers = [
            BertTokenizer::from_file(tiny("tokenizer.json"), 64).unwrap(),
            BertTokenizer::from_vocab(tiny("vocab.txt"), Some(&tiny("tokenizer_config.json")), 64)
                .unwrap(),
        ];
        for tokenizer in tokenizers {
            tokenizer.check_vocab_size(155, config).unwrap();
            let err = tokenizer.check_vocab_size(154, config).unwrap_err();
            let message = err.to_string();
            assert!(
                message.starts_with(&format!(
                    "{}: the tokenizer has 155 tokens (ids up to 154), but model/config.json \
                     sets vocab_size to 154",
                    tokenizer.source().display()
                )),
                "{message}"
            );
            assert!(
                matches!(
                    err,
                    Error::VocabularyMismatch {
                        tokens: 155,
                        max_id: 154,
                        vocab_size: 154,
                        ..
                    }
                ),
                "{message}"
            );
        }
    }
}
