//! HTTP plumbing every web tier shares: the error type and its one mapping to responses,
//! request ids and the request span, and the health routes.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::json;
use sqlx::PgPool;
use tracing::Instrument as _;

pub const REQUEST_ID: &str = "x-request-id";

/// The error every handler returns. 4xx carry a code, a message and the field at fault;
/// 5xx carry a generic body, and their cause chain is logged once, inside the request span.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    source: Option<anyhow::Error>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            source: None,
        }
    }

    /// A field of the request that is wrong; `field` is its JSON path or parameter name.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message).with_field(field)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or unknown credentials",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// Our own or a dependency's failure: the client learns nothing of the cause.
    pub fn internal(source: anyhow::Error) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "internal error".to_owned(),
            field: None,
            source: Some(source),
        }
    }

    pub fn unavailable(message: impl Into<String>, source: anyhow::Error) -> Self {
        Self {
            source: Some(source),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        Self::internal(err)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        Self::internal(err.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(source) = &self.source {
            if self.status.is_server_error() {
                tracing::error!(
                    error = format!("{source:#}"),
                    code = self.code,
                    "request failed"
                );
            } else {
                tracing::warn!(
                    error = format!("{source:#}"),
                    code = self.code,
                    "request refused"
                );
            }
        } else if self.status.is_client_error() {
            tracing::debug!(code = self.code, field = self.field, message = %self.message);
        }

        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}

/// The API key a request presents, from `X-API-Key` or `Authorization: Bearer`.
pub fn presented_key(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        })
        .map(str::trim)
}

/// Compares a presented key with the configured one in time that does not depend on where
/// they differ (only on the length, which a key's owner chose and an attacker learns nothing
/// from by guessing).
pub fn same_secret(given: &str, key: &secrecy::SecretString) -> bool {
    use secrecy::ExposeSecret as _;

    let (a, b) = (given.as_bytes(), key.expose_secret().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Wraps a product's routes with the health routes, a JSON 404, request ids and logging.
pub fn app(product: &'static str, routes: Router, pool: PgPool) -> Router {
    let health = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(pool);

    routes
        .merge(health)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(move |req, next| {
            request_span(product, req, next)
        }))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed",
    )
}

/// What answers at `/`: the product and its version, so a person can tell which port is which.
pub async fn about<P: crate::Product>() -> impl IntoResponse {
    axum::Json(json!({ "service": P::NAME, "version": P::VERSION }))
}

/// Liveness: the process answers. No I/O, so a slow database never gets the container killed.
async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers a round trip within the pool's acquire timeout.
async fn readyz(State(pool): State<PgPool>) -> Result<impl IntoResponse, ApiError> {
    crate::db::ping(&pool)
        .await
        .map_err(|e| ApiError::unavailable("database unreachable", e.into()))?;
    Ok(axum::Json(json!({ "status": "ready" })))
}

/// Accepts a well-formed `x-request-id` from the caller (a proxy's, say) or makes one, runs
/// the request inside a span carrying it and the route template, and returns it.
async fn request_span(product: &'static str, mut req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_acceptable_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());

    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let span = tracing::info_span!(
        "request",
        service = product,
        method = %req.method(),
        route = %route,
        request_id = %request_id,
    );

    // Handlers and extractors see the id too, e.g. to pass it on to a job.
    let header = HeaderValue::from_str(&request_id).ok();
    if let Some(value) = &header {
        req.headers_mut().insert(REQUEST_ID, value.clone());
    }

    let started = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;

    // Probes arrive every few seconds; logging each at info would drown everything else.
    let status = response.status().as_u16();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let probe = matches!(route.as_str(), "/healthz" | "/readyz") && status == 200;
    span.in_scope(|| {
        if probe {
            tracing::debug!(status, elapsed_ms, "request finished");
        } else {
            tracing::info!(status, elapsed_ms, "request finished");
        }
    });

    if let Some(value) = header {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// Ids from outside end up in every log line, so only short, printable ones are kept.
fn is_acceptable_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_outside_are_bounded_and_printable() {
        assert!(is_acceptable_request_id(
            "5f0c6b1e-8d1a-4c1e-9f1a-0a1b2c3d4e5f"
        ));
        assert!(is_acceptable_request_id("lb:abc_123.x"));
        assert!(!is_acceptable_request_id(""));
        assert!(!is_acceptable_request_id(&"a".repeat(129)));
        assert!(!is_acceptable_request_id("two words"));
        assert!(!is_acceptable_request_id("line\nbreak"));
    }
}
