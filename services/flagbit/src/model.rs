//! Flag definitions in flagd's format, parsed and checked against the rules of flagd's
//! schema, with every problem reported at its JSON path.
//!
//! A flag file is `{"flags": {key: flag}, "$evaluators": {name: rule}, "metadata": {...}}`;
//! a flag is `{state, variants, defaultVariant?, targeting?, metadata?}`. Flags are stored
//! as the JSON they were written as; what is compiled from them is [`Flag`].

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::logic::{CompileError, Compiler, Expr};
use crate::path::{Invalid, JsonPath};

/// Longest flag key, in characters.
pub const MAX_KEY_LEN: usize = 200;
pub const MAX_VARIANTS: usize = 200;
pub const MAX_FLAGS: usize = 5_000;
pub const MAX_EVALUATORS: usize = 500;
pub const MAX_METADATA: usize = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Enabled,
    Disabled,
}

/// The value type of a flag's variants; all of one flag's variants share it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Boolean,
    String,
    Number,
    Object,
}

impl Kind {
    pub fn of(v: &Value) -> Option<Self> {
        match v {
            Value::Bool(_) => Some(Self::Boolean),
            Value::String(_) => Some(Self::String),
            Value::Number(_) => Some(Self::Number),
            Value::Object(_) => Some(Self::Object),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Boolean => "a boolean",
            Self::String => "a string",
            Self::Number => "a number",
            Self::Object => "an object",
        }
    }
}

/// What a flag's targeting is after compiling.
#[derive(Clone, Debug, PartialEq)]
pub enum Targeting {
    /// None, or `{}`: the default variant is static.
    None,
    Rule(Expr),
    /// Refers to an evaluator that does not exist: evaluation answers PARSE_ERROR, as
    /// flagd does. Only loaded flag files can hold this; the API refuses to store it.
    Broken(String),
}

/// A compiled flag, ready to evaluate.
#[derive(Clone, Debug, PartialEq)]
pub struct Flag {
    pub state: State,
    pub variants: Map<String, Value>,
    pub default_variant: Option<String>,
    pub targeting: Targeting,
    /// The flag's metadata over the flag set's.
    pub metadata: Map<String, Value>,
}

/// A flag key fit for a URL path segment and a log line.
pub fn check_key(key: &str, path: &JsonPath) -> Result<(), Invalid> {
    if key.is_empty() || key.chars().count() > MAX_KEY_LEN {
        return Err(Invalid::new(
            path,
            format!("a key has 1 to {MAX_KEY_LEN} characters"),
        ));
    }
    if key.chars().any(|c| c.is_control() || c == '/') {
        return Err(Invalid::new(
            path,
            "a key may not contain '/' or control characters",
        ));
    }
    Ok(())
}

fn object<'v>(v: &'v Value, path: &JsonPath) -> Result<&'v Map<String, Value>, Invalid> {
    v.as_object()
        .ok_or_else(|| Invalid::new(path, "expected an object"))
}

fn metadata(v: Option<&Value>, path: &JsonPath) -> Result<Map<String, Value>, Invalid> {
    let Some(v) = v else {
        return Ok(Map::new());
    };
    let m = object(v, path)?;
    if m.len() > MAX_METADATA {
        return Err(Invalid::new(
            path,
            format!("at most {MAX_METADATA} entries"),
        ));
    }
    for (k, v) in m {
        // OFREP's metadata is a flat map of booleans, strings and numbers.
        if !(v.is_boolean() || v.is_string() || v.is_number()) {
            return Err(Invalid::new(
                &path.key(k),
                "metadata values are booleans, strings or numbers",
            ));
        }
    }
    Ok(m.clone())
}

impl Flag {
    /// Parses one flag definition. `strict` is for writes (see [`Compiler`]); loading is
    /// lenient about what flagd itself would load and evaluate.
    pub fn parse(
        def: &Value,
        evaluators: &Map<String, Value>,
        set_metadata: &Map<String, Value>,
        strict: bool,
        path: &JsonPath,
    ) -> Result<Self, Invalid> {
        let m = object(def, path)?;
        if strict {
            let known = [
                "state",
                "variants",
                "defaultVariant",
                "targeting",
                "metadata",
            ];
            if let Some(k) = m.keys().find(|k| !known.contains(&k.as_str())) {
                return Err(Invalid::new(&path.key(k), "unknown field"));
            }
        }

        let state = match m.get("state").and_then(Value::as_str) {
            Some("ENABLED") => State::Enabled,
            Some("DISABLED") => State::Disabled,
            _ => {
                return Err(Invalid::new(
                    &path.key("state"),
                    "expected \"ENABLED\" or \"DISABLED\"",
                ));
            }
        };

        let vpath = path.key("variants");
        let variants = object(m.get("variants").unwrap_or(&Value::Null), &vpath)?;
        if variants.is_empty() || variants.len() > MAX_VARIANTS {
            return Err(Invalid::new(
                &vpath,
                format!("a flag has 1 to {MAX_VARIANTS} variants"),
            ));
        }
        // The default variant sets the type, so the odd one out is the one reported.
        let mut kind = m
            .get("defaultVariant")
            .and_then(Value::as_str)
            .and_then(|d| variants.get(d))
            .and_then(Kind::of);
        for (name, value) in variants {
            let here = vpath.key(name);
            let Some(k) = Kind::of(value) else {
                return Err(Invalid::new(
                    &here,
                    "a variant is a boolean, string, number or object",
                ));
            };
            match kind {
                None => kind = Some(k),
                Some(first) if first != k => {
                    return Err(Invalid::new(
                        &here,
                        format!(
                            "all variants have one type: expected {}, found {}",
                            first.name(),
                            k.name()
                        ),
                    ));
                }
                Some(_) => {}
            }
        }

        let default_variant = match m.get("defaultVariant") {
            None | Some(Value::Null) => None,
            Some(Value::String(d)) if variants.contains_key(d) => Some(d.clone()),
            Some(Value::String(d)) => {
                return Err(Invalid::new(
                    &path.key("defaultVariant"),
                    format!("no variant named {d:?}"),
                ));
            }
            Some(_) => {
                return Err(Invalid::new(
                    &path.key("defaultVariant"),
                    "expected a variant name or null",
                ));
            }
        };

        let tpath = path.key("targeting");
        let targeting = match m.get("targeting") {
            None | Some(Value::Null) => Targeting::None,
            Some(Value::Object(t)) if t.is_empty() => Targeting::None,
            Some(rule) => match Compiler::new(evaluators, strict).compile(rule, &tpath) {
                Ok(expr) => Targeting::Rule(expr),
                Err(CompileError::MissingRef(i)) if !strict => Targeting::Broken(i.to_string()),
                Err(e) => return Err(e.invalid().clone()),
            },
        };

        let mut merged = set_metadata.clone();
        merged.extend(metadata(m.get("metadata"), &path.key("metadata"))?);

        Ok(Self {
            state,
            variants: variants.clone(),
            default_variant,
            targeting,
            metadata: merged,
        })
    }
}

/// A whole flagd flag file, checked: what import receives and export returns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlagFile {
    pub flags: Map<String, Value>,
    pub evaluators: Map<String, Value>,
    pub metadata: Map<String, Value>,
}

impl FlagFile {
    /// Checks a flag file with the write rules: every flag, every evaluator, every key.
    pub fn parse_strict(doc: &Value) -> Result<Self, Invalid> {
        let root = JsonPath::root();
        let m = object(doc, &root)?;
        if let Some(k) = m
            .keys()
            .find(|k| !["flags", "$evaluators", "metadata", "$schema"].contains(&k.as_str()))
        {
            return Err(Invalid::new(&root.key(k), "unknown field"));
        }
        let fpath = root.key("flags");
        let flags = object(m.get("flags").unwrap_or(&Value::Null), &fpath)?;
        if flags.len() > MAX_FLAGS {
            return Err(Invalid::new(&fpath, format!("at most {MAX_FLAGS} flags")));
        }
        let epath = root.key("$evaluators");
        let evaluators = match m.get("$evaluators") {
            None => Map::new(),
            Some(v) => object(v, &epath)?.clone(),
        };
        if evaluators.len() > MAX_EVALUATORS {
            return Err(Invalid::new(
                &epath,
                format!("at most {MAX_EVALUATORS} evaluators"),
            ));
        }
        check_evaluators(&evaluators)?;
        let file = Self {
            flags: flags.clone(),
            evaluators,
            metadata: metadata(m.get("metadata"), &root.key("metadata"))?,
        };
        for (key, def) in &file.flags {
            let at = fpath.key(key);
            check_key(key, &at)?;
            Flag::parse(def, &file.evaluators, &file.metadata, true, &at)?;
        }
        Ok(file)
    }

    /// The file as flagd writes it.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("flags".into(), Value::Object(self.flags.clone()));
        if !self.evaluators.is_empty() {
            m.insert("$evaluators".into(), Value::Object(self.evaluators.clone()));
        }
        if !self.metadata.is_empty() {
            m.insert("metadata".into(), Value::Object(self.metadata.clone()));
        }
        Value::Object(m)
    }
}

/// Each evaluator must compile on its own (refs to other evaluators included).
pub fn check_evaluators(evaluators: &Map<String, Value>) -> Result<(), Invalid> {
    for (name, rule) in evaluators {
        let at = JsonPath::root().key("$evaluators").key(name);
        Compiler::new(evaluators, true)
            .compile(rule, &at)
            .map_err(|e| e.invalid().clone())?;
    }
    Ok(())
}

/// Compiled flags of one environment: what evaluation reads.
#[derive(Clone, Debug, Default)]
pub struct FlagSet {
    pub flags: HashMap<String, Flag>,
    pub metadata: Map<String, Value>,
}

impl FlagSet {
    /// Compiles a flag file leniently: a flag that does not parse is left out and reported,
    /// so one bad flag never hides the others.
    pub fn load(file: &FlagFile) -> (Self, Vec<Invalid>) {
        let mut set = Self {
            flags: HashMap::with_capacity(file.flags.len()),
            metadata: file.metadata.clone(),
        };
        let mut problems = Vec::new();
        let fpath = JsonPath::root().key("flags");
        for (key, def) in &file.flags {
            match Flag::parse(
                def,
                &file.evaluators,
                &file.metadata,
                false,
                &fpath.key(key),
            ) {
                Ok(flag) => {
                    set.flags.insert(key.clone(), flag);
                }
                Err(e) => problems.push(e),
            }
        }
        (set, problems)
    }

    /// Reads a flagd file without the write rules, e.g. one produced by flagd itself.
    pub fn from_json(doc: &Value) -> Result<(Self, Vec<Invalid>), Invalid> {
        let root = JsonPath::root();
        let m = object(doc, &root)?;
        let get = |k: &str| -> Result<Map<String, Value>, Invalid> {
            match m.get(k) {
                None => Ok(Map::new()),
                Some(v) => Ok(object(v, &root.key(k))?.clone()),
            }
        };
        let file = FlagFile {
            flags: get("flags")?,
            evaluators: get("$evaluators")?,
            metadata: get("metadata")?,
        };
        Ok(Self::load(&file))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn strict(def: Value) -> Result<Flag, Invalid> {
        Flag::parse(
            &def,
            &Map::new(),
            &Map::new(),
            true,
            &JsonPath::root().key("flags").key("f"),
        )
    }

    fn path_of(def: Value) -> String {
        strict(def).unwrap_err().path
    }

    #[test]
    fn a_valid_flag_parses() {
        let flag = strict(json!({
            "state": "ENABLED",
            "variants": {"on": true, "off": false},
            "defaultVariant": "off",
            "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "on", null]},
            "metadata": {"owner": "team-a", "rev": 3}
        }))
        .unwrap();
        assert_eq!(flag.default_variant.as_deref(), Some("off"));
        assert!(matches!(flag.targeting, Targeting::Rule(_)));
    }

    #[test]
    fn each_rule_is_reported_at_its_path() {
        let base = |extra: Value| {
            let mut f = json!({"state": "ENABLED", "variants": {"a": 1, "b": 2.5},
                "defaultVariant": "a"});
            for (k, v) in extra.as_object().unwrap() {
                f[k] = v.clone();
            }
            f
        };
        assert_eq!(path_of(base(json!({"state": "ON"}))), "flags.f.state");
        assert_eq!(
            path_of(base(json!({"variants": {"a": 1, "b": "two"}}))),
            "flags.f.variants.b"
        );
        assert_eq!(path_of(base(json!({"variants": {}}))), "flags.f.variants");
        assert_eq!(
            path_of(base(json!({"variants": {"a": null}}))),
            "flags.f.variants.a"
        );
        assert_eq!(
            path_of(base(json!({"defaultVariant": "c"}))),
            "flags.f.defaultVariant"
        );
        assert_eq!(
            path_of(base(
                json!({"targeting": {"if": [{"regex": ["x"]}, "a", "b"]}})
            )),
            "flags.f.targeting.if[0].regex"
        );
        assert_eq!(
            path_of(base(
                json!({"targeting": {"fractional": [["a", 50], ["b", -1]]}})
            )),
            "flags.f.targeting.fractional[1][1]"
        );
        assert_eq!(
            path_of(base(
                json!({"targeting": {"fractional": [{"var": "k"}, ["a", 0]]}})
            )),
            "flags.f.targeting.fractional"
        );
        assert_eq!(
            path_of(base(
                json!({"targeting": {"sem_ver": [{"var": "v"}, "===", "1.0.0"]}})
            )),
            "flags.f.targeting.sem_ver[1]"
        );
        assert_eq!(
            path_of(base(json!({"targeting": {"$ref": "nope"}}))),
            "flags.f.targeting.$ref"
        );
        assert_eq!(
            path_of(base(json!({"metadata": {"x": [1]}}))),
            "flags.f.metadata.x"
        );
        assert_eq!(path_of(base(json!({"colour": "red"}))), "flags.f.colour");
    }

    #[test]
    fn lenient_loading_keeps_other_flags_and_marks_missing_refs() {
        let (set, problems) = FlagSet::from_json(&json!({
            "flags": {
                "ok": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"},
                "bad": {"state": "ENABLED", "variants": {"a": 1, "b": "x"}},
                "ref": {"state": "ENABLED", "variants": {"a": 1},
                    "targeting": {"if": [{"$ref": "gone"}, "a", null]}}
            }
        }))
        .unwrap();
        assert!(set.flags.contains_key("ok"));
        assert!(!set.flags.contains_key("bad"));
        assert!(matches!(set.flags["ref"].targeting, Targeting::Broken(_)));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "flags.bad.variants.b");
    }

    #[test]
    fn flag_files_are_checked_whole_and_keys_are_checked() {
        let err = FlagFile::parse_strict(&json!({
            "flags": {"a/b": {"state": "ENABLED", "variants": {"x": 1}}}
        }))
        .unwrap_err();
        assert_eq!(err.path, r#"flags["a/b"]"#);
        let err = FlagFile::parse_strict(&json!({
            "flags": {}, "$evaluators": {"e": {"nope": []}}
        }))
        .unwrap_err();
        assert_eq!(err.path, "$evaluators.e.nope");
        let file = FlagFile::parse_strict(&json!({
            "flags": {"a": {"state": "ENABLED", "variants": {"x": 1},
                "targeting": {"$ref": "e"}}},
            "$evaluators": {"e": {"if": [true, "x", null]}},
            "metadata": {"flagSetId": "prod"}
        }))
        .unwrap();
        assert_eq!(FlagFile::parse_strict(&file.to_json()).unwrap(), file);
    }

    #[test]
    fn flag_metadata_overrides_set_metadata() {
        let (set, _) = FlagSet::from_json(&json!({
            "metadata": {"team": "core", "version": 1},
            "flags": {"f": {"state": "ENABLED", "variants": {"a": 1},
                "metadata": {"version": 2}}}
        }))
        .unwrap();
        assert_eq!(
            Value::Object(set.flags["f"].metadata.clone()),
            json!({"team": "core", "version": 2})
        );
    }
}
