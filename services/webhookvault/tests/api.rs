//! The admin API against a real PostgreSQL: keys, sources and destinations (secrets never
//! shown after creation), validation, and event listing with filters and cursor pages.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;

use common::{ADMIN_KEY, TestApp};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn the_api_needs_the_admin_key() {
    let app = TestApp::spawn().await;
    let url = format!("{}/api/v1/sources", app.base);
    let none = app.client.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let body: Value = none.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let wrong = app
        .client
        .get(&url)
        .header("x-api-key", "admin-key-0123456789abcdeX")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let bearer = app
        .client
        .get(&url)
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
}

#[tokio::test]
async fn sources_are_created_listed_updated_and_deleted_without_showing_their_secret() {
    let app = TestApp::spawn().await;
    let secret = "github-secret-do-not-show";
    let source = app.source("github", Some(secret), "mark").await;
    let id = source["id"].as_str().unwrap();
    assert_eq!(source["ingest_url"], format!("{}/in/{id}", app.base));
    assert_eq!(source["has_secret"], true);
    assert!(!source.to_string().contains(secret));

    let listed = app.get("/sources").await;
    assert_eq!(listed["sources"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(secret));

    // A scheme change needs a secret that fits the new scheme.
    let (status, body) = app
        .api(
            Method::PATCH,
            &format!("/sources/{id}"),
            Some(json!({"scheme": "standard_webhooks"})),
        )
        .await;
    assert_eq!(
        (status.as_u16(), body["error"]["field"].as_str()),
        (422, Some("secret"))
    );
    let (status, body) = app
        .api(
            Method::PATCH,
            &format!("/sources/{id}"),
            Some(json!({"scheme": "none", "name": "renamed"})),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{body}");
    assert_eq!(
        (body["name"].as_str(), body["has_secret"].as_bool()),
        (Some("renamed"), Some(false))
    );

    let got = app.get(&format!("/sources/{id}")).await;
    assert_eq!(got["destinations"], json!([]));
    let (status, _) = app
        .api(Method::DELETE, &format!("/sources/{id}"), None)
        .await;
    assert_eq!(status.as_u16(), 200);
    let (status, body) = app.api(Method::GET, &format!("/sources/{id}"), None).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, _) = app.api(Method::GET, "/sources/not-a-uuid", None).await;
    assert_eq!(status.as_u16(), 404);
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    for (body, field) in [
        (json!({"name": "x"}), "scheme"),
        (json!({"scheme": "none"}), "name"),
        (json!({"name": "x", "scheme": "github"}), "secret"),
        (
            json!({"name": "x", "scheme": "none", "colour": 1}),
            "colour",
        ),
    ] {
        let (status, answer) = app.api(Method::POST, "/sources", Some(body.clone())).await;
        assert_eq!(status.as_u16(), 422, "{body}");
        assert_eq!(answer["error"]["field"], field, "{body}");
    }
    let resp = app
        .client
        .post(format!("{}/api/v1/sources", app.base))
        .header("x-api-key", ADMIN_KEY)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);

    let source = app.open_source().await;
    let id = source["id"].as_str().unwrap();
    let path = format!("/sources/{id}/destinations");
    for (body, field) in [
        (json!({}), "url"),
        (json!({"url": "file:///etc/passwd"}), "url"),
        (
            json!({"url": "http://x.example", "headers": {"host": "y"}}),
            "headers.host",
        ),
        (
            json!({"url": "http://x.example", "rate_limit": 100_000}),
            "rate_limit",
        ),
    ] {
        let (status, answer) = app.api(Method::POST, &path, Some(body.clone())).await;
        assert_eq!(status.as_u16(), 422, "{body}");
        assert_eq!(answer["error"]["field"], field, "{body}");
    }
    let (status, _) = app
        .api(
            Method::POST,
            &format!("/sources/{}/destinations", uuid::Uuid::new_v4()),
            Some(json!({"url": "http://x.example"})),
        )
        .await;
    assert_eq!(status.as_u16(), 404);
}

#[tokio::test]
async fn destinations_keep_their_secret_to_themselves_and_can_be_disabled() {
    let app = TestApp::spawn().await;
    let source = app.open_source().await;
    let given = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let dest = app
        .destination(
            &source,
            json!({"url": "https://hooks.example/in", "secret": given,
                                      "headers": {"authorization": "Bearer token-123"}}),
        )
        .await;
    assert_eq!(dest["secret"], given);
    let id = dest["id"].as_str().unwrap();
    let (status, updated) = app
        .api(
            Method::PATCH,
            &format!("/destinations/{id}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(updated["enabled"], false);
    let listed = app
        .get(&format!(
            "/sources/{}/destinations",
            source["id"].as_str().unwrap()
        ))
        .await;
    let text = listed.to_string();
    assert!(
        !text.contains(given) && !text.contains("token-123"),
        "{text}"
    );

    // A disabled destination gets no deliveries from new events.
    let (_, answer) = app.ingest(&source, &[], "{}").await;
    let states = app.delivery_states(answer["id"].as_str().unwrap()).await;
    assert!(states.is_empty(), "{states:?}");
    let (status, _) = app
        .api(Method::DELETE, &format!("/destinations/{id}"), None)
        .await;
    assert_eq!(status.as_u16(), 200);
}

#[tokio::test]
async fn events_list_newest_first_in_cursor_pages_with_filters() {
    let app = TestApp::spawn().await;
    let source = app.source("github", Some("s3cret"), "mark").await;
    let id = source["id"].as_str().unwrap();
    // Ten events a second apart; every third with a valid signature.
    let t0 = 1_800_000_000;
    let mut valid = 0;
    for i in 0..10 {
        app.pin(Some(t0 + i));
        let body = format!("{{\"n\": {i}}}");
        let sig = if i % 3 == 0 {
            valid += 1;
            github_sig("s3cret", body.as_bytes())
        } else {
            "sha256=00".to_owned()
        };
        let (status, _) = app
            .ingest(&source, &[("x-hub-signature-256", sig.as_str())], body)
            .await;
        assert_eq!(status, 200);
    }

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/sources/{id}/events?limit=4");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = app.get(&path).await;
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= 4);
        seen.extend(
            events
                .iter()
                .map(|e| e["received_at"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 10);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 10);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first");

    let valid_only = app
        .get(&format!("/sources/{id}/events?signature=valid"))
        .await;
    assert_eq!(valid_only["events"].as_array().unwrap().len(), valid);
    let since = chrono::DateTime::from_timestamp(t0 + 5, 0)
        .unwrap()
        .to_rfc3339();
    let until = chrono::DateTime::from_timestamp(t0 + 8, 0)
        .unwrap()
        .to_rfc3339();
    let window = app
        .get(&format!(
            "/sources/{id}/events?since={}&until={}",
            urlencode(&since),
            urlencode(&until)
        ))
        .await;
    assert_eq!(window["events"].as_array().unwrap().len(), 3);
    let none_state = app.get(&format!("/sources/{id}/events?state=none")).await;
    assert_eq!(none_state["events"].as_array().unwrap().len(), 10);

    for bad in [
        "signature=maybe",
        "state=lost",
        "cursor=xyz",
        "limit=0",
        "since=yesterday",
    ] {
        let (status, body) = app
            .api(Method::GET, &format!("/sources/{id}/events?{bad}"), None)
            .await;
        assert_eq!(status.as_u16(), 422, "{bad}: {body}");
    }

    // A well-formed cursor holding a time PostgreSQL cannot take is the client's error.
    use base64::Engine as _;
    let crafted = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("-8000000000000000000|{}", uuid::Uuid::new_v4()));
    for path in [
        format!("/sources/{id}/events?cursor={crafted}"),
        format!("/dead-letters?cursor={crafted}"),
    ] {
        let (status, body) = app.api(Method::GET, &path, None).await;
        assert_eq!(status.as_u16(), 422, "{path}: {body}");
        assert_eq!(body["error"]["field"], "cursor", "{path}: {body}");
    }
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

fn github_sig(secret: &str, body: &[u8]) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}
