//! The forwarding worker against a real PostgreSQL and local receivers on 127.0.0.1:
//! signed byte-for-byte delivery, retries with backoff, dead letters, Retry-After, replay,
//! redirects and address refusal (literal, rebinding resolver), isolation of a failing
//! destination, rate limits, timeouts and a worker killed mid-delivery.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use common::{Answer, Receiver, TestApp, wait_until};
use serde_json::{Value, json};
use webhookvault::signature::{self, Scheme};
use webhookvault::{Config, Resolver};

const WAIT: Duration = Duration::from_secs(15);

fn loopback_allowed(c: &mut Config) {
    c.allow = vec!["127.0.0.1/32".parse().unwrap()];
}

async fn attempts(app: &TestApp, event: &str) -> Vec<(i32, Option<i32>, Option<String>)> {
    sqlx::query_as(
        "SELECT a.n, a.status_code, a.error FROM attempts a
         JOIN deliveries d ON d.id = a.delivery_id
         WHERE d.event_id = $1::uuid ORDER BY d.created_at, a.n",
    )
    .bind(event)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

fn event_id(answer: &Value) -> String {
    answer["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_binary_body_is_forwarded_byte_for_byte_signed_for_the_destination() {
    let app = TestApp::spawn_with(loopback_allowed).await;
    let receiver = Receiver::ok().await;
    let source = app.open_source().await;
    let dest = app
        .destination(
            &source,
            json!({"url": receiver.url, "headers": {"x-team": "payments"}}),
        )
        .await;
    let secret = dest["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    // Shown once: never again.
    let again = app
        .get(&format!("/destinations/{}", dest["id"].as_str().unwrap()))
        .await;
    assert!(again.get("secret").is_none(), "{again}");
    assert_eq!(again["headers"]["x-team"], "***");

    let bytes = vec![
        0xFF, 0xFE, 0x7B, 0x22, 0x61, 0x22, 0x3A, 0x31, 0x7D, 0x00, 0x0D, 0x0A,
    ];
    let (status, answer) = app
        .ingest(
            &source,
            &[("content-type", "application/x-thing")],
            bytes.clone(),
        )
        .await;
    assert_eq!(status, 200);
    let worker = app.worker();
    receiver.wait_for(1, WAIT).await;
    app.settled(&event_id(&answer), WAIT).await;
    worker.stop().await;

    let got = &receiver.got()[0];
    assert_eq!(got.body.to_vec(), bytes);
    assert_eq!(got.headers["content-type"], "application/x-thing");
    assert_eq!(got.headers["x-team"], "payments");
    let msg_id = got.headers["webhook-id"].to_str().unwrap();
    assert_eq!(
        msg_id,
        format!("msg_{}", event_id(&answer).replace('-', ""))
    );
    // The receiver verifies it with the destination's secret, as a Standard Webhooks
    // library would.
    let ts: i64 = got.headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let check = |h: &HeaderMap, body: &[u8]| {
        signature::verify(Scheme::StandardWebhooks, &secret, h, body, ts)
    };
    assert_eq!(check(&got.headers, &got.body), Ok(()));
    let mut tampered = got.body.to_vec();
    tampered[0] = b'x';
    assert!(check(&got.headers, &tampered).is_err());

    let event = app.get(&format!("/events/{}", event_id(&answer))).await;
    assert_eq!(event["deliveries"][0]["state"], "delivered");
    assert_eq!(event["deliveries"][0]["attempt_list"][0]["status"], 200);
}

#[tokio::test]
async fn failures_are_retried_with_backoff_until_delivered() {
    let app = TestApp::spawn_with(|c| {
        loopback_allowed(c);
        c.retry_schedule = vec![Duration::from_millis(200), Duration::from_millis(400)];
    })
    .await;
    let big = vec![b'r'; 10_000];
    let receiver = Receiver::start(
        vec![
            Answer {
                status: 500,
                headers: Vec::new(),
                body: big,
            },
            Answer::status(503),
        ],
        Answer::status(204),
    )
    .await;
    let source = app.open_source().await;
    app.destination(&source, json!({"url": receiver.url})).await;
    let (_, answer) = app.ingest(&source, &[], "{}").await;
    let worker = app.worker();
    app.settled(&event_id(&answer), WAIT).await;
    worker.stop().await;

    let got = receiver.got();
    assert_eq!(got.len(), 3);
    // Backoff: each gap at least its scheduled delay (jitter is off in tests).
    assert!(got[1].at - got[0].at >= Duration::from_millis(200));
    assert!(got[2].at - got[1].at >= Duration::from_millis(400));
    // The same message id on every attempt, a fresh timestamp each time.
    assert_eq!(got[0].headers["webhook-id"], got[2].headers["webhook-id"]);

    let tried = attempts(&app, &event_id(&answer)).await;
    let statuses: Vec<_> = tried.iter().map(|(n, s, _)| (*n, *s)).collect();
    assert_eq!(statuses, [(1, Some(500)), (2, Some(503)), (3, Some(204))]);
    assert_eq!(app.delivery_states(&event_id(&answer)).await, ["delivered"]);
    // The first 4 KiB of a response are kept.
    let kept: Vec<u8> = sqlx::query_scalar("SELECT response FROM attempts WHERE n = 1")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(kept, vec![b'r'; 4096]);
}

#[tokio::test]
async fn case_6_forbidden_forever_with_three_retries_makes_four_attempts_then_dead_letters() {
    let app = TestApp::spawn_with(|c| {
        loopback_allowed(c);
        c.retry_schedule = vec![Duration::from_millis(30); 3];
    })
    .await;
    let receiver = Receiver::start(Vec::new(), Answer::status(403)).await;
    let source = app.open_source().await;
    app.destination(&source, json!({"url": receiver.url})).await;
    let (_, answer) = app.ingest(&source, &[], "{}").await;
    let event = event_id(&answer);
    let worker = app.worker();
    app.settled(&event, WAIT).await;
    worker.stop().await;

    let tried = attempts(&app, &event).await;
    let numbered: Vec<_> = tried.iter().map(|(n, s, _)| (*n, *s)).collect();
    assert_eq!(
        numbered,
        [
            (1, Some(403)),
            (2, Some(403)),
            (3, Some(403)),
            (4, Some(403))
        ]
    );
    assert_eq!(receiver.count(), 4);
    let (state, next): (String, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT state, next_attempt_at FROM deliveries")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), next), ("failed", None));

    let dead = app.get("/dead-letters").await;
    assert_eq!(dead["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(dead["deliveries"][0]["event_id"], event.as_str());
    assert_eq!(dead["deliveries"][0]["attempts"], 4);
    let listed = app
        .get(&format!(
            "/sources/{}/events?state=failed",
            source["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(listed["events"][0]["id"], event.as_str());
}

#[tokio::test]
async fn retry_after_lengthens_the_wait_within_twice_the_schedule() {
    let app = TestApp::spawn_with(|c| {
        loopback_allowed(c);
        c.retry_schedule = vec![Duration::from_millis(300)];
    })
    .await;
    let receiver = Receiver::start(
        vec![Answer::status(429).header("retry-after", "3600")],
        Answer::status(200),
    )
    .await;
    let source = app.open_source().await;
    app.destination(&source, json!({"url": receiver.url})).await;
    let (_, answer) = app.ingest(&source, &[], "{}").await;
    let worker = app.worker();
    app.settled(&event_id(&answer), WAIT).await;
    worker.stop().await;
    let got = receiver.got();
    let gap = got[1].at - got[0].at;
    // An hour asked for, twice the scheduled 300 ms granted.
    assert!(gap >= Duration::from_millis(600), "{gap:?}");
    assert!(gap < Duration::from_secs(5), "{gap:?}");
}

#[tokio::test]
async fn case_7_a_redirect_is_a_failed_attempt_and_is_never_followed() {
    let app = TestApp::spawn_with(|c| {
        loopback_allowed(c);
        c.retry_schedule = Vec::new();
    })
    .await;
    let elsewhere = Receiver::ok().await;
    let metadata = Receiver::start(
        Vec::new(),
        Answer::status(302).header("location", "http://169.254.169.254/latest/meta-data/"),
    )
    .await;
    let local = Receiver::start(
        Vec::new(),
        Answer::status(307).header("location", &elsewhere.url),
    )
    .await;
    let source = app.open_source().await;
    app.destination(&source, json!({"url": metadata.url})).await;
    app.destination(&source, json!({"url": local.url})).await;
    let (_, answer) = app.ingest(&source, &[], "{}").await;
    let worker = app.worker();
    app.settled(&event_id(&answer), WAIT).await;
    worker.stop().await;

    let mut statuses: Vec<_> = attempts(&app, &event_id(&answer))
        .await
        .into_iter()
        .map(|(n, s, _)| (n, s))
        .collect();
    statuses.sort();
    assert_eq!(statuses, [(1, Some(302)), (1, Some(307))]);
    assert_eq!(
        app.delivery_states(&event_id(&answer)).await,
        ["failed", "failed"]
    );
    assert_eq!((metadata.count(), local.count()), (1, 1));
    assert_eq!(elsewhere.count(), 0, "the redirect was followed");
}

#[tokio::test]
async fn loopback_is_refused_by_default_and_not_retried() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::ok().await;
    let source = app.open_source().await;
    app.destination(&source, json!({"url": receiver.url})).await;
    app.destination(
        &source,
        json!({"url": format!("http://[::1]:{}/hook", receiver.port)}),
    )
    .await;
    let (_, answer) = app.ingest(&source, &[], "{}").await;
    let worker = app.worker();
    app.settled(&event_id(&answer), WAIT).await;
    worker.stop().await;

    let tried = attempts(&app, &event_id(&answer)).await;
    assert_eq!(tried.len(), 2, "one attempt each, no retries: {tried:?}");
    for (n, status, error) in tried {
        assert_eq!((n, status), (1, None));
        assert!(error.unwrap().starts_with("refused"));
    }
    assert_eq!(receiver.count(), 0);
}

/// Answers 127.0.0.1 for every name, as a DNS server rebinding a public name would.
fn rebinding() -> Resolver {
    Resolver::new(|_host| Box::pin(async { Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]) }))
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused_on_the_address_connected_to() {
    let app = TestApp::spawn_with(|c| c.resolver = rebinding()).await;
    let receiver = Receiver::ok().await;
    let source = app.open_source().await;
    let url = format!("http://hooks.rebind.test:{}/hook", receiver.port);
    app.destination(&source, json!({"url": url})).await;
    let (_, answer) = app.ingest(&source, &[], "{}").await;
    let worker = app.worker();
    app.settled(&event_id(&answer), WAIT).await;
    worker.stop().await;
    let tried = attempts(&app, &event_id(&answer)).await;
    let error = tried[0].2.clone().unwrap();
    assert!(
        error.contains("refused") && error.contains("127.0.0.1"),
        "{error}"
    );
    assert_eq!(receiver.count(), 0);

    // The same name with loopback allowed by the operator is delivered: the resolver is
    // what the connection used.
    let (_, answer) = app.ingest(&source, &[], "{}").await;
    let worker = app.worker_with(loopback_allowed);
    app.settled(&event_id(&answer), WAIT).await;
    worker.stop().await;
    assert_eq!(app.delivery_states(&event_id(&answer)).await, ["delivered"]);
    assert_eq!(receiver.count(), 1);
}

#[tokio::test]
async fn a_hanging_destination_does_not_slow_a_healthy_one() {
    let app = TestApp::spawn_with(|c| {
        loopback_allowed(c);
        c.destination_concurrency = 2;
        c.worker_concurrency = 8;
        c.delivery_timeout = Duration::from_secs(30);
        c.lease = Duration::from_secs(60);
    })
    .await;
    let stuck = Receiver::ok().await;
    stuck.hold(true);
    let healthy = Receiver::ok().await;
    let source = app.open_source().await;
    app.destination(&source, json!({"url": stuck.url})).await;
    app.destination(&source, json!({"url": healthy.url})).await;
    for i in 0..20 {
        let (status, _) = app.ingest(&source, &[], format!("{{\"n\": {i}}}")).await;
        assert_eq!(status, 200);
    }
    let worker = app.worker();
    // Every healthy delivery arrives while the stuck destination holds its two slots.
    healthy.wait_for(20, WAIT).await;
    stuck.wait_for(2, WAIT).await;
    assert_eq!(
        stuck.count(),
        2,
        "more than its concurrency limit went to the stuck one"
    );
    stuck.hold(false);
    stuck.wait_for(20, WAIT).await;
    wait_until(WAIT, "all delivered", || async {
        app.count("SELECT count(*) FROM deliveries WHERE state = 'delivered'")
            .await
            == 40
    })
    .await;
    worker.stop().await;
}

#[tokio::test]
async fn a_rate_limited_destination_gets_no_more_than_its_rate() {
    let app = TestApp::spawn_with(loopback_allowed).await;
    let receiver = Receiver::ok().await;
    let source = app.open_source().await;
    app.destination(&source, json!({"url": receiver.url, "rate_limit": 5}))
        .await;
    for _ in 0..6 {
        app.ingest(&source, &[], "{}").await;
    }
    let worker = app.worker();
    receiver.wait_for(6, WAIT).await;
    worker.stop().await;
    let got = receiver.got();
    // Six starts at 5 per second are a second apart from first to last (less the first
    // request's connection setup); unlimited, they would take a few milliseconds.
    let spread = got[5].at - got[0].at;
    assert!(spread >= Duration::from_millis(800), "{spread:?}");
}

#[tokio::test]
async fn a_slow_receiver_times_out_and_is_retried() {
    let app = TestApp::spawn_with(|c| {
        loopback_allowed(c);
        c.delivery_timeout = Duration::from_millis(300);
        c.retry_schedule = vec![Duration::from_millis(50)];
    })
    .await;
    let receiver = Receiver::ok().await;
    receiver.hold(true);
    let source = app.open_source().await;
    app.destination(&source, json!({"url": receiver.url})).await;
    let (_, answer) = app.ingest(&source, &[], "{}").await;
    let worker = app.worker();
    receiver.wait_for(1, WAIT).await;
    wait_until(WAIT, "the first attempt recorded", || async {
        app.count("SELECT count(*) FROM attempts").await == 1
    })
    .await;
    receiver.hold(false);
    app.settled(&event_id(&answer), WAIT).await;
    worker.stop().await;
    let tried = attempts(&app, &event_id(&answer)).await;
    assert_eq!(tried[0].2.as_deref(), Some("timed out"));
    assert_eq!((tried[1].0, tried[1].1), (2, Some(200)));
}

#[tokio::test]
async fn a_worker_killed_mid_delivery_loses_nothing() {
    let app = TestApp::spawn_with(|c| {
        loopback_allowed(c);
        c.delivery_timeout = Duration::from_secs(1);
        c.lease = Duration::from_secs(2);
    })
    .await;
    let receiver = Receiver::ok().await;
    receiver.hold(true);
    let source = app.open_source().await;
    app.destination(&source, json!({"url": receiver.url})).await;
    let (_, answer) = app.ingest(&source, &[], "{}").await;

    let first = app.worker();
    receiver.wait_for(1, WAIT).await;
    first.kill().await;
    receiver.hold(false);
    assert_eq!(app.count("SELECT count(*) FROM attempts").await, 0);

    // Another worker takes the delivery once the dead one's lease has run out.
    let second = app.worker();
    app.settled(&event_id(&answer), WAIT).await;
    second.stop().await;
    assert_eq!(receiver.count(), 2);
    let got = receiver.got();
    assert_eq!(got[0].headers["webhook-id"], got[1].headers["webhook-id"]);
    let tried = attempts(&app, &event_id(&answer)).await;
    assert_eq!(
        tried.iter().map(|t| (t.0, t.1)).collect::<Vec<_>>(),
        [(1, Some(200))]
    );
    assert!(got[1].at - got[0].at >= Duration::from_millis(1500));
}

#[tokio::test]
async fn replay_sends_the_event_again_to_all_destinations_or_one() {
    let app = TestApp::spawn_with(loopback_allowed).await;
    let a = Receiver::ok().await;
    let b = Receiver::ok().await;
    let source = app.open_source().await;
    app.destination(&source, json!({"url": a.url})).await;
    let dest_b = app.destination(&source, json!({"url": b.url})).await;
    let (_, answer) = app
        .ingest(&source, &[("content-type", "text/plain")], "replay me")
        .await;
    let event = event_id(&answer);
    let worker = app.worker();
    app.settled(&event, WAIT).await;

    let (status, replayed) = app
        .api(
            reqwest::Method::POST,
            &format!("/events/{event}/replay"),
            None,
        )
        .await;
    assert_eq!(status.as_u16(), 202, "{replayed}");
    assert_eq!(replayed["deliveries"].as_array().unwrap().len(), 2);
    let (status, _) = app
        .api(
            reqwest::Method::POST,
            &format!("/events/{event}/replay"),
            Some(json!({"destination_id": dest_b["id"]})),
        )
        .await;
    assert_eq!(status.as_u16(), 202);
    a.wait_for(2, WAIT).await;
    b.wait_for(3, WAIT).await;
    app.settled(&event, WAIT).await;
    worker.stop().await;

    assert_eq!((a.count(), b.count()), (2, 3));
    for got in b.got() {
        assert_eq!(got.body.as_ref(), b"replay me");
        assert_eq!(
            got.headers["content-type"],
            HeaderValue::from_static("text/plain")
        );
    }
    let manual = app
        .count("SELECT count(*) FROM deliveries WHERE manual")
        .await;
    assert_eq!(manual, 3);

    // A replay body over the API's 64 KiB is 413, as every API body.
    let (status, body) = app
        .api(
            reqwest::Method::POST,
            &format!("/events/{event}/replay"),
            Some(json!({"pad": "x".repeat(70_000)})),
        )
        .await;
    assert_eq!(status.as_u16(), 413, "{body}");
    assert_eq!(body["error"]["code"], "too_large");

    let (status, body) = app
        .api(
            reqwest::Method::POST,
            &format!("/events/{event}/replay"),
            Some(json!({"destination_id": uuid::Uuid::new_v4()})),
        )
        .await;
    assert_eq!(status.as_u16(), 404, "{body}");
}

#[tokio::test]
async fn a_destination_answering_410_is_disabled_and_not_retried() {
    let app = TestApp::spawn_with(loopback_allowed).await;
    let gone = Receiver::start(Vec::new(), Answer::status(410)).await;
    let source = app.open_source().await;
    let dest = app.destination(&source, json!({"url": gone.url})).await;
    let (_, answer) = app.ingest(&source, &[], "{}").await;
    let worker = app.worker();
    app.settled(&event_id(&answer), WAIT).await;
    worker.stop().await;

    assert_eq!(app.delivery_states(&event_id(&answer)).await, ["failed"]);
    assert_eq!(gone.count(), 1);
    let dest = app
        .get(&format!("/destinations/{}", dest["id"].as_str().unwrap()))
        .await;
    assert_eq!(dest["enabled"], false);
    // New events no longer go to it.
    let (_, answer) = app.ingest(&source, &[], "{}").await;
    assert!(app.delivery_states(&event_id(&answer)).await.is_empty());
}

#[tokio::test]
async fn credentials_in_a_destination_url_are_never_shown_or_recorded() {
    let app = TestApp::spawn_with(|c| c.allow = vec!["127.0.0.0/8".parse().unwrap()]).await;
    // A port nothing listens on: every attempt fails with a connection error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let source = app.open_source().await;
    let url = format!("http://alice:pw-s3cret@127.0.0.1:{port}/hook?token=tok-s3cret");
    let dest = app.destination(&source, json!({"url": url})).await;
    let shown = format!("http://***@127.0.0.1:{port}/hook?***");
    assert_eq!(dest["url"], shown.as_str());
    let got = app
        .get(&format!("/destinations/{}", dest["id"].as_str().unwrap()))
        .await;
    assert_eq!(got["url"], shown.as_str());

    let (_, answer) = app.ingest(&source, &[], "{}").await;
    let worker = app.worker();
    app.settled(&event_id(&answer), WAIT).await;
    worker.stop().await;
    let tried = attempts(&app, &event_id(&answer)).await;
    assert!(!tried.is_empty());
    let last_error: Option<String> =
        sqlx::query_scalar("SELECT last_error FROM deliveries WHERE destination_id = $1::uuid")
            .bind(dest["id"].as_str().unwrap())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let errors: Vec<String> = tried
        .into_iter()
        .filter_map(|(_, _, e)| e)
        .chain(last_error)
        .collect();
    assert!(!errors.is_empty());
    for error in errors {
        assert!(
            !error.contains("s3cret") && !error.contains("alice"),
            "{error}"
        );
    }
}
