//! The management API against a real PostgreSQL: keys, environments, flag CRUD,
//! validation with JSON paths, the audit log, and import/export.

#![allow(clippy::unwrap_used)]

mod common;

use axum::http::StatusCode;
use common::{ADMIN_KEY, TestApp, bool_flag};
use reqwest::Method;
use serde_json::{Value, json};

fn field(body: &Value) -> &str {
    body["error"]["field"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn flag_crud_is_audited_and_validated_with_paths() {
    let app = TestApp::spawn().await;

    // The admin key is required.
    let (status, body) = app.api_as(None, Method::GET, "/environments", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = app
        .api_as(
            Some("wrong-key-0123456789"),
            Method::GET,
            "/environments",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    app.create_env("production").await;
    let (status, _) = app
        .api(
            Method::POST,
            "/environments",
            Some(json!({"name": "production"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, body) = app
        .api(
            Method::POST,
            "/environments",
            Some(json!({"name": "Prod Env"})),
        )
        .await;
    assert_eq!(
        (status, field(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "name")
    );

    // Create, read, update, list, delete.
    app.set_now("2026-02-01T10:00:00Z");
    let (status, body) = app.put_flag("production", "new-ui", bool_flag("off")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .api(Method::GET, "/environments/production/flags/new-ui", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["definition"], bool_flag("off"));

    app.set_now("2026-02-01T11:00:00Z");
    let (status, _) = app.put_flag("production", "new-ui", bool_flag("on")).await;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = app
        .api(Method::GET, "/environments/production/flags", None)
        .await;
    assert_eq!(list["flags"].as_array().unwrap().len(), 1);
    assert_eq!(list["flags"][0]["definition"]["defaultVariant"], "on");

    // Invalid writes: 422 naming the JSON path, and nothing stored or audited.
    let cases = [
        (
            json!({"state": "ENABLED", "variants": {"a": 1, "b": "x"}}),
            "variants.b",
        ),
        (
            json!({"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "z"}),
            "defaultVariant",
        ),
        (json!({"state": "ON", "variants": {"a": 1}}), "state"),
        (
            json!({"state": "ENABLED", "variants": {"a": 1},
                "targeting": {"if": [{"matches": [{"var": "x"}, "y"]}, "a", null]}}),
            "targeting.if[0].matches",
        ),
        (
            json!({"state": "ENABLED", "variants": {"a": 1, "b": 2},
                "targeting": {"fractional": [{"var": "targetingKey"}, ["a", 60], ["b", -40]]}}),
            "targeting.fractional[2][1]",
        ),
        (
            json!({"state": "ENABLED", "variants": {"a": 1}, "targeting": {"$ref": "nope"}}),
            "targeting.$ref",
        ),
        (json!(["not", "an", "object"]), "$"),
    ];
    for (def, want) in cases {
        let (status, body) = app.put_flag("production", "bad", def.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{def}: {body}");
        assert_eq!(field(&body), want, "{def}: {body}");
    }
    let (status, body) = app.put_flag("production", "k", json!("{")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let resp = app
        .client
        .put(format!(
            "{}/api/v1/environments/production/flags/big",
            app.base
        ))
        .header("x-api-key", ADMIN_KEY)
        .body(" ".repeat(300 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    assert_eq!(
        app.count("SELECT count(*) FROM flags WHERE key <> 'new-ui'")
            .await,
        0
    );

    // Unknown environment and flag.
    let (status, _) = app.put_flag("staging", "x", bool_flag("on")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .api(Method::GET, "/environments/production/flags/nope", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    app.set_now("2026-02-01T12:00:00Z");
    let (status, _) = app
        .api(
            Method::DELETE,
            "/environments/production/flags/new-ui",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app
        .api(
            Method::DELETE,
            "/environments/production/flags/new-ui",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The history: newest first, with before, after and the time of each change.
    let (status, history) = app.api(Method::GET, "/flags/new-ui/history", None).await;
    assert_eq!(status, StatusCode::OK);
    let h = history["history"].as_array().unwrap();
    let actions: Vec<&str> = h.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["delete", "update", "create"]);
    assert_eq!(h[2]["before"], Value::Null);
    assert_eq!(h[2]["after"], bool_flag("off"));
    assert_eq!(h[1]["before"], bool_flag("off"));
    assert_eq!(h[1]["after"], bool_flag("on"));
    assert_eq!(h[0]["after"], Value::Null);
    assert_eq!(h[0]["environment"], "production");
    assert_eq!(h[0]["actor"], "admin");
    assert_eq!(h[2]["at"], "2026-02-01T10:00:00Z");
    let (_, filtered) = app
        .api(
            Method::GET,
            "/flags/new-ui/history?environment=production&limit=1",
            None,
        )
        .await;
    assert_eq!(filtered["history"].as_array().unwrap().len(), 1);
    let (status, body) = app
        .api(Method::GET, "/flags/new-ui/history?limit=0", None)
        .await;
    assert_eq!(
        (status, field(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "limit")
    );
}

#[tokio::test]
async fn import_export_round_trip_and_sdk_keys() {
    let app = TestApp::spawn().await;
    app.create_env("development").await;
    app.create_env("production").await;

    let file = json!({
        "$evaluators": {"is_staff": {"ends_with": [{"var": "email"}, "@example.com"]}},
        "metadata": {"flagSetId": "shop"},
        "flags": {
            "checkout": {"state": "ENABLED", "variants": {"old": "v1", "new": "v2"},
                "defaultVariant": "old",
                "targeting": {"if": [{"$ref": "is_staff"}, "new", null]},
                "metadata": {"owner": "payments"}},
            "price": {"state": "DISABLED", "variants": {"low": 1.5, "high": 2.0},
                "defaultVariant": "low"},
            "rollout": {"state": "ENABLED", "variants": {"a": {"x": 1}, "b": {}},
                "defaultVariant": "a",
                "targeting": {"fractional": [["a", 50], ["b", 50]]}}
        }
    });
    let (status, body) = app
        .api(
            Method::POST,
            "/environments/development/import",
            Some(file.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["created"], 3);
    let (_, exported) = app
        .api(Method::GET, "/environments/development/export", None)
        .await;
    assert_eq!(
        exported, file,
        "export returns what was imported, floats included"
    );

    // Moving the flags to another environment is an export then an import.
    let (status, _) = app
        .api(
            Method::POST,
            "/environments/production/import",
            Some(exported),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, prod) = app
        .api(Method::GET, "/environments/production/export", None)
        .await;
    assert_eq!(prod, file);

    // A second import replaces: one changed, one removed, one unchanged.
    let mut next = file.clone();
    next["flags"]["price"]["state"] = json!("ENABLED");
    next["flags"].as_object_mut().unwrap().remove("rollout");
    let (_, body) = app
        .api(Method::POST, "/environments/development/import", Some(next))
        .await;
    assert_eq!(
        body,
        json!({"created": 0, "updated": 1, "deleted": 1, "unchanged": 1})
    );
    let (_, history) = app
        .api(
            Method::GET,
            "/flags/rollout/history?environment=development",
            None,
        )
        .await;
    let actions: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["delete", "create"]);

    // A bad file is refused whole, at the path of its first problem.
    let mut bad = file.clone();
    bad["flags"]["checkout"]["variants"]["new"] = json!(2);
    let (status, body) = app
        .api(Method::POST, "/environments/development/import", Some(bad))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field(&body), "flags.checkout.variants.new");
    let mut bad = file.clone();
    bad["$evaluators"]["is_staff"] = json!({"like": ["a", "b"]});
    let (_, body) = app
        .api(Method::POST, "/environments/development/import", Some(bad))
        .await;
    assert_eq!(field(&body), "$evaluators.is_staff.like");

    // SDK keys: shown once, listed without the key, revoked; only a hash is stored.
    let key = app.sdk_key("production").await;
    assert!(key.starts_with("fb_") && key.len() > 40);
    let (_, list) = app
        .api(Method::GET, "/environments/production/sdk-keys", None)
        .await;
    let listed = &list["keys"][0];
    assert!(listed.get("key").is_none());
    assert_eq!(listed["revoked_at"], Value::Null);
    let stored: i64 = app
        .count(&format!(
            "SELECT count(*) FROM sdk_keys WHERE key_hash = sha256('{key}'::bytea)"
        ))
        .await;
    assert_eq!(stored, 1);
    let id = listed["id"].as_str().unwrap();
    let (status, _) = app
        .api(
            Method::DELETE,
            &format!("/environments/production/sdk-keys/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, list) = app
        .api(Method::GET, "/environments/production/sdk-keys", None)
        .await;
    assert_ne!(list["keys"][0]["revoked_at"], Value::Null);
    let (status, _) = app
        .api(
            Method::DELETE,
            "/environments/development/sdk-keys/00000000-0000-0000-0000-000000000000",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
