//! One delivery attempt: the HTTP client that sends it, the address guard it connects
//! through, the Standard Webhooks signing, and the retry delay that follows a failure.
//!
//! The client follows no redirects (a 3xx is a failed attempt), uses no proxy, gives up
//! after the configured timeout, and resolves names only through the guard, so the address
//! checked is the address connected to: a name that resolves to a public address when it
//! is saved and to 127.0.0.1 when it is used is refused when it is used.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde_json::{Map, Value};

use platform::egress::{Guard, Refused, permitted};

use crate::config::Config;
use crate::signature;

/// How much of a response body an attempt keeps.
pub const RESPONSE_KEPT: usize = 4096;

/// What one attempt sends.
pub struct Message<'a> {
    pub url: &'a str,
    pub extra_headers: &'a Map<String, Value>,
    pub secret: &'a str,
    pub msg_id: &'a str,
    pub body: &'a [u8],
    pub content_type: Option<&'a str>,
}

/// What one attempt got.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub status: Option<u16>,
    pub error: Option<String>,
    /// The first `RESPONSE_KEPT` bytes of the response body.
    pub response: Vec<u8>,
    pub retry_after: Option<Duration>,
    /// No later attempt can succeed (the address is refused, the URL or secret is bad).
    pub permanent: bool,
    pub duration: Duration,
}

impl Outcome {
    pub fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    fn failed(error: String, permanent: bool) -> Self {
        Self {
            error: Some(error),
            permanent,
            ..Self::default()
        }
    }
}

#[derive(Clone, Debug)]
pub struct Forwarder {
    client: reqwest::Client,
    allow: Arc<Vec<IpNet>>,
}

impl Forwarder {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let allow = Arc::new(config.allow.clone());
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(config.delivery_timeout)
            .user_agent(concat!("webhookvault/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(Guard::new(allow.clone(), config.resolver.clone())))
            .build()
            .context("building the delivery HTTP client")?;
        Ok(Self { client, allow })
    }

    /// Sends `msg` once, signed for `now`.
    pub async fn send(&self, msg: &Message<'_>, now: DateTime<Utc>) -> Outcome {
        let started = Instant::now();
        let mut outcome = self.send_inner(msg, now).await;
        outcome.duration = started.elapsed();
        outcome
    }

    async fn send_inner(&self, msg: &Message<'_>, now: DateTime<Utc>) -> Outcome {
        let url = match reqwest::Url::parse(msg.url) {
            Ok(url) => url,
            Err(e) => return Outcome::failed(format!("bad URL: {e}"), true),
        };
        // Literal addresses never reach the resolver, so they are checked here.
        let literal = url
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
            .and_then(|h| h.parse::<IpAddr>().ok());
        if let Some(ip) = literal.filter(|ip| !permitted(*ip, &self.allow)) {
            return Outcome::failed(Refused(ip.to_string()).to_string(), true);
        }
        let key = match signature::standard_key(msg.secret) {
            Ok(key) => key,
            Err(e) => return Outcome::failed(format!("destination secret: {e}"), true),
        };

        let timestamp = now.timestamp();
        let mut request = self
            .client
            .post(url)
            .header("webhook-id", msg.msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                signature::sign_standard(&key, msg.msg_id, timestamp, msg.body),
            );
        if let Some(ct) = msg.content_type {
            request = request.header("content-type", ct);
        }
        for (name, value) in msg.extra_headers {
            // Validated when saved; a value that is no longer a string is skipped.
            if let Some(value) = value.as_str() {
                request = request.header(name.as_str(), value);
            }
        }

        let mut response = match request.body(msg.body.to_vec()).send().await {
            Ok(response) => response,
            Err(e) => {
                // The URL may carry credentials (userinfo, a token in the query): the error
                // is recorded and logged without it.
                let e = e.without_url();
                let refused =
                    std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
                        e.source()
                    })
                    .find_map(|e| e.downcast_ref::<Refused>());
                return match refused {
                    Some(r) => Outcome::failed(r.to_string(), true),
                    None if e.is_timeout() => Outcome::failed("timed out".into(), false),
                    None => Outcome::failed(error_chain(&e), false),
                };
            }
        };

        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now));
        let mut kept = Vec::new();
        let mut error = None;
        while kept.len() < RESPONSE_KEPT {
            match response.chunk().await {
                Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    let e = e.without_url();
                    error = Some(format!("reading the response: {}", error_chain(&e)));
                    break;
                }
            }
        }
        kept.truncate(RESPONSE_KEPT);
        if error.is_none() && !(200..300).contains(&status) {
            error = Some(format!("HTTP {status}"));
        }
        Outcome {
            status: Some(status),
            error,
            response: kept,
            retry_after,
            permanent: false,
            duration: Duration::ZERO,
        }
    }
}

/// A destination URL as it may be shown or logged: `scheme://host[:port]/path`, with `***`
/// for userinfo, query and fragment, which may hold credentials.
pub fn masked_url(raw: &str) -> String {
    let Ok(url) = reqwest::Url::parse(raw) else {
        return "***".to_owned();
    };
    let userinfo = if url.username().is_empty() && url.password().is_none() {
        ""
    } else {
        "***@"
    };
    let host = url.host_str().unwrap_or_default();
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let query = if url.query().is_some() { "?***" } else { "" };
    let fragment = if url.fragment().is_some() { "#***" } else { "" };
    format!(
        "{}://{userinfo}{host}{port}{}{query}{fragment}",
        url.scheme(),
        url.path()
    )
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(e), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// `Retry-After` as seconds or as an HTTP date, as a delay from `now`.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    (at - now).to_std().ok()
}

/// The delay before the attempt after attempt number `attempt` (from 1), or `None` when the
/// schedule is spent. The scheduled delay is spread by `jitter` (a fraction) times `unit`
/// (in -1..=1, random in production); a `Retry-After` longer than that is honoured up to
/// twice the scheduled delay, so a receiver can slow retries down but not stall them.
pub fn retry_delay(
    attempt: i32,
    schedule: &[Duration],
    retry_after: Option<Duration>,
    jitter: f64,
    unit: f64,
) -> Option<Duration> {
    let base = *schedule.get(usize::try_from(attempt.checked_sub(1)?).ok()?)?;
    let jittered = base.mul_f64((1.0 + jitter * unit.clamp(-1.0, 1.0)).max(0.0));
    Some(match retry_after {
        Some(ra) => jittered.max(ra.min(base.saturating_mul(2))),
        None => jittered,
    })
}

/// A random number in -1..=1 for the jitter.
pub fn jitter_unit() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() as u64;
    (bits as f64 / u64::MAX as f64) * 2.0 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_userinfo_query_or_fragment() {
        assert_eq!(
            masked_url("http://alice:pw@hooks.example:8443/hook?token=X#frag"),
            "http://***@hooks.example:8443/hook?***#***"
        );
        assert_eq!(
            masked_url("https://hooks.example/a/b"),
            "https://hooks.example/a/b"
        );
        assert_eq!(masked_url("https://tok@[::1]/"), "https://***@[::1]/");
        assert_eq!(masked_url("not a url"), "***");
    }

    #[test]
    fn retry_delays_follow_the_schedule_with_bounded_jitter_and_retry_after() {
        let s: Vec<Duration> = [5, 300, 1800].map(Duration::from_secs).to_vec();
        assert_eq!(
            retry_delay(1, &s, None, 0.2, 0.0),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            retry_delay(2, &s, None, 0.2, 1.0),
            Some(Duration::from_secs(360))
        );
        assert_eq!(
            retry_delay(2, &s, None, 0.2, -1.0),
            Some(Duration::from_secs(240))
        );
        assert_eq!(retry_delay(4, &s, None, 0.2, 0.0), None);
        // Retry-After lengthens the wait, up to twice the scheduled delay.
        let ra = |secs| Some(Duration::from_secs(secs));
        assert_eq!(
            retry_delay(1, &s, ra(8), 0.0, 0.0),
            Some(Duration::from_secs(8))
        );
        assert_eq!(
            retry_delay(1, &s, ra(3600), 0.0, 0.0),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_delay(2, &s, ra(1), 0.0, 0.0),
            Some(Duration::from_secs(300))
        );
        for _ in 0..100 {
            let u = jitter_unit();
            assert!((-1.0..=1.0).contains(&u));
        }
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
