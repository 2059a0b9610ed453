//! The stack audit: every container of a Compose project, inspected through the Docker API
//! and held to this deployment's policy. Databases publish nothing and sit on exactly one,
//! internal, network; web tiers publish on loopback only; no network joins two products;
//! every container runs as a non-root user on a read-only root with no-new-privileges, all
//! capabilities dropped, a healthcheck, a restart policy and a memory limit; nothing that
//! hands a container the host (privileged mode, the host's namespaces, the Docker socket);
//! and secrets arrive as files, never as environment variables.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use anyhow::Context as _;
use bollard::Docker;
use bollard::models::{ContainerInspectResponse, RestartPolicyNameEnum};
use bollard::query_parameters::{ListContainersOptions, ListNetworksOptions};

pub const PROJECT_LABEL: &str = "com.docker.compose.project";
pub const SERVICE_LABEL: &str = "com.docker.compose.service";

/// The checks, in the order the table shows them.
pub const CHECKS: [&str; 11] = [
    "ports",
    "networks",
    "user",
    "read_only",
    "no_new_privs",
    "cap_drop",
    "healthcheck",
    "restart",
    "memory",
    "escape",
    "secrets",
];

/// One failed check of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub container: String,
    pub check: &'static str,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct Report {
    /// Container name → service, in name order.
    pub containers: BTreeMap<String, String>,
    pub violations: Vec<Violation>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn violations_of(&self, container: &str) -> Vec<&Violation> {
        self.violations
            .iter()
            .filter(|v| v.container == container)
            .collect()
    }

    /// A table of containers by checks, then one line per violation.
    pub fn table(&self) -> String {
        let width = self
            .containers
            .keys()
            .map(String::len)
            .max()
            .unwrap_or(9)
            .max(9);
        let mut out = format!("{:width$}", "container");
        for check in CHECKS {
            let _ = write!(out, " {check:>12}");
        }
        out.push('\n');

        for name in self.containers.keys() {
            let _ = write!(out, "{name:width$}");
            for check in CHECKS {
                let failed = self
                    .violations
                    .iter()
                    .any(|v| &v.container == name && v.check == check);
                let _ = write!(out, " {:>12}", if failed { "FAIL" } else { "ok" });
            }
            out.push('\n');
        }

        for v in &self.violations {
            let _ = writeln!(out, "violation: {}: {}: {}", v.container, v.check, v.detail);
        }
        out
    }
}

/// What a container is, from its Compose service name (`<product>-<role>`).
fn product_and_role(service: &str) -> (&str, &str) {
    service.split_once('-').unwrap_or((service, ""))
}

/// Audits every container (running or not) of the Compose project `project`.
pub async fn audit(docker: &Docker, project: &str) -> anyhow::Result<Report> {
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![format!("{PROJECT_LABEL}={project}")],
    )]);
    let summaries = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .context("listing containers")?;

    let internal: HashMap<String, bool> = docker
        .list_networks(None::<ListNetworksOptions>)
        .await
        .context("listing networks")?
        .into_iter()
        .filter_map(|n| Some((n.name?, n.internal.unwrap_or(false))))
        .collect();

    let mut containers = Vec::new();
    for summary in summaries {
        let Some(id) = summary.id else { continue };
        let inspected = docker
            .inspect_container(&id, None)
            .await
            .with_context(|| format!("inspecting {id}"))?;
        containers.push(inspected);
    }
    Ok(check_all(&containers, &internal))
}

fn labels(c: &ContainerInspectResponse) -> HashMap<String, String> {
    c.config
        .as_ref()
        .and_then(|cfg| cfg.labels.clone())
        .unwrap_or_default()
}

fn networks_of(c: &ContainerInspectResponse) -> Vec<String> {
    c.network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|n| n.keys().cloned().collect())
        .unwrap_or_default()
}

/// The policy itself, over already inspected containers; `internal` says which networks are.
pub fn check_all(
    containers: &[ContainerInspectResponse],
    internal: &HashMap<String, bool>,
) -> Report {
    let mut report = Report::default();

    // Which products each network joins, to find a network shared by two.
    let mut products_on: HashMap<String, BTreeSet<String>> = HashMap::new();
    for c in containers {
        let service = labels(c).get(SERVICE_LABEL).cloned().unwrap_or_default();
        let (product, _) = product_and_role(&service);
        for net in networks_of(c) {
            products_on
                .entry(net)
                .or_default()
                .insert(product.to_owned());
        }
    }

    for c in containers {
        let name = c
            .name
            .clone()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned();
        let service = labels(c).get(SERVICE_LABEL).cloned().unwrap_or_default();
        let (product, role) = product_and_role(&service);
        let mut fail = |check: &'static str, detail: String| {
            report.violations.push(Violation {
                container: name.clone(),
                check,
                detail,
            });
        };

        let host = c.host_config.clone().unwrap_or_default();
        let config = c.config.clone().unwrap_or_default();

        let published: Vec<String> = host
            .port_bindings
            .clone()
            .unwrap_or_default()
            .into_iter()
            .flat_map(|(port, bindings)| {
                bindings.unwrap_or_default().into_iter().map(move |b| {
                    (
                        port.clone(),
                        b.host_ip.unwrap_or_default(),
                        b.host_port.unwrap_or_default(),
                    )
                })
            })
            .map(|(port, ip, host_port)| {
                format!(
                    "{port} on {}:{host_port}",
                    if ip.is_empty() { "0.0.0.0" } else { &ip }
                )
            })
            .collect();
        if role == "db" && !published.is_empty() {
            fail(
                "ports",
                format!("a database publishes {}", published.join(", ")),
            );
        } else if let Some(open) = published.iter().find(|p| !p.contains(" on 127.0.0.1:")) {
            fail("ports", format!("published beyond loopback: {open}"));
        }

        let networks = networks_of(c);
        if role == "db" {
            match networks.as_slice() {
                [only] if internal.get(only).copied().unwrap_or(false) => {}
                [only] => fail(
                    "networks",
                    format!("a database on {only}, which is not internal"),
                ),
                many => fail(
                    "networks",
                    format!("a database on {} networks: {}", many.len(), many.join(", ")),
                ),
            }
        }
        for net in &networks {
            let products = &products_on[net];
            if products.len() > 1 {
                let others: Vec<_> = products.iter().filter(|p| *p != product).cloned().collect();
                fail(
                    "networks",
                    format!("{net} is shared with {}", others.join(", ")),
                );
            }
        }

        let user = config.user.clone().unwrap_or_default();
        let uid = user.split(':').next().unwrap_or("");
        if uid.is_empty() || uid == "0" || uid == "root" {
            fail("user", format!("runs as root (user {user:?})"));
        }

        if host.readonly_rootfs != Some(true) {
            fail("read_only", "root filesystem is writable".to_owned());
        }

        let security = host.security_opt.clone().unwrap_or_default();
        if !security
            .iter()
            .any(|o| o == "no-new-privileges:true" || o == "no-new-privileges")
        {
            fail("no_new_privs", "no-new-privileges is not set".to_owned());
        }

        let dropped = host.cap_drop.clone().unwrap_or_default();
        if !dropped.iter().any(|c| c.eq_ignore_ascii_case("ALL")) {
            fail(
                "cap_drop",
                format!("capabilities not all dropped (cap_drop {dropped:?})"),
            );
        }

        let test = config
            .healthcheck
            .as_ref()
            .and_then(|h| h.test.clone())
            .unwrap_or_default();
        if test.is_empty() || test[0] == "NONE" {
            fail("healthcheck", "no healthcheck".to_owned());
        }

        let restart = host.restart_policy.as_ref().and_then(|r| r.name);
        if !matches!(
            restart,
            Some(
                RestartPolicyNameEnum::ALWAYS
                    | RestartPolicyNameEnum::UNLESS_STOPPED
                    | RestartPolicyNameEnum::ON_FAILURE
            )
        ) {
            fail("restart", "no restart policy".to_owned());
        }

        if host.memory.unwrap_or(0) <= 0 {
            fail("memory", "no memory limit".to_owned());
        }

        // Any one of these gives the container the host, whatever else is locked down.
        let mut escapes = Vec::new();
        if host.privileged == Some(true) {
            escapes.push("privileged".to_owned());
        }
        for (what, mode) in [
            ("network", &host.network_mode),
            ("pid", &host.pid_mode),
            ("ipc", &host.ipc_mode),
        ] {
            if mode.as_deref() == Some("host") {
                escapes.push(format!("host {what} namespace"));
            }
        }
        let mounts = c.mounts.clone().unwrap_or_default();
        if mounts.iter().any(|m| {
            m.source
                .as_deref()
                .is_some_and(|s| s.ends_with("docker.sock"))
        }) {
            escapes.push("the Docker socket mounted".to_owned());
        }
        if !escapes.is_empty() {
            fail("escape", escapes.join(", "));
        }

        for var in config.env.clone().unwrap_or_default() {
            let key = var.split('=').next().unwrap_or("");
            if looks_secret(key) {
                fail(
                    "secrets",
                    format!("{key} carries a secret in the environment; use {key}_FILE"),
                );
            }
        }

        report.containers.insert(name, service);
    }
    report
}

/// A variable named like a secret that is not the `_FILE` form pointing at one.
fn looks_secret(key: &str) -> bool {
    let key = key.to_ascii_uppercase();
    !key.ends_with("_FILE")
        && ["PASSWORD", "SECRET", "TOKEN", "API_KEY", "PRIVATE_KEY"]
            .iter()
            .any(|w| key.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_recognised_and_file_forms_are_not() {
        assert!(looks_secret("POSTGRES_PASSWORD"));
        assert!(looks_secret("cronping_api_key"));
        assert!(looks_secret("FLAGBIT_JWT_SECRET"));
        assert!(!looks_secret("POSTGRES_PASSWORD_FILE"));
        assert!(!looks_secret("CRONPING_LISTEN_ADDR"));
    }

    #[test]
    fn roles_come_from_the_service_name() {
        assert_eq!(product_and_role("webhookvault-db"), ("webhookvault", "db"));
        assert_eq!(product_and_role("probe"), ("probe", ""));
    }
}
