//! Service tokens: the accepted shape, and every way a token must be refused.

#![allow(clippy::unwrap_used)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use secrecy::SecretString;
use serde_json::{Value, json};
use service_token::{Key, KeyError, Policy, Reason, Request, Signer, Verifier, parse_keys};
use sha2::{Digest, Sha256};

const NOW: u64 = 1_790_000_000;
const SECRET: &str = "0123456789abcdef0123456789abcdef-flagbit";
const OTHER_SECRET: &str = "fedcba9876543210fedcba9876543210-other";
const PATH: &str = "/internal/v1/receipts";
const BODY: &[u8] = br#"{"period":"2026-11"}"#;

fn request() -> Request<'static> {
    Request {
        method: "POST",
        path: PATH,
        body: BODY,
    }
}

fn key(kid: &str, secret: &str) -> Key {
    Key::new(kid, SecretString::from(secret.to_owned())).unwrap()
}

fn policy() -> Policy {
    Policy::new("documint").allow("flagbit", "receipt:create")
}

fn verifier() -> Verifier {
    Verifier::new(&[key("k1", SECRET)], policy()).unwrap()
}

fn signer() -> Signer {
    Signer::new(&key("k1", SECRET), "flagbit", 600).unwrap()
}

fn body_hash(body: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(body))
}

/// The claims a correct signer would send, to be bent by a test.
fn good_claims() -> Value {
    json!({
        "iss": "flagbit", "sub": "flagbit", "aud": "documint", "action": "receipt:create",
        "jti": "5f0c6a53-8a36-4c6f-9d0c-0b7f1f0f3c1e", "iat": NOW, "exp": NOW + 600,
        "htm": "POST", "htu": PATH, "bh": body_hash(BODY),
    })
}

fn good_header() -> Value {
    json!({"alg": "HS256", "typ": "svc+jwt", "kid": "k1"})
}

/// Any header and claims, HMAC-signed with `secret`: how an attacker holding a key (or a
/// test) makes tokens the signer never would.
fn forge(header: &Value, claims: &Value, secret: &str) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let key = EncodingKey::from_secret(secret.as_bytes()).unwrap();
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap();
    format!("{message}.{signature}")
}

fn reason(token: &str) -> Reason {
    verifier()
        .verify(token, &request(), NOW)
        .unwrap_err()
        .reason
}

fn with_claim(name: &str, value: Value) -> String {
    let mut claims = good_claims();
    claims[name] = value;
    forge(&good_header(), &claims, SECRET)
}

fn with_header(name: &str, value: Value) -> String {
    let mut header = good_header();
    header[name] = value;
    forge(&header, &good_claims(), SECRET)
}

#[test]
fn a_signed_token_is_accepted_for_its_request() {
    let token = signer()
        .sign("documint", "receipt:create", &request(), NOW)
        .unwrap();

    let verified = verifier().verify(&token, &request(), NOW + 5).unwrap();

    assert_eq!(verified.kid, "k1");
    assert_eq!(verified.issuer, "flagbit");
    assert_eq!(verified.action, "receipt:create");
    assert_eq!(verified.remember_until, NOW + 600 + service_token::LEEWAY);
    assert!(
        uuid::Uuid::parse_str(&verified.jti).is_ok(),
        "jti is a UUID: {}",
        verified.jti
    );
}

#[test]
fn the_header_and_claims_follow_the_profile() {
    let token = signer()
        .sign("documint", "receipt:create", &request(), NOW)
        .unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();

    assert_eq!(header.typ.as_deref(), Some("svc+jwt"));
    assert_eq!(header.kid.as_deref(), Some("k1"));
    assert_eq!(header.alg, Algorithm::HS256);
    assert_eq!(claims["aud"], "documint");
    assert_eq!(claims["sub"], "flagbit");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        600
    );
    assert_eq!(claims["bh"], body_hash(BODY));
}

#[test]
fn each_token_has_a_fresh_jti() {
    let first = verifier()
        .verify(
            &signer()
                .sign("documint", "receipt:create", &request(), NOW)
                .unwrap(),
            &request(),
            NOW,
        )
        .unwrap();
    let second = verifier()
        .verify(
            &signer()
                .sign("documint", "receipt:create", &request(), NOW)
                .unwrap(),
            &request(),
            NOW,
        )
        .unwrap();

    assert_ne!(first.jti, second.jti);
}

#[test]
fn a_missing_token_is_refused() {
    assert_eq!(reason(""), Reason::Missing);
}

#[test]
fn a_token_signed_with_another_key_is_refused() {
    let token = forge(&good_header(), &good_claims(), OTHER_SECRET);

    assert_eq!(reason(&token), Reason::BadSignature);
}

#[test]
fn a_body_changed_after_signing_is_refused() {
    let token = signer()
        .sign("documint", "receipt:create", &request(), NOW)
        .unwrap();
    let changed = Request {
        body: br#"{"period":"2026-10"}"#,
        ..request()
    };

    let refusal = verifier().verify(&token, &changed, NOW).unwrap_err();

    assert_eq!(refusal.reason, Reason::BodyChanged);
    assert!(refusal.jti.is_some(), "the log names the jti");
}

#[test]
fn a_token_for_another_route_or_method_is_refused() {
    let token = signer()
        .sign(
            "documint",
            "receipt:create",
            &Request {
                path: "/internal/v1/other",
                ..request()
            },
            NOW,
        )
        .unwrap();
    assert_eq!(reason(&token), Reason::OtherRequest);

    let token = signer()
        .sign(
            "documint",
            "receipt:create",
            &Request {
                method: "PUT",
                ..request()
            },
            NOW,
        )
        .unwrap();
    assert_eq!(reason(&token), Reason::OtherRequest);
}

#[test]
fn a_tampered_claim_breaks_the_signature() {
    let token = signer()
        .sign("documint", "receipt:create", &request(), NOW)
        .unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    claims["action"] = json!("receipt:delete-all");
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());

    assert_eq!(reason(&parts.join(".")), Reason::BadSignature);
}

// Case 1: only this service's own name as the audience.
#[test]
fn another_audience_is_refused() {
    for aud in [
        json!("ledger"),
        json!([]),
        json!(""),
        json!(42),
        json!(["documint", "ledger"]),
    ] {
        assert_eq!(
            reason(&with_claim("aud", aud.clone())),
            Reason::WrongAudience,
            "aud {aud}"
        );
    }
}

// Case 2: arithmetic at the edges.
#[test]
fn extreme_expiry_times_are_refused_without_panicking() {
    for exp in [0_u64, 1] {
        let reason = reason(&with_claim("exp", json!(exp)));
        assert!(
            matches!(reason, Reason::LifetimeTooLong | Reason::Expired),
            "exp {exp}: {reason}"
        );
    }

    assert_eq!(
        reason(&with_claim("exp", json!(u64::MAX))),
        Reason::LifetimeTooLong
    );
    assert_eq!(reason(&with_claim("exp", json!(-1))), Reason::BadClaims);
    assert_eq!(reason(&with_claim("exp", json!("soon"))), Reason::BadClaims);

    // The verifier is still usable afterwards.
    let token = signer()
        .sign("documint", "receipt:create", &request(), NOW)
        .unwrap();
    assert!(verifier().verify(&token, &request(), NOW).is_ok());
}

#[test]
fn an_expired_token_is_refused_after_the_leeway() {
    let token = signer()
        .sign("documint", "receipt:create", &request(), NOW)
        .unwrap();
    let verifier = verifier();

    assert!(
        verifier
            .verify(&token, &request(), NOW + 600 + service_token::LEEWAY)
            .is_ok()
    );
    let refusal = verifier.verify(&token, &request(), NOW + 600 + service_token::LEEWAY + 1);
    assert_eq!(refusal.unwrap_err().reason, Reason::Expired);
}

// Case 3.
#[test]
fn a_token_not_yet_valid_is_refused() {
    assert_eq!(
        reason(&with_claim("nbf", json!(NOW + 3600))),
        Reason::NotYetValid
    );
}

// Case 4.
#[test]
fn unsigned_tokens_are_refused() {
    for alg in ["none", "None", "nOnE", "NONE"] {
        let header = json!({"alg": alg, "typ": "svc+jwt", "kid": "k1"});
        let token = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(good_claims().to_string())
        );
        assert_eq!(reason(&token), Reason::Malformed, "alg {alg}");
    }
}

#[test]
fn a_header_naming_another_algorithm_is_refused() {
    for alg in ["HS512", "RS256", "EdDSA"] {
        let token = with_header("alg", json!(alg));
        assert_eq!(reason(&token), Reason::BadSignature, "alg {alg}");
    }
}

// Case 5: no permissive mode.
#[test]
fn a_missing_empty_or_short_key_is_refused_at_start() {
    assert_eq!(parse_keys("").unwrap_err(), KeyError::Empty);
    assert_eq!(
        parse_keys("# only a comment\n\n").unwrap_err(),
        KeyError::Empty
    );
    assert_eq!(
        parse_keys("k1=").unwrap_err(),
        KeyError::TooShort {
            kid: "k1".into(),
            length: 0
        }
    );
    assert_eq!(
        parse_keys("k1=short-secret").unwrap_err(),
        KeyError::TooShort {
            kid: "k1".into(),
            length: 12
        }
    );
    assert_eq!(
        parse_keys("no equals sign").unwrap_err(),
        KeyError::BadLine(1)
    );
    assert!(matches!(Verifier::new(&[], policy()), Err(KeyError::Empty)));
    assert!(matches!(
        Signer::from_key_file("", "flagbit", 600),
        Err(KeyError::Empty)
    ));
}

#[test]
fn a_signer_lifetime_outside_five_to_fifteen_minutes_is_refused() {
    for lifetime in [0, 299, 901, 3600] {
        assert_eq!(
            Signer::new(&key("k1", SECRET), "flagbit", lifetime).unwrap_err(),
            KeyError::Lifetime(lifetime)
        );
    }
    assert!(Signer::new(&key("k1", SECRET), "flagbit", 300).is_ok());
    assert!(Signer::new(&key("k1", SECRET), "flagbit", 900).is_ok());
}

#[test]
fn a_signing_key_file_holds_one_key() {
    let two = format!("a={SECRET}\nb={OTHER_SECRET}\n");

    assert_eq!(
        Signer::from_key_file(&two, "flagbit", 600).unwrap_err(),
        KeyError::NotOneKey(2)
    );
    assert_eq!(
        Signer::from_key_file(&format!("a={SECRET}\n"), "flagbit", 600)
            .unwrap()
            .kid(),
        "a"
    );
}

#[test]
fn key_files_refuse_duplicates_and_odd_names() {
    let duplicate = format!("a={SECRET}\na={OTHER_SECRET}\n");
    assert_eq!(
        parse_keys(&duplicate).unwrap_err(),
        KeyError::Duplicate("a".into())
    );
    assert!(matches!(
        parse_keys(&format!("../x={SECRET}")),
        Err(KeyError::BadKid(_))
    ));

    let keys = parse_keys(&format!(
        "# rotation\nold = {SECRET}\n\nnew={OTHER_SECRET}\n"
    ))
    .unwrap();
    assert_eq!(
        keys.iter().map(Key::kid).collect::<Vec<_>>(),
        ["old", "new"]
    );
}

#[test]
fn a_key_never_shows_in_debug_output() {
    let keys = parse_keys(&format!("k1={SECRET}")).unwrap();
    let verifier = Verifier::new(&keys, policy()).unwrap();
    let signer = Signer::new(&keys[0], "flagbit", 600).unwrap();

    for text in [
        format!("{keys:?}"),
        format!("{verifier:?}"),
        format!("{signer:?}"),
    ] {
        assert!(!text.contains(SECRET), "{text}");
        assert!(text.contains("k1"), "{text}");
    }
}

// Case 6: the kid is only a name.
#[test]
fn hostile_key_ids_are_unknown_keys() {
    for kid in [
        json!("../../../../dev/null"),
        json!("x' UNION SELECT 'secret"),
        json!("k1\u{0}"),
        json!("k".repeat(100)),
    ] {
        assert_eq!(
            reason(&with_header("kid", kid.clone())),
            Reason::UnknownKey,
            "kid {kid}"
        );
    }

    // A number is not a kid: the header does not parse.
    assert_eq!(reason(&with_header("kid", json!(42))), Reason::Malformed);

    // 64 KiB of text: refused by size before anything is decoded.
    let huge = with_header("kid", json!("x".repeat(64 * 1024)));
    assert_eq!(reason(&huge), Reason::Malformed);
}

// Case 7: no fallback key.
#[test]
fn an_unknown_kid_signed_with_an_empty_key_is_refused() {
    let header = json!({"alg": "HS256", "typ": "svc+jwt", "kid": "nobody"});
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(good_claims().to_string())
    );
    // The crate refuses to build an empty HMAC key, so the empty-key signature is made here.
    let signature = URL_SAFE_NO_PAD.encode(hmac_sha256(b"", message.as_bytes()));
    let token = format!("{message}.{signature}");

    let refusal = verifier().verify(&token, &request(), NOW).unwrap_err();

    assert_eq!(refusal.reason, Reason::UnknownKey);
    assert_eq!(refusal.kid.as_deref(), Some("nobody"));
}

// Case 8: the signature first; nothing reads the claims of a badly signed token.
#[test]
fn expired_and_badly_signed_is_a_bad_signature() {
    let mut claims = good_claims();
    claims["exp"] = json!(1);
    claims["iat"] = json!(0);
    let token = forge(&good_header(), &claims, OTHER_SECRET);

    let refusal = verifier().verify(&token, &request(), NOW).unwrap_err();

    assert_eq!(refusal.reason, Reason::BadSignature);
    assert_eq!(refusal.jti, None);
}

// Case 9: profile checks.
#[test]
fn tokens_of_another_type_are_refused() {
    let mut header = good_header();
    header.as_object_mut().unwrap().remove("typ");
    assert_eq!(
        reason(&forge(&header, &good_claims(), SECRET)),
        Reason::WrongType
    );

    for typ in ["JWT", "at+jwt", "svc+jwt+x", ""] {
        assert_eq!(
            reason(&with_header("typ", json!(typ))),
            Reason::WrongType,
            "typ {typ}"
        );
    }

    // Media types compare case-insensitively and may carry the application/ prefix.
    for typ in ["SVC+JWT", "application/svc+jwt"] {
        let token = with_header("typ", json!(typ));
        assert!(
            verifier().verify(&token, &request(), NOW).is_ok(),
            "typ {typ}"
        );
    }
}

#[test]
fn a_token_issued_in_the_future_is_refused() {
    let mut claims = good_claims();
    claims["iat"] = json!(NOW + 300);
    claims["exp"] = json!(NOW + 900);

    assert_eq!(
        reason(&forge(&good_header(), &claims, SECRET)),
        Reason::IssuedInFuture
    );
}

#[test]
fn an_hour_long_token_is_refused() {
    assert_eq!(
        reason(&with_claim("exp", json!(NOW + 3600))),
        Reason::LifetimeTooLong
    );
}

#[test]
fn issuers_and_actions_are_allow_listed() {
    assert_eq!(
        reason(&with_claim("action", json!("receipt:delete"))),
        Reason::ActionNotAllowed
    );
    assert_eq!(
        reason(&with_claim("iss", json!("cronping"))),
        Reason::IssuerNotAllowed
    );
    assert_eq!(
        reason(&with_claim("sub", json!("cronping"))),
        Reason::IssuerNotAllowed
    );
}

#[test]
fn claims_missing_or_of_the_wrong_type_are_refused() {
    for name in ["jti", "iat", "exp", "action", "bh", "iss"] {
        let mut claims = good_claims();
        claims.as_object_mut().unwrap().remove(name);
        assert_eq!(
            reason(&forge(&good_header(), &claims, SECRET)),
            Reason::BadClaims,
            "{name}"
        );
    }
    assert_eq!(reason(&with_claim("iat", json!(1.5))), Reason::BadClaims);
    assert_eq!(reason(&with_claim("jti", json!(""))), Reason::BadClaims);
    assert_eq!(
        reason(&with_claim("jti", json!("ab\u{0}cd"))),
        Reason::BadClaims
    );
    assert_eq!(
        reason(&with_claim("jti", json!("x".repeat(129)))),
        Reason::BadClaims
    );
}

#[test]
fn a_critical_extension_is_refused() {
    assert_eq!(
        reason(&with_header("crit", json!(["exp"]))),
        Reason::Malformed
    );
}

// Case 10: rotation.
#[test]
fn rotation_accepts_both_keys_during_the_overlap_and_only_the_new_one_after() {
    let old = Signer::new(&key("2026-11", SECRET), "flagbit", 600).unwrap();
    let new = Signer::new(&key("2026-12", OTHER_SECRET), "flagbit", 600).unwrap();
    let before = Verifier::new(&[key("2026-11", SECRET)], policy()).unwrap();
    let overlap = Verifier::new(
        &[key("2026-11", SECRET), key("2026-12", OTHER_SECRET)],
        policy(),
    )
    .unwrap();
    let after = Verifier::new(&[key("2026-12", OTHER_SECRET)], policy()).unwrap();
    let old_token = old
        .sign("documint", "receipt:create", &request(), NOW)
        .unwrap();
    let new_token = new
        .sign("documint", "receipt:create", &request(), NOW)
        .unwrap();

    // The signer must not switch before the verifier learnt the new key.
    assert_eq!(
        before
            .verify(&new_token, &request(), NOW)
            .unwrap_err()
            .reason,
        Reason::UnknownKey
    );

    assert!(overlap.verify(&old_token, &request(), NOW).is_ok());
    assert!(overlap.verify(&new_token, &request(), NOW).is_ok());

    assert_eq!(
        after
            .verify(&old_token, &request(), NOW)
            .unwrap_err()
            .reason,
        Reason::UnknownKey
    );
    assert!(after.verify(&new_token, &request(), NOW).is_ok());
}

#[test]
fn a_key_is_never_tried_under_another_kid() {
    // Signed with key "b" but naming "a": refused even though "b" is trusted.
    let verifier = Verifier::new(&[key("a", SECRET), key("b", OTHER_SECRET)], policy()).unwrap();
    let mut header = good_header();
    header["kid"] = json!("a");
    let token = forge(&header, &good_claims(), OTHER_SECRET);

    let refusal = verifier.verify(&token, &request(), NOW).unwrap_err();

    assert_eq!(refusal.reason, Reason::BadSignature);
}

/// HMAC-SHA256 from its definition (RFC 2104), for the empty key the crate refuses to use.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0_u8; 64];
    block[..key.len()].copy_from_slice(key);
    let inner: Vec<u8> = block
        .iter()
        .map(|b| b ^ 0x36)
        .chain(message.iter().copied())
        .collect();
    let inner_hash = Sha256::digest(&inner);
    let outer: Vec<u8> = block
        .iter()
        .map(|b| b ^ 0x5c)
        .chain(inner_hash.iter().copied())
        .collect();
    Sha256::digest(&outer).into()
}
