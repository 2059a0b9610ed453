//! CronPing's own settings, read once at start, and the clock every time comes from.

use std::time::Duration;

use ipnet::IpNet;
use platform::{BaseConfig, ConfigError, Env};
use secrecy::{ExposeSecret as _, SecretString};

pub use platform::clock::Clock;

/// Shortest API key accepted: anything shorter is guessable.
const MIN_KEY_LEN: usize = 16;

#[derive(Clone, Debug)]
pub struct Config {
    /// Read-write API key. Without one the API refuses every request (the worker and
    /// `migrate` need none).
    pub api_key: Option<SecretString>,
    /// Read-only API key: may list and get.
    pub read_key: Option<SecretString>,
    /// Base of the ping URLs shown to clients, without a trailing slash.
    pub public_url: String,
    /// Bytes of a ping body kept; the rest is dropped and the ping says so.
    pub ping_body_limit: usize,
    /// Pings kept per check.
    pub ping_log_limit: i64,
    /// Tasks recording pings, each one transaction at a time (see `writer`).
    pub ping_writers: usize,
    /// How often the worker sweeps for overdue checks (a divisor of 60 seconds).
    pub sweep_every: Duration,
    /// Time limit of one alert delivery attempt.
    pub alert_timeout: Duration,
    /// First retry delay of an alert; doubled per attempt.
    pub alert_backoff: Duration,
    /// Address ranges alerts may be sent to although they are private or loopback.
    pub alert_allow: Vec<IpNet>,
    pub clock: Clock,
}

impl Config {
    /// Defaults for everything; what tests start from.
    pub fn new(public_url: impl Into<String>) -> Self {
        Self {
            api_key: None,
            read_key: None,
            public_url: public_url.into(),
            ping_body_limit: 10_000,
            ping_log_limit: 100,
            ping_writers: 2,
            sweep_every: Duration::from_secs(2),
            alert_timeout: Duration::from_secs(10),
            alert_backoff: Duration::from_secs(10),
            alert_allow: Vec::new(),
            clock: Clock::system(),
        }
    }

    pub fn from_env(env: &Env, _base: &BaseConfig) -> Result<Self, ConfigError> {
        let key = |name: &str| -> Result<Option<SecretString>, ConfigError> {
            let key = env.optional_secret(name)?;
            if key
                .as_ref()
                .is_some_and(|k| k.expose_secret().trim().len() < MIN_KEY_LEN)
            {
                return Err(ConfigError {
                    var: env.var_name(name),
                    problem: format!("shorter than {MIN_KEY_LEN} characters"),
                });
            }
            Ok(key)
        };

        let public_url: String = env.parse_or("PUBLIC_URL", "http://127.0.0.1:8082".to_owned())?;
        let sweep_every = env.seconds_or("SWEEP_INTERVAL_SECS", 2, 1..=30)?;
        if 60 % sweep_every.as_secs() != 0 {
            return Err(ConfigError {
                var: env.var_name("SWEEP_INTERVAL_SECS"),
                problem: "must divide 60 (it becomes a cron schedule)".to_owned(),
            });
        }

        let alert_allow = env.cidrs("ALERT_ALLOW_CIDRS")?;

        Ok(Self {
            api_key: key("API_KEY")?,
            read_key: key("API_KEY_READONLY")?,
            public_url: public_url.trim_end_matches('/').to_owned(),
            ping_body_limit: env.parse_or("PING_BODY_LIMIT", 10_000usize)?.min(1 << 20),
            ping_log_limit: env.parse_or("PING_LOG_LIMIT", 100i64)?.clamp(1, 10_000),
            ping_writers: env.parse_or("PING_WRITERS", 2usize)?.clamp(1, 16),
            sweep_every,
            alert_timeout: env.seconds_or("ALERT_TIMEOUT_SECS", 10, 1..=60)?,
            alert_backoff: env.seconds_or("ALERT_BACKOFF_SECS", 10, 1..=600)?,
            alert_allow,
            clock: Clock::system(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &'static [(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let env = Env::with_lookup("cronping", move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        });
        let base = BaseConfig::from_env(&Env::with_lookup("cronping", |name| {
            (name == "CRONPING_DATABASE_URL").then(|| "postgres://u@h/db".to_owned())
        }))?;
        Config::from_env(&env, &base)
    }

    #[test]
    fn defaults_need_no_variables() {
        let c = config(&[]).unwrap();
        assert!(c.api_key.is_none());
        assert_eq!((c.ping_body_limit, c.ping_log_limit), (10_000, 100));
        assert_eq!(c.public_url, "http://127.0.0.1:8082");
    }

    #[test]
    fn short_keys_bad_ranges_and_odd_sweeps_are_refused_by_name() {
        let err = config(&[("CRONPING_API_KEY", "short")]).unwrap_err();
        assert_eq!(err.var, "CRONPING_API_KEY");
        let err = config(&[("CRONPING_ALERT_ALLOW_CIDRS", "10.0.0.0/8, nope")]).unwrap_err();
        assert!(err.problem.contains("nope"), "{}", err.problem);
        let err = config(&[("CRONPING_SWEEP_INTERVAL_SECS", "7")]).unwrap_err();
        assert!(err.problem.contains("divide 60"));
    }

    #[test]
    fn allowed_ranges_parse_and_keys_do_not_debug_print() {
        let c = config(&[
            ("CRONPING_ALERT_ALLOW_CIDRS", "10.0.0.0/8, 127.0.0.1/32"),
            ("CRONPING_API_KEY", "a-long-enough-secret-key"),
            ("CRONPING_PUBLIC_URL", "https://ping.example/"),
        ])
        .unwrap();
        assert_eq!(c.alert_allow.len(), 2);
        assert_eq!(c.public_url, "https://ping.example");
        assert!(!format!("{c:?}").contains("a-long-enough-secret-key"));
    }
}
