//! `documint-render`: reads one job on standard input and writes the result on standard
//! output (see `protocol`), then exits 0, whether the template compiled or not. Anything
//! else (a signal, another exit status) means the render crashed.
//!
//! `documint-render [--memory-mib N] [--cpu-secs N] [--font-dir DIR]`: the limits are
//! applied to this process before the job is read.
//!
//! `documint-render bench --runs N [--font-dir DIR]`: renders the job N times in this
//! process and prints timings as JSON (for scripts/bench-documint.sh).

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use documint_render::protocol::{Header, Job, MAX_JOB_BYTES, peak_rss_kib};
use documint_render::{Engine, render};
use rlimit::Resource;

/// typst recurses deeply on nested content; on a small stack that is an abort instead of
/// typst's own "maximum layout depth exceeded" error.
const RENDER_STACK: usize = 64 * 1024 * 1024;

#[derive(Default)]
struct Args {
    bench_runs: Option<usize>,
    memory_mib: Option<u64>,
    cpu_secs: Option<u64>,
    font_dir: Option<PathBuf>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args::default();
    let mut rest = args;
    if rest.first().is_some_and(|a| a == "bench") {
        parsed.bench_runs = Some(1);
        rest = &rest[1..];
    }
    while let [flag, value, tail @ ..] = rest {
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number"))
        };
        match flag.as_str() {
            "--memory-mib" => parsed.memory_mib = Some(number()?),
            "--cpu-secs" => parsed.cpu_secs = Some(number()?),
            "--runs" if parsed.bench_runs.is_some() => {
                parsed.bench_runs = Some(usize::try_from(number()?.max(1)).unwrap_or(1));
            }
            "--font-dir" => parsed.font_dir = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown argument {flag}")),
        }
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(format!("unexpected argument {}", rest[0]));
    }
    Ok(parsed)
}

fn apply_limits(args: &Args) -> std::io::Result<()> {
    if let Some(mib) = args.memory_mib {
        let bytes = mib.saturating_mul(1024 * 1024);
        Resource::AS.set(bytes, bytes)?;
    }
    if let Some(secs) = args.cpu_secs {
        // SIGXCPU at the soft limit, SIGKILL a second later should it be ignored.
        Resource::CPU.set(secs, secs.saturating_add(1))?;
    }
    // A crash must not leave a core file of the job's data behind.
    Resource::CORE.set(0, 0)?;
    Ok(())
}

fn read_job() -> Result<Job, String> {
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_JOB_BYTES + 1)
        .read_to_end(&mut input)
        .map_err(|e| format!("reading the job: {e}"))?;
    if input.len() as u64 > MAX_JOB_BYTES {
        return Err(format!("the job is over {MAX_JOB_BYTES} bytes"));
    }
    serde_json::from_slice(&input).map_err(|e| format!("the job is not valid: {e}"))
}

fn write_result(header: &Header, pdf: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, header)?;
    out.write_all(b"\n")?;
    out.write_all(pdf)?;
    out.flush()
}

/// Runs `f` on a thread with a stack large enough for typst.
fn on_render_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    std::thread::Builder::new()
        .name("render".to_owned())
        .stack_size(RENDER_STACK)
        .spawn(f)
        .ok()?
        .join()
        .ok()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("documint-render: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = apply_limits(&args) {
        eprintln!("documint-render: cannot set resource limits: {e}");
        return ExitCode::from(71);
    }

    let job = match read_job() {
        Ok(job) => job,
        Err(message) => {
            let header = Header::failed("invalid_job", message);
            return match write_result(&header, &[]) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::from(74),
            };
        }
    };

    match args.bench_runs {
        Some(runs) => bench(job, runs, args.font_dir),
        None => render_once(job, args.font_dir),
    }
}

fn render_once(job: Job, font_dir: Option<PathBuf>) -> ExitCode {
    let rendered = on_render_thread(move || {
        let engine = Engine::new(font_dir.as_deref());
        render(&engine, &job)
    });
    let Some((mut header, pdf)) = rendered else {
        eprintln!("documint-render: the render thread panicked");
        return ExitCode::from(70);
    };
    header.peak_rss_kib = peak_rss_kib();
    match write_result(&header, &pdf) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("documint-render: writing the result: {e}");
            ExitCode::from(74)
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn bench(job: Job, runs: usize, font_dir: Option<PathBuf>) -> ExitCode {
    let report = on_render_thread(move || {
        let started = Instant::now();
        let engine = Engine::new(font_dir.as_deref());
        let font_load_ms = started.elapsed().as_secs_f64() * 1000.0;
        let mut total = Vec::with_capacity(runs);
        let mut last = None;
        for _ in 0..runs {
            let started = Instant::now();
            let (header, pdf) = render(&engine, &job);
            total.push(started.elapsed().as_secs_f64() * 1000.0);
            last = Some((header, pdf.len()));
        }
        total.sort_by(f64::total_cmp);
        let (header, pdf_len) = last.unwrap_or_else(|| (Header::failed("invalid_job", ""), 0));
        serde_json::json!({
            "runs": runs,
            "status": header.status,
            "errors": header.errors,
            "pages": header.pages,
            "pdf_bytes": pdf_len,
            "fonts": engine.font_count(),
            "font_load_ms": font_load_ms,
            "median_ms": percentile(&total, 0.5),
            "p95_ms": percentile(&total, 0.95),
            "min_ms": total.first().copied().unwrap_or(0.0),
            "max_ms": total.last().copied().unwrap_or(0.0),
            "peak_rss_kib": peak_rss_kib(),
        })
    });
    let Some(report) = report else {
        eprintln!("documint-render: the render thread panicked");
        return ExitCode::from(70);
    };
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{report}") {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(74),
    }
}
