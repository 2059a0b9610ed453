//! CronPing: watches cron jobs through their pings; alerts when one is late or fails.
//!
//! - [`cron`] and [`status`]: the schedule evaluator and the status engine, pure functions
//!   of their inputs and the time.
//! - [`api`] and [`ping`]: the web tier (checks API under `/api/v1`, ping endpoints);
//!   [`writer`] records pings by group commit.
//! - [`worker`]: the sweep that marks overdue checks down, and alert delivery.
//! - [`store`]: how a state change is written, shared by all of the above.

pub mod api;
pub mod config;
pub mod cron;
pub mod ping;
pub mod status;
pub mod store;
pub mod worker;
pub mod writer;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use platform::{BaseConfig, ConfigError, Env, Product};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

pub use config::{Clock, Config};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

pub struct CronPing;

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct App(Arc<AppInner>);

#[derive(Debug)]
pub struct AppInner {
    pub pool: PgPool,
    pub config: Config,
    pub writers: writer::Writers,
}

impl std::ops::Deref for App {
    type Target = AppInner;

    fn deref(&self) -> &AppInner {
        &self.0
    }
}

/// The product's routes, without the shared frame (`platform::http::app` adds it). Starts
/// the ping writers, so it must be called inside the runtime.
pub fn router(config: Config, pool: PgPool) -> Router {
    if config.api_key.is_none() {
        tracing::error!("CRONPING_API_KEY is not set: the API refuses every request");
    }
    let writers = writer::Writers::spawn(&pool, config.ping_writers, config.ping_log_limit);
    let app = App(Arc::new(AppInner {
        pool,
        config,
        writers,
    }));
    let checks = "/api/v1/checks/{id}";
    Router::new()
        .route("/", get(platform::http::about::<CronPing>))
        // GET routes answer HEAD too.
        .route("/ping/{uuid}", get(ping::success).post(ping::success))
        .route("/ping/{uuid}/", get(ping::success).post(ping::success))
        .route(
            "/ping/{uuid}/{action}",
            get(ping::with_action).post(ping::with_action),
        )
        .route("/api/v1/checks", get(api::list).post(api::create))
        .route(
            checks,
            get(api::get)
                .post(api::update)
                .patch(api::update)
                .delete(api::delete),
        )
        .route(&format!("{checks}/pause"), post(api::pause))
        .route(&format!("{checks}/resume"), post(api::resume))
        .route(&format!("{checks}/pings"), get(api::pings))
        .route(&format!("{checks}/flips"), get(api::flips))
        .route(&format!("{checks}/alerts"), get(api::alerts))
        .with_state(app)
}

impl Product for CronPing {
    const NAME: &'static str = "cronping";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    type Config = Config;

    fn config(env: &Env, base: &BaseConfig) -> Result<Config, ConfigError> {
        Config::from_env(env, base)
    }

    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    fn routes(config: Config, pool: PgPool) -> Router {
        router(config, pool)
    }

    async fn work(config: Config, pool: PgPool, shutdown: CancellationToken) -> anyhow::Result<()> {
        worker::run(config, pool, shutdown).await
    }
}
