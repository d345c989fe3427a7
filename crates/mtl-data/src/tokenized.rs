//! A task's examples tokenized once, and padded batches made from them.

use mtl_bert::burn::prelude::*;
use mtl_bert::{BertTokenizer, TokenBatch};

use crate::config::{Split, TaskSource};
use crate::error::{Error, Result};
use crate::task_data::TaskData;

/// Texts are tokenized in chunks of this many, to bound the memory of the tokenizer's full
/// `Encoding`s (which also hold token strings and offsets) while only ids are kept.
const ENCODE_CHUNK: usize = 1024;

/// One task's examples, tokenized once (truncated to the tokenizer's max length, unpadded):
/// only the token ids and token type ids are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedTask {
    name: String,
    labels: Vec<String>,
    ids: Vec<Vec<u32>>,
    type_ids: Vec<Vec<u32>>,
    targets: Vec<usize>,
    lengths: Vec<usize>,
    pad_id: u32,
}

/// A padded batch of one task, ready for the encoder.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskBatch {
    /// The task's index (its position in the loader's task list).
    pub task: usize,
    /// The token ids, token types and attention mask, `[batch, seq]`, padded on the right to the
    /// batch's longest text.
    pub tokens: TokenBatch,
    /// `[batch]` each example's label index.
    pub labels: Vec<i64>,
    /// `[batch]` each row's index in the task's examples.
    pub examples: Vec<usize>,
}

impl TaskBatch {
    /// The labels as a tensor on `device`: `[batch]` ints.
    pub fn targets(&self, device: &Device) -> Tensor<1, Int> {
        Tensor::from_data(
            TensorData::new(self.labels.clone(), [self.labels.len()]),
            device,
        )
    }
}

impl TokenizedTask {
    /// Tokenizes every example of `data` with `tokenizer` (which sets the max length).
    pub fn new(data: &TaskData, tokenizer: &BertTokenizer) -> Result<Self> {
        let mut ids = Vec::with_capacity(data.len());
        let mut type_ids = Vec::with_capacity(data.len());
        for chunk in data.examples.chunks(ENCODE_CHUNK) {
            let encodings = if chunk.iter().any(|e| e.text_pair.is_some()) {
                let pairs: Vec<(&str, &str)> = chunk
                    .iter()
                    .map(|e| (e.text.as_str(), e.text_pair.as_deref().unwrap_or_default()))
                    .collect();
                tokenizer.encode_pairs(&pairs)?
            } else {
                let texts: Vec<&str> = chunk.iter().map(|e| e.text.as_str()).collect();
                tokenizer.encode(&texts)?
            };
            for encoding in encodings {
                ids.push(encoding.get_ids().to_vec());
                type_ids.push(encoding.get_type_ids().to_vec());
            }
        }
        Ok(Self {
            name: data.name.clone(),
            labels: data.labels.clone(),
            lengths: ids.iter().map(Vec::len).collect(),
            ids,
            type_ids,
            targets: data.examples.iter().map(|e| e.label).collect(),
            pad_id: tokenizer.pad_id(),
        })
    }

    /// Reads one split of a task ([`TaskData::load`]) and tokenizes it; a task without a file
    /// for `split` is an error.
    pub fn load(config: &TaskSource, split: Split, tokenizer: &BertTokenizer) -> Result<Self> {
        match TaskData::load(config, split)? {
            Some(data) => Self::new(&data, tokenizer),
            None => Err(Error::Config {
                task: config.name.clone(),
                message: format!("{} has no {split} file", config.path.display()),
            }),
        }
    }

    /// The task's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The labels in order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there is no example.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Each example's length in tokens, special tokens included (after truncation).
    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    /// Each example's label index.
    pub fn targets(&self) -> &[usize] {
        &self.targets
    }

    /// The batch of `examples` (indices into this task), labelled as task `task`: padded with
    /// the tokenizer's pad id (token type 0, mask 0) to the longest of them, exactly as
    /// [`BertTokenizer::pad`] pads.
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn batch(&self, task: usize, examples: &[usize]) -> TaskBatch {
        let seq_len = examples.iter().map(|&i| self.lengths[i]).max().unwrap_or(0);
        let size = examples.len() * seq_len;
        let (mut input_ids, mut token_type_ids, mut attention_mask) = (
            Vec::with_capacity(size),
            Vec::with_capacity(size),
            Vec::with_capacity(size),
        );
        for &i in examples {
            let padding = seq_len - self.lengths[i];
            input_ids.extend(self.ids[i].iter().map(|&v| i64::from(v)));
            input_ids.extend(std::iter::repeat_n(i64::from(self.pad_id), padding));
            token_type_ids.extend(self.type_ids[i].iter().map(|&v| i64::from(v)));
            token_type_ids.extend(std::iter::repeat_n(0, padding));
            attention_mask.extend(std::iter::repeat_n(1, self.lengths[i]));
            attention_mask.extend(std::iter::repeat_n(0, padding));
        }
        TaskBatch {
            task,
            tokens: TokenBatch {
                input_ids,
                token_type_ids,
                attention_mask,
                batch_size: examples.len(),
                seq_len,
            },
            labels: examples.iter().map(|&i| self.targets[i] as i64).collect(),
            examples: examples.to_vec(),
        }
    }

    /// Every example once, for evaluation, in batches of `batch_size` (at least 1): sorted by
    /// token length when `by_length` (less padding; [`TaskBatch::examples`] maps rows back),
    /// else in file order.
    pub fn eval_batches(
        &self,
        task: usize,
        batch_size: usize,
        by_length: bool,
    ) -> impl ExactSizeIterator<Item = TaskBatch> + '_ {
        let mut order: Vec<usize> = (0..self.len()).collect();
        if by_length {
            order.sort_by_key(|&i| self.lengths[i]);
        }
        let chunks: Vec<Vec<usize>> = order
            .chunks(batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect();
        chunks
            .into_iter()
            .map(move |chunk| self.batch(task, &chunk))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use super::*;
    use crate::task_data::Example;

    /// A small uncased WordPiece tokenizer built from a vocabulary written to `dir`.
    pub(crate) fn tokenizer(dir: &Path, max_length: usize) -> BertTokenizer {
        let vocab = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "a",
            "dog", "ran", ".", "!", "good", "bad",
        ];
        let path = dir.join("vocab.txt");
        std::fs::write(&path, vocab.join("\n")).unwrap();
        BertTokenizer::from_vocab(&path, None, max_length).unwrap()
    }

    pub(crate) fn data(texts: &[&str]) -> TaskData {
        TaskData {
            name: "t".into(),
            labels: vec!["bad".into(), "good".into()],
            path: "mem".into(),
            examples: texts
                .iter()
                .enumerate()
                .map(|(i, t)| Example {
                    text_pair: None,
                    id: i.to_string(),
                    text: (*t).into(),
                    label: i % 2,
                })
                .collect(),
        }
    }

    #[test]
    fn batches_pad_like_the_tokenizer_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let tokenizer = tokenizer(dir.path(), 6);
        let texts = ["the cat sat on the mat .", "a dog !", "good", "zebra cat"];
        let task = TokenizedTask::new(&data(&texts), &tokenizer).unwrap();
        assert_eq!(task.lengths(), [6, 5, 3, 4]);
        let batch = task.batch(1, &[2, 1, 3]);
        let expected = tokenizer
            .pad(tokenizer.encode(&[texts[2], texts[1], texts[3]]).unwrap())
            .unwrap();
        assert_eq!(batch.tokens, expected);
        assert_eq!((batch.tokens.batch_size, batch.tokens.seq_len), (3, 5));
        assert_eq!(batch.tokens.input_ids[..5], [2, 15, 3, 0, 0]);
        assert_eq!(batch.labels, [0, 1, 1]);
        assert_eq!((batch.task, batch.examples.as_slice()), (1, &[2, 1, 3][..]));
        // Truncated to 6 tokens, the final [SEP] kept.
        let long = task.batch(0, &[0]);
        assert_eq!(long.tokens.input_ids, [2, 5, 6, 7, 8, 3]);
    }

    /// A sentence-pair task's batches hold both texts, `[CLS] text [SEP] pair [SEP]`, with
    /// token type 1 on the second segment, as the tokenizer encodes pairs.
    #[test]
    fn pair_batches_encode_both_texts_with_their_segments() {
        let dir = tempfile::tempdir().unwrap();
        let tokenizer = tokenizer(dir.path(), 32);
        let mut data = data(&["the cat sat", "a dog"]);
        data.examples[0].text_pair = Some("good".into());
        data.examples[1].text_pair = Some("bad mat !".into());
        let task = TokenizedTask::new(&data, &tokenizer).unwrap();
        let batch = task.batch(0, &[0, 1]);
        let expected = tokenizer
            .pad(
                tokenizer
                    .encode_pairs(&[("the cat sat", "good"), ("a dog", "bad mat !")])
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(batch.tokens, expected);
        let seq = batch.tokens.seq_len;
        assert_eq!(seq, 8);
        // [CLS] the cat sat [SEP] good [SEP] [PAD] / [CLS] a dog [SEP] bad mat ! [SEP]
        assert_eq!(batch.tokens.input_ids[..seq], [2, 5, 6, 7, 3, 15, 3, 0]);
        assert_eq!(batch.tokens.input_ids[seq..], [2, 10, 11, 3, 16, 9, 14, 3]);
        assert_eq!(batch.tokens.token_type_ids[..seq], [0, 0, 0, 0, 0, 1, 1, 0]);
        assert_eq!(batch.tokens.token_type_ids[seq..], [0, 0, 0, 0, 1, 1, 1, 1]);
        assert_eq!(batch.tokens.attention_mask[..seq], [1, 1, 1, 1, 1, 1, 1, 0]);
        assert_eq!(task.lengths(), [7, 8]);
    }

    #[test]
    fn eval_batches_cover_every_example_once() {
        let dir = tempfile::tempdir().unwrap();
        let tokenizer = tokenizer(dir.path(), 32);
        let texts = ["the cat sat", "a", "good dog ran", "bad", "the mat"];
        let task = TokenizedTask::new(&data(&texts), &tokenizer).unwrap();
        let in_order: Vec<usize> = task
            .eval_batches(0, 2, false)
            .flat_map(|b| b.examples)
            .collect();
        assert_eq!(in_order, [0, 1, 2, 3, 4]);
        let by_length: Vec<TaskBatch> = task.eval_batches(0, 2, true).collect();
        assert_eq!(by_length.len(), 3);
        let lengths: Vec<usize> = by_length
            .iter()
            .flat_map(|b| b.examples.iter().map(|&i| task.lengths()[i]))
            .collect();
        assert!(lengths.windows(2).all(|w| w[0] <= w[1]), "{lengths:?}");
    }

    #[test]
    fn targets_become_an_int_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let task = TokenizedTask::new(&data(&["a", "b", "c"]), &tokenizer(dir.path(), 8)).unwrap();
        let batch = task.batch(0, &[0, 1, 2]);
        let device = mtl_bert::Backend::default_compiled().device(0).unwrap();
        let targets = batch
            .targets(&device)
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .unwrap();
        assert_eq!(targets, [0, 1, 0]);
    }
}
