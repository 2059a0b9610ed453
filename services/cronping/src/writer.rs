//! Group commit for pings: handlers hand their ping to a writer task and wait; the writer
//! takes every ping waiting for it and records them in one transaction, then answers each.
//!
//! Why: a check pinged by many clients at once is one row, and one transaction per ping
//! would wait for every previous commit in turn. One transaction for a batch pays one
//! commit for all of them, and every ping is still acknowledged only after that commit.
//! Pings are spread over writers by check, so one check's pings are applied in arrival
//! order by one writer, and two writers never wait on each other's row locks.

use std::collections::HashMap;
use std::hash::{BuildHasher as _, RandomState};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::status::{self, Flip, PingKind};
use crate::store::{self, COLUMNS, CheckRow};

/// Most pings in one transaction: bounds the transaction's size and its statements'.
const MAX_BATCH: usize = 256;
/// Pings waiting per writer before handlers wait to hand theirs over: a bounded queue, so
/// a stalled database slows clients down instead of growing memory without end.
const QUEUE: usize = 4096;

/// A ping as received, validated, stamped with its arrival time.
#[derive(Debug)]
pub struct Incoming {
    pub ping_uuid: Uuid,
    pub kind: PingKind,
    pub exit_status: Option<i16>,
    pub rid: Option<Uuid>,
    pub method: String,
    pub user_agent: Option<String>,
    pub remote_addr: Option<String>,
    pub body: Option<Vec<u8>>,
    pub body_size: i32,
    pub body_truncated: bool,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Recorded,
    UnknownCheck,
    /// The check exists but its stored row cannot be evaluated; logged by the writer.
    Unreadable,
}

struct Pending {
    ping: Incoming,
    reply: oneshot::Sender<Result<Outcome, ()>>,
}

#[derive(Clone, Debug)]
pub struct Writers {
    shards: Vec<mpsc::Sender<Pending>>,
    hasher: RandomState,
}

impl Writers {
    /// Starts `count` writer tasks; they end when the last `Writers` clone is dropped.
    pub fn spawn(pool: &PgPool, count: usize, keep: i64) -> Self {
        let shards = (0..count.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(run(pool.clone(), rx, keep));
                tx
            })
            .collect();
        Self {
            shards,
            hasher: RandomState::new(),
        }
    }

    /// Records the ping; returns once it is committed (or known to be for no check).
    pub async fn submit(&self, ping: Incoming) -> anyhow::Result<Outcome> {
        let shard =
            usize::try_from(self.hasher.hash_one(ping.ping_uuid)).unwrap_or(0) % self.shards.len();
        let (reply, answer) = oneshot::channel();
        self.shards[shard]
            .send(Pending { ping, reply })
            .await
            .map_err(|_| anyhow::anyhow!("ping writer stopped"))?;
        match answer.await {
            Ok(Ok(outcome)) => Ok(outcome),
            // The writer logged the cause once for its whole batch.
            Ok(Err(())) => anyhow::bail!("recording the ping failed"),
            Err(_) => anyhow::bail!("ping writer stopped"),
        }
    }
}

async fn run(pool: PgPool, mut rx: mpsc::Receiver<Pending>, keep: i64) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let pings: Vec<&Incoming> = batch.iter().map(|p| &p.ping).collect();
        let result = commit(&pool, &pings, keep).await;
        if let Err(e) = &result {
            tracing::error!(
                error = format!("{e:#}"),
                pings = batch.len(),
                "recording pings failed"
            );
        }
        for (i, pending) in batch.drain(..).enumerate() {
            let answer = match &result {
                Ok(outcomes) => Ok(outcomes[i]),
                Err(_) => Err(()),
            };
            // A client that hung up does not care; its ping is recorded all the same.
            let _ = pending.reply.send(answer);
        }
    }
}

/// One check's part of a batch.
struct Touched {
    row: CheckRow,
    check: status::Check,
    n: i64,
    duration_ms: Option<i64>,
    flips: Vec<Flip>,
    last_at: DateTime<Utc>,
}

/// The columns of the pings to insert, one vector per column for `UNNEST`.
#[derive(Default)]
struct Columns {
    check_id: Vec<Uuid>,
    n: Vec<i64>,
    at: Vec<DateTime<Utc>>,
    kind: Vec<&'static str>,
    exit_status: Vec<Option<i16>>,
    rid: Vec<Option<Uuid>>,
    method: Vec<String>,
    user_agent: Vec<Option<String>>,
    remote_addr: Vec<Option<String>>,
    body: Vec<Option<Vec<u8>>>,
    body_size: Vec<i32>,
    body_truncated: Vec<bool>,
    duration_ms: Vec<Option<i64>>,
}

async fn commit(pool: &PgPool, pings: &[&Incoming], keep: i64) -> anyhow::Result<Vec<Outcome>> {
    let mut uuids: Vec<Uuid> = pings.iter().map(|p| p.ping_uuid).collect();
    uuids.sort_unstable();
    uuids.dedup();

    let mut tx = pool.begin().await?;
    // Locked in id order, so batches and other lockers of several rows cannot deadlock.
    let rows: Vec<CheckRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM checks WHERE ping_uuid = ANY($1) ORDER BY id FOR UPDATE"
    ))
    .bind(&uuids)
    .fetch_all(&mut *tx)
    .await
    .context("locking the pinged checks")?;

    let mut touched: HashMap<Uuid, Touched> = HashMap::with_capacity(rows.len());
    let mut unreadable: Vec<Uuid> = Vec::new();
    for row in rows {
        // A row the engine cannot read (a hand edit, or a stricter parser after an upgrade)
        // fails its own pings, not the whole batch.
        let check = match row.engine() {
            Ok(check) => check,
            Err(e) => {
                tracing::error!(check = %row.id, error = format!("{e:#}"), "unreadable check");
                unreadable.push(row.ping_uuid);
                continue;
            }
        };
        touched.insert(
            row.ping_uuid,
            Touched {
                n: row.n_pings,
                row,
                check,
                duration_ms: None,
                flips: Vec::new(),
                last_at: DateTime::<Utc>::MIN_UTC,
            },
        );
    }

    let mut cols = Columns::default();
    let mut outcomes = Vec::with_capacity(pings.len());
    for ping in pings {
        let Some(t) = touched.get_mut(&ping.ping_uuid) else {
            outcomes.push(if unreadable.contains(&ping.ping_uuid) {
                Outcome::Unreadable
            } else {
                Outcome::UnknownCheck
            });
            continue;
        };
        let result = t.check.ping(ping.kind, ping.rid, ping.at);
        let duration_ms = result.duration.map(|d| d.num_milliseconds());
        t.n += 1;
        t.duration_ms = duration_ms.or(t.duration_ms);
        t.flips.extend(result.flips);
        t.last_at = ping.at;

        cols.check_id.push(t.row.id);
        cols.n.push(t.n);
        cols.at.push(ping.at);
        cols.kind.push(ping.kind.as_str());
        cols.exit_status.push(ping.exit_status);
        cols.rid.push(ping.rid);
        cols.method.push(ping.method.clone());
        cols.user_agent.push(ping.user_agent.clone());
        cols.remote_addr.push(ping.remote_addr.clone());
        cols.body.push(ping.body.clone());
        cols.body_size.push(ping.body_size);
        cols.body_truncated.push(ping.body_truncated);
        cols.duration_ms.push(duration_ms);
        outcomes.push(Outcome::Recorded);
    }
    if cols.check_id.is_empty() {
        return Ok(outcomes);
    }

    sqlx::query(
        "INSERT INTO pings (check_id, n, created_at, kind, exit_status, rid, method, user_agent,
             remote_addr, body, body_size, body_truncated, duration_ms)
         SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::timestamptz[], $4::text[],
             $5::smallint[], $6::uuid[], $7::text[], $8::text[], $9::text[], $10::bytea[],
             $11::integer[], $12::boolean[], $13::bigint[])",
    )
    .bind(&cols.check_id)
    .bind(&cols.n)
    .bind(&cols.at)
    .bind(&cols.kind)
    .bind(&cols.exit_status)
    .bind(&cols.rid)
    .bind(&cols.method)
    .bind(&cols.user_agent)
    .bind(&cols.remote_addr)
    .bind(&cols.body)
    .bind(&cols.body_size)
    .bind(&cols.body_truncated)
    .bind(&cols.duration_ms)
    .execute(&mut *tx)
    .await
    .context("inserting pings")?;

    let touched: Vec<Touched> = touched
        .into_values()
        .filter(|t| t.n > t.row.n_pings)
        .collect();

    // Only the pings that fell out of each check's window: ranges of the primary key.
    let ids: Vec<Uuid> = touched.iter().map(|t| t.row.id).collect();
    let upto: Vec<i64> = touched.iter().map(|t| t.n - keep).collect();
    sqlx::query(
        "DELETE FROM pings p USING UNNEST($1::uuid[], $2::bigint[]) AS x(id, upto)
         WHERE p.check_id = x.id AND p.n <= x.upto",
    )
    .bind(&ids)
    .bind(&upto)
    .execute(&mut *tx)
    .await
    .context("pruning pings")?;

    let status: Vec<&str> = touched
        .iter()
        .map(|t| t.check.state.status.as_str())
        .collect();
    let last_ping: Vec<_> = touched.iter().map(|t| t.check.state.last_ping).collect();
    let last_start: Vec<_> = touched.iter().map(|t| t.check.state.last_start).collect();
    let rid: Vec<_> = touched
        .iter()
        .map(|t| t.check.state.last_start_rid)
        .collect();
    let deadline: Vec<_> = touched.iter().map(|t| t.check.deadline()).collect();
    let n: Vec<i64> = touched.iter().map(|t| t.n).collect();
    let duration: Vec<Option<i64>> = touched.iter().map(|t| t.duration_ms).collect();
    let at: Vec<DateTime<Utc>> = touched.iter().map(|t| t.last_at).collect();
    sqlx::query(
        "UPDATE checks c SET status = x.status, last_ping = x.last_ping,
             last_start = x.last_start, last_start_rid = x.rid, deadline = x.deadline,
             n_pings = x.n, last_duration_ms = COALESCE(x.duration, c.last_duration_ms),
             updated_at = x.at
         FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::uuid[],
             $6::timestamptz[], $7::bigint[], $8::bigint[], $9::timestamptz[])
             AS x(id, status, last_ping, last_start, rid, deadline, n, duration, at)
         WHERE c.id = x.id",
    )
    .bind(&ids)
    .bind(&status)
    .bind(&last_ping)
    .bind(&last_start)
    .bind(&rid)
    .bind(&deadline)
    .bind(&n)
    .bind(&duration)
    .bind(&at)
    .execute(&mut *tx)
    .await
    .context("updating checks")?;

    for t in touched.iter().filter(|t| !t.flips.is_empty()) {
        store::record_flips(&mut tx, &t.row, &t.flips, t.last_at).await?;
    }
    tx.commit().await.context("committing pings")?;
    Ok(outcomes)
}
