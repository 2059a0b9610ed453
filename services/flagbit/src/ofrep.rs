//! OFREP, the OpenFeature Remote Evaluation Protocol: `POST /ofrep/v1/evaluate/flags/{key}`
//! and the bulk `POST /ofrep/v1/evaluate/flags` with `ETag`/`If-None-Match`.
//!
//! The SDK key (`X-API-Key` or `Authorization: Bearer`) selects the environment. Everything
//! is answered from the in-memory snapshot; no request touches the database. OFREP defines
//! its own failure bodies (`key`, `errorCode`, `errorDetails`), built in [`failure`]; a
//! missing key and a not-yet-loaded snapshot use the shared error type.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use platform::ApiError;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use crate::App;
use crate::api::presented_key;
use crate::eval::{self, ErrorCode, Resolution};
use crate::snapshot::Environment;

/// Largest evaluation request: a context is a handful of attributes.
const MAX_BODY: usize = 64 * 1024;

fn environment(app: &App, headers: &HeaderMap) -> Result<Arc<Environment>, ApiError> {
    let snapshot = app.snapshots.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "flags are not loaded yet",
        )
    })?;
    let key = presented_key(headers).ok_or_else(ApiError::unauthorized)?;
    match snapshot.environment_for_key(key) {
        Some(env) => Ok(env.clone()),
        None => {
            tracing::warn!("evaluation with an unknown SDK key");
            Err(ApiError::unauthorized())
        }
    }
}

/// An OFREP failure body; `key` is left out only for whole-bulk failures.
fn failure(status: StatusCode, key: Option<&str>, code: ErrorCode, details: &str) -> Response {
    let mut body = Map::new();
    if let Some(key) = key {
        body.insert("key".into(), key.into());
    }
    body.insert("errorCode".into(), code.as_str().into());
    body.insert("errorDetails".into(), details.into());
    (status, axum::Json(Value::Object(body))).into_response()
}

/// The request's `context`: a missing or empty body, or a missing `context`, is an empty
/// one (real clients send all three); anything else must be an object.
fn context(body: &[u8]) -> Result<Map<String, Value>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
    let Value::Object(mut doc) = doc else {
        return Err("body must be a JSON object".to_owned());
    };
    let ctx = match doc.remove("context") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(ctx)) => ctx,
        Some(_) => return Err("context must be a JSON object".to_owned()),
    };
    match ctx.get("targetingKey") {
        None | Some(Value::String(_)) => Ok(ctx),
        Some(_) => Err("context.targetingKey must be a string".to_owned()),
    }
}

async fn read_body(body: Body) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request body over {MAX_BODY} bytes"),
        )
        .with_field("body")
        .into_response()
    })
}

/// A success object; `value` is left out for the caller's own default, and `variant` is
/// always present (null when none) because clients read it unconditionally.
fn success(key: &str, r: Resolution) -> Value {
    let mut m = Map::new();
    m.insert("key".into(), key.into());
    m.insert("reason".into(), r.reason.as_str().into());
    m.insert(
        "variant".into(),
        r.variant.map_or(Value::Null, Value::String),
    );
    if let Some(value) = r.value {
        m.insert("value".into(), value);
    }
    m.insert("metadata".into(), Value::Object(r.metadata));
    Value::Object(m)
}

fn item(key: &str, r: Resolution) -> Value {
    match r.error {
        Some((code, details)) => json!({
            "key": key, "errorCode": code.as_str(), "errorDetails": details,
            "metadata": r.metadata,
        }),
        None => success(key, r),
    }
}

pub async fn evaluate_one(
    State(app): State<App>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let env = environment(&app, &headers)?;
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(resp) => return Ok(resp),
    };
    let ctx = match context(&body) {
        Ok(ctx) => ctx,
        Err(why) => {
            tracing::debug!(flag = key, why, "invalid evaluation context");
            let status = StatusCode::BAD_REQUEST;
            return Ok(failure(status, Some(&key), ErrorCode::InvalidContext, &why));
        }
    };
    let now = app.config.clock.now().timestamp();
    let r = eval::evaluate(&env.flags, &key, &ctx, now);
    if !matches!(r.error, Some((ErrorCode::FlagNotFound, _))) {
        app.usage.count(env.id, &key, r.variant.as_deref());
    }
    Ok(match r.error {
        Some((ErrorCode::FlagNotFound, details)) => failure(
            StatusCode::NOT_FOUND,
            Some(&key),
            ErrorCode::FlagNotFound,
            &details,
        ),
        Some((code, details)) => {
            let body = json!({"key": key, "errorCode": code.as_str(),
                "errorDetails": details, "metadata": r.metadata});
            (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
        }
        None => axum::Json(success(&key, r)).into_response(),
    })
}

/// Whether `If-None-Match` names `etag` (a list, weak forms and `*` included).
fn matches(if_none_match: Option<&HeaderValue>, etag: &str) -> bool {
    let Some(value) = if_none_match.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    value
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

pub async fn evaluate_all(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let env = environment(&app, &headers)?;
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(resp) => return Ok(resp),
    };
    let ctx = match context(&body) {
        Ok(ctx) => ctx,
        Err(why) => {
            let status = StatusCode::BAD_REQUEST;
            return Ok(failure(status, None, ErrorCode::InvalidContext, &why));
        }
    };
    let now = app.config.clock.now().timestamp();

    // Sorted, so the same flags and context give the same bytes and so the same ETag.
    let mut keys: Vec<&String> = env.flags.flags.keys().collect();
    keys.sort();
    let flags: Vec<Value> = keys
        .into_iter()
        .map(|k| {
            let r = eval::evaluate(&env.flags, k, &ctx, now);
            app.usage.count(env.id, k, r.variant.as_deref());
            item(k, r)
        })
        .collect();
    let mut doc = json!({ "flags": flags });
    if !env.flags.metadata.is_empty() {
        doc["metadata"] = Value::Object(env.flags.metadata.clone());
    }
    let bytes = serde_json::to_vec(&doc).map_err(|e| ApiError::internal(e.into()))?;

    // The ETag is a digest of the body, so it changes with the flags and with the context
    // (a rule reading `$flagd.timestamp` changes it too, which is right).
    let digest = Sha256::digest(&bytes);
    let etag = format!("\"{}\"", hex(&digest[..16]));
    let etag_value = HeaderValue::from_str(&etag).map_err(|e| ApiError::internal(e.into()))?;
    if matches(headers.get(header::IF_NONE_MATCH), &etag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response());
    }
    Ok((
        StatusCode::OK,
        [
            (header::ETAG, etag_value),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
        ],
        bytes,
    )
        .into_response())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;

    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn context_is_lenient_about_absence_and_strict_about_shape() {
        assert!(context(b"").unwrap().is_empty());
        assert!(context(b"{}").unwrap().is_empty());
        assert!(context(br#"{"context": null}"#).unwrap().is_empty());
        assert_eq!(
            context(br#"{"context": {"targetingKey": "u"}}"#).unwrap()["targetingKey"],
            "u"
        );
        assert!(context(br#"{"context": 5}"#).is_err());
        assert!(context(b"[1]").is_err());
        assert!(context(b"{nope").is_err());
        assert!(context(br#"{"context": {"targetingKey": 7}}"#).is_err());
    }

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_star() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert!(matches(Some(&v("\"a\"")), "\"a\""));
        assert!(matches(Some(&v("\"x\", W/\"a\"")), "\"a\""));
        assert!(matches(Some(&v("*")), "\"a\""));
        assert!(!matches(Some(&v("\"b\"")), "\"a\""));
        assert!(!matches(None, "\"a\""));
    }
}
