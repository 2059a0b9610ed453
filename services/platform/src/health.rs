//! The container healthcheck, run as `<product> healthcheck web|worker` inside the image,
//! which has no curl: for the web tier a plain HTTP/1.1 GET of `/healthz` on loopback, for
//! the worker the age of its heartbeat file.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime};

use crate::config::{self, Env};

/// Returns a one-line reason when unhealthy.
pub fn check(env: &Env, target: &str) -> Result<(), String> {
    match target {
        "web" => {
            let addr = env
                .parse_or("LISTEN_ADDR", config::default_listen_addr())
                .map_err(|e| e.to_string())?;
            check_http(addr)
        }
        "worker" => {
            let interval = config::heartbeat_interval(env).map_err(|e| e.to_string())?;
            let file = config::heartbeat_file(env).map_err(|e| e.to_string())?;
            check_heartbeat(&file, interval * 3 + Duration::from_secs(5))
        }
        other => Err(format!(
            "unknown healthcheck target {other:?}; use web or worker"
        )),
    }
}

fn check_http(listen: SocketAddr) -> Result<(), String> {
    let target = SocketAddr::from(([127, 0, 0, 1], listen.port()));
    let status_line = http_get_status(target, "/healthz", Duration::from_secs(2))?;
    if status_line.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!("unexpected answer: {status_line:?}"))
    }
}

/// A plain HTTP/1.1 GET, returning the status line. Enough for probes; no TLS, no redirects.
pub fn http_get_status(
    target: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&target, timeout)
        .map_err(|e| format!("connect {target}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;

    let request = format!("GET {path} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;

    // The status line is all that matters; 64 bytes holds it.
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).map_err(|e| format!("read: {e}"))?;
    let head = String::from_utf8_lossy(&head[..n]);
    Ok(head.lines().next().unwrap_or("").to_owned())
}

fn check_heartbeat(file: &std::path::Path, max_age: Duration) -> Result<(), String> {
    let modified = std::fs::metadata(file)
        .and_then(|m| m.modified())
        .map_err(|e| format!("no heartbeat at {}: {e}", file.display()))?;
    let age = SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default();
    if age <= max_age {
        Ok(())
    } else {
        Err(format!(
            "last heartbeat {}s ago (limit {}s)",
            age.as_secs(),
            max_age.as_secs()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_heartbeat_is_healthy_and_stale_or_missing_is_not() {
        let dir = std::env::temp_dir().join(format!("hb-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("heartbeat");

        assert!(
            check_heartbeat(&file, Duration::from_secs(60))
                .unwrap_err()
                .contains("no heartbeat")
        );

        std::fs::write(&file, "now").unwrap();
        assert!(check_heartbeat(&file, Duration::from_secs(60)).is_ok());

        let old = SystemTime::now() - Duration::from_secs(120);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(
            check_heartbeat(&file, Duration::from_secs(60))
                .unwrap_err()
                .contains("limit 60s")
        );

        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn http_check_fails_when_nothing_listens() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert!(check_http(addr).unwrap_err().starts_with("connect"));
    }

    #[test]
    fn unknown_target_is_named() {
        let env = Env::with_lookup("demo", |_| None);
        assert!(check(&env, "db").unwrap_err().contains("\"db\""));
    }
}
