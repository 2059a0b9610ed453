//! The sandboxed renderer on its own: the real `documint-render` binary, driven the way the
//! worker and the web tier drive it. Covers the cases of real-world reports: file and
//! package access refused, a compiler-aborting template contained, expensive loops stopped,
//! huge integers refused, long receipts paginated right, markup in data kept as text.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Pdf, builtin_source, limits, renderer, squeeze};
use documint::render::{RenderError, RenderJob, Rendered};
use serde_json::{Value, json};

fn job<'a>(source: &'a str, data: &'a Value, options: &'a Value) -> RenderJob<'a> {
    RenderJob {
        source,
        data,
        options,
        title: None,
        author: None,
        standard: None,
        date: Some("2026-12-01".to_owned()),
        ident: "test-document".to_owned(),
        max_pages: 500,
    }
}

async fn render(source: &str, data: Value) -> Result<Rendered, RenderError> {
    let options = json!({});
    renderer(limits())
        .render(&job(source, &data, &options))
        .await
}

/// The template error's first diagnostic: (file, line, column, message).
fn template_error(result: Result<Rendered, RenderError>) -> (String, usize, usize, String) {
    match result {
        Err(RenderError::Template { code, errors, .. }) => {
            assert_eq!(code, "template_error");
            let e = &errors[0];
            (
                e.file.clone().unwrap_or_default(),
                e.line.unwrap(),
                e.column.unwrap(),
                e.message.clone(),
            )
        }
        other => panic!("expected a template error, got {other:?}"),
    }
}

fn invoice_data() -> Value {
    let mut data = documint::builtin::invoice_sample();
    data["customer"]["name"] = json!("Zoë Παπαδοπούλου-Иванова");
    data
}

#[tokio::test]
async fn the_invoice_renders_with_its_data_and_the_same_input_gives_the_same_bytes() {
    let first = render(builtin_source("invoice"), invoice_data())
        .await
        .unwrap();
    let pdf = Pdf::parse(&first.pdf);
    assert_eq!(pdf.pages.len(), 1);
    assert_eq!(first.pages, 1);
    let text = pdf.squeezed();
    // Latin, Greek and Cyrillic come out as text (the bundled fonts cover them).
    assert!(
        text.contains(&squeeze("Zoë Παπαδοπούλου-Иванова")),
        "{text}"
    );
    // 1 × 49.00 + 3 × 9.90 = 78.70
    assert!(text.contains("78.70EUR"), "{text}");
    assert!(text.contains("Page1of1"), "{text}");
    assert!(first.warnings.is_empty(), "{:?}", first.warnings);

    let second = render(builtin_source("invoice"), invoice_data())
        .await
        .unwrap();
    assert_eq!(first.pdf, second.pdf, "same input, different bytes");

    let mut other = invoice_data();
    other["number"] = json!("2026-0002");
    let third = render(builtin_source("invoice"), other).await.unwrap();
    assert_ne!(first.pdf, third.pdf);
}

#[tokio::test]
async fn template_errors_carry_file_line_column_and_hints() {
    let (file, line, column, message) =
        template_error(render("Hello\n\n#let x = 1 + \"a\"\n", json!({})).await);
    assert_eq!((file.as_str(), line, column), ("main.typ", 3, 10));
    assert!(
        message.contains("cannot add integer and string"),
        "{message}"
    );

    let (_, line, column, message) =
        template_error(render("#let d = json(\"/data.json\")\n#d.name\n", json!({})).await);
    assert_eq!((line, column), (2, 4), "{message}");
    assert!(message.contains("does not contain key"), "{message}");

    let (_, line, _, message) = template_error(render("= Title\n#f(1, 2\n", json!({})).await);
    assert_eq!(line, 2, "{message}");

    // typst's command-line hint about `--root` is rewritten for API users.
    match render("#read(\"../../secret.txt\")", json!({})).await {
        Err(RenderError::Template { errors, .. }) => {
            let hints = errors[0].hints.join(" | ");
            assert!(!hints.contains("--root"), "{hints}");
            assert!(hints.contains("/data.json"), "{hints}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn case_1_nothing_outside_the_job_can_be_read() {
    let sources = [
        "Intro\n#read(\"/etc/passwd\")",
        "Intro\n#image(\"../../etc/hostname\")",
        "Intro\n#import \"@preview/cetz:0.3.0\": canvas",
    ];
    for source in sources {
        let started = Instant::now();
        let (file, line, column, message) = template_error(render(source, json!({})).await);
        assert_eq!(
            (file.as_str(), line),
            ("main.typ", 2),
            "{source}: {message}"
        );
        assert!(column >= 1, "{source}");
        assert!(started.elapsed() < Duration::from_secs(30));
    }
    // The host's file really does exist: the refusal is the sandbox, not a missing file.
    assert!(std::path::Path::new("/etc/passwd").exists());
}

#[tokio::test]
async fn case_2_a_recursive_show_rule_crashes_only_its_own_process() {
    let source = "#let f(body) = { show: f; body }\n#show: f\nHello\n";
    let started = Instant::now();
    match render(source, json!({})).await {
        Err(RenderError::Crashed(why)) => assert!(why.contains("stack overflow"), "{why}"),
        other => panic!("expected render_crashed, got {other:?}"),
    }
    assert!(started.elapsed() < limits().wall);
    // The next render is unaffected.
    render(builtin_source("invoice"), invoice_data())
        .await
        .unwrap();
}

#[tokio::test]
async fn case_3_an_expensive_loop_is_stopped_and_an_endless_one_is_refused_at_once() {
    let mut short = limits();
    short.wall = Duration::from_secs(2);
    short.cpu_secs = 2;
    let source = "#let s = 0\n#for i in range(30000000) { s += i }\n#s";
    let (data, options) = (json!({}), json!({}));
    let started = Instant::now();
    let result = renderer(short).render(&job(source, &data, &options)).await;
    assert!(matches!(result, Err(RenderError::Timeout)), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let (_, line, column, message) =
        template_error(render("Before\n#while true { }\n", json!({})).await);
    assert_eq!((line, column), (2, 8), "{message}");
    assert!(message.contains("condition is always true"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn the_memory_cap_fails_the_render_with_resource_limit() {
    let mut capped = limits();
    capped.memory_mib = 256;
    let source = "#let a = range(200000000)\n#a.len()";
    let (data, options) = (json!({}), json!({}));
    let result = renderer(capped).render(&job(source, &data, &options)).await;
    assert!(
        matches!(result, Err(RenderError::ResourceLimit)),
        "{result:?}"
    );
}

#[tokio::test]
async fn case_5_a_thousand_line_receipt_repeats_its_header_and_totals_once() {
    let flags: Vec<Value> = (0..1000)
        .map(|i| json!({ "key": format!("flag-{i:04}"), "evaluations": 1000 + i }))
        .collect();
    let data = json!({
        "account": "acme",
        "period": { "from": "2026-11-01", "to": "2026-11-30" },
        "environments": [{ "name": "production", "flags": flags }],
    });
    let rendered = render(builtin_source("usage-receipt"), data).await.unwrap();
    let pdf = Pdf::parse(&rendered.pdf);
    let n = pdf.pages.len();
    assert!((15..=40).contains(&n), "{n} pages");
    for (i, page) in pdf.pages.iter().enumerate() {
        let text = squeeze(page);
        assert!(
            text.contains("EnvironmentFlagEvaluations"),
            "no header row on page {}",
            i + 1
        );
        assert!(
            text.contains(&format!("Page{}of{n}", i + 1)),
            "page {} has no 'Page {} of {n}': {text}",
            i + 1,
            i + 1
        );
        let totals = text.matches("Grandtotal").count();
        assert_eq!(
            totals,
            usize::from(i + 1 == n),
            "grand total on page {}",
            i + 1
        );
    }
    // 1000 × 1000 + (0 + … + 999) = 1,499,500
    assert!(squeeze(pdf.pages.last().unwrap()).contains("Grandtotal:1,499,500"));
    assert!(pdf.squeezed().contains("flag-0999"));
}

#[tokio::test]
async fn case_6_markup_in_data_is_text() {
    let name = "*Bold* _x_ #set page(fill: red) $x^2$ <lbl> @ref \\ [1]";
    let mut data = documint::builtin::invoice_sample();
    data["customer"]["name"] = json!(name);
    let rendered = render(builtin_source("invoice"), data).await.unwrap();
    let text = Pdf::parse(&rendered.pdf).squeezed();
    assert!(text.contains(&squeeze(name)), "{text}");
}

#[tokio::test]
async fn characters_no_font_covers_are_a_warning_not_a_silent_box() {
    let mut data = documint::builtin::invoice_sample();
    data["customer"]["name"] = json!("山田太郎 😀");
    let rendered = render(builtin_source("invoice"), data).await.unwrap();
    let warning = rendered
        .warnings
        .iter()
        .find(|w| w.message.contains("no bundled font"))
        .expect("a missing-glyph warning");
    for c in ["U+5C71", "U+7530", "U+592A", "U+90CE", "U+1F600"] {
        assert!(warning.message.contains(c), "{}", warning.message);
    }
}

#[tokio::test]
async fn pdf_a_uses_the_document_date_and_stays_deterministic() {
    let (data, options) = (invoice_data(), json!({}));
    let mut a = job(builtin_source("invoice"), &data, &options);
    a.standard = Some("a-2b");
    let renderer = renderer(limits());
    let first = renderer.render(&a).await.unwrap();
    let second = renderer.render(&a).await.unwrap();
    assert_eq!(first.pdf, second.pdf);
    let raw = String::from_utf8_lossy(&first.pdf);
    assert!(raw.contains("pdfaid:part"), "no PDF/A identification");
    assert!(
        raw.contains("2026-12-01"),
        "the document date is not the PDF's date"
    );

    // Without a date, PDF/A cannot be made; the error says so instead of using the clock.
    a.date = None;
    assert!(matches!(
        renderer.render(&a).await,
        Err(RenderError::Template { .. })
    ));
}

#[tokio::test]
async fn too_many_pages_is_refused() {
    let (data, options) = (json!({}), json!({}));
    let source = "#for i in range(5) [Page #i #pagebreak()]";
    let mut j = job(source, &data, &options);
    j.max_pages = 3;
    match renderer(limits()).render(&j).await {
        Err(RenderError::Template { code, .. }) => assert_eq!(code, "too_many_pages"),
        other => panic!("{other:?}"),
    }
}
