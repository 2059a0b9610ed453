//! The shared HTTP frame, served on a real socket against a real database.

use std::time::Duration;

use axum::Router;
use platform::testing::TestDb;
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

struct TestApp {
    base: String,
    client: reqwest::Client,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    async fn spawn(db: &TestDb, routes: Router) -> anyhow::Result<Self> {
        let pool = platform::db::DbConfig::from_options(db.options.clone()).connect_lazy();
        let app = platform::http::app("demo", routes, pool);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);

        let shutdown = CancellationToken::new();
        let stop = shutdown.clone().cancelled_owned();
        let server = tokio::spawn(platform::shutdown::serve(
            listener,
            app,
            stop,
            Duration::from_secs(5),
        ));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            base,
            client,
            shutdown,
            server,
        })
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request sent")
    }
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_millis(500)).await;
    "done"
}

#[tokio::test]
async fn health_request_ids_errors_and_draining() -> anyhow::Result<()> {
    let db = TestDb::start().await?;
    let routes = Router::new().route("/slow", axum::routing::get(slow));
    let app = TestApp::spawn(&db, routes).await?;

    let health = app.get("/healthz").await;
    assert_eq!(health.status(), StatusCode::OK);
    let generated = health.headers()["x-request-id"].to_str()?.to_owned();
    assert_eq!(uuid::Uuid::parse_str(&generated)?.get_version_num(), 4);

    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);

    // A caller's well-formed id is kept; a malformed one is replaced.
    let kept = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "abc-123");
    assert_eq!(kept.send().await?.headers()["x-request-id"], "abc-123");
    let replaced = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "a b");
    assert_ne!(replaced.send().await?.headers()["x-request-id"], "a b");

    let missing = app.get("/nope").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = missing.json().await?;
    assert_eq!(body["error"]["code"], "not_found");

    let wrong_method = app
        .client
        .delete(format!("{}/healthz", app.base))
        .send()
        .await?;
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);

    // A request in flight when shutdown begins still completes.
    let in_flight = tokio::spawn(app.client.get(format!("{}/slow", app.base)).send());
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.shutdown.cancel();
    let response = in_flight.await??;
    assert_eq!(response.text().await?, "done");
    app.server.await??;

    // Readiness follows the database: a fresh app against a stopped database is unready.
    db.stop()?;
    let app = TestApp::spawn(&db, Router::new()).await?;
    let unready = app.get("/readyz").await;
    assert_eq!(unready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = unready.json().await?;
    assert_eq!(body["error"]["message"], "database unreachable");
    assert_eq!(
        app.get("/healthz").await.status(),
        StatusCode::OK,
        "liveness needs no database"
    );
    Ok(())
}
