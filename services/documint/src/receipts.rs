//! The receipt route: the one way another product (FlagBit) reaches DocuMint.
//!
//! `POST /internal/v1/receipts` renders the built-in `usage-receipt` template with the
//! caller's data and answers with the PDF. It is served by a web process of its own
//! (`DOCUMINT_SERVE=receipts`) on a network only FlagBit's worker shares, never published.
//!
//! Callers (`DOCUMINT_RECEIPTS_ALLOW_FROM`, e.g. `flagbit-worker`): names resolved on each
//! request; a connection from any other address is refused with 403. On the receipts
//! network that leaves FlagBit's worker alone: the host (which reaches every Docker bridge
//! through its gateway address) and DocuMint's own containers are turned away even in
//! `none` mode.
//!
//! Authentication (`DOCUMINT_RECEIPTS_AUTH`): `none` trusts that network; `jwt` (the
//! default) also wants a service token (see the `service-token` crate) from the caller
//! `flagbit` for the action `receipt:create`, bound to this request's body, never used
//! before. Used token ids are kept in the database until the token would have expired, so a
//! replay is refused across restarts and replicas; when the database cannot say, the
//! request is refused (fail closed).
//!
//! The render is synchronous: a receipt is one page and renders in tens of milliseconds,
//! and the caller stores the result, so DocuMint keeps no copy.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use platform::{ApiError, ConfigError, Env};
use secrecy::ExposeSecret as _;
use serde_json::Value;
use service_token::{Policy, Refusal, Verifier};
use sha2::{Digest as _, Sha256};

use crate::App;
use crate::render::{RenderError, RenderJob};

pub const PATH: &str = "/internal/v1/receipts";
/// The one caller and what it may do.
pub const CALLER: &str = "flagbit";
pub const ACTION: &str = "receipt:create";
const TEMPLATE: &str = "usage-receipt";
/// A receipt's data: a month of counts per environment and flag.
const MAX_BODY: usize = 256 * 1024;
const MAX_REFERENCE: usize = 100;

/// How callers of the receipt route are authenticated.
#[derive(Clone)]
pub enum Auth {
    /// The receipts network is the boundary.
    None,
    Jwt(Arc<Verifier>),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Jwt(verifier) => write!(f, "jwt(kids {:?})", verifier.kids()),
        }
    }
}

/// Who may call the receipt route, and how they prove it.
#[derive(Clone, Debug)]
pub struct Access {
    pub auth: Auth,
    /// Host names (or addresses) whose addresses may connect; empty allows any peer.
    pub allow_from: Vec<String>,
}

impl Access {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let allow_from = env
            .get("RECEIPTS_ALLOW_FROM")?
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Self {
            auth: Auth::from_env(env)?,
            allow_from,
        })
    }

    /// Whether `peer` is one of the allowed callers' addresses right now.
    async fn admits(&self, peer: std::net::IpAddr) -> bool {
        if self.allow_from.is_empty() {
            return true;
        }
        for name in &self.allow_from {
            if let Ok(mut addrs) = tokio::net::lookup_host((name.as_str(), 0)).await
                && addrs.any(|a| a.ip() == peer)
            {
                return true;
            }
        }
        false
    }
}

impl Auth {
    /// `DOCUMINT_RECEIPTS_AUTH` and, for `jwt`, the key set in `DOCUMINT_RECEIPTS_KEYS_FILE`
    /// (`kid=secret` lines). A missing, empty or short key stops the process at start.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let bad = |name: &str, problem: String| ConfigError {
            var: env.var_name(name),
            problem,
        };

        match env.get("RECEIPTS_AUTH")?.as_deref().unwrap_or("jwt") {
            "none" => Ok(Self::None),
            "jwt" => {
                let keys = env
                    .get("RECEIPTS_KEYS")?
                    .map(secrecy::SecretString::from)
                    .ok_or_else(|| {
                        bad("RECEIPTS_KEYS", "required with RECEIPTS_AUTH=jwt".into())
                    })?;
                let keys = service_token::parse_keys(keys.expose_secret())
                    .map_err(|e| bad("RECEIPTS_KEYS", e.to_string()))?;
                let policy = Policy::new("documint").allow(CALLER, ACTION);
                let verifier = Verifier::new(&keys, policy)
                    .map_err(|e| bad("RECEIPTS_KEYS", e.to_string()))?;
                Ok(Self::Jwt(Arc::new(verifier)))
            }
            other => Err(bad(
                "RECEIPTS_AUTH",
                format!("{other:?} is not none or jwt"),
            )),
        }
    }
}

#[derive(Clone)]
struct Receipts {
    app: App,
    access: Access,
}

/// The receipt listener's routes (the shared frame adds health and readiness).
pub fn router(app: App, access: Access) -> Router {
    tracing::info!(
        auth = ?access.auth,
        allow_from = ?access.allow_from,
        "serving the receipt route"
    );
    Router::new()
        .route(PATH, post(create))
        .with_state(Receipts { app, access })
}

async fn create(
    State(receipts): State<Receipts>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if !receipts.access.admits(peer.ip()).await {
        tracing::warn!(peer = %peer.ip(), "receipt call from an address not allowed to call");
        return Err(ApiError::forbidden("not an allowed caller"));
    }

    let body = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than {MAX_BODY} bytes"),
        )
    })?;

    if let Auth::Jwt(verifier) = &receipts.access.auth {
        let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
        authenticate(&receipts.app, verifier, &headers, path, &body).await?;
    }

    let request: Value = platform::http::json_body(Body::from(body), MAX_BODY).await?;
    let reference = match request.get("reference") {
        Some(Value::String(text)) if !text.is_empty() && text.len() <= MAX_REFERENCE => {
            text.clone()
        }
        _ => {
            return Err(ApiError::invalid(
                "reference",
                format!("required: a string of 1 to {MAX_REFERENCE} characters"),
            ));
        }
    };
    let data = match request.get("data") {
        Some(data @ Value::Object(_)) => data,
        _ => return Err(ApiError::invalid("data", "required: an object")),
    };
    crate::data::check(data).map_err(|invalid| ApiError::invalid(invalid.path, invalid.message))?;

    render(&receipts.app, &reference, data).await
}

/// Checks the bearer token, then records its id; any failure is a bare 401.
async fn authenticate(
    app: &App,
    verifier: &Verifier,
    headers: &HeaderMap,
    path: &str,
    body: &[u8],
) -> Result<(), ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        })
        .unwrap_or("");
    let now = app.config.clock.now();
    let seconds = u64::try_from(now.timestamp()).unwrap_or(0);
    let request = service_token::Request {
        method: "POST",
        path,
        body,
    };

    let verified = verifier.verify(token, &request, seconds).map_err(refused)?;

    let remember_until = chrono::DateTime::from_timestamp(
        i64::try_from(verified.remember_until).unwrap_or(i64::MAX),
        0,
    )
    .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
    let first_use = remember(app, &verified.issuer, &verified.jti, remember_until, now)
        .await
        .map_err(|e| ApiError::unavailable("cannot check the token", e.into()))?;
    if !first_use {
        return Err(refused(Refusal {
            reason: service_token::Reason::Replayed,
            kid: Some(verified.kid),
            jti: Some(verified.jti),
        }));
    }
    Ok(())
}

fn refused(refusal: Refusal) -> ApiError {
    tracing::warn!(
        reason = refusal.reason.as_str(),
        kid = refusal.kid.as_deref().unwrap_or("-"),
        jti = refusal.jti.as_deref().unwrap_or("-"),
        "service token refused"
    );
    ApiError::unauthorized()
}

/// Records a token id; false when it was already there.
async fn remember(
    app: &App,
    issuer: &str,
    jti: &str,
    until: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, sqlx::Error> {
    sqlx::query("DELETE FROM service_token_uses WHERE remember_until < $1")
        .bind(now)
        .execute(&app.pool)
        .await?;
    let inserted = sqlx::query(
        "INSERT INTO service_token_uses (issuer, jti, remember_until) VALUES ($1, $2, $3)
         ON CONFLICT (issuer, jti) DO NOTHING",
    )
    .bind(issuer)
    .bind(jti)
    .bind(until)
    .execute(&app.pool)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

async fn render(app: &App, reference: &str, data: &Value) -> Result<Response, ApiError> {
    app.builtins()
        .await
        .map_err(|e| ApiError::unavailable("templates unavailable", e.into()))?;
    let template = crate::store::find_template(&app.pool, TEMPLATE)
        .await
        .map_err(|e| ApiError::unavailable("templates unavailable", e.into()))?
        .ok_or_else(|| ApiError::not_found("template usage-receipt"))?;

    let job = RenderJob {
        source: &template.source,
        data,
        options: &template.options,
        title: Some("Usage receipt"),
        author: None,
        standard: None,
        date: Some(app.config.clock.now().format("%Y-%m-%d").to_string()),
        ident: reference.to_owned(),
        max_pages: app.config.render.max_pages,
    };
    let rendered = app
        .renderer
        .render(&job)
        .await
        .map_err(|error| match error {
            RenderError::Infrastructure(source) => {
                ApiError::unavailable("the renderer is unavailable", source)
            }
            other => {
                let code = match other.code() {
                    "template_error" => "template_error",
                    "timeout" => "timeout",
                    "resource_limit" => "resource_limit",
                    "render_crashed" => "render_crashed",
                    _ => "render_failed",
                };
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    code,
                    other.message(&app.config.render),
                )
            }
        })?;

    let etag = Sha256::digest(&rendered.pdf)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    let mut response = rendered.pdf.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pdf"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        headers.insert(header::ETAG, value);
    }
    Ok(response)
}
