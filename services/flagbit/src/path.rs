//! JSON paths for error messages: `flags.new-ui.targeting.if[0]`, the way a person would point
//! at the part of a flag definition that is wrong. Keys that are not plain words are quoted:
//! `flags["a.b"]`.

use std::fmt;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JsonPath(String);

impl JsonPath {
    /// The document itself.
    pub fn root() -> Self {
        Self::default()
    }

    pub fn key(&self, key: &str) -> Self {
        let plain = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-$".contains(&b));
        let mut s = self.0.clone();
        if plain {
            if !s.is_empty() {
                s.push('.');
            }
            s.push_str(key);
        } else {
            // serde_json's string escaping keeps quotes and control characters readable.
            s.push('[');
            s.push_str(&serde_json::Value::from(key).to_string());
            s.push(']');
        }
        Self(s)
    }

    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path as shown: the root is `$`, so a message never names an empty field.
    pub fn display(&self) -> String {
        if self.0.is_empty() {
            "$".to_owned()
        } else {
            self.0.clone()
        }
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

/// A definition that breaks a rule: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub path: String,
    pub message: String,
}

impl Invalid {
    pub fn new(path: &JsonPath, message: impl Into<String>) -> Self {
        Self {
            path: path.display(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for Invalid {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_keys_are_dotted_and_others_quoted() {
        let p = JsonPath::root()
            .key("flags")
            .key("new-ui")
            .key("targeting")
            .key("if")
            .index(0);
        assert_eq!(p.as_str(), "flags.new-ui.targeting.if[0]");
        assert_eq!(
            JsonPath::root().key("flags").key("a.b").as_str(),
            r#"flags["a.b"]"#
        );
        assert_eq!(JsonPath::root().display(), "$");
    }
}
