//! The whole stack as `make up` runs it, under a throwaway project. One stack serves every
//! check, because each stack takes ten of the engine's address pools: every product ready,
//! databases unpublished on one internal network, the isolation matrix, the audit, and
//! readiness that follows the database.

use std::time::Duration;

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
    assert_eq!(report.containers.len(), 12, "{}", report.table());

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
