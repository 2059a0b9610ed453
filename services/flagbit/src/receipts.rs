//! Usage receipts: a PDF per calendar month of evaluation counts per environment and flag,
//! rendered by DocuMint.
//!
//! Off unless `FLAGBIT_RECEIPTS=on`. The web tier records a request (`POST
//! /api/v1/receipts`) and serves what is stored; the worker makes the scheduled request for
//! the last finished month, calls DocuMint, and stores the PDF. A period has at most one
//! receipt (a unique column) and its request is a job in the shared queue, retried with
//! backoff while DocuMint is unreachable, so an outage delays a receipt and never loses or
//! doubles it.
//!
//! The call is authenticated by the network alone (`none`: only FlagBit's worker and
//! DocuMint's receipt listener share the receipts network) or, by default, also by a
//! service token signed with a shared key (`jwt`, see the `service-token` crate).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike as _, NaiveDate, TimeZone as _, Utc};
use platform::{ApiError, ConfigError, Env};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use service_token::Signer;
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{App, Clock};

/// The queue receipt jobs wait in.
const QUEUE: &str = "receipt";
/// Who the tokens name as caller and callee, and what they allow.
pub const ISSUER: &str = "flagbit";
pub const AUDIENCE: &str = "documint";
pub const ACTION: &str = "receipt:create";
/// Largest PDF accepted from DocuMint.
const MAX_PDF_BYTES: usize = 32 * 1024 * 1024;
/// Attempts before a receipt is marked failed (about two days with the default backoff).
const MAX_ATTEMPTS: i32 = 60;
const MAX_LISTED: i64 = 120;
const MAX_REQUEST_BODY: usize = 1024;

/// How the worker proves itself to DocuMint.
#[derive(Clone)]
pub enum Auth {
    /// The receipts network is the boundary.
    None,
    /// A service token on every call.
    Jwt(Arc<Signer>),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Jwt(signer) => write!(f, "jwt(kid {})", signer.kid()),
        }
    }
}

/// Where and how the worker calls DocuMint.
#[derive(Clone, Debug)]
pub struct Documint {
    pub url: reqwest::Url,
    pub auth: Auth,
    pub timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct ReceiptsConfig {
    /// Set for the worker only (`FLAGBIT_RECEIPTS_URL`); the web tier never calls DocuMint.
    pub documint: Option<Documint>,
    /// When the worker asks for the last finished month's receipt, in UTC.
    pub schedule: croner::Cron,
    pub poll_every: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl ReceiptsConfig {
    /// `None` unless `FLAGBIT_RECEIPTS=on`.
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        match env.get("RECEIPTS")?.as_deref() {
            None | Some("" | "off") => return Ok(None),
            Some("on") => {}
            Some(other) => return Err(bad(env, "RECEIPTS", format!("{other:?} is not on or off"))),
        }

        let schedule_text = env
            .get("RECEIPTS_SCHEDULE")?
            .unwrap_or_else(|| "0 2 1 * *".into());
        let schedule = croner::parser::CronParser::new()
            .parse(&schedule_text)
            .map_err(|e| {
                bad(
                    env,
                    "RECEIPTS_SCHEDULE",
                    format!("not a cron expression: {e}"),
                )
            })?;

        let documint = match env.get("RECEIPTS_URL")? {
            None => None,
            Some(url) => Some(Documint::from_env(env, &url)?),
        };

        Ok(Some(Self {
            documint,
            schedule,
            poll_every: env.seconds_or("RECEIPTS_POLL_INTERVAL_SECS", 2, 1..=60)?,
            retry_base: env.seconds_or("RECEIPTS_RETRY_BASE_SECS", 30, 1..=3600)?,
            retry_max: env.seconds_or("RECEIPTS_RETRY_MAX_SECS", 3600, 1..=86_400)?,
        }))
    }
}

impl Documint {
    fn from_env(env: &Env, url: &str) -> Result<Self, ConfigError> {
        let url = reqwest::Url::parse(url)
            .ok()
            // Plain HTTP on the receipts network: encrypting this hop is the mutual-TLS step
            // of the upgrade path, not something this client does yet.
            .filter(|u| u.scheme() == "http" && u.host().is_some())
            .ok_or_else(|| bad(env, "RECEIPTS_URL", "not an http:// URL"))?;

        let auth = match env.get("RECEIPTS_AUTH")?.as_deref().unwrap_or("jwt") {
            "none" => Auth::None,
            "jwt" => {
                let lifetime: u64 = env.parse_or(
                    "RECEIPTS_TOKEN_LIFETIME_SECS",
                    service_token::DEFAULT_LIFETIME,
                )?;
                let key = env
                    .get("RECEIPTS_SIGNING_KEY")?
                    .map(secrecy::SecretString::from)
                    .ok_or_else(|| {
                        bad(
                            env,
                            "RECEIPTS_SIGNING_KEY",
                            "required with RECEIPTS_AUTH=jwt",
                        )
                    })?;
                let signer = Signer::from_key_file(key.expose_secret(), ISSUER, lifetime)
                    .map_err(|e| bad(env, "RECEIPTS_SIGNING_KEY", e.to_string()))?;
                Auth::Jwt(Arc::new(signer))
            }
            other => {
                return Err(bad(
                    env,
                    "RECEIPTS_AUTH",
                    format!("{other:?} is not none or jwt"),
                ));
            }
        };

        Ok(Self {
            url,
            auth,
            timeout: env.seconds_or("RECEIPTS_TIMEOUT_SECS", 60, 1..=600)?,
        })
    }
}

fn bad(env: &Env, name: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        var: env.var_name(name),
        problem: problem.into(),
    }
}

// ---- periods ----

/// A calendar month, UTC: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Period {
    /// The month `YYYY-MM`.
    pub fn parse(text: &str) -> Option<Self> {
        let (year, month) = text.split_once('-')?;
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(year, 4) || !digits(month, 2) {
            return None;
        }
        let year: i32 = year.parse().ok()?;
        // Nothing was counted before the Unix epoch; earlier years are typing mistakes.
        if year < 1970 {
            return None;
        }
        let first = NaiveDate::from_ymd_opt(year, month.parse().ok()?, 1)?;
        Self::starting(first)
    }

    /// The last month that has ended by `now`.
    pub fn last_finished(now: DateTime<Utc>) -> Option<Self> {
        let this_month = NaiveDate::from_ymd_opt(now.year(), now.month(), 1)?;
        Self::starting(this_month.checked_sub_months(chrono::Months::new(1))?)
    }

    fn starting(first: NaiveDate) -> Option<Self> {
        let next = first.checked_add_months(chrono::Months::new(1))?;
        let start = Utc.from_utc_datetime(&first.and_hms_opt(0, 0, 0)?);
        let end = Utc.from_utc_datetime(&next.and_hms_opt(0, 0, 0)?);
        Some(Self { start, end })
    }

    pub fn label(&self) -> String {
        self.start.format("%Y-%m").to_string()
    }
}

/// The period a scheduled run at or before `now` asks for: the month finished before the
/// latest time the schedule fired. A worker that was down then catches up when it starts.
pub fn scheduled_period(schedule: &croner::Cron, now: DateTime<Utc>) -> Option<Period> {
    let fired = schedule.find_previous_occurrence(&now, true).ok()?;
    Period::last_finished(fired)
}

// ---- storage ----

/// Records the request for `period` and queues its job, unless the period already has a
/// receipt; a failed one is queued again. Returns the receipt's id and whether anything
/// new was queued.
pub async fn request(
    pool: &PgPool,
    period: Period,
    requested_by: &str,
    now: DateTime<Utc>,
) -> Result<(i64, bool), sqlx::Error> {
    let mut tx = pool.begin().await?;

    // Looked up first: the schedule asks every few seconds, and an INSERT that conflicts
    // would still use up an id each time.
    let existing: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM receipts WHERE period_start = $1 AND status <> 'failed'",
    )
    .bind(period.start)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(id) = existing {
        tx.commit().await?;
        return Ok((id, false));
    }

    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO receipts (period_start, period_end, requested_by, created_at)
         VALUES ($1, $2, $3, $4) ON CONFLICT (period_start) DO NOTHING RETURNING id",
    )
    .bind(period.start)
    .bind(period.end)
    .bind(requested_by)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;

    let (id, queue) = match inserted {
        Some(id) => (id, true),
        None => {
            let retried: Option<i64> = sqlx::query_scalar(
                "UPDATE receipts SET status = 'queued', last_error = NULL
                 WHERE period_start = $1 AND status = 'failed' RETURNING id",
            )
            .bind(period.start)
            .fetch_optional(&mut *tx)
            .await?;
            match retried {
                Some(id) => (id, true),
                None => {
                    let id = sqlx::query_scalar("SELECT id FROM receipts WHERE period_start = $1")
                        .bind(period.start)
                        .fetch_one(&mut *tx)
                        .await?;
                    (id, false)
                }
            }
        }
    };

    if queue {
        platform::queue::enqueue(
            &mut *tx,
            QUEUE,
            &json!({ "receipt": id }),
            now,
            MAX_ATTEMPTS,
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok((id, queue))
}

/// Evaluation counts in `period` per environment and flag: the hourly rows plus counts not
/// yet folded into them.
pub async fn totals(pool: &PgPool, period: Period) -> Result<Value, sqlx::Error> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT e.name, c.flag_key, sum(c.count)::bigint
         FROM (SELECT environment_id, flag_key, count FROM usage_hourly
               WHERE hour >= $1 AND hour < $2
               UNION ALL
               SELECT environment_id, flag_key, count FROM usage_counts
               WHERE at >= $1 AND at < $2) c
         JOIN environments e ON e.id = c.environment_id
         GROUP BY e.name, c.flag_key
         ORDER BY e.name, c.flag_key",
    )
    .bind(period.start)
    .bind(period.end)
    .fetch_all(pool)
    .await?;

    let mut environments: Vec<Value> = Vec::new();
    let mut total: i64 = 0;
    for (environment, flag, count) in rows {
        total = total.saturating_add(count);
        let same = environments
            .last()
            .is_some_and(|e| e["name"] == environment.as_str());
        if !same {
            environments.push(json!({ "name": environment, "total": 0, "flags": [] }));
        }
        if let Some(current) = environments.last_mut() {
            current["total"] = json!(current["total"].as_i64().unwrap_or(0).saturating_add(count));
            if let Some(flags) = current["flags"].as_array_mut() {
                flags.push(json!({ "key": flag, "evaluations": count }));
            }
        }
    }

    // DocuMint's built-in `usage-receipt` template reads this shape; the period's dates are
    // inclusive there, as a reader expects on a receipt.
    let last_day = period.end - chrono::Duration::days(1);
    Ok(json!({
        "account": ISSUER,
        "period": {
            "label": period.label(),
            "from": period.start.format("%Y-%m-%d").to_string(),
            "to": last_day.format("%Y-%m-%d").to_string(),
        },
        "environments": environments,
        "total_evaluations": total,
    }))
}

// ---- the worker ----

/// Runs the schedule and the receipt jobs until shutdown.
pub async fn run(
    pool: PgPool,
    config: ReceiptsConfig,
    clock: Clock,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let documint = config
        .documint
        .clone()
        .context("FLAGBIT_RECEIPTS_URL is required for the worker when receipts are on")?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(documint.timeout)
        .build()
        .context("building the HTTP client")?;
    let worker = Worker {
        pool,
        config,
        documint,
        client,
        clock,
    };
    tracing::info!(url = %worker.documint.url, auth = ?worker.documint.auth, "receipts on");

    loop {
        if let Err(e) = worker.tick().await {
            tracing::error!(error = format!("{e:#}"), "receipts: tick failed");
        }
        if !platform::worker::sleep_or_stop(worker.config.poll_every, &shutdown).await {
            return Ok(());
        }
    }
}

/// What a receipt job works with.
pub struct Worker {
    pub pool: PgPool,
    pub config: ReceiptsConfig,
    pub documint: Documint,
    pub client: reqwest::Client,
    pub clock: Clock,
}

impl Worker {
    /// Requests the scheduled period's receipt if it has none, then runs every due job.
    pub async fn tick(&self) -> anyhow::Result<()> {
        let now = self.clock.now();
        if let Some(period) = scheduled_period(&self.config.schedule, now) {
            let (id, queued) = request(&self.pool, period, "schedule", now).await?;
            if queued {
                tracing::info!(receipt = id, period = %period.label(), "receipt scheduled");
            }
        }

        while self.run_one().await? {}
        Ok(())
    }

    /// Claims and runs one due job; false when none was due.
    pub async fn run_one(&self) -> anyhow::Result<bool> {
        // Longer than the request timeout, so a job is never run twice at once.
        let lease = self.documint.timeout + Duration::from_secs(60);
        let now = self.clock.now();
        let Some(job) = platform::queue::claim(&self.pool, QUEUE, lease, now).await? else {
            return Ok(false);
        };
        let id = job.payload["receipt"]
            .as_i64()
            .context("receipt job without a receipt id")?;

        match self.render(id).await {
            Ok(bytes) => {
                tracing::info!(receipt = id, bytes, "receipt stored");
                platform::queue::complete(&self.pool, &job).await?;
            }
            Err(e) => {
                let error = format!("{e:#}");
                let backoff = platform::queue::backoff(
                    job.attempt,
                    self.config.retry_base,
                    self.config.retry_max,
                );
                let now = self.clock.now();
                let retry = e.downcast_ref::<Refused>().is_none();
                let outcome =
                    platform::queue::fail(&self.pool, &job, &error, retry, backoff, now).await?;
                let status = match outcome {
                    platform::queue::Failure::Retry(_) => "queued",
                    platform::queue::Failure::Dead => "failed",
                };
                sqlx::query(
                    "UPDATE receipts SET attempts = attempts + 1, last_error = $2, status = $3
                     WHERE id = $1 AND status <> 'done'",
                )
                .bind(id)
                .bind(&error)
                .bind(status)
                .execute(&self.pool)
                .await?;
                tracing::warn!(
                    receipt = id,
                    attempt = job.attempt,
                    ?outcome,
                    error,
                    "receipt failed"
                );
            }
        }
        Ok(true)
    }

    /// Renders receipt `id` through DocuMint and stores it; returns the PDF's size.
    async fn render(&self, id: i64) -> anyhow::Result<usize> {
        let row: Option<(DateTime<Utc>, DateTime<Utc>, String)> =
            sqlx::query_as("SELECT period_start, period_end, status FROM receipts WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        let Some((start, end, status)) = row else {
            anyhow::bail!("receipt {id} does not exist");
        };
        if status == "done" {
            return Ok(0);
        }
        let period = Period { start, end };

        let totals = totals(&self.pool, period).await?;
        let body = serde_json::to_vec(&json!({
            "reference": format!("flagbit-{}", period.label()),
            "data": totals,
        }))?;

        let pdf = self.call(&body).await?;
        let sha256 = hex(&Sha256::digest(&pdf));
        let size = pdf.len();

        sqlx::query(
            "UPDATE receipts SET status = 'done', pdf = $2, pdf_sha256 = $3, totals = $4,
                 completed_at = $5, attempts = attempts + 1, last_error = NULL
             WHERE id = $1 AND status <> 'done'",
        )
        .bind(id)
        .bind(pdf)
        .bind(sha256)
        .bind(&totals)
        .bind(self.clock.now())
        .execute(&self.pool)
        .await?;
        Ok(size)
    }

    async fn call(&self, body: &[u8]) -> anyhow::Result<Vec<u8>> {
        let url = &self.documint.url;
        let mut request = self
            .client
            .post(url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());

        if let Auth::Jwt(signer) = &self.documint.auth {
            let path = match url.query() {
                Some(query) => format!("{}?{query}", url.path()),
                None => url.path().to_owned(),
            };
            let now = u64::try_from(self.clock.now().timestamp()).unwrap_or(0);
            let target = service_token::Request {
                method: "POST",
                path: &path,
                body,
            };
            let token = signer.sign(AUDIENCE, ACTION, &target, now)?;
            request = request.bearer_auth(token);
        }

        let mut response = request.send().await.context("calling DocuMint")?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let text: String = text.chars().take(300).collect();
            // 401/403 can be a key rotation done in the wrong order, 408/429 a busy
            // DocuMint: worth another try. Any other 4xx is about the request itself.
            let transient = matches!(status.as_u16(), 401 | 403 | 408 | 429);
            if status.is_client_error() && !transient {
                return Err(Refused {
                    status: status.as_u16(),
                    body: text,
                }
                .into());
            }
            anyhow::bail!("DocuMint answered {status}: {text}");
        }

        let mut pdf = Vec::new();
        while let Some(chunk) = response.chunk().await.context("reading the PDF")? {
            if pdf.len() + chunk.len() > MAX_PDF_BYTES {
                anyhow::bail!("DocuMint's PDF is larger than {MAX_PDF_BYTES} bytes");
            }
            pdf.extend_from_slice(&chunk);
        }
        if !pdf.starts_with(b"%PDF-") {
            anyhow::bail!("DocuMint's answer is not a PDF");
        }
        Ok(pdf)
    }
}

/// DocuMint refused the request itself (a 4xx other than an authentication or rate
/// answer): the same request would be refused again, so it is not retried.
#[derive(Debug, thiserror::Error)]
#[error("DocuMint refused the receipt ({status}): {body}")]
pub struct Refused {
    pub status: u16,
    pub body: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---- the API ----

fn enabled(app: &App) -> Result<(), ApiError> {
    if app.config.receipts.is_some() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "receipts_off",
            "usage receipts are not enabled (FLAGBIT_RECEIPTS=on)",
        ))
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    period_start: DateTime<Utc>,
    period_end: DateTime<Utc>,
    status: String,
    requested_by: String,
    attempts: i32,
    last_error: Option<String>,
    totals: Option<Value>,
    pdf_sha256: Option<String>,
    pdf_bytes: Option<i32>,
    created_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, period_start, period_end, status, requested_by, attempts, last_error, \
     totals, pdf_sha256, octet_length(pdf) AS pdf_bytes, created_at, completed_at";

fn receipt_json(row: Row) -> Value {
    let id = row.id;
    let period = Period {
        start: row.period_start,
        end: row.period_end,
    };
    json!({
        "id": id,
        "period": period.label(),
        "period_start": period.start,
        "period_end": period.end,
        "status": row.status,
        "requested_by": row.requested_by,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "total_evaluations": row.totals.as_ref().map(|t| t["total_evaluations"].clone()),
        "totals": row.totals,
        "pdf": row.pdf_sha256.map(|sha| json!({ "sha256": sha, "bytes": row.pdf_bytes,
            "url": format!("/api/v1/receipts/{id}/pdf") })),
        "created_at": row.created_at,
        "completed_at": row.completed_at,
    })
}

/// `POST /api/v1/receipts` with `{"period": "YYYY-MM"}` (default: the last finished month).
pub async fn create(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    crate::api::admin(&headers, &app)?;
    enabled(&app)?;

    let bytes = axum::body::to_bytes(body, MAX_REQUEST_BODY)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "body over 1 KiB",
            )
        })?;
    let now = app.config.clock.now();
    let requested = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let value: Value = platform::http::json_body(Body::from(bytes), MAX_REQUEST_BODY).await?;
        let Some(fields) = value.as_object() else {
            return Err(ApiError::invalid(
                "body",
                "expected an object, {\"period\": \"YYYY-MM\"}",
            ));
        };
        if let Some(unknown) = fields.keys().find(|k| *k != "period") {
            return Err(ApiError::invalid(unknown.clone(), "unknown field"));
        }
        match value.get("period") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(
                Period::parse(text)
                    .ok_or_else(|| ApiError::invalid("period", "expected a month, YYYY-MM"))?,
            ),
            Some(_) => return Err(ApiError::invalid("period", "expected a month, YYYY-MM")),
        }
    };
    let period = match requested {
        Some(period) => period,
        None => Period::last_finished(now)
            .ok_or_else(|| ApiError::invalid("period", "no finished month before now"))?,
    };
    if period.end > now {
        return Err(ApiError::invalid(
            "period",
            "the month has not finished yet",
        ));
    }

    let (id, queued) = request(&app.pool, period, "api", now)
        .await
        .map_err(|e| ApiError::internal(e.into()))?;
    let receipt = one(&app.pool, id).await?;
    let status = if queued || receipt["status"] != "done" {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(receipt)).into_response())
}

async fn one(pool: &PgPool, id: i64) -> Result<Value, ApiError> {
    let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM receipts WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(|e| ApiError::internal(e.into()))?;
    row.map(receipt_json)
        .ok_or_else(|| ApiError::not_found("receipt"))
}

/// `GET /api/v1/receipts`: newest period first.
pub async fn list(
    State(app): State<App>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    crate::api::admin(&headers, &app)?;
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM receipts ORDER BY period_start DESC LIMIT {MAX_LISTED}"
    ))
    .fetch_all(&app.pool)
    .await
    .map_err(|e| ApiError::internal(e.into()))?;
    let receipts: Vec<Value> = rows.into_iter().map(receipt_json).collect();
    Ok(Json(json!({ "receipts": receipts })))
}

/// `GET /api/v1/receipts/{id}`.
pub async fn get(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    crate::api::admin(&headers, &app)?;
    Ok(Json(one(&app.pool, receipt_id(&id)?).await?))
}

/// `GET /api/v1/receipts/{id}/pdf`.
pub async fn pdf(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    crate::api::admin(&headers, &app)?;
    let id = receipt_id(&id)?;
    #[derive(sqlx::FromRow)]
    struct Stored {
        period_start: DateTime<Utc>,
        pdf: Option<Vec<u8>>,
        pdf_sha256: Option<String>,
    }

    let row: Option<Stored> =
        sqlx::query_as("SELECT period_start, pdf, pdf_sha256 FROM receipts WHERE id = $1")
            .bind(id)
            .fetch_optional(&app.pool)
            .await
            .map_err(|e| ApiError::internal(e.into()))?;
    let Some(Stored {
        period_start: start,
        pdf,
        pdf_sha256: sha,
    }) = row
    else {
        return Err(ApiError::not_found("receipt"));
    };
    let (Some(pdf), Some(sha)) = (pdf, sha) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_ready",
            "the receipt is not rendered yet",
        ));
    };

    let name = format!("flagbit-usage-{}.pdf", start.format("%Y-%m"));
    let mut response = pdf.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pdf"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("\"{sha}\"")) {
        headers.insert(header::ETAG, value);
    }
    Ok(response)
}

fn receipt_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found("receipt"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn periods_are_calendar_months() {
        let period = Period::parse("2026-12").unwrap();
        assert_eq!(period.start, at("2026-12-01T00:00:00Z"));
        assert_eq!(period.end, at("2027-01-01T00:00:00Z"));
        assert_eq!(period.label(), "2026-12");

        for bad in [
            "2026-13", "2026-1", "26-01", "2026/01", "", "2026-00", "abcd-ef",
        ] {
            assert_eq!(Period::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_last_finished_month_is_the_one_before_now() {
        assert_eq!(
            Period::last_finished(at("2026-12-04T19:00:00Z")),
            Period::parse("2026-11")
        );
        assert_eq!(
            Period::last_finished(at("2027-01-01T00:00:00Z")),
            Period::parse("2026-12")
        );
    }

    #[test]
    fn the_schedule_picks_the_month_before_its_latest_firing() {
        let monthly = croner::parser::CronParser::new()
            .parse("0 2 1 * *")
            .unwrap();

        // Before 02:00 on the 1st, the latest firing was a month earlier.
        assert_eq!(
            scheduled_period(&monthly, at("2026-12-01T01:59:00Z")),
            Period::parse("2026-10")
        );
        assert_eq!(
            scheduled_period(&monthly, at("2026-12-01T02:00:00Z")),
            Period::parse("2026-11")
        );
        assert_eq!(
            scheduled_period(&monthly, at("2026-12-31T23:00:00Z")),
            Period::parse("2026-11")
        );
    }
}
