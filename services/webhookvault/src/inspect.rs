//! Inspecting and replaying events: a source's events (newest first, cursor pages, filters
//! by time, signature result and delivery state), one event with its headers, body and
//! deliveries, the raw body, replay, and the dead-letter list.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use platform::ApiError;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::App;
use crate::api::{PathId, admin, read_object};

const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 500;

/// Latest time a cursor may hold: the end of year 9999, in microseconds since 1970.
const MAX_CURSOR_MICROS: i64 = 253_402_300_799_999_999;

/// A page position: the last item's time and id, opaque to clients.
fn encode_cursor(at: DateTime<Utc>, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{id}", at.timestamp_micros()))
}

fn decode_cursor(raw: &str) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    let bad = || ApiError::invalid("cursor", "not a cursor this API returned");
    let text = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
    let text = String::from_utf8(text).map_err(|_| bad())?;
    let (micros, id) = text.split_once('|').ok_or_else(bad)?;
    // Only times this API can have handed out: PostgreSQL refuses far-off ones with an error.
    let at = micros
        .parse::<i64>()
        .ok()
        .filter(|m| (0..=MAX_CURSOR_MICROS).contains(m))
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    Ok((at, Uuid::parse_str(id).map_err(|_| bad())?))
}

fn page_size(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::invalid(
            "limit",
            format!("must be 1 to {MAX_PAGE}"),
        )),
    }
}

#[derive(Debug, Deserialize)]
pub struct EventFilter {
    limit: Option<i64>,
    cursor: Option<String>,
    /// Received at or after (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Received before (RFC 3339).
    until: Option<DateTime<Utc>>,
    signature: Option<String>,
    state: Option<String>,
}

#[derive(sqlx::FromRow)]
struct EventSummary {
    id: Uuid,
    received_at: DateTime<Utc>,
    method: String,
    path: String,
    content_type: Option<String>,
    body_size: i32,
    signature: String,
    delivery_key: Option<String>,
    state: String,
}

/// An event's delivery state: `failed` if any delivery is dead-lettered, else `pending` if
/// any is still pending, else `delivered` if any exists, else `none`.
const STATE_SQL: &str = "CASE
        WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state = 'failed')
            THEN 'failed'
        WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state = 'pending')
            THEN 'pending'
        WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id) THEN 'delivered'
        ELSE 'none' END";

pub async fn list_events(
    State(app): State<App>,
    headers: HeaderMap,
    PathId(source): PathId,
    filter: Result<Query<EventFilter>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    admin(&headers, &app)?;
    let Query(filter) = filter.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let limit = page_size(filter.limit)?;
    let cursor = filter.cursor.as_deref().map(decode_cursor).transpose()?;
    if let Some(s) = &filter.signature
        && !["none", "valid", "invalid"].contains(&s.as_str())
    {
        return Err(ApiError::invalid(
            "signature",
            "expected none, valid or invalid",
        ));
    }
    if let Some(s) = &filter.state
        && !["none", "pending", "delivered", "failed"].contains(&s.as_str())
    {
        return Err(ApiError::invalid(
            "state",
            "expected none, pending, delivered or failed",
        ));
    }
    let exists: Option<(Uuid,)> = sqlx::query_as("SELECT id FROM sources WHERE id = $1")
        .bind(source)
        .fetch_optional(&app.pool)
        .await?;
    if exists.is_none() {
        return Err(ApiError::not_found("source"));
    }

    let rows: Vec<EventSummary> = sqlx::query_as(&format!(
        "SELECT * FROM (
             SELECT e.id, e.received_at, e.method, e.path, e.content_type,
                 length(e.body) AS body_size, e.signature, e.delivery_key, {STATE_SQL} AS state
             FROM events e
             WHERE e.source_id = $1
               AND ($2::timestamptz IS NULL OR (e.received_at, e.id) < ($2, $3))
               AND ($4::timestamptz IS NULL OR e.received_at >= $4)
               AND ($5::timestamptz IS NULL OR e.received_at < $5)
               AND ($6::text IS NULL OR e.signature = $6)
             ORDER BY e.received_at DESC, e.id DESC
         ) x
         WHERE ($7::text IS NULL OR x.state = $7)
         LIMIT $8"
    ))
    .bind(source)
    .bind(cursor.map(|c| c.0))
    .bind(cursor.map(|c| c.1))
    .bind(filter.since)
    .bind(filter.until)
    .bind(&filter.signature)
    .bind(&filter.state)
    .bind(limit + 1)
    .fetch_all(&app.pool)
    .await?;

    let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    let shown = &rows[..rows.len().min(usize::try_from(limit).unwrap_or(usize::MAX))];
    let next = more
        .then(|| shown.last().map(|r| encode_cursor(r.received_at, r.id)))
        .flatten();
    let events: Vec<Value> = shown
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "received_at": r.received_at,
                "method": r.method,
                "path": r.path,
                "content_type": r.content_type,
                "body_size": r.body_size,
                "signature": r.signature,
                "delivery_id": r.delivery_key,
                "state": r.state,
            })
        })
        .collect();
    Ok(Json(json!({ "events": events, "next_cursor": next })))
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: Uuid,
    source_id: Uuid,
    received_at: DateTime<Utc>,
    method: String,
    path: String,
    query: Option<String>,
    headers: Value,
    content_type: Option<String>,
    body: Vec<u8>,
    signature: String,
    signature_error: Option<String>,
    delivery_key: Option<String>,
}

async fn load_event(app: &App, id: Uuid) -> Result<EventRow, ApiError> {
    sqlx::query_as(
        "SELECT id, source_id, received_at, method, path, query, headers, content_type, body,
             signature, signature_error, delivery_key
         FROM events WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&app.pool)
    .await?
    .ok_or_else(|| ApiError::not_found("event"))
}

const DELIVERY_SQL: &str = "SELECT d.id, d.event_id, d.destination_id, d.state, d.manual,
        d.attempts, d.next_attempt_at, d.last_status, d.last_error, d.created_at,
        d.finished_at,
        COALESCE((SELECT jsonb_agg(jsonb_build_object(
            'n', a.n, 'at', a.at, 'duration_ms', a.duration_ms, 'status', a.status_code,
            'error', a.error,
            'response_base64', translate(encode(a.response, 'base64'), E'\n', '')) ORDER BY a.n)
          FROM attempts a WHERE a.delivery_id = d.id), '[]'::jsonb) AS attempt_list
    FROM deliveries d";

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: Uuid,
    event_id: Uuid,
    destination_id: Uuid,
    state: String,
    manual: bool,
    attempts: i32,
    next_attempt_at: Option<DateTime<Utc>>,
    last_status: Option<i32>,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    attempt_list: Value,
}

fn delivery_json(d: &DeliveryRow) -> Value {
    json!({
        "id": d.id,
        "event_id": d.event_id,
        "destination_id": d.destination_id,
        "state": d.state,
        "manual": d.manual,
        "attempts": d.attempts,
        "next_attempt_at": d.next_attempt_at,
        "last_status": d.last_status,
        "last_error": d.last_error,
        "created_at": d.created_at,
        "finished_at": d.finished_at,
        "attempt_list": d.attempt_list,
    })
}

/// One event: headers, the body as `body` (text) when it is UTF-8 and as `body_base64`
/// otherwise, and each delivery with its attempts.
pub async fn get_event(
    State(app): State<App>,
    headers: HeaderMap,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    admin(&headers, &app)?;
    let e = load_event(&app, id).await?;
    let deliveries: Vec<DeliveryRow> = sqlx::query_as(&format!(
        "{DELIVERY_SQL} WHERE d.event_id = $1 ORDER BY d.created_at, d.id"
    ))
    .bind(id)
    .fetch_all(&app.pool)
    .await?;
    let mut out = json!({
        "id": e.id,
        "source_id": e.source_id,
        "received_at": e.received_at,
        "method": e.method,
        "path": e.path,
        "query": e.query,
        "headers": e.headers,
        "content_type": e.content_type,
        "body_size": e.body.len(),
        "signature": e.signature,
        "signature_error": e.signature_error,
        "delivery_id": e.delivery_key,
        "deliveries": deliveries.iter().map(delivery_json).collect::<Vec<_>>(),
    });
    match String::from_utf8(e.body) {
        Ok(text) => out["body"] = json!(text),
        Err(e) => out["body_base64"] = json!(STANDARD.encode(e.as_bytes())),
    }
    Ok(Json(out))
}

/// The body exactly as received. Served as a download, never for a browser to render: it
/// came from outside. The original content type travels in `X-Original-Content-Type`.
pub async fn raw_event(
    State(app): State<App>,
    headers: HeaderMap,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    admin(&headers, &app)?;
    let e = load_event(&app, id).await?;
    let mut response = (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.bin\"", e.id),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        e.body,
    )
        .into_response();
    if let Some(ct) = e
        .content_type
        .and_then(|ct| header::HeaderValue::from_str(&ct).ok())
    {
        response.headers_mut().insert("x-original-content-type", ct);
    }
    Ok(response)
}

/// Sends the event again: to every enabled destination of its source, or to the one named
/// by `destination_id`. Each becomes a new delivery with the usual retries.
pub async fn replay(
    State(app): State<App>,
    headers: HeaderMap,
    PathId(id): PathId,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    admin(&headers, &app)?;
    // An empty body means "all destinations".
    let bytes = axum::body::to_bytes(body, crate::api::MAX_BODY)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("request body over {} bytes", crate::api::MAX_BODY),
            )
            .with_field("body")
        })?;
    let mut only: Option<Uuid> = None;
    if !bytes.is_empty() {
        let map = read_object(Body::from(bytes)).await?;
        for (key, value) in map {
            match key.as_str() {
                "destination_id" => {
                    only = Some(
                        value
                            .as_str()
                            .and_then(|s| Uuid::parse_str(s).ok())
                            .ok_or_else(|| {
                                ApiError::invalid("destination_id", "expected a UUID")
                            })?,
                    );
                }
                other => {
                    return Err(ApiError::invalid(
                        other,
                        "unknown field; known fields: destination_id",
                    ));
                }
            }
        }
    }

    let event = load_event(&app, id).await?;
    if let Some(dest) = only {
        let found = crate::api::load_destination(&app, dest).await?;
        if found.source_id != event.source_id {
            return Err(ApiError::invalid(
                "destination_id",
                "is not a destination of this event's source",
            ));
        }
        if !found.enabled {
            return Err(ApiError::conflict("the destination is disabled"));
        }
    }
    let now = app.config.clock.now();
    let created: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO deliveries (id, event_id, destination_id, manual, next_attempt_at,
             created_at)
         SELECT gen_random_uuid(), $1, d.id, true, $3, $3 FROM destinations d
         WHERE d.source_id = $2 AND d.enabled AND ($4::uuid IS NULL OR d.id = $4)
         RETURNING id",
    )
    .bind(event.id)
    .bind(event.source_id)
    .bind(now)
    .bind(only)
    .fetch_all(&app.pool)
    .await?;
    tracing::info!(event = %event.id, deliveries = created.len(), "event replayed");
    Ok((StatusCode::ACCEPTED, Json(json!({ "deliveries": created }))))
}

#[derive(Debug, Deserialize)]
pub struct DeliveryFilter {
    limit: Option<i64>,
    cursor: Option<String>,
    source_id: Option<Uuid>,
    destination_id: Option<Uuid>,
}

/// The dead-letter list: deliveries whose attempts ran out, most recent first.
pub async fn dead_letters(
    State(app): State<App>,
    headers: HeaderMap,
    filter: Result<Query<DeliveryFilter>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    admin(&headers, &app)?;
    let Query(filter) = filter.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let limit = page_size(filter.limit)?;
    let cursor = filter.cursor.as_deref().map(decode_cursor).transpose()?;
    let rows: Vec<DeliveryRow> = sqlx::query_as(&format!(
        "{DELIVERY_SQL}
         WHERE d.state = 'failed'
           AND ($1::timestamptz IS NULL OR (d.finished_at, d.id) < ($1, $2))
           AND ($3::uuid IS NULL OR d.destination_id = $3)
           AND ($4::uuid IS NULL OR d.event_id IN (SELECT id FROM events WHERE source_id = $4))
         ORDER BY d.finished_at DESC, d.id DESC LIMIT $5"
    ))
    .bind(cursor.map(|c| c.0))
    .bind(cursor.map(|c| c.1))
    .bind(filter.destination_id)
    .bind(filter.source_id)
    .bind(limit + 1)
    .fetch_all(&app.pool)
    .await?;
    let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    let shown = &rows[..rows.len().min(usize::try_from(limit).unwrap_or(usize::MAX))];
    let next = more
        .then(|| {
            shown
                .last()
                .and_then(|r| r.finished_at.map(|at| encode_cursor(at, r.id)))
        })
        .flatten();
    Ok(Json(json!({
        "deliveries": shown.iter().map(delivery_json).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_named() {
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let id = Uuid::new_v4();
        assert_eq!(decode_cursor(&encode_cursor(at, id)).unwrap(), (at, id));
        let err = decode_cursor("nonsense!").unwrap_err();
        assert!(format!("{err:?}").contains("cursor"));
        // Well-formed but out of any stored range: refused here, not by the database.
        for micros in ["-8000000000000000000", "-1", "253402300800000000"] {
            let crafted = URL_SAFE_NO_PAD.encode(format!("{micros}|{id}"));
            let err = decode_cursor(&crafted).unwrap_err();
            assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
            assert!(format!("{err:?}").contains("cursor"), "{micros}");
        }
        assert!(page_size(Some(0)).is_err());
        assert_eq!(page_size(None).unwrap(), DEFAULT_PAGE);
    }
}
