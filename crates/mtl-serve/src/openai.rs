//! OpenAI's routes: `POST /v1/embeddings` (and TEI's alias `POST /embeddings`) and
//! `GET /v1/models`, answering errors in OpenAI's shape.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use base64::Engine;

use crate::api::{
    EmbeddingData, EmbeddingValue, EmbeddingsRequest, EmbeddingsResponse, EncodingFormat,
    ModelCard, ModelList, Usage,
};
use crate::error::{OpenAiError, OpenAiErrorBody};
use crate::infer::Truncation;
use crate::routes::{AppState, body, check_dimensions, shape_rows};

/// Embeddings, as OpenAI's API makes them: always unit length (after `dimensions`).
#[utoipa::path(
    post,
    path = "/v1/embeddings",
    request_body = EmbeddingsRequest,
    responses(
        (status = 200, description = "One unit-length embedding per input", body = EmbeddingsResponse),
        (status = 400, description = "No input", body = OpenAiErrorBody),
        (status = 413, description = "Too many or too long inputs, or too large a body", body = OpenAiErrorBody),
        (status = 422, description = "An input, setting or field is not acceptable", body = OpenAiErrorBody),
        (status = 429, description = "Too many requests in flight (see Retry-After)", body = OpenAiErrorBody),
    )
)]
pub(crate) async fn embeddings(
    State(state): State<AppState>,
    request: Result<Json<EmbeddingsRequest>, JsonRejection>,
) -> Result<Json<EmbeddingsResponse>, OpenAiError> {
    let request = body(request)?;
    let model = state.model()?;
    check_dimensions(request.dimensions, model.dim)?;
    let texts = request.input.into_texts();
    let (mut rows, tokens) = state
        .infer
        .embed(model, texts, Truncation::default())
        .await?;
    shape_rows(&mut rows, request.dimensions, true);
    let data = rows
        .into_iter()
        .enumerate()
        .map(|(index, row)| {
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

/// `POST /embeddings`: TEI's alias of `/v1/embeddings`, the same in every way.
#[utoipa::path(
    post,
    path = "/embeddings",
    request_body = EmbeddingsRequest,
    responses(
        (status = 200, description = "As /v1/embeddings", body = EmbeddingsResponse),
        (status = 422, description = "As /v1/embeddings", body = OpenAiErrorBody),
    )
)]
pub(crate) async fn embeddings_alias(
    state: State<AppState>,
    request: Result<Json<EmbeddingsRequest>, JsonRejection>,
) -> Result<Json<EmbeddingsResponse>, OpenAiError> {
    embeddings(state, request).await
}

/// The one model served, as OpenAI's `GET /v1/models` lists models.
#[utoipa::path(
    get,
    path = "/v1/models",
    responses((status = 200, description = "The served model", body = ModelList))
)]
pub(crate) async fn models(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list".into(),
        data: vec![ModelCard {
            id: state.model_name.clone(),
            object: "model".into(),
            created: state.started,
            owned_by: "mtl".into(),
        }],
    })
}
