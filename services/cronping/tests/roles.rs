//! The three database roles of the Compose stack (compose/initdb/10-roles.sh): migrations
//! run as the owner, the web tier and the worker with row rights only. Every write path
//! runs here under the role that runs it in production.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use cronping::{Clock, Config};
use platform::Product as _;
use platform::testing::TestDb;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const ROLES: &str = "
CREATE ROLE cp_migrate LOGIN PASSWORD 'pw';
CREATE ROLE cp_web LOGIN PASSWORD 'pw';
CREATE ROLE cp_worker LOGIN PASSWORD 'pw';
GRANT CONNECT ON DATABASE app TO cp_migrate, cp_web, cp_worker;
ALTER SCHEMA public OWNER TO cp_migrate;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO cp_web, cp_worker;
ALTER DEFAULT PRIVILEGES FOR ROLE cp_migrate IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO cp_web, cp_worker;
ALTER DEFAULT PRIVILEGES FOR ROLE cp_migrate IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO cp_web, cp_worker;
";

async fn pool_as(db: &TestDb, role: &str) -> PgPool {
    PgPool::connect_with(db.options.clone().username(role).password("pw"))
        .await
        .unwrap()
}

#[tokio::test]
async fn web_and_worker_need_no_more_than_row_rights() {
    let db = TestDb::start().await.unwrap();
    let admin = db.pool().await.unwrap();
    sqlx::raw_sql(ROLES).execute(&admin).await.unwrap();
    let migrate = pool_as(&db, "cp_migrate").await;
    platform::db::migrate(&migrate, cronping::CronPing::migrator())
        .await
        .unwrap();
    let (web, worker_pool) = (
        pool_as(&db, "cp_web").await,
        pool_as(&db, "cp_worker").await,
    );

    // The web role may not change the schema.
    let ddl = sqlx::query("DROP TABLE pings").execute(&web).await;
    assert!(ddl.is_err(), "web must not own the schema");

    let receiver = common::Receiver::start(&[]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let t0: DateTime<Utc> = common::utc("2025-05-01T10:00:00Z");
    let mut config = Config::new(base.clone());
    config.api_key = Some(SecretString::from(common::RW_KEY));
    config.alert_allow = vec!["127.0.0.1/32".parse().unwrap()];
    config.clock = Clock::new(move || t0);
    let app = platform::http::app(
        "cronping",
        cronping::router(config.clone(), web.clone()),
        web,
    );
    let stop = CancellationToken::new();
    tokio::spawn(platform::shutdown::serve(
        listener,
        app,
        stop.clone().cancelled_owned(),
        Duration::from_secs(2),
    ));

    let client = reqwest::Client::new();
    let check: Value = client
        .post(format!("{base}/api/v1/checks"))
        .header("x-api-key", common::RW_KEY)
        .json(&json!({"name": "job", "timeout": 60, "grace": 60, "webhook_url": receiver.url}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ping_url = check["ping_url"].as_str().unwrap();
    for suffix in ["", "/start", "/fail", "/log", "/0"] {
        let status = client
            .post(format!("{ping_url}{suffix}"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(status.status().as_u16(), 200, "{suffix}");
    }
    let id = check["id"].as_str().unwrap();
    for action in ["pause", "resume"] {
        let resp = client
            .post(format!("{base}/api/v1/checks/{id}/{action}"))
            .header("x-api-key", common::RW_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{action}");
    }
    client.get(ping_url).send().await.unwrap();

    // The worker: sweep, deliver, and the web tier lists what it recorded.
    let later = t0 + chrono::Duration::minutes(5);
    assert_eq!(
        cronping::worker::sweep(&worker_pool, later).await.unwrap(),
        1
    );
    let sender = cronping::worker::Sender::new(&config).unwrap();
    while cronping::worker::deliver_one(&worker_pool, &sender, later)
        .await
        .unwrap()
    {}
    // down (fail), up (0), down (sweep); new→up after resume does not alert.
    assert_eq!(receiver.bodies().len(), 3);

    let alerts: Value = client
        .get(format!("{base}/api/v1/checks/{id}/alerts"))
        .header("x-api-key", common::RW_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(alerts["alerts"].as_array().unwrap().len(), 3);
    let deleted = client
        .delete(format!("{base}/api/v1/checks/{id}"))
        .header("x-api-key", common::RW_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 200);
    stop.cancel();
}
