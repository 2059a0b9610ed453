//! OFREP evaluation against a real PostgreSQL: SDK keys, the protocol's bodies and
//! statuses, ETags, the cases file, and how fast a change reaches evaluation.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Instant;

use axum::http::StatusCode;
use common::{TestApp, bool_flag};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn sdk_keys_select_the_environment_and_others_get_401() {
    let app = TestApp::spawn().await;
    app.create_env("development").await;
    app.create_env("production").await;
    app.put_flag("development", "beta", bool_flag("on")).await;
    app.put_flag("production", "beta", bool_flag("off")).await;
    let dev = app.sdk_key("development").await;
    let prod = app.sdk_key("production").await;

    let body = json!({"context": {}});
    let answer = app
        .evaluate_until(&dev, "beta", body.clone(), |s, _| s == StatusCode::OK)
        .await;
    assert_eq!(answer["value"], true);
    let answer = app
        .evaluate_until(&prod, "beta", body.clone(), |s, _| s == StatusCode::OK)
        .await;
    assert_eq!(answer["value"], false);

    // Bearer works like X-API-Key.
    let resp = app
        .client
        .post(format!("{}/ofrep/v1/evaluate/flags/beta", app.base))
        .bearer_auth(&dev)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    // Missing, unknown, and the admin key (which is not an SDK key): 401.
    for key in [None, Some("fb_unknown"), Some(common::ADMIN_KEY)] {
        let (status, _) = app.evaluate(key, "beta", Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{key:?}");
    }
    let resp = app
        .client
        .post(format!("{}/ofrep/v1/evaluate/flags", app.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    // A revoked key stops working as soon as the change arrives.
    let (_, keys) = app
        .api(Method::GET, "/environments/production/sdk-keys", None)
        .await;
    let id = keys["keys"][0]["id"].as_str().unwrap().to_owned();
    app.api(
        Method::DELETE,
        &format!("/environments/production/sdk-keys/{id}"),
        None,
    )
    .await;
    app.evaluate_until(&prod, "beta", body, |s, _| s == StatusCode::UNAUTHORIZED)
        .await;
}

#[tokio::test]
async fn responses_follow_ofrep_and_the_cases_file() {
    let app = TestApp::spawn().await;
    app.create_env("production").await;
    let file = json!({"flags": {
        "edge": {"state": "ENABLED", "variants": {"lower": "lower", "upper": "upper"},
            "defaultVariant": "lower",
            "targeting": {"fractional": [
                {"var": "targetingKey"}, ["lower", 50], ["upper", 50]
            ]}},
        "off-bool": {"state": "ENABLED", "variants": {"off": false, "on": true},
            "defaultVariant": "off"},
        "zero-int": {"state": "ENABLED", "variants": {"off": 0, "on": 1}, "defaultVariant": "off"},
        "zero-float": {"state": "ENABLED", "variants": {"off": 0.0, "on": 1.5},
            "defaultVariant": "off"},
        "empty-string": {"state": "ENABLED", "variants": {"off": "", "on": "x"},
            "defaultVariant": "off"},
        "empty-object": {"state": "ENABLED", "variants": {"off": {}, "on": {"a": 1}},
            "defaultVariant": "off"},
        "org-split": {"state": "ENABLED", "variants": {"a": "a", "b": "b"}, "defaultVariant": "b",
            "targeting": {"fractional": [{"var": "user.org"}, ["a", 100]]}},
        "disabled": {"state": "DISABLED", "variants": {"a": 1}, "defaultVariant": "a"},
        "code-default": {"state": "ENABLED", "variants": {"a": 1}},
        "meta": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a",
            "metadata": {"owner": "team-a", "rev": 3}}
    }});
    let (status, body) = app
        .api(Method::POST, "/environments/production/import", Some(file))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let key = app.sdk_key("production").await;
    app.evaluate_until(&key, "edge", json!({}), |s, _| s == StatusCode::OK)
        .await;
    let eval = |flag: &'static str, body: Value| {
        let app = &app;
        let key = key.clone();
        async move { app.evaluate(Some(&key), flag, Some(body)).await }
    };

    // Case 1: bucket boundaries.
    for (tk, want) in [
        ("ejOoVL", "lower"),
        ("SI7p-", "lower"),
        ("6LvT0", "upper"),
        ("ceQdGm", "upper"),
    ] {
        let (status, a) = eval("edge", json!({"context": {"targetingKey": tk}})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (a["variant"].as_str(), a["reason"].as_str()),
            (Some(want), Some("TARGETING_MATCH")),
            "{tk}"
        );
    }

    // Case 2: falsy values are values, with their JSON type kept (0.0 stays a float).
    for (flag, want) in [
        ("off-bool", "false"),
        ("zero-int", "0"),
        ("zero-float", "0.0"),
        ("empty-string", "\"\""),
        ("empty-object", "{}"),
    ] {
        let resp = app
            .client
            .post(format!("{}/ofrep/v1/evaluate/flags/{flag}", app.base))
            .header("x-api-key", &key)
            .json(&json!({"context": {}}))
            .send()
            .await
            .unwrap();
        let text = resp.text().await.unwrap();
        assert!(
            text.contains(&format!("\"value\":{want}")),
            "{flag}: {text}"
        );
        let a: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (a["variant"].as_str(), a["reason"].as_str()),
            (Some("off"), Some("STATIC")),
            "{flag}"
        );
    }

    // Case 3: errors always say which flag.
    let (status, a) = eval("does-not-exist", json!({"context": {}})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(a["key"], "does-not-exist");
    assert_eq!(a["errorCode"], "FLAG_NOT_FOUND");
    assert!(a["errorDetails"].is_string());
    let (status, a) = eval("edge", json!({"context": 5})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        (a["key"].as_str(), a["errorCode"].as_str()),
        (Some("edge"), Some("INVALID_CONTEXT"))
    );
    assert!(a["errorDetails"].is_string());

    // Case 4: bucketing on an absent attribute is the default, not an error.
    let (status, a) = eval(
        "org-split",
        json!({"context": {"targetingKey": "u", "user": {}}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (a["value"].as_str(), a["reason"].as_str()),
        (Some("b"), Some("DEFAULT"))
    );

    // A disabled flag and a flag without a default: no value, so the caller's default.
    let (_, a) = eval("disabled", json!({})).await;
    assert_eq!(a["reason"], "DISABLED");
    assert!(a.get("value").is_none() && a["variant"].is_null(), "{a}");
    let (_, a) = eval("code-default", json!({})).await;
    assert_eq!(a["reason"], "DEFAULT");
    assert!(a.get("value").is_none(), "{a}");

    // Metadata, and no body at all (flagd's own examples send none).
    let resp = app
        .client
        .post(format!("{}/ofrep/v1/evaluate/flags/meta", app.base))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let a: Value = resp.json().await.unwrap();
    assert_eq!(a["metadata"], json!({"owner": "team-a", "rev": 3}));

    // A body over the limit.
    let big = json!({"context": {"blob": "x".repeat(100_000)}});
    let (status, _) = eval("meta", big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn bulk_etag_gives_304_until_flags_or_context_change() {
    let app = TestApp::spawn().await;
    app.create_env("production").await;
    app.put_flag("production", "a", bool_flag("on")).await;
    app.put_flag(
        "production",
        "b",
        json!({"state": "DISABLED", "variants": {"x": "x"}}),
    )
    .await;
    let key = app.sdk_key("production").await;
    app.evaluate_until(&key, "b", json!({}), |s, _| s == StatusCode::OK)
        .await;

    let bulk = |ctx: Value, etag: Option<String>| {
        let mut req = app
            .client
            .post(format!("{}/ofrep/v1/evaluate/flags", app.base))
            .header("x-api-key", &key)
            .json(&json!({ "context": ctx }));
        if let Some(tag) = etag {
            req = req.header("if-none-match", tag);
        }
        req.send()
    };

    let resp = bulk(json!({"targetingKey": "u1"}), None).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    let flags = body["flags"].as_array().unwrap();
    assert_eq!(flags.len(), 2);
    assert_eq!(flags[0]["key"], "a");
    assert_eq!(flags[0]["value"], true);
    assert_eq!(flags[1]["reason"], "DISABLED");

    let resp = bulk(json!({"targetingKey": "u1"}), Some(etag.clone()))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 304);
    assert_eq!(resp.headers()["etag"].to_str().unwrap(), etag);
    assert!(resp.bytes().await.unwrap().is_empty());

    // Another context that changes nothing keeps the ETag; a flag change does not.
    let resp = bulk(json!({"targetingKey": "u2"}), Some(etag.clone()))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 304);
    app.put_flag("production", "a", bool_flag("off")).await;
    app.evaluate_until(&key, "a", json!({}), |_, a| a["value"] == false)
        .await;
    let resp = bulk(json!({"targetingKey": "u1"}), Some(etag.clone()))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_ne!(resp.headers()["etag"].to_str().unwrap(), etag);

    // A bad context is a whole-request failure without a key.
    let resp = bulk(json!(5), None).await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errorCode"], "INVALID_CONTEXT");
    assert!(body.get("key").is_none());
}

#[tokio::test]
async fn a_flag_change_reaches_evaluation_within_one_second() {
    let app = TestApp::spawn().await;
    app.create_env("production").await;
    app.put_flag("production", "switch", bool_flag("off")).await;
    let key = app.sdk_key("production").await;
    app.evaluate_until(&key, "switch", json!({}), |s, _| s == StatusCode::OK)
        .await;

    for (round, default) in ["on", "off", "on"].into_iter().enumerate() {
        let started = Instant::now();
        let (status, _) = app
            .put_flag("production", "switch", bool_flag(default))
            .await;
        assert_eq!(status, StatusCode::OK);
        let want = default == "on";
        app.evaluate_until(&key, "switch", json!({}), |_, a| a["value"] == want)
            .await;
        let took = started.elapsed();
        assert!(took.as_millis() < 1000, "round {round}: {took:?}");
    }

    // Evaluation never reads the database: with it stopped, answers still come.
    app.db.stop().unwrap();
    let (status, a) = app
        .evaluate(Some(&key), "switch", Some(json!({"context": {}})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(a["value"], true);
}

#[tokio::test]
async fn a_change_without_notification_arrives_with_the_periodic_refresh() {
    let app = TestApp::spawn_with(|c| c.refresh_every = std::time::Duration::from_secs(1)).await;
    app.create_env("production").await;
    app.put_flag("production", "quiet", bool_flag("off")).await;
    let key = app.sdk_key("production").await;
    app.evaluate_until(&key, "quiet", json!({}), |s, _| s == StatusCode::OK)
        .await;

    // A write that sends no notification, as if the listening connection had missed it.
    sqlx::query("ALTER TABLE flags DISABLE TRIGGER flags_changed")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE flags SET definition = jsonb_set(definition, '{defaultVariant}', '\"on\"')",
    )
    .execute(&app.pool)
    .await
    .unwrap();

    // Two refresh periods at most.
    let deadline = Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let generation = app.generation();
        let (_, a) = app
            .evaluate(Some(&key), "quiet", Some(json!({"context": {}})))
            .await;
        if a["value"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "not refreshed within 3 s: {a}");
        let left = deadline.saturating_duration_since(Instant::now());
        app.reloaded_after(generation, left).await;
    }
}
