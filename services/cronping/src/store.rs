//! Checks in PostgreSQL: the row, its mapping to the status engine, and the one way a
//! state change is written (state, deadline, flips, alerts) so that pings, the API and
//! the worker cannot disagree about it.

use anyhow::Context as _;
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use crate::cron::Cron;
use crate::status::{self, Flip, Schedule, State, Stored};

/// The queue (in the shared `jobs` table) that alert deliveries run through.
pub const ALERT_QUEUE: &str = "cronping.alert";
/// Delivery attempts per alert.
pub const ALERT_ATTEMPTS: i32 = 5;
/// How much of the last ping's body an alert carries.
const ALERT_BODY_CHARS: usize = 1000;

pub const COLUMNS: &str = "id, ping_uuid, name, slug, tags, timeout_secs, cron_expr, tz, \
    grace_secs, webhook_url, status, last_ping, last_start, last_start_rid, last_duration_ms, \
    n_pings, deadline, created_at, updated_at";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CheckRow {
    pub id: Uuid,
    pub ping_uuid: Uuid,
    pub name: String,
    pub slug: Option<String>,
    pub tags: Vec<String>,
    pub timeout_secs: Option<i32>,
    pub cron_expr: Option<String>,
    pub tz: String,
    pub grace_secs: i32,
    pub webhook_url: Option<String>,
    pub status: String,
    pub last_ping: Option<DateTime<Utc>>,
    pub last_start: Option<DateTime<Utc>>,
    pub last_start_rid: Option<Uuid>,
    pub last_duration_ms: Option<i64>,
    pub n_pings: i64,
    pub deadline: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl CheckRow {
    /// The check as the engine sees it. Stored values were validated on the way in, so a
    /// failure here is our bug or a hand-edited row, never the client's.
    pub fn engine(&self) -> anyhow::Result<status::Check> {
        let schedule = match (&self.cron_expr, self.timeout_secs) {
            (Some(expr), _) => Schedule::Cron {
                cron: Cron::parse(expr).with_context(|| format!("stored schedule {expr:?}"))?,
                zone: self
                    .tz
                    .parse::<Tz>()
                    .map_err(|e| anyhow::anyhow!("stored zone {:?}: {e}", self.tz))?,
            },
            (None, Some(secs)) => Schedule::Period {
                timeout: Duration::seconds(secs.into()),
            },
            (None, None) => anyhow::bail!("check {} has neither schedule nor timeout", self.id),
        };
        let status = Stored::parse(&self.status)
            .with_context(|| format!("stored status {:?}", self.status))?;
        Ok(status::Check {
            schedule,
            grace: Duration::seconds(self.grace_secs.into()),
            state: State {
                status,
                last_ping: self.last_ping,
                last_start: self.last_start,
                last_start_rid: self.last_start_rid,
            },
        })
    }
}

/// Loads a check and locks its row until the transaction ends: pings, API changes and the
/// worker's sweep of one check happen one after another, never interleaved.
pub async fn lock_by_id(tx: &mut PgConnection, id: Uuid) -> Result<Option<CheckRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM checks WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(tx)
    .await
}

pub async fn get(db: &sqlx::PgPool, id: Uuid) -> Result<Option<CheckRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM checks WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Writes the engine's state and the deadline derived from it.
pub async fn save_state(
    tx: &mut PgConnection,
    id: Uuid,
    check: &status::Check,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let s = &check.state;
    sqlx::query(
        "UPDATE checks SET status = $2, last_ping = $3, last_start = $4, last_start_rid = $5,
             deadline = $6, updated_at = $7
         WHERE id = $1",
    )
    .bind(id)
    .bind(s.status.as_str())
    .bind(s.last_ping)
    .bind(s.last_start)
    .bind(s.last_start_rid)
    .bind(check.deadline())
    .bind(now)
    .execute(tx)
    .await
    .map(|_| ())
}

/// Records flips and, for each that alerts and has a webhook to go to, an alert and its
/// delivery job, all in the caller's transaction: the alert exists if and only if the flip
/// committed.
pub async fn record_flips(
    tx: &mut Transaction<'_, Postgres>,
    row: &CheckRow,
    flips: &[Flip],
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    for flip in flips {
        let flip_id: i64 = sqlx::query_scalar(
            "INSERT INTO flips (check_id, at, old_status, new_status, reason, alert)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(row.id)
        .bind(flip.at)
        .bind(flip.from.as_str())
        .bind(flip.to.as_str())
        .bind(flip.reason.as_str())
        .bind(flip.alerts())
        .fetch_one(&mut **tx)
        .await
        .context("recording a flip")?;

        tracing::info!(
            check = %row.id,
            from = flip.from.as_str(),
            to = flip.to.as_str(),
            reason = flip.reason.as_str(),
            at = %flip.at,
            "status changed"
        );

        let Some(url) = row.webhook_url.as_deref().filter(|_| flip.alerts()) else {
            continue;
        };
        let alert_id = Uuid::new_v4();
        let payload = json!({
            "alert_id": alert_id,
            "check": { "id": row.id, "name": row.name },
            "old_status": flip.from.as_str(),
            "new_status": flip.to.as_str(),
            "reason": flip.reason.as_str(),
            "time": flip.at,
            "last_ping": last_ping(tx, row.id).await?,
        });
        sqlx::query(
            "INSERT INTO alerts (id, flip_id, check_id, url, payload, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(alert_id)
        .bind(flip_id)
        .bind(row.id)
        .bind(url)
        .bind(&payload)
        .bind(now)
        .execute(&mut **tx)
        .await
        .context("recording an alert")?;

        let job = json!({ "alert_id": alert_id });
        platform::queue::enqueue(&mut **tx, ALERT_QUEUE, &job, now, ALERT_ATTEMPTS, now)
            .await
            .context("enqueueing an alert")?;
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct LastPing {
    created_at: DateTime<Utc>,
    kind: String,
    exit_status: Option<i16>,
    body: Option<Vec<u8>>,
}

/// The last success or fail, as an alert shows it.
async fn last_ping(tx: &mut PgConnection, check: Uuid) -> anyhow::Result<Value> {
    let row: Option<LastPing> = sqlx::query_as(
        "SELECT created_at, kind, exit_status, body FROM pings
         WHERE check_id = $1 AND kind <> 'log' ORDER BY n DESC LIMIT 1",
    )
    .bind(check)
    .fetch_optional(tx)
    .await
    .context("reading the last ping")?;

    Ok(match row {
        None => Value::Null,
        Some(LastPing {
            created_at,
            kind,
            exit_status,
            body,
        }) => {
            let body: String = body
                .map(|b| {
                    String::from_utf8_lossy(&b)
                        .chars()
                        .take(ALERT_BODY_CHARS)
                        .collect()
                })
                .unwrap_or_default();
            json!({ "time": created_at, "kind": kind, "exit_status": exit_status, "body": body })
        }
    })
}
