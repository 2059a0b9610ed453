//! Checks on a document's data before it is stored or rendered.
//!
//! typst reads numbers beyond the 64-bit integer range as floats and prints them with lost
//! precision (18446744073709551615 becomes 1.8446744073709552e19), and JSON parsers
//! everywhere lose integers beyond ±2^53. Money in documents must be exact, so any whole
//! number past ±2^53 is refused with the field named: amounts are integer minor units
//! within that range, or decimal strings.

use serde_json::Value;

/// Largest exactly representable integer in an IEEE double: 2^53.
pub const MAX_SAFE_INTEGER: u64 = 1 << 53;
/// Deepest nesting of objects and arrays accepted.
pub const MAX_DEPTH: usize = 32;

/// What is wrong with the data, and where (`amount`, `items[3].price`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub path: String,
    pub message: String,
}

/// Checks depth and number range; the size is bounded where the body is read.
pub fn check(data: &Value) -> Result<(), Invalid> {
    walk(data, &mut String::new(), 0)
}

fn walk(value: &Value, path: &mut String, depth: usize) -> Result<(), Invalid> {
    let here = |path: &str, message: String| Invalid {
        path: if path.is_empty() {
            "data".to_owned()
        } else {
            path.to_owned()
        },
        message,
    };
    match value {
        Value::Number(n) => {
            let too_big = if let Some(u) = n.as_u64() {
                u > MAX_SAFE_INTEGER
            } else if let Some(i) = n.as_i64() {
                i.unsigned_abs() > MAX_SAFE_INTEGER
            } else {
                // Parsed as a float: a whole number this large was an integer too big for
                // any integer type, or a float that cannot hold it exactly.
                n.as_f64()
                    .is_some_and(|f| f.fract() == 0.0 && f.abs() > MAX_SAFE_INTEGER as f64)
            };
            if too_big {
                return Err(here(
                    path,
                    format!(
                        "the number {n} is outside ±2^53 and cannot be kept exactly; send \
                         amounts as integer minor units within ±9007199254740992 or as a \
                         decimal string"
                    ),
                ));
            }
            Ok(())
        }
        Value::Array(_) | Value::Object(_) if depth >= MAX_DEPTH => {
            Err(here(path, format!("nested deeper than {MAX_DEPTH} levels")))
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, path, depth + 1)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            for (key, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                walk(item, path, depth + 1)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) | Value::String(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn integers_beyond_2_pow_53_are_refused_with_their_field() {
        let err = check(&parsed(r#"{"amount": 18446744073709551615}"#)).unwrap_err();
        assert_eq!(err.path, "amount");
        assert!(
            err.message.contains("18446744073709551615"),
            "{}",
            err.message
        );

        let err = check(&parsed(
            r#"{"items": [{"price": 1}, {"price": -9007199254740993}]}"#,
        ))
        .unwrap_err();
        assert_eq!(err.path, "items[1].price");

        // Beyond u64: serde reads a float; still refused.
        let err = check(&parsed(r#"{"x": {"y": 123456789012345678901234567890}}"#)).unwrap_err();
        assert_eq!(err.path, "x.y");
        assert_eq!(check(&parsed("1e300")).unwrap_err().path, "data");
    }

    #[test]
    fn the_edges_and_ordinary_values_pass() {
        check(&json!({"a": 9007199254740992u64, "b": -9007199254740992i64})).unwrap();
        check(&json!({"price": 12.5, "name": "x", "n": null, "ok": true, "l": [1, 2]})).unwrap();
        assert!(check(&json!({"a": 9007199254740993u64})).is_err());
    }

    #[test]
    fn depth_is_bounded() {
        let mut v = json!(1);
        for _ in 0..MAX_DEPTH {
            v = json!([v]);
        }
        check(&v).unwrap();
        let deeper = json!({ "k": v });
        let err = check(&deeper).unwrap_err();
        assert!(err.message.contains("nested deeper"), "{}", err.message);
        assert!(err.path.starts_with("k"), "{}", err.path);
    }
}
