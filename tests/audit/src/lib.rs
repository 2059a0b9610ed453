//! The stack audit: every container of a Compose project, inspected through the Docker API
//! and held to this deployment's policy. Databases publish nothing and sit on exactly one,
//! internal, network; web tiers publish on loopback only; no network joins two products,
//! except an internal network that names (label `refdeploy.crossing`) the only services
//! allowed on it;
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
/// On a network: the comma-separated services allowed to share it across products.
pub const CROSSING_LABEL: &str = "refdeploy.crossing";

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

    let networks = docker
        .list_networks(None::<ListNetworksOptions>)
        .await
        .context("listing networks")?;
    let internal: HashMap<String, bool> = networks
        .iter()
        .filter_map(|n| Some((n.name.clone()?, n.internal.unwrap_or(false))))
        .collect();
    let crossings: HashMap<String, BTreeSet<String>> = networks
        .iter()
        .filter_map(|n| {
            let allowed = n.labels.as_ref()?.get(CROSSING_LABEL)?;
            let services = allowed.split(',').map(|s| s.trim().to_owned()).collect();
            Some((n.name.clone()?, services))
        })
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
    Ok(check_all(&containers, &internal, &crossings))
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

/// The policy itself, over already inspected containers; `internal` says which networks are,
/// `crossings` which services each cross-product network allows.
pub fn check_all(
    containers: &[ContainerInspectResponse],
    internal: &HashMap<String, bool>,
    crossings: &HashMap<String, BTreeSet<String>>,
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
        // What the engine actually bound, which `-P` fills without any PortBindings.
        let mut published = published;
        let bound = c
            .network_settings
            .as_ref()
            .and_then(|n| n.ports.clone())
            .unwrap_or_default();
        for (port, bindings) in bound {
            for b in bindings.unwrap_or_default() {
                let ip = b.host_ip.unwrap_or_default();
                let ip = if ip.is_empty() {
                    "0.0.0.0".to_owned()
                } else {
                    ip
                };
                let binding = format!("{port} on {ip}:{}", b.host_port.unwrap_or_default());
                if !published
                    .iter()
                    .any(|p| p.starts_with(&format!("{port} on {ip}:")))
                {
                    published.push(binding);
                }
            }
        }
        if host.publish_all_ports == Some(true) {
            published.push("every exposed port (publish all)".to_owned());
        }

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
            if let Some(allowed) = crossings.get(net) {
                // A declared crossing: internal, and only the services it names.
                if !internal.get(net).copied().unwrap_or(false) {
                    fail(
                        "networks",
                        format!("{net} crosses products but is not internal"),
                    );
                } else if !allowed.contains(&service) {
                    fail(
                        "networks",
                        format!("{service} is on {net}, which allows only {allowed:?}"),
                    );
                }
            } else if products.len() > 1 {
                let others: Vec<_> = products.iter().filter(|p| *p != product).cloned().collect();
                fail(
                    "networks",
                    format!("{net} is shared with {}", others.join(", ")),
                );
            }
        }

        let user = config.user.clone().unwrap_or_default();
        let uid = user.split(':').next().unwrap_or("");
        // "00" is root too: compare numbers, not text.
        if uid.is_empty() || uid == "root" || uid.parse::<u32>().ok() == Some(0) {
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
        let added = host.cap_add.clone().unwrap_or_default();
        if !dropped.iter().any(|c| c.eq_ignore_ascii_case("ALL")) {
            fail(
                "cap_drop",
                format!("capabilities not all dropped (cap_drop {dropped:?})"),
            );
        } else if !added.is_empty() {
            fail(
                "cap_drop",
                format!("capabilities added back: {}", added.join(", ")),
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
        for opt in &security {
            if opt.ends_with("=unconfined") || opt.ends_with(":unconfined") {
                escapes.push(format!("security option {opt}"));
            }
        }
        let mounts = c.mounts.clone().unwrap_or_default();
        // Bind mounts only: a named volume's source is the engine's own storage.
        let binds = mounts.iter().filter(|m| m.typ.as_deref() == Some("bind"));
        for source in binds.filter_map(|m| m.source.as_deref()) {
            if host_path_is_sensitive(source) {
                escapes.push(format!("host path {source} mounted"));
            }
        }
        if !escapes.is_empty() {
            fail("escape", escapes.join(", "));
        }

        for var in config.env.clone().unwrap_or_default() {
            let (key, value) = var.split_once('=').unwrap_or((var.as_str(), ""));
            if url_has_password(value) {
                fail(
                    "secrets",
                    format!("{key} holds a URL with a password; use a _FILE"),
                );
            } else if looks_secret(key) {
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

/// Host paths whose mount hands a container the host: the root, the engine's socket and
/// state, devices, kernel interfaces and system configuration.
fn host_path_is_sensitive(source: &str) -> bool {
    const SENSITIVE: [&str; 9] = [
        "/var/run",
        "/run",
        "/var/lib/docker",
        "/dev",
        "/proc",
        "/sys",
        "/etc",
        "/root",
        "/boot",
    ];
    let source = source.trim_end_matches('/');
    source.is_empty()
        || source.ends_with("docker.sock")
        || SENSITIVE
            .iter()
            .any(|p| source == *p || source.starts_with(&format!("{p}/")))
}

/// `scheme://user:password@host`: a password carried in a connection string.
fn url_has_password(value: &str) -> bool {
    let Some((_, rest)) = value.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.rsplit_once('@').is_some_and(|(userinfo, _)| {
        userinfo
            .split_once(':')
            .is_some_and(|(_, password)| !password.is_empty())
    })
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
    fn passwords_in_urls_and_sensitive_host_paths_are_recognised() {
        assert!(url_has_password("postgres://e_web:hunter2@e-db/e"));
        assert!(!url_has_password("postgres://e_web@e-db/e"));
        assert!(!url_has_password("http://127.0.0.1:8082"));
        assert!(!url_has_password("not a url"));
        assert!(host_path_is_sensitive("/"));
        assert!(host_path_is_sensitive("/var/run"));
        assert!(host_path_is_sensitive("/var/run/docker.sock"));
        assert!(host_path_is_sensitive("/etc/shadow"));
        assert!(!host_path_is_sensitive(
            "/work/main/.secrets/cronping/db_web_password"
        ));
        assert!(!host_path_is_sensitive("/var/lib/docker-data-elsewhere"));
    }

    #[test]
    fn roles_come_from_the_service_name() {
        assert_eq!(product_and_role("webhookvault-db"), ("webhookvault", "db"));
        assert_eq!(product_and_role("probe"), ("probe", ""));
    }
}
