//! The binary as an operator runs it: configuration errors, the healthcheck, and stopping
//! on SIGTERM. Every product shares this frame (platform::cli); DocuMint stands for all four.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use platform::testing::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_documint");

fn bare() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().stdin(Stdio::null());
    cmd
}

#[test]
fn missing_configuration_stops_with_one_line_naming_the_variable() {
    let out = bare().arg("web").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert_eq!(
        stderr,
        "documint: configuration error: DOCUMINT_DATABASE_URL: is not set (nor its _FILE form)\n"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn unreadable_secret_and_bad_url_are_named() {
    let out = bare()
        .arg("worker")
        .env(
            "DOCUMINT_DATABASE_URL",
            "postgres://documint_worker@db/documint",
        )
        .env("DOCUMINT_DATABASE_PASSWORD_FILE", "/nonexistent/password")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("DOCUMINT_DATABASE_PASSWORD_FILE: cannot read /nonexistent/password"));

    let out = bare()
        .arg("web")
        .env("DOCUMINT_DATABASE_URL", "mysql://user:hunter2@db/documint")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr.contains("DOCUMINT_DATABASE_URL: must start with postgres://"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "the URL's password leaked: {stderr}"
    );
}

/// The receipt route never runs in a permissive mode: with `jwt` (the default) a missing,
/// empty or short key stops the process at start.
#[test]
fn the_receipt_route_refuses_to_start_without_a_strong_key() {
    let dir = std::env::temp_dir().join(format!("documint-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let short = dir.join("short");
    std::fs::write(&short, "k1=only-twenty-bytes!\n").unwrap();
    let empty = dir.join("empty");
    std::fs::write(&empty, "").unwrap();

    let start = |keys: Option<&std::path::Path>| {
        let mut cmd = bare();
        cmd.arg("web")
            .env(
                "DOCUMINT_DATABASE_URL",
                "postgres://documint_web@db/documint",
            )
            .env("DOCUMINT_SERVE", "receipts");
        if let Some(keys) = keys {
            cmd.env("DOCUMINT_RECEIPTS_KEYS_FILE", keys);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, stderr) = start(None);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("DOCUMINT_RECEIPTS_KEYS: required with RECEIPTS_AUTH=jwt"),
        "{stderr}"
    );

    let (code, stderr) = start(Some(&empty));
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("DOCUMINT_RECEIPTS_KEYS"), "{stderr}");

    let (code, stderr) = start(Some(&short));
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("at least 32 are required"), "{stderr}");
    assert!(
        !stderr.contains("only-twenty-bytes"),
        "the key leaked: {stderr}"
    );

    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn usage_and_unknown_healthcheck_target() {
    let out = bare().arg("serve").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));

    let out = bare().args(["healthcheck", "db"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// Waits for `done` to hold, polling; fails after `limit`.
fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    assert!(status.is_ok_and(|s| s.success()), "kill -TERM {pid}");
}

#[tokio::test]
async fn web_and_worker_stop_cleanly_on_sigterm() -> anyhow::Result<()> {
    let db = TestDb::start().await?;
    let url = format!(
        "postgres://postgres:test-only-password@127.0.0.1:{}/app",
        db.options.get_port()
    );
    // nextest runs each test in its own process, so the pid names a private directory.
    let dir = std::env::temp_dir().join(format!("documint-process-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let heartbeat = dir.join("heartbeat");

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut web = bare()
        .arg("web")
        .env("DOCUMINT_DATABASE_URL", &url)
        .env("DOCUMINT_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .spawn()?;
    let mut worker = bare()
        .arg("worker")
        .env("DOCUMINT_DATABASE_URL", &url)
        .env("DOCUMINT_HEARTBEAT_FILE", &heartbeat)
        .env("DOCUMINT_HEARTBEAT_INTERVAL_SECS", "1")
        .stdout(Stdio::null())
        .spawn()?;

    // The healthcheck subcommand is what the container runs; it turns healthy for both.
    let healthy = |target: &str, extra: (&str, String)| {
        bare()
            .args(["healthcheck", target])
            .env(extra.0, extra.1)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    wait_for("web healthy", Duration::from_secs(20), || {
        healthy("web", ("DOCUMINT_LISTEN_ADDR", format!("127.0.0.1:{port}")))
    });
    wait_for("worker heartbeat", Duration::from_secs(20), || {
        healthy(
            "worker",
            ("DOCUMINT_HEARTBEAT_FILE", heartbeat.display().to_string()),
        )
    });

    for (name, child) in [("web", &mut web), ("worker", &mut worker)] {
        let started = Instant::now();
        sigterm(child.id());
        let mut status = None;
        wait_for(&format!("{name} to exit"), Duration::from_secs(10), || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        assert!(
            status.is_some_and(|s| s.success()),
            "{name} exited with {status:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
