//! Short-lived service tokens: how one product proves to another that a request comes from it.
//!
//! A token is an HS256 JWT made from a shared secret. Its header names the key (`kid`) and its
//! type (`svc+jwt`, so no other kind of JWT signed with the same key passes); its claims name
//! the caller (`iss`, `sub`), the one service it is for (`aud`), what it may do (`action`),
//! a fresh id (`jti`), a lifetime of minutes (`iat`, `exp`), and the request it was made for:
//! method, path and a SHA-256 of the body. A stolen token is therefore good for one request,
//! once (the receiver remembers `jti`), for a few minutes, and a changed body fails it.
//!
//! The verifier picks the key by `kid` from its own key set and uses the algorithm stored
//! with that key, never the one the header names; an unknown `kid` is refused, never tried
//! against other keys. Time is an input (`now`, seconds since the epoch) so every rule is
//! testable without a clock. Replay detection needs storage shared by every replica, so it is
//! the caller's: [`Verified::jti`] and [`Verified::remember_until`] say what to store.
//!
//! References: RFC 7519 (JWT), RFC 8725 (JWT best current practices: explicit typing §3.11,
//! algorithm pinning §3.1, key strength §3.5, `kid` as a name only §3.10), RFC 7515 §4.1.9
//! (`typ`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The explicit type every service token carries (RFC 8725 §3.11).
pub const TOKEN_TYPE: &str = "svc+jwt";

/// The shortest key accepted: HS256 needs at least 256 bits (RFC 7518 §3.2).
pub const MIN_KEY_BYTES: usize = 32;

/// Lifetimes a signer may be configured with, in seconds (5 to 15 minutes).
pub const LIFETIME_RANGE: std::ops::RangeInclusive<u64> = 300..=900;

/// The default token lifetime: 10 minutes.
pub const DEFAULT_LIFETIME: u64 = 600;

/// Clock difference tolerated between signer and verifier, in seconds.
pub const LEEWAY: u64 = 30;

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

const MAX_KID_CHARS: usize = 64;
const MAX_JTI_CHARS: usize = 128;

/// One named HS256 key. The secret is the bytes of the text after `=` in the key file.
pub struct Key {
    kid: String,
    secret: SecretString,
}

impl Key {
    pub fn new(kid: &str, secret: SecretString) -> Result<Self, KeyError> {
        if !valid_kid(kid) {
            return Err(KeyError::BadKid(kid.chars().take(MAX_KID_CHARS).collect()));
        }

        let length = secret.expose_secret().len();
        if length < MIN_KEY_BYTES {
            return Err(KeyError::TooShort {
                kid: kid.to_owned(),
                length,
            });
        }

        Ok(Self {
            kid: kid.to_owned(),
            secret,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// A key name: letters, digits, `.`, `_`, `-`, at most 64 characters.
fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_CHARS
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Why a key file can't be used. Never contains key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("no key: the key file is empty")]
    Empty,
    #[error("line {0}: expected `kid=secret`")]
    BadLine(usize),
    #[error("key id {0:?} is not a name (letters, digits, `.`, `_`, `-`; at most 64)")]
    BadKid(String),
    #[error("key {kid:?} is {length} bytes; at least {MIN_KEY_BYTES} are required")]
    TooShort { kid: String, length: usize },
    #[error("key id {0:?} appears twice")]
    Duplicate(String),
    #[error("a signing key file holds exactly one key, found {0}")]
    NotOneKey(usize),
    #[error("token lifetime {0} s is outside 300–900 s")]
    Lifetime(u64),
}

/// Reads a key file: one `kid=secret` per line; blank lines and `#` comments are skipped.
pub fn parse_keys(text: &str) -> Result<Vec<Key>, KeyError> {
    let mut keys: Vec<Key> = Vec::new();

    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }

        let (kid, secret) = line.split_once('=').ok_or(KeyError::BadLine(index + 1))?;
        let key = Key::new(kid.trim(), SecretString::from(secret.trim().to_owned()))?;
        if keys.iter().any(|known| known.kid == key.kid) {
            return Err(KeyError::Duplicate(key.kid));
        }
        keys.push(key);
    }

    if keys.is_empty() {
        return Err(KeyError::Empty);
    }
    Ok(keys)
}

/// The request a token is made for.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Path and query, as sent.
    pub path: &'a str,
    pub body: &'a [u8],
}

impl Request<'_> {
    fn body_hash(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.body))
    }
}

#[derive(Serialize)]
struct OutgoingClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    action: &'a str,
    jti: String,
    iat: u64,
    exp: u64,
    htm: &'a str,
    htu: &'a str,
    bh: String,
}

/// Makes tokens for one calling service with its active key.
pub struct Signer {
    kid: String,
    key: EncodingKey,
    issuer: String,
    lifetime: u64,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// `keys` is the signing key file's content: exactly one key, the active one.
    pub fn from_key_file(text: &str, issuer: &str, lifetime: u64) -> Result<Self, KeyError> {
        let mut keys = parse_keys(text)?;
        if keys.len() != 1 {
            return Err(KeyError::NotOneKey(keys.len()));
        }
        let key = keys.remove(0);
        Self::new(&key, issuer, lifetime)
    }

    pub fn new(key: &Key, issuer: &str, lifetime: u64) -> Result<Self, KeyError> {
        if !LIFETIME_RANGE.contains(&lifetime) {
            return Err(KeyError::Lifetime(lifetime));
        }

        let encoding =
            EncodingKey::from_secret(key.secret.expose_secret().as_bytes()).map_err(|_| {
                KeyError::TooShort {
                    kid: key.kid.clone(),
                    length: 0,
                }
            })?;

        Ok(Self {
            kid: key.kid.clone(),
            key: encoding,
            issuer: issuer.to_owned(),
            lifetime,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A token for `action` on `audience`, good for this one request from `now`.
    pub fn sign(
        &self,
        audience: &str,
        action: &str,
        request: &Request<'_>,
        now: u64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(TOKEN_TYPE.to_owned());
        header.kid = Some(self.kid.clone());

        let claims = OutgoingClaims {
            iss: &self.issuer,
            sub: &self.issuer,
            aud: audience,
            action,
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now,
            exp: now + self.lifetime,
            htm: request.method,
            htu: request.path,
            bh: request.body_hash(),
        };

        jsonwebtoken::encode(&header, &claims, &self.key)
    }
}

/// What a verifier accepts besides a good signature.
#[derive(Debug, Clone)]
pub struct Policy {
    /// This service's name; a token's `aud` must be exactly this string.
    pub audience: String,
    /// Caller (`iss`) → the actions it may perform.
    pub allowed: BTreeMap<String, BTreeSet<String>>,
    /// The longest `exp − iat` accepted, in seconds.
    pub max_lifetime: u64,
    pub leeway: u64,
}

impl Policy {
    pub fn new(audience: &str) -> Self {
        Self {
            audience: audience.to_owned(),
            allowed: BTreeMap::new(),
            max_lifetime: *LIFETIME_RANGE.end(),
            leeway: LEEWAY,
        }
    }

    pub fn allow(mut self, issuer: &str, action: &str) -> Self {
        self.allowed
            .entry(issuer.to_owned())
            .or_default()
            .insert(action.to_owned());
        self
    }
}

/// Checks tokens against a key set and a policy.
pub struct Verifier {
    keys: HashMap<String, (Algorithm, DecodingKey)>,
    policy: Policy,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<&String> = self.keys.keys().collect();
        kids.sort();
        f.debug_struct("Verifier")
            .field("kids", &kids)
            .field("policy", &self.policy)
            .finish()
    }
}

#[derive(Deserialize)]
struct IncomingClaims {
    iss: String,
    sub: String,
    aud: serde_json::Value,
    action: String,
    jti: String,
    iat: u64,
    exp: u64,
    nbf: Option<u64>,
    htm: String,
    htu: String,
    bh: String,
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub kid: String,
    pub issuer: String,
    pub action: String,
    pub jti: String,
    /// Until when the `jti` must be remembered: after this the token is refused as expired
    /// anyway.
    pub remember_until: u64,
}

/// Why a token was refused: the reason, and the `kid` and `jti` when they were readable, for
/// the log. The HTTP answer names none of this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub kid: Option<String>,
    pub jti: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Missing,
    Malformed,
    WrongType,
    UnknownKey,
    BadSignature,
    BadClaims,
    IssuedInFuture,
    LifetimeTooLong,
    Expired,
    NotYetValid,
    IssuerNotAllowed,
    WrongAudience,
    ActionNotAllowed,
    OtherRequest,
    BodyChanged,
    Replayed,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::WrongType => "wrong_type",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::BadClaims => "bad_claims",
            Self::IssuedInFuture => "issued_in_future",
            Self::LifetimeTooLong => "lifetime_too_long",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuerNotAllowed => "issuer_not_allowed",
            Self::WrongAudience => "wrong_audience",
            Self::ActionNotAllowed => "action_not_allowed",
            Self::OtherRequest => "other_request",
            Self::BodyChanged => "body_changed",
            Self::Replayed => "replayed",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Refusal {
    pub fn new(reason: Reason) -> Self {
        Self {
            reason,
            kid: None,
            jti: None,
        }
    }

    fn with_kid(reason: Reason, kid: &str) -> Self {
        Self {
            reason,
            kid: Some(kid.to_owned()),
            jti: None,
        }
    }
}

impl Verifier {
    /// A verifier trusting every key in `keys` (several during a rotation).
    pub fn new(keys: &[Key], policy: Policy) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }

        let mut table = HashMap::new();
        for key in keys {
            let decoding = DecodingKey::from_secret(key.secret.expose_secret().as_bytes())
                .map_err(|_| KeyError::TooShort {
                    kid: key.kid.clone(),
                    length: 0,
                })?;
            if table
                .insert(key.kid.clone(), (Algorithm::HS256, decoding))
                .is_some()
            {
                return Err(KeyError::Duplicate(key.kid.clone()));
            }
        }

        Ok(Self {
            keys: table,
            policy,
        })
    }

    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }

    /// Checks `token` for `request` at `now`. The signature is checked before any claim is
    /// read; replay is left to the caller (see [`Verified::remember_until`]).
    pub fn verify(
        &self,
        token: &str,
        request: &Request<'_>,
        now: u64,
    ) -> Result<Verified, Refusal> {
        if token.is_empty() {
            return Err(Refusal::new(Reason::Missing));
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Refusal::new(Reason::Malformed));
        }

        // The header is read unverified only to find the key; nothing else in it is trusted.
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| Refusal::new(Reason::Malformed))?;
        let Some(kid) = header.kid.as_deref().filter(|kid| valid_kid(kid)) else {
            return Err(Refusal::new(Reason::UnknownKey));
        };
        let Some((algorithm, key)) = self.keys.get(kid) else {
            return Err(Refusal::with_kid(Reason::UnknownKey, kid));
        };

        // Checked before the signature so a token of another kind costs nothing, and after
        // it nothing of such a token is read.
        let typed = header.typ.as_deref().is_some_and(|typ| {
            let typ = typ.strip_prefix("application/").unwrap_or(typ);
            typ.eq_ignore_ascii_case(TOKEN_TYPE)
        });
        if !typed {
            return Err(Refusal::with_kid(Reason::WrongType, kid));
        }

        // The crate checks alg against the key's algorithm and the signature; every time and
        // claim rule is ours, below, so that `now` is an input.
        let mut validation = Validation::new(*algorithm);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();

        let data =
            jsonwebtoken::decode::<IncomingClaims>(token, key, &validation).map_err(|error| {
                match error.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature
                    | jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                        Refusal::with_kid(Reason::BadSignature, kid)
                    }
                    jsonwebtoken::errors::ErrorKind::InvalidToken
                    | jsonwebtoken::errors::ErrorKind::Base64(_) => {
                        Refusal::with_kid(Reason::Malformed, kid)
                    }
                    _ => Refusal::with_kid(Reason::BadClaims, kid),
                }
            })?;
        let claims = data.claims;

        let refuse = |reason| Refusal {
            reason,
            kid: Some(kid.to_owned()),
            jti: Some(
                claims
                    .jti
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_JTI_CHARS)
                    .collect(),
            ),
        };
        self.check_claims(&claims, request, now).map_err(refuse)?;

        Ok(Verified {
            kid: kid.to_owned(),
            issuer: claims.iss,
            action: claims.action,
            jti: claims.jti,
            remember_until: claims.exp.saturating_add(self.policy.leeway),
        })
    }

    fn check_claims(
        &self,
        claims: &IncomingClaims,
        request: &Request<'_>,
        now: u64,
    ) -> Result<(), Reason> {
        let policy = &self.policy;

        // The id is stored to refuse replays: printable text only.
        if claims.jti.is_empty()
            || claims.jti.len() > MAX_JTI_CHARS
            || claims.jti.chars().any(char::is_control)
        {
            return Err(Reason::BadClaims);
        }

        if claims.iat > now.saturating_add(policy.leeway) {
            return Err(Reason::IssuedInFuture);
        }
        let lifetime = claims
            .exp
            .checked_sub(claims.iat)
            .ok_or(Reason::LifetimeTooLong)?;
        if lifetime == 0 || lifetime > policy.max_lifetime {
            return Err(Reason::LifetimeTooLong);
        }
        if claims.exp.saturating_add(policy.leeway) < now {
            return Err(Reason::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(policy.leeway))
        {
            return Err(Reason::NotYetValid);
        }

        let Some(actions) = policy.allowed.get(&claims.iss) else {
            return Err(Reason::IssuerNotAllowed);
        };
        if claims.sub != claims.iss {
            return Err(Reason::IssuerNotAllowed);
        }
        if claims.aud.as_str() != Some(policy.audience.as_str()) {
            return Err(Reason::WrongAudience);
        }
        if !actions.contains(&claims.action) {
            return Err(Reason::ActionNotAllowed);
        }

        if claims.htm != request.method || claims.htu != request.path {
            return Err(Reason::OtherRequest);
        }
        if claims.bh != request.body_hash() {
            return Err(Reason::BodyChanged);
        }

        Ok(())
    }
}
