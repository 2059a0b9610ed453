//! The ping endpoints: `/ping/{uuid}` and its `/start`, `/fail`, `/log` and `/{code}`
//! forms, by GET, HEAD or POST, with an optional `?rid=`. A ping answers `OK` only once
//! its transaction (ping, state, flips, alerts) has committed; [`crate::writer`] groups
//! concurrent pings into shared transactions.

use std::net::SocketAddr;

use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use platform::ApiError;
use uuid::Uuid;

use crate::App;
use crate::status::PingKind;
use crate::writer::{Incoming, Outcome};

/// Bytes read from a ping body before it is refused outright; up to the configured limit
/// is kept, the rest of this is read and dropped so the ping can say it was truncated.
const READ_CAP: usize = 1 << 20;
const MAX_USER_AGENT: usize = 200;

fn bad_request(field: &str, message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message).with_field(field)
}

/// What the URL says: the action and the exit status it came from.
fn action(segment: Option<&str>) -> Result<(PingKind, Option<i16>), ApiError> {
    let Some(segment) = segment else {
        return Ok((PingKind::Success, None));
    };
    match segment {
        "start" => Ok((PingKind::Start, None)),
        "fail" => Ok((PingKind::Fail, None)),
        "log" => Ok((PingKind::Log, None)),
        code if !code.is_empty()
            && code.len() <= 10
            && code.bytes().all(|b| b.is_ascii_digit()) =>
        {
            match code.parse::<i16>() {
                Ok(0) => Ok((PingKind::Success, Some(0))),
                Ok(n @ 1..=255) => Ok((PingKind::Fail, Some(n))),
                _ => Err(bad_request("code", "exit status must be 0-255")),
            }
        }
        _ => Err(ApiError::not_found("ping URL")),
    }
}

/// The check's ping uuid: canonical lower-case form only, as healthchecks routes it.
fn ping_uuid(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .ok()
        .filter(|u| u.hyphenated().to_string() == raw)
        .ok_or_else(|| ApiError::not_found("check"))
}

fn rid(query: Option<&str>) -> Result<Option<Uuid>, ApiError> {
    let Some(query) = query else { return Ok(None) };
    let mut rid = None;
    for pair in query.split('&') {
        if let Some(value) = pair.strip_prefix("rid=") {
            let parsed = Uuid::parse_str(value)
                .ok()
                .filter(|u| u.hyphenated().to_string() == value.to_ascii_lowercase())
                .ok_or_else(|| bad_request("rid", "rid must be a UUID"))?;
            rid = Some(parsed);
        }
    }
    Ok(rid)
}

pub async fn success(
    State(app): State<App>,
    uuid: Result<Path<String>, PathRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let Path(uuid) = uuid.map_err(|_| ApiError::not_found("check"))?;
    handle(app, &uuid, None, req).await
}

pub async fn with_action(
    State(app): State<App>,
    path: Result<Path<(String, String)>, PathRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    // A path that does not decode routes nowhere: a JSON 404 like any unknown URL.
    let Path((uuid, segment)) = path.map_err(|_| ApiError::not_found("check"))?;
    handle(app, &uuid, Some(&segment), req).await
}

async fn handle(
    app: App,
    uuid: &str,
    segment: Option<&str>,
    req: Request,
) -> Result<Response, ApiError> {
    let uuid = ping_uuid(uuid)?;
    let (kind, exit_status) = action(segment)?;
    let rid = rid(req.uri().query())?;

    let method = req.method().as_str().to_owned();
    let user_agent = req.headers().get(header::USER_AGENT).map(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .chars()
            .take(MAX_USER_AGENT)
            .collect::<String>()
    });
    // The web tier is published directly (no proxy in front), so the peer is the source.
    let remote_addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());

    let limit = app.config.ping_body_limit;
    let body = axum::body::to_bytes(req.into_body(), READ_CAP.max(limit))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("ping body over {} bytes", READ_CAP.max(limit)),
            )
            .with_field("body")
        })?;
    let truncated = body.len() > limit;
    let kept = &body[..body.len().min(limit)];

    let ping = Incoming {
        ping_uuid: uuid,
        kind,
        exit_status,
        rid,
        method,
        user_agent,
        remote_addr,
        body: (!kept.is_empty()).then(|| kept.to_vec()),
        body_size: i32::try_from(body.len()).unwrap_or(i32::MAX),
        body_truncated: truncated,
        at: app.config.clock.now(),
    };
    match app.writers.submit(ping).await? {
        Outcome::Recorded => {}
        Outcome::UnknownCheck => return Err(ApiError::not_found("check")),
        Outcome::Unreadable => {
            return Err(ApiError::internal(anyhow::anyhow!("check row unreadable")));
        }
    }

    let mut response = (StatusCode::OK, "OK").into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&limit.to_string()) {
        headers.insert("ping-body-limit", v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_actions_and_exit_codes() {
        assert_eq!(action(None).unwrap(), (PingKind::Success, None));
        assert_eq!(action(Some("start")).unwrap(), (PingKind::Start, None));
        assert_eq!(action(Some("0")).unwrap(), (PingKind::Success, Some(0)));
        assert_eq!(action(Some("255")).unwrap(), (PingKind::Fail, Some(255)));
        assert_eq!(
            action(Some("256")).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            action(Some("99999999999")).unwrap_err().status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            action(Some("-1")).unwrap_err().status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            action(Some("nope")).unwrap_err().status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn only_canonical_uuids_route_and_rids_must_be_uuids() {
        let u = "5f0c6b1e-8d1a-4c1e-9f1a-0a1b2c3d4e5f";
        assert!(ping_uuid(u).is_ok());
        assert!(ping_uuid(&u.to_uppercase()).is_err());
        assert!(ping_uuid(&u.replace('-', "")).is_err());
        assert_eq!(
            rid(Some(&format!("rid={u}"))).unwrap(),
            Some(Uuid::parse_str(u).unwrap())
        );
        assert!(
            rid(Some(&format!("rid={}", u.to_uppercase())))
                .unwrap()
                .is_some()
        );
        assert_eq!(
            rid(Some("rid=123")).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(rid(Some("other=1")).unwrap(), None);
    }
}
