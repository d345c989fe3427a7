//! The router: every route with the middleware around it (API key, request limit, metrics
//! and logs), the checks and model calls the handlers share, and the server's own routes
//! (`/health`, `/info`, `/metrics`, `/openapi.json`). TEI's handlers are in [`crate::tei`],
//! OpenAI's in [`crate::openai`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use mtl_bert::{BertTokenizer, Encoding, l2_normalize_row};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use utoipa::OpenApi;

use crate::api::{Health, Info, TaskInfo};
use crate::error::{ApiError, ErrorBody, Family, OpenAiErrorBody};
use crate::metrics::{Metrics, RequestLabels, RouteLabels};
use crate::prompts::Prompts;
use crate::tei_api::TruncationDirection;
use crate::worker::{Job, ModelInfo, Worker};
use crate::{Limits, ServeConfig, openai, tei};

/// What every request can reach.
pub(crate) struct Shared {
    pub(crate) model_name: String,
    pub(crate) backend: String,
    pub(crate) limits: Limits,
    pub(crate) api_key: Option<String>,
    /// `/metrics` needs no API key.
    pub(crate) public_metrics: bool,
    /// The model's prompts (TEI's `prompt_name`).
    pub(crate) prompts: Prompts,
    /// When the server started, in Unix seconds (`/v1/models`' `created`).
    pub(crate) started: u64,
    /// Set once the model is loaded.
    pub(crate) model: OnceLock<ModelInfo>,
    /// Set when the model thread has died.
    pub(crate) dead: Arc<AtomicBool>,
    pub(crate) worker: Worker,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) metrics: Arc<Metrics>,
}

pub(crate) type AppState = Arc<Shared>;

impl Shared {
    pub(crate) fn new(
        config: &ServeConfig,
        prompts: Prompts,
        worker: Worker,
        metrics: Arc<Metrics>,
        dead: Arc<AtomicBool>,
    ) -> Self {
        Self {
            model_name: config.model_name.clone(),
            backend: config.backend.clone(),
            limits: config.limits.clone(),
            api_key: config.api_key.clone(),
            public_metrics: config.public_metrics,
            prompts,
            started: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            model: OnceLock::new(),
            dead,
            worker,
            permits: Arc::new(Semaphore::new(config.limits.max_concurrent_requests)),
            metrics,
        }
    }

    /// The loaded model, or 503 while it loads or once its thread has died.
    pub(crate) fn model(&self) -> Result<&ModelInfo, ApiError> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the model thread has died: the server is stopping",
            ));
        }
        self.model.get().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the model is still loading",
            )
        })
    }
}

/// The OpenAPI document of the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "mtl serve",
        description = "Sentence embeddings and multi-task predictions: text-embeddings-inference's \
                       routes and OpenAI's embeddings API"
    ),
    paths(
        tei::root,
        tei::embed,
        tei::similarity,
        tei::predict,
        tei::tokenize,
        tei::decode,
        tei::rerank,
        openai::embeddings,
        openai::embeddings_alias,
        openai::models,
        health,
        info,
        metrics,
        openapi
    ),
    components(schemas(ErrorBody, OpenAiErrorBody))
)]
pub(crate) struct ApiDoc;

/// Every route with its middleware.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(health).post(tei::root))
        .route("/embed", post(tei::embed))
        .route("/predict", post(tei::predict))
        .route("/similarity", post(tei::similarity))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/embeddings", post(openai::embeddings_alias))
        .route("/health", get(health))
        .route("/info", get(info))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/tokenize", post(tei::tokenize))
        .route("/decode", post(tei::decode))
        .route("/rerank", post(tei::rerank))
        .route("/v1/models", get(openai::models))
        .fallback(|request: Request| async move {
            ApiError::new(StatusCode::NOT_FOUND, "no such route")
                .respond(Family::of_path(request.uri().path()))
        })
        .method_not_allowed_fallback(|request: Request| async move {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "this route takes another method",
            )
            .respond(Family::of_path(request.uri().path()))
        })
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Counts and logs every request: route, status, latency.
async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    let labels = RequestLabels {
        route: route.clone(),
        status,
    };
    state.metrics.requests.get_or_create(&labels).inc();
    state
        .metrics
        .latency
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(seconds);
    tracing::info!(%method, %route, status, latency_ms = seconds * 1e3, "request");
    response
}

/// With an API key set, every route but `/health` (and `/metrics` when public) needs
/// `Authorization: Bearer KEY`.
async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let open = path == "/health" || (state.public_metrics && path == "/metrics");
    if let Some(key) = &state.api_key
        && !open
    {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|given| same_secret(given.as_bytes(), key.as_bytes())) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong API key: send the header `Authorization: Bearer KEY`",
            )
            .respond(Family::of_path(request.uri().path()));
        }
    }
    next.run(request).await
}

/// Compares secrets in time that depends only on their lengths.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A permit for one model request: at most `max_concurrent_requests` are in flight; more are
/// answered 429 at once (with `Retry-After`), so a flood never queues unbounded work or memory.
/// Taken after the body is read and checked, so a client that is slow to send its body holds
/// none.
pub(crate) fn permit(state: &Shared) -> Result<OwnedSemaphorePermit, ApiError> {
    state.permits.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "the server has {} requests in flight, its limit: retry later",
                state.limits.max_concurrent_requests
            ),
        )
    })
}

/// Checks the number of texts and their sizes: none is TEI's `Empty` (400), too many or too
/// long 413, an empty string 422.
pub(crate) fn check_texts(texts: &[String], limits: &Limits) -> Result<(), ApiError> {
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

/// Tokenizes `texts` off the async threads (cutting them as `truncation` says); checks token
/// ids, and without `truncate` that no text is longer than the model's maximum.
async fn tokenize(
    model: &ModelInfo,
    texts: Vec<String>,
    truncation: Truncation,
) -> Result<Vec<Encoding>, ApiError> {
    let encodings = match truncation.direction {
        TruncationDirection::Right => {
            let tokenizer = model.tokenizer.clone();
            tokio::task::spawn_blocking(move || tokenizer.encode(&texts))
                .await
                .map_err(|e| ApiError::internal(format!("tokenizing: {e}")))?
                .map_err(|e| ApiError::invalid(format!("tokenizing: {e}")).tokenizer())?
        }
        TruncationDirection::Left => {
            let tokenizer = model.tokenizer_left.clone();
            tokio::task::spawn_blocking(move || tokenizer.encode_batch(texts, true))
                .await
                .map_err(|e| ApiError::internal(format!("tokenizing: {e}")))?
                .map_err(|e| ApiError::invalid(format!("tokenizing: {e}")).tokenizer())?
        }
    };
    check_encodings(model, &encodings, truncation.truncate)?;
    Ok(encodings)
}

/// Checks token ids against the model's tables, and without `truncate` that no input was cut.
pub(crate) fn check_encodings(
    model: &ModelInfo,
    encodings: &[Encoding],
    truncate: bool,
) -> Result<(), ApiError> {
    BertTokenizer::check_ids(encodings, model.vocab_size, model.type_vocab_size).map_err(|e| {
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
            "input {i} is longer than the model's {} tokens; shorten it or send `truncate: true`",
            model.max_input_tokens
        ))
        .tokenizer());
    }
    Ok(())
}

/// Checks and tokenizes `texts`, then embeds them on the model thread: the raw (not
/// normalised) embeddings, in order, and the number of tokens read.
pub(crate) async fn embed_texts(
    state: &Shared,
    model: &ModelInfo,
    texts: Vec<String>,
    truncation: Truncation,
) -> Result<(Vec<Vec<f32>>, usize), ApiError> {
    check_texts(&texts, &state.limits)?;
    let _permit = permit(state)?;
    let mut encodings = tokenize(model, texts, truncation).await?;
    // What truncation cut off is not needed past the checks: it would ride along to the
    // model thread (a 100,000-character input carries about 25,000 tokens).
    encodings
        .iter_mut()
        .for_each(|e| drop(e.take_overflowing()));
    let tokens = encodings.iter().map(Encoding::len).sum();
    let (reply, answer) = oneshot::channel();
    if !state.worker.submit(Job::Embed { encodings, reply }) {
        return Err(ApiError::internal("the model thread has stopped"));
    }
    let rows = answer
        .await
        .map_err(|_| ApiError::internal("the model thread stopped"))?
        .map_err(ApiError::internal)?;
    Ok((rows, tokens))
}

/// Checks a requested number of dimensions: 1 to the model's `dim` (422 otherwise).
pub(crate) fn check_dimensions(dimensions: Option<usize>, dim: usize) -> Result<(), ApiError> {
    match dimensions {
        Some(d) if !(1..=dim).contains(&d) => Err(ApiError::invalid(format!(
            "dimensions {d}: this model's embeddings have {dim} (give 1 to {dim})"
        ))
        .param("dimensions")),
        _ => Ok(()),
    }
}

/// Keeps the first `dimensions` values of each row (Matryoshka), then L2-normalises them
/// when `normalize`.
pub(crate) fn shape_rows(rows: &mut [Vec<f32>], dimensions: Option<usize>, normalize: bool) {
    for row in rows {
        if let Some(d) = dimensions {
            row.truncate(d);
        }
        if normalize {
            l2_normalize_row(row);
        }
    }
}

/// Reads the JSON body, or the error that says why it is not acceptable.
pub(crate) fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(value)| value).map_err(ApiError::from)
}

/// 200 once the model is loaded, 503 before.
#[utoipa::path(
    get,
    path = "/health",
    responses(
        (status = 200, description = "The model is loaded", body = Health),
        (status = 503, description = "The model is still loading", body = ErrorBody),
    )
)]
async fn health(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state.model()?;
    Ok(Json(Health {
        status: "ok".into(),
    }))
}

/// The model and the server's limits.
#[utoipa::path(
    get,
    path = "/info",
    responses(
        (status = 200, description = "The served model and limits", body = Info),
        (status = 503, description = "The model is still loading", body = ErrorBody),
    )
)]
async fn info(State(state): State<AppState>) -> Result<Json<Info>, ApiError> {
    let model = state.model()?;
    let limits = &state.limits;
    Ok(Json(Info {
        model: state.model_name.clone(),
        dim: model.dim,
        pooling: model.pooling.to_string(),
        normalize: model.normalize,
        max_input_tokens: model.max_input_tokens,
        tasks: model.tasks.as_ref().map_or_else(Vec::new, |config| {
            config
                .tasks
                .iter()
                .map(|t| TaskInfo {
                    name: t.name.clone(),
                    labels: t.labels.clone(),
                })
                .collect()
        }),
        backend: state.backend.clone(),
        precision: model.precision.clone(),
        max_batch_tokens: limits.max_batch_tokens,
        max_concurrent_requests: limits.max_concurrent_requests,
        max_inputs: limits.max_inputs,
        max_input_chars: limits.max_input_chars,
        max_body_bytes: limits.max_body_bytes,
        version: env!("CARGO_PKG_VERSION").into(),
    }))
}

/// Prometheus metrics: requests by route and status, latency and batch-size histograms, queue
/// depth, texts and tokens, texts dropped for clients that had gone.
#[utoipa::path(
    get,
    path = "/metrics",
    responses((status = 200, description = "The OpenMetrics text format", body = String))
)]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    responses((status = 200, description = "The OpenAPI 3 document of these routes"))
)]
async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        ApiDoc::openapi()
            .to_json()
            .expect("the document serialises"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_keep_their_first_dimensions_then_unit_length() {
        let mut rows = vec![vec![3.0, 4.0, 12.0], vec![1.0, 0.0, 5.0]];
        shape_rows(&mut rows, Some(2), true);
        assert_eq!(rows, [vec![0.6, 0.8], vec![1.0, 0.0]]);
        let mut rows = vec![vec![3.0, 4.0, 12.0]];
        shape_rows(&mut rows, None, false);
        assert_eq!(rows, [vec![3.0, 4.0, 12.0]]);
        assert!(check_dimensions(Some(0), 3).is_err());
        assert!(check_dimensions(Some(4), 3).is_err());
        assert!(check_dimensions(Some(3), 3).is_ok());
        assert!(check_dimensions(None, 3).is_ok());
    }

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
    }
}
