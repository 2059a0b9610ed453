//! The checks API under `/api/v1`: create, list, get, update, delete, pause, resume, and
//! the check's pings, flips and alerts. A read-write key may do everything; a read-only key
//! may list and get.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use platform::ApiError;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::App;
use crate::cron::Cron;
use crate::status::{MAX_SECS, MIN_SECS};
use crate::store::{self, COLUMNS, CheckRow};

/// Largest API request body: a check is a few hundred bytes.
const MAX_BODY: usize = 64 * 1024;
const MAX_TAGS: usize = 20;
const MAX_TAG_LEN: usize = 50;
const MAX_URL_LEN: usize = 2000;
const MAX_CHECKS_LISTED: i64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    ReadOnly,
}

fn access(headers: &HeaderMap, app: &App) -> Result<Access, ApiError> {
    let given = platform::http::presented_key(headers).ok_or_else(ApiError::unauthorized)?;

    if app
        .config
        .api_key
        .as_ref()
        .is_some_and(|k| platform::http::same_secret(given, k))
    {
        Ok(Access::ReadWrite)
    } else if app
        .config
        .read_key
        .as_ref()
        .is_some_and(|k| platform::http::same_secret(given, k))
    {
        Ok(Access::ReadOnly)
    } else {
        tracing::warn!("API request with an unknown key");
        Err(ApiError::unauthorized())
    }
}

fn writer(headers: &HeaderMap, app: &App) -> Result<(), ApiError> {
    match access(headers, app)? {
        Access::ReadWrite => Ok(()),
        Access::ReadOnly => Err(ApiError::forbidden(
            "the read-only key may only list and get checks",
        )),
    }
}

/// The `{id}` of a check's URL. Anything that is not a UUID (including a path that does not
/// decode) names no check: a JSON 404, never the framework's plain-text rejection.
pub struct CheckId(Uuid);

impl<S: Send + Sync> FromRequestParts<S> for CheckId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found("check"))?;
        Uuid::parse_str(&raw.0)
            .map(CheckId)
            .map_err(|_| ApiError::not_found("check"))
    }
}

async fn read_object(body: Body) -> Result<Map<String, Value>, ApiError> {
    match platform::http::json_body(body, MAX_BODY).await? {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::invalid("body", "expected a JSON object")),
    }
}

/// A check's fields as sent: each present one validated, each absent one left alone.
#[derive(Debug, Default)]
struct Input {
    name: Option<String>,
    slug: Option<Option<String>>,
    tags: Option<Vec<String>>,
    timeout: Option<i32>,
    schedule: Option<String>,
    tz: Option<String>,
    grace: Option<i32>,
    webhook_url: Option<Option<String>>,
}

const FIELDS: &[&str] = &[
    "name",
    "slug",
    "tags",
    "timeout",
    "schedule",
    "tz",
    "grace",
    "webhook_url",
];

fn string(field: &str, value: &Value, max: usize) -> Result<String, ApiError> {
    let s = value
        .as_str()
        .ok_or_else(|| ApiError::invalid(field, "expected a string"))?;
    if s.chars().count() > max {
        return Err(ApiError::invalid(
            field,
            format!("longer than {max} characters"),
        ));
    }
    Ok(s.to_owned())
}

fn seconds(field: &str, value: &Value) -> Result<i32, ApiError> {
    let n = value
        .as_i64()
        .ok_or_else(|| ApiError::invalid(field, "expected a whole number of seconds"))?;
    if !(MIN_SECS..=MAX_SECS).contains(&n) {
        return Err(ApiError::invalid(
            field,
            format!("must be between {MIN_SECS} and {MAX_SECS} seconds"),
        ));
    }
    i32::try_from(n).map_err(|_| ApiError::invalid(field, "out of range"))
}

impl Input {
    fn parse(map: Map<String, Value>) -> Result<Self, ApiError> {
        let mut input = Self::default();
        for (key, value) in map {
            let field = key.as_str();
            match field {
                "name" => {
                    let name = string(field, &value, 100)?;
                    if name.trim().is_empty() {
                        return Err(ApiError::invalid(field, "must not be empty"));
                    }
                    input.name = Some(name);
                }
                "slug" if value.is_null() => input.slug = Some(None),
                "slug" => {
                    let slug = string(field, &value, 100)?;
                    let ok = !slug.is_empty()
                        && slug.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b)
                        });
                    if !ok {
                        return Err(ApiError::invalid(
                            field,
                            "use lower-case letters, digits, - and _",
                        ));
                    }
                    input.slug = Some(Some(slug));
                }
                "tags" => input.tags = Some(tags(&value)?),
                "timeout" => input.timeout = Some(seconds(field, &value)?),
                "grace" => input.grace = Some(seconds(field, &value)?),
                "schedule" => {
                    let expr = string(field, &value, crate::cron::MAX_LEN)?;
                    Cron::parse(&expr).map_err(|e| ApiError::invalid(field, e.0))?;
                    input.schedule = Some(expr);
                }
                "tz" => {
                    let tz = string(field, &value, 64)?;
                    tz.parse::<Tz>().map_err(|_| {
                        ApiError::invalid(field, format!("unknown time zone {tz:?}"))
                    })?;
                    input.tz = Some(tz);
                }
                "webhook_url" if value.is_null() => input.webhook_url = Some(None),
                "webhook_url" => {
                    let url = string(field, &value, MAX_URL_LEN)?;
                    match reqwest::Url::parse(&url) {
                        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                        _ => return Err(ApiError::invalid(field, "expected an http(s) URL")),
                    }
                    input.webhook_url = Some(Some(url));
                }
                _ => {
                    return Err(ApiError::invalid(
                        field,
                        format!("unknown field; known fields: {}", FIELDS.join(", ")),
                    ));
                }
            }
        }
        Ok(input)
    }
}

fn tags(value: &Value) -> Result<Vec<String>, ApiError> {
    let list: Vec<String> = match value {
        // healthchecks takes a space-separated string; a list is the JSON way.
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        Value::Array(items) => items
            .iter()
            .map(|t| {
                t.as_str()
                    .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
                    .map(str::to_owned)
                    .ok_or_else(|| ApiError::invalid("tags", "each tag is a string without spaces"))
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(ApiError::invalid("tags", "expected a list of strings")),
    };
    if list.len() > MAX_TAGS || list.iter().any(|t| t.chars().count() > MAX_TAG_LEN) {
        return Err(ApiError::invalid(
            "tags",
            format!("at most {MAX_TAGS} tags of {MAX_TAG_LEN} characters"),
        ));
    }
    Ok(list)
}

fn secs(v: Option<i64>) -> Value {
    v.map_or(Value::Null, |ms| json!(ms as f64 / 1000.0))
}

/// A check as clients see it. The ping URL and webhook are for the read-write key only:
/// the ping URL is what lets anyone ping, and webhook URLs often carry tokens.
pub fn check_json(row: &CheckRow, access: Access, app: &App, now: DateTime<Utc>) -> Value {
    let engine = row.engine();
    let (status, started, next_ping) = match &engine {
        Ok(check) => {
            let (shown, started) = check.shown(now);
            (shown.as_str(), started, check.next_expected())
        }
        Err(_) => (row.status.as_str(), false, None),
    };
    let mut out = json!({
        "id": row.id,
        "name": row.name,
        "slug": row.slug,
        "tags": row.tags,
        "grace": row.grace_secs,
        "tz": row.tz,
        "status": status,
        "started": started,
        "last_ping": row.last_ping,
        "next_ping": next_ping,
        "n_pings": row.n_pings,
        "last_duration": secs(row.last_duration_ms),
        "created_at": row.created_at,
    });
    if let Some(obj) = out.as_object_mut() {
        match (&row.cron_expr, row.timeout_secs) {
            (Some(expr), _) => obj.insert("schedule".into(), json!(expr)),
            (None, timeout) => obj.insert("timeout".into(), json!(timeout)),
        };
        if access == Access::ReadWrite {
            let ping_url = format!("{}/ping/{}", app.config.public_url, row.ping_uuid);
            obj.insert("ping_url".into(), json!(ping_url));
            obj.insert("webhook_url".into(), json!(row.webhook_url));
        }
    }
    out
}

pub async fn create(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    writer(&headers, &app)?;
    let input = Input::parse(read_object(body).await?)?;
    let name = input
        .name
        .ok_or_else(|| ApiError::invalid("name", "is required"))?;
    let (timeout, schedule) = match input.schedule {
        // As in healthchecks, a schedule wins over a timeout sent beside it.
        Some(expr) => (None, Some(expr)),
        None => (Some(input.timeout.unwrap_or(86_400)), None),
    };

    let now = app.config.clock.now();
    let row: CheckRow = sqlx::query_as(&format!(
        "INSERT INTO checks (id, ping_uuid, name, slug, tags, timeout_secs, cron_expr, tz,
             grace_secs, webhook_url, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
         RETURNING {COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(Uuid::new_v4())
    .bind(name)
    .bind(input.slug.flatten())
    .bind(input.tags.unwrap_or_default())
    .bind(timeout)
    .bind(schedule)
    .bind(input.tz.unwrap_or_else(|| "UTC".to_owned()))
    .bind(input.grace.unwrap_or(3600))
    .bind(input.webhook_url.flatten())
    .bind(now)
    .fetch_one(&app.pool)
    .await?;

    tracing::info!(check = %row.id, "check created");
    Ok((
        StatusCode::CREATED,
        Json(check_json(&row, Access::ReadWrite, &app, now)),
    ))
}

#[derive(Debug, Deserialize)]
pub struct ListFilter {
    tag: Option<String>,
    slug: Option<String>,
}

pub async fn list(
    State(app): State<App>,
    headers: HeaderMap,
    filter: Result<Query<ListFilter>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let access = access(&headers, &app)?;
    let Query(filter) = filter.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let rows: Vec<CheckRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM checks
         WHERE ($1::text IS NULL OR $1 = ANY (tags)) AND ($2::text IS NULL OR slug = $2)
         ORDER BY created_at, id LIMIT $3"
    ))
    .bind(filter.tag)
    .bind(filter.slug)
    .bind(MAX_CHECKS_LISTED)
    .fetch_all(&app.pool)
    .await?;
    let now = app.config.clock.now();
    let checks: Vec<Value> = rows
        .iter()
        .map(|r| check_json(r, access, &app, now))
        .collect();
    Ok(Json(json!({ "checks": checks })))
}

pub async fn get(
    State(app): State<App>,
    headers: HeaderMap,
    CheckId(id): CheckId,
) -> Result<Json<Value>, ApiError> {
    let access = access(&headers, &app)?;
    let row = store::get(&app.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found("check"))?;
    Ok(Json(check_json(&row, access, &app, app.config.clock.now())))
}

pub async fn update(
    State(app): State<App>,
    headers: HeaderMap,
    CheckId(id): CheckId,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    writer(&headers, &app)?;
    let input = Input::parse(read_object(body).await?)?;
    let now = app.config.clock.now();

    let mut tx = app.pool.begin().await?;
    let mut row = store::lock_by_id(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("check"))?;

    if let Some(name) = input.name {
        row.name = name;
    }
    if let Some(slug) = input.slug {
        row.slug = slug;
    }
    if let Some(tags) = input.tags {
        row.tags = tags;
    }
    if let Some(tz) = input.tz {
        row.tz = tz;
    }
    if let Some(grace) = input.grace {
        row.grace_secs = grace;
    }
    if let Some(url) = input.webhook_url {
        row.webhook_url = url;
    }
    if let Some(expr) = input.schedule {
        (row.cron_expr, row.timeout_secs) = (Some(expr), None);
    } else if let Some(timeout) = input.timeout {
        (row.cron_expr, row.timeout_secs) = (None, Some(timeout));
    }

    // The deadline follows the new timing rules at once; if they make the check overdue,
    // the worker's next sweep marks it down at the deadline they imply.
    let deadline = row.engine()?.deadline();
    let row: CheckRow = sqlx::query_as(&format!(
        "UPDATE checks SET name = $2, slug = $3, tags = $4, timeout_secs = $5, cron_expr = $6,
             tz = $7, grace_secs = $8, webhook_url = $9, deadline = $10, updated_at = $11
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(&row.name)
    .bind(&row.slug)
    .bind(&row.tags)
    .bind(row.timeout_secs)
    .bind(&row.cron_expr)
    .bind(&row.tz)
    .bind(row.grace_secs)
    .bind(&row.webhook_url)
    .bind(deadline)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;

    Ok(Json(check_json(&row, Access::ReadWrite, &app, now)))
}

pub async fn delete(
    State(app): State<App>,
    headers: HeaderMap,
    CheckId(id): CheckId,
) -> Result<Json<Value>, ApiError> {
    writer(&headers, &app)?;
    let row: CheckRow = sqlx::query_as(&format!(
        "DELETE FROM checks WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(&app.pool)
    .await?
    .ok_or_else(|| ApiError::not_found("check"))?;
    tracing::info!(check = %row.id, "check deleted");
    Ok(Json(check_json(
        &row,
        Access::ReadWrite,
        &app,
        app.config.clock.now(),
    )))
}

#[derive(Clone, Copy)]
enum Toggle {
    Pause,
    Resume,
}

async fn toggle(
    app: &App,
    headers: &HeaderMap,
    id: Uuid,
    what: Toggle,
) -> Result<Json<Value>, ApiError> {
    writer(headers, app)?;
    let now = app.config.clock.now();

    let mut tx = app.pool.begin().await?;
    let row = store::lock_by_id(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("check"))?;
    let mut check = row.engine()?;

    let flip = match what {
        Toggle::Pause => check.pause(now),
        Toggle::Resume => {
            if row.status != "paused" {
                return Err(ApiError::conflict("the check is not paused"));
            }
            check.resume(now)
        }
    };
    store::save_state(&mut tx, id, &check, now).await?;
    store::record_flips(&mut tx, &row, flip.as_slice(), now).await?;
    let row = store::lock_by_id(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("check"))?;
    tx.commit().await?;

    Ok(Json(check_json(&row, Access::ReadWrite, app, now)))
}

pub async fn pause(
    State(app): State<App>,
    headers: HeaderMap,
    CheckId(id): CheckId,
) -> Result<Json<Value>, ApiError> {
    toggle(&app, &headers, id, Toggle::Pause).await
}

pub async fn resume(
    State(app): State<App>,
    headers: HeaderMap,
    CheckId(id): CheckId,
) -> Result<Json<Value>, ApiError> {
    toggle(&app, &headers, id, Toggle::Resume).await
}

/// The check's id, after making sure it exists (so an unknown id is a 404, not an empty
/// list).
async fn existing(app: &App, id: Uuid) -> Result<Uuid, ApiError> {
    let found: Option<Uuid> = sqlx::query_scalar("SELECT id FROM checks WHERE id = $1")
        .bind(id)
        .fetch_optional(&app.pool)
        .await?;
    found.ok_or_else(|| ApiError::not_found("check"))
}

#[derive(sqlx::FromRow)]
struct PingRow {
    n: i64,
    created_at: DateTime<Utc>,
    kind: String,
    exit_status: Option<i16>,
    rid: Option<Uuid>,
    method: String,
    user_agent: Option<String>,
    remote_addr: Option<String>,
    body: Option<Vec<u8>>,
    body_size: i32,
    body_truncated: bool,
    duration_ms: Option<i64>,
}

/// The kept pings, newest first, with durations for finishes that paired with a start.
pub async fn pings(
    State(app): State<App>,
    headers: HeaderMap,
    CheckId(id): CheckId,
) -> Result<Json<Value>, ApiError> {
    writer(&headers, &app)?;
    let id = existing(&app, id).await?;
    let rows: Vec<PingRow> = sqlx::query_as(
        "SELECT n, created_at, kind, exit_status, rid, method, user_agent, remote_addr, body,
             body_size, body_truncated, duration_ms
         FROM pings WHERE check_id = $1 ORDER BY n DESC LIMIT $2",
    )
    .bind(id)
    .bind(app.config.ping_log_limit)
    .fetch_all(&app.pool)
    .await?;

    let pings: Vec<Value> = rows
        .into_iter()
        .map(|p| {
            json!({
                "n": p.n,
                "date": p.created_at,
                "type": p.kind,
                "exit_status": p.exit_status,
                "rid": p.rid,
                "method": p.method,
                "ua": p.user_agent,
                "remote_addr": p.remote_addr,
                "body": p.body.map(|b| String::from_utf8_lossy(&b).into_owned()),
                "body_size": p.body_size,
                "body_truncated": p.body_truncated,
                "duration": secs(p.duration_ms),
            })
        })
        .collect();
    Ok(Json(json!({ "pings": pings })))
}

pub async fn flips(
    State(app): State<App>,
    headers: HeaderMap,
    CheckId(id): CheckId,
) -> Result<Json<Value>, ApiError> {
    access(&headers, &app)?;
    let id = existing(&app, id).await?;
    let rows: Vec<(DateTime<Utc>, String, String, String, bool)> = sqlx::query_as(
        "SELECT at, old_status, new_status, reason, alert FROM flips
         WHERE check_id = $1 ORDER BY at DESC, id DESC LIMIT 1000",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await?;
    let flips: Vec<Value> = rows
        .into_iter()
        .map(|(at, from, to, reason, alert)| {
            json!({ "timestamp": at, "old_status": from, "new_status": to,
                    "reason": reason, "alert": alert })
        })
        .collect();
    Ok(Json(json!({ "flips": flips })))
}

#[derive(sqlx::FromRow)]
struct AlertRow {
    id: Uuid,
    state: String,
    payload: Value,
    created_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
    attempts: Value,
}

/// Alerts of the check, newest first, each with every delivery attempt.
pub async fn alerts(
    State(app): State<App>,
    headers: HeaderMap,
    CheckId(id): CheckId,
) -> Result<Json<Value>, ApiError> {
    writer(&headers, &app)?;
    let id = existing(&app, id).await?;
    let rows: Vec<AlertRow> = sqlx::query_as(
        "SELECT a.id, a.state, a.payload, a.created_at, a.delivered_at,
                 COALESCE((SELECT jsonb_agg(jsonb_build_object(
                     'attempt', t.attempt, 'time', t.at, 'duration_ms', t.duration_ms,
                     'status_code', t.status_code, 'error', t.error) ORDER BY t.attempt)
                   FROM alert_attempts t WHERE t.alert_id = a.id), '[]'::jsonb) AS attempts
             FROM alerts a WHERE a.check_id = $1 ORDER BY a.created_at DESC LIMIT 100",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await?;
    let alerts: Vec<Value> = rows
        .into_iter()
        .map(|a| {
            json!({ "id": a.id, "state": a.state, "payload": a.payload,
                    "created_at": a.created_at, "delivered_at": a.delivered_at,
                    "attempts": a.attempts })
        })
        .collect();
    Ok(Json(json!({ "alerts": alerts })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<Input, ApiError> {
        match v {
            Value::Object(map) => Input::parse(map),
            _ => unreachable!("tests pass objects"),
        }
    }

    fn field_of(v: Value) -> (StatusCode, String) {
        let err = parse(v).expect_err("refused");
        let status = err.status();
        let body = format!("{err:?}");
        (status, body)
    }

    #[test]
    fn each_bad_field_is_named() {
        for (input, field) in [
            (json!({"nme": "x"}), "nme"),
            (json!({"schedule": "0 0 30 2 *"}), "schedule"),
            (json!({"schedule": "* * * * * *"}), "schedule"),
            (json!({"tz": "Mars/Olympus"}), "tz"),
            (json!({"timeout": 59}), "timeout"),
            (json!({"timeout": 31_536_001}), "timeout"),
            (json!({"grace": "60"}), "grace"),
            (json!({"name": ""}), "name"),
            (json!({"slug": "Has Caps"}), "slug"),
            (json!({"tags": [1]}), "tags"),
            (json!({"webhook_url": "ftp://x"}), "webhook_url"),
        ] {
            let (status, debug) = field_of(input.clone());
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{input}");
            assert!(
                debug.contains(&format!("Some(\"{field}\")")),
                "{input}: {debug}"
            );
        }
    }

    #[test]
    fn keys_compare_whole() {
        let key = secrecy::SecretString::from("0123456789abcdef");
        assert!(platform::http::same_secret("0123456789abcdef", &key));
        assert!(!platform::http::same_secret("0123456789abcde", &key));
        assert!(!platform::http::same_secret("0123456789abcdeF", &key));
    }

    #[test]
    fn tags_take_a_list_or_a_spaced_string() {
        assert_eq!(tags(&json!("a b")).unwrap(), ["a", "b"]);
        assert_eq!(tags(&json!(["a", "b"])).unwrap(), ["a", "b"]);
        assert!(tags(&json!(["a b"])).is_err());
    }
}
