//! The checks API against a real PostgreSQL: keys, validation, and the check's lifecycle.

#![allow(clippy::unwrap_used)]

mod common;

use axum::http::StatusCode;
use common::{RO_KEY, RW_KEY, TestApp};
use reqwest::Method;
use serde_json::{Value, json};

fn error_field(body: &Value) -> &str {
    body["error"]["field"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn bad_input_gets_422_or_413_naming_the_field() {
    let app = TestApp::spawn().await;
    let cases = [
        (json!({"name": "x", "schedule": "0 0 30 2 *"}), "schedule"),
        (json!({"name": "x", "schedule": "0 0 31 2 *"}), "schedule"),
        (
            json!({"name": "x", "schedule": "0 0 * * FRI-MON"}),
            "schedule",
        ),
        (json!({"name": "x", "schedule": "*/0 * * * *"}), "schedule"),
        (json!({"name": "x", "schedule": "0 0 0 * * *"}), "schedule"),
        (json!({"name": "x", "schedule": "@daily"}), "schedule"),
        (json!({"name": "x", "tz": "Europe/Atlantis"}), "tz"),
        (json!({"name": "x", "timeout": 59}), "timeout"),
        (json!({"name": "x", "timeout": 31_536_001}), "timeout"),
        (json!({"name": "x", "grace": 10}), "grace"),
        (json!({"name": "x", "colour": "red"}), "colour"),
        (
            json!({"name": "x", "webhook_url": "not a url"}),
            "webhook_url",
        ),
        (json!({"schedule": "* * * * *"}), "name"),
        (json!(["not", "an", "object"]), "body"),
    ];
    for (body, field) in cases {
        let (status, answer) = app
            .api(Method::POST, "/checks", Some(RW_KEY), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(error_field(&answer), field, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid");
    }

    let resp = app
        .client
        .post(format!("{}/api/v1/checks", app.base))
        .header("x-api-key", RW_KEY)
        .body("{\"name\": \"x\"}".to_owned() + &" ".repeat(70_000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(error_field(&answer), "body");

    let resp = app
        .client
        .post(format!("{}/api/v1/checks", app.base))
        .header("x-api-key", RW_KEY)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);

    assert_eq!(
        app.count("SELECT count(*) FROM checks").await,
        0,
        "nothing was created"
    );
}

#[tokio::test]
async fn keys_read_only_key_and_unknown_ids() {
    let app = TestApp::spawn().await;
    let check = app
        .create(json!({"name": "backup", "tags": ["prod", "db"]}))
        .await;
    let id = check["id"].as_str().unwrap();
    assert!(
        check["ping_url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/ping/", app.base))
    );

    // No key, a wrong key: 401.
    let (status, body) = app.api(Method::GET, "/checks", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = app
        .api(Method::GET, "/checks", Some("wrong-key-0123456789"), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Bearer works like X-Api-Key.
    let resp = app
        .client
        .get(format!("{}/api/v1/checks/{id}", app.base))
        .bearer_auth(RW_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    // The read-only key lists and gets, without the ping URL, and nothing else.
    let (status, list) = app.api(Method::GET, "/checks", Some(RO_KEY), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["checks"][0]["id"], id);
    assert!(list["checks"][0].get("ping_url").is_none());
    let (status, one) = app
        .api(Method::GET, &format!("/checks/{id}"), Some(RO_KEY), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(one.get("ping_url").is_none() && one.get("webhook_url").is_none());
    for (method, path, body) in [
        (
            Method::POST,
            "/checks".to_owned(),
            Some(json!({"name": "x"})),
        ),
        (
            Method::PATCH,
            format!("/checks/{id}"),
            Some(json!({"name": "y"})),
        ),
        (Method::DELETE, format!("/checks/{id}"), None),
        (Method::POST, format!("/checks/{id}/pause"), None),
        (Method::POST, format!("/checks/{id}/resume"), None),
        (Method::GET, format!("/checks/{id}/pings"), None),
        (Method::GET, format!("/checks/{id}/alerts"), None),
    ] {
        let (status, answer) = app.api(method.clone(), &path, Some(RO_KEY), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "forbidden");
    }

    // Unknown and malformed ids: JSON 404.
    for path in [
        "/checks/5f0c6b1e-8d1a-4c1e-9f1a-0a1b2c3d4e5f",
        "/checks/not-a-uuid",
        "/checks/%FF%FE",
        "/checks/5f0c6b1e-8d1a-4c1e-9f1a-0a1b2c3d4e5f/pings",
    ] {
        let (status, answer) = app.api(Method::GET, path, Some(RW_KEY), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer["error"]["code"], "not_found");
    }

    // Filters.
    app.create(json!({"name": "other", "slug": "other-job"}))
        .await;
    let tagged = app.get("/checks?tag=db").await;
    assert_eq!(tagged["checks"].as_array().unwrap().len(), 1);
    let by_slug = app.get("/checks?slug=other-job").await;
    assert_eq!(by_slug["checks"][0]["name"], "other");
}

#[tokio::test]
async fn create_update_pause_resume_delete() {
    let app = TestApp::spawn().await;
    let check = app
        .create(
            json!({"name": "nightly", "schedule": "0 2 * * *", "tz": "Europe/Berlin",
                       "grace": 600, "timeout": 120}),
        )
        .await;
    let id = check["id"].as_str().unwrap().to_owned();
    assert_eq!(
        check["schedule"], "0 2 * * *",
        "a schedule wins over a timeout"
    );
    assert!(check.get("timeout").is_none());
    assert_eq!(
        (check["status"].as_str(), check["grace"].as_i64()),
        (Some("new"), Some(600))
    );

    // Partial update: only what is sent changes; switching to a period drops the schedule.
    let (status, updated) = app
        .api(
            Method::PATCH,
            &format!("/checks/{id}"),
            Some(RW_KEY),
            Some(json!({"timeout": 3600})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(
        (updated["timeout"].as_i64(), updated["name"].as_str()),
        (Some(3600), Some("nightly"))
    );
    assert!(updated.get("schedule").is_none());
    let (status, answer) = app
        .api(
            Method::POST,
            &format!("/checks/{id}"),
            Some(RW_KEY),
            Some(json!({"schedule": "0 0 31 2 *"})),
        )
        .await;
    assert_eq!(
        (status, error_field(&answer)),
        (StatusCode::UNPROCESSABLE_ENTITY, "schedule")
    );

    // Resume needs a paused check; pause then resume makes it new again.
    let resume = format!("/checks/{id}/resume");
    let (status, _) = app.api(Method::POST, &resume, Some(RW_KEY), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(app.ping(&updated, "").await.0, 200);
    let (status, paused) = app
        .api(
            Method::POST,
            &format!("/checks/{id}/pause"),
            Some(RW_KEY),
            None,
        )
        .await;
    assert_eq!(
        (status, paused["status"].as_str()),
        (StatusCode::OK, Some("paused"))
    );
    let (status, resumed) = app.api(Method::POST, &resume, Some(RW_KEY), None).await;
    assert_eq!(
        (status, resumed["status"].as_str()),
        (StatusCode::OK, Some("new"))
    );
    assert_eq!(resumed["last_ping"], Value::Null);
    let flips: Vec<(String, String)> = app
        .flips(&check)
        .await
        .iter()
        .map(|f| {
            (
                f["old_status"].as_str().unwrap().into(),
                f["new_status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        flips,
        [
            ("paused".into(), "new".into()),
            ("up".into(), "paused".into()),
            ("new".into(), "up".into())
        ]
    );

    let (status, deleted) = app
        .api(Method::DELETE, &format!("/checks/{id}"), Some(RW_KEY), None)
        .await;
    assert_eq!(
        (status, deleted["id"].as_str()),
        (StatusCode::OK, Some(id.as_str()))
    );
    let (status, _) = app
        .api(Method::GET, &format!("/checks/{id}"), Some(RW_KEY), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.ping(&updated, "").await.0,
        404,
        "its ping URL is gone too"
    );
}
