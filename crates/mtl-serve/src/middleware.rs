//! The layers around every route: request metrics and logs, the API key, the body-read and
//! request timeouts, and CORS.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::{ApiError, Family};
use crate::metrics::{RequestLabels, RouteLabels};
use crate::routes::AppState;

/// Counts and logs every request: route, status, latency.
pub(crate) async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
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
pub(crate) async fn authorize(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
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

/// The request's deadline ([`crate::Timeouts::request`]) and its body's
/// ([`crate::Timeouts::body_read`]): the body is read whole first (at most
/// `max_body_bytes`, else 413), so a handler, and the permit it takes, never waits for a slow
/// uploader. A request past its deadline is answered 503 and dropped, with its queued texts.
pub(crate) async fn deadlines(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let family = Family::of_path(request.uri().path());
    let timeouts = state.timeouts;
    let limit = state.infer.limits().max_body_bytes;
    let answer = async {
        let (parts, body) = request.into_parts();
        let bytes =
            match tokio::time::timeout(timeouts.body_read, axum::body::to_bytes(body, limit)).await
            {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(_)) => {
                    return ApiError::too_large(format!(
                        "the request body is over {limit} bytes, or was cut off"
                    ))
                    .respond(family);
                }
                Err(_) => {
                    return ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        format!(
                            "the request body did not arrive within {} s",
                            timeouts.body_read.as_secs_f64()
                        ),
                    )
                    .respond(family);
                }
            };
        next.run(Request::from_parts(parts, Body::from(bytes)))
            .await
    };
    match tokio::time::timeout(timeouts.request, answer).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the request was not answered within {} s (the server is busy): retry later",
                timeouts.request.as_secs_f64()
            ),
        )
        .respond(family),
    }
}

/// CORS for `origins` (`*`: any), or `None` when there are none. Preflight requests are
/// answered here, before the API key is asked for, as browsers send none with them.
pub(crate) fn cors(origins: &[String]) -> Result<Option<CorsLayer>, String> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let values = origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o.trim_end_matches('/'))
                    .map_err(|_| format!("CORS origin {o:?} is not a valid header value"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(values)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
            .expose_headers([header::RETRY_AFTER]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        assert!(same_secret(b"key", b"key"));
        assert!(!same_secret(b"key", b"kez"));
        assert!(!same_secret(b"key", b"keys"));
        assert!(!same_secret(b"", b"k"));
    }

    #[test]
    fn cors_origins_are_checked() {
        assert!(cors(&[]).unwrap().is_none());
        assert!(cors(&["*".into()]).unwrap().is_some());
        assert!(cors(&["https://example.com/".into()]).unwrap().is_some());
        assert!(cors(&["bad\norigin".into()]).is_err());
    }
}
