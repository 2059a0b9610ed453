//! One delivery attempt: the HTTP client that sends it, the address guard it connects
//! through, the Standard Webhooks signing, and the retry delay that follows a failure.
//!
//! The client follows no redirects (a 3xx is a failed attempt), uses no proxy, gives up
//! after the configured timeout, and resolves names only through the guard, so the address
//! checked is the address connected to: a name that resolves to a public address when it
//! is saved and to 127.0.0.1 when it is used is refused when it is used.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde_json::{Map, Value};

use crate::config::{Config, Resolver};
use crate::signature;

/// How much of a response body an attempt keeps.
pub const RESPONSE_KEPT: usize = 4096;

/// A destination refused because of where it resolves.
#[derive(Debug, thiserror::Error)]
#[error("refused: {0} is a loopback, private, link-local or metadata address")]
pub struct Refused(String);

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
            .dns_resolver(Arc::new(Guard {
                allow: allow.clone(),
                resolver: config.resolver.clone(),
            }))
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

struct Guard {
    allow: Arc<Vec<IpNet>>,
    resolver: Resolver,
}

impl reqwest::dns::Resolve for Guard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow.clone();
        let lookup = self.resolver.lookup(name.as_str());
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = lookup.await?;
            let (ok, refused): (Vec<IpAddr>, Vec<IpAddr>) =
                addrs.into_iter().partition(|ip| permitted(*ip, &allow));
            if ok.is_empty() {
                let shown = match refused.first() {
                    Some(ip) => format!("{host} ({ip})"),
                    None => host,
                };
                return Err(Box::new(Refused(shown)) as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: Vec<SocketAddr> = ok.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether deliveries may go to `ip`: public unicast addresses, and whatever the operator
/// allowed. Everything a destination URL could use to reach the worker's own networks (it
/// shares one with its database) or a cloud metadata service is refused.
pub fn permitted(ip: IpAddr, allow: &[IpNet]) -> bool {
    allow.iter().any(|net| net.contains(&ip)) || !internal(ip)
}

fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local() // 169.254.0.0/16, with 169.254.169.254 (metadata)
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
                || (a == 198 && (18..20).contains(&b)) // benchmarking
                || (a == 192 && b == 0 && c == 2) // documentation (TEST-NET-1)
                || (a == 198 && b == 51 && c == 100) // documentation (TEST-NET-2)
                || (a == 203 && b == 0 && c == 113) // documentation (TEST-NET-3)
                || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
                || a >= 240 // reserved
        }
        IpAddr::V6(v6) => {
            // An IPv4 address written as IPv6 is judged as the IPv4 address it is.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return internal(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local, with fd00:ec2::254 (metadata)
                || (seg[0] & 0xffc0) == 0xfe80 // link-local
                || seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] // NAT64 of any IPv4
                || (seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1) // local-use NAT64
                || seg[0] == 0x2002 // 6to4 wraps an IPv4 address
                || seg[0] == 0x5f00 // SRv6 SIDs
                || seg[..6] == [0; 6] // IPv4-compatible (::/96), deprecated
                || (seg[0] == 0x2001 && seg[1] == 0) // Teredo wraps an IPv4 address
                || (seg[0] == 0x2001 && seg[1] == 0xdb8) // documentation
                || (seg[0] == 0x3fff && seg[1] < 0x1000) // documentation (3fff::/20)
                || seg[..4] == [0x100, 0, 0, 0] // discard-only (100::/64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn internal_and_metadata_addresses_are_refused() {
        for addr in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
        ] {
            assert!(!permitted(ip(addr), &[]), "{addr} must be refused");
        }
        for addr in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"] {
            assert!(permitted(ip(addr), &[]), "{addr} is public");
        }
        let allow: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        assert!(permitted(ip("127.0.0.1"), &allow));
        assert!(!permitted(ip("127.0.0.2"), &allow));
    }

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
    fn wrapped_documentation_and_discard_ranges_are_refused() {
        for addr in [
            "::127.0.0.1",
            "::a9fe:a9fe",
            "::8.8.8.8",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:db8::1",
            "3fff::1",
            "3fff:fff:ffff::1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.255",
            "192.88.99.1",
            "100::1",
            "100::ffff:ffff:ffff:ffff",
        ] {
            assert!(!permitted(ip(addr), &[]), "{addr} must be refused");
        }
        // Their neighbours are public.
        for addr in [
            "2001:1::1",
            "2001:db9::1",
            "3fff:1000::1",
            "192.0.3.1",
            "198.51.101.1",
            "203.0.114.1",
            "192.88.98.1",
            "100:0:0:1::1",
        ] {
            assert!(permitted(ip(addr), &[]), "{addr} is public");
        }
        let allow: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        assert!(permitted(ip("127.0.0.1"), &allow));
        assert!(!permitted(ip("127.0.0.2"), &allow));
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
