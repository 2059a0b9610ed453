//! Configuration read once at start from the environment.
//!
//! Every variable is prefixed with the product's name (`CRONPING_LISTEN_ADDR`). Any variable
//! may instead be given as a file with the `_FILE` suffix, which is how secrets arrive: the
//! file's contents (without the trailing newline) become the value. Setting both is an error,
//! so nobody wonders which one won.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

/// A configuration problem, naming the variable so the one-line message is actionable.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {var}: {problem}")]
pub struct ConfigError {
    pub var: String,
    pub problem: String,
}

/// Reads variables with one product's prefix.
#[derive(Clone)]
pub struct Env {
    prefix: String,
    lookup: Lookup,
}

type Lookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env").field("prefix", &self.prefix).finish()
    }
}

impl Env {
    /// Variables of the process environment, prefixed with `PRODUCT_`.
    pub fn new(product: &str) -> Self {
        Self::with_lookup(product, |name| std::env::var(name).ok())
    }

    /// Same, with another source of variables (tests).
    pub fn with_lookup(
        product: &str,
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            prefix: product.to_ascii_uppercase(),
            lookup: Arc::new(lookup),
        }
    }

    /// The product's name, lower case.
    pub fn product(&self) -> String {
        self.prefix.to_ascii_lowercase()
    }

    /// The full name of a variable: `LISTEN_ADDR` becomes `CRONPING_LISTEN_ADDR`.
    pub fn var_name(&self, name: &str) -> String {
        format!("{}_{}", self.prefix, name)
    }

    fn error(&self, name: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            var: self.var_name(name),
            problem: problem.into(),
        }
    }

    /// The raw value, from the variable or from the file its `_FILE` twin names.
    pub fn get(&self, name: &str) -> Result<Option<String>, ConfigError> {
        let direct = (self.lookup)(&self.var_name(name));
        let file = (self.lookup)(&self.var_name(&format!("{name}_FILE")));

        match (direct, file) {
            (Some(_), Some(_)) => Err(self.error(name, "set both it and its _FILE form; set one")),
            (Some(value), None) => Ok(Some(value)),
            (None, Some(path)) => {
                let contents = std::fs::read_to_string(&path).map_err(|e| ConfigError {
                    var: self.var_name(&format!("{name}_FILE")),
                    problem: format!("cannot read {path}: {e}"),
                })?;
                Ok(Some(contents.trim_end_matches(['\n', '\r']).to_owned()))
            }
            (None, None) => Ok(None),
        }
    }

    pub fn required(&self, name: &str) -> Result<String, ConfigError> {
        match self.get(name)? {
            Some(value) if !value.is_empty() => Ok(value),
            Some(_) => Err(self.error(name, "is empty")),
            None => Err(self.error(name, "is not set (nor its _FILE form)")),
        }
    }

    /// A value parsed with `FromStr`, or `default` when unset.
    pub fn parse_or<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.get(name)? {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e| self.error(name, format!("invalid value {raw:?}: {e}"))),
        }
    }

    /// A whole number of seconds within `range`, or `default` when unset.
    pub fn seconds_or(
        &self,
        name: &str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        let secs: u64 = self.parse_or(name, default)?;
        if !range.contains(&secs) {
            let (lo, hi) = (range.start(), range.end());
            return Err(self.error(name, format!("{secs} is outside {lo}..={hi} seconds")));
        }
        Ok(Duration::from_secs(secs))
    }

    /// A secret; its value never reaches `Debug` output or logs.
    pub fn secret(&self, name: &str) -> Result<SecretString, ConfigError> {
        self.required(name).map(SecretString::from)
    }

    /// A comma-separated list of address ranges (`10.0.0.0/8, fd00::/8`); empty when unset.
    pub fn cidrs(&self, name: &str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.get(name)?
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<ipnet::IpNet>()
                    .map_err(|e| self.error(name, format!("{s:?}: {e}")))
            })
            .collect()
    }

    pub fn optional_secret(&self, name: &str) -> Result<Option<SecretString>, ConfigError> {
        Ok(self
            .get(name)?
            .filter(|v| !v.is_empty())
            .map(SecretString::from))
    }
}

/// What every product's processes are configured with.
#[derive(Clone, Debug)]
pub struct BaseConfig {
    pub database: crate::db::DbConfig,
    /// Where the web tier listens.
    pub listen_addr: SocketAddr,
    /// How long the web tier waits for in-flight requests after SIGTERM.
    pub drain_timeout: Duration,
    /// How often the worker proves it can reach its database.
    pub heartbeat_interval: Duration,
    /// Touched after each successful heartbeat; the container healthcheck reads its age.
    pub heartbeat_file: PathBuf,
}

impl BaseConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            database: crate::db::DbConfig::from_env(env)?,
            listen_addr: env.parse_or("LISTEN_ADDR", default_listen_addr())?,
            drain_timeout: env.seconds_or("DRAIN_TIMEOUT_SECS", 8, 1..=60)?,
            heartbeat_interval: heartbeat_interval(env)?,
            heartbeat_file: heartbeat_file(env)?,
        })
    }
}

pub(crate) fn default_listen_addr() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}

pub(crate) fn heartbeat_interval(env: &Env) -> Result<Duration, ConfigError> {
    env.seconds_or("HEARTBEAT_INTERVAL_SECS", 10, 1..=300)
}

pub(crate) fn heartbeat_file(env: &Env) -> Result<PathBuf, ConfigError> {
    env.parse_or("HEARTBEAT_FILE", PathBuf::from("/tmp/worker-heartbeat"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(name: &str) -> Option<String> {
        match name {
            "DEMO_PORT" => Some("8080".into()),
            "DEMO_BAD_PORT" => Some("eighty".into()),
            "DEMO_BOTH" => Some("x".into()),
            "DEMO_BOTH_FILE" => Some("/nonexistent".into()),
            "DEMO_MISSING_FILE_FILE" => Some("/nonexistent/secret".into()),
            "DEMO_EMPTY" => Some(String::new()),
            "DEMO_SECS" => Some("500".into()),
            _ => None,
        }
    }

    fn env() -> Env {
        Env::with_lookup("demo", fixed)
    }

    #[test]
    fn names_are_prefixed_with_the_upper_cased_product() {
        assert_eq!(env().var_name("PORT"), "DEMO_PORT");
    }

    #[test]
    fn missing_required_variable_names_it() {
        let err = env().required("DATABASE_URL").unwrap_err();
        assert_eq!(err.var, "DEMO_DATABASE_URL");
        assert_eq!(
            err.to_string(),
            "configuration error: DEMO_DATABASE_URL: is not set (nor its _FILE form)"
        );
    }

    #[test]
    fn empty_required_variable_is_an_error() {
        assert_eq!(env().required("EMPTY").unwrap_err().problem, "is empty");
    }

    #[test]
    fn unparsable_value_names_variable_and_value() {
        let err = env().parse_or::<u16>("BAD_PORT", 1).unwrap_err();
        assert_eq!(err.var, "DEMO_BAD_PORT");
        assert!(err.problem.contains("\"eighty\""), "{}", err.problem);
        assert_eq!(env().parse_or::<u16>("PORT", 1).unwrap(), 8080);
        assert_eq!(env().parse_or::<u16>("UNSET", 7).unwrap(), 7);
    }

    #[test]
    fn value_and_file_form_together_are_refused() {
        assert!(env().get("BOTH").unwrap_err().problem.contains("both"));
    }

    #[test]
    fn unreadable_secret_file_names_the_file_variable() {
        let err = env().secret("MISSING_FILE").unwrap_err();
        assert_eq!(err.var, "DEMO_MISSING_FILE_FILE");
        assert!(err.problem.contains("/nonexistent/secret"));
    }

    #[test]
    fn seconds_outside_range_are_refused() {
        let err = env().seconds_or("SECS", 1, 1..=60).unwrap_err();
        assert!(err.problem.contains("outside 1..=60"), "{}", err.problem);
    }

    #[test]
    fn secret_is_read_from_file_without_trailing_newline() {
        use secrecy::ExposeSecret;

        let dir = std::env::temp_dir().join(format!("cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, "hunter2-but-longer\n").unwrap();

        let file = path.display().to_string();
        let env = Env::with_lookup("demo", move |name| {
            (name == "DEMO_TOKEN_FILE").then(|| file.clone())
        });
        assert_eq!(
            env.secret("TOKEN").unwrap().expose_secret(),
            "hunter2-but-longer"
        );
        assert!(env.optional_secret("OTHER").unwrap().is_none());

        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secrets_do_not_debug_print() {
        let secret = SecretString::from("do-not-print-me");
        assert!(!format!("{secret:?}").contains("do-not-print-me"));
    }
}
