//! Running the probe image on a chosen network, through testcontainers.

use std::path::Path;

use anyhow::{Context as _, bail};
use serde_json::Value;
use testcontainers::core::{AccessMode, Mount};
use testcontainers::runners::AsyncRunner as _;
use testcontainers::{ContainerAsync, GenericImage, ImageExt as _};

pub const IMAGE: &str = "refdeploy/probe";
pub const TEST_LABEL: &str = "refdeploy.test";

/// One check's result: `ok`, `unresolved`, `unreachable`, `auth_failed`, `denied` or `error`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Outcome {
    pub id: String,
    pub outcome: String,
    pub detail: String,
}

fn image() -> GenericImage {
    GenericImage::new(IMAGE, "latest")
}

/// Runs `checks` from `network`, with the stack's secrets mounted read-only at /secrets.
pub async fn run(network: &str, secrets: &Path, checks: &Value) -> anyhow::Result<Vec<Outcome>> {
    let mount = Mount::bind_mount(secrets.display().to_string(), "/secrets")
        .with_access_mode(AccessMode::ReadOnly);
    let container = image()
        .with_cmd(["run".to_owned(), checks.to_string()])
        .with_network(network)
        .with_mount(mount)
        // Root, to read every product's secret files (the test stack's secrets directory is
        // private to root on the host); a test tool, never part of the stack.
        .with_user("0")
        .with_label(TEST_LABEL, "probe")
        .start()
        .await
        .with_context(|| format!("starting a probe on {network}"))?;

    // The probe exits once every check has an answer; each check is bounded by seconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let exit = loop {
        if let Some(code) = container.exit_code().await? {
            break code;
        }
        if std::time::Instant::now() > deadline {
            bail!("probe on {network} still running after 60 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };

    let stdout = container.stdout_to_vec().await?;
    if exit != 0 {
        let stderr = container.stderr_to_vec().await?;
        bail!(
            "probe on {network} exited {exit}: {}",
            String::from_utf8_lossy(&stderr)
        );
    }
    serde_json::from_slice(&stdout)
        .with_context(|| format!("probe output: {}", String::from_utf8_lossy(&stdout)))
}

/// A probe serving HTTP on port 8000 of `network`, which testcontainers creates as a plain
/// bridge when missing and removes with the container.
pub async fn serve(network: &str) -> anyhow::Result<ContainerAsync<GenericImage>> {
    image()
        .with_cmd(["serve", "8000"])
        .with_network(network)
        .with_user("10001:10001")
        .with_label(TEST_LABEL, "server")
        .start()
        .await
        .with_context(|| format!("starting a probe server on {network}"))
}
