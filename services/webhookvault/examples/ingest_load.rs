//! Load generator for `scripts/bench-webhookvault.sh`: `CONCURRENCY` clients POST a body of
//! `BODY_BYTES` bytes to one ingest URL for `SECONDS` seconds, then it prints one line of
//! figures. Every request waits for its answer, and WebhookVault answers only after the
//! event's commit, so the rate is of events durably stored.
//!
//! `cargo run --release -p webhookvault --example ingest_load --`
//! `URL CONCURRENCY SECONDS BODY_BYTES`

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, concurrency, seconds, body_bytes] = &args[..] else {
        anyhow::bail!("usage: ingest_load URL CONCURRENCY SECONDS BODY_BYTES");
    };
    let concurrency: usize = concurrency.parse()?;
    let duration = Duration::from_secs(seconds.parse()?);
    // A JSON-looking body of exactly the requested size.
    let size: usize = body_bytes.parse()?;
    anyhow::ensure!(size >= 16, "BODY_BYTES must be at least 16");
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(size - 10)).into_bytes();
    anyhow::ensure!(body.len() == size, "body is {} bytes", body.len());
    let body = bytes_of(body);

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();

    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, body, ok, failed) = (
                client.clone(),
                url.clone(),
                body.clone(),
                ok.clone(),
                failed.clone(),
            );
            tokio::spawn(async move {
                while started.elapsed() < duration {
                    let answered = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.to_vec())
                        .send()
                        .await;
                    match answered {
                        Ok(r) if r.status().is_success() => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }

    let elapsed = started.elapsed().as_secs_f64();
    let ok = ok.load(Ordering::Relaxed);
    println!(
        "ok={ok} failed={} seconds={elapsed:.1} rate={:.0}",
        failed.load(Ordering::Relaxed),
        ok as f64 / elapsed
    );
    Ok(())
}

fn bytes_of(body: Vec<u8>) -> Arc<[u8]> {
    Arc::from(body.into_boxed_slice())
}
