//! `probe`: what can be reached from where it runs. The isolation tests start it on each
//! network of the stack and ask, in one JSON list, whether names resolve, ports accept TCP,
//! PostgreSQL logins succeed (and, once in, whether a statement is permitted) and HTTP
//! servers answer. It prints one JSON result per check and exits 0; judging the results is
//! the test's job.
//!
//! `probe run '<json checks>'` or `probe serve <port>` (a server other probes try to reach),
//! or `probe receipts-demo <url> <key file>` (see [`receipts_demo`]).

mod receipts_demo;

use std::net::{SocketAddr, ToSocketAddrs as _};
use std::process::ExitCode;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::Connection as _;
use sqlx::postgres::PgConnectOptions;

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum Check {
    Dns {
        id: String,
        name: String,
    },
    Tcp {
        id: String,
        addr: SocketAddr,
    },
    Pg {
        id: String,
        addr: SocketAddr,
        user: String,
        database: String,
        /// A file holding the password (the secrets are mounted read-only), or `password`.
        password_file: Option<String>,
        password: Option<String>,
        /// Run after logging in; the outcome says whether it was permitted.
        sql: Option<String>,
    },
    Http {
        id: String,
        addr: SocketAddr,
        path: String,
    },
}

/// `ok`, or why not: `unresolved`, `unreachable`, `auth_failed`, `denied`, `error`.
#[derive(Debug, Serialize)]
struct Outcome {
    id: String,
    outcome: &'static str,
    detail: String,
}

const TIMEOUT: Duration = Duration::from_millis(1500);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("probe: {e}");
            return ExitCode::FAILURE;
        }
    };

    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["run", spec] => runtime.block_on(run(spec)),
        ["serve", port] => runtime.block_on(serve(port)),
        ["receipts-demo", url, key_file] => runtime.block_on(receipts_demo::run(url, key_file)),
        _ => Err(anyhow::anyhow!(
            "usage: probe run '<json checks>' | probe serve <port> | \
             probe receipts-demo <url> <signing key file>"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("probe: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(spec: &str) -> anyhow::Result<()> {
    let checks: Vec<Check> = serde_json::from_str(spec)?;

    // Concurrently: a dropped packet costs a full timeout, and most checks expect one. On a
    // LocalSet because sqlx's connection futures are not provably Send.
    let local = tokio::task::LocalSet::new();
    let outcomes = local
        .run_until(async {
            let tasks: Vec<_> = checks
                .into_iter()
                .map(|c| tokio::task::spawn_local(check(c)))
                .collect();
            let mut outcomes = Vec::with_capacity(tasks.len());
            for task in tasks {
                outcomes.push(task.await?);
            }
            anyhow::Ok(outcomes)
        })
        .await?;

    let json = serde_json::to_string(&outcomes)?;
    std::io::Write::write_all(&mut std::io::stdout(), json.as_bytes())?;
    Ok(())
}

fn outcome(id: String, outcome: &'static str, detail: impl Into<String>) -> Outcome {
    Outcome {
        id,
        outcome,
        detail: detail.into(),
    }
}

async fn check(check: Check) -> Outcome {
    match check {
        Check::Dns { id, name } => {
            let lookup = tokio::task::spawn_blocking(move || (name.as_str(), 0).to_socket_addrs());
            match lookup.await {
                Ok(Ok(mut addrs)) => match addrs.next() {
                    Some(addr) => outcome(id, "ok", addr.ip().to_string()),
                    None => outcome(id, "unresolved", "no address"),
                },
                Ok(Err(e)) => outcome(id, "unresolved", e.to_string()),
                Err(e) => outcome(id, "error", e.to_string()),
            }
        }
        Check::Tcp { id, addr } => {
            match tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(_)) => outcome(id, "ok", "connected"),
                Ok(Err(e)) => outcome(id, "unreachable", e.to_string()),
                Err(_) => outcome(id, "unreachable", "timed out"),
            }
        }
        Check::Http { id, addr, path } => {
            let get = move || platform::health::http_get_status(addr, &path, TIMEOUT);
            match tokio::task::spawn_blocking(get).await {
                Ok(Ok(status)) => outcome(id, "ok", status),
                Ok(Err(e)) => outcome(id, "unreachable", e),
                Err(e) => outcome(id, "error", e.to_string()),
            }
        }
        Check::Pg {
            id,
            addr,
            user,
            database,
            password_file,
            password,
            sql,
        } => {
            let password = match (password_file, password) {
                (Some(file), None) => match std::fs::read_to_string(&file) {
                    Ok(p) => p.trim_end().to_owned(),
                    Err(e) => return outcome(id, "error", format!("{file}: {e}")),
                },
                (None, Some(p)) => p,
                _ => return outcome(id, "error", "give one of password_file and password"),
            };
            let options = PgConnectOptions::new()
                .host(&addr.ip().to_string())
                .port(addr.port())
                .username(&user)
                .password(&password)
                .database(&database);
            pg(id, options, sql).await
        }
    }
}

async fn pg(id: String, options: PgConnectOptions, sql: Option<String>) -> Outcome {
    let connect = tokio::time::timeout(TIMEOUT * 2, sqlx::PgConnection::connect_with(&options));
    let mut conn = match connect.await {
        Err(_) => return outcome(id, "unreachable", "timed out"),
        Ok(Err(sqlx::Error::Database(e))) => {
            // 28P01 wrong password, 28000 no such role or not allowed by pg_hba.
            let code = e.code().unwrap_or_default().into_owned();
            let kind = if code.starts_with("28") {
                "auth_failed"
            } else {
                "error"
            };
            return outcome(id, kind, format!("{code}: {}", e.message()));
        }
        Ok(Err(e)) => return outcome(id, "unreachable", e.to_string()),
        Ok(Ok(conn)) => conn,
    };

    let Some(sql) = sql else {
        return outcome(id, "ok", "logged in");
    };
    let result = sqlx::raw_sql(&sql).execute(&mut conn).await;
    let _ = conn.close().await;
    match result {
        Ok(_) => outcome(id, "ok", "statement permitted"),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42501") => {
            outcome(id, "denied", e.message().to_owned())
        }
        Err(e) => outcome(id, "error", e.to_string()),
    }
}

/// Answers every connection with a fixed 200, until stopped.
async fn serve(port: &str) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt as _;

    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port.parse::<u16>()?)).await?;
    loop {
        let (mut stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let body = "probe";
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
