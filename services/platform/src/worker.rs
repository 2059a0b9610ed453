//! The worker's frame: a heartbeat that proves the database is reachable, run beside the
//! product's own work, both stopped by one token.

use std::path::Path;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Sleeps for `period` unless shutdown comes first; returns false when it did.
pub async fn sleep_or_stop(period: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(period) => true,
        () = shutdown.cancelled() => false,
    }
}

/// Logs a heartbeat with a database round trip every `interval`, and touches `file` after
/// each success so the container healthcheck can tell a live worker from a stuck one.
pub async fn heartbeat(
    pool: PgPool,
    interval: Duration,
    file: &Path,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let started = Instant::now();
        match crate::db::ping(&pool).await {
            Ok(()) => {
                let round_trip_ms = started.elapsed().as_secs_f64() * 1000.0;
                tracing::info!(round_trip_ms, "heartbeat");
                if let Err(e) = touch(file).await {
                    tracing::error!(error = %e, file = %file.display(), "cannot write heartbeat file");
                }
            }
            Err(e) => tracing::error!(error = %e, "heartbeat: database unreachable"),
        }

        if !sleep_or_stop(interval, &shutdown).await {
            return Ok(());
        }
    }
}

async fn touch(file: &Path) -> std::io::Result<()> {
    let now = chrono::Utc::now().to_rfc3339();
    tokio::fs::write(file, now).await
}
