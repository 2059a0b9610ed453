//! The service-test harness: CronPing's web tier on port 0 against a throwaway PostgreSQL,
//! with a clock the test sets, the worker stepped from the test, and a local webhook
//! receiver on 127.0.0.1.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use cronping::{Clock, Config};
use platform::Product as _;
use platform::testing::TestDb;
use secrecy::SecretString;
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub const RW_KEY: &str = "rw-key-0123456789abcdef";
pub const RO_KEY: &str = "ro-key-0123456789abcdef";

pub fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("test time parses")
        .with_timezone(&Utc)
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    pub config: Config,
    now: Arc<Mutex<DateTime<Utc>>>,
    shutdown: CancellationToken,
    pub db: TestDb,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let (db, pool) = TestDb::start_migrated(cronping::CronPing::migrator())
            .await
            .expect("migrated test database");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());

        let now = Arc::new(Mutex::new(utc("2025-05-01T00:00:00Z")));
        let read = now.clone();
        let mut config = Config::new(base.clone());
        config.api_key = Some(SecretString::from(RW_KEY));
        config.read_key = Some(SecretString::from(RO_KEY));
        config.clock = Clock::new(move || *read.lock().unwrap());
        adjust(&mut config);

        let app = platform::http::app(
            "cronping",
            cronping::router(config.clone(), pool.clone()),
            pool.clone(),
        );
        let shutdown = CancellationToken::new();
        tokio::spawn(platform::shutdown::serve(
            listener,
            app,
            shutdown.clone().cancelled_owned(),
            Duration::from_secs(2),
        ));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Self {
            base,
            client,
            pool,
            config,
            now,
            shutdown,
            db,
        }
    }

    pub fn set_now(&self, at: &str) {
        *self.now.lock().unwrap() = utc(at);
    }

    pub fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap()
    }

    /// An API call with a key; returns the status and the JSON body (Null when none).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
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
        let resp = req.send().await.expect("request sent");
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self
            .api(reqwest::Method::GET, path, Some(RW_KEY), None)
            .await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    pub async fn create(&self, body: Value) -> Value {
        let (status, check) = self
            .api(reqwest::Method::POST, "/checks", Some(RW_KEY), Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{check}");
        check
    }

    /// A ping by GET to `{ping_url}{suffix}`; returns status and body text.
    pub async fn ping(&self, check: &Value, suffix: &str) -> (u16, String) {
        let url = format!("{}{suffix}", check["ping_url"].as_str().unwrap());
        let resp = self.client.get(url).send().await.expect("ping sent");
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    pub async fn flips(&self, check: &Value) -> Vec<Value> {
        let id = check["id"].as_str().unwrap();
        self.get(&format!("/checks/{id}/flips")).await["flips"]
            .as_array()
            .unwrap()
            .clone()
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

/// A webhook receiver on 127.0.0.1: answers with the queued statuses (then 200) and keeps
/// every body it got.
#[derive(Clone, Default)]
pub struct Receiver {
    pub got: Arc<Mutex<Vec<Value>>>,
    answers: Arc<Mutex<VecDeque<StatusCode>>>,
    pub url: String,
}

async fn receive(State(r): State<Receiver>, body: axum::body::Bytes) -> axum::response::Response {
    use axum::response::IntoResponse as _;

    r.got
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
    let status = r
        .answers
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(StatusCode::OK);
    if status.is_redirection() {
        return (status, [("location", "http://127.0.0.1:1/elsewhere")]).into_response();
    }
    status.into_response()
}

impl Receiver {
    pub async fn start(answers: &[StatusCode]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut receiver = Self {
            answers: Arc::new(Mutex::new(answers.iter().copied().collect())),
            ..Self::default()
        };
        receiver.url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.got.lock().unwrap().clone()
    }
}
