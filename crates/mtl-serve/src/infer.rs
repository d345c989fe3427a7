//! Between the handlers and the model thread, as TEI's `Infer` sits between its router and its
//! queue: the handlers parse requests and shape answers; [`Infer`] checks the inputs, takes a
//! permit, tokenizes on a bounded pool of blocking threads and queues the work for the model
//! thread ([`crate::worker`]), which batches it.

use std::sync::Arc;

use axum::http::StatusCode;
use mtl_bert::{BertTokenizer, Encoding};
use mtl_model::Prediction;
use tokenizers::{EncodeInput, Tokenizer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::Limits;
use crate::error::ApiError;
use crate::tei_api::{Sequence, TruncationDirection};
use crate::worker::{Job, ModelInfo, Reply, Worker};

/// How inputs are cut to the model's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Truncation {
    /// Cut too-long inputs; without, they are a 422.
    pub truncate: bool,
    /// Which end is cut.
    pub direction: TruncationDirection,
}

impl Default for Truncation {
    /// Cut, at the end: the default of every route.
    fn default() -> Self {
        Self {
            truncate: true,
            direction: TruncationDirection::Right,
        }
    }
}

/// Inputs tokenized per task on a tokenization worker.
pub(crate) const TOKENIZE_CHUNK: usize = 32;

/// The way from a handler to the model thread.
pub(crate) struct Infer {
    worker: Worker,
    limits: Limits,
    /// Model requests in flight (`max_concurrent_requests`).
    permits: Arc<Semaphore>,
    /// Tokenizations running at once (`tokenization_workers`): more wait for a slot, so
    /// tokenizing never takes more threads than that from the model.
    tokenizers: Arc<Semaphore>,
}

impl Infer {
    pub(crate) fn new(worker: Worker, limits: Limits) -> Self {
        Self {
            worker,
            permits: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
            tokenizers: Arc::new(Semaphore::new(limits.tokenization_workers.max(1))),
            limits,
        }
    }

    /// The server's limits.
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A permit for one model request: at most `max_concurrent_requests` are in flight; more
    /// are answered 429 at once (with `Retry-After`), so a flood never queues unbounded work or
    /// memory. Taken once the body is read and checked, so a client that is slow to send its
    /// body holds none.
    pub(crate) fn permit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "the server has {} requests in flight, its limit: retry later",
                    self.limits.max_concurrent_requests
                ),
            )
        })
    }

    /// Checks the number of texts and their sizes: none is TEI's `Empty` (400), too many or
    /// too long 413, an empty string 422.
    pub(crate) fn check_texts(&self, texts: &[String]) -> Result<(), ApiError> {
        check_texts(texts, &self.limits)
    }

    /// Runs `work` (a tokenization) on a blocking thread once one of the
    /// `tokenization_workers` slots is free.
    pub(crate) async fn tokenizing<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        let _slot = self
            .tokenizers
            .acquire()
            .await
            .map_err(|_| ApiError::internal("the tokenization pool is closed"))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| ApiError::internal(format!("tokenizing: {e}")))
    }

    /// Tokenizes `inputs` on the tokenization workers, [`TOKENIZE_CHUNK`] inputs per task: a
    /// big request takes a worker for one chunk at a time, so a small request that arrives
    /// behind it waits for a chunk, not for the whole request.
    pub(crate) async fn encode<I>(
        &self,
        tokenizer: Tokenizer,
        inputs: Vec<I>,
        add_special_tokens: bool,
    ) -> Result<Vec<Encoding>, ApiError>
    where
        I: Into<EncodeInput<'static>> + Send + 'static,
    {
        let tokenizer = Arc::new(tokenizer);
        let mut encodings = Vec::with_capacity(inputs.len());
        let mut inputs = inputs.into_iter().peekable();
        while inputs.peek().is_some() {
            let chunk: Vec<I> = inputs.by_ref().take(TOKENIZE_CHUNK).collect();
            let tokenizer = tokenizer.clone();
            let done = self
                .tokenizing(move || encode_serially(&tokenizer, chunk, add_special_tokens))
                .await?
                .map_err(|e| ApiError::invalid(format!("tokenizing: {e}")).tokenizer())?;
            encodings.extend(done);
        }
        Ok(encodings)
    }

    /// Checks, tokenizes and embeds `texts`: the raw (not normalised) embeddings, in order,
    /// and the number of tokens read.
    pub(crate) async fn embed(
        &self,
        model: &ModelInfo,
        texts: Vec<String>,
        truncation: Truncation,
    ) -> Result<(Vec<Vec<f32>>, usize), ApiError> {
        self.check_texts(&texts)?;
        let _permit = self.permit()?;
        let tokenizer = match truncation.direction {
            TruncationDirection::Right => model.tokenizer.inner().clone(),
            TruncationDirection::Left => model.tokenizer_left.clone(),
        };
        let encodings = self.encode(tokenizer, texts, true).await?;
        let encodings = checked(
            model,
            encodings,
            truncation.truncate,
            model.max_input_tokens,
        )?;
        let tokens = encodings.iter().map(Encoding::len).sum();
        let (reply, answer) = oneshot::channel();
        self.submit(Job {
            encodings,
            reply: Reply::Embed(reply),
        })?;
        let rows = answer
            .await
            .map_err(|_| ApiError::internal("the model thread stopped"))?
            .map_err(ApiError::internal)?;
        Ok((rows, tokens))
    }

    /// Checks, tokenizes (pairs as BERT pairs, with the classifier's tokenizer) and predicts
    /// every task for `inputs`: per input, per task in the model's order.
    pub(crate) async fn predict(
        &self,
        model: &ModelInfo,
        tokenizer: &BertTokenizer,
        inputs: Vec<Sequence>,
        truncate: bool,
    ) -> Result<Vec<Vec<Prediction>>, ApiError> {
        let texts: Vec<String> = inputs
            .iter()
            .flat_map(Sequence::texts)
            .map(str::to_owned)
            .collect();
        self.check_texts(&texts)?;
        let _permit = self.permit()?;
        let encode: Vec<EncodeInput> = inputs
            .into_iter()
            .map(|s| match s {
                Sequence::Single(a) => EncodeInput::from(a),
                Sequence::Pair(a, b) => EncodeInput::from((a, b)),
            })
            .collect();
        let inner = tokenizer.inner().clone();
        let encodings = self.encode(inner, encode, true).await?;
        let encodings = checked(model, encodings, truncate, tokenizer.max_length())?;
        let (reply, answer) = oneshot::channel();
        self.submit(Job {
            encodings,
            reply: Reply::Predict(reply),
        })?;
        answer
            .await
            .map_err(|_| ApiError::internal("the model thread stopped"))?
            .map_err(ApiError::internal)
    }

    fn submit(&self, job: Job) -> Result<(), ApiError> {
        if self.worker.submit(job) {
            Ok(())
        } else {
            Err(ApiError::internal("the model thread has stopped"))
        }
    }
}

/// Tokenizes `inputs` one after the other on this thread. `Tokenizer::encode_batch` would
/// spread them over rayon's pool, the pool the model's kernels run on: there, a request's
/// tokenizing waited behind the model's work and the model's behind it. The tokenization
/// workers are the parallelism, across requests.
pub(crate) fn encode_serially<'a, I: Into<EncodeInput<'a>>>(
    tokenizer: &Tokenizer,
    inputs: Vec<I>,
    add_special_tokens: bool,
) -> tokenizers::Result<Vec<Encoding>> {
    inputs
        .into_iter()
        .map(|input| tokenizer.encode(input, add_special_tokens))
        .collect()
}

/// See [`Infer::check_texts`].
fn check_texts(texts: &[String], limits: &Limits) -> Result<(), ApiError> {
    if texts.is_empty() {
        return Err(ApiError::empty("no input: give at least one text"));
    }
    if texts.len() > limits.max_inputs {
        return Err(ApiError::too_large(format!(
            "{} inputs, more than the limit of {} per request",
            texts.len(),
            limits.max_inputs
        )));
    }
    for (i, text) in texts.iter().enumerate() {
        if text.is_empty() {
            return Err(ApiError::invalid(format!("input {i} is an empty string")));
        }
        let chars = text.chars().count();
        if chars > limits.max_input_chars {
            return Err(ApiError::too_large(format!(
                "input {i} has {chars} characters, more than the limit of {}",
                limits.max_input_chars
            )));
        }
    }
    Ok(())
}

/// Checks token ids against the model's tables, and without `truncate` that no input was cut
/// (`max_tokens` names the limit); then drops what truncation cut off, which would otherwise
/// ride along to the model thread (a 100,000-character input carries about 25,000 tokens).
fn checked(
    model: &ModelInfo,
    mut encodings: Vec<Encoding>,
    truncate: bool,
    max_tokens: usize,
) -> Result<Vec<Encoding>, ApiError> {
    BertTokenizer::check_ids(&encodings, model.vocab_size, model.type_vocab_size).map_err(|e| {
        match e {
            mtl_bert::Error::Text { index, problem } => {
                ApiError::invalid(format!("input {index}: {problem}")).tokenizer()
            }
            other => ApiError::internal(other.to_string()),
        }
    })?;
    if !truncate
        && let Some(i) = encodings
            .iter()
            .position(|e| !e.get_overflowing().is_empty())
    {
        return Err(ApiError::invalid(format!(
            "input {i} is longer than the model's {max_tokens} tokens; shorten it or send \
             `truncate: true`"
        ))
        .tokenizer());
    }
    encodings
        .iter_mut()
        .for_each(|e| drop(e.take_overflowing()));
    Ok(encodings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_texts_is_empty_and_too_many_is_too_large() {
        let limits = Limits {
            max_inputs: 2,
            ..Limits::default()
        };
        assert_eq!(
            check_texts(&[], &limits).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        let three = vec!["a".to_owned(); 3];
        assert_eq!(
            check_texts(&three, &limits).unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let blank = vec![String::new()];
        assert_eq!(
            check_texts(&blank, &limits).unwrap_err().status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let long = vec!["é".repeat(limits.max_input_chars + 1)];
        assert_eq!(
            check_texts(&long, &limits).unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[tokio::test]
    async fn tokenizing_runs_at_most_the_pool_size_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (jobs, _queue) = std::sync::mpsc::channel();
        let worker = Worker::for_tests(jobs);
        let infer = Arc::new(Infer::new(
            worker,
            Limits {
                tokenization_workers: 2,
                ..Limits::default()
            },
        ));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (infer, running, most) = (infer.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    infer
                        .tokenizing(move || {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(20));
                            running.fetch_sub(1, Ordering::SeqCst);
                        })
                        .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
