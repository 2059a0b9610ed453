//! The worker: renders queued documents, as many at once as there are cores.
//!
//! Each slot claims a job from the shared queue (`FOR UPDATE SKIP LOCKED`, with a lease
//! longer than a render may take), renders in a child process and stores the PDF with its
//! size and SHA-256 in the transaction that completes the job. A worker that dies
//! mid-render leaves the job leased; once the lease expires another slot (or the restarted
//! worker) claims it again.
//!
//! Failures the template causes (compile errors, too many pages, timeout, memory cap,
//! crash) are final: rendering again gives the same answer. Failures of ours (the renderer
//! does not start, the database fails) are retried with backoff, up to the job's attempts.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::render::{RenderError, RenderJob, Renderer};
use crate::{Config, QUEUE, store};

/// Runs `config.render_concurrency` render slots until shutdown.
pub async fn run(config: Config, pool: PgPool, shutdown: CancellationToken) -> anyhow::Result<()> {
    let renderer = Renderer::new(config.render.clone(), config.render_concurrency);
    tracing::info!(
        renders = config.render_concurrency,
        renderer = %config.render.binary.display(),
        "render worker started"
    );
    let mut slots = tokio::task::JoinSet::new();
    // Twice as many slots as renders: while one slot's render runs, another does its
    // database round trips (claim, load, store), which wait on I/O rather than use a core.
    // The renderer's own limit keeps renders at one per core.
    for _ in 0..config.render_concurrency * 2 {
        slots.spawn(slot(
            config.clone(),
            pool.clone(),
            renderer.clone(),
            shutdown.clone(),
        ));
    }
    while let Some(done) = slots.join_next().await {
        done.context("render slot")?;
    }
    Ok(())
}

/// One render at a time until shutdown; a render under way is finished first.
async fn slot(config: Config, pool: PgPool, renderer: Renderer, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        match run_one(&config, &pool, &renderer).await {
            Ok(true) => {}
            Ok(false) => {
                if !platform::worker::sleep_or_stop(config.poll_every, &shutdown).await {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "render slot");
                if !platform::worker::sleep_or_stop(Duration::from_secs(1), &shutdown).await {
                    return;
                }
            }
        }
    }
}

/// The lease of a claimed job: longer than any render may take.
fn lease(config: &Config) -> Duration {
    config.render.wall + Duration::from_secs(30)
}

/// Claims and renders one job; false when there was none.
pub async fn run_one(config: &Config, pool: &PgPool, renderer: &Renderer) -> anyhow::Result<bool> {
    let now = config.clock.now();
    let Some(job) = platform::queue::claim(pool, QUEUE, lease(config), now).await? else {
        return Ok(false);
    };
    let id = job
        .payload
        .get("document_id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok());
    let Some(id) = id else {
        // Not ours to understand: kept as dead for a person to look at.
        platform::queue::fail(
            pool,
            &job,
            "payload has no document_id",
            false,
            Duration::ZERO,
            now,
        )
        .await?;
        return Ok(true);
    };
    let Some(input) = store::render_input(pool, id).await? else {
        // Deleted meanwhile.
        platform::queue::complete(pool, &job).await?;
        return Ok(true);
    };
    if matches!(input.status.as_str(), "done" | "failed") {
        platform::queue::complete(pool, &job).await?;
        return Ok(true);
    }

    sqlx::query(
        "UPDATE documents SET status = 'rendering', attempts = $2, updated_at = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(job.attempt)
    .bind(now)
    .execute(pool)
    .await?;

    let render_job = RenderJob {
        source: &input.source,
        data: &input.data,
        options: &input.options,
        title: input.options.get("title").and_then(Value::as_str),
        author: input.options.get("author").and_then(Value::as_str),
        standard: input.options.get("pdf_standard").and_then(Value::as_str),
        // The document's own date: reproducible, unlike the clock at render time.
        date: Some(input.created_at.format("%Y-%m-%d").to_string()),
        ident: input.ident.clone(),
        max_pages: config.render.max_pages,
    };
    let started = std::time::Instant::now();
    let outcome = renderer.render(&render_job).await;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let now = config.clock.now();

    let finished = match outcome {
        Ok(rendered) => {
            let sha256: String = Sha256::digest(&rendered.pdf)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let size = i32::try_from(rendered.pdf.len()).context("PDF size")?;
            let pages = i32::try_from(rendered.pages).context("page count")?;
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO document_pdfs (document_id, pdf) VALUES ($1, $2)
                 ON CONFLICT (document_id) DO UPDATE SET pdf = EXCLUDED.pdf",
            )
            .bind(id)
            .bind(&rendered.pdf)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE documents SET status = 'done', pages = $2, pdf_size = $3, pdf_sha256 = $4,
                     warnings = $5, error = NULL, rendered_at = $6, updated_at = $6
                 WHERE id = $1",
            )
            .bind(id)
            .bind(pages)
            .bind(size)
            .bind(&sha256)
            .bind(json!(rendered.warnings))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            platform::queue::complete(&mut *tx, &job).await?;
            tx.commit().await?;
            tracing::info!(
                document = %id, pages, size, elapsed_ms,
                peak_rss_kib = rendered.peak_rss_kib,
                "document rendered"
            );
            true
        }
        Err(RenderError::Infrastructure(e)) => {
            let message = format!("{e:#}");
            tracing::warn!(
                document = %id,
                error = %message,
                attempt = job.attempt,
                "render failed; will retry"
            );
            let backoff = platform::queue::backoff(
                job.attempt,
                Duration::from_secs(2),
                Duration::from_secs(120),
            );
            match platform::queue::fail(pool, &job, &message, true, backoff, now).await? {
                platform::queue::Failure::Retry(at) => {
                    set_failure(
                        pool,
                        id,
                        "queued",
                        "unavailable",
                        "the renderer is unavailable; retrying",
                        &[],
                        now,
                        Some(at),
                    )
                    .await?;
                    false
                }
                platform::queue::Failure::Dead => {
                    set_failure(
                        pool,
                        id,
                        "failed",
                        "unavailable",
                        "the renderer was unavailable on every attempt",
                        &[],
                        now,
                        None,
                    )
                    .await?;
                    true
                }
            }
        }
        Err(failure) => {
            let (errors, warnings) = match &failure {
                RenderError::Template {
                    errors, warnings, ..
                } => (errors.clone(), warnings.clone()),
                _ => (Vec::new(), Vec::new()),
            };
            let message = failure.message(&config.render);
            let mut tx = pool.begin().await?;
            set_failure(
                &mut *tx,
                id,
                "failed",
                failure.code(),
                &message,
                &errors,
                now,
                None,
            )
            .await?;
            sqlx::query("UPDATE documents SET warnings = $2 WHERE id = $1")
                .bind(id)
                .bind(json!(warnings))
                .execute(&mut *tx)
                .await?;
            platform::queue::complete(&mut *tx, &job).await?;
            tx.commit().await?;
            tracing::info!(document = %id, code = failure.code(), elapsed_ms, "document failed");
            true
        }
    };

    if finished && input.webhook {
        notify(config, pool, id).await;
    }
    Ok(true)
}

#[allow(clippy::too_many_arguments)]
async fn set_failure(
    db: impl sqlx::PgExecutor<'_>,
    id: Uuid,
    status: &str,
    code: &str,
    message: &str,
    details: &[crate::render::Diagnostic],
    now: DateTime<Utc>,
    retry_at: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    let mut error = json!({ "code": code, "message": message, "details": details });
    if let Some(at) = retry_at {
        error["retry_at"] = json!(at);
    }
    sqlx::query("UPDATE documents SET status = $2, error = $3, updated_at = $4 WHERE id = $1")
        .bind(id)
        .bind(status)
        .bind(error)
        .bind(now)
        .execute(db)
        .await
        .map(|_| ())
}

/// Sends the completion webhook, if the document has one, in the background.
///
/// Known shortcoming: attempts live in this process only (a worker restart loses pending
/// ones), requests are not signed, and only plain http is supported.
async fn notify(config: &Config, pool: &PgPool, id: Uuid) {
    let row = match store::get_document(pool, id).await {
        Ok(Some(row)) => row,
        Ok(_) => return,
        Err(e) => {
            tracing::error!(document = %id, error = %e, "reading the document for its webhook");
            return;
        }
    };
    let (pool, timeout, attempts, allow) = (
        pool.clone(),
        config.webhook_timeout,
        config.webhook_attempts,
        config.webhook_allow.clone(),
    );
    tokio::spawn(async move {
        let Some(url) = row.webhook_url.clone() else {
            return;
        };
        let event = if row.status == "done" {
            "document.done"
        } else {
            "document.failed"
        };
        let body = json!({ "event": event, "document": row.to_json() });
        let status = deliver(&url, &body, timeout, attempts, allow).await;
        if let Err(e) = sqlx::query("UPDATE documents SET webhook_status = $2 WHERE id = $1")
            .bind(id)
            .bind(&status)
            .execute(&pool)
            .await
        {
            tracing::error!(document = %id, error = %e, "recording the webhook's outcome");
        }
    });
}

/// POSTs `body` until a 2xx answer, at most `attempts` times with a doubling pause; the
/// outcome as stored on the document. The URL must not lead to an internal address (the
/// worker shares a network with its database) unless `allow` names it: checked on the
/// address connected to, through the shared egress guard.
pub async fn deliver(
    url: &str,
    body: &Value,
    timeout: Duration,
    attempts: u32,
    allow: Vec<ipnet::IpNet>,
) -> String {
    use platform::egress::{Guard, Refused, Resolver, permitted};

    let allow = std::sync::Arc::new(allow);
    let literal = reqwest::Url::parse(url).ok().and_then(|u| {
        let host = u
            .host_str()?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        host.parse::<std::net::IpAddr>().ok()
    });
    if let Some(ip) = literal.filter(|ip| !permitted(*ip, &allow)) {
        return format!("failed: {}", Refused(ip.to_string()));
    }
    let client = match reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(std::sync::Arc::new(Guard::new(allow, Resolver::system())))
        .build()
    {
        Ok(c) => c,
        Err(e) => return format!("failed: {e}"),
    };
    let mut last = String::new();
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 << attempt.min(6))).await;
        }
        match client.post(url).json(body).send().await {
            Ok(resp) if resp.status().is_success() => return "delivered".to_owned(),
            Ok(resp) => last = format!("HTTP {}", resp.status().as_u16()),
            Err(e) => {
                // A refused address stays refused: no point in asking again.
                let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
                while let Some(error) = source {
                    if let Some(refused) = error.downcast_ref::<Refused>() {
                        return format!("failed: {refused}");
                    }
                    source = error.source();
                }
                last = if e.is_timeout() {
                    "timeout".to_owned()
                } else {
                    "connection failed".to_owned()
                }
            }
        }
    }
    format!("failed after {attempts} attempts: {last}")
}
