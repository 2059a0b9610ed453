//! FlagBit: feature flags in flagd's format, evaluated over the OpenFeature remote
//! evaluation protocol (OFREP).
//!
//! - [`model`], [`logic`], [`operators`], [`eval`]: the flag model and the evaluation
//!   engine, pure functions of the flag, the context and the time.
//! - [`api`]: the management API under `/api/v1` (admin key).
//! - [`ofrep`]: evaluation under `/ofrep/v1` (SDK keys), served from [`snapshot`].

pub mod api;
pub mod config;
pub mod eval;
pub mod logic;
pub mod model;
pub mod ofrep;
pub mod operators;
pub mod path;
pub mod receipts;
pub mod snapshot;
pub mod usage;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post, put};
use platform::{BaseConfig, ConfigError, Env, Product};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

pub use config::{Clock, Config};
pub use snapshot::Snapshots;
pub use usage::Usage;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

pub struct FlagBit;

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct App(Arc<AppInner>);

#[derive(Debug)]
pub struct AppInner {
    pub pool: PgPool,
    pub config: Config,
    pub snapshots: Snapshots,
    pub usage: Usage,
    /// Stops the snapshot's listener when the last handle to the app goes away.
    stop: CancellationToken,
}

impl Drop for AppInner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl std::ops::Deref for App {
    type Target = AppInner;

    fn deref(&self) -> &AppInner {
        &self.0
    }
}

/// What a test (or anything beside the handlers) can reach of a running web tier.
#[derive(Clone, Debug)]
pub struct Handles {
    pub snapshots: Snapshots,
    pub usage: Usage,
}

/// The product's routes, without the shared frame (`platform::http::app` adds it), and
/// handles on the snapshot they evaluate from and the usage they count. Starts the
/// snapshot's listener and the usage flusher, so it must be called inside the runtime.
pub fn router(config: Config, pool: PgPool) -> (Router, Handles) {
    if config.admin_key.is_none() {
        tracing::error!("FLAGBIT_ADMIN_KEY is not set: the management API refuses every request");
    }
    let snapshots = Snapshots::default();
    let usage = Usage::default();
    let stop = CancellationToken::new();
    tokio::spawn(
        snapshots
            .clone()
            .follow(pool.clone(), config.refresh_every, stop.clone()),
    );
    tokio::spawn(usage.clone().flush_every(
        pool.clone(),
        config.clock.clone(),
        config.usage_flush_every,
        stop.clone(),
    ));
    let handles = Handles {
        snapshots: snapshots.clone(),
        usage: usage.clone(),
    };
    let app = App(Arc::new(AppInner {
        pool,
        config,
        snapshots,
        usage,
        stop,
    }));

    let env = "/api/v1/environments/{env}";
    let router = Router::new()
        .route("/", get(platform::http::about::<FlagBit>))
        .route("/ofrep/v1/evaluate/flags", post(ofrep::evaluate_all))
        .route("/ofrep/v1/evaluate/flags/{key}", post(ofrep::evaluate_one))
        .route(
            "/api/v1/environments",
            get(api::list_environments).post(api::create_environment),
        )
        .route(
            &format!("{env}/sdk-keys"),
            get(api::list_keys).post(api::create_key),
        )
        .route(
            &format!("{env}/sdk-keys/{{id}}"),
            axum::routing::delete(api::revoke_key),
        )
        .route(&format!("{env}/flags"), get(api::list_flags))
        .route(
            &format!("{env}/flags/{{key}}"),
            get(api::get_flag)
                .put(api::put_flag)
                .delete(api::delete_flag),
        )
        .route(&format!("{env}/export"), get(api::export))
        .route(&format!("{env}/import"), put(api::import).post(api::import))
        .route("/api/v1/flags/{key}/history", get(api::history))
        .route("/api/v1/usage", get(api::usage))
        .route(
            "/api/v1/receipts",
            get(receipts::list).post(receipts::create),
        )
        .route("/api/v1/receipts/{id}", get(receipts::get))
        .route("/api/v1/receipts/{id}/pdf", get(receipts::pdf))
        .with_state(app);
    (router, handles)
}

impl Product for FlagBit {
    const NAME: &'static str = "flagbit";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    type Config = Config;

    fn config(env: &Env, base: &BaseConfig) -> Result<Config, ConfigError> {
        Config::from_env(env, base)
    }

    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    fn routes(config: Config, pool: PgPool) -> Router {
        router(config, pool).0
    }

    async fn work(config: Config, pool: PgPool, shutdown: CancellationToken) -> anyhow::Result<()> {
        let rollups = usage::run_rollups(
            pool.clone(),
            config.clock.clone(),
            config.rollup_every,
            shutdown.clone(),
        );
        match config.receipts {
            None => rollups.await,
            Some(receipts) => {
                let receipts = receipts::run(pool, receipts, config.clock, shutdown);
                tokio::try_join!(rollups, receipts).map(|_| ())
            }
        }
    }
}
