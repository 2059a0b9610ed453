//! FlagBit's own settings, read once at start, and the clock every time comes from.

use std::time::Duration;

use platform::{BaseConfig, ConfigError, Env};
use secrecy::{ExposeSecret as _, SecretString};

pub use platform::clock::Clock;

/// Shortest admin key accepted: anything shorter is guessable.
const MIN_KEY_LEN: usize = 16;

#[derive(Clone, Debug)]
pub struct Config {
    /// The management API's key. Without one the API refuses every request; evaluation
    /// (which takes SDK keys) is unaffected.
    pub admin_key: Option<SecretString>,
    /// How often the web tier reloads its flags even without a change notification, in
    /// case one was lost (a dropped LISTEN connection).
    pub refresh_every: Duration,
    /// How often the web tier appends its evaluation counts to the database.
    pub usage_flush_every: Duration,
    /// How often the worker folds finished hours of counts into hourly rows.
    pub rollup_every: Duration,
    pub clock: Clock,
    /// Usage receipts rendered by DocuMint; `None` when off (the default).
    pub receipts: Option<crate::receipts::ReceiptsConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            admin_key: None,
            refresh_every: Duration::from_secs(30),
            usage_flush_every: Duration::from_secs(10),
            rollup_every: Duration::from_secs(300),
            clock: Clock::system(),
            receipts: None,
        }
    }
}

impl Config {
    pub fn from_env(env: &Env, _base: &BaseConfig) -> Result<Self, ConfigError> {
        let admin_key = env.optional_secret("ADMIN_KEY")?;
        if admin_key
            .as_ref()
            .is_some_and(|k| k.expose_secret().trim().len() < MIN_KEY_LEN)
        {
            return Err(ConfigError {
                var: env.var_name("ADMIN_KEY"),
                problem: format!("shorter than {MIN_KEY_LEN} characters"),
            });
        }
        Ok(Self {
            admin_key,
            refresh_every: env.seconds_or("REFRESH_INTERVAL_SECS", 30, 1..=3600)?,
            usage_flush_every: env.seconds_or("USAGE_FLUSH_INTERVAL_SECS", 10, 1..=300)?,
            rollup_every: env.seconds_or("ROLLUP_INTERVAL_SECS", 300, 10..=3600)?,
            clock: Clock::system(),
            receipts: crate::receipts::ReceiptsConfig::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn config(vars: &'static [(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let lookup = move |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        };
        let base = BaseConfig::from_env(&Env::with_lookup("flagbit", |name| {
            (name == "FLAGBIT_DATABASE_URL").then(|| "postgres://u@h/db".to_owned())
        }))?;
        Config::from_env(&Env::with_lookup("flagbit", lookup), &base)
    }

    #[test]
    fn admin_key_is_optional_checked_and_never_printed() {
        assert!(config(&[]).unwrap().admin_key.is_none());
        let err = config(&[("FLAGBIT_ADMIN_KEY", "short")]).unwrap_err();
        assert_eq!(err.var, "FLAGBIT_ADMIN_KEY");
        let c = config(&[("FLAGBIT_ADMIN_KEY", "a-long-enough-admin-key")]).unwrap();
        assert!(!format!("{c:?}").contains("a-long-enough-admin-key"));
        assert_eq!(c.refresh_every, Duration::from_secs(30));
    }
}
