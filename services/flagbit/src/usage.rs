//! Evaluation counts per environment, flag and variant: counted in memory on the hot path,
//! appended to `usage_counts` in one statement per flush, and folded into hourly rows by
//! the worker ([`rollup`]).
//!
//! Only flags that exist are counted, so the counters are bounded by the flags stored, not
//! by what callers ask for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::Clock;

/// environment → flag → variant ('' for none) → count.
type Counts = HashMap<i64, HashMap<String, HashMap<String, i64>>>;

#[derive(Clone, Debug, Default)]
pub struct Usage {
    counts: Arc<Mutex<Counts>>,
}

impl Usage {
    pub fn count(&self, environment: i64, flag: &str, variant: Option<&str>) {
        let variant = variant.unwrap_or("");
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        // Look up by reference first: keys are allocated once per flag and variant.
        let flags = counts.entry(environment).or_default();
        let variants = match flags.get_mut(flag) {
            Some(v) => v,
            None => flags.entry(flag.to_owned()).or_default(),
        };
        match variants.get_mut(variant) {
            Some(n) => *n += 1,
            None => {
                variants.insert(variant.to_owned(), 1);
            }
        }
    }

    fn take(&self) -> Counts {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn put_back(&self, taken: Counts) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        for (env, flags) in taken {
            for (flag, variants) in flags {
                for (variant, n) in variants {
                    *counts
                        .entry(env)
                        .or_default()
                        .entry(flag.clone())
                        .or_default()
                        .entry(variant)
                        .or_default() += n;
                }
            }
        }
    }

    /// Appends what was counted since the last flush, stamped `now`. On failure the counts
    /// are kept for the next flush.
    pub async fn flush(&self, pool: &PgPool, now: DateTime<Utc>) -> anyhow::Result<usize> {
        let taken = self.take();
        let (mut envs, mut flags, mut variants, mut ns) = (vec![], vec![], vec![], vec![]);
        for (env, fl) in &taken {
            for (flag, vs) in fl {
                for (variant, n) in vs {
                    envs.push(*env);
                    flags.push(flag.clone());
                    variants.push(variant.clone());
                    ns.push(*n);
                }
            }
        }
        if envs.is_empty() {
            return Ok(0);
        }
        // An environment deleted meanwhile would fail the whole insert; the join drops it.
        let result = sqlx::query(
            "INSERT INTO usage_counts (environment_id, flag_key, variant, at, count) \
             SELECT u.e, u.f, u.v, $5, u.n \
             FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[]) AS u(e, f, v, n) \
             JOIN environments ON environments.id = u.e",
        )
        .bind(&envs)
        .bind(&flags)
        .bind(&variants)
        .bind(&ns)
        .bind(now)
        .execute(pool)
        .await;
        match result {
            Ok(_) => Ok(envs.len()),
            Err(e) => {
                self.put_back(taken);
                Err(e).context("appending usage counts")
            }
        }
    }

    /// Flushes every `every` until `stop`, then once more.
    ///
    /// Known shortcoming: on process shutdown nothing waits for that last flush (the task is
    /// detached from the server), so up to one interval of counts can be lost. Fixing it
    /// means giving `Product::routes` a shutdown hook the CLI awaits after draining.
    pub async fn flush_every(
        self,
        pool: PgPool,
        clock: Clock,
        every: Duration,
        stop: CancellationToken,
    ) {
        loop {
            let running = platform::worker::sleep_or_stop(every, &stop).await;
            if let Err(e) = self.flush(&pool, clock.now()).await {
                tracing::error!(error = format!("{e:#}"), "usage flush failed");
            }
            if !running {
                return;
            }
        }
    }
}

/// Folds every count from an hour that ended by `now` into `usage_hourly`. One statement,
/// so a count is moved exactly once even if two workers run it at the same time.
pub async fn rollup(pool: &PgPool, now: DateTime<Utc>) -> anyhow::Result<u64> {
    let done = sqlx::query(
        "WITH moved AS ( \
             DELETE FROM usage_counts WHERE at < date_trunc('hour', $1::timestamptz, 'UTC') \
             RETURNING environment_id, flag_key, variant, \
                 date_trunc('hour', at, 'UTC') AS hour, count) \
         INSERT INTO usage_hourly (environment_id, flag_key, variant, hour, count) \
         SELECT environment_id, flag_key, variant, hour, sum(count) FROM moved \
         GROUP BY environment_id, flag_key, variant, hour \
         ON CONFLICT (hour, environment_id, flag_key, variant) \
         DO UPDATE SET count = usage_hourly.count + excluded.count",
    )
    .bind(now)
    .execute(pool)
    .await
    .context("rolling up usage")?;
    Ok(done.rows_affected())
}

/// The worker's loop: a rollup every `every` until shutdown.
pub async fn run_rollups(
    pool: PgPool,
    clock: Clock,
    every: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        match rollup(&pool, clock.now()).await {
            Ok(0) => {}
            Ok(rows) => tracing::info!(rows, "usage rolled up"),
            // The counts stay where they are; the next round retries.
            Err(e) => tracing::error!(error = format!("{e:#}"), "usage rollup failed"),
        }
        if !platform::worker::sleep_or_stop(every, &shutdown).await {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_per_flag_and_variant_and_survive_a_failed_flush() {
        let u = Usage::default();
        u.count(1, "a", Some("on"));
        u.count(1, "a", Some("on"));
        u.count(1, "a", None);
        u.count(2, "a", Some("on"));
        let taken = u.take();
        assert_eq!(taken[&1]["a"]["on"], 2);
        assert_eq!(taken[&1]["a"][""], 1);
        assert_eq!(taken[&2]["a"]["on"], 1);
        u.count(1, "a", Some("on"));
        u.put_back(taken);
        assert_eq!(u.take()[&1]["a"]["on"], 3);
    }
}
