//! Drives a Compose project of the stack from tests: a unique project name, its own secrets
//! and free loopback ports, so runs never clash with `make up` or with each other; torn down
//! (containers, networks, volumes) on drop, also when the test fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

pub mod docs;
pub mod matrix;
pub mod probe;

pub const PRODUCTS: [&str; 4] = ["documint", "cronping", "flagbit", "webhookvault"];

/// The checkout the tests run from. Read at run time (cargo and nextest set the variable for
/// test processes) rather than baked in at compile time: a cargo target directory shared by
/// two checkouts can hand one of them a library built from the other.
pub fn repo_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

pub struct Stack {
    pub project: String,
    /// The project's generated secrets (database passwords).
    pub secrets: PathBuf,
}

impl Stack {
    /// Runs `scripts/stack.sh up` (without the build steps: `make test` builds the images
    /// first) under a fresh project name.
    pub fn up() -> anyhow::Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let project = format!("refdeploy-test-{}", &id[..12]);
        let secrets = std::env::temp_dir().join(&project);
        let stack = Self { project, secrets };

        let output = stack
            .script(&["up"])
            .output()
            .context("running scripts/stack.sh up")?;
        if !output.status.success() {
            bail!(
                "stack.sh up failed:\n{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(stack)
    }

    fn script(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(repo_root().join("scripts/stack.sh"));
        cmd.args(args)
            .env("COMPOSE_PROJECT_NAME", &self.project)
            .env("SECRETS_DIR", &self.secrets)
            .env("STACK_SKIP_BUILD", "1")
            // The test stack is the whole of it: with FlagBit → DocuMint receipts.
            .env("RECEIPTS", "1");
        for product in PRODUCTS {
            cmd.env(format!("{}_PORT", product.to_uppercase()), "");
        }
        cmd
    }

    /// What a shell running the docs' commands against this stack needs in its environment.
    pub fn docs_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("COMPOSE_PROJECT_NAME".to_owned(), self.project.clone()),
            ("SECRETS_DIR".to_owned(), self.secrets.display().to_string()),
            ("STACK_SKIP_BUILD".to_owned(), "1".to_owned()),
            ("RECEIPTS".to_owned(), "1".to_owned()),
            (
                "CARGO_TARGET_DIR".to_owned(),
                target_dir().display().to_string(),
            ),
        ];
        for product in PRODUCTS {
            env.push((format!("{}_PORT", product.to_uppercase()), String::new()));
        }
        env
    }

    /// The docs are written for `make up`: its ports, `.secrets/`, the project `refdeploy`.
    /// These rewrite them to this stack's.
    pub fn docs_rewrites(&self) -> anyhow::Result<docs::Rewrites> {
        let secrets = self.secrets.display().to_string();
        let mut rewrites = vec![
            ("refdeploy_".to_owned(), format!("{}_", self.project)),
            ("$PWD/.secrets/".to_owned(), format!("{secrets}/")),
            (".secrets/".to_owned(), format!("{secrets}/")),
        ];
        for (product, port) in PRODUCTS.iter().zip(["8081", "8082", "8083", "8084"]) {
            let url = self.web_url(product)?;
            let addr = url.trim_start_matches("http://").to_owned();
            rewrites.push((format!("127.0.0.1:{port}"), addr));
        }
        Ok(rewrites)
    }

    /// `docker compose ARGS` for this project; stdout on success.
    pub fn compose(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["compose"];
        all.extend_from_slice(args);
        let output = self.script(&all).output().context("running compose")?;
        if !output.status.success() {
            bail!(
                "compose {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// The id of a service's (long-running) container.
    pub fn container(&self, service: &str) -> anyhow::Result<String> {
        let id = self.compose(&["ps", "-q", service])?;
        id.lines()
            .next()
            .map(str::to_owned)
            .with_context(|| format!("no container for {service}"))
    }

    /// Base URL of a product's web tier on its published loopback port.
    pub fn web_url(&self, product: &str) -> anyhow::Result<String> {
        let mapping = self.compose(&["port", &format!("{product}-web"), "8080"])?;
        let addr = mapping.lines().next().context("web port not published")?;
        Ok(format!("http://{addr}"))
    }
}

/// The cargo target directory these tests were built in (the release binaries the stack's
/// images hold are beside them).
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // target/<profile>/deps/<test binary>
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| repo_root().join("target"))
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self
            .script(&["compose", "down", "--volumes", "--remove-orphans"])
            .output();
        let _ = std::fs::remove_dir_all(&self.secrets);
    }
}

/// `docker inspect --format FORMAT TARGET`.
pub fn inspect(target: &str, format: &str) -> anyhow::Result<String> {
    let output = Command::new("docker")
        .args(["inspect", "--format", format, target])
        .output()?;
    if !output.status.success() {
        bail!(
            "docker inspect {target}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Polls `probe` until it returns `Some`, or fails after `limit` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {}s waiting for {what}", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
