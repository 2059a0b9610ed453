//! Signature schemes, checked over the raw body bytes, and the Standard Webhooks signing the
//! worker uses on the way out. Pure functions: the time is an argument.
//!
//! - Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature` headers; HMAC-
//!   SHA256 over `id.timestamp.body` keyed with the base64-decoded `whsec_` secret; a space-
//!   separated list of `v1,<base64>` signatures, any one of which may match.
//! - GitHub: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 over the body keyed with the
//!   secret's bytes as written. No timestamp is signed.
//! - Stripe: `Stripe-Signature: t=<ts>,v1=<hex>[,v1=<hex>...]`, HMAC-SHA256 over `t.body`
//!   keyed with the whole secret string (its `whsec_` prefix included); only `v1` counts.
//!
//! Timestamped schemes accept ±5 minutes. Comparisons run in constant time (`hmac`'s
//! `verify_slice`). Facts and vectors: the Standard Webhooks specification and its
//! libraries' tests, GitHub's and Stripe's documentation.

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How far a signed timestamp may be from now, either way, in seconds.
pub const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    None,
    StandardWebhooks,
    GitHub,
    Stripe,
}

impl Scheme {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "standard_webhooks" => Some(Self::StandardWebhooks),
            "github" => Some(Self::GitHub),
            "stripe" => Some(Self::Stripe),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::StandardWebhooks => "standard_webhooks",
            Self::GitHub => "github",
            Self::Stripe => "stripe",
        }
    }

    /// Whether `secret` can key this scheme; the message says why not.
    pub fn check_secret(self, secret: &str) -> Result<(), String> {
        match self {
            Self::None => Err("a source with scheme none takes no secret".into()),
            Self::StandardWebhooks => standard_key(secret).map(|_| ()),
            Self::GitHub | Self::Stripe if secret.is_empty() => Err("must not be empty".into()),
            Self::GitHub | Self::Stripe => Ok(()),
        }
    }
}

/// Why a request's signature did not hold. The text is stored with the event and shown to
/// the admin API; it never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("header {0} is malformed")]
    Malformed(&'static str),
    #[error("timestamp too old")]
    TooOld,
    #[error("timestamp too far in the future")]
    TooNew,
    #[error("no signature matches")]
    NoMatch,
    #[error("the source's secret is unusable")]
    BadSecret,
}

/// Checks `body` against `headers` under `scheme`; `now` in Unix seconds.
pub fn verify(
    scheme: Scheme,
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), Problem> {
    match scheme {
        Scheme::None => Ok(()),
        Scheme::StandardWebhooks => verify_standard(secret, headers, body, now),
        Scheme::GitHub => verify_github(secret, headers, body),
        Scheme::Stripe => verify_stripe(secret, headers, body, now),
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, Problem> {
    headers
        .get(name)
        .ok_or(Problem::MissingHeader(name))?
        .to_str()
        .map_err(|_| Problem::Malformed(name))
}

/// The key of a Standard Webhooks secret: the base64 after an optional `whsec_` prefix.
pub fn standard_key(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = STANDARD
        .decode(encoded)
        .map_err(|_| "expected whsec_ followed by base64".to_owned())?;
    if key.is_empty() {
        return Err("is empty after decoding".into());
    }
    Ok(key)
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key"))
}

fn timestamp(raw: &str, name: &'static str, now: i64) -> Result<i64, Problem> {
    if raw.is_empty() || raw.len() > 12 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Problem::Malformed(name));
    }
    let ts: i64 = raw.parse().map_err(|_| Problem::Malformed(name))?;
    if now - ts > TOLERANCE_SECS {
        return Err(Problem::TooOld);
    }
    if ts - now > TOLERANCE_SECS {
        return Err(Problem::TooNew);
    }
    Ok(ts)
}

fn verify_standard(
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), Problem> {
    let key = standard_key(secret).map_err(|_| Problem::BadSecret)?;
    let id = header(headers, "webhook-id")?;
    let raw_ts = header(headers, "webhook-timestamp")?;
    let signatures = header(headers, "webhook-signature")?;
    timestamp(raw_ts, "webhook-timestamp", now)?;

    let mut signed = mac(&key);
    signed.update(id.as_bytes());
    signed.update(b".");
    signed.update(raw_ts.as_bytes());
    signed.update(b".");
    signed.update(body);

    let matched = signatures
        .split(' ')
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, sig)| STANDARD.decode(sig).ok())
        .any(|sig| signed.clone().verify_slice(&sig).is_ok());
    if matched {
        Ok(())
    } else {
        Err(Problem::NoMatch)
    }
}

fn verify_github(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), Problem> {
    let value = header(headers, "x-hub-signature-256")?;
    let hex = value
        .strip_prefix("sha256=")
        .ok_or(Problem::Malformed("x-hub-signature-256"))?;
    let sig = from_hex(hex).ok_or(Problem::Malformed("x-hub-signature-256"))?;
    let mut signed = mac(secret.as_bytes());
    signed.update(body);
    signed.verify_slice(&sig).map_err(|_| Problem::NoMatch)
}

fn verify_stripe(secret: &str, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), Problem> {
    let value = header(headers, "stripe-signature")?;
    let mut ts = None;
    let mut candidates = Vec::new();
    for pair in value.split(',') {
        match pair.trim().split_once('=') {
            Some(("t", t)) => ts = Some(t),
            Some(("v1", sig)) => candidates.push(sig),
            // v0 and unknown keys are ignored, so a downgrade to a weaker scheme is not
            // possible.
            _ => {}
        }
    }
    let raw_ts = ts.ok_or(Problem::Malformed("stripe-signature"))?;
    timestamp(raw_ts, "stripe-signature", now)?;
    if candidates.is_empty() {
        return Err(Problem::NoMatch);
    }

    let mut signed = mac(secret.as_bytes());
    signed.update(raw_ts.as_bytes());
    signed.update(b".");
    signed.update(body);
    let matched = candidates
        .iter()
        .filter_map(|hex| from_hex(hex))
        .any(|sig| signed.clone().verify_slice(&sig).is_ok());
    if matched {
        Ok(())
    } else {
        Err(Problem::NoMatch)
    }
}

/// The sender's delivery id for deduplication, where the scheme has one: `webhook-id`,
/// `X-GitHub-Delivery`, or the `id` of a Stripe event body. A source without a scheme uses
/// whichever of the two headers is present.
pub fn delivery_id(scheme: Scheme, headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    match scheme {
        Scheme::StandardWebhooks => text("webhook-id"),
        Scheme::GitHub => text("x-github-delivery"),
        Scheme::Stripe => {
            #[derive(serde::Deserialize)]
            struct StripeEvent {
                id: Option<String>,
            }
            serde_json::from_slice::<StripeEvent>(body)
                .ok()
                .and_then(|e| e.id)
                .filter(|id| !id.is_empty())
        }
        Scheme::None => text("webhook-id").or_else(|| text("x-github-delivery")),
    }
}

/// Standard Webhooks `webhook-signature` value for an outgoing message.
pub fn sign_standard(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut signed = mac(key);
    signed.update(id.as_bytes());
    signed.update(b".");
    signed.update(timestamp.to_string().as_bytes());
    signed.update(b".");
    signed.update(body);
    format!("v1,{}", STANDARD.encode(signed.finalize().into_bytes()))
}

/// A new Standard Webhooks secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    format!("whsec_{}", STANDARD.encode(bytes))
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 256 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const A_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const A_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const A_TS: i64 = 1_614_265_330;
    const A_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const A_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn standard(id: &str, ts: i64, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("webhook-id", HeaderValue::from_str(id).unwrap());
        h.insert(
            "webhook-timestamp",
            HeaderValue::from_str(&ts.to_string()).unwrap(),
        );
        h.insert("webhook-signature", HeaderValue::from_str(sig).unwrap());
        h
    }

    fn check(secret: &str, h: &HeaderMap, body: &[u8], now: i64) -> Result<(), Problem> {
        verify(Scheme::StandardWebhooks, secret, h, body, now)
    }

    #[test]
    fn standard_vectors_a_and_b_verify_and_sign() {
        assert_eq!(
            check(A_SECRET, &standard(A_ID, A_TS, A_SIG), A_BODY, A_TS),
            Ok(())
        );
        let b_secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let b_body = br#"{"email":"test@example.com","username":"test_user"}"#;
        let b_sig = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
        let h = standard("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1_649_367_553, b_sig);
        assert_eq!(check(b_secret, &h, b_body, 1_649_367_553), Ok(()));

        let key = standard_key(A_SECRET).unwrap();
        assert_eq!(key.len(), 24);
        assert_eq!(sign_standard(&key, A_ID, A_TS, A_BODY), A_SIG);
    }

    #[test]
    fn standard_tampering_and_partial_signatures_fail() {
        let tampered = br#"{"test": 2432232315}"#;
        let h = standard(A_ID, A_TS, A_SIG);
        assert_eq!(check(A_SECRET, &h, tampered, A_TS), Err(Problem::NoMatch));
        let minified = br#"{"test":2432232314}"#;
        assert_eq!(check(A_SECRET, &h, minified, A_TS), Err(Problem::NoMatch));
        for sig in [
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=",
            "v1,",
            &A_SIG[..8],
            "v1,dawfeoifkpqwoekfpqoekf",
            "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ] {
            let h = standard(A_ID, A_TS, sig);
            assert_eq!(
                check(A_SECRET, &h, A_BODY, A_TS),
                Err(Problem::NoMatch),
                "{sig}"
            );
        }
        // The whole `whsec_` string used as the key is a common mistake; it must not match.
        let wrong_key = "v1,TcxlhK9b6UD6iVI1ZU2tTqp8PEVfYRseNNfa6b+LcUg=";
        let h = standard(A_ID, A_TS, wrong_key);
        assert_eq!(check(A_SECRET, &h, A_BODY, A_TS), Err(Problem::NoMatch));
        let other_secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let h = standard(A_ID, A_TS, A_SIG);
        assert_eq!(check(other_secret, &h, A_BODY, A_TS), Err(Problem::NoMatch));
    }

    #[test]
    fn standard_timestamps_and_missing_headers() {
        let h = standard(A_ID, A_TS, A_SIG);
        assert_eq!(check(A_SECRET, &h, A_BODY, A_TS + 300), Ok(()));
        assert_eq!(check(A_SECRET, &h, A_BODY, A_TS - 300), Ok(()));
        assert_eq!(
            check(A_SECRET, &h, A_BODY, A_TS + 301),
            Err(Problem::TooOld)
        );
        assert_eq!(
            check(A_SECRET, &h, A_BODY, A_TS - 301),
            Err(Problem::TooNew)
        );
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            let mut h = standard(A_ID, A_TS, A_SIG);
            h.remove(name);
            assert_eq!(
                check(A_SECRET, &h, A_BODY, A_TS),
                Err(Problem::MissingHeader(name))
            );
        }
    }

    #[test]
    fn several_standard_signatures_pass_if_any_matches() {
        let decoys = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= \
                      v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ=";
        let with = format!("{decoys} {A_SIG} v1a,c29tZXRoaW5n");
        assert_eq!(
            check(A_SECRET, &standard(A_ID, A_TS, &with), A_BODY, A_TS),
            Ok(())
        );
        assert_eq!(
            check(A_SECRET, &standard(A_ID, A_TS, decoys), A_BODY, A_TS),
            Err(Problem::NoMatch)
        );
    }

    #[test]
    fn empty_and_undecodable_standard_secrets_are_refused() {
        assert!(Scheme::StandardWebhooks.check_secret("whsec_").is_err());
        assert!(Scheme::StandardWebhooks.check_secret("").is_err());
        assert!(Scheme::StandardWebhooks.check_secret("whsec_!!").is_err());
        assert!(Scheme::StandardWebhooks.check_secret(A_SECRET).is_ok());
        let h = standard(A_ID, A_TS, A_SIG);
        assert_eq!(check("whsec_", &h, A_BODY, A_TS), Err(Problem::BadSecret));
    }

    #[test]
    fn derived_edge_bodies_verify_over_their_exact_bytes() {
        let crlf = b"{\"test\": 2432232314}\r\n";
        let sig = "v1,NNKfhhzZRvz6NOA7hZKlzVMhIQYJt9HZbZPHgEyTndE=";
        assert_eq!(
            check(A_SECRET, &standard(A_ID, A_TS, sig), crlf, A_TS),
            Ok(())
        );
        let h = standard(A_ID, A_TS, sig);
        assert_eq!(check(A_SECRET, &h, A_BODY, A_TS), Err(Problem::NoMatch));
        let not_utf8 = b"\xff\xfe{\"a\":1}";
        let sig = "v1,8ob4FFWsEmw6j0gFb7riE4CWFeEe485rX7jxlsdL7lg=";
        assert_eq!(
            check(A_SECRET, &standard(A_ID, A_TS, sig), not_utf8, A_TS),
            Ok(())
        );
    }

    fn github(sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-hub-signature-256", HeaderValue::from_str(sig).unwrap());
        h
    }

    #[test]
    fn github_vector_and_its_failures() {
        let secret = "It's a Secret to Everybody";
        let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let gh = |s, h: &HeaderMap, b: &[u8]| verify(Scheme::GitHub, s, h, b, 0);
        assert_eq!(gh(secret, &github(good), b"Hello, World!"), Ok(()));
        assert_eq!(
            gh(secret, &github(good), b"Hello, World!\n"),
            Err(Problem::NoMatch)
        );
        assert_eq!(
            gh("another secret", &github(good), b"Hello, World!"),
            Err(Problem::NoMatch)
        );
        let lf = "sha256=8fde2e970f9163923fb1cb61bb945626ff2b4091d87e622ee3ad600160592325";
        assert_eq!(gh(secret, &github(lf), b"Hello, World!\n"), Ok(()));
        assert_eq!(
            gh(secret, &github("sha1=757107ea"), b"Hello, World!"),
            Err(Problem::Malformed("x-hub-signature-256"))
        );
        assert_eq!(
            gh(secret, &HeaderMap::new(), b"Hello, World!"),
            Err(Problem::MissingHeader("x-hub-signature-256"))
        );
    }

    fn stripe(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("stripe-signature", HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn stripe_vector_several_signatures_and_tolerance() {
        let secret = "whsec_test_secret";
        let body = br#"{"id":"evt_1","object":"event"}"#;
        let good = "0c8670ed117751cc551a20e35839447075c42800ea3cf3e8a2fbda99cd1e6edd";
        let decoy = "0c8670ed117751cc551a20e35839447075c42800ea3cf3e8a2fbda99cd1e6ede";
        let st = |h: &HeaderMap, b: &[u8], now| verify(Scheme::Stripe, secret, h, b, now);
        let t = 1_700_000_000;
        assert_eq!(st(&stripe(&format!("t={t},v1={good}")), body, t), Ok(()));
        let several = format!("t={t},v1={decoy},v0={good},v1={good}");
        assert_eq!(st(&stripe(&several), body, t), Ok(()));
        // Only v1 counts: the right signature under v0 is no signature.
        let v0 = format!("t={t},v1={decoy},v0={good}");
        assert_eq!(st(&stripe(&v0), body, t), Err(Problem::NoMatch));
        assert_eq!(
            st(&stripe(&format!("t={t},v1={good}")), b"{}", t),
            Err(Problem::NoMatch)
        );
        let h = stripe(&format!("t={t},v1={good}"));
        assert_eq!(st(&h, body, t + 301), Err(Problem::TooOld));
        assert_eq!(st(&h, body, t - 301), Err(Problem::TooNew));
        let wrong = verify(Scheme::Stripe, "whsec_other", &h, body, t);
        assert_eq!(wrong, Err(Problem::NoMatch));
        assert_eq!(
            delivery_id(Scheme::Stripe, &h, body).as_deref(),
            Some("evt_1")
        );
    }
}
