//! What the four products really share: configuration from the environment, telemetry, the
//! PostgreSQL pool and migrations, the HTTP plumbing (health routes, request ids, the error
//! type), graceful shutdown, the job queue, and the command line that ties them together.
//!
//! A product implements [`Product`] and its `main` is one call to [`cli::main`].

pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod egress;
pub mod health;
pub mod http;
pub mod queue;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod worker;

use std::future::Future;

use axum::Router;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

pub use config::{BaseConfig, ConfigError, Env};
pub use http::ApiError;

/// One product: its name, its configuration, its migrations, and what its web tier and
/// worker do beyond what every product does.
pub trait Product: Sized + 'static {
    /// Lower-case name; the upper-cased form prefixes every environment variable.
    const NAME: &'static str;

    /// The product's release, shown at `/`.
    const VERSION: &'static str;

    /// The product's own configuration, read once at start.
    type Config: Clone + Send + Sync + 'static;

    /// Reads the product's configuration; `base` is what every product has.
    fn config(env: &Env, base: &BaseConfig) -> Result<Self::Config, ConfigError>;

    /// The product's schema migrations, applied by `migrate` after the shared ones.
    fn migrator() -> &'static Migrator;

    /// The product's routes. Health routes, request ids and logging are added around them.
    fn routes(config: Self::Config, pool: PgPool) -> Router;

    /// The product's background work; it must return soon after `shutdown` is cancelled.
    fn work(
        config: Self::Config,
        pool: PgPool,
        shutdown: CancellationToken,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}
