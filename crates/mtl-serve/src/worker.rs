//! The model's thread: it loads the model, then takes the queued requests, batches them
//! together and answers each with its own results.
//!
//! Dynamic batching: whenever the thread is free it takes every request waiting in the queue,
//! sorts all their texts by length (longest first, as [`mtl_bert::SentenceEncoder`] does) and
//! runs them in batches of at most `max_batch_tokens` padded tokens; a request is answered as
//! soon as its last text is done, so one request's texts may span several batches, and a batch
//! may hold texts of several requests. Before each batch, the texts of requests whose client
//! has gone (the handler, and with it the reply's receiver, dropped) are left out.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;

use mtl_bert::burn::prelude::Device;
use mtl_bert::{BertTokenizer, Encoding, Pooling, Precision, SentenceEncoder};
use mtl_model::{MtlConfig, MultiTaskClassifier, Prediction};
use tokenizers::Tokenizer;
use tokenizers::utils::truncation::TruncationDirection;
use tokio::sync::oneshot;

use crate::error::Error;
use crate::metrics::Metrics;
use crate::tei_api::Sequence;

/// What the model thread knows once the model is loaded.
#[derive(Debug, Clone)]
pub(crate) struct ModelInfo {
    /// The embedding width.
    pub dim: usize,
    /// The pooling of the embeddings.
    pub pooling: Pooling,
    /// Whether the model's embeddings are L2-normalised by default.
    pub normalize: bool,
    /// The longest input, in tokens (longer ones are truncated).
    pub max_input_tokens: usize,
    /// The encoder's tokenizer (tokenizing happens on the request's thread).
    pub tokenizer: BertTokenizer,
    /// The same, cutting a too-long input's beginning (TEI's `truncation_direction: Left`).
    pub tokenizer_left: Tokenizer,
    /// The same, not truncating (`/tokenize`).
    pub tokenizer_whole: Tokenizer,
    /// The model's vocabulary and token type sizes, to check token ids.
    pub vocab_size: usize,
    /// See `vocab_size`.
    pub type_vocab_size: usize,
    /// The tasks of a multi-task model (`None` for an embedding model).
    pub tasks: Option<MtlConfig>,
    /// The multi-task model's tokenizer (its own max length).
    pub task_tokenizer: Option<BertTokenizer>,
    /// How the encoder computes, in words (`fp32`, or `int8 (KERNEL)`).
    pub precision: String,
}

/// Where a request's embeddings go, in its texts' order (or why there are none).
pub(crate) type EmbedReply = oneshot::Sender<Result<Vec<Vec<f32>>, String>>;

/// Where a request's predictions go: per input, per task in the model's order.
pub(crate) type PredictReply = oneshot::Sender<Result<Vec<Vec<Prediction>>, String>>;

/// One request's work.
pub(crate) enum Job {
    /// Embed these tokenized texts (not normalised).
    Embed {
        /// The texts' tokenizations.
        encodings: Vec<Encoding>,
        /// Where the embeddings go.
        reply: EmbedReply,
    },
    /// Predict every task for these inputs (texts or text pairs).
    Predict {
        /// The inputs.
        inputs: Vec<Sequence>,
        /// Where the predictions go.
        reply: PredictReply,
    },
}

/// The handle requests use to reach the model thread.
#[derive(Clone)]
pub(crate) struct Worker {
    jobs: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
}

/// The loaded models, owned by the model thread.
struct Models {
    encoder: SentenceEncoder,
    classifier: Option<MultiTaskClassifier>,
}

impl Worker {
    /// Starts the model thread: it loads the model in `dir` on `device` (and, when the
    /// directory holds a multi-task model, its heads), sends its [`ModelInfo`] (or the load
    /// error) to `ready`, then serves jobs until every [`Worker`] handle is dropped.
    pub(crate) fn start(
        dir: PathBuf,
        device: Device,
        precision: Precision,
        max_batch_tokens: usize,
        metrics: Arc<Metrics>,
        ready: oneshot::Sender<Result<ModelInfo, Error>>,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (jobs, queue) = mpsc::channel();
        let thread_metrics = metrics.clone();
        let thread = std::thread::Builder::new()
            .name("mtl-serve-model".into())
            .spawn(move || {
                let models = match load(&dir, &device, precision) {
                    Ok(models) => models,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                let _ = ready.send(Ok(info(&models)));
                run(&models, &queue, max_batch_tokens, &thread_metrics);
            })?;
        Ok((Self { jobs, metrics }, thread))
    }

    /// Queues a job; `false` when the model thread has stopped.
    pub(crate) fn submit(&self, job: Job) -> bool {
        self.metrics.queue_depth.inc();
        let sent = self.jobs.send(job).is_ok();
        if !sent {
            self.metrics.queue_depth.dec();
        }
        sent
    }
}

/// Loads the model; a multi-task model's encoder is loaded once, by its classifier, and shared
/// with the embedding routes.
fn load(dir: &std::path::Path, device: &Device, precision: Precision) -> Result<Models, Error> {
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| Error::Load {
        dir: dir.to_path_buf(),
        source,
    };
    if dir.join(mtl_model::CONFIG_FILE).is_file() {
        let classifier = MultiTaskClassifier::load_with_precision(dir, device, precision)
            .map_err(|e| failed(Box::new(e)))?;
        let encoder = SentenceEncoder::with_model(dir, classifier.model.encoder.clone())
            .map_err(|e| failed(Box::new(e)))?;
        Ok(Models {
            encoder,
            classifier: Some(classifier),
        })
    } else {
        let encoder = SentenceEncoder::load_with_precision(dir, device, precision)
            .map_err(|e| failed(Box::new(e)))?;
        Ok(Models {
            encoder,
            classifier: None,
        })
    }
}

fn info(models: &Models) -> ModelInfo {
    let encoder = &models.encoder;
    let mut tokenizer_left = encoder.tokenizer().inner().clone();
    if let Some(mut truncation) = tokenizer_left.get_truncation().cloned() {
        truncation.direction = TruncationDirection::Left;
        tokenizer_left
            .with_truncation(Some(truncation))
            .expect("the tokenizer's own truncation, cut from the other end, is valid");
    }
    let mut tokenizer_whole = encoder.tokenizer().inner().clone();
    tokenizer_whole
        .with_truncation(None)
        .expect("no truncation is valid");
    ModelInfo {
        tokenizer_left,
        tokenizer_whole,
        dim: encoder.dim(),
        pooling: encoder.defaults().pooling,
        normalize: encoder.defaults().normalize,
        max_input_tokens: encoder.tokenizer().max_length(),
        tokenizer: encoder.tokenizer().clone(),
        vocab_size: encoder.config().vocab_size,
        type_vocab_size: encoder.config().type_vocab_size,
        tasks: models.classifier.as_ref().map(|c| c.config().clone()),
        task_tokenizer: models.classifier.as_ref().map(|c| c.tokenizer().clone()),
        precision: encoder.precision().describe(),
    }
}

/// Serves jobs until the queue is closed.
fn run(models: &Models, queue: &mpsc::Receiver<Job>, max_batch_tokens: usize, metrics: &Metrics) {
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        jobs.extend(queue.try_iter());
        metrics.queue_depth.dec_by(jobs.len() as i64);
        let mut embeds = Vec::new();
        let mut predicts = Vec::new();
        for job in jobs {
            match job {
                Job::Embed { encodings, reply } => embeds.push((encodings, reply)),
                Job::Predict { inputs, reply } => predicts.push((inputs, reply)),
            }
        }
        if !embeds.is_empty() {
            embed(&models.encoder, embeds, max_batch_tokens, metrics);
        }
        if !predicts.is_empty() {
            match &models.classifier {
                Some(classifier) => predict(classifier, predicts, max_batch_tokens, metrics),
                None => predicts.into_iter().for_each(|(_, reply)| {
                    let _ = reply.send(Err("this model has no tasks".into()));
                }),
            }
        }
    }
}

/// Test hook for fault tests: with `MTL_SERVE_FAULT_AT_BATCH=N` in the environment, the model
/// thread panics just before its `N`-th batch (1-based), as a GPU running out of memory does.
/// Without the variable it does nothing.
fn fault_point() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static BATCHES: AtomicU64 = AtomicU64::new(0);
    let Some(at) = std::env::var("MTL_SERVE_FAULT_AT_BATCH")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    if BATCHES.fetch_add(1, Ordering::SeqCst) + 1 == at {
        panic!("MTL_SERVE_FAULT_AT_BATCH={at}: the model thread fails at batch {at}");
    }
}

/// Texts per padded batch: as many of the longest remaining as fit in `max_batch_tokens`
/// padded tokens (at least one).
fn batch_sizes(lengths_desc: &[usize], max_batch_tokens: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut start = 0;
    while start < lengths_desc.len() {
        let longest = lengths_desc[start].max(1);
        let size = (max_batch_tokens / longest).clamp(1, lengths_desc.len() - start);
        sizes.push(size);
        start += size;
    }
    sizes
}

/// Embeds the texts of every job together, longest first, and answers each job when its last
/// text is done; the texts of a job whose client has gone are dropped before they run.
fn embed(
    encoder: &SentenceEncoder,
    jobs: Vec<(Vec<Encoding>, EmbedReply)>,
    max_batch_tokens: usize,
    metrics: &Metrics,
) {
    let pooling = encoder.defaults().pooling;
    let mut results: Vec<Vec<Vec<f32>>> = jobs
        .iter()
        .map(|(e, _)| vec![Vec::new(); e.len()])
        .collect();
    let mut remaining: Vec<usize> = jobs.iter().map(|(e, _)| e.len()).collect();
    let mut replies: Vec<Option<_>> = Vec::with_capacity(jobs.len());
    let mut texts: Vec<(usize, usize, Encoding)> = Vec::new();
    for (job, (encodings, reply)) in jobs.into_iter().enumerate() {
        texts.extend(encodings.into_iter().enumerate().map(|(i, e)| (job, i, e)));
        replies.push(Some(reply));
    }
    for (job, reply) in replies.iter_mut().enumerate() {
        if remaining[job] == 0 {
            let _ = reply.take().map(|r| r.send(Ok(Vec::new())));
        }
    }
    texts.sort_by_key(|(_, _, e)| std::cmp::Reverse(e.len()));
    let lengths: Vec<usize> = texts.iter().map(|(_, _, e)| e.len()).collect();
    let mut texts = texts.into_iter();
    for size in batch_sizes(&lengths, max_batch_tokens) {
        // Texts of a request whose client has gone (its reply's receiver dropped), or that
        // already failed, are dropped here, before the model runs them.
        let (batch, dropped): (Vec<_>, Vec<_>) =
            texts
                .by_ref()
                .take(size)
                .partition(|(job, _, _): &(usize, usize, Encoding)| {
                    replies[*job].as_ref().is_some_and(|r| !r.is_closed())
                });
        metrics.texts_dropped.inc_by(dropped.len() as u64);
        if batch.is_empty() {
            continue;
        }
        fault_point();
        metrics.batch_size.observe(batch.len() as f64);
        metrics
            .tokens
            .inc_by(batch.iter().map(|(_, _, e)| e.len() as u64).sum());
        metrics.texts.inc_by(batch.len() as u64);
        let owners: Vec<(usize, usize)> = batch.iter().map(|(j, i, _)| (*j, *i)).collect();
        let encodings = batch.into_iter().map(|(_, _, e)| e).collect();
        let rows = encoder
            .tokenizer()
            .pad(encodings)
            .and_then(|padded| encoder.embed_batch(&padded, pooling, false));
        let dim = encoder.dim();
        for (k, &(job, i)) in owners.iter().enumerate() {
            if replies[job].is_none() {
                continue; // already answered with an error
            }
            let outcome = match &rows {
                Ok(values) => {
                    let row = &values[k * dim..(k + 1) * dim];
                    if row.iter().all(|v| v.is_finite()) {
                        Ok(row.to_vec())
                    } else {
                        Err(format!(
                            "input {i}: the model produced a non-finite embedding (NaN or infinity)"
                        ))
                    }
                }
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(row) => {
                    results[job][i] = row;
                    remaining[job] -= 1;
                    if remaining[job] == 0 {
                        let rows = std::mem::take(&mut results[job]);
                        let _ = replies[job].take().map(|r| r.send(Ok(rows)));
                    }
                }
                Err(message) => {
                    let _ = replies[job].take().map(|r| r.send(Err(message)));
                }
            }
        }
    }
}

/// Predicts the inputs of every job together (the classifier sorts and batches the texts,
/// then the pairs), and answers each job with its own.
fn predict(
    classifier: &MultiTaskClassifier,
    jobs: Vec<(Vec<Sequence>, PredictReply)>,
    max_batch_tokens: usize,
    metrics: &Metrics,
) {
    let inputs: Vec<&Sequence> = jobs.iter().flat_map(|(inputs, _)| inputs).collect();
    let singles: Vec<&str> = inputs
        .iter()
        .filter_map(|s| match s {
            Sequence::Single(a) => Some(a.as_str()),
            Sequence::Pair(..) => None,
        })
        .collect();
    let pairs: Vec<(&str, &str)> = inputs
        .iter()
        .filter_map(|s| match s {
            Sequence::Pair(a, b) => Some((a.as_str(), b.as_str())),
            Sequence::Single(_) => None,
        })
        .collect();
    let batch_size = (max_batch_tokens / classifier.tokenizer().max_length()).max(1);
    fault_point();
    metrics
        .batch_size
        .observe(inputs.len().min(batch_size) as f64);
    metrics.texts.inc_by(inputs.len() as u64);
    let predicted = (|| {
        let mut singles = if singles.is_empty() {
            Vec::new()
        } else {
            classifier.predict(&singles, None, batch_size)?
        }
        .into_iter();
        let mut pairs = if pairs.is_empty() {
            Vec::new()
        } else {
            classifier.predict_pairs(&pairs, None, batch_size)?
        }
        .into_iter();
        // Back in the inputs' order: each kind's answers come in that kind's order.
        Ok::<_, mtl_model::Error>(
            inputs
                .iter()
                .map(|s| match s {
                    Sequence::Single(_) => singles.next(),
                    Sequence::Pair(..) => pairs.next(),
                })
                .map(|p| p.expect("one answer per input"))
                .collect::<Vec<_>>(),
        )
    })();
    match predicted {
        Ok(mut predictions) => {
            for (inputs, reply) in jobs.into_iter().rev() {
                let mine = predictions.split_off(predictions.len() - inputs.len());
                let _ = reply.send(Ok(mine));
            }
        }
        Err(e) => {
            for (_, reply) in jobs {
                let _ = reply.send(Err(e.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_fill_the_token_budget_longest_first() {
        assert_eq!(batch_sizes(&[100, 50, 50, 10, 10, 10], 200), [2, 4]);
        assert_eq!(batch_sizes(&[300, 10], 200), [1, 1]);
        assert_eq!(batch_sizes(&[], 200), Vec::<usize>::new());
        assert_eq!(batch_sizes(&[5; 10], 20), [4, 4, 2]);
    }
}
