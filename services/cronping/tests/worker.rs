//! The worker against a real PostgreSQL and a local webhook receiver, stepped with injected
//! time: transitions and their flips, delivery with retries, SSRF refusal, two workers at
//! once, and a worker dying mid-delivery.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;

use axum::http::StatusCode;
use common::{Receiver, TestApp, utc};
use cronping::worker::{self, Sender};
use reqwest::Method;
use serde_json::{Value, json};

fn loopback_allowed(c: &mut cronping::Config) {
    c.alert_allow = vec!["127.0.0.1/32".parse().unwrap()];
}

fn statuses(flips: &[Value]) -> Vec<(String, String, String, bool)> {
    flips
        .iter()
        .map(|f| {
            (
                f["timestamp"].as_str().unwrap().to_owned(),
                f["old_status"].as_str().unwrap().to_owned(),
                f["new_status"].as_str().unwrap().to_owned(),
                f["alert"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn flip(at: &str, from: &str, to: &str, alert: bool) -> (String, String, String, bool) {
    (at.into(), from.into(), to.into(), alert)
}

#[tokio::test]
async fn chicago_fall_back_case_goes_down_at_the_deadline_and_recovers() {
    // Cases file, report 1.
    let app = TestApp::spawn().await;
    let check = app
        .create(json!({"name": "quarter-hourly", "schedule": "*/15 * * * *",
                       "tz": "America/Chicago", "grace": 300}))
        .await;
    let id = check["id"].as_str().unwrap();
    for at in ["06:00", "06:15", "06:30", "06:45"] {
        app.set_now(&format!("2023-11-05T{at}:00Z"));
        assert_eq!(app.ping(&check, "").await.0, 200);
    }
    let got = app.get(&format!("/checks/{id}")).await;
    assert_eq!(got["next_ping"], "2023-11-05T07:00:00Z");

    // Not yet: the sweep before the deadline changes nothing.
    assert_eq!(
        worker::sweep(&app.pool, utc("2023-11-05T07:04:59Z"))
            .await
            .unwrap(),
        0
    );
    app.set_now("2023-11-05T07:02:00Z");
    assert_eq!(app.get(&format!("/checks/{id}")).await["status"], "grace");

    // The worker notices late; the flip carries the computed deadline.
    assert_eq!(
        worker::sweep(&app.pool, utc("2023-11-05T07:06:41Z"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        worker::sweep(&app.pool, utc("2023-11-05T07:07:00Z"))
            .await
            .unwrap(),
        0
    );

    app.set_now("2023-11-05T07:15:00Z");
    assert_eq!(app.ping(&check, "").await.0, 200);
    let got = app.get(&format!("/checks/{id}")).await;
    assert_eq!(
        (got["status"].as_str(), got["next_ping"].as_str()),
        (Some("up"), Some("2023-11-05T07:30:00Z"))
    );

    assert_eq!(
        statuses(&app.flips(&check).await),
        [
            flip("2023-11-05T07:15:00Z", "down", "up", true),
            flip("2023-11-05T07:05:00Z", "up", "down", true),
            flip("2023-11-05T06:00:00Z", "new", "up", false),
        ]
    );
}

#[tokio::test]
async fn transitions_write_flips_and_only_the_right_ones_alert() {
    let receiver = Receiver::start(&[]).await;
    let app = TestApp::spawn_with(loopback_allowed).await;
    let check = app
        .create(json!({"name": "hourly", "timeout": 3600, "grace": 600,
                       "webhook_url": receiver.url}))
        .await;

    app.set_now("2025-05-01T10:00:00Z");
    app.ping(&check, "").await; // new → up: no alert
    app.set_now("2025-05-01T10:30:00Z");
    app.ping(&check, "/fail").await; // up → down: alert
    app.set_now("2025-05-01T10:31:00Z");
    app.ping(&check, "/fail").await; // down → down: nothing
    app.set_now("2025-05-01T10:40:00Z");
    app.ping(&check, "").await; // down → up: alert
    worker::sweep(&app.pool, utc("2025-05-01T11:50:00Z"))
        .await
        .unwrap(); // up → down at 11:50
    let id = check["id"].as_str().unwrap();
    app.set_now("2025-05-01T12:00:00Z");
    app.api(
        Method::POST,
        &format!("/checks/{id}/pause"),
        Some(common::RW_KEY),
        None,
    )
    .await;
    app.set_now("2025-05-01T12:30:00Z");
    app.ping(&check, "").await; // paused → up: no alert

    assert_eq!(
        statuses(&app.flips(&check).await),
        [
            flip("2025-05-01T12:30:00Z", "paused", "up", false),
            flip("2025-05-01T12:00:00Z", "down", "paused", false),
            flip("2025-05-01T11:50:00Z", "up", "down", true),
            flip("2025-05-01T10:40:00Z", "down", "up", true),
            flip("2025-05-01T10:30:00Z", "up", "down", true),
            flip("2025-05-01T10:00:00Z", "new", "up", false),
        ]
    );

    let sender = Sender::new(&app.config).unwrap();
    while worker::deliver_one(&app.pool, &sender, utc("2025-05-01T13:00:00Z"))
        .await
        .unwrap()
    {}
    let got: Vec<(String, String)> = receiver
        .bodies()
        .iter()
        .map(|b| {
            (
                b["old_status"].as_str().unwrap().into(),
                b["new_status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("up".into(), "down".into()),
            ("down".into(), "up".into()),
            ("up".into(), "down".into())
        ]
    );
    let first = &receiver.bodies()[0];
    assert_eq!(first["check"]["name"], "hourly");
    assert_eq!(first["time"], "2025-05-01T10:30:00Z");
    assert_eq!(first["last_ping"]["kind"], "fail");
    assert!(first["alert_id"].as_str().is_some());
}

#[tokio::test]
async fn alert_delivery_retries_with_backoff_and_records_every_attempt() {
    let receiver = Receiver::start(&[
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::FOUND,
        StatusCode::SERVICE_UNAVAILABLE,
    ])
    .await;
    let app = TestApp::spawn_with(loopback_allowed).await;
    let check = app
        .create(json!({"name": "job", "webhook_url": receiver.url}))
        .await;
    app.set_now("2025-05-01T10:00:00Z");
    app.ping(&check, "/fail").await;

    let sender = Sender::new(&app.config).unwrap();
    let at = |s: &str| utc(&format!("2025-05-01T{s}Z"));
    // Attempt 1 fails (500); the retry is due 10 s later, not before.
    assert!(
        worker::deliver_one(&app.pool, &sender, at("10:00:00"))
            .await
            .unwrap()
    );
    assert!(
        !worker::deliver_one(&app.pool, &sender, at("10:00:09"))
            .await
            .unwrap()
    );
    // Attempt 2: a redirect is not followed, and counts as a failure; next after 20 s.
    assert!(
        worker::deliver_one(&app.pool, &sender, at("10:00:10"))
            .await
            .unwrap()
    );
    assert!(
        !worker::deliver_one(&app.pool, &sender, at("10:00:29"))
            .await
            .unwrap()
    );
    // Attempt 3 fails (503), attempt 4 succeeds.
    assert!(
        worker::deliver_one(&app.pool, &sender, at("10:00:30"))
            .await
            .unwrap()
    );
    assert!(
        worker::deliver_one(&app.pool, &sender, at("10:01:10"))
            .await
            .unwrap()
    );
    assert!(
        !worker::deliver_one(&app.pool, &sender, at("11:00:00"))
            .await
            .unwrap()
    );
    assert_eq!(
        receiver.bodies().len(),
        4,
        "the redirect target was never called"
    );

    let id = check["id"].as_str().unwrap();
    let alerts = app.get(&format!("/checks/{id}/alerts")).await;
    let alert = &alerts["alerts"][0];
    assert_eq!(alert["state"], "delivered");
    let attempts: Vec<(i64, Option<i64>)> = alert["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["attempt"].as_i64().unwrap(), a["status_code"].as_i64()))
        .collect();
    assert_eq!(
        attempts,
        [
            (1, Some(500)),
            (2, Some(302)),
            (3, Some(503)),
            (4, Some(200))
        ]
    );
}

#[tokio::test]
async fn five_failed_attempts_give_up() {
    let receiver = Receiver::start(&[StatusCode::INTERNAL_SERVER_ERROR; 6]).await;
    let app = TestApp::spawn_with(loopback_allowed).await;
    let check = app
        .create(json!({"name": "job", "webhook_url": receiver.url}))
        .await;
    app.ping(&check, "/fail").await;

    let sender = Sender::new(&app.config).unwrap();
    let mut now = app.now();
    for _ in 0..5 {
        assert!(worker::deliver_one(&app.pool, &sender, now).await.unwrap());
        now += chrono::Duration::hours(1);
    }
    assert!(!worker::deliver_one(&app.pool, &sender, now).await.unwrap());
    let alerts = app
        .get(&format!("/checks/{}/alerts", check["id"].as_str().unwrap()))
        .await;
    assert_eq!(alerts["alerts"][0]["state"], "failed");
    assert_eq!(alerts["alerts"][0]["attempts"].as_array().unwrap().len(), 5);
    assert_eq!(receiver.bodies().len(), 5);
}

#[tokio::test]
async fn webhooks_to_internal_addresses_are_refused_on_the_connected_address() {
    let receiver = Receiver::start(&[]).await;
    let port = receiver
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    // No allowed range: the default configuration.
    let app = TestApp::spawn().await;
    let sender = Sender::new(&app.config).unwrap();

    for url in [
        receiver.url.clone(),
        // A name, so the refusal happens on the resolved address.
        format!("http://localhost:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
    ] {
        let check = app.create(json!({"name": "job", "webhook_url": url})).await;
        app.ping(&check, "/fail").await;
        assert!(
            worker::deliver_one(&app.pool, &sender, app.now())
                .await
                .unwrap()
        );

        let alerts = app
            .get(&format!("/checks/{}/alerts", check["id"].as_str().unwrap()))
            .await;
        let alert = &alerts["alerts"][0];
        assert_eq!(
            alert["state"], "failed",
            "{url}: refused is final, not retried"
        );
        let error = alert["attempts"][0]["error"].as_str().unwrap();
        assert!(error.starts_with("refused"), "{url}: {error}");
    }
    assert!(receiver.bodies().is_empty(), "nothing reached the receiver");
}

#[tokio::test]
async fn two_workers_at_once_send_exactly_one_alert_per_flip() {
    let receiver = Receiver::start(&[]).await;
    let app = TestApp::spawn_with(loopback_allowed).await;
    let n = 40;
    app.set_now("2025-05-01T10:00:00Z");
    for i in 0..n {
        let check = app
            .create(
                json!({"name": format!("job {i}"), "timeout": 60, "grace": 60,
                           "webhook_url": receiver.url}),
            )
            .await;
        app.ping(&check, "").await;
    }

    // Two workers, each with its own connections, sweep the same overdue checks at once.
    let other = app.db.pool().await.unwrap();
    let now = utc("2025-05-01T10:05:00Z");
    let (a, b) = tokio::join!(worker::sweep(&app.pool, now), worker::sweep(&other, now));
    assert_eq!(a.unwrap() + b.unwrap(), n);
    assert_eq!(
        app.count("SELECT count(*) FROM flips WHERE new_status = 'down'")
            .await,
        40
    );
    assert_eq!(app.count("SELECT count(*) FROM alerts").await, 40);
    assert_eq!(
        app.count("SELECT count(DISTINCT at) FROM flips WHERE new_status = 'down'")
            .await,
        1,
        "every flip at the deadline, 10:02:00"
    );

    // And deliver at once.
    let sender = Sender::new(&app.config).unwrap();
    let drain = |pool: sqlx::PgPool, sender: Sender| async move {
        while worker::deliver_one(&pool, &sender, now).await.unwrap() {}
    };
    tokio::join!(
        drain(app.pool.clone(), sender.clone()),
        drain(other, sender)
    );
    let ids: HashSet<String> = receiver
        .bodies()
        .iter()
        .map(|b| b["alert_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!((receiver.bodies().len(), ids.len()), (40, 40));
}

#[tokio::test]
async fn an_alert_survives_a_worker_dying_before_and_during_delivery() {
    let receiver = Receiver::start(&[]).await;
    let app = TestApp::spawn_with(loopback_allowed).await;
    let check = app
        .create(json!({"name": "job", "timeout": 60, "grace": 60, "webhook_url": receiver.url}))
        .await;
    app.set_now("2025-05-01T10:00:00Z");
    app.ping(&check, "").await;

    // Worker A marks the check down and dies before delivering.
    assert_eq!(
        worker::sweep(&app.pool, utc("2025-05-01T10:03:00Z"))
            .await
            .unwrap(),
        1
    );
    // Worker A's successor claims the alert and dies mid-delivery: the claim is leased.
    let claimed = platform::queue::claim(
        &app.pool,
        cronping::store::ALERT_QUEUE,
        std::time::Duration::from_secs(60),
        utc("2025-05-01T10:03:01Z"),
    )
    .await
    .unwrap();
    assert!(claimed.is_some());

    // A restarted worker waits out the lease, then delivers the same alert.
    let sender = Sender::new(&app.config).unwrap();
    assert!(
        !worker::deliver_one(&app.pool, &sender, utc("2025-05-01T10:03:30Z"))
            .await
            .unwrap()
    );
    assert!(
        worker::deliver_one(&app.pool, &sender, utc("2025-05-01T10:04:02Z"))
            .await
            .unwrap()
    );
    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["new_status"], "down");
    assert_eq!(bodies[0]["time"], "2025-05-01T10:02:00Z");
    let alert_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM alerts")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(bodies[0]["alert_id"], alert_id.to_string());
}

#[tokio::test]
async fn the_running_worker_sweeps_on_its_schedule_and_delivers() {
    let receiver = Receiver::start(&[]).await;
    let app = TestApp::spawn_with(|c| {
        loopback_allowed(c);
        c.sweep_every = std::time::Duration::from_secs(1);
    })
    .await;
    let check = app
        .create(json!({"name": "job", "timeout": 60, "grace": 60, "webhook_url": receiver.url}))
        .await;
    app.set_now("2025-05-01T10:00:00Z");
    app.ping(&check, "").await;
    app.set_now("2025-05-01T10:05:00Z");

    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(worker::run(
        app.config.clone(),
        app.pool.clone(),
        shutdown.clone(),
    ));

    // Wait for the outcome itself (bounded), not for a guessed time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while receiver.bodies().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no alert within 20 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    running.await.unwrap().unwrap();
    assert_eq!(receiver.bodies()[0]["time"], "2025-05-01T10:02:00Z");
}

#[tokio::test]
async fn runs_that_never_finish_go_down_at_start_plus_grace() {
    // Cases file, report 5: period 7 days, grace 6 h.
    let receiver = Receiver::start(&[]).await;
    let app = TestApp::spawn_with(loopback_allowed).await;
    let weekly = app
        .create(
            json!({"name": "weekly", "timeout": 604_800, "grace": 21_600,
                       "webhook_url": receiver.url}),
        )
        .await;
    let fresh = app
        .create(json!({"name": "fresh", "timeout": 604_800, "grace": 21_600,
                       "webhook_url": receiver.url}))
        .await;
    app.set_now("2025-05-05T05:00:00Z");
    app.ping(&weekly, "").await;
    app.set_now("2025-05-06T05:00:00Z");
    app.ping(&weekly, "/start").await;
    app.ping(&fresh, "/start").await;

    app.set_now("2025-05-06T10:59:59Z");
    let got = app
        .get(&format!("/checks/{}", weekly["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        (got["status"].as_str(), got["started"].as_bool()),
        (Some("up"), Some(true))
    );
    assert_eq!(
        worker::sweep(&app.pool, utc("2025-05-06T10:59:59Z"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        worker::sweep(&app.pool, utc("2025-05-06T11:00:00Z"))
            .await
            .unwrap(),
        2
    );

    assert_eq!(
        statuses(&app.flips(&weekly).await)[0],
        flip("2025-05-06T11:00:00Z", "up", "down", true)
    );
    assert_eq!(
        statuses(&app.flips(&fresh).await),
        [flip("2025-05-06T11:00:00Z", "new", "down", true)]
    );
    let sender = Sender::new(&app.config).unwrap();
    while worker::deliver_one(&app.pool, &sender, utc("2025-05-06T11:00:01Z"))
        .await
        .unwrap()
    {}
    assert_eq!(receiver.bodies().len(), 2);
}
