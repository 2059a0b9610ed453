//! flagd's custom JsonLogic operators: `fractional`, `sem_ver`, `starts_with`, `ends_with`.
//!
//! flagd's rule for all of them: input the operator cannot work on yields `null`, never an
//! error, so the flag falls back to its default variant (flagd issue #1874).

use std::cmp::Ordering;

use serde_json::Value;

use crate::logic::{Expr, Op, Root, to_text};
use crate::path::{Invalid, JsonPath};

/// MurmurHash3 x86_32 with seed 0 over the UTF-8 bytes, as flagd hashes bucketing keys.
pub fn murmur3(key: &str) -> u32 {
    // Reading from a byte slice cannot fail.
    murmur3::murmur3_32(&mut key.as_bytes(), 0).unwrap_or(0)
}

/// flagd's current ("v2") bucketing: the bucket is `(hash × total weight) >> 32` on the
/// unsigned hash, then the first entry whose cumulative weight exceeds it wins. Integer
/// arithmetic only, so every implementation agrees on every boundary.
pub fn bucket(hash: u32, weights: &[u64]) -> Option<usize> {
    let total: u64 = weights.iter().sum();
    if total == 0 {
        return None;
    }
    let point = (u128::from(hash) * u128::from(total)) >> 32;
    let mut cumulative: u128 = 0;
    for (i, w) in weights.iter().enumerate() {
        cumulative += u128::from(*w);
        if point < cumulative {
            return Some(i);
        }
    }
    None
}

/// `fractional`: `[bucketKey?, [variant, weight?], ...]`, arguments already evaluated.
///
/// Without a bucketing key the flag key followed by the targeting key is hashed. A weight
/// left out counts 1, a negative one 0; weights are whole numbers.
pub fn fractional(args: &[Value], root: &Root<'_>) -> Value {
    let (key, buckets) = match args.first() {
        Some(Value::String(key)) => (key.clone(), &args[1..]),
        Some(Value::Array(_)) => match root.targeting_key() {
            Some(tk) => (format!("{}{tk}", root.flag_key), args),
            None => return Value::Null,
        },
        // A bucketing key that is missing from the context (or not a string): no bucket.
        _ => return Value::Null,
    };

    let mut variants = Vec::with_capacity(buckets.len());
    let mut weights = Vec::with_capacity(buckets.len());
    for b in buckets {
        let Value::Array(entry) = b else {
            return Value::Null;
        };
        let Some(variant) = entry.first() else {
            return Value::Null;
        };
        let weight = match entry.get(1) {
            None => 1,
            Some(w) => match w.as_f64() {
                Some(w) if w > 0.0 => (w as u64).min(i32::MAX as u64),
                Some(_) => 0,
                None => return Value::Null,
            },
        };
        variants.push(variant);
        weights.push(weight);
    }

    match bucket(murmur3(&key), &weights) {
        Some(i) => variants[i].clone(),
        None => Value::Null,
    }
}

/// A version as flagd reads one: an optional `v`/`V`, then `major[.minor[.patch]]` with an
/// optional pre-release and build metadata; numbers from the context are read as text.
pub fn parse_version(v: &Value) -> Option<semver::Version> {
    let text = match v {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(_) => to_text(v),
        _ => return None,
    };
    let text = text
        .strip_prefix('v')
        .or_else(|| text.strip_prefix('V'))
        .unwrap_or(&text);

    // Fill a partial core ("1", "1.2") to three parts before the strict parser sees it.
    let split = text.find(['-', '+']).unwrap_or(text.len());
    let (core, tail) = text.split_at(split);
    let parts = core.split('.').count();
    let core = match parts {
        1 => format!("{core}.0.0"),
        2 => format!("{core}.0"),
        _ => core.to_owned(),
    };
    semver::Version::parse(&format!("{core}{tail}")).ok()
}

/// `sem_ver`: `[version, operator, version]`. `^` means the same major version and `~` the
/// same major and minor, as in flagd; build metadata never counts.
pub fn sem_ver(args: &[Value]) -> Value {
    let [a, op, b] = args else {
        return Value::Null;
    };
    let (Some(a), Some(op), Some(b)) = (parse_version(a), op.as_str(), parse_version(b)) else {
        return Value::Null;
    };
    let ord = a.cmp_precedence(&b);
    let result = match op {
        "=" => ord == Ordering::Equal,
        "!=" => ord != Ordering::Equal,
        "<" => ord == Ordering::Less,
        "<=" => ord != Ordering::Greater,
        ">" => ord == Ordering::Greater,
        ">=" => ord != Ordering::Less,
        "^" => a.major == b.major,
        "~" => a.major == b.major && a.minor == b.minor,
        _ => return Value::Null,
    };
    Value::Bool(result)
}

pub const SEM_VER_OPERATORS: &[&str] = &["=", "!=", "<", "<=", ">", ">=", "^", "~"];

/// `starts_with` and `ends_with`: two strings, else `null`.
pub fn affix(args: &[Value], test: impl Fn(&str, &str) -> bool) -> Value {
    match args {
        [Value::String(s), Value::String(p)] => Value::Bool(test(s, p)),
        _ => Value::Null,
    }
}

/// What a write must get right about flagd's operators beyond what evaluation forgives:
/// argument counts, literal `sem_ver` operators and versions, and `fractional` buckets with
/// non-negative whole weights that do not sum to zero.
pub fn check(op: Op, args: &[Expr], at: &JsonPath) -> Result<(), Invalid> {
    match op {
        Op::StartsWith | Op::EndsWith if args.len() != 2 => Err(Invalid::new(
            at,
            "takes two arguments: a string and a prefix/suffix",
        )),
        Op::SemVer => {
            if args.len() != 3 {
                return Err(Invalid::new(
                    at,
                    "takes three arguments: version, operator, version",
                ));
            }
            if let Expr::Lit(op) = &args[1]
                && !op.as_str().is_some_and(|o| SEM_VER_OPERATORS.contains(&o))
            {
                return Err(Invalid::new(
                    &at.index(1),
                    format!(
                        "unknown operator; use one of {}",
                        SEM_VER_OPERATORS.join(" ")
                    ),
                ));
            }
            for i in [0, 2] {
                if let Expr::Lit(v) = &args[i]
                    && parse_version(v).is_none()
                {
                    return Err(Invalid::new(&at.index(i), "not a semantic version"));
                }
            }
            Ok(())
        }
        Op::Fractional => check_fractional(args, at),
        _ => Ok(()),
    }
}

fn check_fractional(args: &[Expr], at: &JsonPath) -> Result<(), Invalid> {
    let first_is_bucket = matches!(
        args.first(),
        Some(Expr::Lit(Value::Array(_)) | Expr::Array(_))
    );
    let skip = usize::from(!first_is_bucket);
    if args.len() <= skip {
        return Err(Invalid::new(
            at,
            "needs at least one [variant, weight] bucket",
        ));
    }
    let mut total: u64 = 0;
    let mut all_literal = true;
    for (i, b) in args.iter().enumerate().skip(skip) {
        let here = at.index(i);
        let entry: Vec<Option<&Value>> = match b {
            Expr::Lit(Value::Array(items)) => items.iter().map(Some).collect(),
            Expr::Array(items) => items
                .iter()
                .map(|e| match e {
                    Expr::Lit(v) => Some(v),
                    _ => None,
                })
                .collect(),
            _ => return Err(Invalid::new(&here, "expected a [variant, weight] bucket")),
        };
        if entry.is_empty() || entry.len() > 2 {
            return Err(Invalid::new(
                &here,
                "expected [variant] or [variant, weight]",
            ));
        }
        match entry.get(1) {
            None => total += 1,
            Some(None) => all_literal = false,
            Some(Some(w)) => {
                let ok = w
                    .as_i64()
                    .is_some_and(|w| (0..=i64::from(i32::MAX)).contains(&w));
                if !ok {
                    return Err(Invalid::new(
                        &here.index(1),
                        "weight must be a whole number from 0 to 2147483647",
                    ));
                }
                total += w.as_u64().unwrap_or(0);
            }
        }
    }
    if all_literal && total == 0 {
        return Err(Invalid::new(at, "the weights sum to zero"));
    }
    if total > i32::MAX as u64 {
        return Err(Invalid::new(at, "the weights sum to more than 2147483647"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::{Map, json};

    use super::*;

    fn root<'a>(ctx: &'a Map<String, Value>, key: &'a str) -> Root<'a> {
        Root {
            context: ctx,
            flag_key: key,
            timestamp: 0,
        }
    }

    #[test]
    fn murmur3_matches_flagds_hash_edge_vectors() {
        // Keys the flagd testbed found to hash onto the boundaries of the u32 range.
        assert_eq!(murmur3("ejOoVL"), 0);
        assert_eq!(murmur3("bY9fO-"), 1);
        assert_eq!(murmur3("SI7p-"), (1 << 31) - 1);
        assert_eq!(murmur3("6LvT0"), 1 << 31);
        assert_eq!(murmur3("ceQdGm"), u32::MAX);
    }

    #[test]
    fn bucket_boundaries_of_a_50_50_split() {
        let w = [50, 50];
        assert_eq!(bucket(0, &w), Some(0));
        assert_eq!(bucket(1, &w), Some(0));
        assert_eq!(bucket((1 << 31) - 1, &w), Some(0));
        assert_eq!(bucket(1 << 31, &w), Some(1));
        assert_eq!(bucket(u32::MAX, &w), Some(1));
        assert_eq!(bucket(123, &[0, 0]), None);
        assert_eq!(bucket(u32::MAX, &[0, 5, 0]), Some(1));
    }

    #[test]
    fn fractional_v2_matches_flagd_testbed_vectors() {
        let ctx = Map::new();
        let quarters = |name: &str| {
            vec![
                json!(format!("fractional-flag{name}")),
                json!(["clubs", 25]),
                json!(["diamonds", 25]),
                json!(["hearts", 25]),
                json!(["spades", 25]),
            ]
        };
        for (name, want) in [
            ("jack", "hearts"),
            ("queen", "spades"),
            ("ten", "clubs"),
            ("nine", "diamonds"),
            ("3", "clubs"),
        ] {
            assert_eq!(
                fractional(&quarters(name), &root(&ctx, "x")),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn fractional_defaults_to_flag_key_and_targeting_key() {
        let shorthand = [json!(["heads"]), json!(["tails", 1])];
        for (tk, want) in [("jon@company.com", "heads"), ("jane@company.com", "tails")] {
            let ctx = json!({"targetingKey": tk}).as_object().unwrap().clone();
            let got = fractional(&shorthand, &root(&ctx, "fractional-flag-shorthand"));
            assert_eq!(got, want, "{tk}");
        }
        let no_key = Map::new();
        assert_eq!(fractional(&shorthand, &root(&no_key, "f")), Value::Null);
    }

    #[test]
    fn fractional_edge_cases_fall_back_instead_of_failing() {
        let ctx = Map::new();
        let r = root(&ctx, "f");
        assert_eq!(fractional(&[Value::Null, json!(["a", 1])], &r), Value::Null);
        assert_eq!(
            fractional(&[json!("k"), json!(["a", 0]), json!(["b", 0])], &r),
            Value::Null
        );
        assert_eq!(
            fractional(&[json!("k"), json!(["a", -50]), json!(["b", 100])], &r),
            "b"
        );
        assert_eq!(fractional(&[json!("k"), json!(["only", 1])], &r), "only");
    }

    #[test]
    fn sem_ver_is_lenient_like_flagd() {
        let s = |a: Value, op: &str, b: &str| sem_ver(&[a, json!(op), json!(b)]);
        assert_eq!(s(json!("2.1.0"), ">", "2.0.0"), true);
        assert_eq!(s(json!("2.0.0-alpha"), "<", "2.0.0"), true);
        assert_eq!(s(json!("2.0.0.0"), "=", "2.0.0"), Value::Null);
        assert_eq!(s(json!("V1.0.0"), "=", "v1.0.0"), true);
        assert_eq!(s(json!("1.0.0+other"), "=", "1.0.0+build"), true);
        assert_eq!(s(json!(1), "^", "1"), true);
        assert_eq!(s(json!(1.2), ">", "1.1"), true);
        assert_eq!(s(json!(1.1), ">", "1.1"), false);
        assert_eq!(s(json!("3.0.1"), "~", "3.0.0"), true);
        assert_eq!(s(json!("3.1.0"), "~", "3.0.0"), false);
        assert_eq!(s(json!("3.1.0"), "^", "3.0.0"), true);
        assert_eq!(s(json!("not-a-version"), "=", "1.0.0"), Value::Null);
        assert_eq!(s(json!("1.0.0"), "===", "1.0.0"), Value::Null);
        assert_eq!(sem_ver(&[json!("1.0.0"), json!("=")]), Value::Null);
    }

    #[test]
    fn affixes_need_two_strings() {
        let t = |a: &[Value]| affix(a, |s, p| s.starts_with(p));
        assert_eq!(t(&[json!("abcdef"), json!("abc")]), true);
        assert_eq!(t(&[json!("xbc"), json!("abc")]), false);
        assert_eq!(t(&[json!(123), json!("abc")]), Value::Null);
        assert_eq!(t(&[json!("abc")]), Value::Null);
    }
}
