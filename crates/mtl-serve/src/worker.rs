//! The model's thread: it loads the model, warms it up, then takes the queued requests,
//! batches their texts together and answers each request with its own results.
//!
//! Dynamic batching, fair by request ([`crate::queue`]): requests take turns, each batch
//! starting with the longest remaining texts of the request whose turn it is, topped up with
//! other requests' texts, within `max_batch_tokens` padded tokens. A request is
//! answered as soon as its last text is done, so one request's texts may span several batches,
//! and a batch may hold texts of several requests. Before each batch, the requests whose
//! client has gone (the handler, and with it the reply's receiver, dropped: a hang-up or a
//! request timeout) are dropped with their texts. A batch that fails fails only the requests
//! whose texts it held.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant;

use mtl_bert::burn::prelude::Device;
use mtl_bert::{BertTokenizer, Encoding, Pooling, Precision, SentenceEncoder};
use mtl_model::{MtlConfig, MultiTaskClassifier, Prediction};
use tokenizers::Tokenizer;
use tokenizers::utils::truncation::TruncationDirection;
use tokio::sync::oneshot;

use crate::error::Error;
use crate::metrics::Metrics;
use crate::queue::FairQueue;

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

/// What a request wants done with its tokenized inputs, and where the answer goes.
pub(crate) enum Reply {
    /// Embed them (not normalised).
    Embed(EmbedReply),
    /// Predict every task (texts or text pairs tokenized by the classifier's tokenizer).
    Predict(PredictReply),
}

/// One request's work.
pub(crate) struct Job {
    /// Its inputs, tokenized (what truncation cut off already dropped).
    pub encodings: Vec<Encoding>,
    /// What to do with them and where the answer goes.
    pub reply: Reply,
}

/// A batch's kind of work: a batch holds one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Embed,
    Predict,
}

/// A request taken off the channel and not yet answered.
struct Open {
    answers: Answers,
    /// Its texts not yet done.
    remaining: usize,
}

/// A request's answers so far, and where they go.
enum Answers {
    Embed(Vec<Vec<f32>>, EmbedReply),
    Predict(Vec<Vec<Prediction>>, PredictReply),
}

/// One text's result.
#[derive(Clone)]
enum Output {
    Embedding(Vec<f32>),
    Predictions(Vec<Prediction>),
}

impl Open {
    fn new(reply: Reply, texts: usize) -> Self {
        let answers = match reply {
            Reply::Embed(reply) => Answers::Embed(vec![Vec::new(); texts], reply),
            Reply::Predict(reply) => Answers::Predict(vec![Vec::new(); texts], reply),
        };
        Self {
            answers,
            remaining: texts,
        }
    }

    /// Whether its client has gone (the handler dropped the reply's receiver).
    fn is_closed(&self) -> bool {
        match &self.answers {
            Answers::Embed(_, reply) => reply.is_closed(),
            Answers::Predict(_, reply) => reply.is_closed(),
        }
    }

    /// Keeps text `index`'s result; `true` when it was the last.
    fn done(&mut self, index: usize, output: Output) -> bool {
        match (&mut self.answers, output) {
            (Answers::Embed(rows, _), Output::Embedding(row)) => rows[index] = row,
            (Answers::Predict(rows, _), Output::Predictions(row)) => rows[index] = row,
            _ => unreachable!("a batch holds its requests' own kind of work"),
        }
        self.remaining -= 1;
        self.remaining == 0
    }

    /// Sends the answers (every text done).
    fn answer(self) {
        match self.answers {
            Answers::Embed(rows, reply) => drop(reply.send(Ok(rows))),
            Answers::Predict(rows, reply) => drop(reply.send(Ok(rows))),
        }
    }

    /// Sends `message` instead.
    fn fail(self, message: String) {
        match self.answers {
            Answers::Embed(_, reply) => drop(reply.send(Err(message))),
            Answers::Predict(_, reply) => drop(reply.send(Err(message))),
        }
    }
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
    /// directory holds a multi-task model, its heads), warms it up (see [`warm_up`]), sends its
    /// [`ModelInfo`] (or the load error) to `ready`, then serves jobs until every [`Worker`]
    /// handle is dropped.
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
                let started = Instant::now();
                warm_up(&models, max_batch_tokens);
                tracing::info!(seconds = started.elapsed().as_secs_f64(), "model warmed up");
                let _ = ready.send(Ok(info(&models)));
                run(&models, &queue, max_batch_tokens, &thread_metrics);
            })?;
        Ok((Self { jobs, metrics }, thread))
    }

    /// A handle on `jobs`, for tests without a model.
    #[cfg(test)]
    pub(crate) fn for_tests(jobs: mpsc::Sender<Job>) -> Self {
        Self {
            jobs,
            metrics: Arc::new(Metrics::new()),
        }
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

/// Runs one batch of each shape class the server will see before it says it is ready: one
/// short text, one text of the model's maximum length, and a full batch of those (and the
/// same through the heads of a multi-task model). The first batches of a fresh process pay
/// for allocations, thread start-up, int8's first packing and a GPU backend's kernel
/// compilation; they are paid here, not by the first clients.
fn warm_up(models: &Models, max_batch_tokens: usize) {
    let inputs = |tokenizer: &BertTokenizer| -> Vec<Vec<Encoding>> {
        let max = tokenizer.max_length().max(1);
        let long = "warm up ".repeat(max);
        let encode = |text: &str, count: usize| {
            tokenizer
                .encode(&vec![text; count])
                .map(|mut encodings| {
                    encodings
                        .iter_mut()
                        .for_each(|e| drop(e.take_overflowing()));
                    encodings
                })
                .unwrap_or_default()
        };
        vec![
            encode("warm up", 1),
            encode(&long, 1),
            encode(&long, (max_batch_tokens / max).max(1)),
        ]
    };
    let encoder = &models.encoder;
    for batch in inputs(encoder.tokenizer()) {
        let _ = embed_batch(encoder, batch);
    }
    if let Some(classifier) = &models.classifier {
        for batch in inputs(classifier.tokenizer()) {
            let _ = classifier.predict_encodings(batch, None, usize::MAX);
        }
    }
}

/// Serves jobs until the channel is closed (every [`Worker`] dropped).
fn run(models: &Models, jobs: &mpsc::Receiver<Job>, max_batch_tokens: usize, metrics: &Metrics) {
    let mut queue: FairQueue<Kind, Encoding> = FairQueue::new();
    let mut open: HashMap<u64, Open> = HashMap::new();
    let mut next_key = 0u64;
    let mut admit = |job: Job, queue: &mut FairQueue<Kind, Encoding>, open: &mut HashMap<_, _>| {
        let kind = match &job.reply {
            Reply::Embed(_) => Kind::Embed,
            Reply::Predict(_) => Kind::Predict,
        };
        let request = Open::new(job.reply, job.encodings.len());
        if job.encodings.is_empty() {
            metrics.queue_depth.dec();
            request.answer();
            return;
        }
        let key = next_key;
        next_key += 1;
        open.insert(key, request);
        queue.push(key, kind, job.encodings, Encoding::len);
    };
    loop {
        // Wait for a request when nothing is queued; take every one that has arrived.
        if queue.is_empty() {
            let Ok(job) = jobs.recv() else { return };
            admit(job, &mut queue, &mut open);
        }
        jobs.try_iter()
            .for_each(|job| admit(job, &mut queue, &mut open));
        // Requests whose client has gone, or that failed, leave with their texts.
        let (gone, texts) = queue.drop_gone(|key| open.get(&key).is_none_or(Open::is_closed));
        for key in gone {
            if open.remove(&key).is_some() {
                metrics.queue_depth.dec();
            }
        }
        metrics.texts_dropped.inc_by(texts as u64);
        let Some(batch) = queue.next_batch(max_batch_tokens) else {
            continue;
        };
        fault_point();
        metrics.batch_size.observe(batch.texts.len() as f64);
        metrics.texts.inc_by(batch.texts.len() as u64);
        metrics
            .tokens
            .inc_by(batch.texts.iter().map(|(_, _, e)| e.len() as u64).sum());
        let owners: Vec<(u64, usize)> = batch.texts.iter().map(|&(k, i, _)| (k, i)).collect();
        let encodings: Vec<Encoding> = batch.texts.into_iter().map(|(_, _, e)| e).collect();
        let outputs = match batch.kind {
            Kind::Embed => embed_batch(&models.encoder, encodings),
            Kind::Predict => match &models.classifier {
                Some(classifier) => predict_batch(classifier, encodings),
                None => vec![Err("this model has no tasks".into()); owners.len()],
            },
        };
        for (&(key, index), output) in owners.iter().zip(outputs) {
            let Some(request) = open.get_mut(&key) else {
                continue; // it failed earlier in this batch
            };
            let finished = match output {
                Ok(output) => request.done(index, output).then_some(Ok(())),
                Err(message) => Some(Err(format!("input {index}: {message}"))),
            };
            if let Some(outcome) = finished {
                let request = open.remove(&key).expect("the request is open");
                metrics.queue_depth.dec();
                match outcome {
                    Ok(()) => request.answer(),
                    Err(message) => request.fail(message),
                }
            }
        }
    }
}

/// Test hook for fault tests: with `MTL_SERVE_FAULT_AT_BATCH=N` in the environment, the model
/// thread panics just before its `N`-th batch (1-based, warm-up not counted), as a GPU running
/// out of memory does. Without the variable it does nothing.
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

/// Embeds one batch (pooled, not normalised): each text's embedding, or why it has none (a
/// failed batch fails each of its texts; a non-finite row fails its own).
fn embed_batch(encoder: &SentenceEncoder, encodings: Vec<Encoding>) -> Vec<Result<Output, String>> {
    let count = encodings.len();
    let rows = encoder
        .tokenizer()
        .pad(encodings)
        .and_then(|padded| encoder.embed_batch(&padded, encoder.defaults().pooling, false));
    match rows {
        Ok(values) => values
            .chunks_exact(encoder.dim())
            .map(|row| {
                if row.iter().all(|v| v.is_finite()) {
                    Ok(Output::Embedding(row.to_vec()))
                } else {
                    Err("the model produced a non-finite embedding (NaN or infinity)".into())
                }
            })
            .collect(),
        Err(e) => vec![Err(e.to_string()); count],
    }
}

/// Predicts every task for one batch: each input's predictions, or why it has none. An input
/// whose probabilities are not finite fails alone: the batch runs again without it.
fn predict_batch(
    classifier: &MultiTaskClassifier,
    encodings: Vec<Encoding>,
) -> Vec<Result<Output, String>> {
    let mut outputs: Vec<Option<Result<Output, String>>> =
        (0..encodings.len()).map(|_| None).collect();
    // Positions in the batch still to predict.
    let mut positions: Vec<usize> = (0..encodings.len()).collect();
    while !positions.is_empty() {
        let batch: Vec<Encoding> = positions.iter().map(|&p| encodings[p].clone()).collect();
        match classifier.predict_encodings(batch, None, usize::MAX) {
            Ok(predictions) => {
                for (&p, row) in positions.iter().zip(predictions) {
                    outputs[p] = Some(Ok(Output::Predictions(row)));
                }
                positions.clear();
            }
            Err(mtl_model::Error::NonFinite { text, task }) => {
                let p = positions.remove(text);
                outputs[p] = Some(Err(format!(
                    "the model produced a non-finite probability (NaN or infinity) for task \
                     {task}"
                )));
            }
            Err(e) => {
                for &p in &positions {
                    outputs[p] = Some(Err(e.to_string()));
                }
                positions.clear();
            }
        }
    }
    outputs
        .into_iter()
        .map(|o| o.expect("every input has an outcome"))
        .collect()
}
