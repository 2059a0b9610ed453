//! DocuMint's own settings, read once at start.

use std::path::PathBuf;
use std::time::Duration;

use platform::{BaseConfig, ConfigError, Env};
use secrecy::{ExposeSecret as _, SecretString};

pub use platform::clock::Clock;

use crate::render::RenderLimits;

/// Shortest API key accepted: anything shorter is guessable.
const MIN_KEY_LEN: usize = 16;

#[derive(Clone, Debug)]
pub struct Config {
    /// The API key. Without one the API refuses every request (the worker needs none).
    pub api_key: Option<SecretString>,
    /// How renders are run and bounded.
    pub render: RenderLimits,
    /// Renders at once in this process: the worker's render pool, or the web tier's
    /// template checks. typst gains nothing from more renders than cores.
    pub render_concurrency: usize,
    /// Attempts of a render that fails for our reasons (not the template's).
    pub max_attempts: i32,
    /// How often an idle worker looks for queued documents.
    pub poll_every: Duration,
    /// Time limit of one completion webhook attempt.
    pub webhook_timeout: Duration,
    /// Attempts of one completion webhook.
    pub webhook_attempts: u32,
    /// Address ranges completion webhooks may reach although they are internal (loopback,
    /// private, ...): none by default, since the worker shares a network with its database.
    pub webhook_allow: Vec<ipnet::IpNet>,
    /// What the web process serves: the public API, or (on the receipts network) only the
    /// receipt route for FlagBit.
    pub serve: Serve,
    pub clock: Clock,
}

/// The routes a web process serves (`DOCUMINT_SERVE`).
#[derive(Clone, Debug)]
pub enum Serve {
    /// The public API (`api`, the default).
    Api,
    /// Only `POST /internal/v1/receipts`, authenticated as configured (`receipts`).
    Receipts(crate::receipts::Access),
}

impl Config {
    /// Defaults for everything; what tests start from.
    pub fn new(render: RenderLimits) -> Self {
        Self {
            api_key: None,
            render,
            render_concurrency: cores(),
            max_attempts: 3,
            poll_every: Duration::from_millis(200),
            webhook_timeout: Duration::from_secs(5),
            webhook_attempts: 3,
            webhook_allow: Vec::new(),
            serve: Serve::Api,
            clock: Clock::system(),
        }
    }

    pub fn from_env(env: &Env, _base: &BaseConfig) -> Result<Self, ConfigError> {
        let api_key = env.optional_secret("API_KEY")?;
        if api_key
            .as_ref()
            .is_some_and(|k| k.expose_secret().trim().len() < MIN_KEY_LEN)
        {
            return Err(ConfigError {
                var: env.var_name("API_KEY"),
                problem: format!("shorter than {MIN_KEY_LEN} characters"),
            });
        }

        let mut render = RenderLimits::beside_current_exe();
        if let Some(path) = env.get("RENDERER")? {
            render.binary = PathBuf::from(path);
        }
        render.memory_mib = env.parse_or("RENDER_MEMORY_MIB", 512u64)?;
        if !(64..=8192).contains(&render.memory_mib) {
            return Err(ConfigError {
                var: env.var_name("RENDER_MEMORY_MIB"),
                problem: "outside 64..=8192".to_owned(),
            });
        }
        render.wall = env.seconds_or("RENDER_TIMEOUT_SECS", 10, 1..=300)?;
        render.cpu_secs = env
            .seconds_or("RENDER_CPU_SECS", render.wall.as_secs(), 1..=300)?
            .as_secs();
        render.max_pages = env.parse_or("MAX_PAGES", 500usize)?.clamp(1, 10_000);
        render.font_dir = env
            .get("FONT_DIR")?
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);

        Ok(Self {
            api_key,
            render,
            render_concurrency: env.parse_or("RENDER_CONCURRENCY", cores())?.clamp(1, 64),
            max_attempts: env.parse_or("MAX_ATTEMPTS", 3i32)?.clamp(1, 20),
            poll_every: Duration::from_millis(
                env.parse_or("POLL_INTERVAL_MS", 200u64)?.clamp(10, 10_000),
            ),
            webhook_timeout: env.seconds_or("WEBHOOK_TIMEOUT_SECS", 5, 1..=60)?,
            webhook_attempts: env.parse_or("WEBHOOK_ATTEMPTS", 3u32)?.clamp(1, 10),
            webhook_allow: env.cidrs("WEBHOOK_ALLOW_CIDRS")?,
            serve: match env.get("SERVE")?.as_deref().unwrap_or("api") {
                "api" => Serve::Api,
                "receipts" => Serve::Receipts(crate::receipts::Access::from_env(env)?),
                other => {
                    return Err(ConfigError {
                        var: env.var_name("SERVE"),
                        problem: format!("{other:?} is not api or receipts"),
                    });
                }
            },
            clock: Clock::system(),
        })
    }
}

/// The cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
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
        let base = BaseConfig::from_env(&Env::with_lookup("documint", |name| {
            (name == "DOCUMINT_DATABASE_URL").then(|| "postgres://u@h/db".to_owned())
        }))?;
        Config::from_env(&Env::with_lookup("documint", lookup), &base)
    }

    #[test]
    fn key_is_checked_and_never_printed_and_limits_have_defaults() {
        let c = config(&[]).unwrap();
        assert!(c.api_key.is_none());
        assert_eq!(c.render.memory_mib, 512);
        assert_eq!(c.render.wall, Duration::from_secs(10));
        assert_eq!(c.render.cpu_secs, 10);
        assert!(c.render.binary.ends_with("documint-render"));

        let err = config(&[("DOCUMINT_API_KEY", "short")]).unwrap_err();
        assert_eq!(err.var, "DOCUMINT_API_KEY");
        let c = config(&[
            ("DOCUMINT_API_KEY", "a-long-enough-api-key"),
            ("DOCUMINT_RENDER_TIMEOUT_SECS", "3"),
            ("DOCUMINT_RENDER_MEMORY_MIB", "256"),
        ])
        .unwrap();
        assert!(!format!("{c:?}").contains("a-long-enough-api-key"));
        assert_eq!((c.render.wall.as_secs(), c.render.cpu_secs), (3, 3));
        assert_eq!(c.render.memory_mib, 256);
        assert!(config(&[("DOCUMINT_RENDER_MEMORY_MIB", "1")]).is_err());
    }
}
