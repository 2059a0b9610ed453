//! FlagBit: feature flags, evaluated over the OpenFeature remote evaluation protocol.
//!
//! So far this is the product's frame on the shared stack: its web tier answers health and
//! identity routes and its worker runs the shared heartbeat. The product itself is built on
//! this frame.

use axum::Router;
use axum::routing::get;
use platform::{BaseConfig, ConfigError, Env, Product};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

pub struct FlagBit;

/// FlagBit's own settings, beyond what every product has.
#[derive(Clone, Debug, Default)]
pub struct Config {}

impl Product for FlagBit {
    const NAME: &'static str = "flagbit";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    type Config = Config;

    fn config(_env: &Env, _base: &BaseConfig) -> Result<Config, ConfigError> {
        Ok(Config::default())
    }

    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    fn routes(_config: Config, _pool: PgPool) -> Router {
        Router::new().route("/", get(platform::http::about::<Self>))
    }

    async fn work(
        _config: Config,
        _pool: PgPool,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        // No jobs yet: the worker is the shared heartbeat until the product adds its own.
        shutdown.cancelled().await;
        Ok(())
    }
}
