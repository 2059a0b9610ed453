//! Rendering through the `documint-render` child process, with limits.
//!
//! typst has no bound on time, memory or stack, and some templates abort the compiler. So
//! each render is a fresh `documint-render` process: an address-space cap (RLIMIT_AS) and a
//! CPU-time cap (RLIMIT_CPU) it applies to itself before reading the job, a wall-clock kill
//! from here, no environment, and an empty working directory. Its only inputs are the job
//! on standard input and the fonts. A crash, timeout or memory cap fails that render with
//! a code; the caller carries on.
//!
//! The job and result shapes mirror `documint_render::protocol` (this crate does not link
//! the renderer, which would link typst); the tests drive the real binary.

use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::Command;
use tokio::sync::Semaphore;

/// Largest PDF accepted from the renderer.
pub const MAX_PDF_BYTES: u64 = 64 * 1024 * 1024;
/// Bytes of the renderer's standard error kept (to tell a memory cap from a crash).
const MAX_STDERR: u64 = 64 * 1024;

/// How renders are run and bounded.
#[derive(Clone, Debug)]
pub struct RenderLimits {
    /// The `documint-render` executable.
    pub binary: PathBuf,
    /// Address-space cap of one render, MiB.
    pub memory_mib: u64,
    /// CPU-time cap of one render, seconds.
    pub cpu_secs: u64,
    /// Wall-clock time after which a render is killed.
    pub wall: Duration,
    /// Most pages a document may have.
    pub max_pages: usize,
    /// Extra font files for the renderer (CJK, Arabic, emoji), if mounted.
    pub font_dir: Option<PathBuf>,
}

impl RenderLimits {
    /// The renderer next to the running executable (where the image and cargo put it),
    /// with the default limits.
    pub fn beside_current_exe() -> Self {
        let binary = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("documint-render")))
            .unwrap_or_else(|| PathBuf::from("/usr/local/bin/documint-render"));
        Self {
            binary,
            memory_mib: 512,
            cpu_secs: 10,
            wall: Duration::from_secs(10),
            max_pages: 500,
            font_dir: None,
        }
    }
}

/// One render, as the renderer reads it.
#[derive(Debug, Clone, Serialize)]
pub struct RenderJob<'a> {
    pub source: &'a str,
    pub data: &'a Value,
    pub options: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standard: Option<&'a str>,
    /// `YYYY-MM-DD`: the document's own date, for `datetime.today()` and PDF/A.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    pub ident: String,
    pub max_pages: usize,
}

/// A template error or warning with its place.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Diagnostic {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    pub message: String,
    #[serde(default)]
    pub hints: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Header {
    status: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    errors: Vec<Diagnostic>,
    #[serde(default)]
    warnings: Vec<Diagnostic>,
    #[serde(default)]
    pages: usize,
    #[serde(default)]
    pdf_len: u64,
    #[serde(default)]
    peak_rss_kib: u64,
}

/// A finished PDF.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub pdf: Vec<u8>,
    pub pages: usize,
    pub warnings: Vec<Diagnostic>,
    pub peak_rss_kib: u64,
}

/// Why a render gave no PDF.
#[derive(Debug)]
pub enum RenderError {
    /// The template (or its data) is at fault: `template_error`, `too_many_pages`,
    /// `invalid_job`. Rendering again gives the same answer.
    Template {
        code: String,
        message: String,
        errors: Vec<Diagnostic>,
        warnings: Vec<Diagnostic>,
    },
    /// Killed at the wall-clock limit, or stopped at the CPU-time limit.
    Timeout,
    /// Stopped at the memory cap.
    ResourceLimit,
    /// The renderer died (a stack overflow in typst aborts it, for one).
    Crashed(String),
    /// Ours, not the template's: the renderer could not start, or spoke nonsense. Worth
    /// another try later.
    Infrastructure(anyhow::Error),
}

impl RenderError {
    /// The code a failed document shows.
    pub fn code(&self) -> &str {
        match self {
            Self::Template { code, .. } => code,
            Self::Timeout => "timeout",
            Self::ResourceLimit => "resource_limit",
            Self::Crashed(_) => "render_crashed",
            Self::Infrastructure(_) => "unavailable",
        }
    }

    pub fn message(&self, limits: &RenderLimits) -> String {
        match self {
            Self::Template { message, .. } => message.clone(),
            Self::Timeout => format!(
                "the render did not finish within {} s (wall clock) or {} s of CPU time",
                limits.wall.as_secs_f64(),
                limits.cpu_secs
            ),
            Self::ResourceLimit => format!(
                "the render needed more than the {} MiB memory cap",
                limits.memory_mib
            ),
            Self::Crashed(why) => format!("the renderer crashed: {why}"),
            Self::Infrastructure(_) => "the renderer is unavailable".to_owned(),
        }
    }
}

/// Runs renders, at most `concurrency` at a time.
#[derive(Clone, Debug)]
pub struct Renderer {
    pub limits: RenderLimits,
    slots: Arc<Semaphore>,
    workdir: PathBuf,
}

impl Renderer {
    pub fn new(limits: RenderLimits, concurrency: usize) -> Self {
        // An empty directory of our own as the child's working directory: nothing to find
        // there even if a relative path ever reached the file system.
        let workdir = std::env::temp_dir().join("documint-render");
        Self {
            limits,
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            workdir,
        }
    }

    pub async fn render(&self, job: &RenderJob<'_>) -> Result<Rendered, RenderError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|e| RenderError::Infrastructure(e.into()))?;
        let input = serde_json::to_vec(job).map_err(|e| RenderError::Infrastructure(e.into()))?;
        self.run(input).await
    }

    async fn run(&self, input: Vec<u8>) -> Result<Rendered, RenderError> {
        let limits = &self.limits;
        tokio::fs::create_dir_all(&self.workdir)
            .await
            .map_err(|e| RenderError::Infrastructure(e.into()))?;
        let mut cmd = Command::new(&limits.binary);
        cmd.arg("--memory-mib")
            .arg(limits.memory_mib.to_string())
            .arg("--cpu-secs")
            .arg(limits.cpu_secs.to_string());
        if let Some(dir) = &limits.font_dir {
            cmd.arg("--font-dir").arg(dir);
        }
        cmd.env_clear()
            .current_dir(&self.workdir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            RenderError::Infrastructure(anyhow::anyhow!(
                "starting {}: {e}",
                limits.binary.display()
            ))
        })?;

        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(RenderError::Infrastructure(anyhow::anyhow!(
                "renderer pipes missing"
            )));
        };
        let feed = async move {
            // A renderer that dies early closes its end; its exit status tells why.
            let _ = stdin.write_all(&input).await;
            drop(stdin);
        };
        let read_out = async move {
            let mut out = Vec::new();
            let header_cap = 16 * 1024 * 1024;
            stdout
                .take(MAX_PDF_BYTES + header_cap)
                .read_to_end(&mut out)
                .await
                .map(|_| out)
        };
        let read_err = async move {
            let mut err = Vec::new();
            let _ = stderr.take(MAX_STDERR).read_to_end(&mut err).await;
            err
        };

        let finished = tokio::time::timeout(limits.wall, async {
            let ((), out, err) = tokio::join!(feed, read_out, read_err);
            let status = child.wait().await;
            (out, err, status)
        })
        .await;
        let (out, err, status) = match finished {
            Ok(parts) => parts,
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(RenderError::Timeout);
            }
        };
        let status = status.map_err(|e| RenderError::Infrastructure(e.into()))?;
        let stderr = String::from_utf8_lossy(&err);

        if !status.success() {
            return Err(classify_exit(status, &stderr));
        }
        let out = out.map_err(|e| RenderError::Infrastructure(e.into()))?;
        parse_result(&out)
    }
}

/// What a renderer's death means. An allocation refused under RLIMIT_AS aborts with Rust's
/// "memory allocation of N bytes failed"; a stack overflow aborts with "has overflowed its
/// stack"; RLIMIT_CPU sends SIGXCPU.
fn classify_exit(status: std::process::ExitStatus, stderr: &str) -> RenderError {
    const SIGKILL: i32 = 9;
    const SIGXCPU: i32 = 24;
    if stderr.contains("memory allocation of") || stderr.contains("Cannot allocate memory") {
        return RenderError::ResourceLimit;
    }
    match status.signal() {
        Some(SIGXCPU) => RenderError::Timeout,
        Some(SIGKILL) => {
            // Not ours (ours is the timeout path): the kernel's OOM killer, or an operator.
            RenderError::Infrastructure(anyhow::anyhow!("renderer killed (SIGKILL)"))
        }
        Some(signal) => {
            let why = if stderr.contains("overflowed its stack") {
                "stack overflow (a template that recurses without end)".to_owned()
            } else {
                format!("signal {signal}")
            };
            RenderError::Crashed(why)
        }
        None => RenderError::Crashed(format!(
            "exit status {}: {}",
            status.code().unwrap_or(-1),
            stderr
                .lines()
                .last()
                .unwrap_or("")
                .chars()
                .take(300)
                .collect::<String>()
        )),
    }
}

fn parse_result(out: &[u8]) -> Result<Rendered, RenderError> {
    let bad = |why: &str| RenderError::Infrastructure(anyhow::anyhow!("renderer result: {why}"));
    let newline = out
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| bad("no header line"))?;
    let header: Header =
        serde_json::from_slice(&out[..newline]).map_err(|_| bad("header is not JSON"))?;
    let pdf = &out[newline + 1..];
    if header.status != "ok" {
        return Err(RenderError::Template {
            code: header.status,
            message: header.message.unwrap_or_default(),
            errors: header.errors,
            warnings: header.warnings,
        });
    }
    if pdf.len() as u64 != header.pdf_len {
        return Err(bad("PDF length differs from the header's"));
    }
    Ok(Rendered {
        pdf: pdf.to_vec(),
        pages: header.pages,
        warnings: header.warnings,
        peak_rss_kib: header.peak_rss_kib,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn results_are_parsed_and_checked() {
        let ok = b"{\"status\":\"ok\",\"pages\":1,\"pdf_len\":4}\n%PDF";
        let r = parse_result(ok).unwrap();
        assert_eq!((r.pages, r.pdf.as_slice()), (1, &b"%PDF"[..]));

        let short = b"{\"status\":\"ok\",\"pages\":1,\"pdf_len\":9}\n%PDF";
        assert!(matches!(
            parse_result(short),
            Err(RenderError::Infrastructure(_))
        ));
        assert!(matches!(
            parse_result(b"garbage"),
            Err(RenderError::Infrastructure(_))
        ));

        let err = concat!(
            r#"{"status":"template_error","message":"m","#,
            r#""errors":[{"file":"main.typ","line":3,"column":10,"message":"x"}]}"#,
            "\n"
        )
        .as_bytes();
        match parse_result(err) {
            Err(RenderError::Template { code, errors, .. }) => {
                assert_eq!(code, "template_error");
                assert_eq!(errors[0].line, Some(3));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deaths_are_told_apart() {
        let signalled = |sig: i32| std::process::ExitStatus::from_raw(sig);
        assert!(matches!(
            classify_exit(
                signalled(6),
                "memory allocation of 4294967296 bytes failed\n"
            ),
            RenderError::ResourceLimit
        ));
        assert!(matches!(
            classify_exit(signalled(6), "thread 'render' has overflowed its stack\n"),
            RenderError::Crashed(_)
        ));
        assert!(matches!(
            classify_exit(signalled(24), ""),
            RenderError::Timeout
        ));
        assert!(matches!(
            classify_exit(signalled(9), ""),
            RenderError::Infrastructure(_)
        ));
    }
}
