//! The PostgreSQL job queue (table `jobs`, created by the shared migration).
//!
//! A claim takes the oldest due job with `FOR UPDATE SKIP LOCKED` and leases it until a
//! deadline instead of holding a transaction open, so a worker that dies mid-job delays that
//! job by one lease and nothing more. Every function takes `now`: the queue's rules are
//! testable without waiting for a clock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgExecutor;

/// A claimed job. `attempt` counts from 1.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Job {
    pub id: i64,
    pub queue: String,
    pub payload: Value,
    #[sqlx(rename = "attempts")]
    pub attempt: i32,
    pub max_attempts: i32,
}

/// What became of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Scheduled again at this time.
    Retry(DateTime<Utc>),
    /// No attempts left: kept with `failed_at` set, for inspection.
    Dead,
}

pub async fn enqueue(
    db: impl PgExecutor<'_>,
    queue: &str,
    payload: &Value,
    run_at: DateTime<Utc>,
    max_attempts: i32,
    now: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO jobs (queue, payload, run_at, max_attempts, created_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(queue)
    .bind(payload)
    .bind(run_at)
    .bind(max_attempts)
    .bind(now)
    .fetch_one(db)
    .await
}

/// Claims the oldest due job of `queue` whose lease (if any) has expired.
pub async fn claim(
    db: impl PgExecutor<'_>,
    queue: &str,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<Option<Job>, sqlx::Error> {
    let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
    sqlx::query_as(
        "UPDATE jobs SET attempts = attempts + 1, locked_until = $3
         WHERE id = (
             SELECT id FROM jobs
             WHERE queue = $1 AND failed_at IS NULL AND run_at <= $2
               AND (locked_until IS NULL OR locked_until <= $2)
             ORDER BY run_at, id
             LIMIT 1
             FOR UPDATE SKIP LOCKED
         )
         RETURNING id, queue, payload, attempts, max_attempts",
    )
    .bind(queue)
    .bind(now)
    .bind(now + lease)
    .fetch_optional(db)
    .await
}

/// The job is done: it leaves the queue.
pub async fn complete(db: impl PgExecutor<'_>, job: &Job) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM jobs WHERE id = $1")
        .bind(job.id)
        .execute(db)
        .await
        .map(|_| ())
}

/// Records a failed attempt: retried after `backoff(attempt)`, or kept as dead once
/// `max_attempts` is spent. A job that must not be retried passes `retry: false`.
pub async fn fail(
    db: impl PgExecutor<'_>,
    job: &Job,
    error: &str,
    retry: bool,
    backoff: Duration,
    now: DateTime<Utc>,
) -> Result<Failure, sqlx::Error> {
    let outcome = if retry && job.attempt < job.max_attempts {
        Failure::Retry(now + chrono::Duration::from_std(backoff).unwrap_or(chrono::Duration::MAX))
    } else {
        Failure::Dead
    };
    let (run_at, failed_at) = match outcome {
        Failure::Retry(at) => (Some(at), None),
        Failure::Dead => (None, Some(now)),
    };

    // Errors are stored for people to read; a bound keeps one runaway message from
    // bloating the row.
    let error: String = error.chars().take(2000).collect();
    sqlx::query(
        "UPDATE jobs SET locked_until = NULL, last_error = $2,
             run_at = COALESCE($3, run_at), failed_at = $4
         WHERE id = $1",
    )
    .bind(job.id)
    .bind(error)
    .bind(run_at)
    .bind(failed_at)
    .execute(db)
    .await?;
    Ok(outcome)
}

/// Exponential backoff from `base`, doubled per attempt and capped at `max`.
pub fn backoff(attempt: i32, base: Duration, max: Duration) -> Duration {
    let exponent = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(0)
        .min(30);
    base.saturating_mul(1 << exponent).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_base_and_stops_at_max() {
        let (base, max) = (Duration::from_secs(5), Duration::from_secs(60));
        assert_eq!(backoff(1, base, max), Duration::from_secs(5));
        assert_eq!(backoff(2, base, max), Duration::from_secs(10));
        assert_eq!(backoff(4, base, max), Duration::from_secs(40));
        assert_eq!(backoff(5, base, max), max);
        assert_eq!(backoff(1000, base, max), max);
        assert_eq!(backoff(0, base, max), base);
    }
}
