//! `probe receipts-demo <url> <signing key file>`: what DocuMint's receipt route accepts,
//! shown from the receipts network. Sends one correct call, then the attacks the service
//! token is there to stop, and prints one line per call: what was sent and the answer.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use secrecy::SecretString;
use serde_json::json;
use service_token::{Key, Request, Signer};

struct Call {
    label: &'static str,
    token: Option<String>,
    body: Vec<u8>,
}

pub async fn run(url: &str, key_file: &str) -> anyhow::Result<()> {
    let url: reqwest::Url = url.parse().context("the receipt URL")?;
    let keys = std::fs::read_to_string(key_file).with_context(|| format!("reading {key_file}"))?;
    let signer = Signer::from_key_file(&keys, "flagbit", service_token::DEFAULT_LIFETIME)?;
    let kid = signer.kid().to_owned();
    let stranger = Signer::new(
        &Key::new(
            &kid,
            SecretString::from("not-the-shared-key-but-just-as-long!".to_owned()),
        )?,
        "flagbit",
        service_token::DEFAULT_LIFETIME,
    )?;

    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let body = serde_json::to_vec(&json!({
        "reference": format!("demo-{now}"),
        "data": {
            "account": "demo",
            "period": { "label": "demo", "from": "2026-11-01", "to": "2026-11-30" },
            "environments": [{ "name": "production", "total": 42,
                               "flags": [{ "key": "new-checkout", "evaluations": 42 }] }],
            "total_evaluations": 42,
        },
    }))?;
    let mut tampered = body.clone();
    if let Some(at) = tampered.windows(2).position(|w| w == b"42") {
        tampered[at] = b'9';
    }

    let path = url.path().to_owned();
    let sign = |signer: &Signer, body: &[u8]| {
        signer.sign(
            "documint",
            "receipt:create",
            &Request {
                method: "POST",
                path: &path,
                body,
            },
            now,
        )
    };
    let valid = sign(&signer, &body)?;
    let calls = [
        Call {
            label: "a valid token",
            token: Some(valid.clone()),
            body: body.clone(),
        },
        Call {
            label: "the same token again (replay)",
            token: Some(valid),
            body: body.clone(),
        },
        Call {
            label: "a fresh token, body changed after signing",
            token: Some(sign(&signer, &body)?),
            body: tampered,
        },
        Call {
            label: "a token signed with another key",
            token: Some(sign(&stranger, &body)?),
            body: body.clone(),
        },
        Call {
            label: "no token",
            token: None,
            body,
        },
    ];

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(60))
        .build()?;
    let mut out = String::new();
    for call in calls {
        let mut request = client
            .post(url.clone())
            .header("content-type", "application/json")
            .body(call.body);
        if let Some(token) = call.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("calling {url}"))?;
        let status = response.status().as_u16();
        let kind = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = response.bytes().await?;
        let answer = if kind.starts_with("application/pdf") {
            format!("a PDF of {} bytes", bytes.len())
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        };
        out.push_str(&format!("{:<44} -> {status} {answer}\n", call.label));
    }
    std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes())?;
    Ok(())
}
