//! Test support: a real PostgreSQL in a throwaway container, from the project's own image.
//!
//! Each [`TestDb`] is one container (tests run one per process under nextest, so sharing
//! one across tests would not save anything), labelled so `scripts/test-cleanup.sh` can
//! remove what an interrupted run left behind, and removed on drop.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnectOptions;

pub const LABEL: &str = "refdeploy.test";
const PASSWORD: &str = "test-only-password";

pub struct TestDb {
    container: String,
    pub options: PgConnectOptions,
}

fn docker(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("docker")
        .args(args)
        .output()
        .context("running docker")?;
    if !output.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

impl TestDb {
    /// Starts a database and waits until it accepts logins.
    pub async fn start() -> anyhow::Result<Self> {
        let image =
            std::env::var("POSTGRES_IMAGE").unwrap_or_else(|_| "refdeploy/postgres:15".to_owned());
        docker(&["image", "inspect", "--format", "{{.Id}}", &image])
            .with_context(|| format!("image {image} is missing: run `make images` first"))?;

        let label = format!("{LABEL}=db");
        let password_env = format!("POSTGRES_PASSWORD={PASSWORD}");
        let container = docker(&[
            "run",
            "-d",
            "--rm",
            "--label",
            &label,
            "-e",
            &password_env,
            "-e",
            "POSTGRES_DB=app",
            "--tmpfs",
            // The entrypoint refuses a data directory it does not own.
            "/var/lib/postgresql/data:uid=999,gid=999,mode=0700",
            "-p",
            "127.0.0.1::5432",
            &image,
        ])?;
        let mut db = Self {
            container,
            options: PgConnectOptions::new(),
        };

        db.options = PgConnectOptions::new()
            .host("127.0.0.1")
            .port(db.port()?)
            .username("postgres")
            .password(PASSWORD)
            .database("app");

        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // pg_isready over TCP only answers once the real server (not the init one) runs.
            let last_error = match docker(&["exec", &db.container, "pg_isready", "-h", "127.0.0.1"])
            {
                Ok(_) => match log_in(&db.options).await {
                    Ok(()) => return Ok(db),
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                bail!(
                    "test database {} not ready within 60 s: {last_error}",
                    db.container
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn port(&self) -> anyhow::Result<u16> {
        let mapping = docker(&["port", &self.container, "5432/tcp"])?;
        let port = mapping
            .lines()
            .next()
            .and_then(|l| l.rsplit(':').next())
            .unwrap_or("");
        port.parse()
            .with_context(|| format!("unexpected port mapping {mapping:?}"))
    }

    /// A database with the shared migrations and `migrator`'s applied, and a pool to it.
    pub async fn start_migrated(migrator: &Migrator) -> anyhow::Result<(Self, PgPool)> {
        let db = Self::start().await?;
        let pool = db.pool().await?;
        crate::db::migrate(&pool, migrator).await?;
        Ok((db, pool))
    }

    pub async fn pool(&self) -> anyhow::Result<PgPool> {
        Ok(PgPool::connect_with(self.options.clone()).await?)
    }

    pub fn stop(&self) -> anyhow::Result<()> {
        docker(&["stop", "-t", "2", &self.container]).map(|_| ())
    }
}

async fn log_in(options: &PgConnectOptions) -> Result<(), sqlx::Error> {
    use sqlx::Connection as _;

    sqlx::PgConnection::connect_with(options)
        .await?
        .close()
        .await
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.container])
            .output();
    }
}
