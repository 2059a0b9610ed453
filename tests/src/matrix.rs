//! The isolation matrix: the stack as its Compose files declare it, probed from every one of
//! its networks. Each product's database must resolve, accept TCP and accept its roles'
//! logins only from that product's internal network, refuse a wrong password even there,
//! and be unreachable from everywhere else, by name and by address. From its own internal
//! network, the web and worker roles must not create or drop tables, and no internal network
//! may reach a server on a network outside the stack.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use anyhow::{Context as _, bail};
use bollard::query_parameters::ListNetworksOptions;
use serde_json::{Value, json};

use crate::probe::{self, Outcome};
use crate::{PRODUCTS, Stack};

const COLUMNS: [&str; 5] = ["dns", "tcp", "web login", "worker login", "wrong password"];

/// The matrix cell ids a probe answers for one target product.
fn target_checks(product: &str, db_ip: &str) -> Vec<Value> {
    let addr = format!("{db_ip}:5432");
    let login = |id: &str, role: &str, secret: Option<&str>| {
        let mut check = json!({
            "kind": "pg", "id": format!("{product}/{id}"), "addr": addr,
            "user": format!("{product}_{role}"), "database": product,
        });
        match secret {
            Some(file) => check["password_file"] = json!(format!("/secrets/{product}/{file}")),
            None => check["password"] = json!("not-the-password"),
        }
        check
    };
    vec![
        json!({ "kind": "dns", "id": format!("{product}/dns"), "name": format!("{product}-db") }),
        json!({ "kind": "tcp", "id": format!("{product}/tcp"), "addr": addr }),
        login("web login", "web", Some("db_web_password")),
        login("worker login", "worker", Some("db_worker_password")),
        login("wrong password", "web", None),
    ]
}

/// From a product's own internal network: what each role may do once logged in.
fn privilege_checks(product: &str, db_ip: &str) -> Vec<(Value, &'static str)> {
    let check = |id: &str, role: &str, sql: &str| {
        json!({
            "kind": "pg", "id": format!("{product}/{id}"), "addr": format!("{db_ip}:5432"),
            "user": format!("{product}_{role}"), "database": product,
            "password_file": format!("/secrets/{product}/db_{role}_password"), "sql": sql,
        })
    };
    vec![
        (
            check("web create", "web", "CREATE TABLE probe_t (id int)"),
            "denied",
        ),
        (check("web drop", "web", "DROP TABLE jobs"), "denied"),
        (
            check("worker create", "worker", "CREATE TABLE probe_t (id int)"),
            "denied",
        ),
        (check("worker drop", "worker", "DROP TABLE jobs"), "denied"),
        // The control: the owner may, so the denials above are about roles, not a broken probe.
        (
            check(
                "migrate create",
                "migrate",
                "CREATE TABLE probe_t (id int); DROP TABLE probe_t",
            ),
            "ok",
        ),
    ]
}

fn expected(own_internal: bool, column: &str) -> &'static str {
    match (own_internal, column) {
        (true, "wrong password") => "auth_failed",
        (true, _) => "ok",
        (false, "dns") => "unresolved",
        (false, _) => "unreachable",
    }
}

/// Probes every database from every network of `stack` and returns the matrix as a table;
/// fails listing every cell that differs from the policy, with the table.
pub async fn check(stack: &Stack, docker: &bollard::Docker) -> anyhow::Result<String> {
    // The networks Compose made for this project: name → (product, internal?).
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![format!("com.docker.compose.project={}", stack.project)],
    )]);
    let networks: BTreeMap<String, (String, bool)> = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filters),
        }))
        .await?
        .into_iter()
        .filter_map(|n| {
            let logical = n
                .labels
                .as_ref()?
                .get("com.docker.compose.network")?
                .clone();
            // `<product>-internal` and the like; `receipts` (the one shared network) is its own.
            let product = logical.split_once('-').map_or(logical.as_str(), |(p, _)| p);
            let product = product.to_owned();
            Some((n.name?, (product, n.internal.unwrap_or(false))))
        })
        .collect();
    for product in PRODUCTS {
        assert!(
            networks
                .values()
                .any(|(p, internal)| p == product && *internal)
        );
        assert!(
            networks
                .values()
                .any(|(p, internal)| p == product && !*internal)
        );
    }

    // Each database's address on its internal network.
    let mut db_ips = BTreeMap::new();
    for product in PRODUCTS {
        let id = stack.container(&format!("{product}-db"))?;
        let inspected = docker.inspect_container(&id, None).await?;
        let attached = inspected
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default();
        let ip = attached
            .values()
            .find_map(|e| e.ip_address.clone().filter(|ip| !ip.is_empty()));
        db_ips.insert(product, ip.context("database has no address")?);
    }

    // The receipts network: from it only DocuMint's receipt port answers; from everywhere
    // else that port is unreachable.
    let receipts_net = format!("{}_receipts", stack.project);
    let receipts = receipts_addresses(stack, docker, &receipts_net).await?;

    // A server on a network outside the stack, which no internal network may reach; a probe
    // on the server's own network reaching it shows the negative results mean something.
    let outside = format!("{}-outside", stack.project);
    let server = probe::serve(&outside).await?;
    let server_ip = docker
        .inspect_container(server.id(), None)
        .await?
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.get(&outside).and_then(|e| e.ip_address.clone()))
        .context("the outside server has no address")?;
    let server_check = json!({ "kind": "http", "id": "outside/http",
                               "addr": format!("{server_ip}:8000"), "path": "/" });
    let control = probe::run(&outside, &stack.secrets, &json!([server_check])).await?;
    if control.first().map(|o| o.outcome.as_str()) != Some("ok") {
        bail!("the control probe did not reach the server beside it: {control:?}");
    }

    let mut failures = Vec::new();
    let mut table = format!("{:<16} {:<22}", "database", "probed from");
    for column in COLUMNS {
        let _ = write!(table, " {column:>15}");
    }
    table.push('\n');

    for (network, (vantage_product, internal)) in &networks {
        let mut checks = Vec::new();
        let mut privileges = Vec::new();
        for product in PRODUCTS {
            checks.extend(target_checks(product, &db_ips[product]));
            if *internal && vantage_product == product {
                privileges = privilege_checks(product, &db_ips[product]);
                checks.extend(privileges.iter().map(|(c, _)| c.clone()));
            }
        }
        if *internal {
            checks.push(server_check.clone());
        }
        let on_receipts = *network == receipts_net;
        let receipt_checks = receipts.checks(on_receipts);
        checks.extend(receipt_checks.iter().map(|(c, _)| c.clone()));

        let outcomes: HashMap<String, Outcome> =
            probe::run(network, &stack.secrets, &json!(checks))
                .await?
                .into_iter()
                .map(|o| (o.id.clone(), o))
                .collect();
        let short = network.trim_start_matches(&format!("{}_", stack.project));

        for product in PRODUCTS {
            let own_internal = *internal && vantage_product == product;
            let _ = write!(table, "{:<16} {:<22}", format!("{product}-db"), short);
            for column in COLUMNS {
                let got = &outcomes[&format!("{product}/{column}")];
                let want = expected(own_internal, column);
                let mark = if got.outcome == want { "" } else { " !" };
                let _ = write!(table, " {:>15}", format!("{}{mark}", got.outcome));
                if got.outcome != want {
                    failures.push(format!(
                        "{product}-db from {short}: {column}: want {want}, got {} ({})",
                        got.outcome, got.detail
                    ));
                }
            }
            table.push('\n');
        }

        for (check, want) in &privileges {
            let id = check["id"].as_str().unwrap_or_default();
            let got = &outcomes[id];
            if got.outcome != *want {
                failures.push(format!(
                    "{id}: want {want}, got {} ({})",
                    got.outcome, got.detail
                ));
            }
        }
        for (check, want) in &receipt_checks {
            let id = check["id"].as_str().unwrap_or_default();
            let got = &outcomes[id];
            if got.outcome != *want {
                failures.push(format!(
                    "{id} from {short}: want {want}, got {} ({})",
                    got.outcome, got.detail
                ));
            }
        }
        if on_receipts {
            let verdict = |id: &str| outcomes.get(id).map_or("?", |o| o.outcome.as_str());
            let _ = writeln!(
                table,
                "{:<16} {:<22} receipt port {}, documint-web name {}, documint-web API {}",
                "(services)",
                short,
                verdict("receipts/port"),
                verdict("receipts/web name"),
                verdict("receipts/web api"),
            );
        }
        if *internal {
            let got = &outcomes["outside/http"];
            if got.outcome != "unreachable" {
                failures.push(format!("{short} reached a server outside: {}", got.detail));
            }
        }
    }

    if !failures.is_empty() {
        bail!("isolation broken:\n{}\n\n{table}", failures.join("\n"));
    }
    Ok(table)
}

/// Where DocuMint's two web processes are, as seen by the receipts network's checks.
struct ReceiptAddresses {
    /// documint-receipts on the receipts network, port 8090.
    receipt_port: String,
    /// documint-web's addresses (edge and internal), port 8080.
    web_api: Vec<String>,
}

impl ReceiptAddresses {
    /// The checks run from one network, with the outcome each must have.
    fn checks(&self, on_receipts: bool) -> Vec<(Value, &'static str)> {
        let reachable = if on_receipts { "ok" } else { "unreachable" };
        let mut checks = vec![(
            json!({ "kind": "tcp", "id": "receipts/port", "addr": self.receipt_port }),
            reachable,
        )];
        if on_receipts {
            checks.push((
                json!({ "kind": "dns", "id": "receipts/web name", "name": "documint-web" }),
                "unresolved",
            ));
            for (index, addr) in self.web_api.iter().enumerate() {
                let id = if index == 0 {
                    "receipts/web api".to_owned()
                } else {
                    format!("receipts/web api {index}")
                };
                checks.push((
                    json!({ "kind": "tcp", "id": id, "addr": addr }),
                    "unreachable",
                ));
            }
        }
        checks
    }
}

async fn receipts_addresses(
    stack: &Stack,
    docker: &bollard::Docker,
    receipts_net: &str,
) -> anyhow::Result<ReceiptAddresses> {
    let addresses = |service: &'static str| async move {
        let id = stack.container(service)?;
        let networks = docker
            .inspect_container(&id, None)
            .await?
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default();
        anyhow::Ok(
            networks
                .into_iter()
                .filter_map(|(name, e)| Some((name, e.ip_address.filter(|ip| !ip.is_empty())?)))
                .collect::<BTreeMap<String, String>>(),
        )
    };

    let receipts = addresses("documint-receipts").await?;
    let receipt_ip = receipts
        .get(receipts_net)
        .context("documint-receipts is not on the receipts network")?;
    let web = addresses("documint-web").await?;
    if web.contains_key(receipts_net) {
        bail!("documint-web joined the receipts network");
    }
    Ok(ReceiptAddresses {
        receipt_port: format!("{receipt_ip}:8090"),
        web_api: web.values().map(|ip| format!("{ip}:8080")).collect(),
    })
}
