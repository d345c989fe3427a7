//! The router: every route with the middleware around it ([`crate::middleware`]), what the
//! handlers share, and the server's own routes (`/health`, `/info`, `/metrics`,
//! `/openapi.json`). TEI's handlers are in [`crate::tei`], OpenAI's in [`crate::openai`]; the
//! way to the model is [`crate::infer`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use mtl_bert::l2_normalize_row;
use utoipa::OpenApi;

use crate::api::{Health, Info, TaskInfo};
use crate::error::{ApiError, Error, ErrorBody, Family, OpenAiErrorBody};
use crate::infer::Infer;
use crate::metrics::Metrics;
use crate::prompts::Prompts;
use crate::worker::{ModelInfo, Worker};
use crate::{ServeConfig, Timeouts, openai, tei};

/// What every request can reach.
pub(crate) struct Shared {
    pub(crate) model_name: String,
    pub(crate) backend: String,
    pub(crate) timeouts: Timeouts,
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
    /// The way to the model.
    pub(crate) infer: Infer,
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
            timeouts: config.timeouts,
            api_key: config.api_key.clone(),
            public_metrics: config.public_metrics,
            prompts,
            started: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            model: OnceLock::new(),
            dead,
            infer: Infer::new(worker, config.limits.clone()),
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

/// Every route with its middleware; CORS for `cors_origins` (none: no CORS headers).
pub(crate) fn router(state: AppState, cors_origins: &[String]) -> Result<Router, Error> {
    let router = Router::new()
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
        .layer(DefaultBodyLimit::max(state.infer.limits().max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::middleware::deadlines,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::middleware::authorize,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::middleware::track,
        ));
    let router = match crate::middleware::cors(cors_origins).map_err(Error::Config)? {
        Some(cors) => router.layer(cors),
        None => router,
    };
    Ok(router.with_state(state))
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
    let limits = state.infer.limits();
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
}
