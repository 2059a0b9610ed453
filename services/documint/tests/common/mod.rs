//! The service-test harness: DocuMint's web tier on port 0 against a throwaway PostgreSQL,
//! the real `documint-render` binary, a clock the test sets, and PDF reading.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use documint::{App, Clock, Config, RenderLimits, Renderer};
use platform::Product as _;
use platform::testing::TestDb;
use reqwest::Method;
use secrecy::SecretString;
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub const API_KEY: &str = "test-api-key-0123456789";

/// The renderer binary of this build profile, built first if it is missing or older than
/// its sources (`cargo nextest run -p documint` alone does not build another package's
/// binaries). `DOCUMINT_RENDER_BIN` names another one.
pub fn renderer_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Ok(path) = std::env::var("DOCUMINT_RENDER_BIN") {
                return PathBuf::from(path);
            }
            // target/<profile>/deps/<test> → target/<profile>/documint-render
            let exe = std::env::current_exe().unwrap();
            let binary = exe
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .join("documint-render");
            if is_stale(&binary) {
                let mut cargo = std::process::Command::new(env!("CARGO"));
                cargo.current_dir(env!("CARGO_MANIFEST_DIR")).args([
                    "build",
                    "--locked",
                    "-p",
                    "documint-render",
                ]);
                if !cfg!(debug_assertions) {
                    cargo.arg("--release");
                }
                let status = cargo.status().unwrap();
                assert!(status.success(), "building documint-render failed");
            }
            binary
        })
        .clone()
}

fn newest(dir: &Path) -> SystemTime {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                newest(&e.path())
            } else {
                meta.modified().unwrap()
            }
        })
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn is_stale(binary: &Path) -> bool {
    let Ok(built) = binary.metadata().and_then(|m| m.modified()) else {
        return true;
    };
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../documint-render");
    newest(&crate_dir) > built
}

/// Limits for tests: generous wall time, since debug builds of typst are about 16 times
/// slower than release; tests about the limits set their own.
pub fn limits() -> RenderLimits {
    RenderLimits {
        binary: renderer_binary(),
        memory_mib: 1024,
        cpu_secs: 120,
        wall: Duration::from_secs(120),
        max_pages: 500,
        font_dir: None,
    }
}

pub fn renderer(limits: RenderLimits) -> Renderer {
    Renderer::new(limits, 2)
}

pub fn builtin_source(name: &str) -> &'static str {
    documint::builtin::ALL
        .iter()
        .find(|b| b.name == name)
        .unwrap()
        .source
}

/// A parsed PDF: its pages' text.
pub struct Pdf {
    pub pages: Vec<String>,
}

impl Pdf {
    pub fn parse(bytes: &[u8]) -> Self {
        assert!(bytes.starts_with(b"%PDF-"), "not a PDF");
        let doc = lopdf::Document::load_mem(bytes).unwrap();
        let numbers: Vec<u32> = doc.get_pages().keys().copied().collect();
        let pages = numbers
            .iter()
            .map(|n| doc.extract_text(&[*n]).unwrap_or_default())
            .collect();
        Self { pages }
    }

    pub fn text(&self) -> String {
        self.pages.join("\n")
    }

    /// The text with all whitespace removed (extraction splits lines and words freely).
    pub fn squeezed(&self) -> String {
        squeeze(&self.text())
    }
}

pub fn squeeze(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    pub config: Config,
    pub renderer: Renderer,
    now: Arc<Mutex<DateTime<Utc>>>,
    shutdown: CancellationToken,
    pub db: TestDb,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let (db, pool) = TestDb::start_migrated(documint::DocuMint::migrator())
            .await
            .expect("migrated test database");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());

        let now = Arc::new(Mutex::new(
            DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        ));
        let read = now.clone();
        let mut config = Config::new(limits());
        config.api_key = Some(SecretString::from(API_KEY));
        config.render_concurrency = 2;
        config.poll_every = Duration::from_millis(50);
        config.clock = Clock::new(move || *read.lock().unwrap());
        adjust(&mut config);

        let routes = documint::router(App::new(config.clone(), pool.clone()));
        let app = platform::http::app("documint", routes, pool.clone());
        let shutdown = CancellationToken::new();
        tokio::spawn(platform::shutdown::serve(
            listener,
            app,
            shutdown.clone().cancelled_owned(),
            Duration::from_secs(2),
        ));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let renderer = Renderer::new(config.render.clone(), config.render_concurrency);
        Self {
            base,
            client,
            pool,
            config,
            renderer,
            now,
            shutdown,
            db,
        }
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap();
        *now += chrono::Duration::from_std(by).unwrap();
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let resp = req.send().await.expect("request sent");
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}/api/v1{path}", self.base))
            .header("x-api-key", API_KEY)
    }

    pub async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.request(method, path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        self.send(req).await
    }

    /// Renders queued documents until none is left.
    pub async fn work(&self) {
        while documint::worker::run_one(&self.config, &self.pool, &self.renderer)
            .await
            .unwrap()
        {}
    }

    pub async fn document(&self, id: &str) -> Value {
        let (status, body) = self
            .api(Method::GET, &format!("/documents/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn pdf(&self, id: &str) -> Vec<u8> {
        let resp = self
            .request(Method::GET, &format!("/documents/{id}/pdf"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        resp.bytes().await.unwrap().to_vec()
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
