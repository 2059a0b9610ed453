//! Evaluating a flag for a context: the value, the variant and the reason, with flagd's
//! rules for reasons and OFREP's error codes. Pure: the time comes in as an argument.

use serde_json::{Map, Value};

use crate::logic::{self, Root};
use crate::model::{Flag, FlagSet, State, Targeting};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Static,
    TargetingMatch,
    Default,
    Disabled,
    Error,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Static => "STATIC",
            Self::TargetingMatch => "TARGETING_MATCH",
            Self::Default => "DEFAULT",
            Self::Disabled => "DISABLED",
            Self::Error => "ERROR",
        }
    }
}

/// OFREP's error codes. `TYPE_MISMATCH` is not among them: OFREP carries no type, so only
/// the client can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    FlagNotFound,
    ParseError,
    TargetingKeyMissing,
    InvalidContext,
    General,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FlagNotFound => "FLAG_NOT_FOUND",
            Self::ParseError => "PARSE_ERROR",
            Self::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            Self::InvalidContext => "INVALID_CONTEXT",
            Self::General => "GENERAL",
        }
    }
}

/// The outcome of one evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolution {
    /// `None` when the caller's own default applies (a disabled flag, no default variant,
    /// an error): OFREP's "code default".
    pub value: Option<Value>,
    pub variant: Option<String>,
    pub reason: Reason,
    pub error: Option<(ErrorCode, String)>,
    pub metadata: Map<String, Value>,
}

impl Resolution {
    fn error(code: ErrorCode, details: String, metadata: Map<String, Value>) -> Self {
        Self {
            value: None,
            variant: None,
            reason: Reason::Error,
            error: Some((code, details)),
            metadata,
        }
    }
}

/// Evaluates `key` in `set`. `timestamp` (seconds since the epoch) is `$flagd.timestamp`.
pub fn evaluate(
    set: &FlagSet,
    key: &str,
    context: &Map<String, Value>,
    timestamp: i64,
) -> Resolution {
    match set.flags.get(key) {
        Some(flag) => evaluate_flag(flag, key, context, timestamp),
        None => Resolution::error(
            ErrorCode::FlagNotFound,
            format!("flag {key:?} not found"),
            Map::new(),
        ),
    }
}

pub fn evaluate_flag(
    flag: &Flag,
    key: &str,
    context: &Map<String, Value>,
    timestamp: i64,
) -> Resolution {
    let metadata = flag.metadata.clone();
    if flag.state == State::Disabled {
        return Resolution {
            value: None,
            variant: None,
            reason: Reason::Disabled,
            error: None,
            metadata,
        };
    }

    let rule = match &flag.targeting {
        Targeting::None => {
            // No default variant: the caller's default, and flagd calls that DEFAULT.
            let reason = if flag.default_variant.is_some() {
                Reason::Static
            } else {
                Reason::Default
            };
            return default(flag, reason, metadata);
        }
        Targeting::Broken(why) => {
            return Resolution::error(ErrorCode::ParseError, why.clone(), metadata);
        }
        Targeting::Rule(rule) => rule,
    };

    let root = Root {
        context,
        flag_key: key,
        timestamp,
    };
    let variant = match logic::evaluate(rule, &root) {
        Value::Null => return default(flag, Reason::Default, metadata),
        Value::String(s) => s,
        // flagd names variants "true"/"false" when a rule yields a boolean.
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => {
            return Resolution::error(
                ErrorCode::General,
                format!("targeting yielded {other}, not a variant name"),
                metadata,
            );
        }
    };
    match flag.variants.get(&variant) {
        Some(value) => Resolution {
            value: Some(value.clone()),
            variant: Some(variant),
            reason: Reason::TargetingMatch,
            error: None,
            metadata,
        },
        None => Resolution::error(
            ErrorCode::General,
            format!("targeting yielded {variant:?}, which is not a variant of the flag"),
            metadata,
        ),
    }
}

fn default(flag: &Flag, reason: Reason, metadata: Map<String, Value>) -> Resolution {
    let variant = flag.default_variant.clone();
    Resolution {
        value: variant.as_ref().and_then(|v| flag.variants.get(v).cloned()),
        variant,
        reason,
        error: None,
        metadata,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn set(flags: Value) -> FlagSet {
        let (set, problems) = FlagSet::from_json(&json!({"flags": flags})).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        set
    }

    fn ctx(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn falsy_variant_values_are_values() {
        // Cases file, case 2.
        for (off, on) in [
            (json!(false), json!(true)),
            (json!(0), json!(1)),
            (json!(0.0), json!(1.5)),
            (json!(""), json!("x")),
            (json!({}), json!({"a": 1})),
        ] {
            let s = set(json!({"f": {"state": "ENABLED",
                "variants": {"off": off.clone(), "on": on}, "defaultVariant": "off"}}));
            let r = evaluate(&s, "f", &Map::new(), 0);
            assert_eq!(r.value, Some(off.clone()));
            assert_eq!(r.variant.as_deref(), Some("off"));
            assert_eq!(r.reason, Reason::Static);
            assert!(r.error.is_none());
        }
        // 0.0 stays a float on the wire, which typed clients depend on.
        let s =
            set(json!({"f": {"state": "ENABLED", "variants": {"z": 0.0}, "defaultVariant": "z"}}));
        let r = evaluate(&s, "f", &Map::new(), 0);
        assert_eq!(serde_json::to_string(&r.value).unwrap(), "0.0");
    }

    #[test]
    fn fractional_boundaries_pick_the_bucket_flagd_picks() {
        // Cases file, case 1.
        let s = set(json!({"edge": {"state": "ENABLED",
        "variants": {"lower": "lower", "upper": "upper"}, "defaultVariant": "lower",
        "targeting": {"fractional": [
            {"var": "targetingKey"}, ["lower", 50], ["upper", 50]
        ]}}}));
        for (tk, want) in [
            ("ejOoVL", "lower"),
            ("bY9fO-", "lower"),
            ("SI7p-", "lower"),
            ("6LvT0", "upper"),
            ("ceQdGm", "upper"),
        ] {
            let r = evaluate(&s, "edge", &ctx(json!({"targetingKey": tk})), 0);
            assert_eq!(r.variant.as_deref(), Some(want), "{tk}");
            assert_eq!(r.reason, Reason::TargetingMatch);
        }
    }

    #[test]
    fn fractional_on_an_absent_attribute_is_the_default_not_an_error() {
        // Cases file, case 4.
        let s = set(json!({"f": {"state": "ENABLED",
            "variants": {"a": "a", "b": "b"}, "defaultVariant": "b",
            "targeting": {"fractional": [{"var": "user.org"}, ["a", 100]]}}}));
        let r = evaluate(&s, "f", &ctx(json!({"targetingKey": "u1", "user": {}})), 0);
        assert_eq!(r.variant.as_deref(), Some("b"));
        assert_eq!(r.reason, Reason::Default);
        assert!(r.error.is_none());
        let r = evaluate(&s, "f", &ctx(json!({"user": {"org": "acme"}})), 0);
        assert_eq!(r.variant.as_deref(), Some("a"));
    }

    #[test]
    fn reasons_follow_flagd() {
        let s = set(json!({
            "disabled": {"state": "DISABLED", "variants": {"a": 1}, "defaultVariant": "a"},
            "no-default": {"state": "ENABLED", "variants": {"a": 1, "b": 2}},
            "targeted": {"state": "ENABLED", "variants": {"a": "A", "b": "B"},
                "defaultVariant": "a",
                "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "b", null]}},
            "bool-rule": {"state": "ENABLED", "variants": {"true": 1, "false": 0},
                "defaultVariant": "false",
                "targeting": {"starts_with": [{"var": "id"}, "abc"]}},
            "unknown-variant": {"state": "ENABLED", "variants": {"a": 1},
                "targeting": {"var": "pick"}},
            "empty-targeting": {"state": "ENABLED", "variants": {"a": 1},
                "defaultVariant": "a", "targeting": {}}
        }));
        let eval = |k: &str, c: Value| evaluate(&s, k, &ctx(c), 0);

        let r = eval("disabled", json!({}));
        assert_eq!(
            (r.reason, r.value, r.variant),
            (Reason::Disabled, None, None)
        );

        let r = eval("no-default", json!({}));
        assert_eq!((r.reason, r.value), (Reason::Default, None));

        let r = eval("targeted", json!({"plan": "pro"}));
        assert_eq!(
            (r.reason, r.value),
            (Reason::TargetingMatch, Some(json!("B")))
        );
        let r = eval("targeted", json!({"plan": "free"}));
        assert_eq!((r.reason, r.value), (Reason::Default, Some(json!("A"))));

        let r = eval("bool-rule", json!({"id": "abcdef"}));
        assert_eq!(
            (r.reason, r.value),
            (Reason::TargetingMatch, Some(json!(1)))
        );
        let r = eval("bool-rule", json!({"id": 5}));
        assert_eq!((r.reason, r.value), (Reason::Default, Some(json!(0))));

        let r = eval("unknown-variant", json!({"pick": "zzz"}));
        assert_eq!(r.reason, Reason::Error);
        assert_eq!(r.error.unwrap().0, ErrorCode::General);

        assert_eq!(eval("empty-targeting", json!({})).reason, Reason::Static);

        let r = eval("missing", json!({}));
        assert_eq!(r.error.unwrap().0, ErrorCode::FlagNotFound);
    }

    #[test]
    fn flagd_properties_come_from_the_arguments() {
        let s = set(
            json!({"timed": {"state": "ENABLED", "variants": {"early": 1, "late": 2},
            "defaultVariant": "early",
            "targeting": {"if": [
                {">": [{"var": "$flagd.timestamp"}, 1_700_000_000]}, "late", null
            ]}}}),
        );
        assert_eq!(
            evaluate(&s, "timed", &Map::new(), 1_600_000_000)
                .variant
                .as_deref(),
            Some("early")
        );
        assert_eq!(
            evaluate(&s, "timed", &Map::new(), 1_800_000_000)
                .variant
                .as_deref(),
            Some("late")
        );
    }

    #[test]
    fn missing_ref_is_a_parse_error() {
        let s = set(
            json!({"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a",
            "targeting": {"if": [{"$ref": "gone"}, "a", null]}}}),
        );
        let r = evaluate(&s, "f", &Map::new(), 0);
        assert_eq!(r.error.unwrap().0, ErrorCode::ParseError);
    }
}
