//! What passes between DocuMint's worker (or web tier) and this renderer.
//!
//! The job arrives on standard input as one JSON object. The result leaves on standard
//! output as one line of JSON (the [`Header`]) followed by exactly `pdf_len` bytes of PDF.
//! The other side keeps its own copy of these shapes (it does not link this crate, which
//! would pull typst into it); its tests drive this binary, so a drift between the two
//! fails them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest job accepted on standard input. The caller's own limits (template source,
/// data, options) are far below it; this only bounds a broken caller.
pub const MAX_JOB_BYTES: u64 = 32 * 1024 * 1024;

/// One render: the template, the data it reads as `/data.json`, the options it reads as
/// `/options.json`, and what the PDF export needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Job {
    /// typst source of the template (served as `/main.typ`).
    pub source: String,
    /// The document's data, checked by the caller (size, depth, number range).
    pub data: Value,
    /// Page and PDF options the template may read (paper, margins, ...).
    #[serde(default)]
    pub options: Value,
    /// Fills the PDF's title when the template sets none.
    #[serde(default)]
    pub title: Option<String>,
    /// Fills the PDF's author when the template sets none.
    #[serde(default)]
    pub author: Option<String>,
    /// A PDF standard by typst's name: `a-2b`, `a-3b`, `ua-1`, ...
    #[serde(default)]
    pub standard: Option<String>,
    /// The document's date, `YYYY-MM-DD`: what `datetime.today()` returns and, for the
    /// PDF/A standards that require one, the document's creation date. Never the clock.
    #[serde(default)]
    pub date: Option<String>,
    /// A stable identifier of the document; the PDF's file identifier is derived from it.
    pub ident: String,
    /// More pages than this fails the render.
    #[serde(default = "default_max_pages")]
    pub max_pages: usize,
}

fn default_max_pages() -> usize {
    500
}

/// The result's first line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    /// `ok`, or why there is no PDF: `template_error`, `too_many_pages`, `invalid_job`.
    pub status: String,
    /// For a failure that is not a template diagnostic (`invalid_job`, `too_many_pages`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub errors: Vec<Diagnostic>,
    #[serde(default)]
    pub warnings: Vec<Diagnostic>,
    #[serde(default)]
    pub pages: usize,
    #[serde(default)]
    pub pdf_len: u64,
    /// Characters no loaded font has a glyph for (each drawn as an empty box).
    #[serde(default)]
    pub missing_glyphs: Vec<String>,
    #[serde(default)]
    pub compile_ms: f64,
    #[serde(default)]
    pub export_ms: f64,
    /// The renderer process's peak resident memory, from the kernel, in KiB.
    #[serde(default)]
    pub peak_rss_kib: u64,
}

impl Header {
    pub fn failed(status: &str, message: impl Into<String>) -> Self {
        Self {
            status: status.to_owned(),
            message: Some(message.into()),
            errors: Vec::new(),
            warnings: Vec::new(),
            pages: 0,
            pdf_len: 0,
            missing_glyphs: Vec::new(),
            compile_ms: 0.0,
            export_ms: 0.0,
            peak_rss_kib: 0,
        }
    }
}

/// A template error or warning, placed in the file that caused it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Diagnostic {
    /// `main.typ`, `data.json` or `options.json`; absent when typst names no place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// 1-based.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// 1-based, in characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    pub message: String,
    #[serde(default)]
    pub hints: Vec<String>,
}

/// The renderer's peak resident set so far, in KiB (0 where the kernel does not say).
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                let rest = line.strip_prefix("VmHWM:")?;
                rest.trim().trim_end_matches("kB").trim().parse().ok()
            })
        })
        .unwrap_or(0)
}
