//! The service-test harness: FlagBit's web tier on port 0 against a throwaway PostgreSQL,
//! with a clock the test sets and the snapshot's reloads observable.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use flagbit::{Clock, Config, Snapshots, Usage};
use platform::Product as _;
use platform::testing::TestDb;
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub const ADMIN_KEY: &str = "admin-key-0123456789abcdef";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    pub snapshots: Snapshots,
    pub usage: Usage,
    now: Arc<Mutex<DateTime<Utc>>>,
    shutdown: CancellationToken,
    pub db: TestDb,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let (db, pool) = TestDb::start_migrated(flagbit::FlagBit::migrator())
            .await
            .expect("migrated test database");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());

        let now = Arc::new(Mutex::new(
            DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        ));
        let read = now.clone();
        let mut config = Config {
            admin_key: Some(SecretString::from(ADMIN_KEY)),
            // Long enough that only a change notification can reload within a test.
            refresh_every: Duration::from_secs(3600),
            // The tests flush and roll up themselves.
            usage_flush_every: Duration::from_secs(3600),
            rollup_every: Duration::from_secs(3600),
            clock: Clock::new(move || *read.lock().unwrap()),
            receipts: None,
        };
        adjust(&mut config);
        let (routes, handles) = flagbit::router(config, pool.clone());
        let (snapshots, usage) = (handles.snapshots, handles.usage);
        let app = platform::http::app("flagbit", routes, pool.clone());
        let shutdown = CancellationToken::new();
        tokio::spawn(platform::shutdown::serve(
            listener,
            app,
            shutdown.clone().cancelled_owned(),
            Duration::from_secs(2),
        ));
        // The listener is subscribed before the first load, so from here on no change is
        // missed.
        tokio::time::timeout(Duration::from_secs(10), snapshots.wait_past(0))
            .await
            .expect("first snapshot within 10 s");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Self {
            base,
            client,
            pool,
            snapshots,
            usage,
            now,
            shutdown,
            db,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap()
    }

    /// A clock reading the time this test sets, for parts run beside the web tier.
    pub fn clock(&self) -> Clock {
        let now = self.now.clone();
        Clock::new(move || *now.lock().unwrap())
    }

    pub fn set_now(&self, at: &str) {
        *self.now.lock().unwrap() = DateTime::parse_from_rfc3339(at)
            .unwrap()
            .with_timezone(&Utc);
    }

    pub fn generation(&self) -> u64 {
        self.snapshots.get().map_or(0, |s| s.generation)
    }

    /// Waits (at most `limit`) for the snapshot to reload after `generation`.
    pub async fn reloaded_after(&self, generation: u64, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.snapshots.wait_past(generation))
            .await
            .is_ok()
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let resp = req.send().await.expect("request sent");
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A management call; `key` None sends no key.
    pub async fn api_as(
        &self,
        key: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}/api/v1{path}", self.base));
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        self.send(req).await
    }

    pub async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.api_as(Some(ADMIN_KEY), method, path, body).await
    }

    pub async fn create_env(&self, name: &str) {
        let (status, body) = self
            .api(Method::POST, "/environments", Some(json!({ "name": name })))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// A new SDK key for `env`, returned in clear.
    pub async fn sdk_key(&self, env: &str) -> String {
        let (status, body) = self
            .api(
                Method::POST,
                &format!("/environments/{env}/sdk-keys"),
                Some(json!({"name": "test"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["key"].as_str().unwrap().to_owned()
    }

    pub async fn put_flag(&self, env: &str, key: &str, def: Value) -> (StatusCode, Value) {
        self.api(
            Method::PUT,
            &format!("/environments/{env}/flags/{key}"),
            Some(def),
        )
        .await
    }

    /// One OFREP evaluation with `sdk_key` as `X-API-Key`; `body` None sends no body.
    pub async fn evaluate(
        &self,
        sdk_key: Option<&str>,
        flag: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .post(format!("{}/ofrep/v1/evaluate/flags/{flag}", self.base));
        if let Some(k) = sdk_key {
            req = req.header("x-api-key", k);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        self.send(req).await
    }

    /// Evaluates until `ok` holds of the answer, waiting for the snapshot's reloads in
    /// between; fails if that takes more than one second (the propagation promise).
    pub async fn evaluate_until(
        &self,
        sdk_key: &str,
        flag: &str,
        body: Value,
        ok: impl Fn(StatusCode, &Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            let generation = self.generation();
            let (status, answer) = self.evaluate(Some(sdk_key), flag, Some(body.clone())).await;
            if ok(status, &answer) {
                return answer;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                self.reloaded_after(generation, left).await,
                "{flag}: not as expected within 1 s; last answer {status} {answer}"
            );
        }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn bool_flag(default: &str) -> Value {
    json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": default})
}
