//! The queries that must not scan: the sweep reads overdue checks through the deadline
//! index, and pruning deletes a range of one check's pings through the primary key.

#![allow(clippy::unwrap_used)]

mod common;

use common::{TestApp, utc};

async fn plan(app: &TestApp, sql: &str) -> String {
    let rows: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {sql}"))
        .fetch_all(&app.pool)
        .await
        .unwrap();
    rows.join("\n")
}

#[tokio::test]
async fn sweep_and_pruning_use_indexes_not_scans() {
    let app = TestApp::spawn().await;
    // 20,000 checks, 5 of them due by 10:00; 100 pings for each of 200 checks.
    sqlx::query(
        "INSERT INTO checks (id, ping_uuid, name, timeout_secs, grace_secs, status, last_ping,
             deadline, created_at, updated_at)
         SELECT gen_random_uuid(), gen_random_uuid(), 'c' || i, 60, 60, 'up',
             d - interval '2 minutes', d, now(), now()
         FROM generate_series(1, 20000) AS i,
             LATERAL (SELECT $1 + (i - 5) * interval '1 minute' AS d) AS due",
    )
    .bind(utc("2025-05-01T10:00:00Z"))
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO pings (check_id, n, created_at, kind, method)
         SELECT c.id, n, now(), 'success', 'GET'
         FROM (SELECT id FROM checks LIMIT 200) c, generate_series(1, 100) AS n",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(&app.pool).await.unwrap();

    let sweep = cronping::worker::sweep_sql()
        .replace("$1", "'2025-05-01T10:00:00Z'")
        .replace("$2", "100");
    let sweep_plan = plan(&app, &sweep).await;
    assert!(sweep_plan.contains("checks_deadline"), "{sweep_plan}");
    assert!(!sweep_plan.contains("Seq Scan"), "{sweep_plan}");

    let prune = "DELETE FROM pings WHERE check_id = (SELECT id FROM checks LIMIT 1) AND n <= 3";
    let prune_plan = plan(&app, prune).await;
    assert!(prune_plan.contains("pings_pkey"), "{prune_plan}");

    let down = cronping::worker::sweep(&app.pool, utc("2025-05-01T10:00:00Z"))
        .await
        .unwrap();
    assert_eq!(down, 5, "exactly the checks whose deadline has come");
}
