//! typst as a library: the fonts, the sandboxed [`World`] one job sees, compilation, the
//! scan for missing glyphs, and the PDF export.
//!
//! The sandbox is [`JobWorld::file`]: a template can read `/main.typ` (itself),
//! `/data.json` and `/options.json`, and nothing else; no package, no host file. typst
//! has no other way to reach files, the network or the environment. It does have no
//! bound on time, memory or stack, which is why this runs in a child process with
//! limits (see `main.rs`).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use typst::diag::{FileError, FileResult, SourceDiagnostic, Warned};
use typst::foundations::{Bytes, Datetime, Smart};
use typst::layout::{Frame, FrameItem};
use typst::syntax::{FileId, Lines, RootedPath, Source, VirtualPath, VirtualRoot};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt as _, World, WorldExt as _};
use typst_layout::PagedDocument;
use typst_pdf::{PdfOptions, PdfStandard, PdfStandards, Timestamp};

use crate::protocol::{Diagnostic, Header, Job};

const MAIN: &str = "/main.typ";
const DATA: &str = "/data.json";
const OPTIONS: &str = "/options.json";

/// What every render shares: the standard library and the fonts, loaded once.
pub struct Engine {
    library: LazyHash<Library>,
    book: LazyHash<FontBook>,
    fonts: Vec<Font>,
}

impl Engine {
    /// The fonts bundled in the binary (Libertinus Serif, New Computer Modern, DejaVu Sans
    /// Mono), plus every font file in `extra` when given (an operator's mount for CJK,
    /// Arabic or emoji coverage).
    pub fn new(extra: Option<&Path>) -> Self {
        let mut fonts: Vec<Font> = typst_assets::fonts()
            .flat_map(|data| Font::iter(Bytes::new(data)))
            .collect();
        if let Some(dir) = extra {
            fonts.extend(fonts_in(dir));
        }
        Self {
            library: LazyHash::new(Library::builder().build()),
            book: LazyHash::new(FontBook::from_fonts(&fonts)),
            fonts,
        }
    }

    pub fn font_count(&self) -> usize {
        self.fonts.len()
    }
}

/// Font files directly inside `dir`; unreadable ones are skipped (the renderer has no log:
/// the font count it reports shows what loaded).
fn fonts_in(dir: &Path) -> Vec<Font> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                matches!(
                    e.to_ascii_lowercase().as_str(),
                    "ttf" | "otf" | "ttc" | "otc"
                )
            })
        })
        .collect();
    // A fixed order keeps font indices, and so the output, the same from run to run.
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| std::fs::read(p).ok())
        .flat_map(|bytes| Font::iter(Bytes::new(bytes)))
        .collect()
}

/// The one template, its data and options, and nothing else.
struct JobWorld<'a> {
    engine: &'a Engine,
    main: Source,
    data: Bytes,
    data_text: String,
    options: Bytes,
    options_text: String,
    today: Option<Datetime>,
}

fn project_file(path: &str) -> FileId {
    // The three names are constants that `VirtualPath::new` accepts.
    let vpath = VirtualPath::new(path).unwrap_or_else(|_| unreachable!("valid virtual path"));
    FileId::new(RootedPath::new(VirtualRoot::Project, vpath))
}

impl JobWorld<'_> {
    fn is(&self, id: FileId, path: &str) -> bool {
        matches!(id.root(), VirtualRoot::Project) && id.vpath().get_with_slash() == path
    }

    fn refuse(id: FileId) -> FileError {
        match id.root() {
            VirtualRoot::Package(spec) => FileError::Other(Some(
                format!("packages are not available to templates ({spec})").into(),
            )),
            VirtualRoot::Project => FileError::AccessDenied,
        }
    }

    /// The text a span's file holds, for turning byte offsets into lines and columns.
    fn text_of(&self, id: FileId) -> Option<&str> {
        if id == self.main.id() {
            Some(self.main.text())
        } else if self.is(id, DATA) {
            Some(&self.data_text)
        } else if self.is(id, OPTIONS) {
            Some(&self.options_text)
        } else {
            None
        }
    }
}

impl World for JobWorld<'_> {
    fn library(&self) -> &LazyHash<Library> {
        &self.engine.library
    }

    fn book(&self) -> &LazyHash<FontBook> {
        &self.engine.book
    }

    fn main(&self) -> FileId {
        self.main.id()
    }

    fn source(&self, id: FileId) -> FileResult<Source> {
        if id == self.main.id() {
            Ok(self.main.clone())
        } else {
            Err(Self::refuse(id))
        }
    }

    fn file(&self, id: FileId) -> FileResult<Bytes> {
        if id == self.main.id() {
            Ok(Bytes::from_string(self.main.text().to_owned()))
        } else if self.is(id, DATA) {
            Ok(self.data.clone())
        } else if self.is(id, OPTIONS) {
            Ok(self.options.clone())
        } else {
            Err(Self::refuse(id))
        }
    }

    fn font(&self, index: usize) -> Option<Font> {
        self.engine.fonts.get(index).cloned()
    }

    fn today(&self, _offset: Option<typst::foundations::Duration>) -> Option<Datetime> {
        self.today
    }
}

/// The job's date as typst's, from `YYYY-MM-DD`.
fn parse_date(date: &str) -> Option<Datetime> {
    let mut parts = date.splitn(3, '-');
    let year = parts.next()?.parse().ok()?;
    let month = parts.next()?.parse().ok()?;
    let day = parts.next()?.parse().ok()?;
    Datetime::from_ymd(year, month, day)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Renders one job; a template problem is a [`Header`] with status `template_error`,
/// never a panic. Evicts typst's memo cache before returning: each job brings new data, so
/// the cache would only grow (to gigabytes for long documents) without speeding anything.
pub fn render(engine: &Engine, job: &Job) -> (Header, Vec<u8>) {
    let result = render_inner(engine, job);
    typst::comemo::evict(0);
    result
}

fn render_inner(engine: &Engine, job: &Job) -> (Header, Vec<u8>) {
    let today = match job.date.as_deref() {
        None => None,
        Some(date) => match parse_date(date) {
            Some(d) => Some(d),
            None => {
                return (
                    Header::failed("invalid_job", "date is not YYYY-MM-DD"),
                    vec![],
                );
            }
        },
    };
    let standards = match standards(job.standard.as_deref()) {
        Ok(s) => s,
        Err(message) => return (Header::failed("invalid_job", message), vec![]),
    };

    let options = if job.options.is_null() {
        Value::Object(serde_json::Map::new())
    } else {
        job.options.clone()
    };
    // Serialising a `Value` cannot fail (its keys are strings).
    let data_text = serde_json::to_string(&job.data).unwrap_or_default();
    let options_text = serde_json::to_string(&options).unwrap_or_default();
    let world = JobWorld {
        engine,
        main: Source::new(project_file(MAIN), job.source.clone()),
        data: Bytes::from_string(data_text.clone()),
        data_text,
        options: Bytes::from_string(options_text.clone()),
        options_text,
        today,
    };

    let started = Instant::now();
    let Warned { output, warnings } = typst::compile::<PagedDocument>(&world);
    let compile_ms = millis(started.elapsed());
    let warnings: Vec<Diagnostic> = warnings.iter().map(|d| diagnostic(&world, d)).collect();

    let mut document = match output {
        Ok(doc) => doc,
        Err(errors) => {
            let mut header = Header::failed("template_error", "the template failed to compile");
            header.errors = errors.iter().map(|d| diagnostic(&world, d)).collect();
            header.warnings = warnings;
            header.compile_ms = compile_ms;
            return (header, vec![]);
        }
    };

    let pages = document.pages().len();
    if pages > job.max_pages {
        let mut header = Header::failed(
            "too_many_pages",
            format!(
                "the document has {pages} pages; at most {} are allowed",
                job.max_pages
            ),
        );
        header.pages = pages;
        return (header, vec![]);
    }

    let mut missing = BTreeSet::new();
    for page in document.pages() {
        scan_missing(&page.frame, &mut missing);
    }

    let info = document.info_mut();
    if info.title.is_none() {
        info.title = job.title.clone().map(Into::into);
    }
    if info.author.is_empty() {
        info.author = job.author.iter().map(|a| a.as_str().into()).collect();
    }

    // PDF/A wants a creation date; it is the document's own date, so the same input still
    // gives the same bytes.
    let timestamp = match (&job.standard, today) {
        (Some(_), Some(date)) => Datetime::from_ymd_hms(
            date.year().unwrap_or(1970),
            date.month().unwrap_or(1),
            date.day().unwrap_or(1),
            0,
            0,
            0,
        )
        .map(Timestamp::new_utc),
        _ => None,
    };
    let options = PdfOptions {
        ident: Smart::Custom(job.ident.clone()),
        creator: Smart::Custom(Some("DocuMint".to_owned())),
        timestamp,
        standards,
        ..PdfOptions::default()
    };

    let started = Instant::now();
    let exported = typst_pdf::pdf(&document, &options);
    let export_ms = millis(started.elapsed());
    match exported {
        Ok(pdf) => {
            let mut warnings = warnings;
            warnings.extend(missing_warning(&missing));
            let header = Header {
                status: "ok".to_owned(),
                message: None,
                errors: Vec::new(),
                warnings,
                pages,
                pdf_len: pdf.len() as u64,
                missing_glyphs: missing.iter().map(char::to_string).collect(),
                compile_ms,
                export_ms,
                peak_rss_kib: 0,
            };
            (header, pdf)
        }
        Err(errors) => {
            let mut header = Header::failed("template_error", "the PDF export failed");
            header.errors = errors.iter().map(|d| diagnostic(&world, d)).collect();
            header.warnings = warnings;
            header.missing_glyphs = missing.iter().map(char::to_string).collect();
            header.compile_ms = compile_ms;
            header.export_ms = export_ms;
            (header, vec![])
        }
    }
}

fn standards(name: Option<&str>) -> Result<PdfStandards, String> {
    let Some(name) = name else {
        return Ok(PdfStandards::default());
    };
    let standard: PdfStandard = serde_json::from_value(Value::String(name.to_owned()))
        .map_err(|_| format!("unknown PDF standard {name:?}"))?;
    PdfStandards::new(&[standard]).map_err(|e| e.message().to_string())
}

/// Characters drawn with glyph 0 (`.notdef`, the empty box): no loaded font covers them.
/// typst itself says nothing about them.
fn scan_missing(frame: &Frame, missing: &mut BTreeSet<char>) {
    for (_, item) in frame.items() {
        match item {
            FrameItem::Group(group) => scan_missing(&group.frame, missing),
            FrameItem::Text(text) => {
                for glyph in text.glyphs.iter().filter(|g| g.id == 0) {
                    if let Some(chars) = text.text.get(glyph.range()) {
                        missing.extend(chars.chars().filter(|c| !c.is_whitespace()));
                    }
                }
            }
            _ => {}
        }
    }
}

fn missing_warning(missing: &BTreeSet<char>) -> Option<Diagnostic> {
    if missing.is_empty() {
        return None;
    }
    let listed: Vec<String> = missing
        .iter()
        .take(20)
        .map(|c| format!("{c} (U+{:04X})", u32::from(*c)))
        .collect();
    let more = missing.len().saturating_sub(20);
    let mut message = format!(
        "no bundled font has these characters; they are drawn as empty boxes: {}",
        listed.join(", ")
    );
    if more > 0 {
        message.push_str(&format!(" and {more} more"));
    }
    Some(Diagnostic {
        file: None,
        line: None,
        column: None,
        message,
        hints: vec!["see the font coverage in DocuMint's documentation".to_owned()],
    })
}

/// A typst diagnostic as the API shows it: the file, a 1-based line and column, the
/// message, and the hints that make sense outside typst's command line.
fn diagnostic(world: &JobWorld<'_>, diag: &SourceDiagnostic) -> Diagnostic {
    let mut out = Diagnostic {
        file: None,
        line: None,
        column: None,
        message: diag.message.to_string(),
        hints: diag
            .hints
            .iter()
            .filter_map(|h| rewrite_hint(&h.v))
            .collect(),
    };
    if let Some(id) = diag.span.id() {
        out.file = Some(id.vpath().get_without_slash().to_owned());
        if let (Some(range), Some(text)) = (world.range(diag.span), world.text_of(id))
            && let Some((line, column)) =
                Lines::new(text.to_owned()).byte_to_line_column(range.start)
        {
            out.line = Some(line + 1);
            out.column = Some(column + 1);
        }
    }
    out
}

/// typst writes some hints for its command line; they mean nothing to an API user.
fn rewrite_hint(hint: &str) -> Option<String> {
    if hint.contains("--root") {
        Some("a template can read only /data.json and /options.json".to_owned())
    } else if hint.contains("`--") {
        None
    } else {
        Some(hint.to_owned())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn command_line_hints_are_rewritten_or_dropped() {
        assert_eq!(
            rewrite_hint("you can adjust the project root with the `--root` argument").unwrap(),
            "a template can read only /data.json and /options.json"
        );
        assert_eq!(rewrite_hint("try `--font-path`"), None);
        assert_eq!(
            rewrite_hint("maybe a show rule matches its own output").unwrap(),
            "maybe a show rule matches its own output"
        );
    }

    #[test]
    fn dates_are_strict() {
        assert!(parse_date("2026-12-01").is_some());
        assert!(parse_date("2026-13-01").is_none());
        assert!(parse_date("yesterday").is_none());
    }
}
