//! The JSON API under `/api/v1`, for the API key: templates (versioned; each create and
//! update is compiled against its sample data) and documents (queued for the worker,
//! fetched as PDF when done).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use platform::ApiError;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::render::{Diagnostic, RenderError, RenderJob};
use crate::store::{self, TemplateRow};
use crate::{App, QUEUE, builtin, data};

/// Largest template request (source, sample data, options).
pub const MAX_TEMPLATE_BODY: usize = 1024 * 1024;
/// Largest template source.
pub const MAX_SOURCE: usize = 256 * 1024;
/// Largest document request.
pub const MAX_DOCUMENT_BODY: usize = 2 * 1024 * 1024;
/// Largest document data, as JSON.
pub const MAX_DATA: usize = 1024 * 1024;
/// Largest metadata, as JSON.
const MAX_METADATA: usize = 16 * 1024;
const MAX_PAGE: i64 = 100;
/// PDF standards a template may ask for (typst's names).
const STANDARDS: &[&str] = &[
    "1.7", "2.0", "a-1b", "a-2b", "a-2u", "a-3b", "a-3u", "a-4", "ua-1",
];

/// What a handler can answer besides success: the shared error, or a template that does
/// not compile, with its diagnostics.
pub enum Rejection {
    Api(ApiError),
    Template {
        code: String,
        message: String,
        details: Vec<Diagnostic>,
    },
}

impl From<ApiError> for Rejection {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<sqlx::Error> for Rejection {
    fn from(e: sqlx::Error) -> Self {
        Self::Api(e.into())
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self {
            Self::Api(e) => e.into_response(),
            Self::Template {
                code,
                message,
                details,
            } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "error": {
                    "code": code,
                    "message": message,
                    "field": "source",
                    "details": details,
                }})),
            )
                .into_response(),
        }
    }
}

type Result<T, E = Rejection> = std::result::Result<T, E>;

fn authorize(headers: &HeaderMap, app: &App) -> Result<(), ApiError> {
    platform::http::require_key(headers, app.config.api_key.as_ref())
}

fn too_large(field: &str, limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("{field} is over {limit} bytes"),
    )
    .with_field(field)
}

fn parse_id(id: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found(what))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---- templates ----

/// A template request's fields, checked.
struct TemplateInput {
    name: String,
    source: String,
    sample_data: Option<Value>,
    options: Value,
}

fn take_object(body: Value) -> Result<Map<String, Value>, ApiError> {
    match body {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::invalid("body", "must be a JSON object")),
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && Uuid::parse_str(name).is_err();
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "name",
            "1 to 100 letters, digits, '-', '_' and '.', and not a UUID",
        ))
    }
}

fn template_input(body: Value) -> Result<TemplateInput, ApiError> {
    let mut map = take_object(body)?;
    if let Some(key) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "name" | "source" | "sample_data" | "options"))
    {
        return Err(ApiError::invalid(key.clone(), "unknown field"));
    }
    let name = match map.remove("name") {
        Some(Value::String(s)) => s,
        _ => return Err(ApiError::invalid("name", "required, a string")),
    };
    check_name(&name)?;
    let source = match map.remove("source") {
        Some(Value::String(s)) => s,
        _ => {
            return Err(ApiError::invalid(
                "source",
                "required, a string of typst markup",
            ));
        }
    };
    if source.len() > MAX_SOURCE {
        return Err(too_large("source", MAX_SOURCE));
    }
    let sample_data = map.remove("sample_data").filter(|v| !v.is_null());
    if let Some(sample) = &sample_data {
        data::check(sample).map_err(|i| {
            let field = match i.path.as_str() {
                "data" => "sample_data".to_owned(),
                path => format!("sample_data.{path}"),
            };
            ApiError::invalid(field, i.message)
        })?;
    }
    let options = check_options(map.remove("options").unwrap_or(Value::Null))?;
    Ok(TemplateInput {
        name,
        source,
        sample_data,
        options,
    })
}

/// Page and PDF options: what the template reads from `/options.json`, and what the PDF
/// export uses (title, author, standard).
fn check_options(options: Value) -> Result<Value, ApiError> {
    let map = match options {
        Value::Null => return Ok(json!({})),
        Value::Object(map) => map,
        _ => return Err(ApiError::invalid("options", "must be an object")),
    };
    let margin_ok = |v: &Value| v.as_f64().is_some_and(|m| (0.0..=200.0).contains(&m));
    for (key, value) in &map {
        let field = format!("options.{key}");
        let ok = match key.as_str() {
            "paper" => value.as_str().is_some_and(|p| {
                (1..=32).contains(&p.len())
                    && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }),
            "landscape" => value.is_boolean(),
            "margin_mm" => {
                margin_ok(value)
                    || value.as_object().is_some_and(|m| {
                        m.iter().all(|(side, v)| {
                            matches!(side.as_str(), "top" | "right" | "bottom" | "left")
                                && margin_ok(v)
                        })
                    })
            }
            "title" | "author" => value.as_str().is_some_and(|s| s.chars().count() <= 200),
            "pdf_standard" => value.as_str().is_some_and(|s| STANDARDS.contains(&s)),
            _ => return Err(ApiError::invalid(field, "unknown option")),
        };
        if !ok {
            let expected = match key.as_str() {
                "paper" => "a typst paper name such as \"a4\" or \"us-letter\"",
                "landscape" => "true or false",
                "margin_mm" => "millimetres (0 to 200), or an object of top/right/bottom/left",
                "title" | "author" => "a string of at most 200 characters",
                _ => "one of 1.7, 2.0, a-1b, a-2b, a-2u, a-3b, a-3u, a-4, ua-1",
            };
            return Err(ApiError::invalid(field, format!("must be {expected}")));
        }
    }
    Ok(Value::Object(map))
}

/// The render job for a template version and data.
fn render_job<'a>(
    source: &'a str,
    data: &'a Value,
    options: &'a Value,
    ident: String,
    date: chrono::NaiveDate,
    max_pages: usize,
) -> RenderJob<'a> {
    RenderJob {
        source,
        data,
        options,
        title: options.get("title").and_then(Value::as_str),
        author: options.get("author").and_then(Value::as_str),
        standard: options.get("pdf_standard").and_then(Value::as_str),
        date: Some(date.format("%Y-%m-%d").to_string()),
        ident,
        max_pages,
    }
}

/// Compiles a template against its sample data (or `{}`) in the sandboxed renderer.
async fn compile_check(app: &App, input: &TemplateInput) -> Result<()> {
    let empty = json!({});
    let data = input.sample_data.as_ref().unwrap_or(&empty);
    let job = render_job(
        &input.source,
        data,
        &input.options,
        "template-check".to_owned(),
        app.config.clock.now().date_naive(),
        app.config.render.max_pages,
    );
    match app.renderer.render(&job).await {
        Ok(_) => Ok(()),
        Err(RenderError::Infrastructure(e)) => Err(Rejection::Api(ApiError::unavailable(
            "the template check cannot run now; try again",
            e,
        ))),
        Err(RenderError::Template {
            code,
            message,
            errors,
            ..
        }) => Err(Rejection::Template {
            code,
            message,
            details: errors,
        }),
        Err(other) => Err(Rejection::Template {
            code: other.code().to_owned(),
            message: format!(
                "with its sample data: {}",
                other.message(&app.config.render)
            ),
            details: Vec::new(),
        }),
    }
}

pub async fn list_templates(State(app): State<App>, headers: HeaderMap) -> Result<Json<Value>> {
    authorize(&headers, &app)?;
    app.builtins().await?;
    let rows = store::list_templates(&app.pool).await?;
    let templates: Vec<Value> = rows.iter().map(|t| t.to_json(false)).collect();
    Ok(Json(json!({ "templates": templates })))
}

pub async fn get_template(
    State(app): State<App>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Json<Value>> {
    authorize(&headers, &app)?;
    app.builtins().await?;
    let row = store::find_template(&app.pool, &key)
        .await?
        .ok_or_else(|| ApiError::not_found("template"))?;
    Ok(Json(row.to_json(true)))
}

pub async fn create_template(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    authorize(&headers, &app)?;
    let input = template_input(platform::http::json_body(body, MAX_TEMPLATE_BODY).await?)?;
    if builtin::is_builtin_name(&input.name) {
        return Err(ApiError::conflict(format!("{} is a built-in template", input.name)).into());
    }
    compile_check(&app, &input).await?;

    let now = app.config.clock.now();
    let id = Uuid::new_v4();
    let mut tx = app.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO templates (id, name, version, created_at, updated_at)
         VALUES ($1, $2, 1, $3, $3)",
    )
    .bind(id)
    .bind(&input.name)
    .bind(now)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if platform::db::is_unique_violation(&e) => {
            return Err(
                ApiError::conflict(format!("a template named {} exists", input.name))
                    .with_field("name")
                    .into(),
            );
        }
        other => other?,
    };
    insert_version(&mut tx, id, 1, &input, now).await?;
    let row = store::find_template(&mut *tx, &id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("template"))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(row.to_json(true))).into_response())
}

async fn insert_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: Uuid,
    version: i32,
    input: &TemplateInput,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO template_versions
             (template_id, version, source, sample_data, options, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(version)
    .bind(&input.source)
    .bind(&input.sample_data)
    .bind(&input.options)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

/// A live, non-built-in template, locked for the rest of the transaction.
async fn lock_own_template(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    key: &str,
) -> Result<(Uuid, i32)> {
    let id = parse_id(key, "template")?;
    let row: Option<(i32, bool)> = sqlx::query_as(
        "SELECT version, builtin FROM templates WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    match row {
        None => Err(ApiError::not_found("template").into()),
        Some((_, true)) => {
            Err(ApiError::forbidden("built-in templates cannot be changed or deleted").into())
        }
        Some((version, false)) => Ok((id, version)),
    }
}

/// Replaces a template's name, source, sample data and options: a new version. Documents
/// made before keep the version they were made with.
pub async fn update_template(
    State(app): State<App>,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: Body,
) -> Result<Json<Value>> {
    authorize(&headers, &app)?;
    let input = template_input(platform::http::json_body(body, MAX_TEMPLATE_BODY).await?)?;
    if builtin::is_builtin_name(&input.name) {
        return Err(ApiError::conflict(format!("{} is a built-in template", input.name)).into());
    }
    // Checked before any lock is taken: a render takes a while.
    compile_check(&app, &input).await?;

    let now = app.config.clock.now();
    let mut tx = app.pool.begin().await?;
    let (id, version) = lock_own_template(&mut tx, &key).await?;
    insert_version(&mut tx, id, version + 1, &input, now).await?;
    let renamed =
        sqlx::query("UPDATE templates SET name = $2, version = $3, updated_at = $4 WHERE id = $1")
            .bind(id)
            .bind(&input.name)
            .bind(version + 1)
            .bind(now)
            .execute(&mut *tx)
            .await;
    match renamed {
        Err(e) if platform::db::is_unique_violation(&e) => {
            return Err(
                ApiError::conflict(format!("a template named {} exists", input.name))
                    .with_field("name")
                    .into(),
            );
        }
        other => other?,
    };
    let row: TemplateRow = store::find_template(&mut *tx, &id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("template"))?;
    tx.commit().await?;
    Ok(Json(row.to_json(true)))
}

/// Hides a template from lists and new documents; its versions stay for the documents
/// already made or queued with it.
pub async fn delete_template(
    State(app): State<App>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<StatusCode> {
    authorize(&headers, &app)?;
    let mut tx = app.pool.begin().await?;
    let (id, _) = lock_own_template(&mut tx, &key).await?;
    sqlx::query("UPDATE templates SET deleted_at = $2 WHERE id = $1")
        .bind(id)
        .bind(app.config.clock.now())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- documents ----

struct DocumentInput {
    template: String,
    data: Value,
    file_name: Option<String>,
    metadata: Value,
    webhook_url: Option<String>,
}

fn document_input(body: Value) -> Result<DocumentInput, ApiError> {
    let mut map = take_object(body)?;
    if let Some(key) = map.keys().find(|k| {
        !matches!(
            k.as_str(),
            "template" | "data" | "file_name" | "metadata" | "webhook_url"
        )
    }) {
        return Err(ApiError::invalid(key.clone(), "unknown field"));
    }
    let template = match map.remove("template") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 100 => s,
        _ => {
            return Err(ApiError::invalid(
                "template",
                "required: a template id or name",
            ));
        }
    };
    let data = map
        .remove("data")
        .ok_or_else(|| ApiError::invalid("data", "required: the JSON the template reads"))?;
    let size = serde_json::to_vec(&data).map_or(usize::MAX, |v| v.len());
    if size > MAX_DATA {
        return Err(too_large("data", MAX_DATA));
    }
    data::check(&data).map_err(|i| ApiError::invalid(i.path, i.message))?;

    let file_name = match map.remove("file_name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(check_file_name(&s)?),
        Some(_) => return Err(ApiError::invalid("file_name", "must be a string")),
    };
    let metadata = match map.remove("metadata") {
        None | Some(Value::Null) => json!({}),
        Some(m @ Value::Object(_)) => {
            if serde_json::to_vec(&m).map_or(usize::MAX, |v| v.len()) > MAX_METADATA {
                return Err(too_large("metadata", MAX_METADATA));
            }
            m
        }
        Some(_) => return Err(ApiError::invalid("metadata", "must be an object")),
    };
    let webhook_url = match map.remove("webhook_url") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(check_webhook_url(&s)?),
        Some(_) => return Err(ApiError::invalid("webhook_url", "must be a string")),
    };
    Ok(DocumentInput {
        template,
        data,
        file_name,
        metadata,
        webhook_url,
    })
}

fn check_file_name(name: &str) -> Result<String, ApiError> {
    let ok = (1..=200).contains(&name.chars().count())
        && !name
            .chars()
            .any(|c| c.is_control() || matches!(c, '/' | '\\' | '"'));
    if !ok {
        return Err(ApiError::invalid(
            "file_name",
            "1 to 200 characters, without control characters, slashes or quotes",
        ));
    }
    Ok(if name.to_ascii_lowercase().ends_with(".pdf") {
        name.to_owned()
    } else {
        format!("{name}.pdf")
    })
}

/// Only plain `http://` URLs: the HTTP client is built without TLS to keep the build lean.
/// An `https://` webhook needs a TLS-enabled client first.
fn check_webhook_url(url: &str) -> Result<String, ApiError> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(ApiError::invalid(
            "webhook_url",
            "must start with http:// (https webhooks are not supported yet)",
        ));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if url.len() > 2000 || host.is_empty() || url.chars().any(|c| c.is_control() || c == ' ') {
        return Err(ApiError::invalid("webhook_url", "not a valid URL"));
    }
    Ok(url.to_owned())
}

/// The idempotency key a request carries, checked.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| (1..=200).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::invalid(
                "Idempotency-Key",
                "1 to 200 printable characters without spaces",
            )
        })?;
    Ok(Some(key.to_owned()))
}

/// Answers a repeated request: the same body gets the document it made; another body, 409.
fn replay(existing: &store::DocumentRow, hash: &str) -> Result<Response> {
    if existing.request_hash.as_deref() == Some(hash) {
        Ok((StatusCode::OK, Json(existing.to_json())).into_response())
    } else {
        Err(
            ApiError::conflict("this Idempotency-Key was used with a different request body")
                .with_field("Idempotency-Key")
                .into(),
        )
    }
}

pub async fn create_document(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    authorize(&headers, &app)?;
    let key = idempotency_key(&headers)?;
    let body = platform::http::json_body(body, MAX_DOCUMENT_BODY).await?;
    // serde_json's maps are sorted, so this text is the same for the same JSON.
    let request_hash = sha256_hex(body.to_string().as_bytes());
    if let Some(key) = &key
        && let Some(existing) = store::document_by_key(&app.pool, key).await?
    {
        return replay(&existing, &request_hash);
    }
    let input = document_input(body)?;

    app.builtins().await?;
    let template = store::find_template(&app.pool, &input.template)
        .await?
        .ok_or_else(|| ApiError::invalid("template", "no such template"))?;

    let now = app.config.clock.now();
    let id = Uuid::new_v4();
    let content_hash =
        sha256_hex(format!("{}\n{}\n{}", template.id, template.version, input.data).as_bytes());
    let file_name = input
        .file_name
        .unwrap_or_else(|| format!("{}-{}.pdf", template.name, &id.simple().to_string()[..8]));

    let mut tx = app.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO documents (id, template_id, template_version, status, data, file_name,
             metadata, webhook_url, idempotency_key, request_hash, content_hash, created_at,
             updated_at)
         VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8, $9, $10, $11, $11)",
    )
    .bind(id)
    .bind(template.id)
    .bind(template.version)
    .bind(&input.data)
    .bind(&file_name)
    .bind(&input.metadata)
    .bind(&input.webhook_url)
    .bind(&key)
    .bind(&request_hash)
    .bind(&content_hash)
    .bind(now)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if platform::db::is_unique_violation(&e) => {
            // The same key, sent twice at once: the other request won.
            drop(tx);
            let existing = match &key {
                Some(k) => store::document_by_key(&app.pool, k).await?,
                None => None,
            };
            return match existing {
                Some(existing) => replay(&existing, &request_hash),
                None => Err(ApiError::from(e).into()),
            };
        }
        other => other?,
    };
    platform::queue::enqueue(
        &mut *tx,
        QUEUE,
        &json!({ "document_id": id }),
        now,
        app.config.max_attempts,
        now,
    )
    .await?;
    let row = store::get_document(&mut *tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("document"))?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(row.to_json())).into_response())
}

pub async fn get_document(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    authorize(&headers, &app)?;
    let id = parse_id(&id, "document")?;
    let row = store::get_document(&app.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found("document"))?;
    Ok(Json(row.to_json()))
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<i64>,
    cursor: Option<String>,
    status: Option<String>,
}

pub async fn list_documents(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>> {
    authorize(&headers, &app)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("1 to {MAX_PAGE}")).into());
    }
    let before = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(
            c.parse::<i64>()
                .map_err(|_| ApiError::invalid("cursor", "not a cursor from this API"))?,
        ),
    };
    if let Some(status) = q.status.as_deref()
        && !matches!(status, "queued" | "rendering" | "done" | "failed")
    {
        return Err(ApiError::invalid("status", "queued, rendering, done or failed").into());
    }
    let mut rows = store::list_documents(&app.pool, before, q.status.as_deref(), limit + 1).await?;
    let next = if rows.len() as i64 > limit {
        rows.truncate(usize::try_from(limit).unwrap_or(0));
        rows.last().map(|r| r.seq.to_string())
    } else {
        None
    };
    let documents: Vec<Value> = rows.iter().map(store::DocumentRow::to_json).collect();
    Ok(Json(json!({ "documents": documents, "next_cursor": next })))
}

pub async fn delete_document(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    authorize(&headers, &app)?;
    let id = parse_id(&id, "document")?;
    let mut tx = app.pool.begin().await?;
    let deleted = sqlx::query("DELETE FROM documents WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(ApiError::not_found("document").into());
    }
    // Its queued render, if any, goes too (a worker already on it finds no document).
    sqlx::query("DELETE FROM jobs WHERE queue = $1 AND payload->>'document_id' = $2")
        .bind(QUEUE)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `Content-Disposition` for a file name: the ASCII form, plus the UTF-8 form (RFC 6266)
/// when the name has other characters.
fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '_'
            }
        })
        .collect();
    if ascii == name {
        return format!("attachment; filename=\"{name}\"");
    }
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

pub async fn get_pdf(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response> {
    authorize(&headers, &app)?;
    let id = parse_id(&id, "document")?;
    let row = store::get_document(&app.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found("document"))?;
    if row.status != "done" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_ready",
            format!("the document is {}, not done", row.status),
        )
        .into());
    }
    let etag = format!("\"{}\"", row.pdf_sha256.as_deref().unwrap_or_default());
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let etag_value = HeaderValue::from_str(&etag).map_err(|e| ApiError::internal(e.into()))?;
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response());
    }
    let pdf: Vec<u8> = sqlx::query_scalar("SELECT pdf FROM document_pdfs WHERE document_id = $1")
        .bind(id)
        .fetch_optional(&app.pool)
        .await?
        .ok_or_else(|| ApiError::not_found("document"))?;
    let disposition = HeaderValue::from_str(&content_disposition(&row.file_name))
        .map_err(|e| ApiError::internal(e.into()))?;
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/pdf"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
            (header::ETAG, etag_value),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=0"),
            ),
        ],
        pdf,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn file_names_are_checked_and_given_an_extension() {
        assert_eq!(check_file_name("invoice 42").unwrap(), "invoice 42.pdf");
        assert_eq!(check_file_name("a.PDF").unwrap(), "a.PDF");
        assert!(check_file_name("../etc/passwd").is_err());
        assert!(check_file_name("a\"b").is_err());
        assert!(check_file_name("").is_err());
    }

    #[test]
    fn content_disposition_keeps_ascii_and_encodes_the_rest() {
        assert_eq!(
            content_disposition("a b.pdf"),
            "attachment; filename=\"a b.pdf\""
        );
        assert_eq!(
            content_disposition("Rechnung-ä.pdf"),
            "attachment; filename=\"Rechnung-_.pdf\"; filename*=UTF-8''Rechnung-%C3%A4.pdf"
        );
    }

    #[test]
    fn options_are_checked_by_name() {
        assert_eq!(check_options(Value::Null).unwrap(), json!({}));
        check_options(
            json!({"paper": "us-letter", "margin_mm": {"top": 10}, "pdf_standard": "a-2b"}),
        )
        .unwrap();
        let err = check_options(json!({"colour": 1})).unwrap_err();
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(check_options(json!({"pdf_standard": "a-9z"})).is_err());
        assert!(check_options(json!({"margin_mm": 1000})).is_err());
    }

    #[test]
    fn webhook_urls_are_plain_http() {
        assert!(check_webhook_url("http://hooks.internal:8080/done").is_ok());
        assert!(check_webhook_url("https://example.com/").is_err());
        assert!(check_webhook_url("http:///x").is_err());
        assert!(check_webhook_url("ftp://x").is_err());
    }
}
