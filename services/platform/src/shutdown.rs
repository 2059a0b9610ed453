//! Graceful shutdown: one token cancelled on SIGTERM or Ctrl-C, and a server that drains
//! in-flight requests within a bound.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A token cancelled when the process is asked to stop.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();

    tokio::spawn(async move {
        let signal = wait_for_signal().await;
        tracing::info!(signal, "shutting down");
        trigger.cancel();
    });
    token
}

async fn wait_for_signal() -> &'static str {
    let ctrl_c = async {
        // Without a Ctrl-C handler the process still stops on SIGTERM below.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };

    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = ctrl_c => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => {
                ctrl_c.await;
                "SIGINT"
            }
        }
    }

    #[cfg(not(unix))]
    {
        ctrl_c.await;
        "SIGINT"
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and gives
/// in-flight requests up to `drain` to finish.
///
/// Known shortcoming: there is no bound on the time a client may take to send its request
/// head, nor on the number of open connections, so a slow client holds a connection (about
/// 23 KiB) indefinitely. `axum::serve` exposes neither; closing it means serving through
/// hyper-util's connection builder with `header_read_timeout` and a semaphore on accept.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> anyhow::Result<()> {
    let stopping = CancellationToken::new();
    let stop = stopping.clone();
    // Handlers that record who called (a ping's source address) read it from ConnectInfo.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .into_future();
    let mut server = std::pin::pin!(server);

    tokio::select! {
        result = &mut server => return result.context("serving HTTP"),
        () = shutdown => stopping.cancel(),
    }

    match tokio::time::timeout(drain, server).await {
        Ok(result) => result.context("draining HTTP requests"),
        Err(_) => {
            tracing::warn!(
                drain_secs = drain.as_secs(),
                "requests still running at the drain bound"
            );
            Ok(())
        }
    }
}
