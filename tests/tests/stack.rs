//! The whole stack as `make up` runs it, under a throwaway project. One stack serves every
//! check, because each stack takes ten of the engine's address pools: every product ready,
//! databases unpublished on one internal network, the isolation matrix, the audit, and
//! readiness that follows the database.

use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use reqwest::StatusCode;
use stack_tests::{PRODUCTS, Stack, eventually, inspect};

async fn readyz(client: &reqwest::Client, base: &str) -> Option<(StatusCode, serde_json::Value)> {
    let response = client.get(format!("{base}/readyz")).send().await.ok()?;
    let status = response.status();
    Some((status, response.json().await.ok()?))
}

#[tokio::test(flavor = "multi_thread")]
async fn stack_is_isolated_passes_the_audit_and_readiness_follows_the_database()
-> anyhow::Result<()> {
    let stack = Stack::up()?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;

    for product in PRODUCTS {
        let base = stack.web_url(product)?;
        let (status, body) = readyz(&client, &base).await.expect("readyz answers");
        assert_eq!(status, StatusCode::OK, "{product} /readyz: {body}");

        let about: serde_json::Value = client.get(&base).send().await?.json().await?;
        assert_eq!(about["service"], product);
    }

    // Every database from every network: only its own internal one, only with credentials.
    let docker = bollard::Docker::connect_with_local_defaults()?;
    let matrix = stack_tests::matrix::check(&stack, &docker).await?;
    println!("{matrix}");

    let report = audit::audit(&docker, &stack.project).await?;
    println!("{}", report.table());
    assert!(report.passed(), "audit of the stack:\n{}", report.table());
    // Twelve product containers and documint-receipts.
    assert_eq!(report.containers.len(), 13, "{}", report.table());

    // The same, read directly: no published port, one network, and that one internal.
    for product in PRODUCTS {
        let db = stack.container(&format!("{product}-db"))?;
        let ports = inspect(&db, "{{ json .HostConfig.PortBindings }}")?;
        assert!(
            ports == "{}" || ports == "null",
            "{product}-db publishes ports: {ports}"
        );
        let networks = inspect(
            &db,
            "{{ range $name, $_ := .NetworkSettings.Networks }}{{ $name }} {{ end }}",
        )?;
        let networks: Vec<&str> = networks.split_whitespace().collect();
        assert_eq!(networks.len(), 1, "{product}-db networks: {networks:?}");
        assert_eq!(
            inspect(networks[0], "{{ .Internal }}")?,
            "true",
            "{product}-db network"
        );
    }

    // The products as their users meet them, through the published ports.
    cronping_check_goes_up_after_a_ping(&stack, &client).await?;
    println!("{}", flagbit_serves_a_real_openfeature_client(&stack)?);
    flagbit_receipt_carries_the_periods_totals(&stack, &client).await?;

    // Every runnable example in docs/, against this stack; the walkthrough last, because it
    // rotates the receipts key.
    let root = stack_tests::repo_root();
    let mut pages: Vec<_> = std::fs::read_dir(root.join("docs"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    pages.sort_by_key(|p| (p.ends_with("walkthrough.md"), p.clone()));
    let rewrites = stack.docs_rewrites()?;
    let env = stack.docs_env();
    let mut problems = String::new();
    for page in &pages {
        problems.push_str(&stack_tests::docs::check_page(
            page, &root, &rewrites, &env,
        )?);
    }
    assert!(problems.is_empty(), "docs/ examples:\n{problems}");

    // Stop one product's database: its web tier stays up and reports itself unready, then
    // ready again once the database is back, without being restarted.
    let base = stack.web_url("cronping")?;
    let web = stack.container("cronping-web")?;
    let started_before = inspect(&web, "{{ .State.StartedAt }}")?;

    stack.compose(&["stop", "cronping-db"])?;
    let body = eventually(
        "cronping /readyz to turn 503",
        Duration::from_secs(60),
        || async {
            readyz(&client, &base)
                .await
                .filter(|(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE)
        },
    )
    .await?
    .1;
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert_eq!(body["error"]["message"], "database unreachable", "{body}");

    // Other products are untouched.
    let (status, _) = readyz(&client, &stack.web_url("flagbit")?)
        .await
        .expect("flagbit answers");
    assert_eq!(status, StatusCode::OK);

    stack.compose(&["start", "cronping-db"])?;
    eventually(
        "cronping /readyz to return to 200",
        Duration::from_secs(90),
        || async {
            readyz(&client, &base)
                .await
                .filter(|(s, _)| *s == StatusCode::OK)
        },
    )
    .await?;

    assert_eq!(
        inspect(&web, "{{ .State.StartedAt }}")?,
        started_before,
        "web tier restarted"
    );
    assert_eq!(inspect(&web, "{{ .RestartCount }}")?, "0");
    Ok(())
}

/// The README's CronPing example: create a check, ping its URL, see it up.
async fn cronping_check_goes_up_after_a_ping(
    stack: &Stack,
    client: &reqwest::Client,
) -> anyhow::Result<()> {
    let base = stack.web_url("cronping")?;
    let key = std::fs::read_to_string(stack.secrets.join("cronping/api_key"))
        .context("reading CronPing's API key")?;
    let created: serde_json::Value = client
        .post(format!("{base}/api/v1/checks"))
        .header("X-Api-Key", key.trim())
        .json(
            &serde_json::json!({ "name": "backup", "schedule": "30 2 * * *",
                                   "tz": "Europe/Berlin", "grace": 1800 }),
        )
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;

    // The ping URL names the configured public address; the test stack's port is its own.
    let ping_url = created["ping_url"].as_str().unwrap_or_default();
    let path = &ping_url[ping_url.find("/ping/").unwrap_or(0)..];
    let pinged = client.get(format!("{base}{path}")).send().await?;
    assert_eq!(pinged.status(), StatusCode::OK);
    assert_eq!(pinged.text().await?, "OK");

    let id = created["id"].as_str().unwrap_or_default();
    let check: serde_json::Value = client
        .get(format!("{base}/api/v1/checks/{id}"))
        .header("X-Api-Key", key.trim())
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(check["status"], "up", "{check}");
    Ok(())
}

/// FlagBit's client suite: PyPI's OpenFeature SDK with its OFREP provider, pinned, against
/// the stack's FlagBit.
fn flagbit_serves_a_real_openfeature_client(stack: &Stack) -> anyhow::Result<String> {
    let root = stack_tests::repo_root();
    let venv = Command::new(root.join("scripts/ofrep-client-venv.sh"))
        .output()
        .context("running scripts/ofrep-client-venv.sh")?;
    assert!(
        venv.status.success(),
        "{}",
        String::from_utf8_lossy(&venv.stderr)
    );
    let python = String::from_utf8_lossy(&venv.stdout).trim().to_owned();

    let key = std::fs::read_to_string(stack.secrets.join("flagbit/admin_key"))
        .context("reading FlagBit's admin key")?;
    let run = Command::new(&python)
        .arg(root.join("services/flagbit/tests/python/ofrep_client.py"))
        .env("FLAGBIT_URL", stack.web_url("flagbit")?)
        .env("FLAGBIT_ADMIN_KEY", key.trim())
        .output()
        .with_context(|| format!("running the OFREP client with {python}"))?;
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    Ok(stdout)
}

/// FlagBit → DocuMint over the receipts network with a service token: a month's counts in,
/// a PDF with their totals out. The counts are written straight into FlagBit's database for
/// a finished month (evaluations made now count for the current one).
async fn flagbit_receipt_carries_the_periods_totals(
    stack: &Stack,
    client: &reqwest::Client,
) -> anyhow::Result<()> {
    let base = stack.web_url("flagbit")?;
    let key = std::fs::read_to_string(stack.secrets.join("flagbit/admin_key"))?;
    let key = key.trim();
    let period = "2026-09";

    for name in ["production", "staging"] {
        client
            .post(format!("{base}/api/v1/environments"))
            .header("X-Api-Key", key)
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await?;
    }
    let seed = "INSERT INTO usage_hourly (environment_id, flag_key, variant, hour, count) \
        SELECT id, 'new-checkout', 'on', '2026-09-14T10:00:00Z'::timestamptz, 123 \
        FROM environments WHERE name = 'production' UNION ALL \
        SELECT id, 'dark-mode', 'off', '2026-09-30T23:00:00Z'::timestamptz, 45 \
        FROM environments WHERE name = 'staging'";
    let db = stack.container("flagbit-db")?;
    let psql = Command::new("docker")
        .args([
            "exec",
            &db,
            "psql",
            "-U",
            "postgres",
            "-d",
            "flagbit",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .args(["-c", seed])
        .output()?;
    assert!(
        psql.status.success(),
        "{}",
        String::from_utf8_lossy(&psql.stderr)
    );

    let queued = client
        .post(format!("{base}/api/v1/receipts"))
        .header("X-Api-Key", key)
        .json(&serde_json::json!({ "period": period }))
        .send()
        .await?;
    assert_eq!(queued.status(), StatusCode::ACCEPTED);
    let id = queued.json::<serde_json::Value>().await?["id"].clone();

    let receipt = eventually(
        "the receipt to be rendered",
        Duration::from_secs(60),
        || async {
            let receipt: serde_json::Value = client
                .get(format!("{base}/api/v1/receipts/{id}"))
                .header("X-Api-Key", key)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (receipt["status"] == "done").then_some(receipt)
        },
    )
    .await?;
    assert_eq!(receipt["total_evaluations"], 168, "{receipt}");

    let pdf = client
        .get(format!("{base}/api/v1/receipts/{id}/pdf"))
        .header("X-Api-Key", key)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    // The host reaches the receipts network through its gateway address (Docker 20.10 keeps
    // one even on an internal network), so the route must refuse it by address: only
    // flagbit-worker may connect, whatever the token.
    let receipts = stack.container("documint-receipts")?;
    let format = format!(
        "{{{{ (index .NetworkSettings.Networks \"{}_receipts\").IPAddress }}}}",
        stack.project
    );
    let address = inspect(&receipts, &format)?;
    let from_host = client
        .post(format!("http://{address}:8090/internal/v1/receipts"))
        .header("content-type", "application/json")
        .body(r#"{"reference": "host", "data": {}}"#)
        .send()
        .await;
    if let Ok(answer) = from_host {
        assert_eq!(
            answer.status(),
            StatusCode::FORBIDDEN,
            "the host called the receipt route"
        );
    }

    let document = lopdf::Document::load_mem(&pdf)?;
    let pages: Vec<u32> = document.get_pages().keys().copied().collect();
    let text = document.extract_text(&pages)?;
    for expected in [
        "production",
        "staging",
        "new-checkout",
        "dark-mode",
        "123",
        "45",
        "168",
    ] {
        assert!(
            text.contains(expected),
            "receipt text lacks {expected:?}:\n{text}"
        );
    }
    Ok(())
}
