//! Where outgoing HTTP may go. Workers that call URLs their users configure (CronPing's
//! alert webhooks, WebhookVault's destinations) share a network with their own database,
//! so a URL naming an internal address would turn them into a way in. Their HTTP clients
//! resolve names only through [`Guard`], which drops refused addresses, and connect only to
//! what it returned: the address checked is the address connected to, so a name that
//! resolves to a public address when it is saved and to 127.0.0.1 when it is used is
//! refused when it is used. Literal addresses never reach a resolver; callers check them
//! with [`permitted`].

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use ipnet::IpNet;

/// A destination refused because of where it resolves.
#[derive(Debug, thiserror::Error)]
#[error("refused: {0} is a loopback, private, link-local or metadata address")]
pub struct Refused(pub String);

pub type Lookup = Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;

/// Looks a host name up. Tests pass their own (for instance one that answers loopback for
/// every name, as a rebinding DNS server would).
#[derive(Clone)]
pub struct Resolver(Arc<dyn Fn(String) -> Lookup + Send + Sync>);

impl Resolver {
    pub fn system() -> Self {
        Self::new(|host| {
            Box::pin(async move {
                let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
                Ok(addrs.map(|a| a.ip()).collect())
            })
        })
    }

    pub fn new(f: impl Fn(String) -> Lookup + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    pub fn lookup(&self, host: &str) -> Lookup {
        (self.0)(host.to_owned())
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver")
    }
}

/// A name resolver for `reqwest::ClientBuilder::dns_resolver` that keeps only permitted
/// addresses, and fails the lookup when none is left.
pub struct Guard {
    allow: Arc<Vec<IpNet>>,
    resolver: Resolver,
}

impl Guard {
    pub fn new(allow: Arc<Vec<IpNet>>, resolver: Resolver) -> Self {
        Self { allow, resolver }
    }
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

/// Whether a worker may connect to `ip`: public unicast addresses, and whatever the
/// operator allowed. Everything a configured URL could use to reach the worker's own
/// networks or a cloud metadata service is refused, including IPv4 addresses wrapped in
/// IPv6 forms.
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
    #![allow(clippy::unwrap_used)]

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
}
