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

/// Reads a JSON request body of at most `limit` bytes: 413 beyond it, 422 when it is not
/// JSON, and 422 naming the place when a string holds a NUL character, which PostgreSQL
/// stores in neither text nor jsonb (found here rather than as a failed write later).
pub async fn json_body(
    body: axum::body::Body,
    limit: usize,
) -> Result<serde_json::Value, ApiError> {
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request body over {limit} bytes"),
        )
        .with_field("body")
    })?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid("body", format!("not valid JSON: {e}")))?;
    if let Some(path) = nul_at(&value, String::new()) {
        let field = if path.is_empty() {
            "body".to_owned()
        } else {
            path
        };
        return Err(ApiError::invalid(field, "contains a NUL character"));
    }
    Ok(value)
}

/// The dotted path of the first string (key or value) holding a NUL character.
fn nul_at(value: &serde_json::Value, path: String) -> Option<String> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        serde_json::Value::String(s) if s.contains('\0') => Some(path),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_at(v, format!("{path}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                Some(join(k))
            } else {
                nul_at(v, join(k))
            }
        }),
        _ => None,
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
                .and_then(|v| {
                    // The scheme name is case-insensitive (RFC 9110 §11.1).
                    let (scheme, token) = v.split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then_some(token)
                })
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

/// Lets the request through only when it presents `key`; without a configured key nothing
/// passes. Refusals are a bare 401 and a warn line that names no key.
pub fn require_key(
    headers: &axum::http::HeaderMap,
    key: Option<&secrecy::SecretString>,
) -> Result<(), ApiError> {
    let given = presented_key(headers).ok_or_else(ApiError::unauthorized)?;
    if key.is_some_and(|key| same_secret(given, key)) {
        Ok(())
    } else {
        tracing::warn!("request with an unknown key");
        Err(ApiError::unauthorized())
    }
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
    let mut response = match bad_uri(req.uri()) {
        Some((field, problem)) => span.in_scope(|| {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", problem)
                .with_field(field)
                .into_response()
        }),
        None => next.run(req).instrument(span.clone()).await,
    };

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

/// Refuses, in one place for every route, what no handler could store: a path or query that
/// decodes to a NUL character (PostgreSQL text refuses it).
///
/// Known shortcoming: a path that does not decode to UTF-8 still meets each route's `Path`
/// extractor, whose rejection is plain text (FlagBit) unless the route maps it (CronPing
/// answers 404). Mapping `PathRejection` to `ApiError` in each product would close it.
fn bad_uri(uri: &axum::http::Uri) -> Option<(&'static str, &'static str)> {
    let path = percent_decode(uri.path());
    if path.contains(&0) {
        return Some(("path", "contains an encoded NUL character"));
    }
    if uri.query().is_some_and(|q| percent_decode(q).contains(&0)) {
        return Some(("query", "contains an encoded NUL character"));
    }
    None
}

fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                // Two hex digits make at most 0xff.
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(u8::MAX));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
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
    fn nul_and_non_utf8_in_the_uri_are_refused() {
        let bad = |u: &str| bad_uri(&u.parse().unwrap()).map(|(field, _)| field);
        assert_eq!(bad("/api/v1/flags/%00/history"), Some("path"));
        assert_eq!(bad("/api/v1/checks?tag=%00"), Some("query"));
        assert_eq!(bad("/api/v1/checks?tag=a%2500"), None);
        assert_eq!(bad("/api/v1/flags/caf%C3%A9"), None);
        assert_eq!(bad("/ping/x/%"), None);
    }

    #[test]
    fn nul_in_json_is_found_with_its_path() {
        let v = serde_json::json!({ "a": [1, { "b\u{0}": 2 }], "c": "ok" });
        assert_eq!(nul_at(&v, String::new()).as_deref(), Some("a[1].b\u{0}"));
        let v = serde_json::json!({ "variants": { "on": "x\u{0}" } });
        assert_eq!(nul_at(&v, String::new()).as_deref(), Some("variants.on"));
        assert_eq!(
            nul_at(&serde_json::json!({ "a": "fine" }), String::new()),
            None
        );
    }

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
