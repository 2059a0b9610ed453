//! DocuMint: typst templates plus JSON data in, PDF out, asynchronously.
//!
//! - [`api`]: the JSON API under `/api/v1` (templates, documents), behind an API key.
//! - [`worker`]: renders queued documents from the shared job queue and stores the PDFs.
//! - [`render`]: every render is a `documint-render` child process with a memory cap, a
//!   CPU-time cap and a wall-clock kill; neither the web tier nor the worker links typst.
//! - [`data`]: checks on a document's data (depth, exact numbers) before anything else.
//! - [`builtin`]: the built-in templates `invoice` and `usage-receipt`.
//! - [`receipts`]: the receipt route FlagBit calls, served by a web process of its own.

pub mod api;
pub mod builtin;
pub mod config;
pub mod data;
pub mod receipts;
pub mod render;
pub mod store;
pub mod worker;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use platform::{BaseConfig, ConfigError, Env, Product};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

pub use config::{Clock, Config};
pub use render::{RenderLimits, Renderer};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The job queue's name for renders.
pub const QUEUE: &str = "documint.render";

pub struct DocuMint;

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct App(Arc<AppInner>);

#[derive(Debug)]
pub struct AppInner {
    pub pool: PgPool,
    pub config: Config,
    /// Checks templates against their sample data when they are created or changed.
    pub renderer: Renderer,
    /// Set once the built-in templates are known to be in the database.
    builtins: tokio::sync::OnceCell<()>,
}

impl std::ops::Deref for App {
    type Target = AppInner;

    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl App {
    pub fn new(config: Config, pool: PgPool) -> Self {
        let renderer = Renderer::new(config.render.clone(), config.render_concurrency);
        Self(Arc::new(AppInner {
            pool,
            config,
            renderer,
            builtins: tokio::sync::OnceCell::new(),
        }))
    }

    /// Makes sure the built-in templates exist in their current version (once per process).
    pub async fn builtins(&self) -> Result<(), sqlx::Error> {
        self.builtins
            .get_or_try_init(|| builtin::install(&self.pool, self.config.clock.now()))
            .await
            .map(|_| ())
    }
}

/// The public API's routes, without the shared frame (`platform::http::app` adds it).
///
/// A second listener (another product's private route, say) is another router built from
/// the same [`App`] and served beside this one.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/", get(platform::http::about::<DocuMint>))
        .route(
            "/api/v1/templates",
            get(api::list_templates).post(api::create_template),
        )
        .route(
            "/api/v1/templates/{id}",
            get(api::get_template)
                .put(api::update_template)
                .delete(api::delete_template),
        )
        .route(
            "/api/v1/documents",
            get(api::list_documents).post(api::create_document),
        )
        .route(
            "/api/v1/documents/{id}",
            get(api::get_document).delete(api::delete_document),
        )
        .route("/api/v1/documents/{id}/pdf", get(api::get_pdf))
        .with_state(app)
}

impl Product for DocuMint {
    const NAME: &'static str = "documint";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    type Config = Config;

    fn config(env: &Env, base: &BaseConfig) -> Result<Config, ConfigError> {
        Config::from_env(env, base)
    }

    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    fn routes(config: Config, pool: PgPool) -> Router {
        if let config::Serve::Receipts(access) = config.serve.clone() {
            return receipts::router(App::new(config, pool), access);
        }
        if config.api_key.is_none() {
            tracing::error!("DOCUMINT_API_KEY is not set: the API refuses every request");
        }
        router(App::new(config, pool))
    }

    async fn work(config: Config, pool: PgPool, shutdown: CancellationToken) -> anyhow::Result<()> {
        worker::run(config, pool, shutdown).await
    }
}
