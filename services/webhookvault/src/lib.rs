//! WebhookVault: receives, verifies, stores, replays and forwards webhooks.
//!
//! - [`ingest`]: `/in/{source_id}` stores each request byte-for-byte after checking its
//!   signature ([`signature`]), by group commit, answering only after the commit.
//! - [`api`] and [`inspect`]: the admin API under `/api/v1` (sources, destinations, events,
//!   raw bodies, replay, dead letters).
//! - [`worker`] and [`forward`]: the forwarding worker (leases, retries, per-destination
//!   limits) and one signed delivery attempt through the address guard.

pub mod api;
pub mod config;
pub mod forward;
pub mod ingest;
pub mod inspect;
pub mod signature;
pub mod worker;

use std::sync::Arc;

use axum::Router;
use axum::routing::{any, get, post};
use platform::{BaseConfig, ConfigError, Env, Product};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

pub use config::{Clock, Config, Resolver};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

pub struct WebhookVault;

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct App(Arc<AppInner>);

#[derive(Debug)]
pub struct AppInner {
    pub pool: PgPool,
    pub config: Config,
    pub writers: ingest::Writers,
    /// The ingest budget, in KiB of body held (see `ingest`).
    pub budget: Arc<tokio::sync::Semaphore>,
}

impl std::ops::Deref for App {
    type Target = AppInner;

    fn deref(&self) -> &AppInner {
        &self.0
    }
}

/// The product's routes, without the shared frame (`platform::http::app` adds it). Starts
/// the ingest writers, so it must be called inside the runtime.
pub fn router(config: Config, pool: PgPool) -> Router {
    if config.admin_key.is_none() {
        tracing::error!("WEBHOOKVAULT_ADMIN_KEY is not set: the API refuses every request");
    }
    let writers = ingest::Writers::spawn(&pool, config.ingest_writers);
    let budget = Arc::new(tokio::sync::Semaphore::new(
        config
            .ingest_budget_kib
            .min(tokio::sync::Semaphore::MAX_PERMITS),
    ));
    let app = App(Arc::new(AppInner {
        pool,
        config,
        writers,
        budget,
    }));
    let v1 = "/api/v1";
    Router::new()
        .route("/", get(platform::http::about::<WebhookVault>))
        .route("/in/{source}", any(ingest::receive))
        .route("/in/{source}/", any(ingest::receive))
        .route("/in/{source}/{*rest}", any(ingest::receive))
        .route(
            &format!("{v1}/sources"),
            get(api::list_sources).post(api::create_source),
        )
        .route(
            &format!("{v1}/sources/{{id}}"),
            get(api::get_source)
                .patch(api::update_source)
                .post(api::update_source)
                .delete(api::delete_source),
        )
        .route(
            &format!("{v1}/sources/{{id}}/destinations"),
            get(api::list_destinations).post(api::create_destination),
        )
        .route(
            &format!("{v1}/sources/{{id}}/events"),
            get(inspect::list_events),
        )
        .route(
            &format!("{v1}/destinations/{{id}}"),
            get(api::get_destination)
                .patch(api::update_destination)
                .post(api::update_destination)
                .delete(api::delete_destination),
        )
        .route(&format!("{v1}/events/{{id}}"), get(inspect::get_event))
        .route(&format!("{v1}/events/{{id}}/raw"), get(inspect::raw_event))
        .route(&format!("{v1}/events/{{id}}/replay"), post(inspect::replay))
        .route(&format!("{v1}/dead-letters"), get(inspect::dead_letters))
        .with_state(app)
}

impl Product for WebhookVault {
    const NAME: &'static str = "webhookvault";
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
