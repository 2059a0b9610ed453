//! The API and the worker together, against a real PostgreSQL and the real renderer.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{API_KEY, Pdf, TestApp, squeeze};
use reqwest::Method;
use serde_json::{Value, json};

fn invoice_request(customer: &str) -> Value {
    let mut data = documint::builtin::invoice_sample();
    data["customer"]["name"] = json!(customer);
    json!({
        "template": "invoice",
        "data": data,
        "file_name": "Rechnung März",
        "metadata": {"order": 7},
    })
}

async fn create(app: &TestApp, body: Value) -> Value {
    let (status, doc) = app.api(Method::POST, "/documents", Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
    assert_eq!(doc["status"], "queued");
    doc
}

#[tokio::test]
async fn a_document_is_queued_rendered_and_served_as_pdf() {
    let app = TestApp::spawn().await;
    let doc = create(&app, invoice_request("Ada Lovelace")).await;
    let id = doc["id"].as_str().unwrap();

    let (status, _) = app
        .send(app.request(Method::GET, &format!("/documents/{id}/pdf")))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "not ready yet");

    app.work().await;
    let doc = app.document(id).await;
    assert_eq!(doc["status"], "done", "{doc}");
    assert_eq!(doc["pages"], 1);
    assert_eq!(doc["template"]["name"], "invoice");
    assert_eq!(doc["template"]["version"], 1);

    let resp = app
        .request(Method::GET, &format!("/documents/{id}/pdf"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let headers = resp.headers().clone();
    assert_eq!(headers["content-type"], "application/pdf");
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.contains("filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf"),
        "{disposition}"
    );
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let pdf = resp.bytes().await.unwrap();
    assert_eq!(doc["size"], pdf.len());
    assert_eq!(etag, format!("\"{}\"", doc["sha256"].as_str().unwrap()));
    assert!(Pdf::parse(&pdf).squeezed().contains("AdaLovelace"));

    let resp = app
        .request(Method::GET, &format!("/documents/{id}/pdf"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 304);

    // The same input as another document renders to the same bytes.
    let again = create(&app, invoice_request("Ada Lovelace")).await;
    app.work().await;
    let again = app.document(again["id"].as_str().unwrap()).await;
    assert_eq!(again["sha256"], doc["sha256"]);
}

#[tokio::test]
async fn the_api_key_is_required() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .send(app.client.get(format!("{}/api/v1/documents", app.base)))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = app
        .send(
            app.client
                .get(format!("{}/api/v1/templates", app.base))
                .header("x-api-key", format!("{API_KEY}x")),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn templates_are_compiled_on_save_versioned_and_errors_have_positions() {
    let app = TestApp::spawn().await;
    let source = "#let d = json(\"/data.json\")\nHello #d.name!";
    let (status, body) = app
        .api(
            Method::POST,
            "/templates",
            Some(json!({
                "name": "greeting",
                "source": "Hi\n#let x = 1 + \"a\"",
                "sample_data": {},
            })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "template_error");
    let detail = &body["error"]["details"][0];
    assert_eq!(
        (detail["line"].as_u64(), detail["column"].as_u64()),
        (Some(2), Some(10)),
        "{body}"
    );
    assert_eq!(detail["file"], "main.typ");

    // Case 1 at the API: a template reading a host file is refused with its position.
    let (status, body) = app
        .api(
            Method::POST,
            "/templates",
            Some(json!({ "name": "leak", "source": "Dear customer,\n#read(\"/etc/passwd\")" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let detail = &body["error"]["details"][0];
    assert_eq!(
        (detail["line"].as_u64(), detail["column"].as_u64()),
        (Some(2), Some(7)),
        "{body}"
    );
    assert!(!body.to_string().contains("root:"), "{body}");

    // The sample data is what it is checked against.
    let (status, body) = app
        .api(
            Method::POST,
            "/templates",
            Some(json!({ "name": "greeting", "source": source, "sample_data": {"other": 1} })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("name")
    );

    let (status, t) = app
        .api(
            Method::POST,
            "/templates",
            Some(
                json!({ "name": "greeting", "source": source, "sample_data": {"name": "x"},
                         "options": {"paper": "a5", "title": "Greeting"} }),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    assert_eq!(t["version"], 1);
    let id = t["id"].as_str().unwrap().to_owned();

    let doc = create(
        &app,
        json!({ "template": "greeting", "data": {"name": "first"} }),
    )
    .await;

    let (status, t2) = app
        .api(
            Method::PUT,
            &format!("/templates/{id}"),
            Some(
                json!({ "name": "greeting", "source": "#let d = json(\"/data.json\")\nBye #d.name!",
                         "sample_data": {"name": "x"} }),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{t2}");
    assert_eq!(t2["version"], 2);
    let doc2 = create(&app, json!({ "template": id, "data": {"name": "second"} })).await;

    app.work().await;
    let first = app.document(doc["id"].as_str().unwrap()).await;
    assert_eq!(first["template"]["version"], 1);
    let text = Pdf::parse(&app.pdf(doc["id"].as_str().unwrap()).await).squeezed();
    assert!(text.contains("Hellofirst!"), "{text}");
    let text = Pdf::parse(&app.pdf(doc2["id"].as_str().unwrap()).await).squeezed();
    assert!(text.contains("Byesecond!"), "{text}");

    let (status, list) = app.api(Method::GET, "/templates", None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["greeting", "invoice", "usage-receipt"]);

    let (status, _) = app
        .api(
            Method::DELETE,
            &format!("/templates/{}", documint::builtin::INVOICE.id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .api(Method::DELETE, &format!("/templates/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app
        .api(
            Method::POST,
            "/documents",
            Some(json!({ "template": "greeting", "data": {} })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "template");
}

#[tokio::test]
async fn idempotency_keys_return_the_same_document_or_409() {
    let app = TestApp::spawn().await;
    let send = |body: Value| {
        app.send(
            app.request(Method::POST, "/documents")
                .header("idempotency-key", "order-42")
                .json(&body),
        )
    };
    let (status, first) = send(invoice_request("A")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, second) = send(invoice_request("A")).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(first["id"], second["id"]);
    let (status, body) = send(invoice_request("B")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(app.count("SELECT count(*) FROM documents").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 1);
}

#[tokio::test]
async fn case_4_integers_beyond_2_pow_53_are_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let body = r#"{"template": "invoice", "data": {"amount": 18446744073709551615}}"#;
    let (status, resp) = app
        .send(
            app.request(Method::POST, "/documents")
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{resp}");
    assert_eq!(resp["error"]["field"], "amount");
    assert!(!resp.to_string().contains("1.8446744073709552e19"));
    assert_eq!(app.count("SELECT count(*) FROM documents").await, 0);
}

#[tokio::test]
async fn oversized_input_gets_413() {
    let app = TestApp::spawn().await;
    let big = "x".repeat(documint::api::MAX_DOCUMENT_BODY + 1);
    let (status, body) = app
        .api(
            Method::POST,
            "/documents",
            Some(json!({ "template": "invoice", "data": {"x": big} })),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

    let data = "x".repeat(documint::api::MAX_DATA + 1);
    let (status, body) = app
        .api(
            Method::POST,
            "/documents",
            Some(json!({ "template": "invoice", "data": {"x": data} })),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["field"], "data");

    let source = "x".repeat(documint::api::MAX_SOURCE + 1);
    let (status, body) = app
        .api(
            Method::POST,
            "/templates",
            Some(json!({ "name": "big", "source": source })),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
}

#[tokio::test]
async fn template_failures_are_final_and_the_worker_keeps_going() {
    let app = TestApp::spawn().await;
    // Stored as a template that compiles with its sample data, then fed data that breaks it.
    let (status, t) = app
        .api(
            Method::POST,
            "/templates",
            Some(json!({ "name": "strict", "sample_data": {"n": 1},
                         "source": concat!(
                             "#let d = json(\"/data.json\")\n",
                             "#let f(body) = { show: f; body }\n",
                             "#if d.n == 2 { show: f; [x] }\n",
                             "#(d.n + 1)",
                         ) })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    let bad = create(&app, json!({ "template": "strict", "data": {"n": "text"} })).await;
    let crash = create(&app, json!({ "template": "strict", "data": {"n": 2} })).await;
    let good = create(&app, json!({ "template": "strict", "data": {"n": 41} })).await;
    app.work().await;

    let bad = app.document(bad["id"].as_str().unwrap()).await;
    assert_eq!(bad["status"], "failed", "{bad}");
    assert_eq!(bad["error"]["code"], "template_error");
    assert_eq!(bad["error"]["details"][0]["line"], 4, "{bad}");
    assert_eq!(bad["attempts"], 1, "template errors are not retried");

    let crash = app.document(crash["id"].as_str().unwrap()).await;
    assert_eq!(crash["status"], "failed", "{crash}");
    assert_eq!(crash["error"]["code"], "render_crashed");

    let good = app.document(good["id"].as_str().unwrap()).await;
    assert_eq!(good["status"], "done", "{good}");
    assert!(
        Pdf::parse(&app.pdf(good["id"].as_str().unwrap()).await)
            .squeezed()
            .contains("42")
    );
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 0);
}

#[tokio::test]
async fn a_missing_renderer_is_retried_then_fails_as_unavailable() {
    let app = TestApp::spawn_with(|c| {
        c.render.binary = "/nonexistent/documint-render".into();
        c.max_attempts = 2;
    })
    .await;
    let doc = create(&app, invoice_request("A")).await;
    let id = doc["id"].as_str().unwrap();
    app.work().await;
    let d = app.document(id).await;
    assert_eq!(d["status"], "queued", "{d}");
    assert_eq!(d["error"]["code"], "unavailable");
    app.advance(Duration::from_secs(600));
    app.work().await;
    let d = app.document(id).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["attempts"], 2);
}

#[tokio::test]
async fn a_worker_killed_mid_render_leaves_a_job_that_completes_after_restart() {
    let app = TestApp::spawn().await;
    // Slow enough in a debug build to be caught mid-render, and it does finish.
    let (status, t) = app
        .api(
            Method::POST,
            "/templates",
            Some(json!({
                "name": "slow",
                "source": concat!(
                    "#let d = json(\"/data.json\")\n",
                    "#let s = 0\n",
                    "#for i in range(d.n) { s += i }\n",
                    "#s",
                ),
                "sample_data": {"n": 1},
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    let doc = create(&app, json!({ "template": "slow", "data": {"n": 3000000} })).await;
    let id = doc["id"].as_str().unwrap();

    let shutdown = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(documint::worker::run(
        app.config.clone(),
        app.pool.clone(),
        shutdown,
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while app.document(id).await["status"] != "rendering" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never started rendering"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Killed: the task and its child process die, the job stays leased.
    worker.abort();
    let _ = worker.await;
    assert_eq!(app.document(id).await["status"], "rendering");
    app.work().await;
    assert_eq!(
        app.document(id).await["status"],
        "rendering",
        "leased: nobody takes it yet"
    );

    app.advance(app.config.render.wall + Duration::from_secs(31));
    app.work().await;
    let d = app.document(id).await;
    assert_eq!(d["status"], "done", "{d}");
    assert_eq!(d["attempts"], 2);
    let text = Pdf::parse(&app.pdf(id).await).squeezed();
    assert!(text.contains("4499998500000"), "{text}");
}

#[tokio::test]
async fn documents_list_newest_first_with_a_cursor_and_can_be_deleted() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let doc = create(&app, invoice_request(&format!("c{i}"))).await;
        ids.push(doc["id"].as_str().unwrap().to_owned());
    }
    let (status, page) = app.api(Method::GET, "/documents?limit=2", None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let got: Vec<&str> = page["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[4].as_str(), ids[3].as_str()]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, page) = app
        .api(
            Method::GET,
            &format!("/documents?limit=2&cursor={cursor}"),
            None,
        )
        .await;
    let got: Vec<&str> = page["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str()]);
    let (status, _) = app.api(Method::GET, "/documents?limit=1000", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, _) = app
        .api(Method::DELETE, &format!("/documents/{}", ids[0]), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app
        .api(Method::GET, &format!("/documents/{}", ids[0]), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 4);
}

#[tokio::test]
async fn the_completion_webhook_is_posted() {
    use std::sync::{Arc, Mutex};

    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let sink = received.clone();
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let (sink, tx) = (sink.clone(), tx.clone());
            async move {
                sink.lock().unwrap().push(body);
                let _ = tx.send(());
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await });

    // The receiver is on loopback, which webhooks may reach only when allowed.
    let app = TestApp::spawn_with(|c| c.webhook_allow = vec!["127.0.0.0/8".parse().unwrap()]).await;
    let mut body = invoice_request("Hooked");
    body["webhook_url"] = json!(url);
    let doc = create(&app, body).await;
    let id = doc["id"].as_str().unwrap();
    app.work().await;
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap();
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["event"], "document.done");
    assert_eq!(got[0]["document"]["id"], id);
    // The outcome is recorded right after the answer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let d = app.document(id).await;
        if d["webhook"]["status"] == "delivered" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{d}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(squeeze(&Pdf::parse(&app.pdf(id).await).text()).contains("Hooked"));
}

#[tokio::test]
async fn a_webhook_to_an_internal_address_is_refused_unless_allowed() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    // A receiver on loopback that counts what reaches it.
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { StatusCode::NO_CONTENT }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, hook).await });

    let app = TestApp::spawn().await;
    for url in [
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://localhost:{port}/hook"),
    ] {
        let mut body = invoice_request("Internal");
        body["webhook_url"] = json!(url);
        let doc = create(&app, body).await;
        let id = doc["id"].as_str().unwrap().to_owned();
        app.work().await;

        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let status = loop {
            let d = app.document(&id).await;
            if let Some(status) = d["webhook"]["status"].as_str() {
                break status.to_owned();
            }
            assert!(tokio::time::Instant::now() < deadline, "{d}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(status.starts_with("failed: refused"), "{url}: {status}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "an internal address was called"
    );
}
