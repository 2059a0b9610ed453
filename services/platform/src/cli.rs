//! The command line every product binary shares: `web`, `worker`, `migrate`, and
//! `healthcheck web|worker` for the container healthcheck.

use std::process::ExitCode;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{BaseConfig, Env};
use crate::{Product, db, health, http, shutdown, telemetry, worker};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Web,
    Worker,
    Migrate,
    Healthcheck(String),
}

impl Command {
    pub fn parse(args: &[String]) -> Result<Self, String> {
        match args {
            [cmd] if cmd == "web" => Ok(Self::Web),
            [cmd] if cmd == "worker" => Ok(Self::Worker),
            [cmd] if cmd == "migrate" => Ok(Self::Migrate),
            [cmd, target] if cmd == "healthcheck" => Ok(Self::Healthcheck(target.clone())),
            _ => Err("usage: <web | worker | migrate | healthcheck web|worker>".to_owned()),
        }
    }
}

/// The whole of a product's `main`.
pub fn main<P: Product>() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match Command::parse(&args) {
        Ok(command) => command,
        Err(usage) => {
            eprintln!("{}: {usage}", P::NAME);
            return ExitCode::from(2);
        }
    };

    let env = Env::new(P::NAME);
    if let Command::Healthcheck(target) = &command {
        return match health::check(&env, target) {
            Ok(()) => ExitCode::SUCCESS,
            Err(reason) => {
                eprintln!("unhealthy: {reason}");
                ExitCode::FAILURE
            }
        };
    }

    // A configuration error is the operator's to fix: one line naming the variable, no
    // backtrace, before anything else starts.
    let config = BaseConfig::from_env(&env).and_then(|base| Ok((P::config(&env, &base)?, base)));
    let (product_config, base) = match config {
        Ok(both) => both,
        Err(e) => {
            eprintln!("{}: {e}", P::NAME);
            return ExitCode::from(78);
        }
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{}: cannot start the async runtime: {e}", P::NAME);
            return ExitCode::FAILURE;
        }
    };

    telemetry::init();
    let result = runtime.block_on(async {
        let shutdown = shutdown::on_signal();
        match command {
            Command::Web => run_web::<P>(base, product_config, shutdown).await,
            Command::Worker => run_worker::<P>(base, product_config, shutdown).await,
            Command::Migrate => run_migrate::<P>(&base).await,
            Command::Healthcheck(_) => unreachable!("handled before configuration is read"),
        }
    });

    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "stopped with an error");
            ExitCode::FAILURE
        }
    }
}

async fn run_web<P: Product>(
    base: BaseConfig,
    config: P::Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(base.listen_addr)
        .await
        .with_context(|| format!("binding {}", base.listen_addr))?;
    tracing::info!(addr = %base.listen_addr, "web tier listening");

    let pool = base.database.connect_lazy();
    let app = http::app(P::NAME, P::routes(config, pool.clone()), pool);
    shutdown::serve(
        listener,
        app,
        shutdown.cancelled_owned(),
        base.drain_timeout,
    )
    .await?;

    tracing::info!("web tier stopped");
    Ok(())
}

async fn run_worker<P: Product>(
    base: BaseConfig,
    config: P::Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let pool = base.database.connect_lazy();
    tracing::info!("worker started");

    let heartbeat = worker::heartbeat(
        pool.clone(),
        base.heartbeat_interval,
        &base.heartbeat_file,
        shutdown.clone(),
    );
    let work = P::work(config, pool, shutdown.clone());

    // Either task ending ends the worker; the message says which and why.
    let (heartbeat, work) = tokio::join!(
        async {
            let r = heartbeat.await;
            shutdown.cancel();
            r.context("heartbeat")
        },
        async {
            let r = work.await;
            shutdown.cancel();
            r.context("work")
        },
    );
    heartbeat?;
    work?;

    tracing::info!("worker stopped");
    Ok(())
}

async fn run_migrate<P: Product>(base: &BaseConfig) -> anyhow::Result<()> {
    let pool = base.database.connect_lazy();
    db::migrate(&pool, P::migrator()).await?;
    tracing::info!("migrations applied");
    pool.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn subcommands_parse_and_anything_else_is_usage() {
        assert_eq!(Command::parse(&args(&["web"])), Ok(Command::Web));
        assert_eq!(Command::parse(&args(&["worker"])), Ok(Command::Worker));
        assert_eq!(Command::parse(&args(&["migrate"])), Ok(Command::Migrate));
        assert_eq!(
            Command::parse(&args(&["healthcheck", "web"])),
            Ok(Command::Healthcheck("web".into()))
        );
        assert!(Command::parse(&args(&[])).unwrap_err().starts_with("usage"));
        assert!(Command::parse(&args(&["web", "extra"])).is_err());
    }
}
