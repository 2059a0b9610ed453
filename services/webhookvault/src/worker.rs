//! The worker: claims due deliveries and forwards them, each (event, destination) at least
//! once, with retries, and never lets one destination hold up another.
//!
//! A claim takes due rows with `FOR UPDATE SKIP LOCKED` and leases them (`locked_until`,
//! `lock_token`) instead of holding a transaction open, so several workers split the work
//! and a worker that dies mid-delivery delays that delivery by one lease: another worker
//! takes it once the lease has run out. The lease is longer than the request timeout, so a
//! live attempt always ends (and is recorded, by its own claim only) before anyone else
//! may take the row.
//!
//! Per destination, at most `destination_concurrency` deliveries are in flight and, where
//! the destination has a rate limit, at most that many start per second. A destination at
//! its limit is left out of the claim, so a slow or failing one occupies only its own
//! slots. Both limits are per worker process: with N workers a destination may see N times
//! as much. Sharing them would take a counter in the database (a row per destination
//! updated at each start), which costs a round trip per delivery.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::Config;
use crate::forward::{self, Forwarder, Message, Outcome};

/// A leased delivery.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: Uuid,
    pub event_id: Uuid,
    pub destination_id: Uuid,
    /// Attempts recorded before this one.
    pub attempts: i32,
    pub rate_limit: Option<i32>,
    pub lock_token: Uuid,
}

/// Leases up to `limit` due deliveries. `caps` gives the destinations that may take fewer
/// than `default_cap` now (0: none); they are skipped or limited in the same statement.
pub async fn claim(
    pool: &PgPool,
    now: DateTime<Utc>,
    lease: Duration,
    limit: usize,
    default_cap: usize,
    caps: &HashMap<Uuid, usize>,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
    let busy: Vec<Uuid> = caps
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(d, _)| *d)
        .collect();
    let (dests, limits): (Vec<Uuid>, Vec<i32>) = caps
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(d, n)| (*d, i32::try_from(*n).unwrap_or(i32::MAX)))
        .unzip();
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    sqlx::query_as(
        "WITH candidates AS (
             SELECT d.id, d.destination_id, d.next_attempt_at FROM deliveries d
             WHERE d.state = 'pending' AND d.next_attempt_at <= $1
               AND (d.locked_until IS NULL OR d.locked_until <= $1)
               AND d.destination_id <> ALL ($2)
               AND EXISTS (SELECT 1 FROM destinations t
                           WHERE t.id = d.destination_id AND t.enabled)
             ORDER BY d.next_attempt_at, d.id
             LIMIT $3
             FOR UPDATE OF d SKIP LOCKED
         ), ranked AS (
             SELECT c.id, c.next_attempt_at,
                 row_number() OVER (PARTITION BY c.destination_id
                                    ORDER BY c.next_attempt_at, c.id) AS rn,
                 COALESCE(cap.n, $4) AS cap
             FROM candidates c
             LEFT JOIN UNNEST($5::uuid[], $6::int[]) AS cap(dest, n)
               ON cap.dest = c.destination_id
         ), chosen AS (
             SELECT id FROM ranked WHERE rn <= cap ORDER BY next_attempt_at, id LIMIT $7
         )
         UPDATE deliveries d SET locked_until = $8, lock_token = gen_random_uuid()
         FROM chosen WHERE d.id = chosen.id
         RETURNING d.id, d.event_id, d.destination_id, d.attempts, d.lock_token,
             (SELECT t.rate_limit FROM destinations t WHERE t.id = d.destination_id)
                 AS rate_limit",
    )
    .bind(now)
    .bind(&busy)
    // Scanning past the first rows lets destinations with room be found behind a backlog
    // for one that has little.
    .bind(limit.saturating_mul(4).saturating_add(100))
    .bind(i32::try_from(default_cap).unwrap_or(i32::MAX))
    .bind(&dests)
    .bind(&limits)
    .bind(limit)
    .bind(now + lease)
    .fetch_all(pool)
    .await
}

/// Gives leased deliveries back untouched (claimed beyond what may start now).
async fn release(pool: &PgPool, claimed: &[Claimed]) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = claimed.iter().map(|c| c.id).collect();
    let tokens: Vec<Uuid> = claimed.iter().map(|c| c.lock_token).collect();
    sqlx::query(
        "UPDATE deliveries d SET locked_until = NULL, lock_token = NULL
         FROM UNNEST($1::uuid[], $2::uuid[]) AS x(id, token)
         WHERE d.id = x.id AND d.lock_token = x.token",
    )
    .bind(&ids)
    .bind(&tokens)
    .execute(pool)
    .await
    .map(|_| ())
}

#[derive(sqlx::FromRow)]
struct ToSend {
    body: Vec<u8>,
    content_type: Option<String>,
    url: String,
    headers: Value,
    secret: String,
}

/// What became of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Delivered,
    Retry,
    Failed,
    /// The delivery (or its event or destination) is gone, or the lease was lost.
    Dropped,
}

/// The `webhook-id` of an event's deliveries: the same on every attempt and every replay,
/// so a receiver can drop what it already has.
pub fn message_id(event: Uuid) -> String {
    format!("msg_{}", event.simple())
}

/// Makes one attempt of a leased delivery and records it.
pub async fn attempt(
    pool: &PgPool,
    forwarder: &Forwarder,
    config: &Config,
    claimed: &Claimed,
) -> anyhow::Result<Step> {
    let found: Option<ToSend> = sqlx::query_as(
        "SELECT e.body, e.content_type, t.url, t.headers, t.secret
         FROM deliveries d
         JOIN events e ON e.id = d.event_id
         JOIN destinations t ON t.id = d.destination_id
         WHERE d.id = $1",
    )
    .bind(claimed.id)
    .fetch_optional(pool)
    .await
    .context("loading a delivery")?;
    let Some(send) = found else {
        return Ok(Step::Dropped);
    };

    let empty = Map::new();
    let msg_id = message_id(claimed.event_id);
    let message = Message {
        url: &send.url,
        extra_headers: send.headers.as_object().unwrap_or(&empty),
        secret: &send.secret,
        msg_id: &msg_id,
        body: &send.body,
        content_type: send.content_type.as_deref(),
    };
    let outcome = forwarder.send(&message, config.clock.now()).await;
    record(pool, config, claimed, &outcome, config.clock.now()).await
}

/// Records an attempt and what follows it, if the lease is still this claim's.
pub async fn record(
    pool: &PgPool,
    config: &Config,
    claimed: &Claimed,
    outcome: &Outcome,
    now: DateTime<Utc>,
) -> anyhow::Result<Step> {
    let n = claimed.attempts + 1;
    // 410 Gone: the receiver says the endpoint no longer exists (Standard Webhooks). The
    // delivery fails at once and the destination is disabled until someone enables it.
    let gone = outcome.status == Some(410);
    let next = if outcome.delivered() || outcome.permanent || gone {
        None
    } else {
        forward::retry_delay(
            n,
            &config.retry_schedule,
            outcome.retry_after,
            config.jitter,
            forward::jitter_unit(),
        )
    };
    let (state, result) = match (outcome.delivered(), next) {
        (true, _) => ("delivered", Step::Delivered),
        (false, Some(_)) => ("pending", Step::Retry),
        (false, None) => ("failed", Step::Failed),
    };
    let next_at =
        next.map(|d| now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX));
    let error: Option<String> = outcome
        .error
        .as_ref()
        .map(|e| e.chars().take(2000).collect());
    let duration_ms = i64::try_from(outcome.duration.as_millis()).unwrap_or(i64::MAX);

    let mut tx = pool.begin().await?;
    let updated = sqlx::query(
        "UPDATE deliveries SET attempts = $3, state = $4, next_attempt_at = $5,
             locked_until = NULL, lock_token = NULL, last_status = $6, last_error = $7,
             finished_at = CASE WHEN $4 = 'pending' THEN NULL ELSE $8 END
         WHERE id = $1 AND lock_token = $2",
    )
    .bind(claimed.id)
    .bind(claimed.lock_token)
    .bind(n)
    .bind(state)
    .bind(next_at)
    .bind(outcome.status.map(i32::from))
    .bind(&error)
    .bind(now)
    .execute(&mut *tx)
    .await
    .context("recording a delivery's state")?;
    if updated.rows_affected() == 0 {
        // The lease ran out and another claim owns the row now, or the row is gone.
        tracing::warn!(delivery = %claimed.id, "attempt finished after its lease; not recorded");
        return Ok(Step::Dropped);
    }
    if gone {
        sqlx::query("UPDATE destinations SET enabled = false, updated_at = $2 WHERE id = $1")
            .bind(claimed.destination_id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .context("disabling a destination")?;
        tracing::warn!(destination = %claimed.destination_id, "destination answered 410; disabled");
    }
    sqlx::query(
        "INSERT INTO attempts (delivery_id, n, at, duration_ms, status_code, error, response)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(claimed.id)
    .bind(n)
    .bind(now)
    .bind(duration_ms)
    .bind(outcome.status.map(i32::from))
    .bind(&error)
    .bind(&outcome.response)
    .execute(&mut *tx)
    .await
    .context("recording an attempt")?;
    tx.commit().await.context("committing an attempt")?;

    match result {
        Step::Delivered => {
            tracing::info!(delivery = %claimed.id, attempt = n, "delivered");
        }
        Step::Retry => tracing::warn!(
            delivery = %claimed.id,
            attempt = n,
            status = outcome.status,
            error = error.as_deref().unwrap_or(""),
            next_attempt_at = ?next_at,
            "delivery attempt failed; will retry"
        ),
        Step::Failed | Step::Dropped => tracing::warn!(
            delivery = %claimed.id,
            attempt = n,
            status = outcome.status,
            error = error.as_deref().unwrap_or(""),
            "delivery failed for good; dead-lettered"
        ),
    }
    Ok(result)
}

/// Runs deliveries until `shutdown`, then lets those in flight finish (each is bounded by
/// the request timeout).
pub async fn run(config: Config, pool: PgPool, shutdown: CancellationToken) -> anyhow::Result<()> {
    let forwarder = Arc::new(Forwarder::new(&config)?);
    let config = Arc::new(config);
    let mut dispatcher = Dispatcher {
        config: config.clone(),
        pool,
        forwarder,
        in_flight: HashMap::new(),
        next_start: HashMap::new(),
        tasks: JoinSet::new(),
        task_dest: HashMap::new(),
    };
    tracing::info!(
        concurrency = config.worker_concurrency,
        per_destination = config.destination_concurrency,
        "forwarding deliveries"
    );
    dispatcher.run(&shutdown).await;

    let drain = config.delivery_timeout + Duration::from_secs(2);
    if tokio::time::timeout(drain, dispatcher.drain())
        .await
        .is_err()
    {
        // Whatever is still running is given up; its lease hands it to another worker.
        dispatcher.tasks.abort_all();
    }
    Ok(())
}

struct Dispatcher {
    config: Arc<Config>,
    pool: PgPool,
    forwarder: Arc<Forwarder>,
    in_flight: HashMap<Uuid, usize>,
    /// Rate-limited destinations: the earliest time the next delivery may start.
    next_start: HashMap<Uuid, Instant>,
    tasks: JoinSet<()>,
    task_dest: HashMap<tokio::task::Id, Uuid>,
}

impl Dispatcher {
    async fn run(&mut self, shutdown: &CancellationToken) {
        while !shutdown.is_cancelled() {
            while let Some(done) = self.tasks.try_join_next_with_id() {
                self.finished(done);
            }
            let started = match self.dispatch().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "claiming deliveries failed");
                    if !platform::worker::sleep_or_stop(Duration::from_secs(1), shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            if started > 0 {
                continue;
            }
            let wait = self.idle_wait();
            tokio::select! {
                Some(done) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.finished(done);
                }
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => {}
            }
        }
    }

    async fn drain(&mut self) {
        while let Some(done) = self.tasks.join_next_with_id().await {
            self.finished(done);
        }
    }

    fn finished(&mut self, done: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
        let id = match &done {
            Ok((id, ())) => *id,
            Err(e) => {
                if e.is_panic() {
                    tracing::error!("a delivery task panicked");
                }
                e.id()
            }
        };
        if let Some(dest) = self.task_dest.remove(&id)
            && let Some(n) = self.in_flight.get_mut(&dest)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.in_flight.remove(&dest);
            }
        }
    }

    /// How long to wait when nothing started: the poll interval, or less when a
    /// rate-limited destination may start again sooner.
    fn idle_wait(&mut self) -> Duration {
        let now = Instant::now();
        // Turns long past say nothing any more; forgetting them bounds the map.
        self.next_start
            .retain(|_, at| *at + Duration::from_secs(60) > now);
        self.next_start
            .values()
            .filter(|at| **at > now)
            .map(|at| at.saturating_duration_since(now))
            .fold(self.config.poll_interval, Duration::min)
            .max(Duration::from_millis(5))
    }

    /// Claims what may start now and starts it; returns how many started.
    async fn dispatch(&mut self) -> anyhow::Result<usize> {
        let free = self
            .config
            .worker_concurrency
            .saturating_sub(self.tasks.len());
        if free == 0 {
            return Ok(0);
        }
        let per_dest = self.config.destination_concurrency;
        let now = Instant::now();
        let mut caps: HashMap<Uuid, usize> = self
            .in_flight
            .iter()
            .map(|(d, n)| (*d, per_dest.saturating_sub(*n)))
            .collect();
        // A rate-limited destination takes one delivery per turn, none before its turn.
        for (dest, at) in &self.next_start {
            let cap = caps.entry(*dest).or_insert(per_dest);
            *cap = if *at > now { 0 } else { (*cap).min(1) };
        }

        let claimed = claim(
            &self.pool,
            self.config.clock.now(),
            self.config.lease,
            free,
            per_dest,
            &caps,
        )
        .await?;

        let mut give_back = Vec::new();
        let mut started = 0;
        for c in claimed {
            if !self.admit(&c) {
                give_back.push(c);
                continue;
            }
            *self.in_flight.entry(c.destination_id).or_default() += 1;
            let (pool, fwd, config) = (
                self.pool.clone(),
                self.forwarder.clone(),
                self.config.clone(),
            );
            let dest = c.destination_id;
            let handle = self.tasks.spawn(async move {
                if let Err(e) = attempt(&pool, &fwd, &config, &c).await {
                    // Unrecorded: the lease runs out and the attempt is made again.
                    let error = format!("{e:#}");
                    tracing::error!(delivery = %c.id, error, "delivery step failed");
                }
            });
            self.task_dest.insert(handle.id(), dest);
            started += 1;
        }
        if !give_back.is_empty() {
            release(&self.pool, &give_back)
                .await
                .context("releasing deliveries")?;
        }
        Ok(started)
    }

    /// Whether a claimed delivery may start now: its destination has a free slot and, if it
    /// is rate-limited, its turn has come (which takes the turn).
    fn admit(&mut self, c: &Claimed) -> bool {
        let busy = self.in_flight.get(&c.destination_id).copied().unwrap_or(0);
        if busy >= self.config.destination_concurrency {
            return false;
        }
        let Some(rate) = c
            .rate_limit
            .and_then(|r| u32::try_from(r).ok())
            .filter(|r| *r > 0)
        else {
            return true;
        };
        let now = Instant::now();
        let at = self
            .next_start
            .get(&c.destination_id)
            .copied()
            .unwrap_or(now);
        if at > now {
            return false;
        }
        self.next_start.insert(
            c.destination_id,
            at.max(now) + Duration::from_secs(1) / rate,
        );
        true
    }
}
