//! Ingest against a real PostgreSQL: the public signature vectors through `/in/{id}`, the
//! cases file, byte-for-byte storage, size limits (declared and chunked), duplicates, and
//! the bad-signature policies.

#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine as _;
use common::TestApp;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const A_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const A_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const A_TS: i64 = 1_614_265_330;
const A_BODY: &[u8] = br#"{"test": 2432232314}"#;
const A_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

type Headers<'a> = Vec<(&'a str, &'a str)>;

fn std_headers<'a>(id: &'a str, ts: &'a str, sig: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("webhook-id", id),
        ("webhook-timestamp", ts),
        ("webhook-signature", sig),
        ("content-type", "application/json"),
    ]
}

async fn events(app: &TestApp) -> i64 {
    app.count("SELECT count(*) FROM events").await
}

#[tokio::test]
async fn standard_webhooks_vectors_pass_and_their_failures_are_refused_with_nothing_stored() {
    let app = TestApp::spawn().await;
    let source = app
        .source("standard_webhooks", Some(A_SECRET), "reject")
        .await;
    let ts = A_TS.to_string();
    app.pin(Some(A_TS));

    // Vector A: stored, byte-identical, marked valid.
    let (status, answer) = app
        .ingest(&source, &std_headers(A_ID, &ts, A_SIG), A_BODY)
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["signature"], "valid");
    let id = answer["id"].as_str().unwrap();
    assert_eq!(app.stored_body(id).await, A_BODY);

    // Each of these is refused with 401 and leaves nothing behind.
    let tampered = br#"{"test": 2432232315}"#;
    let last_char = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=";
    let refused: Vec<(Headers<'_>, &[u8], &str)> = vec![
        (std_headers("msg_2", &ts, A_SIG), tampered, "tampered body"),
        (
            std_headers("msg_3", &ts, last_char),
            A_BODY,
            "last character changed",
        ),
        (std_headers("msg_4", &ts, "v1,"), A_BODY, "v1, alone"),
        (
            std_headers("msg_5", &ts, &A_SIG[..8]),
            A_BODY,
            "first 8 characters",
        ),
        (
            vec![
                ("webhook-timestamp", ts.as_str()),
                ("webhook-signature", A_SIG),
            ],
            A_BODY,
            "webhook-id missing",
        ),
        (
            vec![("webhook-id", A_ID), ("webhook-signature", A_SIG)],
            A_BODY,
            "webhook-timestamp missing",
        ),
        (
            vec![("webhook-id", A_ID), ("webhook-timestamp", ts.as_str())],
            A_BODY,
            "webhook-signature missing",
        ),
    ];
    for (headers, body, what) in refused {
        let (status, answer) = app.ingest(&source, &headers, body.to_vec()).await;
        assert_eq!(status, 401, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], "bad_signature", "{what}");
    }

    // 301 s either side of "now" is outside the tolerance; 300 s is inside.
    for (now, message) in [
        (A_TS + 301, "timestamp too old"),
        (A_TS - 301, "timestamp too far in the future"),
    ] {
        app.pin(Some(now));
        let (status, answer) = app
            .ingest(&source, &std_headers(A_ID, &ts, A_SIG), A_BODY)
            .await;
        assert_eq!(
            (status, answer["error"]["message"].as_str()),
            (401, Some(message))
        );
    }
    assert_eq!(events(&app).await, 1);

    // Several signatures: passes if any is valid (a new id, so it is not a duplicate).
    app.pin(Some(A_TS + 300));
    let b_secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let other = app
        .source("standard_webhooks", Some(b_secret), "reject")
        .await;
    let b_body = br#"{"email":"test@example.com","username":"test_user"}"#;
    let b_sig = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
    let several = format!("v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {b_sig}");
    app.pin(Some(1_649_367_553));
    let headers = std_headers("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", "1649367553", &several);
    let (status, answer) = app.ingest(&other, &headers, b_body.to_vec()).await;
    assert_eq!(status, 200, "{answer}");
    // Vector B's signature against vector A's source (the wrong secret) fails.
    let (status, _) = app.ingest(&source, &headers, b_body.to_vec()).await;
    assert_eq!(status, 401);
    assert_eq!(events(&app).await, 2);
}

#[tokio::test]
async fn an_empty_standard_secret_is_refused_when_the_source_is_saved() {
    let app = TestApp::spawn().await;
    for secret in ["whsec_", ""] {
        let (status, body) = app
            .api(
                reqwest::Method::POST,
                "/sources",
                Some(
                    serde_json::json!({"name": "x", "scheme": "standard_webhooks",
                                        "secret": secret}),
                ),
            )
            .await;
        assert_eq!(status.as_u16(), 422, "{body}");
        assert_eq!(body["error"]["field"], "secret");
    }
}

#[tokio::test]
async fn case_1_reserialised_json_does_not_verify_but_the_original_bytes_do() {
    let app = TestApp::spawn().await;
    let source = app
        .source("standard_webhooks", Some(A_SECRET), "reject")
        .await;
    app.pin(Some(A_TS));
    let ts = A_TS.to_string();
    let (status, answer) = app
        .ingest(&source, &std_headers(A_ID, &ts, A_SIG), A_BODY)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        app.stored_body(answer["id"].as_str().unwrap()).await,
        A_BODY
    );
    let minified = br#"{"test":2432232314}"#;
    let (status, _) = app
        .ingest(
            &source,
            &std_headers("msg_x", &ts, A_SIG),
            minified.to_vec(),
        )
        .await;
    assert_eq!(status, 401);
}

fn github_sig(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

#[tokio::test]
async fn github_vector_form_encoded_case_2_and_delivery_dedupe() {
    let app = TestApp::spawn().await;
    let secret = "It's a Secret to Everybody";
    let source = app.source("github", Some(secret), "reject").await;
    let official = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(github_sig(secret, b"Hello, World!"), official);

    let headers = [
        ("x-hub-signature-256", official),
        ("x-github-delivery", "guid-1"),
    ];
    let (status, first) = app.ingest(&source, &headers, "Hello, World!").await;
    assert_eq!(
        (status, first["duplicate"].as_bool()),
        (200, Some(false)),
        "{first}"
    );
    // A redelivery reuses the GUID: stored once, answered 200 with the same event.
    let (status, again) = app.ingest(&source, &headers, "Hello, World!").await;
    assert_eq!((status, again["duplicate"].as_bool()), (200, Some(true)));
    assert_eq!(again["id"], first["id"]);
    let (status, _) = app.ingest(&source, &headers, "Hello, World!\n").await;
    assert_eq!(status, 401);

    // Case 2: a form-encoded payload, signed over its bytes as sent.
    let form = "payload=%7B%22a%22%3A1%7D";
    let sig = github_sig(secret, form.as_bytes());
    let headers = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("x-hub-signature-256", sig.as_str()),
        ("x-github-delivery", "guid-2"),
    ];
    let (status, answer) = app.ingest(&source, &headers, form).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["id"].as_str().unwrap();
    assert_eq!(app.stored_body(id).await, form.as_bytes());
    let event = app.get(&format!("/events/{id}")).await;
    assert_eq!(event["content_type"], "application/x-www-form-urlencoded");
    assert_eq!(event["body"], form);
    assert_eq!(event["delivery_id"], "guid-2");
    assert_eq!(app.count("SELECT count(*) FROM events").await, 2);
}

#[tokio::test]
async fn stripe_signatures_verify_with_several_v1_and_dedupe_on_the_event_id() {
    let app = TestApp::spawn().await;
    let source = app
        .source("stripe", Some("whsec_test_secret"), "reject")
        .await;
    let body = r#"{"id":"evt_1","object":"event"}"#;
    let good = "0c8670ed117751cc551a20e35839447075c42800ea3cf3e8a2fbda99cd1e6edd";
    let decoy = "0c8670ed117751cc551a20e35839447075c42800ea3cf3e8a2fbda99cd1e6ede";
    app.pin(Some(1_700_000_000));
    let header = format!("t=1700000000,v1={decoy},v1={good}");
    let (status, first) = app
        .ingest(&source, &[("stripe-signature", &header)], body)
        .await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = app
        .ingest(&source, &[("stripe-signature", &header)], body)
        .await;
    assert_eq!((status, &again["id"]), (200, &first["id"]));
    assert_eq!(again["duplicate"], true);

    let only_decoy = format!("t=1700000000,v1={decoy}");
    let (status, _) = app
        .ingest(&source, &[("stripe-signature", &only_decoy)], body)
        .await;
    assert_eq!(status, 401);
    app.pin(Some(1_700_000_301));
    let (status, answer) = app
        .ingest(&source, &[("stripe-signature", &header)], body)
        .await;
    assert_eq!(
        (status, answer["error"]["message"].as_str()),
        (401, Some("timestamp too old"))
    );
    assert_eq!(app.count("SELECT count(*) FROM events").await, 1);
}

#[tokio::test]
async fn case_3_and_4_crlf_and_non_utf8_bodies_are_kept_byte_for_byte() {
    let app = TestApp::spawn().await;
    let source = app
        .source("standard_webhooks", Some(A_SECRET), "reject")
        .await;
    app.pin(Some(A_TS));
    let ts = A_TS.to_string();

    let crlf = b"{\"test\": 2432232314}\r\n".to_vec();
    let sig = "v1,NNKfhhzZRvz6NOA7hZKlzVMhIQYJt9HZbZPHgEyTndE=";
    let (status, answer) = app
        .ingest(&source, &std_headers("m1", &ts, sig), crlf.clone())
        .await;
    // The derived vector signs vector A's id; another id must not verify with it.
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = app
        .ingest(&source, &std_headers(A_ID, &ts, sig), crlf.clone())
        .await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["id"].as_str().unwrap().to_owned();
    assert_eq!(app.stored_body(&id).await.len(), crlf.len());
    assert_eq!(
        app.get(&format!("/events/{id}")).await["body_size"],
        crlf.len()
    );
    let trimmed = crlf[..crlf.len() - 2].to_vec();
    let (status, _) = app
        .ingest(&source, &std_headers("m2", &ts, sig), trimmed)
        .await;
    assert_eq!(status, 401);

    // Case 4: not UTF-8. A new source, since vector A's id is taken on the first one.
    let source = app
        .source("standard_webhooks", Some(A_SECRET), "reject")
        .await;
    let bytes = vec![0xFF, 0xFE, 0x7B, 0x22, 0x61, 0x22, 0x3A, 0x31, 0x7D];
    let sig = "v1,8ob4FFWsEmw6j0gFb7riE4CWFeEe485rX7jxlsdL7lg=";
    let headers = [
        ("webhook-id", A_ID),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", sig),
        ("content-type", "application/octet-stream"),
    ];
    let (status, answer) = app.ingest(&source, &headers, bytes.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["id"].as_str().unwrap();
    assert_eq!(app.stored_body(id).await, bytes);

    let event = app.get(&format!("/events/{id}")).await;
    assert!(event.get("body").is_none(), "{event}");
    let shown = base64::engine::general_purpose::STANDARD
        .decode(event["body_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(shown, bytes);

    let raw = app
        .client
        .get(format!("{}/api/v1/events/{id}/raw", app.base))
        .header("x-api-key", common::ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 200);
    assert_eq!(raw.headers()["content-type"], "application/octet-stream");
    assert_eq!(
        raw.headers()["x-original-content-type"],
        "application/octet-stream"
    );
    assert_eq!(raw.bytes().await.unwrap().to_vec(), bytes);
}

/// Sends a raw chunked request to `path` with `size` body bytes; returns the status line.
async fn chunked(base: &str, path: &str, size: usize) -> String {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'x'; 1000];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len());
        let framed = [format!("{n:x}\r\n").as_bytes(), &chunk[..n], b"\r\n"].concat();
        if stream.write_all(&framed).await.is_err() {
            break; // the server answered and closed early
        }
        left -= n;
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn case_5_one_byte_over_the_limit_is_413_with_or_without_a_length_and_nothing_is_stored() {
    let limit = 64 * 1024;
    let app = TestApp::spawn_with(|c| c.body_limit = limit).await;
    let source = app.open_source().await;
    let path = format!("/in/{}", source["id"].as_str().unwrap());

    let (status, answer) = app.ingest(&source, &[], vec![b'x'; limit + 1]).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"]["code"], "too_large");
    assert!(chunked(&app.base, &path, limit + 1).await.contains(" 413 "));
    assert_eq!(app.count("SELECT count(*) FROM events").await, 0);

    // Exactly the limit is fine, both ways.
    let (status, _) = app.ingest(&source, &[], vec![b'x'; limit]).await;
    assert_eq!(status, 200);
    assert!(chunked(&app.base, &path, limit).await.contains(" 200 "));
    assert_eq!(app.count("SELECT count(*) FROM events").await, 2);
}

#[tokio::test]
async fn concurrent_duplicates_are_stored_once_and_all_answered_200() {
    let app = TestApp::spawn().await;
    let source = app.open_source().await;
    let url = source["ingest_url"].as_str().unwrap().to_owned();
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (client, url) = (app.client.clone(), url.clone());
        sends.spawn(async move {
            let resp = client
                .post(url)
                .header("webhook-id", "dup-1")
                .body("{}")
                .send()
                .await;
            let resp = resp.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        });
    }
    let answers = sends.join_all().await;
    let ids: std::collections::HashSet<String> = answers
        .iter()
        .map(|(status, a)| {
            assert_eq!(*status, 200, "{a}");
            a["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(app.count("SELECT count(*) FROM events").await, 1);
    let fresh = answers
        .iter()
        .filter(|(_, a)| a["duplicate"] == false)
        .count();
    assert_eq!(fresh, 1);
}

#[tokio::test]
async fn a_marking_source_stores_bad_signatures_marked_and_does_not_forward_them() {
    let app = TestApp::spawn().await;
    let source = app
        .source("standard_webhooks", Some(A_SECRET), "mark")
        .await;
    app.destination(
        &source,
        serde_json::json!({"url": "http://127.0.0.1:9/hook"}),
    )
    .await;
    app.pin(Some(A_TS));
    let ts = A_TS.to_string();
    let (status, answer) = app
        .ingest(&source, &std_headers(A_ID, &ts, "v1,bm9wZQ=="), A_BODY)
        .await;
    assert_eq!(
        (status, answer["signature"].as_str()),
        (200, Some("invalid"))
    );
    let id = answer["id"].as_str().unwrap();
    let event = app.get(&format!("/events/{id}")).await;
    assert_eq!(event["signature_error"], "no signature matches");
    // It claimed no delivery id: the genuine delivery with that id is still accepted.
    assert_eq!(event["delivery_id"], Value::Null);
    assert_eq!(app.delivery_states(id).await.len(), 0);
    let (status, answer) = app
        .ingest(&source, &std_headers(A_ID, &ts, A_SIG), A_BODY)
        .await;
    assert_eq!((status, answer["duplicate"].as_bool()), (200, Some(false)));
    assert_eq!(
        app.delivery_states(answer["id"].as_str().unwrap())
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn any_method_path_and_query_is_stored_and_unknown_sources_are_404() {
    let app = TestApp::spawn().await;
    let source = app.open_source().await;
    let url = format!(
        "{}/sub/path?x=1&y=%20",
        source["ingest_url"].as_str().unwrap()
    );
    let resp = app
        .client
        .put(&url)
        .header("x-custom", "kept")
        .body("put body")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let event = app.get(&format!("/events/{id}")).await;
    assert_eq!(event["method"], "PUT");
    assert!(event["path"].as_str().unwrap().ends_with("/sub/path"));
    assert_eq!(event["query"], "x=1&y=%20");
    let headers = event["headers"].as_array().unwrap();
    assert!(
        headers.iter().any(|h| h[0] == "x-custom" && h[1] == "kept"),
        "{event}"
    );

    // A trailing slash is a path below the source too.
    let (status, answer) = app
        .ingest(
            &json!({"ingest_url": format!("{}/", source["ingest_url"].as_str().unwrap())}),
            &[],
            "slash",
        )
        .await;
    assert_eq!(status, 200, "{answer}");

    let resp = app
        .client
        .get(format!("{}/in/{}", app.base, uuid::Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = app
        .client
        .get(format!("{}/in/nope", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

/// Opens a raw request to `path` declaring `length` body bytes with `Expect: 100-continue`,
/// and returns once the server has started reading the body (it answered `100 Continue`),
/// by which time the body's share of the ingest budget is taken.
async fn held_open(base: &str, path: &str, length: usize) -> tokio::net::TcpStream {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        seen.push(byte[0]);
    }
    let seen = String::from_utf8_lossy(&seen).into_owned();
    assert!(seen.starts_with("HTTP/1.1 100 "), "{seen}");
    stream
}

/// Reads the answer to the end; returns the status line and the body.
async fn answer_of(mut stream: tokio::net::TcpStream) -> (String, String) {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.lines().next().unwrap_or("").to_owned();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn bodies_past_the_ingest_budget_get_503_with_retry_after_while_small_ones_pass() {
    let app = TestApp::spawn_with(|c| {
        c.body_limit = 64 * 1024;
        c.ingest_budget_kib = 64;
        c.ingest_budget_wait = std::time::Duration::from_millis(200);
    })
    .await;
    let source = app.open_source().await;
    let path = format!("/in/{}", source["id"].as_str().unwrap());

    // One large body in flight holds 59 of the 64 KiB.
    let large = 60_000;
    let mut held = held_open(&app.base, &path, large).await;

    // Concurrent large bodies cannot get their share: 503, Retry-After, JSON, nothing stored.
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (client, url) = (
            app.client.clone(),
            source["ingest_url"].as_str().unwrap().to_owned(),
        );
        sends.spawn(async move {
            let resp = client
                .post(url)
                .body(vec![b'x'; large])
                .send()
                .await
                .unwrap();
            let retry_after = resp.headers().get("retry-after").cloned();
            (
                resp.status().as_u16(),
                retry_after,
                resp.json::<Value>().await.unwrap(),
            )
        });
    }
    for (status, retry_after, answer) in sends.join_all().await {
        assert_eq!(status, 503, "{answer}");
        assert_eq!(answer["error"]["code"], "busy");
        assert_eq!(retry_after.unwrap(), "1");
    }
    // A small one fits in what is left.
    let (status, answer) = app.ingest(&source, &[], vec![b's'; 1000]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(events(&app).await, 1);

    // The held one completes, and gives its share back.
    held.write_all(&vec![b'x'; large]).await.unwrap();
    let (status, body) = answer_of(held).await;
    assert!(status.contains(" 200 "), "{status} {body}");
    let (status, answer) = app.ingest(&source, &[], vec![b'x'; large]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(events(&app).await, 3);
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_nothing_is_stored() {
    let app = TestApp::spawn_with(|c| c.body_timeout = std::time::Duration::from_millis(300)).await;
    let source = app.open_source().await;
    let path = format!("/in/{}", source["id"].as_str().unwrap());

    let mut stream = held_open(&app.base, &path, 1000).await;
    stream.write_all(&[b'x'; 10]).await.unwrap();
    // The rest never comes: the server answers on its own.
    let (status, body) = answer_of(stream).await;
    assert!(status.contains(" 408 "), "{status}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "timeout");
    assert_eq!(body["error"]["field"], "body");
    assert_eq!(events(&app).await, 0);

    // The same chunked: no length declared, the first chunk sent, then nothing.
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n5\r\nhello\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (status, _) = answer_of(stream).await;
    assert!(status.contains(" 408 "), "{status}");
    assert_eq!(events(&app).await, 0);
}

fn stripe_sig(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

#[tokio::test]
async fn a_stripe_event_id_with_a_nul_is_stored_without_dedupe_and_fails_no_other_request() {
    let app = TestApp::spawn_with(|c| c.ingest_writers = 1).await;
    let stripe = app.source("stripe", Some("whsec_nul"), "reject").await;
    let open = app.open_source().await;
    app.pin(Some(1_700_000_000));
    let body = br#"{"id":"evt_\u0000x","object":"event"}"#;
    let sig = stripe_sig("whsec_nul", 1_700_000_000, body);

    let mut sends = tokio::task::JoinSet::new();
    for i in 0..40 {
        let client = app.client.clone();
        let (url, header, body) = if i % 10 == 0 {
            (stripe["ingest_url"].clone(), sig.clone(), body.to_vec())
        } else {
            (open["ingest_url"].clone(), String::new(), b"{}".to_vec())
        };
        sends.spawn(async move {
            let mut req = client.post(url.as_str().unwrap()).body(body);
            if !header.is_empty() {
                req = req.header("stripe-signature", header);
            }
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        });
    }
    for (status, answer) in sends.join_all().await {
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["duplicate"], false, "{answer}");
    }
    assert_eq!(events(&app).await, 40);
    let keyed = app
        .count("SELECT count(*) FROM events WHERE delivery_key IS NOT NULL")
        .await;
    assert_eq!(keyed, 0);
}

#[tokio::test]
async fn a_batch_the_database_refuses_is_recorded_one_by_one_so_only_the_bad_request_fails() {
    use webhookvault::ingest::{Incoming, Outcome, Writers};
    let app = TestApp::spawn().await;
    let source = app.open_source().await;
    let source_id: uuid::Uuid = source["id"].as_str().unwrap().parse().unwrap();
    let writers = Writers::spawn(&app.pool, 1);
    let request = |path: &str| Incoming {
        source_id,
        received_at: chrono::Utc::now(),
        method: "POST".into(),
        path: path.into(),
        query: None,
        headers: axum::http::HeaderMap::new(),
        body: axum::body::Bytes::from_static(b"{}"),
    };
    // All handed over before the writer runs, so they meet in one batch; a NUL in a text
    // column makes PostgreSQL refuse the whole statement.
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..21 {
        let (writers, request) = (
            writers.clone(),
            request(if i == 7 { "/in/bad\0" } else { "/in/good" }),
        );
        sends.spawn(async move { (i, writers.submit(request, None).await) });
    }
    for (i, result) in sends.join_all().await {
        if i == 7 {
            assert!(result.is_err());
        } else {
            assert!(
                matches!(result, Ok(Outcome::Stored { .. })),
                "{i}: {result:?}"
            );
        }
    }
    assert_eq!(events(&app).await, 20);
}
