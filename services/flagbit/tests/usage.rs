//! Usage counting against a real PostgreSQL: evaluations counted per flag and variant,
//! flushed by the web tier, rolled up hourly by the worker, read through the API.

#![allow(clippy::unwrap_used)]

mod common;

use axum::http::StatusCode;
use common::{TestApp, bool_flag};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn evaluations_are_rolled_up_into_hourly_usage() {
    let app = TestApp::spawn().await;
    app.create_env("production").await;
    app.put_flag("production", "beta", bool_flag("off")).await;
    let flag = json!({"state": "ENABLED", "variants": {"on": true, "off": false},
        "defaultVariant": "off",
        "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "on", null]}});
    app.put_flag("production", "pro", flag).await;
    let key = app.sdk_key("production").await;
    app.evaluate_until(&key, "pro", json!({}), |s, _| s == StatusCode::OK)
        .await;
    // evaluate_until counted one evaluation of "pro" (variant off); start from zero.
    app.usage.flush(&app.pool, app.now()).await.unwrap();
    sqlx::query("DELETE FROM usage_counts")
        .execute(&app.pool)
        .await
        .unwrap();

    // 10:15 — three evaluations of beta, two of pro (one per variant); a missing flag is
    // not counted.
    app.set_now("2026-03-01T10:15:00Z");
    for body in [json!({}), json!({}), json!({})] {
        app.evaluate(Some(&key), "beta", Some(body)).await;
    }
    app.evaluate(Some(&key), "pro", Some(json!({"context": {"plan": "pro"}})))
        .await;
    app.evaluate(
        Some(&key),
        "pro",
        Some(json!({"context": {"plan": "free"}})),
    )
    .await;
    let (status, _) = app.evaluate(Some(&key), "nope", Some(json!({}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.usage.flush(&app.pool, app.now()).await.unwrap(), 3);

    // 10:50 — one more of beta, in a second flush of the same hour.
    app.set_now("2026-03-01T10:50:00Z");
    app.evaluate(Some(&key), "beta", Some(json!({}))).await;
    app.usage.flush(&app.pool, app.now()).await.unwrap();

    // Before the hour ends, nothing is rolled up; after, all of it, once.
    flagbit::usage::rollup(&app.pool, app.now()).await.unwrap();
    let path = "/usage?from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z";
    let (_, body) = app.api(Method::GET, path, None).await;
    assert_eq!(body["usage"], json!([]));
    flagbit::usage::rollup(&app.pool, "2026-03-01T11:00:00Z".parse().unwrap())
        .await
        .unwrap();
    flagbit::usage::rollup(&app.pool, "2026-03-01T12:00:00Z".parse().unwrap())
        .await
        .unwrap();
    let (status, body) = app.api(Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK);
    let rows: Vec<(String, String, i64)> = body["usage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["hour"], "2026-03-01T10:00:00Z");
            (
                r["key"].as_str().unwrap().to_owned(),
                r["variant"].as_str().unwrap().to_owned(),
                r["count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("beta".to_owned(), "off".to_owned(), 4),
            ("pro".to_owned(), "off".to_owned(), 1),
            ("pro".to_owned(), "on".to_owned(), 1),
        ]
    );
    assert_eq!(app.count("SELECT count(*) FROM usage_counts").await, 0);

    // Bad ranges name the parameter.
    for (query, field) in [
        ("/usage?to=2026-03-02T00:00:00Z", "from"),
        ("/usage?from=yesterday&to=2026-03-02T00:00:00Z", "from"),
        (
            "/usage?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z",
            "to",
        ),
        (
            "/usage?from=2025-01-01T00:00:00Z&to=2026-03-01T00:00:00Z",
            "to",
        ),
    ] {
        let (status, body) = app.api(Method::GET, query, None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(body["error"]["field"], field, "{query}");
    }
}
