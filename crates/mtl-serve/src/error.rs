//! The server's errors: [`Error`] for starting it, [`ApiError`] for answering a request.

use std::path::PathBuf;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model could not be loaded.
    #[error("loading the model in {}: {source}", dir.display())]
    Load {
        /// The model directory.
        dir: PathBuf,
        /// What failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A setting is invalid (e.g. a public address without an API key).
    #[error("{0}")]
    Config(String),
    /// The model thread died while serving (it panicked, e.g. out of GPU memory); the server
    /// stopped.
    #[error("the model thread died (see the log above); the server stopped")]
    ModelThread,
    /// Listening or serving failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The body of an error on TEI's routes and this server's own, as TEI writes it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// A sentence for a person.
    pub error: String,
    /// TEI's error type: `Empty` (400), `Validation` (413, 422), `Tokenizer` (422),
    /// `Overloaded` (429), `Backend` (424, 500), `Unhealthy` (503); and, for what TEI answers
    /// without a body, `Unauthorized` (401), `NotFound` (404), `MethodNotAllowed` (405),
    /// `UnsupportedMediaType` (415).
    pub error_type: String,
}

/// The body of an error on OpenAI's routes (`/v1/...`, `/embeddings`), as the OpenAI API
/// writes it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OpenAiErrorBody {
    /// The error.
    pub error: OpenAiErrorDetail,
}

/// What went wrong, in OpenAI's words.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OpenAiErrorDetail {
    /// A sentence for a person.
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `rate_limit_error`,
    /// `not_ready_error` or `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, when one is.
    pub param: Option<String>,
    /// A short machine-readable code (`invalid_api_key`, `rate_limit_exceeded`,
    /// `model_not_ready`), when there is one.
    pub code: Option<String>,
}

/// Which API family's error body a route answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// `{"error": "...", "error_type": "..."}`.
    Tei,
    /// `{"error": {"message", "type", "param", "code"}}`.
    OpenAi,
}

impl Family {
    /// OpenAI's for `/v1/...` and `/embeddings`, TEI's for every other path.
    pub(crate) fn of_path(path: &str) -> Self {
        if path.starts_with("/v1/") || path == "/embeddings" {
            Self::OpenAi
        } else {
            Self::Tei
        }
    }
}

/// An error answered to a request: a status, a message, and what TEI and OpenAI call it.
/// Answers in TEI's shape; [`OpenAiError`] wraps it for OpenAI's routes.
#[derive(Debug)]
pub(crate) struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The message.
    pub message: String,
    /// TEI's error type, when the status alone does not say it (`Empty`, `Tokenizer`).
    tei_type: Option<&'static str>,
    /// The request field at fault (OpenAI's `param`).
    param: Option<&'static str>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            tei_type: None,
            param: None,
        }
    }

    /// 422: the request is well-formed JSON but its values are not acceptable.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// 400 with TEI's `Empty`: no inputs at all.
    pub(crate) fn empty(message: impl Into<String>) -> Self {
        Self {
            tei_type: Some("Empty"),
            ..Self::new(StatusCode::BAD_REQUEST, message)
        }
    }

    /// 413: the request is larger than the server's limits.
    pub(crate) fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// 500: the model failed.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 424 with TEI's `Backend`: the model cannot do what the route asks (TEI's answer to
    /// `/rerank` on a model that is not a re-ranker).
    pub(crate) fn unsupported(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FAILED_DEPENDENCY, message)
    }

    /// The same error with TEI's error type `Tokenizer`.
    pub(crate) fn tokenizer(mut self) -> Self {
        self.tei_type = Some("Tokenizer");
        self
    }

    /// The same error naming the request field at fault.
    pub(crate) fn param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    fn tei_type(&self) -> &'static str {
        if let Some(kind) = self.tei_type {
            return kind;
        }
        match self.status {
            StatusCode::UNAUTHORIZED => "Unauthorized",
            StatusCode::NOT_FOUND => "NotFound",
            StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaType",
            StatusCode::TOO_MANY_REQUESTS => "Overloaded",
            StatusCode::SERVICE_UNAVAILABLE => "Unhealthy",
            s if s.is_server_error() || s == StatusCode::FAILED_DEPENDENCY => "Backend",
            _ => "Validation",
        }
    }

    fn openai_type(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            StatusCode::SERVICE_UNAVAILABLE => "not_ready_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        }
    }

    fn openai_code(&self) -> Option<&'static str> {
        match self.status {
            StatusCode::UNAUTHORIZED => Some("invalid_api_key"),
            StatusCode::TOO_MANY_REQUESTS => Some("rate_limit_exceeded"),
            StatusCode::SERVICE_UNAVAILABLE => Some("model_not_ready"),
            _ => None,
        }
    }

    /// The response in `family`'s shape; a 429 says when to retry (`Retry-After: 1`).
    pub(crate) fn respond(self, family: Family) -> Response {
        let status = self.status;
        let mut response = match family {
            Family::Tei => {
                let body = ErrorBody {
                    error_type: self.tei_type().into(),
                    error: self.message,
                };
                (status, Json(body)).into_response()
            }
            Family::OpenAi => {
                let body = OpenAiErrorBody {
                    error: OpenAiErrorDetail {
                        kind: self.openai_type().into(),
                        param: self.param.map(str::to_owned),
                        code: self.openai_code().map(str::to_owned),
                        message: self.message,
                    },
                };
                (status, Json(body)).into_response()
            }
        };
        if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    /// A body that is not JSON (400), not of the route's shape or with an unknown field (422,
    /// naming it), too large (413) or not sent as `application/json` (415).
    fn from(rejection: JsonRejection) -> Self {
        Self::new(rejection.status(), rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.respond(Family::Tei)
    }
}

/// An [`ApiError`] answered in OpenAI's shape: what OpenAI's routes return.
#[derive(Debug)]
pub(crate) struct OpenAiError(pub ApiError);

impl From<ApiError> for OpenAiError {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        self.0.respond(Family::OpenAi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response) -> serde_json::Value {
        use http_body_util::BodyExt;
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn each_family_answers_in_its_shape() {
        let tei = ApiError::empty("no input").respond(Family::Tei);
        assert_eq!(tei.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            body(tei).await,
            serde_json::json!({"error": "no input", "error_type": "Empty"})
        );
        let openai = ApiError::invalid("dimensions 0")
            .param("dimensions")
            .respond(Family::OpenAi);
        assert_eq!(
            body(openai).await,
            serde_json::json!({"error": {"message": "dimensions 0",
                "type": "invalid_request_error", "param": "dimensions", "code": null}})
        );
        let busy = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy").respond(Family::Tei);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
        assert_eq!(body(busy).await["error_type"], "Overloaded");
    }

    #[test]
    fn openai_paths_are_told_apart() {
        assert_eq!(Family::of_path("/v1/embeddings"), Family::OpenAi);
        assert_eq!(Family::of_path("/v1/models"), Family::OpenAi);
        assert_eq!(Family::of_path("/embeddings"), Family::OpenAi);
        assert_eq!(Family::of_path("/embed"), Family::Tei);
        assert_eq!(Family::of_path("/"), Family::Tei);
    }
}
