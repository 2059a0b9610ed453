//! The PostgreSQL pool and migrations.
//!
//! Each process connects as its own role (web, worker, migrate), so the URL carries the
//! role and the password arrives separately from a secret file.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use sqlx::migrate::{Migration, MigrationSource, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::{ConfigError, Env};

/// Migrations every product shares (the job queue). Their versions are small integers, while
/// products name theirs by date, so the two sets never collide and sort shared-first.
static SHARED: Migrator = sqlx::migrate!("./migrations");

#[derive(Clone)]
pub struct DbConfig {
    options: PgConnectOptions,
    max_connections: u32,
    acquire_timeout: Duration,
}

impl fmt::Debug for DbConfig {
    // PgConnectOptions' own Debug would print the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbConfig")
            .field("host", &self.options.get_host())
            .field("port", &self.options.get_port())
            .field("database", &self.options.get_database())
            .field("user", &self.options.get_username())
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl DbConfig {
    /// `DATABASE_URL` (a `postgres://role@host/db` URL, or its `_FILE`), and optionally
    /// `DATABASE_PASSWORD_FILE`, which overrides any password in the URL.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let url = env.required("DATABASE_URL")?;
        // sqlx parses any scheme; a mysql:// URL here is a mistake worth stopping for.
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ConfigError {
                var: env.var_name("DATABASE_URL"),
                problem: "must start with postgres:// or postgresql://".to_owned(),
            });
        }
        let mut options = PgConnectOptions::from_str(&url).map_err(|e| ConfigError {
            var: env.var_name("DATABASE_URL"),
            // The error text never contains the URL itself, which may hold a password.
            problem: format!("not a valid postgres:// URL: {}", redact_url_error(&e)),
        })?;

        if let Some(password) = env.optional_secret("DATABASE_PASSWORD")? {
            options = options.password(password.expose_secret());
        }

        Ok(Self {
            options: options.application_name(&env.product()),
            max_connections: env.parse_or("DATABASE_MAX_CONNECTIONS", 10)?,
            acquire_timeout: env.seconds_or("DATABASE_ACQUIRE_TIMEOUT_SECS", 3, 1..=60)?,
        })
    }

    pub fn with_password(mut self, password: &SecretString) -> Self {
        self.options = self.options.password(password.expose_secret());
        self
    }

    pub fn from_options(options: PgConnectOptions) -> Self {
        Self {
            options,
            max_connections: 5,
            acquire_timeout: Duration::from_secs(3),
        }
    }

    /// A pool that connects on first use, so a process starts (and reports itself unready)
    /// while its database is still down, instead of crash-looping.
    pub fn connect_lazy(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
            .connect_lazy_with(self.options.clone())
    }
}

fn redact_url_error(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Configuration(inner) => inner.to_string(),
        _ => "unrecognised".to_owned(),
    }
}

/// One round trip, for readiness and heartbeats.
/// Whether `e` is PostgreSQL refusing a duplicate under a unique constraint (23505).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "23505")
}

pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

/// The shared migrations followed by the product's, as one ordered set.
#[derive(Debug)]
struct Combined(Vec<Migration>);

impl<'s> MigrationSource<'s> for Combined {
    fn resolve(
        self,
    ) -> futures_core::future::BoxFuture<'s, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async move { Ok(self.0) })
    }
}

/// Applies the shared and the product's migrations, in one advisory-locked run.
pub async fn migrate(pool: &PgPool, product: &Migrator) -> anyhow::Result<()> {
    let mut all: Vec<Migration> = SHARED.iter().chain(product.iter()).cloned().collect();
    all.sort_by_key(|m| m.version);

    let migrator = Migrator::new(Combined(all))
        .await
        .context("assembling migrations")?;
    migrator.run(pool).await.context("applying migrations")?;
    Ok(())
}
