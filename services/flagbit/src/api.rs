//! The management API under `/api/v1`, for the admin key: environments, their SDK keys,
//! their flags (one at a time, or a whole flagd file imported and exported), and each
//! flag's history. Every flag write is checked with flagd's rules and recorded in the audit
//! log in the same transaction.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use platform::ApiError;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::App;
use crate::model::{self, Flag, FlagFile};
use crate::path::{Invalid, JsonPath};
use crate::snapshot::hash_key;

/// Largest single flag definition accepted.
const MAX_FLAG_BODY: usize = 256 * 1024;
/// Largest flag file accepted by import.
pub const MAX_FILE_BODY: usize = 8 * 1024 * 1024;
const MAX_SMALL_BODY: usize = 16 * 1024;
const MAX_HISTORY: i64 = 500;
/// Who the audit log names: there is one admin key, so one actor.
const ACTOR: &str = "admin";
/// Audit key of changes to an environment's `$evaluators` and `metadata`.
const FLAGSET_KEY: &str = "$flagset";

pub use platform::http::presented_key;

pub(crate) fn admin(headers: &HeaderMap, app: &App) -> Result<(), ApiError> {
    platform::http::require_key(headers, app.config.admin_key.as_ref())
}

fn invalid(i: Invalid) -> ApiError {
    ApiError::invalid(i.path, i.message)
}

async fn read_json(body: Body, limit: usize) -> Result<Value, ApiError> {
    platform::http::json_body(body, limit).await
}

struct EnvRow {
    id: i64,
    evaluators: Map<String, Value>,
    metadata: Map<String, Value>,
}

fn as_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The environment named in the path, locked for the rest of the transaction so that a
/// flag is checked against the evaluators it will be stored with.
async fn lock_env(tx: &mut Transaction<'_, Postgres>, name: &str) -> Result<EnvRow, ApiError> {
    let row: Option<(i64, Value, Value)> = sqlx::query_as(
        "SELECT id, evaluators, metadata FROM environments WHERE name = $1 FOR UPDATE",
    )
    .bind(name)
    .fetch_optional(&mut **tx)
    .await?;
    let (id, evaluators, metadata) = row.ok_or_else(|| ApiError::not_found("environment"))?;
    Ok(EnvRow {
        id,
        evaluators: as_map(evaluators),
        metadata: as_map(metadata),
    })
}

async fn env_id(app: &App, name: &str) -> Result<i64, ApiError> {
    sqlx::query_scalar("SELECT id FROM environments WHERE name = $1")
        .bind(name)
        .fetch_optional(&app.pool)
        .await?
        .ok_or_else(|| ApiError::not_found("environment"))
}

async fn audit(
    tx: &mut Transaction<'_, Postgres>,
    env: i64,
    key: &str,
    before: Option<&Value>,
    after: Option<&Value>,
    at: DateTime<Utc>,
) -> Result<(), ApiError> {
    let action = match (before, after) {
        (None, _) => "create",
        (Some(_), Some(_)) => "update",
        (Some(_), None) => "delete",
    };
    sqlx::query(
        "INSERT INTO audit_log (environment_id, flag_key, action, actor, before, after, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(env)
    .bind(key)
    .bind(action)
    .bind(ACTOR)
    .bind(before)
    .bind(after)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

// ---- environments ----

fn check_env_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "name",
            "1 to 63 lower-case letters, digits, - and _, starting with a letter or digit",
        ))
    }
}

pub async fn create_environment(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    admin(&headers, &app)?;
    let body = read_json(body, MAX_SMALL_BODY).await?;
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("name", "expected a string"))?;
    check_env_name(name)?;
    let now = app.config.clock.now();
    let result = sqlx::query("INSERT INTO environments (name, created_at) VALUES ($1, $2)")
        .bind(name)
        .bind(now)
        .execute(&app.pool)
        .await;
    match result {
        Ok(_) => {
            tracing::info!(environment = name, "environment created");
            Ok((
                StatusCode::CREATED,
                Json(json!({"name": name, "created_at": now})),
            ))
        }
        Err(e) if platform::db::is_unique_violation(&e) => {
            Err(ApiError::conflict(format!("environment {name:?} exists")))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn list_environments(
    State(app): State<App>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    admin(&headers, &app)?;
    let rows: Vec<(String, DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT e.name, e.created_at, (SELECT count(*) FROM flags f WHERE f.environment_id = e.id) \
         FROM environments e ORDER BY e.name",
    )
    .fetch_all(&app.pool)
    .await?;
    let list: Vec<Value> = rows
        .into_iter()
        .map(|(name, created_at, flags)| {
            json!({"name": name, "created_at": created_at, "flags": flags})
        })
        .collect();
    Ok(Json(json!({ "environments": list })))
}

// ---- SDK keys ----

/// A new key: the random parts of two v4 UUIDs (244 bits from the OS's generator), with an
/// `fb_` prefix so a leaked key is recognisable to secret scanners.
fn new_sdk_key() -> String {
    let mut key = String::from("fb_");
    for _ in 0..2 {
        key.push_str(&Uuid::new_v4().simple().to_string());
    }
    key
}

pub async fn create_key(
    State(app): State<App>,
    headers: HeaderMap,
    Path(env): Path<String>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    admin(&headers, &app)?;
    let body = read_json(body, MAX_SMALL_BODY).await?;
    let name = match body.get("name") {
        None => "sdk key",
        Some(Value::String(n)) if (1..=100).contains(&n.chars().count()) => n.as_str(),
        Some(_) => return Err(ApiError::invalid("name", "1 to 100 characters")),
    };
    let env_id = env_id(&app, &env).await?;
    let key = new_sdk_key();
    let id = Uuid::new_v4();
    let prefix: String = key.chars().take(10).collect();
    let now = app.config.clock.now();
    sqlx::query(
        "INSERT INTO sdk_keys (id, environment_id, name, key_hash, key_prefix, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(env_id)
    .bind(name)
    .bind(hash_key(&key).as_slice())
    .bind(&prefix)
    .bind(now)
    .execute(&app.pool)
    .await?;
    tracing::info!(environment = env, key_id = %id, "SDK key created");
    // The only time the key itself is shown: only its hash is stored.
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "name": name, "key": key, "prefix": prefix,
            "environment": env, "created_at": now})),
    ))
}

pub async fn list_keys(
    State(app): State<App>,
    headers: HeaderMap,
    Path(env): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    admin(&headers, &app)?;
    let env_id = env_id(&app, &env).await?;
    type Row = (Uuid, String, String, DateTime<Utc>, Option<DateTime<Utc>>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, name, key_prefix, created_at, revoked_at FROM sdk_keys \
             WHERE environment_id = $1 ORDER BY created_at, id",
    )
    .bind(env_id)
    .fetch_all(&app.pool)
    .await?;
    let keys: Vec<Value> = rows
        .into_iter()
        .map(|(id, name, prefix, created_at, revoked_at)| {
            json!({"id": id, "name": name, "prefix": prefix, "created_at": created_at,
                "revoked_at": revoked_at})
        })
        .collect();
    Ok(Json(json!({ "keys": keys })))
}

pub async fn revoke_key(
    State(app): State<App>,
    headers: HeaderMap,
    Path((env, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    admin(&headers, &app)?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found("SDK key"))?;
    let env_id = env_id(&app, &env).await?;
    let found: Option<Option<DateTime<Utc>>> = sqlx::query_scalar(
        "UPDATE sdk_keys SET revoked_at = coalesce(revoked_at, $3) \
         WHERE id = $1 AND environment_id = $2 RETURNING revoked_at",
    )
    .bind(id)
    .bind(env_id)
    .bind(app.config.clock.now())
    .fetch_optional(&app.pool)
    .await?;
    found.ok_or_else(|| ApiError::not_found("SDK key"))?;
    tracing::info!(environment = env, key_id = %id, "SDK key revoked");
    Ok(StatusCode::NO_CONTENT)
}

// ---- flags ----

fn flag_json(key: &str, def: Value, updated_at: DateTime<Utc>) -> Value {
    json!({"key": key, "definition": def, "updated_at": updated_at})
}

pub async fn list_flags(
    State(app): State<App>,
    headers: HeaderMap,
    Path(env): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    admin(&headers, &app)?;
    let env_id = env_id(&app, &env).await?;
    let rows: Vec<(String, Value, DateTime<Utc>)> = sqlx::query_as(
        "SELECT key, definition, updated_at FROM flags WHERE environment_id = $1 ORDER BY key",
    )
    .bind(env_id)
    .fetch_all(&app.pool)
    .await?;
    let flags: Vec<Value> = rows
        .into_iter()
        .map(|(k, d, u)| flag_json(&k, d, u))
        .collect();
    Ok(Json(json!({ "flags": flags })))
}

pub async fn get_flag(
    State(app): State<App>,
    headers: HeaderMap,
    Path((env, key)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    admin(&headers, &app)?;
    let env_id = env_id(&app, &env).await?;
    let row: Option<(Value, DateTime<Utc>)> = sqlx::query_as(
        "SELECT definition, updated_at FROM flags WHERE environment_id = $1 AND key = $2",
    )
    .bind(env_id)
    .bind(&key)
    .fetch_optional(&app.pool)
    .await?;
    let (def, updated_at) = row.ok_or_else(|| ApiError::not_found("flag"))?;
    Ok(Json(flag_json(&key, def, updated_at)))
}

/// Creates (201) or replaces (200) a flag with the flagd definition in the body.
pub async fn put_flag(
    State(app): State<App>,
    headers: HeaderMap,
    Path((env, key)): Path<(String, String)>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    admin(&headers, &app)?;
    model::check_key(&key, &JsonPath::root().key("key")).map_err(invalid)?;
    let def = read_json(body, MAX_FLAG_BODY).await?;

    let mut tx = app.pool.begin().await?;
    let env_row = lock_env(&mut tx, &env).await?;
    Flag::parse(
        &def,
        &env_row.evaluators,
        &env_row.metadata,
        true,
        &JsonPath::root(),
    )
    .map_err(invalid)?;

    let before: Option<Value> =
        sqlx::query_scalar("SELECT definition FROM flags WHERE environment_id = $1 AND key = $2")
            .bind(env_row.id)
            .bind(&key)
            .fetch_optional(&mut *tx)
            .await?;
    let now = app.config.clock.now();
    sqlx::query(
        "INSERT INTO flags (environment_id, key, definition, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $4) ON CONFLICT (environment_id, key) \
         DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at",
    )
    .bind(env_row.id)
    .bind(&key)
    .bind(&def)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    audit(&mut tx, env_row.id, &key, before.as_ref(), Some(&def), now).await?;
    tx.commit().await?;

    tracing::info!(environment = env, flag = key, "flag written");
    let status = if before.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(flag_json(&key, def, now))))
}

pub async fn delete_flag(
    State(app): State<App>,
    headers: HeaderMap,
    Path((env, key)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    admin(&headers, &app)?;
    let mut tx = app.pool.begin().await?;
    let env_row = lock_env(&mut tx, &env).await?;
    let before: Option<Value> = sqlx::query_scalar(
        "DELETE FROM flags WHERE environment_id = $1 AND key = $2 RETURNING definition",
    )
    .bind(env_row.id)
    .bind(&key)
    .fetch_optional(&mut *tx)
    .await?;
    let before = before.ok_or_else(|| ApiError::not_found("flag"))?;
    let now = app.config.clock.now();
    audit(&mut tx, env_row.id, &key, Some(&before), None, now).await?;
    tx.commit().await?;
    tracing::info!(environment = env, flag = key, "flag deleted");
    Ok(StatusCode::NO_CONTENT)
}

// ---- whole flag files ----

pub async fn export(
    State(app): State<App>,
    headers: HeaderMap,
    Path(env): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    admin(&headers, &app)?;
    let mut tx = app.pool.begin().await?;
    let env_row = lock_env(&mut tx, &env).await?;
    let rows: Vec<(String, Value)> =
        sqlx::query_as("SELECT key, definition FROM flags WHERE environment_id = $1")
            .bind(env_row.id)
            .fetch_all(&mut *tx)
            .await?;
    tx.commit().await?;
    let file = FlagFile {
        flags: rows.into_iter().collect(),
        evaluators: env_row.evaluators,
        metadata: env_row.metadata,
    };
    Ok(Json(file.to_json()))
}

/// Makes the environment's flags exactly those of the flagd file in the body: new flags
/// are created, changed ones updated, absent ones deleted, each with its audit row.
pub async fn import(
    State(app): State<App>,
    headers: HeaderMap,
    Path(env): Path<String>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    admin(&headers, &app)?;
    let doc = read_json(body, MAX_FILE_BODY).await?;
    let file = FlagFile::parse_strict(&doc).map_err(invalid)?;

    let mut tx = app.pool.begin().await?;
    let env_row = lock_env(&mut tx, &env).await?;
    let now = app.config.clock.now();
    let current: Map<String, Value> = sqlx::query_as::<_, (String, Value)>(
        "SELECT key, definition FROM flags WHERE environment_id = $1",
    )
    .bind(env_row.id)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();

    let (mut created, mut updated, mut deleted, mut unchanged) = (0, 0, 0, 0);
    for (key, before) in &current {
        if !file.flags.contains_key(key) {
            sqlx::query("DELETE FROM flags WHERE environment_id = $1 AND key = $2")
                .bind(env_row.id)
                .bind(key)
                .execute(&mut *tx)
                .await?;
            audit(&mut tx, env_row.id, key, Some(before), None, now).await?;
            deleted += 1;
        }
    }
    for (key, def) in &file.flags {
        let before = current.get(key);
        if before == Some(def) {
            unchanged += 1;
            continue;
        }
        sqlx::query(
            "INSERT INTO flags (environment_id, key, definition, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (environment_id, key) \
             DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at",
        )
        .bind(env_row.id)
        .bind(key)
        .bind(def)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        audit(&mut tx, env_row.id, key, before, Some(def), now).await?;
        if before.is_some() {
            updated += 1;
        } else {
            created += 1;
        }
    }
    if file.evaluators != env_row.evaluators || file.metadata != env_row.metadata {
        sqlx::query("UPDATE environments SET evaluators = $2, metadata = $3 WHERE id = $1")
            .bind(env_row.id)
            .bind(Value::Object(file.evaluators.clone()))
            .bind(Value::Object(file.metadata.clone()))
            .execute(&mut *tx)
            .await?;
        let before = flagset_json(&env_row.evaluators, &env_row.metadata);
        let after = flagset_json(&file.evaluators, &file.metadata);
        audit(
            &mut tx,
            env_row.id,
            FLAGSET_KEY,
            Some(&before),
            Some(&after),
            now,
        )
        .await?;
    }
    tx.commit().await?;

    tracing::info!(
        environment = env,
        created,
        updated,
        deleted,
        "flag file imported"
    );
    Ok(Json(
        json!({"created": created, "updated": updated, "deleted": deleted,
        "unchanged": unchanged}),
    ))
}

/// What the audit log records of a change to an environment's shared rules and metadata.
fn flagset_json(evaluators: &Map<String, Value>, metadata: &Map<String, Value>) -> Value {
    json!({ "$evaluators": evaluators, "metadata": metadata })
}

// ---- history ----

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    environment: Option<String>,
    limit: Option<i64>,
}

/// A flag's changes, newest first, in one environment or all of them.
pub async fn history(
    State(app): State<App>,
    headers: HeaderMap,
    Path(key): Path<String>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    admin(&headers, &app)?;
    let Query(q) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_HISTORY).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("from 1 to {MAX_HISTORY}"),
        ));
    }
    if let Some(env) = &q.environment {
        env_id(&app, env).await?;
    }
    type Row = (
        i64,
        String,
        String,
        String,
        Option<Value>,
        Option<Value>,
        DateTime<Utc>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT a.id, e.name, a.action, a.actor, a.before, a.after, a.at \
         FROM audit_log a JOIN environments e ON e.id = a.environment_id \
         WHERE a.flag_key = $1 AND ($2::text IS NULL OR e.name = $2) \
         ORDER BY a.id DESC LIMIT $3",
    )
    .bind(&key)
    .bind(&q.environment)
    .bind(limit)
    .fetch_all(&app.pool)
    .await?;
    let entries: Vec<Value> = rows
        .into_iter()
        .map(|(id, env, action, actor, before, after, at)| {
            json!({"id": id, "environment": env, "key": key, "action": action,
                "actor": actor, "before": before, "after": after, "at": at})
        })
        .collect();
    Ok(Json(json!({ "history": entries })))
}

// ---- usage ----

/// Longest span one usage query may cover, bounding the rows returned.
const MAX_USAGE_SPAN_DAYS: i64 = 93;

#[derive(Debug, Deserialize)]
pub struct UsageQuery {
    from: Option<String>,
    to: Option<String>,
    environment: Option<String>,
}

fn instant(field: &str, raw: Option<&str>) -> Result<DateTime<Utc>, ApiError> {
    let raw = raw.ok_or_else(|| ApiError::invalid(field, "required (RFC 3339)"))?;
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ApiError::invalid(field, format!("not an RFC 3339 time: {e}")))
}

/// Hourly evaluation counts with `from <= hour < to`, per environment, flag and variant
/// (`""` when none was served). Counts reach here once the worker has rolled up their hour.
pub async fn usage(
    State(app): State<App>,
    headers: HeaderMap,
    query: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    admin(&headers, &app)?;
    let Query(q) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let from = instant("from", q.from.as_deref())?;
    let to = instant("to", q.to.as_deref())?;
    if to <= from {
        return Err(ApiError::invalid("to", "must be after from"));
    }
    if (to - from).num_days() > MAX_USAGE_SPAN_DAYS {
        return Err(ApiError::invalid(
            "to",
            format!("at most {MAX_USAGE_SPAN_DAYS} days after from"),
        ));
    }
    if let Some(env) = &q.environment {
        env_id(&app, env).await?;
    }
    let rows: Vec<(String, String, String, DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT e.name, u.flag_key, u.variant, u.hour, u.count \
         FROM usage_hourly u JOIN environments e ON e.id = u.environment_id \
         WHERE u.hour >= $1 AND u.hour < $2 AND ($3::text IS NULL OR e.name = $3) \
         ORDER BY u.hour, e.name, u.flag_key, u.variant",
    )
    .bind(from)
    .bind(to)
    .bind(&q.environment)
    .fetch_all(&app.pool)
    .await?;
    let usage: Vec<Value> = rows
        .into_iter()
        .map(|(env, key, variant, hour, count)| {
            json!({"environment": env, "key": key, "variant": variant, "hour": hour,
                "count": count})
        })
        .collect();
    Ok(Json(json!({ "usage": usage })))
}
