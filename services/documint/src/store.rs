//! Rows and the queries the API and the worker share.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

/// A template at its newest version.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TemplateRow {
    pub id: Uuid,
    pub name: String,
    pub version: i32,
    pub builtin: bool,
    pub source: String,
    pub sample_data: Option<Value>,
    pub options: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const TEMPLATE_COLUMNS: &str = "t.id, t.name, t.version, t.builtin, v.source, v.sample_data, \
     v.options, t.created_at, t.updated_at \
     FROM templates t JOIN template_versions v ON v.template_id = t.id AND v.version = t.version";

impl TemplateRow {
    pub fn to_json(&self, with_source: bool) -> Value {
        let mut v = json!({
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "builtin": self.builtin,
            "options": self.options,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        });
        if with_source {
            v["source"] = json!(self.source);
            v["sample_data"] = json!(self.sample_data);
        }
        v
    }
}

/// A live template by id or by name.
pub async fn find_template(
    db: impl PgExecutor<'_>,
    key: &str,
) -> Result<Option<TemplateRow>, sqlx::Error> {
    let sql = format!("SELECT {TEMPLATE_COLUMNS} WHERE t.deleted_at IS NULL AND ");
    match Uuid::parse_str(key) {
        Ok(id) => {
            sqlx::query_as(&format!("{sql} t.id = $1"))
                .bind(id)
                .fetch_optional(db)
                .await
        }
        Err(_) => {
            sqlx::query_as(&format!("{sql} t.name = $1"))
                .bind(key)
                .fetch_optional(db)
                .await
        }
    }
}

pub async fn list_templates(pool: &PgPool) -> Result<Vec<TemplateRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {TEMPLATE_COLUMNS} WHERE t.deleted_at IS NULL ORDER BY t.name LIMIT 1000"
    ))
    .fetch_all(pool)
    .await
}

/// A document as the API shows it (its data and PDF apart).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DocumentRow {
    pub id: Uuid,
    pub seq: i64,
    pub template_id: Uuid,
    pub template_name: String,
    pub template_version: i32,
    pub status: String,
    pub file_name: String,
    pub metadata: Value,
    pub webhook_url: Option<String>,
    pub webhook_status: Option<String>,
    pub request_hash: Option<String>,
    pub attempts: i32,
    pub error: Option<Value>,
    pub warnings: Value,
    pub pages: Option<i32>,
    pub pdf_size: Option<i32>,
    pub pdf_sha256: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub rendered_at: Option<DateTime<Utc>>,
}

const DOCUMENT_COLUMNS: &str = "d.id, d.seq, d.template_id, t.name AS template_name, \
     d.template_version, d.status, d.file_name, d.metadata, d.webhook_url, d.webhook_status, \
     d.request_hash, d.attempts, d.error, d.warnings, d.pages, d.pdf_size, d.pdf_sha256, \
     d.created_at, d.updated_at, d.rendered_at \
     FROM documents d JOIN templates t ON t.id = d.template_id";

impl DocumentRow {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "status": self.status,
            "template": {
                "id": self.template_id,
                "name": self.template_name,
                "version": self.template_version,
            },
            "file_name": self.file_name,
            "metadata": self.metadata,
            "attempts": self.attempts,
            "warnings": self.warnings,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        });
        if self.status == "done" {
            v["pages"] = json!(self.pages);
            v["size"] = json!(self.pdf_size);
            v["sha256"] = json!(self.pdf_sha256);
            v["rendered_at"] = json!(self.rendered_at);
            v["pdf_url"] = json!(format!("/api/v1/documents/{}/pdf", self.id));
        }
        if let Some(error) = &self.error {
            v["error"] = error.clone();
        }
        if let Some(url) = &self.webhook_url {
            v["webhook"] = json!({ "url": url, "status": self.webhook_status });
        }
        v
    }
}

pub async fn get_document(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<DocumentRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {DOCUMENT_COLUMNS} WHERE d.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

pub async fn document_by_key(
    db: impl PgExecutor<'_>,
    key: &str,
) -> Result<Option<DocumentRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {DOCUMENT_COLUMNS} WHERE d.idempotency_key = $1"
    ))
    .bind(key)
    .fetch_optional(db)
    .await
}

/// Newest first, those older than `before` (a `seq`) when given.
pub async fn list_documents(
    pool: &PgPool,
    before: Option<i64>,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<DocumentRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {DOCUMENT_COLUMNS}
         WHERE ($1::bigint IS NULL OR d.seq < $1) AND ($2::text IS NULL OR d.status = $2)
         ORDER BY d.seq DESC LIMIT $3"
    ))
    .bind(before)
    .bind(status)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// What the worker needs to render a document.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RenderInput {
    pub id: Uuid,
    pub status: String,
    pub data: Value,
    pub source: String,
    pub options: Value,
    pub ident: String,
    pub created_at: DateTime<Utc>,
    /// Whether a completion webhook is to be sent.
    pub webhook: bool,
}

pub async fn render_input(pool: &PgPool, id: Uuid) -> Result<Option<RenderInput>, sqlx::Error> {
    sqlx::query_as(
        "SELECT d.id, d.status, d.data, v.source, v.options, d.content_hash AS ident, d.created_at,
                (d.webhook_url IS NOT NULL) AS webhook
         FROM documents d
         JOIN template_versions v
           ON v.template_id = d.template_id AND v.version = d.template_version
         WHERE d.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}
