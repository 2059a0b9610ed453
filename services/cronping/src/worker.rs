//! The worker: a sweep that marks overdue checks down, and alert delivery to webhooks.
//!
//! Both take `now` as an argument so tests step them; `run` drives them from the clock.
//! Several workers may run at once: the sweep locks the rows it changes (SKIP LOCKED, so
//! workers split the overdue checks between them), and each alert is a job in the shared
//! queue, which hands a job to one claimer at a time.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use platform::egress::{Guard, Refused, Resolver, permitted};
use platform::queue::{self, Failure};
use serde_json::Value;
use sqlx::PgPool;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::Config;
use crate::store::{self, ALERT_QUEUE, COLUMNS, CheckRow};

/// Checks handled per sweep transaction.
const SWEEP_BATCH: i64 = 100;
/// A claimed alert is someone else's to retry after this long; longer than any attempt.
const ALERT_LEASE: Duration = Duration::from_secs(60);
/// Longest wait between two attempts of one alert.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// The sweep's query: overdue checks, oldest deadline first, skipping rows another worker
/// holds. Public so a test can check its plan uses the deadline index.
pub fn sweep_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM checks WHERE deadline <= $1
         ORDER BY deadline LIMIT $2 FOR UPDATE SKIP LOCKED"
    )
}

/// Marks every check whose deadline has passed by `now` down, with a flip stamped at the
/// deadline and an alert where one is due. Returns how many checks went down.
pub async fn sweep(pool: &PgPool, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let mut down = 0;
    loop {
        let mut tx = pool.begin().await?;
        // The partial index on deadline makes this a range read of the overdue checks only.
        // Rows another worker holds are skipped: that worker is already handling them.
        let rows: Vec<CheckRow> = sqlx::query_as(&sweep_sql())
            .bind(now)
            .bind(SWEEP_BATCH)
            .fetch_all(&mut *tx)
            .await
            .context("selecting overdue checks")?;

        for row in &rows {
            let mut check = match row.engine() {
                Ok(check) => check,
                Err(e) => {
                    // A row the engine cannot read would be picked again on every sweep;
                    // push it an hour ahead and say so, instead of looping on it.
                    tracing::error!(check = %row.id, error = format!("{e:#}"), "unreadable check");
                    sqlx::query("UPDATE checks SET deadline = $2 WHERE id = $1")
                        .bind(row.id)
                        .bind(now + chrono::Duration::hours(1))
                        .execute(&mut *tx)
                        .await?;
                    continue;
                }
            };
            let flip = check.expire(now);
            // Without a flip the stored deadline was stale; saving rewrites it.
            store::save_state(&mut tx, row.id, &check, now).await?;
            if let Some(flip) = flip {
                store::record_flips(&mut tx, row, &[flip], now).await?;
                down += 1;
            }
        }
        tx.commit().await.context("committing a sweep")?;

        if rows.len() < usize::try_from(SWEEP_BATCH).unwrap_or(usize::MAX) {
            return Ok(down);
        }
    }
}

/// Sends alerts: a client that follows no redirects, uses no proxy, gives up after the
/// configured timeout and connects only to addresses it has checked.
#[derive(Clone, Debug)]
pub struct Sender {
    client: reqwest::Client,
    allow: Arc<Vec<IpNet>>,
    backoff: Duration,
}

impl Sender {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let allow = Arc::new(config.alert_allow.clone());
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(config.alert_timeout)
            .user_agent(concat!("cronping/", env!("CARGO_PKG_VERSION")))
            // Names resolve through the guard, and the connector only ever connects to the
            // addresses the guard returned: the address checked is the address connected to.
            .dns_resolver(Arc::new(Guard::new(allow.clone(), Resolver::system())))
            .build()
            .context("building the alert HTTP client")?;
        Ok(Self {
            client,
            allow,
            backoff: config.alert_backoff,
        })
    }

    async fn post(&self, url: &str, payload: &Value) -> Result<u16, Attempt> {
        let url =
            reqwest::Url::parse(url).map_err(|e| Attempt::permanent(format!("bad URL: {e}")))?;
        // Literal addresses never reach the resolver, so they are checked here.
        let literal = url
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
            .and_then(|h| h.parse::<IpAddr>().ok());
        if let Some(ip) = literal.filter(|ip| !permitted(*ip, &self.allow)) {
            return Err(Attempt::permanent(Refused(ip.to_string()).to_string()));
        }

        match self.client.post(url).json(payload).send().await {
            Ok(resp) if resp.status().is_success() => Ok(resp.status().as_u16()),
            Ok(resp) => Err(Attempt {
                status: Some(resp.status().as_u16()),
                error: format!("HTTP {}", resp.status()),
                retry: true,
            }),
            Err(e) => {
                let refused =
                    std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
                        e.source()
                    })
                    .find_map(|e| e.downcast_ref::<Refused>());
                match refused {
                    Some(r) => Err(Attempt::permanent(r.to_string())),
                    None => Err(Attempt {
                        status: None,
                        error: error_chain(&e),
                        retry: true,
                    }),
                }
            }
        }
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(e), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// A failed delivery attempt.
struct Attempt {
    status: Option<u16>,
    error: String,
    retry: bool,
}

impl Attempt {
    fn permanent(error: String) -> Self {
        Self {
            status: None,
            error,
            retry: false,
        }
    }
}

/// Delivers the oldest due alert, if any: one attempt, recorded. Returns whether there
/// was one.
pub async fn deliver_one(
    pool: &PgPool,
    sender: &Sender,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let Some(job) = queue::claim(pool, ALERT_QUEUE, ALERT_LEASE, now).await? else {
        return Ok(false);
    };
    let alert_id = job
        .payload
        .get("alert_id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok());
    let alert: Option<(Uuid, String, Value)> = match alert_id {
        Some(id) => {
            sqlx::query_as(
                "SELECT id, url, payload FROM alerts WHERE id = $1 AND state = 'pending'",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
        }
        None => None,
    };
    // Gone with its check, or delivered by an attempt that died before completing the job.
    let Some((alert_id, url, payload)) = alert else {
        queue::complete(pool, &job).await?;
        return Ok(true);
    };

    let started = Instant::now();
    let result = sender.post(&url, &payload).await;
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let (status, error) = match &result {
        Ok(code) => (Some(*code), None),
        Err(a) => (
            a.status,
            Some(a.error.chars().take(2000).collect::<String>()),
        ),
    };

    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO alert_attempts (alert_id, attempt, at, duration_ms, status_code, error)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(alert_id)
    .bind(job.attempt)
    .bind(now)
    .bind(duration_ms)
    .bind(status.map(i32::from))
    .bind(&error)
    .execute(&mut *tx)
    .await?;

    match result {
        Ok(_) => {
            sqlx::query("UPDATE alerts SET state = 'delivered', delivered_at = $2 WHERE id = $1")
                .bind(alert_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            queue::complete(&mut *tx, &job).await?;
            tracing::info!(alert = %alert_id, attempt = job.attempt, "alert delivered");
        }
        Err(attempt) => {
            let backoff = queue::backoff(job.attempt, sender.backoff, MAX_BACKOFF);
            let outcome =
                queue::fail(&mut *tx, &job, &attempt.error, attempt.retry, backoff, now).await?;
            if outcome == Failure::Dead {
                sqlx::query("UPDATE alerts SET state = 'failed' WHERE id = $1")
                    .bind(alert_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tracing::warn!(
                alert = %alert_id,
                attempt = job.attempt,
                error = %attempt.error,
                ?outcome,
                "alert delivery failed"
            );
        }
    }
    tx.commit().await?;
    Ok(true)
}

/// The worker's loop: sweeps on a cron schedule, and delivers alerts as they come due.
pub async fn run(config: Config, pool: PgPool, shutdown: CancellationToken) -> anyhow::Result<()> {
    let sender = Sender::new(&config)?;
    let mut scheduler = JobScheduler::new()
        .await
        .context("starting the scheduler")?;

    // The sweep runs on wall-clock seconds (`*/2 * * * * *`), so several workers sweep at
    // the same instants; their row locks (SKIP LOCKED) split the work between them.
    let every = config.sweep_every.as_secs();
    let (sweep_pool, clock) = (pool.clone(), config.clock.clone());
    let job = Job::new_async(format!("*/{every} * * * * *"), move |_, _| {
        let (pool, now) = (sweep_pool.clone(), clock.now());
        Box::pin(async move {
            match sweep(&pool, now).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(down = n, "sweep marked checks down"),
                Err(e) => tracing::error!(error = format!("{e:#}"), "sweep failed"),
            }
        })
    })
    .context("scheduling the sweep")?;
    scheduler.add(job).await.context("scheduling the sweep")?;
    scheduler.start().await.context("starting the scheduler")?;

    // Known shortcoming: one alert at a time, so a receiver that uses its whole timeout
    // delays the alerts queued behind it by that much. Running this loop on a few tasks
    // (claims are already safe to run concurrently) would fix it.
    loop {
        let idle = match deliver_one(&pool, &sender, config.clock.now()).await {
            Ok(true) => None,
            Ok(false) => Some(Duration::from_secs(1)),
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "alert delivery step failed");
                Some(Duration::from_secs(5))
            }
        };
        let go_on = match idle {
            None => !shutdown.is_cancelled(),
            Some(pause) => platform::worker::sleep_or_stop(pause, &shutdown).await,
        };
        if !go_on {
            break;
        }
    }

    scheduler
        .shutdown()
        .await
        .context("stopping the scheduler")?;
    Ok(())
}
