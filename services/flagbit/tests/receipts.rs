//! Usage receipts: requested through the API or the schedule, rendered by a stand-in for
//! DocuMint's receipt route that checks the service token the way DocuMint does, and stored
//! once per period whatever DocuMint does in between.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use common::TestApp;
use flagbit::receipts::{Auth, Documint, ReceiptsConfig, Worker};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};
use service_token::{Key, Policy, Signer, Verifier};

const KEY: &str = "receipts-key-0123456789abcdef0123456789";

/// What the stand-in saw, and how it should answer.
#[derive(Default)]
struct Seen {
    bodies: Vec<Value>,
    authorizations: Vec<Option<String>>,
    refusals: Vec<String>,
    /// Answer 503 this many more times.
    fail: usize,
    /// Answer 422 (DocuMint refusing the request itself) every time.
    refuse: bool,
}

#[derive(Clone)]
struct Stand {
    seen: Arc<Mutex<Seen>>,
    verifier: Option<Arc<Verifier>>,
    clock: flagbit::Clock,
}

async fn receipt(State(stand): State<Stand>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let authorization = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    let mut seen = stand.seen.lock().unwrap();
    seen.authorizations.push(authorization.clone());

    if let Some(verifier) = &stand.verifier {
        let token = authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap_or("");
        let request = service_token::Request {
            method: "POST",
            path: "/internal/v1/receipts",
            body: &body,
        };
        let now = u64::try_from(stand.clock.now().timestamp()).unwrap();
        if let Err(refusal) = verifier.verify(token, &request, now) {
            seen.refusals.push(refusal.reason.to_string());
            return (StatusCode::UNAUTHORIZED, Vec::new()).into_response();
        }
    }

    if seen.refuse {
        let refusal = br#"{"error":{"code":"resource_limit","message":"too big"}}"#.to_vec();
        return (StatusCode::UNPROCESSABLE_ENTITY, refusal).into_response();
    }
    if seen.fail > 0 {
        seen.fail -= 1;
        return (StatusCode::SERVICE_UNAVAILABLE, b"down".to_vec()).into_response();
    }

    seen.bodies.push(serde_json::from_slice(&body).unwrap());
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.extend_from_slice(&body);
    ([("content-type", "application/pdf")], pdf).into_response()
}

async fn stand_in(
    verifier: Option<Verifier>,
    clock: flagbit::Clock,
) -> (reqwest::Url, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stand = Stand {
        seen: seen.clone(),
        verifier: verifier.map(Arc::new),
        clock,
    };
    let app = axum::Router::new()
        .route("/internal/v1/receipts", axum::routing::post(receipt))
        .with_state(stand);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/internal/v1/receipts",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url.parse().unwrap(), seen)
}

fn key() -> Key {
    Key::new("2026-12", SecretString::from(KEY.to_owned())).unwrap()
}

fn receipts_config(documint: Option<Documint>) -> ReceiptsConfig {
    ReceiptsConfig {
        documint,
        schedule: croner::parser::CronParser::new()
            .parse("0 2 1 * *")
            .unwrap(),
        poll_every: Duration::from_secs(1),
        retry_base: Duration::from_secs(30),
        retry_max: Duration::from_secs(3600),
    }
}

/// FlagBit with receipts on, and a worker calling the stand-in with `auth`.
async fn setup(auth: Auth, verify: bool) -> (TestApp, Worker, Arc<Mutex<Seen>>) {
    let verifier = verify.then(|| {
        Verifier::new(
            &[key()],
            Policy::new("documint").allow("flagbit", "receipt:create"),
        )
        .unwrap()
    });
    let config = receipts_config(None);
    let app = TestApp::spawn_with(move |c| c.receipts = Some(config)).await;
    app.set_now("2026-12-04T10:00:00Z");

    let (url, seen) = stand_in(verifier, app.clock()).await;
    let documint = Documint {
        url,
        auth,
        timeout: Duration::from_secs(10),
    };

    let worker = Worker {
        pool: app.pool.clone(),
        config: receipts_config(Some(documint.clone())),
        documint,
        client: reqwest::Client::new(),
        clock: app.clock(),
    };
    (app, worker, seen)
}

fn jwt() -> Auth {
    Auth::Jwt(Arc::new(Signer::new(&key(), "flagbit", 600).unwrap()))
}

/// Evaluation counts as the web tier and the rollup leave them: one folded hour, one
/// unfolded flush, and a count outside the period.
async fn seed_usage(app: &TestApp) {
    app.create_env("production").await;
    app.create_env("staging").await;
    let production: i64 = app
        .count("SELECT id FROM environments WHERE name = 'production'")
        .await;
    let staging: i64 = app
        .count("SELECT id FROM environments WHERE name = 'staging'")
        .await;

    sqlx::query(
        "INSERT INTO usage_hourly (environment_id, flag_key, variant, hour, count) VALUES
         ($1, 'new-checkout', 'on', '2026-11-03T10:00:00Z', 1000),
         ($1, 'new-checkout', 'off', '2026-11-03T10:00:00Z', 234),
         ($1, 'dark-mode', 'on', '2026-11-30T23:00:00Z', 7),
         ($2, 'new-checkout', 'on', '2026-11-15T00:00:00Z', 40),
         ($1, 'new-checkout', 'on', '2026-10-31T23:00:00Z', 99999)",
    )
    .bind(production)
    .bind(staging)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO usage_counts (environment_id, flag_key, variant, at, count)
         VALUES ($1, 'new-checkout', 'on', '2026-11-30T23:59:59Z', 6)",
    )
    .bind(production)
    .execute(&app.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn receipts_are_off_by_default() {
    let app = TestApp::spawn().await;

    let (status, body) = app.api(Method::POST, "/receipts", None).await;

    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "receipts_off");
}

#[tokio::test]
async fn a_requested_receipt_is_rendered_with_the_periods_totals_and_a_valid_token() {
    let (app, worker, seen) = setup(jwt(), true).await;
    seed_usage(&app).await;

    let (status, body) = app
        .api(
            Method::POST,
            "/receipts",
            Some(json!({"period": "2026-11"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "queued");
    let id = body["id"].as_i64().unwrap();

    // The scheduled period (2026-11 too, on 4 December) joins the same receipt.
    worker.tick().await.unwrap();

    {
        let seen = seen.lock().unwrap();
        assert!(seen.refusals.is_empty(), "{:?}", seen.refusals);
        assert_eq!(seen.bodies.len(), 1, "one call for one period");
        let data = &seen.bodies[0]["data"];
        assert_eq!(data["period"]["label"], "2026-11");
        assert_eq!(data["period"]["from"], "2026-11-01");
        assert_eq!(data["period"]["to"], "2026-11-30");
        assert_eq!(data["total_evaluations"], 1000 + 234 + 7 + 40 + 6);
        assert_eq!(data["environments"][0]["name"], "production");
        assert_eq!(data["environments"][0]["total"], 1000 + 234 + 7 + 6);
        assert_eq!(
            data["environments"][0]["flags"][1],
            json!({"key": "new-checkout", "evaluations": 1240})
        );
        assert_eq!(data["environments"][1]["total"], 40);
    }

    let (status, receipt) = app.api(Method::GET, &format!("/receipts/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(receipt["status"], "done");
    assert_eq!(receipt["total_evaluations"], 1287);
    assert_eq!(receipt["requested_by"], "api");

    let response = app
        .client
        .get(format!("{}/api/v1/receipts/{id}/pdf", app.base))
        .header("x-api-key", common::ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/pdf");
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"flagbit-usage-2026-11.pdf\""
    );
    let pdf = response.bytes().await.unwrap();
    assert!(pdf.starts_with(b"%PDF-"));

    // Asking again returns the stored receipt: no second one, no second call.
    let (status, again) = app
        .api(
            Method::POST,
            "/receipts",
            Some(json!({"period": "2026-11"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], id);
    assert_eq!(app.count("SELECT count(*) FROM receipts").await, 1);
}

#[tokio::test]
async fn an_outage_delays_the_receipt_with_backoff_and_never_doubles_it() {
    let (app, worker, seen) = setup(jwt(), true).await;
    seed_usage(&app).await;
    seen.lock().unwrap().fail = 2;

    worker.tick().await.unwrap();

    let (_, list) = app.api(Method::GET, "/receipts", None).await;
    let receipt = &list["receipts"][0];
    assert_eq!(receipt["status"], "queued");
    assert_eq!(receipt["attempts"], 1);
    assert!(
        receipt["last_error"].as_str().unwrap().contains("503"),
        "{receipt}"
    );
    assert_eq!(receipt["requested_by"], "schedule");

    // Not retried before its backoff (30 s, then 60 s)...
    worker.tick().await.unwrap();
    assert_eq!(app.count("SELECT attempts::bigint FROM receipts").await, 1);

    app.set_now("2026-12-04T10:00:31Z");
    worker.tick().await.unwrap();
    assert_eq!(app.count("SELECT attempts::bigint FROM receipts").await, 2);
    app.set_now("2026-12-04T10:01:30Z");
    worker.tick().await.unwrap();
    assert_eq!(
        app.count("SELECT attempts::bigint FROM receipts").await,
        2,
        "second backoff is 60 s"
    );

    app.set_now("2026-12-04T10:01:32Z");
    worker.tick().await.unwrap();

    assert_eq!(
        app.count("SELECT count(*) FROM receipts WHERE status = 'done'")
            .await,
        1
    );
    assert_eq!(app.count("SELECT count(*) FROM receipts").await, 1);
    assert_eq!(
        app.count("SELECT count(*) FROM jobs WHERE queue = 'receipt'")
            .await,
        0
    );
    assert_eq!(seen.lock().unwrap().bodies.len(), 1);
}

#[tokio::test]
async fn a_request_documint_refuses_is_failed_at_once_not_retried() {
    let (app, worker, seen) = setup(jwt(), true).await;
    seen.lock().unwrap().refuse = true;

    worker.tick().await.unwrap();

    let (_, list) = app.api(Method::GET, "/receipts", None).await;
    let receipt = &list["receipts"][0];
    assert_eq!(receipt["status"], "failed", "{receipt}");
    assert_eq!(receipt["attempts"], 1);
    assert!(
        receipt["last_error"].as_str().unwrap().contains("422"),
        "{receipt}"
    );

    // Asking again queues it again (once DocuMint accepts it, it is rendered).
    seen.lock().unwrap().refuse = false;
    let (status, again) = app
        .api(
            Method::POST,
            "/receipts",
            Some(json!({"period": "2026-11"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["id"], receipt["id"]);
    worker.tick().await.unwrap();
    assert_eq!(
        app.count("SELECT count(*) FROM receipts WHERE status = 'done'")
            .await,
        1
    );
}

#[tokio::test]
async fn the_schedule_asks_once_per_period_and_catches_up() {
    let (app, worker, _seen) = setup(jwt(), true).await;

    worker.tick().await.unwrap();
    worker.tick().await.unwrap();
    assert_eq!(app.count("SELECT count(*) FROM receipts").await, 1);
    // Asking again does not use up ids: the next period's receipt has the next one.
    let first: i64 = app.count("SELECT id FROM receipts").await;

    app.set_now("2027-01-01T02:00:00Z");
    worker.tick().await.unwrap();

    let (_, list) = app.api(Method::GET, "/receipts", None).await;
    let periods: Vec<&str> = list["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["period"].as_str().unwrap())
        .collect();
    assert_eq!(periods, ["2026-12", "2026-11"]);
    assert_eq!(list["receipts"][0]["id"], first + 1);
}

#[tokio::test]
async fn a_token_signed_with_a_key_documint_does_not_trust_is_refused_and_retried() {
    let wrong = Key::new(
        "2026-12",
        SecretString::from("another-key-0123456789abcdef012345".to_owned()),
    )
    .unwrap();
    let (app, worker, seen) = setup(
        Auth::Jwt(Arc::new(Signer::new(&wrong, "flagbit", 600).unwrap())),
        true,
    )
    .await;

    worker.tick().await.unwrap();

    assert_eq!(seen.lock().unwrap().refusals, ["bad_signature"]);
    assert_eq!(
        app.count("SELECT count(*) FROM receipts WHERE status = 'queued'")
            .await,
        1
    );
}

#[tokio::test]
async fn none_mode_sends_no_credentials() {
    let (app, worker, seen) = setup(Auth::None, false).await;

    worker.tick().await.unwrap();

    assert_eq!(seen.lock().unwrap().authorizations, [None]);
    assert_eq!(
        app.count("SELECT count(*) FROM receipts WHERE status = 'done'")
            .await,
        1
    );
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_field_named() {
    let (app, _worker, _seen) = setup(jwt(), true).await;

    for (body, field, message) in [
        (json!({"period": "2026-13"}), "period", "YYYY-MM"),
        (json!({"period": "+202-01"}), "period", "YYYY-MM"),
        (json!({"period": "0000-01"}), "period", "YYYY-MM"),
        (json!({"period": 202611}), "period", "YYYY-MM"),
        (json!({"period": "2026-12"}), "period", "not finished"),
        (
            json!({"period": "2026-11", "junk": 1}),
            "junk",
            "unknown field",
        ),
        (json!([1]), "body", "expected an object"),
        (json!("x"), "body", "expected an object"),
    ] {
        let (status, answer) = app.api(Method::POST, "/receipts", Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains(message),
            "{answer}"
        );
    }

    let (status, _) = app.api_as(None, Method::GET, "/receipts", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app.api(Method::GET, "/receipts/999", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.api(Method::GET, "/receipts/abc/pdf", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
