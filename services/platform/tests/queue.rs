//! The job queue against a real PostgreSQL, with time passed in.

use std::time::Duration;

use chrono::{TimeZone as _, Utc};
use platform::queue::{self, Failure};
use platform::testing::TestDb;
use serde_json::json;
use sqlx::migrate::Migrator;

static NONE: Migrator = sqlx::migrate!("./tests/no_migrations");

fn t(secs: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
}

const LEASE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn jobs_are_claimed_once_leased_retried_and_kept_when_dead() -> anyhow::Result<()> {
    let (_db, pool) = TestDb::start_migrated(&NONE).await?;

    let first = queue::enqueue(&pool, "render", &json!({"n": 1}), t(0), 2, t(0)).await?;
    let later = queue::enqueue(&pool, "render", &json!({"n": 2}), t(100), 2, t(0)).await?;
    queue::enqueue(&pool, "other", &json!({}), t(0), 2, t(0)).await?;

    // Only due jobs of the asked queue are claimed, oldest first, each by one claimer.
    let job = queue::claim(&pool, "render", LEASE, t(1))
        .await?
        .expect("a due job");
    assert_eq!(
        (job.id, job.attempt, job.payload.clone()),
        (first, 1, json!({"n": 1}))
    );
    assert!(
        queue::claim(&pool, "render", LEASE, t(1)).await?.is_none(),
        "leased or not due"
    );

    // A lease that runs out (the worker died) makes the job claimable again.
    let again = queue::claim(&pool, "render", LEASE, t(31))
        .await?
        .expect("lease expired");
    assert_eq!((again.id, again.attempt), (first, 2));

    // The last attempt failing keeps the job, marked failed, out of the queue.
    let outcome = queue::fail(&pool, &again, "boom", true, Duration::from_secs(5), t(32)).await?;
    assert_eq!(outcome, Failure::Dead);
    let (failed_at, error): (Option<chrono::DateTime<Utc>>, Option<String>) =
        sqlx::query_as("SELECT failed_at, last_error FROM jobs WHERE id = $1")
            .bind(first)
            .fetch_one(&pool)
            .await?;
    assert_eq!((failed_at, error.as_deref()), (Some(t(32)), Some("boom")));

    // A retryable failure with attempts left is due again after the backoff, not before.
    let job = queue::claim(&pool, "render", LEASE, t(100))
        .await?
        .expect("later job due");
    assert_eq!(job.id, later);
    let outcome = queue::fail(&pool, &job, "flaky", true, Duration::from_secs(10), t(101)).await?;
    assert_eq!(outcome, Failure::Retry(t(111)));
    assert!(
        queue::claim(&pool, "render", LEASE, t(110))
            .await?
            .is_none()
    );
    let job = queue::claim(&pool, "render", LEASE, t(111))
        .await?
        .expect("due after backoff");
    queue::complete(&pool, &job).await?;

    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE queue = 'render'")
        .fetch_one(&pool)
        .await?;
    assert_eq!(left, 1, "only the dead job stays");
    Ok(())
}

#[tokio::test]
async fn concurrent_claimers_never_take_the_same_job() -> anyhow::Result<()> {
    let (_db, pool) = TestDb::start_migrated(&NONE).await?;

    for n in 0..20 {
        queue::enqueue(&pool, "q", &json!({ "n": n }), t(0), 1, t(0)).await?;
    }

    let claimers = (0..4).map(|_| {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(job) = queue::claim(&pool, "q", LEASE, t(1)).await? {
                mine.push(job.id);
            }
            anyhow::Ok(mine)
        })
    });
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await??);
    }
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!((before, all.len()), (20, 20));
    Ok(())
}
