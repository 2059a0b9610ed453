//! Load generator for `scripts/bench-cronping.sh`: `CONCURRENCY` clients send GET pings to
//! the URLs in a file (one per line, picked uniformly at random per request) for `SECONDS`
//! seconds, then it prints one line of figures. Every request waits for its answer, so the
//! rate is of pings acknowledged after their commit.
//!
//! `cargo run --release -p cronping --example ping_load -- URL_FILE CONCURRENCY SECONDS`

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [file, concurrency, seconds] = &args[..] else {
        anyhow::bail!("usage: ping_load URL_FILE CONCURRENCY SECONDS");
    };
    let urls: Arc<Vec<String>> = Arc::new(
        std::fs::read_to_string(file)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect(),
    );
    anyhow::ensure!(!urls.is_empty(), "no URLs in {file}");
    let concurrency: u64 = concurrency.parse()?;
    let duration = Duration::from_secs(seconds.parse()?);

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::try_from(concurrency)?)
        .timeout(Duration::from_secs(30))
        .build()?;
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();

    let tasks: Vec<_> = (0..concurrency)
        .map(|i| {
            let (client, urls, ok, failed) =
                (client.clone(), urls.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                // A small LCG per client: uniform enough, and no dependency for it.
                let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ (i + 1).wrapping_mul(0x2545_f491);
                while started.elapsed() < duration {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    let pick = usize::try_from((state >> 33) % urls.len() as u64).unwrap();
                    let answered = client.get(&urls[pick]).send().await;
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
