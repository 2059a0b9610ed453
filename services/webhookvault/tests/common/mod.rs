//! The service-test harness: WebhookVault's web tier on port 0 against a throwaway
//! PostgreSQL, a clock the test may pin, workers started and killed from the test, and
//! local webhook receivers on 127.0.0.1.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse as _;
use chrono::{DateTime, Utc};
use platform::Product as _;
use platform::testing::TestDb;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use webhookvault::{Clock, Config};

pub const ADMIN_KEY: &str = "admin-key-0123456789abcdef";

pub fn utc_secs(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

/// Waits until `check` holds, looking every 20 ms, for at most `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    pub config: Config,
    pinned: Arc<Mutex<Option<DateTime<Utc>>>>,
    shutdown: CancellationToken,
    pub db: TestDb,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let (db, pool) = TestDb::start_migrated(webhookvault::WebhookVault::migrator())
            .await
            .expect("migrated test database");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());

        // The system clock unless a test pins a time (signature vectors carry old ones).
        let pinned: Arc<Mutex<Option<DateTime<Utc>>>> = Arc::new(Mutex::new(None));
        let read = pinned.clone();
        let mut config = Config::new(base.clone());
        config.admin_key = Some(SecretString::from(ADMIN_KEY));
        config.clock = Clock::new(move || read.lock().unwrap().unwrap_or_else(Utc::now));
        // Short delays and leases, so retries and recovery happen within a test.
        config.retry_schedule = vec![Duration::from_millis(50); 3];
        config.jitter = 0.0;
        config.delivery_timeout = Duration::from_secs(2);
        config.lease = Duration::from_secs(3);
        config.poll_interval = Duration::from_millis(20);
        adjust(&mut config);

        let app = platform::http::app(
            "webhookvault",
            webhookvault::router(config.clone(), pool.clone()),
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
            pinned,
            shutdown,
            db,
        }
    }

    /// Pins the clock at `secs` (Unix seconds); `None` goes back to the system clock.
    pub fn pin(&self, secs: Option<i64>) {
        *self.pinned.lock().unwrap() = secs.map(utc_secs);
    }

    /// Starts a worker with the app's configuration, adjusted.
    pub fn worker_with(&self, adjust: impl FnOnce(&mut Config)) -> Worker {
        let mut config = self.config.clone();
        adjust(&mut config);
        let token = CancellationToken::new();
        let task = tokio::spawn(webhookvault::worker::run(
            config,
            self.pool.clone(),
            token.clone(),
        ));
        Worker {
            token,
            task: Some(task),
        }
    }

    pub fn worker(&self) -> Worker {
        self.worker_with(|_| {})
    }

    /// An API call with the admin key; returns the status and the JSON body (Null if none).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}/api/v1{path}", self.base))
            .header("x-api-key", ADMIN_KEY);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request sent");
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.api(reqwest::Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    pub async fn source(&self, scheme: &str, secret: Option<&str>, on_bad: &str) -> Value {
        let mut body = json!({"name": "test source", "scheme": scheme, "on_bad_signature": on_bad});
        if let Some(secret) = secret {
            body["secret"] = json!(secret);
        }
        let (status, source) = self
            .api(reqwest::Method::POST, "/sources", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{source}");
        source
    }

    /// A source without verification.
    pub async fn open_source(&self) -> Value {
        self.source("none", None, "reject").await
    }

    pub async fn destination(&self, source: &Value, body: Value) -> Value {
        let id = source["id"].as_str().unwrap();
        let (status, dest) = self
            .api(
                reqwest::Method::POST,
                &format!("/sources/{id}/destinations"),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{dest}");
        dest
    }

    /// Sends a request to the source's ingest URL; returns status and JSON answer.
    pub async fn ingest(
        &self,
        source: &Value,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .post(source["ingest_url"].as_str().unwrap())
            .body(body);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = req.send().await.expect("ingest sent");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }

    pub async fn stored_body(&self, event_id: &str) -> Vec<u8> {
        sqlx::query_scalar("SELECT body FROM events WHERE id = $1::uuid")
            .bind(event_id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// The states of an event's deliveries.
    pub async fn delivery_states(&self, event_id: &str) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT state FROM deliveries WHERE event_id = $1::uuid ORDER BY created_at, id",
        )
        .bind(event_id)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    /// Waits until every delivery of the event has left `pending`.
    pub async fn settled(&self, event_id: &str, limit: Duration) {
        wait_until(limit, "deliveries to settle", || async {
            let states = self.delivery_states(event_id).await;
            !states.is_empty() && states.iter().all(|s| s != "pending")
        })
        .await;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub struct Worker {
    pub token: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Worker {
    /// Stops it as SIGTERM would: in-flight deliveries finish.
    pub async fn stop(mut self) {
        self.token.cancel();
        self.task.take().unwrap().await.unwrap().unwrap();
    }

    /// Kills it mid-whatever, as SIGKILL would: nothing more is recorded.
    pub async fn kill(mut self) {
        let task = self.task.take().unwrap();
        task.abort();
        let _ = task.await;
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Got {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: std::time::Instant,
}

/// How a receiver answers.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

#[derive(Clone)]
pub struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    count: watch::Sender<usize>,
    answers: Arc<Mutex<VecDeque<Answer>>>,
    default: Arc<Mutex<Answer>>,
    /// While true, requests wait before answering.
    hold: watch::Sender<bool>,
    pub url: String,
    pub port: u16,
}

async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    r.got.lock().unwrap().push(Got {
        headers,
        body,
        at: std::time::Instant::now(),
    });
    r.count.send_modify(|c| *c += 1);
    let mut held = r.hold.subscribe();
    let _ = held.wait_for(|h| !*h).await;

    let answer = r
        .answers
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| r.default.lock().unwrap().clone());
    let mut response = (StatusCode::from_u16(answer.status).unwrap(), answer.body).into_response();
    for (name, value) in answer.headers {
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    response
}

impl Receiver {
    /// A receiver answering `default` to everything after the queued `answers`.
    pub async fn start(answers: Vec<Answer>, default: Answer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let receiver = Self {
            got: Arc::default(),
            count: watch::channel(0).0,
            answers: Arc::new(Mutex::new(answers.into())),
            default: Arc::new(Mutex::new(default)),
            hold: watch::channel(false).0,
            url: format!("http://127.0.0.1:{port}/hook"),
            port,
        };
        let app = Router::new()
            .route("/hook", axum::routing::any(receive))
            .route("/{*rest}", axum::routing::any(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    pub async fn ok() -> Self {
        Self::start(Vec::new(), Answer::status(200)).await
    }

    pub fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        *self.count.borrow()
    }

    /// Waits until at least `n` requests have arrived.
    pub async fn wait_for(&self, n: usize, limit: Duration) {
        let mut rx = self.count.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("receiver got {} of {n} requests", self.count()))
            .unwrap();
    }

    pub fn hold(&self, on: bool) {
        self.hold.send_replace(on);
    }

    pub fn answer_with(&self, answer: Answer) {
        *self.default.lock().unwrap() = answer;
    }
}
