//! The admin API under `/api/v1` for sources and their destinations: create, list, get,
//! update, delete. Every call needs the admin key.
//!
//! Secrets never leave after creation: a source's verification secret is never returned
//! (`has_secret` says one is set); a destination's signing secret is returned once, in the
//! answer to its creation; extra header values are masked.

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use platform::ApiError;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::App;
use crate::signature::{self, Scheme};

/// Largest API request body: a source or destination is a few hundred bytes.
pub const MAX_BODY: usize = 64 * 1024;
const MAX_URL_LEN: usize = 2000;
const MAX_HEADERS: usize = 20;
const MAX_SECRET_LEN: usize = 1000;
/// Headers a destination may not set: the worker writes them, or HTTP owns them.
const RESERVED: &[&str] = &[
    "content-type",
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// Refuses a request without the admin key.
pub fn admin(headers: &HeaderMap, app: &App) -> Result<(), ApiError> {
    platform::http::require_key(headers, app.config.admin_key.as_ref())
}

/// The `{id}` of a URL. Anything that is not a UUID names nothing: a JSON 404, never the
/// framework's plain-text rejection.
pub struct PathId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found("resource"))?;
        Uuid::parse_str(&raw.0)
            .map(PathId)
            .map_err(|_| ApiError::not_found("resource"))
    }
}

pub async fn read_object(body: Body) -> Result<Map<String, Value>, ApiError> {
    match platform::http::json_body(body, MAX_BODY).await? {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::invalid("body", "expected a JSON object")),
    }
}

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

fn unknown(field: &str, known: &[&str]) -> ApiError {
    ApiError::invalid(
        field,
        format!("unknown field; known fields: {}", known.join(", ")),
    )
}

// ---------------------------------------------------------------------------------------
// Sources

#[derive(Debug, Default)]
struct SourceInput {
    name: Option<String>,
    scheme: Option<Scheme>,
    secret: Option<String>,
    on_bad_signature: Option<&'static str>,
}

const SOURCE_FIELDS: &[&str] = &["name", "scheme", "secret", "on_bad_signature"];

impl SourceInput {
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
                "scheme" => {
                    let s = string(field, &value, 40)?;
                    input.scheme = Some(Scheme::parse(&s).ok_or_else(|| {
                        ApiError::invalid(
                            field,
                            "expected none, standard_webhooks, github or stripe",
                        )
                    })?);
                }
                "secret" => input.secret = Some(string(field, &value, MAX_SECRET_LEN)?),
                "on_bad_signature" => {
                    input.on_bad_signature = Some(match value.as_str() {
                        Some("reject") => "reject",
                        Some("mark") => "mark",
                        _ => return Err(ApiError::invalid(field, "expected reject or mark")),
                    });
                }
                _ => return Err(unknown(field, SOURCE_FIELDS)),
            }
        }
        Ok(input)
    }
}

/// The secret a source keeps under `scheme`: none for `none`, else a usable one.
fn source_secret(scheme: Scheme, secret: Option<String>) -> Result<Option<String>, ApiError> {
    match (scheme, secret) {
        (Scheme::None, _) => Ok(None),
        (_, None) => Err(ApiError::invalid("secret", "is required for this scheme")),
        (scheme, Some(secret)) => {
            scheme
                .check_secret(&secret)
                .map_err(|p| ApiError::invalid("secret", p))?;
            Ok(Some(secret))
        }
    }
}

#[derive(sqlx::FromRow)]
pub struct SourceRow {
    pub id: Uuid,
    pub name: String,
    pub scheme: String,
    pub secret: Option<String>,
    pub on_bad_signature: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SOURCE_COLUMNS: &str = "id, name, scheme, secret, on_bad_signature, created_at, updated_at";

fn source_json(app: &App, row: &SourceRow) -> Value {
    json!({
        "id": row.id,
        "name": row.name,
        "scheme": row.scheme,
        "has_secret": row.secret.is_some(),
        "on_bad_signature": row.on_bad_signature,
        "ingest_url": format!("{}/in/{}", app.config.public_url, row.id),
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    })
}

pub async fn create_source(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    admin(&headers, &app)?;
    let input = SourceInput::parse(read_object(body).await?)?;
    let name = input
        .name
        .ok_or_else(|| ApiError::invalid("name", "is required"))?;
    let scheme = input
        .scheme
        .ok_or_else(|| ApiError::invalid("scheme", "is required"))?;
    let secret = source_secret(scheme, input.secret)?;
    let now = app.config.clock.now();

    let row: SourceRow = sqlx::query_as(&format!(
        "INSERT INTO sources (id, name, scheme, secret, on_bad_signature, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {SOURCE_COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(name)
    .bind(scheme.as_str())
    .bind(secret)
    .bind(input.on_bad_signature.unwrap_or("reject"))
    .bind(now)
    .fetch_one(&app.pool)
    .await?;
    tracing::info!(source = %row.id, scheme = row.scheme, "source created");
    Ok((StatusCode::CREATED, Json(source_json(&app, &row))))
}

pub async fn list_sources(
    State(app): State<App>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    admin(&headers, &app)?;
    let rows: Vec<SourceRow> = sqlx::query_as(&format!(
        "SELECT {SOURCE_COLUMNS} FROM sources ORDER BY created_at, id LIMIT 1000"
    ))
    .fetch_all(&app.pool)
    .await?;
    let sources: Vec<Value> = rows.iter().map(|r| source_json(&app, r)).collect();
    Ok(Json(json!({ "sources": sources })))
}

async fn load_source(app: &App, id: Uuid) -> Result<SourceRow, ApiError> {
    sqlx::query_as(&format!(
        "SELECT {SOURCE_COLUMNS} FROM sources WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&app.pool)
    .await?
    .ok_or_else(|| ApiError::not_found("source"))
}

pub async fn get_source(
    State(app): State<App>,
    headers: HeaderMap,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    admin(&headers, &app)?;
    let row = load_source(&app, id).await?;
    let mut out = source_json(&app, &row);
    out["destinations"] = Value::Array(destinations_of(&app, id).await?);
    Ok(Json(out))
}

pub async fn update_source(
    State(app): State<App>,
    headers: HeaderMap,
    PathId(id): PathId,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    admin(&headers, &app)?;
    let input = SourceInput::parse(read_object(body).await?)?;
    let mut tx = app.pool.begin().await?;
    let row: SourceRow = sqlx::query_as(&format!(
        "SELECT {SOURCE_COLUMNS} FROM sources WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("source"))?;

    let old_scheme = Scheme::parse(&row.scheme).unwrap_or(Scheme::None);
    let scheme = input.scheme.unwrap_or(old_scheme);
    // A new scheme needs a secret made for it, unless the old one suits it as well.
    let secret = match input.secret {
        Some(secret) => Some(secret),
        None if scheme == old_scheme => row.secret.clone(),
        None => row
            .secret
            .clone()
            .filter(|s| scheme.check_secret(s).is_ok()),
    };
    let secret = source_secret(scheme, secret)?;
    let now = app.config.clock.now();
    let row: SourceRow = sqlx::query_as(&format!(
        "UPDATE sources SET name = $2, scheme = $3, secret = $4, on_bad_signature = $5,
             updated_at = $6
         WHERE id = $1 RETURNING {SOURCE_COLUMNS}"
    ))
    .bind(id)
    .bind(input.name.unwrap_or(row.name))
    .bind(scheme.as_str())
    .bind(secret)
    .bind(
        input
            .on_bad_signature
            .map_or(row.on_bad_signature, str::to_owned),
    )
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(source = %row.id, "source updated");
    Ok(Json(source_json(&app, &row)))
}

pub async fn delete_source(
    State(app): State<App>,
    headers: HeaderMap,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    admin(&headers, &app)?;
    let row: SourceRow = sqlx::query_as(&format!(
        "DELETE FROM sources WHERE id = $1 RETURNING {SOURCE_COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(&app.pool)
    .await?
    .ok_or_else(|| ApiError::not_found("source"))?;
    tracing::info!(source = %row.id, "source deleted with its events");
    Ok(Json(source_json(&app, &row)))
}

// ---------------------------------------------------------------------------------------
// Destinations

#[derive(Debug, Default)]
struct DestinationInput {
    url: Option<String>,
    headers: Option<Map<String, Value>>,
    secret: Option<String>,
    enabled: Option<bool>,
    rate_limit: Option<Option<i32>>,
}

const DESTINATION_FIELDS: &[&str] = &["url", "headers", "secret", "enabled", "rate_limit"];

impl DestinationInput {
    fn parse(map: Map<String, Value>) -> Result<Self, ApiError> {
        let mut input = Self::default();
        for (key, value) in map {
            let field = key.as_str();
            match field {
                "url" => {
                    let url = string(field, &value, MAX_URL_LEN)?;
                    match reqwest::Url::parse(&url) {
                        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                        _ => return Err(ApiError::invalid(field, "expected an http(s) URL")),
                    }
                    input.url = Some(url);
                }
                "headers" => input.headers = Some(extra_headers(&value)?),
                "secret" => {
                    let secret = string(field, &value, 200)?;
                    let key = signature::standard_key(&secret)
                        .map_err(|p| ApiError::invalid(field, p))?;
                    if !(24..=64).contains(&key.len()) {
                        return Err(ApiError::invalid(field, "must decode to 24 to 64 bytes"));
                    }
                    input.secret = Some(secret);
                }
                "enabled" => {
                    input.enabled = Some(
                        value
                            .as_bool()
                            .ok_or_else(|| ApiError::invalid(field, "expected true or false"))?,
                    );
                }
                "rate_limit" if value.is_null() => input.rate_limit = Some(None),
                "rate_limit" => {
                    let n = value
                        .as_i64()
                        .filter(|n| (1..=10_000).contains(n))
                        .ok_or_else(|| {
                            ApiError::invalid(field, "expected requests per second, 1 to 10000")
                        })?;
                    input.rate_limit = Some(Some(i32::try_from(n).unwrap_or(10_000)));
                }
                _ => return Err(unknown(field, DESTINATION_FIELDS)),
            }
        }
        Ok(input)
    }
}

fn extra_headers(value: &Value) -> Result<Map<String, Value>, ApiError> {
    let map = value
        .as_object()
        .ok_or_else(|| ApiError::invalid("headers", "expected an object of strings"))?;
    if map.len() > MAX_HEADERS {
        return Err(ApiError::invalid(
            "headers",
            format!("at most {MAX_HEADERS} headers"),
        ));
    }
    for (name, value) in map {
        let field = format!("headers.{name}");
        let parsed = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ApiError::invalid(&field, "not a valid header name"))?;
        if RESERVED.contains(&parsed.as_str()) {
            return Err(ApiError::invalid(&field, "set by WebhookVault itself"));
        }
        let text = value
            .as_str()
            .filter(|v| v.len() <= 4096)
            .ok_or_else(|| ApiError::invalid(&field, "expected a string of at most 4096 bytes"))?;
        HeaderValue::from_str(text)
            .map_err(|_| ApiError::invalid(&field, "not a valid header value"))?;
    }
    Ok(map.clone())
}

#[derive(sqlx::FromRow)]
pub struct DestinationRow {
    pub id: Uuid,
    pub source_id: Uuid,
    pub url: String,
    pub headers: Value,
    pub secret: String,
    pub enabled: bool,
    pub rate_limit: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const DESTINATION_COLUMNS: &str =
    "id, source_id, url, headers, secret, enabled, rate_limit, created_at, updated_at";

/// A destination as clients see it: header values and the URL's userinfo and query masked,
/// the secret left out.
fn destination_json(row: &DestinationRow) -> Value {
    let headers: Map<String, Value> = row
        .headers
        .as_object()
        .map(|m| m.keys().map(|k| (k.clone(), json!("***"))).collect())
        .unwrap_or_default();
    json!({
        "id": row.id,
        "source_id": row.source_id,
        "url": crate::forward::masked_url(&row.url),
        "headers": headers,
        "enabled": row.enabled,
        "rate_limit": row.rate_limit,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    })
}

async fn destinations_of(app: &App, source: Uuid) -> Result<Vec<Value>, ApiError> {
    let rows: Vec<DestinationRow> = sqlx::query_as(&format!(
        "SELECT {DESTINATION_COLUMNS} FROM destinations WHERE source_id = $1
         ORDER BY created_at, id"
    ))
    .bind(source)
    .fetch_all(&app.pool)
    .await?;
    Ok(rows.iter().map(destination_json).collect())
}

pub async fn create_destination(
    State(app): State<App>,
    headers: HeaderMap,
    PathId(source): PathId,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    admin(&headers, &app)?;
    let input = DestinationInput::parse(read_object(body).await?)?;
    let url = input
        .url
        .ok_or_else(|| ApiError::invalid("url", "is required"))?;
    load_source(&app, source).await?;
    let secret = input.secret.unwrap_or_else(signature::new_secret);
    let now = app.config.clock.now();

    let row: DestinationRow = sqlx::query_as(&format!(
        "INSERT INTO destinations (id, source_id, url, headers, secret, enabled, rate_limit,
             created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING {DESTINATION_COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(source)
    .bind(url)
    .bind(Value::Object(input.headers.unwrap_or_default()))
    .bind(&secret)
    .bind(input.enabled.unwrap_or(true))
    .bind(input.rate_limit.flatten())
    .bind(now)
    .fetch_one(&app.pool)
    .await
    .map_err(|e| match &e {
        // The source went away between the check and the insert.
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => ApiError::not_found("source"),
        _ => e.into(),
    })?;
    tracing::info!(destination = %row.id, source = %source, "destination created");

    // The one time the signing secret is shown.
    let mut out = destination_json(&row);
    out["secret"] = json!(secret);
    Ok((StatusCode::CREATED, Json(out)))
}

pub async fn list_destinations(
    State(app): State<App>,
    headers: HeaderMap,
    PathId(source): PathId,
) -> Result<Json<Value>, ApiError> {
    admin(&headers, &app)?;
    load_source(&app, source).await?;
    Ok(Json(
        json!({ "destinations": destinations_of(&app, source).await? }),
    ))
}

pub async fn load_destination(app: &App, id: Uuid) -> Result<DestinationRow, ApiError> {
    sqlx::query_as(&format!(
        "SELECT {DESTINATION_COLUMNS} FROM destinations WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&app.pool)
    .await?
    .ok_or_else(|| ApiError::not_found("destination"))
}

pub async fn get_destination(
    State(app): State<App>,
    headers: HeaderMap,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    admin(&headers, &app)?;
    Ok(Json(destination_json(&load_destination(&app, id).await?)))
}

pub async fn update_destination(
    State(app): State<App>,
    headers: HeaderMap,
    PathId(id): PathId,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    admin(&headers, &app)?;
    let input = DestinationInput::parse(read_object(body).await?)?;
    let old = load_destination(&app, id).await?;
    let row: DestinationRow = sqlx::query_as(&format!(
        "UPDATE destinations SET url = $2, headers = $3, secret = $4, enabled = $5,
             rate_limit = $6, updated_at = $7
         WHERE id = $1 RETURNING {DESTINATION_COLUMNS}"
    ))
    .bind(id)
    .bind(input.url.unwrap_or(old.url))
    .bind(input.headers.map_or(old.headers, Value::Object))
    .bind(input.secret.unwrap_or(old.secret))
    .bind(input.enabled.unwrap_or(old.enabled))
    .bind(input.rate_limit.unwrap_or(old.rate_limit))
    .bind(app.config.clock.now())
    .fetch_optional(&app.pool)
    .await?
    .ok_or_else(|| ApiError::not_found("destination"))?;
    tracing::info!(destination = %row.id, enabled = row.enabled, "destination updated");
    Ok(Json(destination_json(&row)))
}

pub async fn delete_destination(
    State(app): State<App>,
    headers: HeaderMap,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    admin(&headers, &app)?;
    let row: DestinationRow = sqlx::query_as(&format!(
        "DELETE FROM destinations WHERE id = $1 RETURNING {DESTINATION_COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(&app.pool)
    .await?
    .ok_or_else(|| ApiError::not_found("destination"))?;
    tracing::info!(destination = %row.id, "destination deleted with its deliveries");
    Ok(Json(destination_json(&row)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(err: ApiError) -> String {
        format!("{err:?}")
    }

    #[test]
    fn bad_source_fields_are_named() {
        for (input, field) in [
            (json!({"nme": "x"}), "nme"),
            (json!({"name": ""}), "name"),
            (json!({"scheme": "hmac"}), "scheme"),
            (json!({"on_bad_signature": "ignore"}), "on_bad_signature"),
            (json!({"secret": 5}), "secret"),
        ] {
            let Value::Object(map) = input.clone() else {
                unreachable!()
            };
            let err = SourceInput::parse(map).expect_err("refused");
            assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY, "{input}");
            assert!(
                field_of(err).contains(&format!("Some(\"{field}\")")),
                "{input}"
            );
        }
        assert!(source_secret(Scheme::StandardWebhooks, Some("whsec_".into())).is_err());
        assert!(source_secret(Scheme::GitHub, None).is_err());
        assert_eq!(source_secret(Scheme::None, Some("x".into())).unwrap(), None);
    }

    #[test]
    fn bad_destination_fields_are_named() {
        for (input, field) in [
            (json!({"url": "ftp://x"}), "url"),
            (
                json!({"headers": {"webhook-id": "x"}}),
                "headers.webhook-id",
            ),
            (json!({"headers": {"bad name": "x"}}), "headers.bad name"),
            (json!({"headers": {"x-token": "a\nb"}}), "headers.x-token"),
            (json!({"secret": "whsec_c2hvcnQ="}), "secret"),
            (json!({"rate_limit": 0}), "rate_limit"),
            (json!({"enabled": "yes"}), "enabled"),
        ] {
            let Value::Object(map) = input.clone() else {
                unreachable!()
            };
            let err = DestinationInput::parse(map).expect_err("refused");
            assert!(
                field_of(err).contains(&format!("Some(\"{field}\")")),
                "{input}"
            );
        }
    }
}
