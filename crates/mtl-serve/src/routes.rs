//! The routes, their checks of each request, and the middleware around them (API key,
//! request limit, metrics and logs).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use mtl_bert::{BertTokenizer, Encoding};
use mtl_bert::{cosine_matrix, l2_normalize_row};
use tokio::sync::{Semaphore, oneshot};
use utoipa::OpenApi;

use crate::api::{
    EmbedRequest, EmbeddingData, EmbeddingValue, EmbeddingsRequest, EmbeddingsResponse,
    EncodingFormat, Health, Info, LabelProbability, PredictRequest, SimilarityRequest, TaskInfo,
    TaskPrediction, Usage,
};
use crate::error::{ApiError, ErrorBody};
use crate::metrics::{Metrics, RequestLabels, RouteLabels};
use crate::worker::{Job, ModelInfo, Worker};
use crate::{Limits, ServeConfig};

/// What every request can reach.
pub(crate) struct Shared {
    pub(crate) model_name: String,
    pub(crate) backend: String,
    pub(crate) limits: Limits,
    pub(crate) api_key: Option<String>,
    /// Set once the model is loaded.
    pub(crate) model: OnceLock<ModelInfo>,
    pub(crate) worker: Worker,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) metrics: Arc<Metrics>,
}

pub(crate) type AppState = Arc<Shared>;

impl Shared {
    pub(crate) fn new(config: &ServeConfig, worker: Worker, metrics: Arc<Metrics>) -> Self {
        Self {
            model_name: config.model_name.clone(),
            backend: config.backend.clone(),
            limits: config.limits.clone(),
            api_key: config.api_key.clone(),
            model: OnceLock::new(),
            worker,
            permits: Arc::new(Semaphore::new(config.limits.max_concurrent_requests)),
            metrics,
        }
    }

    fn model(&self) -> Result<&ModelInfo, ApiError> {
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
        description = "Sentence embeddings and multi-task predictions"
    ),
    paths(
        openai_embeddings,
        tei_embed,
        predict,
        similarity,
        health,
        info,
        metrics,
        openapi
    ),
    components(schemas(ErrorBody))
)]
pub(crate) struct ApiDoc;

/// Every route with its middleware.
pub(crate) fn router(state: AppState) -> Router {
    let limited = Router::new()
        .route("/v1/embeddings", post(openai_embeddings))
        .route("/embed", post(tei_embed))
        .route("/predict", post(predict))
        .route("/similarity", post(similarity))
        .route_layer(middleware::from_fn_with_state(state.clone(), limit));
    Router::new()
        .route("/health", get(health))
        .route("/info", get(info))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .merge(limited)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "this route takes another method",
            )
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

/// With an API key set, every route but `/health` needs `Authorization: Bearer KEY`.
async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(key) = &state.api_key
        && request.uri().path() != "/health"
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
            .into_response();
        }
    }
    next.run(request).await
}

/// Compares secrets in time that depends only on their lengths.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// At most `max_concurrent_requests` model requests in flight; more are answered 429 at once,
/// so a flood never queues unbounded work or memory. The refused request's body is read and
/// dropped frame by frame first (up to `max_body_bytes`, never held whole): a client still
/// sending it would otherwise find the connection closed and see a broken pipe, not the 429.
async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match state.permits.clone().try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => {
            drain(request.into_body(), state.limits.max_body_bytes).await;
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "the server has {} requests in flight, its limit: retry later",
                    state.limits.max_concurrent_requests
                ),
            )
            .into_response()
        }
    }
}

/// Reads `body` to its end, or until more than `limit` bytes or an error, dropping each frame.
async fn drain(mut body: axum::body::Body, limit: usize) {
    use http_body_util::BodyExt;
    let mut read = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        read += frame.data_ref().map_or(0, |data| data.len());
        if read > limit {
            break;
        }
    }
}

/// Checks the number of texts and their sizes.
fn check_texts(texts: &[String], limits: &Limits) -> Result<(), ApiError> {
    if texts.is_empty() {
        return Err(ApiError::invalid("no input: give at least one text"));
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

/// Tokenizes `texts` off the async threads; checks token ids, and without `truncate` that no
/// text is longer than the model's maximum.
async fn tokenize(
    tokenizer: &BertTokenizer,
    model: &ModelInfo,
    texts: Vec<String>,
    truncate: bool,
) -> Result<Vec<Encoding>, ApiError> {
    let tokenizer = tokenizer.clone();
    let encodings = tokio::task::spawn_blocking(move || tokenizer.encode(&texts))
        .await
        .map_err(|e| ApiError::internal(format!("tokenizing: {e}")))?
        .map_err(|e| ApiError::internal(format!("tokenizing: {e}")))?;
    BertTokenizer::check_ids(&encodings, model.vocab_size, model.type_vocab_size).map_err(|e| {
        match e {
            mtl_bert::Error::Text { index, problem } => {
                ApiError::invalid(format!("input {index}: {problem}"))
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
        )));
    }
    Ok(encodings)
}

/// Checks and tokenizes `texts`, then embeds them on the model thread: the raw (not
/// normalised) embeddings, in order, and the number of tokens read.
async fn embed_texts(
    state: &Shared,
    model: &ModelInfo,
    texts: Vec<String>,
    truncate: bool,
) -> Result<(Vec<Vec<f32>>, usize), ApiError> {
    check_texts(&texts, &state.limits)?;
    let encodings = tokenize(&model.tokenizer, model, texts, truncate).await?;
    let tokens = encodings.iter().map(Encoding::len).sum();
    Ok((embed(state, encodings).await?, tokens))
}

/// The raw (not normalised) embeddings of `encodings`, from the model thread.
async fn embed(state: &Shared, encodings: Vec<Encoding>) -> Result<Vec<Vec<f32>>, ApiError> {
    let (reply, answer) = oneshot::channel();
    if !state.worker.submit(Job::Embed { encodings, reply }) {
        return Err(ApiError::internal("the model thread has stopped"));
    }
    answer
        .await
        .map_err(|_| ApiError::internal("the model thread stopped"))?
        .map_err(ApiError::internal)
}

/// Reads the JSON body, or the error that says why it is not acceptable.
fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(value)| value).map_err(ApiError::from)
}

/// Embeddings, as OpenAI's API makes them.
#[utoipa::path(
    post,
    path = "/v1/embeddings",
    request_body = EmbeddingsRequest,
    responses(
        (status = 200, description = "One embedding per input", body = EmbeddingsResponse),
        (status = 413, description = "Too many or too long inputs, or too large a body", body = ErrorBody),
        (status = 422, description = "An input or setting is not acceptable", body = ErrorBody),
        (status = 429, description = "Too many requests in flight", body = ErrorBody),
    )
)]
async fn openai_embeddings(
    State(state): State<AppState>,
    request: Result<Json<EmbeddingsRequest>, JsonRejection>,
) -> Result<Json<EmbeddingsResponse>, ApiError> {
    let request = body(request)?;
    let model = state.model()?;
    if let Some(d) = request.dimensions
        && !(1..=model.dim).contains(&d)
    {
        return Err(ApiError::invalid(format!(
            "dimensions {d}: this model's embeddings have {} (give 1 to {0})",
            model.dim
        )));
    }
    let (rows, tokens) = embed_texts(&state, model, request.input.into_texts(), true).await?;
    let data = rows
        .into_iter()
        .enumerate()
        .map(|(index, mut row)| {
            if let Some(d) = request.dimensions {
                row.truncate(d);
            }
            if model.normalize {
                l2_normalize_row(&mut row);
            }
            let embedding = match request.encoding_format {
                EncodingFormat::Float => EmbeddingValue::Float(row),
                EncodingFormat::Base64 => {
                    let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
                    EmbeddingValue::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
            };
            EmbeddingData {
                object: "embedding".into(),
                index,
                embedding,
            }
        })
        .collect();
    Ok(Json(EmbeddingsResponse {
        object: "list".into(),
        data,
        model: state.model_name.clone(),
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    }))
}

/// Embeddings, as text-embeddings-inference's `/embed` makes them.
#[utoipa::path(
    post,
    path = "/embed",
    request_body = EmbedRequest,
    responses(
        (status = 200, description = "One embedding per input", body = Vec<Vec<f32>>),
        (status = 413, description = "Too many or too long inputs, or too large a body", body = ErrorBody),
        (status = 422, description = "An input is not acceptable", body = ErrorBody),
        (status = 429, description = "Too many requests in flight", body = ErrorBody),
    )
)]
async fn tei_embed(
    State(state): State<AppState>,
    request: Result<Json<EmbedRequest>, JsonRejection>,
) -> Result<Json<Vec<Vec<f32>>>, ApiError> {
    let request = body(request)?;
    let model = state.model()?;
    let texts = request.inputs.into_texts();
    let (mut rows, _) = embed_texts(&state, model, texts, request.truncate).await?;
    if request.normalize {
        rows.iter_mut().for_each(|row| l2_normalize_row(row));
    }
    Ok(Json(rows))
}

/// The cosine similarity of every pair of texts.
#[utoipa::path(
    post,
    path = "/similarity",
    request_body = SimilarityRequest,
    responses(
        (status = 200, description = "The cosine similarity matrix, rows and columns in input order", body = Vec<Vec<f32>>),
        (status = 413, description = "Too many or too long inputs", body = ErrorBody),
        (status = 422, description = "An input is not acceptable", body = ErrorBody),
    )
)]
async fn similarity(
    State(state): State<AppState>,
    request: Result<Json<SimilarityRequest>, JsonRejection>,
) -> Result<Json<Vec<Vec<f32>>>, ApiError> {
    let request = body(request)?;
    let model = state.model()?;
    let (rows, _) = embed_texts(&state, model, request.inputs, true).await?;
    let rows: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
    Ok(Json(cosine_matrix(&rows)))
}

/// Every task's (or the named tasks') label for each input, with the probabilities.
#[utoipa::path(
    post,
    path = "/predict",
    request_body = PredictRequest,
    responses(
        (status = 200, description = "Per input, per task: label, its probability and every label's", body = Vec<Vec<TaskPrediction>>),
        (status = 400, description = "The model has no tasks (an embedding model)", body = ErrorBody),
        (status = 422, description = "An input or task name is not acceptable", body = ErrorBody),
    )
)]
async fn predict(
    State(state): State<AppState>,
    request: Result<Json<PredictRequest>, JsonRejection>,
) -> Result<Json<Vec<Vec<TaskPrediction>>>, ApiError> {
    let request = body(request)?;
    let model = state.model()?;
    let (Some(tasks), Some(tokenizer)) = (&model.tasks, &model.task_tokenizer) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "{} is an embedding model without tasks: /predict needs a model trained by \
                 `mtl train`",
                state.model_name
            ),
        ));
    };
    let names = tasks.task_names();
    let wanted: Vec<usize> = match &request.tasks {
        None => (0..names.len()).collect(),
        Some(list) if list.is_empty() => {
            return Err(ApiError::invalid(
                "tasks is empty: leave it out for every task",
            ));
        }
        Some(list) => list
            .iter()
            .map(|name| {
                names.iter().position(|n| n == name).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "unknown task {name:?} (this model's tasks: {})",
                        names.join(", ")
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let texts = request.inputs.into_texts();
    check_texts(&texts, &state.limits)?;
    tokenize(tokenizer, model, texts.clone(), true).await?;
    let (reply, answer) = oneshot::channel();
    if !state.worker.submit(Job::Predict { texts, reply }) {
        return Err(ApiError::internal("the model thread has stopped"));
    }
    let predictions = answer
        .await
        .map_err(|_| ApiError::internal("the model thread stopped"))?
        .map_err(ApiError::internal)?;
    let answer = predictions
        .into_iter()
        .map(|per_task| {
            wanted
                .iter()
                .map(|&t| {
                    let p = &per_task[t];
                    TaskPrediction {
                        task: p.task.clone(),
                        label: p.label.clone(),
                        probability: p.probabilities[p.label_index],
                        probabilities: tasks.tasks[t]
                            .labels
                            .iter()
                            .zip(&p.probabilities)
                            .map(|(label, &probability)| LabelProbability {
                                label: label.clone(),
                                probability,
                            })
                            .collect(),
                    }
                })
                .collect()
        })
        .collect();
    Ok(Json(answer))
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
/// depth, texts and tokens.
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
