//! The binary's contract with its callers: a job on standard input, one header line and
//! the PDF on standard output, exit 0 whether or not the template compiled.

#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use documint_render::Header;

fn run(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_documint-render"))
        .args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn split(out: &[u8]) -> (Header, &[u8]) {
    let newline = out.iter().position(|b| *b == b'\n').unwrap();
    (
        serde_json::from_slice(&out[..newline]).unwrap(),
        &out[newline + 1..],
    )
}

#[test]
fn a_job_becomes_a_header_and_a_pdf() {
    let job =
        br##"{"source": "#let d = json(\"/data.json\")\n= #d.title", "data": {"title": "Hello"},
                   "ident": "t", "date": "2026-12-01"}"##;
    let out = run(&["--memory-mib", "512", "--cpu-secs", "10"], job);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (header, pdf) = split(&out.stdout);
    assert_eq!(header.status, "ok");
    assert_eq!(header.pages, 1);
    assert_eq!(header.pdf_len as usize, pdf.len());
    assert!(pdf.starts_with(b"%PDF-"));
    assert!(header.peak_rss_kib > 0);
}

#[test]
fn a_template_error_is_a_result_not_a_failure() {
    let out = run(
        &[],
        br##"{"source": "#let x = (1", "data": {}, "ident": "t"}"##,
    );
    assert!(out.status.success());
    let (header, pdf) = split(&out.stdout);
    assert_eq!(header.status, "template_error");
    assert!(pdf.is_empty());
    let e = &header.errors[0];
    assert_eq!((e.file.as_deref(), e.line), (Some("main.typ"), Some(1)));
}

#[test]
fn bad_input_and_bad_arguments_are_told_apart() {
    let out = run(&[], b"not json");
    assert!(out.status.success());
    let (header, _) = split(&out.stdout);
    assert_eq!(header.status, "invalid_job");

    let out = run(&["--memory-mib", "lots"], b"{}");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());

    let out = run(
        &[],
        br##"{"source": "x", "data": {}, "ident": "t", "standard": "a-9z"}"##,
    );
    let (header, _) = split(&out.stdout);
    assert_eq!(header.status, "invalid_job");
    assert!(header.message.unwrap().contains("a-9z"));
}
