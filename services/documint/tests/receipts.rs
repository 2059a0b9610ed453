//! The receipt route against a real PostgreSQL and the real renderer: a correct service
//! token gets a PDF; every other token, and a replay also after a restart, gets a bare 401.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::Pdf;
use documint::receipts::{Access, Auth, PATH};
use documint::{App, Clock, Config};
use platform::Product as _;
use platform::testing::TestDb;
use secrecy::SecretString;
use serde_json::{Value, json};
use service_token::{Key, Policy, Request, Signer, Verifier};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const KEY: &str = "receipts-key-0123456789abcdef0123456789";
const NEW_KEY: &str = "receipts-key-2-abcdef0123456789abcdef01";
const NOW: &str = "2026-12-01T02:00:00Z";

fn key(kid: &str, secret: &str) -> Key {
    Key::new(kid, SecretString::from(secret.to_owned())).unwrap()
}

fn verifier(keys: &[Key]) -> Auth {
    let policy = Policy::new("documint").allow("flagbit", "receipt:create");
    Auth::Jwt(Arc::new(Verifier::new(keys, policy).unwrap()))
}

fn signer(kid: &str, secret: &str) -> Signer {
    Signer::new(&key(kid, secret), "flagbit", 600).unwrap()
}

/// One receipt listener: DocuMint's web tier serving only the receipt route.
struct Listener {
    base: String,
    stop: CancellationToken,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct Harness {
    pool: PgPool,
    now: Arc<Mutex<DateTime<Utc>>>,
    client: reqwest::Client,
    _db: TestDb,
}

impl Harness {
    async fn new() -> Self {
        let (db, pool) = TestDb::start_migrated(documint::DocuMint::migrator())
            .await
            .expect("migrated test database");
        let now = Arc::new(Mutex::new(
            DateTime::parse_from_rfc3339(NOW).unwrap().to_utc(),
        ));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        Self {
            pool,
            now,
            client,
            _db: db,
        }
    }

    fn seconds(&self) -> u64 {
        u64::try_from(self.now.lock().unwrap().timestamp()).unwrap()
    }

    /// A listener process (a "restart" is a new one on the same database).
    async fn listen(&self, auth: Auth) -> Listener {
        self.listen_for(auth, Vec::new()).await
    }

    /// A listener that admits only connections from the addresses of `allow_from`.
    async fn listen_for(&self, auth: Auth, allow_from: Vec<String>) -> Listener {
        let read = self.now.clone();
        let mut config = Config::new(common::limits());
        config.clock = Clock::new(move || *read.lock().unwrap());

        let access = Access { auth, allow_from };
        let routes = documint::receipts::router(App::new(config, self.pool.clone()), access);
        let app = platform::http::app("documint", routes, self.pool.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        tokio::spawn(platform::shutdown::serve(
            listener,
            app,
            stop.clone().cancelled_owned(),
            Duration::from_secs(2),
        ));
        Listener { base, stop }
    }

    async fn call(&self, at: &Listener, token: Option<&str>, body: &[u8]) -> (u16, Vec<u8>) {
        let mut request = self
            .client
            .post(format!("{}{PATH}", at.base))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.bytes().await.unwrap().to_vec())
    }

    fn token(&self, signer: &Signer, body: &[u8]) -> String {
        let request = Request {
            method: "POST",
            path: PATH,
            body,
        };
        signer
            .sign("documint", "receipt:create", &request, self.seconds())
            .unwrap()
    }
}

fn body() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "reference": "flagbit-2026-11",
        "data": {
            "account": "flagbit",
            "period": { "label": "2026-11", "from": "2026-11-01", "to": "2026-11-30" },
            "environments": [
                { "name": "production", "total": 1240,
                  "flags": [{ "key": "new-checkout", "evaluations": 1240 }] },
                { "name": "staging", "total": 40,
                  "flags": [{ "key": "dark-mode", "evaluations": 40 }] }
            ],
            "total_evaluations": 1280
        }
    }))
    .unwrap()
}

fn assert_refused(status: u16, answer: &[u8]) {
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(answer));
    let answer: Value = serde_json::from_slice(answer).unwrap();
    // The code and a generic message; never the reason.
    assert_eq!(answer["error"]["code"], "unauthorized");
    assert_eq!(answer["error"]["message"], "missing or unknown credentials");
}

#[tokio::test]
async fn a_valid_token_gets_the_rendered_receipt() {
    let harness = Harness::new().await;
    let listener = harness.listen(verifier(&[key("k1", KEY)])).await;
    let body = body();
    let token = harness.token(&signer("k1", KEY), &body);

    let (status, pdf) = harness.call(&listener, Some(&token), &body).await;

    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&pdf));
    let text = Pdf::parse(&pdf).squeezed();
    for expected in [
        "production",
        "staging",
        "new-checkout",
        "dark-mode",
        "flagbit",
    ] {
        assert!(text.contains(expected), "{expected} missing from {text}");
    }
}

#[tokio::test]
async fn every_bad_token_is_refused_and_a_replay_also_after_a_restart() {
    let harness = Harness::new().await;
    let auth = verifier(&[key("k1", KEY)]);
    let listener = harness.listen(auth.clone()).await;
    let body = body();
    let good = signer("k1", KEY);

    // Missing, or another scheme.
    let (status, answer) = harness.call(&listener, None, &body).await;
    assert_refused(status, &answer);

    // Signed with a key DocuMint does not hold, under a kid it does.
    let token = harness.token(
        &signer("k1", "an-attackers-key-0123456789abcdef0123"),
        &body,
    );
    let (status, answer) = harness.call(&listener, Some(&token), &body).await;
    assert_refused(status, &answer);

    // The body changed after signing.
    let token = harness.token(&good, &body);
    let mut changed = body.clone();
    let at = changed.windows(4).position(|w| w == b"1240").unwrap();
    changed[at] = b'9';
    let (status, answer) = harness.call(&listener, Some(&token), &changed).await;
    assert_refused(status, &answer);

    // A token for another route.
    let other = Request {
        method: "POST",
        path: "/api/v1/documents",
        body: &body,
    };
    let token = good
        .sign("documint", "receipt:create", &other, harness.seconds())
        .unwrap();
    let (status, answer) = harness.call(&listener, Some(&token), &body).await;
    assert_refused(status, &answer);

    // A replay: accepted once, then refused, and still refused by a restarted process.
    let token = harness.token(&good, &body);
    let (status, _) = harness.call(&listener, Some(&token), &body).await;
    assert_eq!(status, 200);
    let (status, answer) = harness.call(&listener, Some(&token), &body).await;
    assert_refused(status, &answer);

    drop(listener);
    let restarted = harness.listen(auth).await;
    let (status, answer) = harness.call(&restarted, Some(&token), &body).await;
    assert_refused(status, &answer);

    // Expired (10 min lifetime + 30 s leeway).
    let token = harness.token(&good, &body);
    *harness.now.lock().unwrap() += chrono::Duration::seconds(631);
    let (status, answer) = harness.call(&restarted, Some(&token), &body).await;
    assert_refused(status, &answer);
}

#[tokio::test]
async fn used_token_ids_are_forgotten_only_once_the_token_has_expired() {
    let harness = Harness::new().await;
    let listener = harness.listen(verifier(&[key("k1", KEY)])).await;
    let body = body();
    let token = harness.token(&signer("k1", KEY), &body);
    let (status, _) = harness.call(&listener, Some(&token), &body).await;
    assert_eq!(status, 200);
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM service_token_uses")
            .fetch_one(&harness.pool)
            .await
            .unwrap()
    };
    assert_eq!(count().await, 1);

    // Another request after the first token's expiry clears its row.
    *harness.now.lock().unwrap() += chrono::Duration::seconds(700);
    let token = harness.token(&signer("k1", KEY), &body);
    let (status, _) = harness.call(&listener, Some(&token), &body).await;
    assert_eq!(status, 200);
    assert_eq!(count().await, 1);
}

#[tokio::test]
async fn rotation_accepts_both_keys_during_the_overlap_and_only_the_new_one_after() {
    let harness = Harness::new().await;
    let body = body();
    let old = signer("2026-11", KEY);
    let new = signer("2026-12", NEW_KEY);

    let overlap = harness
        .listen(verifier(&[key("2026-11", KEY), key("2026-12", NEW_KEY)]))
        .await;
    for signer in [&old, &new] {
        let token = harness.token(signer, &body);
        let (status, answer) = harness.call(&overlap, Some(&token), &body).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    }
    drop(overlap);

    let after = harness.listen(verifier(&[key("2026-12", NEW_KEY)])).await;
    let (status, answer) = harness
        .call(&after, Some(&harness.token(&old, &body)), &body)
        .await;
    assert_refused(status, &answer);
    let (status, _) = harness
        .call(&after, Some(&harness.token(&new, &body)), &body)
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn none_mode_trusts_the_network_and_still_checks_the_data() {
    let harness = Harness::new().await;
    let listener = harness.listen(Auth::None).await;

    let (status, pdf) = harness.call(&listener, None, &body()).await;
    assert_eq!(status, 200);
    assert!(pdf.starts_with(b"%PDF-"));

    let (status, answer) = harness
        .call(
            &listener,
            None,
            br#"{"reference": "x", "data": {"total": 18446744073709551615}}"#,
        )
        .await;
    assert_eq!(status, 422);
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["error"]["field"], "total", "{answer}");

    let (status, _) = harness.call(&listener, None, br#"{"data": {}}"#).await;
    assert_eq!(status, 422);
    let (status, _) = harness.call(&listener, None, &vec![b' '; 300 * 1024]).await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn only_the_allowed_callers_address_may_connect_even_without_tokens() {
    let harness = Harness::new().await;
    // The test connects from 127.0.0.1: "localhost" admits it; an address it is not
    // connecting from is refused, as the host's gateway address is on the receipts network.
    let allowed = harness
        .listen_for(Auth::None, vec!["localhost".to_owned()])
        .await;
    let others = harness
        .listen_for(Auth::None, vec!["127.0.0.2".to_owned()])
        .await;

    let (status, pdf) = harness.call(&allowed, None, &body()).await;
    assert_eq!(status, 200);
    assert!(pdf.starts_with(b"%PDF-"));

    let (status, answer) = harness.call(&others, None, &body()).await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&answer));
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["error"]["code"], "forbidden");
}
