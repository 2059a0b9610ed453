//! DocuMint's benchmark (run by scripts/bench-documint.sh, in release mode): render times
//! of the built-in invoice in-process and through the sandbox, the 1000-line receipt,
//! receipts per second through the worker against a real PostgreSQL, and peak memory per
//! receipt job. Prints one JSON object per measurement.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use documint::render::{RenderJob, RenderLimits, Renderer};
use documint::{Clock, Config, DocuMint, QUEUE};
use platform::Product as _;
use serde_json::{Value, json};

fn renderer_binary() -> PathBuf {
    std::env::var("DOCUMINT_RENDER_BIN").map_or_else(
        |_| {
            let exe = std::env::current_exe().unwrap();
            exe.parent()
                .unwrap()
                .parent()
                .unwrap()
                .join("documint-render")
        },
        PathBuf::from,
    )
}

fn receipt(lines: usize) -> Value {
    let flags: Vec<Value> = (0..lines)
        .map(|i| json!({ "key": format!("flag-{i:04}"), "evaluations": 1000 + i }))
        .collect();
    json!({
        "account": "acme",
        "period": { "from": "2026-11-01", "to": "2026-11-30" },
        "environments": [{ "name": "production", "flags": flags }],
    })
}

fn job<'a>(source: &'a str, data: &'a Value, options: &'a Value, ident: String) -> RenderJob<'a> {
    RenderJob {
        source,
        data,
        options,
        title: None,
        author: None,
        standard: None,
        date: Some("2026-12-01".to_owned()),
        ident,
        max_pages: 500,
    }
}

/// `documint-render bench`: renders in one process, no process start.
fn in_process(name: &str, source: &str, data: &Value, runs: usize) {
    let options = json!({});
    let input = serde_json::to_vec(&job(source, data, &options, "bench".into())).unwrap();
    let mut child = Command::new(renderer_binary())
        .args(["bench", "--runs", &runs.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    let mut report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["measure"] = json!(format!("{name}, in-process"));
    println!("{report}");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Through the sandbox: one child process per render, as the worker does it.
async fn sandboxed(name: &str, renderer: &Renderer, source: &str, data: &Value, runs: usize) {
    let options = json!({});
    let mut times = Vec::new();
    let mut peak = 0;
    let mut pages = 0;
    for i in 0..runs {
        let j = job(source, data, &options, format!("bench-{i}"));
        let started = Instant::now();
        let rendered = renderer.render(&j).await.unwrap();
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        peak = peak.max(rendered.peak_rss_kib);
        pages = rendered.pages;
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({
            "measure": format!("{name}, sandboxed (one process per render)"),
            "runs": runs,
            "pages": pages,
            "median_ms": percentile(&times, 0.5),
            "p95_ms": percentile(&times, 0.95),
            "peak_rss_kib_per_render": peak,
        })
    );
}

/// Receipts per second through the worker: `jobs` documents queued, then rendered by
/// `worker::run` with one slot per core.
async fn through_worker(jobs: usize) {
    let (_db, pool) = platform::testing::TestDb::start_migrated(DocuMint::migrator())
        .await
        .unwrap();
    let mut config = Config::new(RenderLimits {
        binary: renderer_binary(),
        ..RenderLimits::beside_current_exe()
    });
    config.clock = Clock::system();
    config.poll_every = Duration::from_millis(20);
    if let Some(slots) = std::env::var("SLOTS").ok().and_then(|s| s.parse().ok()) {
        config.render_concurrency = slots;
    }
    let app = documint::App::new(config.clone(), pool.clone());
    app.builtins().await.unwrap();

    let now = chrono::Utc::now();
    let data = documint::builtin::usage_receipt_sample();
    for i in 0..jobs {
        let id = uuid::Uuid::new_v4();
        sqlx::query(
            "INSERT INTO documents (id, template_id, template_version, status, data, file_name,
                 metadata, content_hash, created_at, updated_at)
             VALUES ($1, $2, 1, 'queued', $3, 'r.pdf', '{}', $4, $5, $5)",
        )
        .bind(id)
        .bind(documint::builtin::USAGE_RECEIPT.id)
        .bind(&data)
        .bind(format!("bench-{i}"))
        .bind(now)
        .execute(&pool)
        .await
        .unwrap();
        platform::queue::enqueue(&pool, QUEUE, &json!({ "document_id": id }), now, 3, now)
            .await
            .unwrap();
    }

    let shutdown = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let worker = tokio::spawn(documint::worker::run(
        config.clone(),
        pool.clone(),
        shutdown.clone(),
    ));
    loop {
        let done: i64 =
            sqlx::query_scalar("SELECT count(*) FROM documents WHERE status IN ('done', 'failed')")
                .fetch_one(&pool)
                .await
                .unwrap();
        if done as usize == jobs {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    shutdown.cancel();
    worker.await.unwrap().unwrap();
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM documents WHERE status = 'failed'")
        .fetch_one(&pool)
        .await
        .unwrap();
    println!(
        "{}",
        json!({
            "measure": "usage receipts through the worker (queue, sandboxed render, store)",
            "jobs": jobs,
            "failed": failed,
            "slots": config.render_concurrency,
            "seconds": elapsed,
            "receipts_per_second": jobs as f64 / elapsed,
        })
    );
}

#[tokio::main]
async fn main() {
    if std::env::var("ONLY_WORKER").is_ok() {
        let jobs = std::env::var("JOBS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(500);
        through_worker(jobs).await;
        return;
    }
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200);
    let jobs: usize = std::env::var("JOBS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(500);
    let invoice = documint::builtin::INVOICE.source;
    let usage = documint::builtin::USAGE_RECEIPT.source;
    let invoice_data = documint::builtin::invoice_sample();
    let long = receipt(1000);

    in_process("invoice", invoice, &invoice_data, runs);
    in_process("1000-line usage receipt", usage, &long, 10);

    let renderer = Renderer::new(
        RenderLimits {
            binary: renderer_binary(),
            ..RenderLimits::beside_current_exe()
        },
        1,
    );
    sandboxed("invoice", &renderer, invoice, &invoice_data, runs).await;
    sandboxed(
        "usage receipt",
        &renderer,
        usage,
        &documint::builtin::usage_receipt_sample(),
        runs,
    )
    .await;
    sandboxed("1000-line usage receipt", &renderer, usage, &long, 10).await;
    through_worker(jobs).await;
}
