//! The ping endpoints against a real PostgreSQL: every variant, the body limit, run ids and
//! pruning.

#![allow(clippy::unwrap_used)]

mod common;

use common::TestApp;
use serde_json::{Value, json};

async fn pings(app: &TestApp, check: &Value) -> Vec<Value> {
    let id = check["id"].as_str().unwrap();
    app.get(&format!("/checks/{id}/pings")).await["pings"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn every_variant_by_get_head_and_post() {
    let app = TestApp::spawn().await;
    let check = app
        .create(json!({"name": "job", "timeout": 3600, "grace": 300}))
        .await;
    let url = check["ping_url"].as_str().unwrap().to_owned();

    app.set_now("2025-05-01T10:00:00Z");
    let resp = app
        .client
        .get(&url)
        .header("user-agent", "curl/8")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["ping-body-limit"], "10000");
    assert_eq!(resp.text().await.unwrap(), "OK");
    assert_eq!(
        app.get(&format!("/checks/{}", check["id"].as_str().unwrap()))
            .await["status"],
        "up"
    );

    app.set_now("2025-05-01T10:01:00Z");
    let resp = app
        .client
        .head(format!("{url}/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    app.set_now("2025-05-01T10:02:30Z");
    let resp = app
        .client
        .post(format!("{url}/0"))
        .body("all good")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    app.set_now("2025-05-01T10:03:00Z");
    assert_eq!(app.ping(&check, "/log").await, (200, "OK".into()));
    app.set_now("2025-05-01T10:04:00Z");
    assert_eq!(app.ping(&check, "/fail").await.0, 200);
    app.set_now("2025-05-01T10:05:00Z");
    assert_eq!(
        app.ping(&check, "/").await.0,
        200,
        "a trailing slash is a success"
    );
    app.set_now("2025-05-01T10:06:00Z");
    assert_eq!(app.ping(&check, "/7").await.0, 200);

    let list = pings(&app, &check).await;
    let summary: Vec<(i64, &str, Option<i64>, &str)> = list
        .iter()
        .map(|p| {
            (
                p["n"].as_i64().unwrap(),
                p["type"].as_str().unwrap(),
                p["exit_status"].as_i64(),
                p["method"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (7, "fail", Some(7), "GET"),
            (6, "success", None, "GET"),
            (5, "fail", None, "GET"),
            (4, "log", None, "GET"),
            (3, "success", Some(0), "POST"),
            (2, "start", None, "HEAD"),
            (1, "success", None, "GET"),
        ],
        "newest first"
    );
    assert_eq!(list[4]["duration"], json!(90.0), "start to finish");
    assert_eq!(list[4]["body"], "all good");
    assert_eq!(list[6]["ua"], "curl/8");
    assert_eq!(list[6]["remote_addr"], "127.0.0.1");
    assert_eq!(list[6]["date"], "2025-05-01T10:00:00Z");

    let got = app
        .get(&format!("/checks/{}", check["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        (got["status"].as_str(), got["n_pings"].as_i64()),
        (Some("down"), Some(7))
    );
    assert_eq!(got["last_duration"], json!(90.0));
}

#[tokio::test]
async fn bad_code_bad_rid_and_unknown_uuid() {
    let app = TestApp::spawn().await;
    let check = app.create(json!({"name": "job"})).await;
    let url = check["ping_url"].as_str().unwrap().to_owned();

    for (suffix, status, field) in [
        ("/256", 400, Some("code")),
        ("?rid=not-a-uuid", 400, Some("rid")),
        ("/start?rid=1234", 400, Some("rid")),
        ("/bogus", 404, None),
    ] {
        let resp = app
            .client
            .get(format!("{url}{suffix}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{suffix}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["field"].as_str(), field, "{suffix}");
    }
    for uuid in [
        "5f0c6b1e-8d1a-4c1e-9f1a-0a1b2c3d4e5f",
        &url.rsplit('/').next().unwrap().to_uppercase(),
        "not-a-uuid",
        "%FF%FE",
    ] {
        let resp = app
            .client
            .get(format!("{}/ping/{uuid}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 404, "{uuid}");
    }
    assert_eq!(
        app.count("SELECT count(*) FROM pings").await,
        0,
        "nothing recorded"
    );
}

#[tokio::test]
async fn body_over_the_limit_is_truncated_and_flagged() {
    let app = TestApp::spawn_with(|c| c.ping_body_limit = 16).await;
    let check = app.create(json!({"name": "job"})).await;
    let url = check["ping_url"].as_str().unwrap().to_owned();

    app.client
        .post(&url)
        .body("exactly sixteen!")
        .send()
        .await
        .unwrap();
    let resp = app
        .client
        .post(&url)
        .body("this body is longer than sixteen bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["ping-body-limit"], "16");

    let list = pings(&app, &check).await;
    assert_eq!(
        (
            list[0]["body"].as_str(),
            list[0]["body_truncated"].as_bool(),
            list[0]["body_size"].as_i64()
        ),
        (Some("this body is lon"), Some(true), Some(38))
    );
    assert_eq!(
        (
            list[1]["body"].as_str(),
            list[1]["body_truncated"].as_bool()
        ),
        (Some("exactly sixteen!"), Some(false))
    );

    // Past the read cap the request is refused outright, and nothing is recorded.
    let huge = vec![b'x'; (1 << 20) + 1];
    let resp = app.client.post(&url).body(huge).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    assert_eq!(app.count("SELECT count(*) FROM pings").await, 2);
}

#[tokio::test]
async fn run_ids_pair_starts_with_finishes() {
    let app = TestApp::spawn().await;
    let check = app.create(json!({"name": "job", "timeout": 3600})).await;
    let (a, b) = (
        "11111111-1111-4111-8111-111111111111",
        "22222222-2222-4222-8222-222222222222",
    );

    app.set_now("2025-05-01T10:00:00Z");
    app.ping(&check, &format!("/start?rid={a}")).await;
    app.set_now("2025-05-01T10:00:10Z");
    app.ping(&check, &format!("?rid={b}")).await;
    app.set_now("2025-05-01T10:00:20Z");
    app.ping(&check, &format!("?rid={a}")).await;

    let list = pings(&app, &check).await;
    assert_eq!(list[0]["rid"], a);
    assert_eq!(list[0]["duration"], json!(20.0));
    assert_eq!(
        list[1]["duration"],
        Value::Null,
        "another run's finish has no duration"
    );
}

#[tokio::test]
async fn only_the_last_n_pings_are_kept() {
    let app = TestApp::spawn_with(|c| c.ping_log_limit = 5).await;
    let check = app.create(json!({"name": "job"})).await;
    for _ in 0..8 {
        assert_eq!(app.ping(&check, "").await.0, 200);
    }
    let ns: Vec<i64> = pings(&app, &check)
        .await
        .iter()
        .map(|p| p["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, [8, 7, 6, 5, 4]);
    assert_eq!(app.count("SELECT count(*) FROM pings").await, 5);
    assert_eq!(
        app.get(&format!("/checks/{}", check["id"].as_str().unwrap()))
            .await["n_pings"],
        8
    );
}

#[tokio::test]
async fn concurrent_pings_share_transactions_and_each_is_recorded_once() {
    let app = TestApp::spawn_with(|c| c.ping_log_limit = 1000).await;
    let hot = app.create(json!({"name": "hot"})).await;
    let cold = app.create(json!({"name": "cold"})).await;
    let unknown =
        json!({"ping_url": format!("{}/ping/5f0c6b1e-8d1a-4c1e-9f1a-0a1b2c3d4e5f", app.base)});

    let mut tasks = Vec::new();
    for i in 0..200 {
        let target = match i % 10 {
            0 => unknown.clone(),
            1 => cold.clone(),
            _ => hot.clone(),
        };
        let client = app.client.clone();
        tasks.push(tokio::spawn(async move {
            let url = target["ping_url"].as_str().unwrap().to_owned();
            client.get(url).send().await.unwrap().status().as_u16()
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    assert_eq!(answers.iter().filter(|s| **s == 404).count(), 20);
    assert_eq!(answers.iter().filter(|s| **s == 200).count(), 180);

    let ns: Vec<i64> = pings(&app, &hot)
        .await
        .iter()
        .map(|p| p["n"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ns,
        (1..=160).rev().collect::<Vec<i64>>(),
        "numbered without gaps or repeats"
    );
    assert_eq!(
        app.get(&format!("/checks/{}", hot["id"].as_str().unwrap()))
            .await["n_pings"],
        160
    );
    assert_eq!(
        app.get(&format!("/checks/{}", cold["id"].as_str().unwrap()))
            .await["n_pings"],
        20
    );
    assert_eq!(app.flips(&hot).await.len(), 1, "new → up once");
}

#[tokio::test]
async fn an_unreadable_check_fails_only_its_own_pings() {
    let app = TestApp::spawn().await;
    let good = app.create(json!({"name": "good"})).await;
    let bad = app
        .create(json!({"name": "bad", "schedule": "0 * * * *"}))
        .await;
    // What a stricter parser after an upgrade would make of a stored schedule.
    sqlx::query("UPDATE checks SET cron_expr = '0 0 31 2 *' WHERE name = 'bad'")
        .execute(&app.pool)
        .await
        .unwrap();

    let (a, b) = tokio::join!(app.ping(&bad, ""), app.ping(&good, ""));
    assert_eq!(a.0, 500);
    assert!(
        !a.1.contains("31 2"),
        "no internal detail in the answer: {}",
        a.1
    );
    assert_eq!(b, (200, "OK".to_owned()));
}
