//! The stack audit against deliberately misconfigured containers: each is hardened like the
//! stack's own except for one property, and the audit must name exactly that violation.

use std::collections::HashMap;

use audit::{PROJECT_LABEL, SERVICE_LABEL};
use bollard::models::{NetworkCreateRequest, PortBinding, RestartPolicy, RestartPolicyNameEnum};
use stack_tests::probe::{IMAGE, TEST_LABEL};
use testcontainers::core::Healthcheck;
use testcontainers::runners::AsyncRunner as _;
use testcontainers::{ContainerAsync, ContainerRequest, GenericImage, ImageExt as _};

/// What a misconfigured container differs in from the hardened default.
#[derive(Default)]
struct Flaw {
    publish: bool,
    root: bool,
    secret_env: bool,
    privileged: bool,
    /// The subtler forms the audit must see through too.
    zero_padded_root: bool,
    cap_add: bool,
    publish_all: bool,
    url_password: bool,
    host_mount: bool,
}

fn container(
    project: &str,
    service: &str,
    network: &str,
    flaw: Flaw,
) -> ContainerRequest<GenericImage> {
    let (publish, privileged, cap_add, publish_all, host_mount) = (
        flaw.publish,
        flaw.privileged,
        flaw.cap_add,
        flaw.publish_all,
        flaw.host_mount,
    );
    let mut request = GenericImage::new(IMAGE, "latest")
        .with_cmd(["serve", "8000"])
        .with_network(network)
        .with_label(PROJECT_LABEL, project)
        .with_label(SERVICE_LABEL, service)
        .with_label(TEST_LABEL, "audit")
        .with_user(match (flaw.root, flaw.zero_padded_root) {
            (true, _) => "0",
            (_, true) => "00:00",
            _ => "10001:10001",
        })
        .with_health_check(Healthcheck::cmd(["/usr/local/bin/probe", "--version"]))
        .with_host_config_modifier(move |host| {
            host.readonly_rootfs = Some(true);
            host.security_opt = Some(vec!["no-new-privileges:true".to_owned()]);
            host.cap_drop = Some(vec!["ALL".to_owned()]);
            host.memory = Some(64 * 1024 * 1024);
            host.restart_policy = Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            });
            host.publish_all_ports = Some(publish_all);
            host.privileged = Some(privileged);
            if cap_add {
                host.cap_add = Some(vec!["SYS_ADMIN".to_owned()]);
            }
            if host_mount {
                host.binds = Some(vec!["/var/run:/hostrun:ro".to_owned()]);
            }
            host.port_bindings = publish.then(|| {
                let binding = PortBinding {
                    host_ip: Some(String::new()),
                    host_port: Some(String::new()),
                };
                HashMap::from([("8000/tcp".to_owned(), Some(vec![binding]))])
            });
        });
    if flaw.url_password {
        let url = "postgres://shop_web:hunter2@shop-db/shop";
        request = request.with_env_var("SHOP_DATABASE_URL", url);
    }
    if flaw.secret_env {
        request = request.with_env_var("SHOP_DATABASE_PASSWORD", "hunter2-hunter2");
    }
    request
}

async fn network(docker: &bollard::Docker, name: &str, internal: bool) -> anyhow::Result<()> {
    crossing(docker, name, internal, None).await
}

/// A network, declared as crossing products for the services `allowed` names.
async fn crossing(
    docker: &bollard::Docker,
    name: &str,
    internal: bool,
    allowed: Option<&str>,
) -> anyhow::Result<()> {
    let mut labels = HashMap::from([(TEST_LABEL.to_owned(), "audit".to_owned())]);
    if let Some(allowed) = allowed {
        labels.insert(audit::CROSSING_LABEL.to_owned(), allowed.to_owned());
    }
    let request = NetworkCreateRequest {
        name: name.to_owned(),
        internal: Some(internal),
        labels: Some(labels),
        ..Default::default()
    };
    docker.create_network(request).await?;
    Ok(())
}

/// Removes the networks this test made, after the containers on them are gone.
struct Networks(Vec<String>);

impl Drop for Networks {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = std::process::Command::new("docker")
                .args(["network", "rm", name])
                .output();
        }
    }
}

async fn start(
    request: ContainerRequest<GenericImage>,
) -> anyhow::Result<ContainerAsync<GenericImage>> {
    Ok(request.start().await?)
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_names_each_deliberate_violation_and_nothing_else() -> anyhow::Result<()> {
    let docker = bollard::Docker::connect_with_local_defaults()?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let project = format!("refdeploy-test-audit-{}", &id[..12]);
    let internal = format!("{project}_shop-internal");
    let shared = format!("{project}_shared");
    let other_internal = format!("{project}_other-internal");
    let declared = format!("{project}_declared");
    let undeclared_open = format!("{project}_declared-open");

    // Dropped last (declared first): containers go before their networks.
    let mut networks = Networks(vec![
        internal.clone(),
        shared.clone(),
        other_internal.clone(),
        declared.clone(),
        undeclared_open.clone(),
    ]);
    network(&docker, &internal, true).await?;
    network(&docker, &shared, false).await?;
    network(&docker, &other_internal, true).await?;
    // Crossings: allowed for the services named, and only on an internal network.
    crossing(&docker, &declared, true, Some("shop-call,other-callee")).await?;
    crossing(
        &docker,
        &undeclared_open,
        false,
        Some("shop-open,other-open"),
    )
    .await?;

    // The subtler forms, each on a network of its own so only the flaw differs.
    let subtle = [
        (
            "rootpad",
            "user",
            Flaw {
                zero_padded_root: true,
                ..Flaw::default()
            },
        ),
        (
            "capadd",
            "cap_drop",
            Flaw {
                cap_add: true,
                ..Flaw::default()
            },
        ),
        (
            "puball",
            "ports",
            Flaw {
                publish_all: true,
                ..Flaw::default()
            },
        ),
        (
            "urlpw",
            "secrets",
            Flaw {
                url_password: true,
                ..Flaw::default()
            },
        ),
        (
            "hostmount",
            "escape",
            Flaw {
                host_mount: true,
                ..Flaw::default()
            },
        ),
    ];
    let mut subtle_containers = Vec::new();
    for (what, check, flaw) in subtle {
        let net = format!("{project}_{what}-net");
        networks.0.push(net.clone());
        network(&docker, &net, false).await?;
        let service = format!("{what}-web");
        subtle_containers.push((
            start(container(&project, &service, &net, flaw)).await?,
            check,
        ));
    }

    let compliant_db = start(container(
        &project,
        "other-db",
        &other_internal,
        Flaw::default(),
    ))
    .await?;
    let published_db = start(container(
        &project,
        "shop-db",
        &internal,
        Flaw {
            publish: true,
            ..Flaw::default()
        },
    ))
    .await?;
    let root_web = start(container(
        &project,
        "shop-web",
        &internal,
        Flaw {
            root: true,
            ..Flaw::default()
        },
    ))
    .await?;
    let secret_worker = start(container(
        &project,
        "shop-worker",
        &internal,
        Flaw {
            secret_env: true,
            ..Flaw::default()
        },
    ))
    .await?;
    // One network joined by two products: shop's and other's workers.
    let shop_shared = start(container(&project, "shop-sync", &shared, Flaw::default())).await?;
    let other_shared = start(container(&project, "other-sync", &shared, Flaw::default())).await?;
    let declared_caller =
        start(container(&project, "shop-call", &declared, Flaw::default())).await?;
    let declared_callee = start(container(
        &project,
        "other-callee",
        &declared,
        Flaw::default(),
    ))
    .await?;
    let intruder = start(container(
        &project,
        "other-intruder",
        &declared,
        Flaw::default(),
    ))
    .await?;
    let open_crossing = start(container(
        &project,
        "shop-open",
        &undeclared_open,
        Flaw::default(),
    ))
    .await?;
    let privileged = Flaw {
        privileged: true,
        ..Flaw::default()
    };
    let privileged_worker = start(container(
        &project,
        "other-worker",
        &other_internal,
        privileged,
    ))
    .await?;

    let report = audit::audit(&docker, &project).await?;
    println!("{}", report.table());

    let name = |c: &ContainerAsync<GenericImage>| {
        let id = c.id().to_owned();
        let docker = docker.clone();
        async move {
            let inspected = docker.inspect_container(&id, None).await?;
            anyhow::Ok(
                inspected
                    .name
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_owned(),
            )
        }
    };
    let checks_of = |container: &str| -> Vec<&'static str> {
        report
            .violations_of(container)
            .iter()
            .map(|v| v.check)
            .collect()
    };

    assert_eq!(report.containers.len(), 16, "{}", report.table());
    for (subtle, check) in &subtle_containers {
        let name = name(subtle).await?;
        assert_eq!(checks_of(&name), [*check], "{name}:\n{}", report.table());
    }
    assert_eq!(
        checks_of(&name(&compliant_db).await?),
        Vec::<&str>::new(),
        "{}",
        report.table()
    );
    assert_eq!(
        checks_of(&name(&published_db).await?),
        ["ports"],
        "{}",
        report.table()
    );
    assert_eq!(
        checks_of(&name(&root_web).await?),
        ["user"],
        "{}",
        report.table()
    );
    assert_eq!(
        checks_of(&name(&secret_worker).await?),
        ["secrets"],
        "{}",
        report.table()
    );
    assert_eq!(
        checks_of(&name(&shop_shared).await?),
        ["networks"],
        "{}",
        report.table()
    );
    assert_eq!(
        checks_of(&name(&other_shared).await?),
        ["networks"],
        "{}",
        report.table()
    );
    assert_eq!(
        checks_of(&name(&privileged_worker).await?),
        ["escape"],
        "{}",
        report.table()
    );

    for allowed in [&declared_caller, &declared_callee] {
        let name = name(allowed).await?;
        assert_eq!(
            checks_of(&name),
            Vec::<&str>::new(),
            "{name}:\n{}",
            report.table()
        );
    }
    for refused in [&intruder, &open_crossing] {
        let name = name(refused).await?;
        assert_eq!(
            checks_of(&name),
            ["networks"],
            "{name}:\n{}",
            report.table()
        );
    }

    let secret = &report.violations_of(&name(&secret_worker).await?)[0].detail;
    assert!(
        secret.contains("SHOP_DATABASE_PASSWORD") && !secret.contains("hunter2"),
        "{secret}"
    );
    assert!(!report.passed());
    Ok(())
}
