//! Ingest: `/in/{source_id}` (and any path below it) takes any method and content type,
//! checks the source's signature scheme over the raw bytes, and answers 2xx only once the
//! event (and a delivery per enabled destination) has committed.
//!
//! Events are recorded by group commit: a handler hands its request to a writer task and
//! waits; the writer takes every request waiting for it and records them in one
//! transaction, then answers each. One commit for many events is what lets ingest outrun
//! one transaction per event, while every answer still follows its own event's commit.
//! Requests are spread over writers by source, so one source's duplicates meet in one
//! writer, in arrival order. A batch that fails is recorded again one request at a time, so
//! a request the database refuses fails alone.
//!
//! Memory is bounded by the ingest budget: a semaphore counting KiB of body held across the
//! process, taken before a body is read (its declared length, or chunk by chunk as a chunked
//! body grows) and given back once its event is recorded. A request that cannot get its share
//! within `ingest_budget_wait` gets 503 with `Retry-After`; a body that takes longer than
//! `body_timeout` to arrive gets 408. Neither stores anything.

use std::collections::HashMap;
use std::hash::{BuildHasher as _, RandomState};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use http_body_util::BodyExt as _;
use platform::ApiError;
use serde_json::{Value, json};
use sha2::Digest as _;
use sqlx::PgPool;
use sqlx::types::Json as SqlJson;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use uuid::Uuid;

use crate::App;
use crate::signature::{self, Scheme};

/// Most events in one transaction: bounds the transaction and its statements.
const MAX_BATCH: usize = 128;
/// Requests waiting per writer before handlers wait to hand theirs over: a stalled database
/// slows senders down instead of growing memory without end.
const QUEUE: usize = 1024;
/// Longest delivery id kept as sent; longer ones are kept as their SHA-256.
const MAX_KEY_LEN: usize = 200;
/// Least budget a chunked body takes at a time, in KiB: fewer trips to the semaphore.
const BUDGET_STEP_KIB: usize = 64;
/// What a 503 for an exhausted budget tells the sender to wait, in seconds.
const BUSY_RETRY_AFTER: &str = "1";

/// A request as received, stamped with its arrival time.
#[derive(Debug)]
pub struct Incoming {
    pub source_id: Uuid,
    pub received_at: DateTime<Utc>,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Stored {
        id: Uuid,
        signature: &'static str,
    },
    Duplicate {
        id: Uuid,
    },
    /// The signature did not hold and the source rejects such requests: nothing stored.
    Rejected(signature::Problem),
    UnknownSource,
}

struct Pending {
    request: Incoming,
    reply: oneshot::Sender<Result<Outcome, ()>>,
    /// The body's share of the ingest budget, given back when the request is done with,
    /// even if its sender hung up while it waited.
    _budget: Option<OwnedSemaphorePermit>,
}

#[derive(Clone, Debug)]
pub struct Writers {
    shards: Vec<mpsc::Sender<Pending>>,
    hasher: RandomState,
}

impl Writers {
    /// Starts `count` writer tasks; they end when the last `Writers` clone is dropped.
    pub fn spawn(pool: &PgPool, count: usize) -> Self {
        let shards = (0..count.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(run(pool.clone(), rx));
                tx
            })
            .collect();
        Self {
            shards,
            hasher: RandomState::new(),
        }
    }

    /// Records the request; returns once it is committed (or known not to be stored).
    /// `budget` is the body's share of the ingest budget, held until it is recorded.
    pub async fn submit(
        &self,
        request: Incoming,
        budget: Option<OwnedSemaphorePermit>,
    ) -> anyhow::Result<Outcome> {
        let shard = usize::try_from(self.hasher.hash_one(request.source_id)).unwrap_or(0)
            % self.shards.len();
        let (reply, answer) = oneshot::channel();
        self.shards[shard]
            .send(Pending {
                request,
                reply,
                _budget: budget,
            })
            .await
            .map_err(|_| anyhow::anyhow!("ingest writer stopped"))?;
        match answer.await {
            Ok(Ok(outcome)) => Ok(outcome),
            // The writer logged the cause.
            Ok(Err(())) => anyhow::bail!("recording the event failed"),
            Err(_) => anyhow::bail!("ingest writer stopped"),
        }
    }
}

async fn run(pool: PgPool, mut rx: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let requests: Vec<&Incoming> = batch.iter().map(|p| &p.request).collect();
        let answers: Vec<Result<Outcome, ()>> = match commit(&pool, &requests).await {
            Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
            // One request the database refuses (or a source deleted meanwhile) must not fail
            // the others: each is tried again in a transaction of its own. A database that
            // cannot be reached is not asked again per request.
            Err(e) if requests.len() > 1 && refused_by_database(&e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    events = requests.len(),
                    "recording a batch failed; recording its events one by one"
                );
                let mut answers = Vec::with_capacity(requests.len());
                let mut reachable = true;
                for request in &requests {
                    if !reachable {
                        answers.push(Err(()));
                        continue;
                    }
                    answers.push(match commit(&pool, &[request]).await {
                        Ok(mut outcomes) => outcomes.pop().ok_or(()),
                        Err(e) => {
                            reachable = refused_by_database(&e);
                            tracing::error!(
                                error = format!("{e:#}"),
                                source = %request.source_id,
                                "recording an event failed"
                            );
                            Err(())
                        }
                    });
                }
                answers
            }
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    events = requests.len(),
                    "recording events failed"
                );
                requests.iter().map(|_| Err(())).collect()
            }
        };
        drop(requests);
        for (pending, answer) in batch.drain(..).zip(answers) {
            // A sender that hung up does not care; its event is recorded all the same.
            let _ = pending.reply.send(answer);
        }
    }
}

/// Whether the database answered with an error about the statement (bad data, a constraint)
/// rather than being out of reach (pool timeout, connection lost).
fn refused_by_database(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<sqlx::Error>(),
        Some(sqlx::Error::Database(_))
    )
}

#[derive(sqlx::FromRow)]
struct SourceRow {
    id: Uuid,
    scheme: String,
    secret: Option<String>,
    on_bad_signature: String,
}

/// The columns of the events to insert, one vector per column for `UNNEST`.
#[derive(Default)]
struct Columns<'a> {
    id: Vec<Uuid>,
    source_id: Vec<Uuid>,
    received_at: Vec<DateTime<Utc>>,
    method: Vec<String>,
    path: Vec<String>,
    query: Vec<Option<String>>,
    headers: Vec<SqlJson<Value>>,
    content_type: Vec<Option<String>>,
    /// Borrowed from the requests: a body is never copied on its way to the database.
    body: Vec<&'a [u8]>,
    signature: Vec<&'static str>,
    signature_error: Vec<Option<String>>,
    delivery_key: Vec<Option<String>>,
}

async fn commit(pool: &PgPool, requests: &[&Incoming]) -> anyhow::Result<Vec<Outcome>> {
    let mut source_ids: Vec<Uuid> = requests.iter().map(|r| r.source_id).collect();
    source_ids.sort_unstable();
    source_ids.dedup();

    let mut tx = pool.begin().await?;
    let sources: HashMap<Uuid, SourceRow> = sqlx::query_as::<_, SourceRow>(
        "SELECT id, scheme, secret, on_bad_signature FROM sources WHERE id = ANY($1)",
    )
    .bind(&source_ids)
    .fetch_all(&mut *tx)
    .await
    .context("reading sources")?
    .into_iter()
    .map(|s| (s.id, s))
    .collect();

    let mut cols = Columns::default();
    let mut outcomes = Vec::with_capacity(requests.len());
    for &request in requests {
        let Some(source) = sources.get(&request.source_id) else {
            outcomes.push(Outcome::UnknownSource);
            continue;
        };
        // Stored values were validated on the way in; an unknown one checks as invalid.
        let scheme = Scheme::parse(&source.scheme);
        let now = request.received_at.timestamp();
        let checked = match scheme {
            Some(scheme) => signature::verify(
                scheme,
                source.secret.as_deref().unwrap_or_default(),
                &request.headers,
                &request.body,
                now,
            ),
            None => Err(signature::Problem::BadSecret),
        };
        let (verdict, problem) = match (scheme, checked) {
            (Some(Scheme::None), _) => ("none", None),
            (_, Ok(())) => ("valid", None),
            (_, Err(problem)) => ("invalid", Some(problem)),
        };
        if let Some(problem) = &problem {
            tracing::warn!(source = %source.id, %problem, "webhook signature did not hold");
            if source.on_bad_signature == "reject" {
                outcomes.push(Outcome::Rejected(problem.clone()));
                continue;
            }
        }

        // Only a request that proved itself may claim a delivery id (see the schema).
        let key = match (scheme, &problem) {
            (Some(scheme), None) => {
                signature::delivery_id(scheme, &request.headers, &request.body).and_then(usable_key)
            }
            _ => None,
        };
        let id = Uuid::new_v4();
        cols.id.push(id);
        cols.source_id.push(source.id);
        cols.received_at.push(request.received_at);
        cols.method.push(request.method.clone());
        cols.path.push(request.path.clone());
        cols.query.push(request.query.clone());
        cols.headers.push(SqlJson(headers_json(&request.headers)));
        cols.content_type.push(
            request
                .headers
                .get("content-type")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        );
        cols.body.push(&request.body);
        cols.signature.push(verdict);
        cols.signature_error.push(problem.map(|p| p.to_string()));
        cols.delivery_key.push(key);
        outcomes.push(Outcome::Stored {
            id,
            signature: verdict,
        });
    }
    if cols.id.is_empty() {
        return Ok(outcomes);
    }

    // A repeated delivery id is skipped here, also within this batch.
    let inserted: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO events (id, source_id, received_at, method, path, query, headers,
             content_type, body, signature, signature_error, delivery_key)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[],
             $5::text[], $6::text[], $7::jsonb[], $8::text[], $9::bytea[], $10::text[],
             $11::text[], $12::text[])
         ON CONFLICT (source_id, delivery_key) DO NOTHING
         RETURNING id",
    )
    .bind(&cols.id)
    .bind(&cols.source_id)
    .bind(&cols.received_at)
    .bind(&cols.method)
    .bind(&cols.path)
    .bind(&cols.query)
    .bind(&cols.headers)
    .bind(&cols.content_type)
    .bind(&cols.body)
    .bind(&cols.signature)
    .bind(&cols.signature_error)
    .bind(&cols.delivery_key)
    .fetch_all(&mut *tx)
    .await
    .context("inserting events")?;

    if !inserted.is_empty() {
        // Forwarded are the events whose signature held or was not asked for; a marked
        // one waits for a person to replay it.
        let now = requests.iter().map(|r| r.received_at).max();
        sqlx::query(
            "INSERT INTO deliveries (id, event_id, destination_id, next_attempt_at, created_at)
             SELECT gen_random_uuid(), e.id, d.id, $2, $2
             FROM events e JOIN destinations d ON d.source_id = e.source_id AND d.enabled
             WHERE e.id = ANY($1) AND e.signature <> 'invalid'",
        )
        .bind(&inserted)
        .bind(now)
        .execute(&mut *tx)
        .await
        .context("creating deliveries")?;
    }

    let duplicates: Vec<usize> = cols
        .id
        .iter()
        .enumerate()
        .filter(|(_, id)| !inserted.contains(id))
        .map(|(i, _)| i)
        .collect();
    let mut existing: HashMap<(Uuid, String), Uuid> = HashMap::new();
    if !duplicates.is_empty() {
        let sources: Vec<Uuid> = duplicates.iter().map(|&i| cols.source_id[i]).collect();
        let keys: Vec<Option<String>> = duplicates
            .iter()
            .map(|&i| cols.delivery_key[i].clone())
            .collect();
        let rows: Vec<(Uuid, String, Uuid)> = sqlx::query_as(
            "SELECT e.source_id, e.delivery_key, e.id FROM events e
             JOIN UNNEST($1::uuid[], $2::text[]) AS k(source_id, key)
               ON e.source_id = k.source_id AND e.delivery_key = k.key",
        )
        .bind(&sources)
        .bind(&keys)
        .fetch_all(&mut *tx)
        .await
        .context("finding duplicates")?;
        existing = rows.into_iter().map(|(s, k, id)| ((s, k), id)).collect();
    }
    tx.commit().await.context("committing events")?;

    for outcome in &mut outcomes {
        let Outcome::Stored { id, .. } = outcome else {
            continue;
        };
        if inserted.contains(id) {
            continue;
        }
        let Some(i) = cols.id.iter().position(|c| c == id) else {
            continue;
        };
        let found = cols.delivery_key[i]
            .clone()
            .and_then(|k| existing.get(&(cols.source_id[i], k)).copied());
        *outcome = match found {
            Some(existing) => Outcome::Duplicate { id: existing },
            // Not inserted and not found: only a concurrent delete of the source does this.
            None => Outcome::UnknownSource,
        };
    }
    Ok(outcomes)
}

/// The delivery id as stored: one with control characters (a NUL cannot be stored as text)
/// is treated as absent, so the event is stored without deduplication; a long one is kept
/// as its digest.
fn usable_key(key: String) -> Option<String> {
    if key.chars().any(char::is_control) {
        tracing::debug!("delivery id with control characters ignored");
        return None;
    }
    Some(bounded_key(key))
}

fn bounded_key(key: String) -> String {
    if key.len() <= MAX_KEY_LEN {
        return key;
    }
    let digest = sha2::Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Headers as `[[name, value], ...]`. Known shortcomings: the order is by name, each name
/// where it first arrived with all its values together (the `HeaderMap` order), not the
/// exact interleaving on the wire; a value that is not UTF-8 (HTTP allows such bytes) is kept
/// with its invalid bytes replaced, as JSON holds only text, and is forwarded that way; and
/// the shared request frame sets `x-request-id` before this sees the headers, so a request
/// without one is stored with the id it was given (and a sender's malformed one replaced).
pub fn headers_json(headers: &HeaderMap) -> Value {
    Value::Array(
        headers
            .iter()
            .map(|(name, value)| json!([name.as_str(), String::from_utf8_lossy(value.as_bytes())]))
            .collect(),
    )
}

/// The source id of an ingest path: `/in/{id}` or `/in/{id}/anything`.
fn source_of(path: &str) -> Option<Uuid> {
    let rest = path.strip_prefix("/in/")?;
    let id = rest.split('/').next()?;
    Uuid::parse_str(id).ok()
}

fn too_large(limit: usize) -> Response {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("request body over {limit} bytes"),
    )
    .with_field("body")
    .into_response()
}

fn busy() -> Response {
    let mut response = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "too many request bodies in flight; try again shortly",
    )
    .with_field("body")
    .into_response();
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(BUSY_RETRY_AFTER),
    );
    response
}

fn too_slow(timeout: Duration) -> Response {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "timeout",
        format!("request body not received within {} s", timeout.as_secs()),
    )
    .with_field("body")
    .into_response()
}

/// The share of the ingest budget one body holds, in KiB.
struct Share {
    budget: Arc<Semaphore>,
    wait: Duration,
    held: Option<OwnedSemaphorePermit>,
}

impl Share {
    fn kib(&self) -> usize {
        self.held
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// Takes `kib` more; 503 if they are not free within the wait.
    async fn grow(&mut self, kib: usize) -> Result<(), Response> {
        let Ok(n) = u32::try_from(kib) else {
            return Err(busy());
        };
        if n == 0 {
            return Ok(());
        }
        let permit = match self.budget.clone().try_acquire_many_owned(n) {
            Ok(permit) => permit,
            Err(_) => {
                match tokio::time::timeout(self.wait, self.budget.clone().acquire_many_owned(n))
                    .await
                {
                    Ok(Ok(permit)) => permit,
                    // Timed out, or a request larger than the whole budget (config prevents it).
                    _ => {
                        tracing::warn!(kib, "ingest budget exhausted; answered 503");
                        return Err(busy());
                    }
                }
            }
        };
        match &mut self.held {
            Some(held) => held.merge(permit),
            None => self.held = Some(permit),
        }
        Ok(())
    }
}

/// Reads the whole body, up to `limit` bytes, holding its share of the ingest budget. A
/// declared length over the limit is refused before reading, and a declared length takes its
/// whole share before reading; a chunked body takes its share as it grows and is cut off at
/// the limit, so neither is ever held whole. The bytes are copied once, out of the
/// connection's buffers.
async fn read_body(
    app: &App,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), Response> {
    let limit = app.config.body_limit;
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let declared = declared.and_then(|n| usize::try_from(n).ok());
    let mut share = Share {
        budget: app.budget.clone(),
        wait: app.config.ingest_budget_wait,
        held: None,
    };
    if let Some(n) = declared {
        share.grow(n.div_ceil(1024)).await?;
    }

    let timeout = app.config.body_timeout;
    let read = async {
        let mut body = body;
        let mut buf: Vec<u8> = Vec::with_capacity(declared.unwrap_or(0));
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                tracing::debug!(error = %e, "ingest body unreadable");
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "the request body could not be read",
                )
                .with_field("body")
                .into_response()
            })?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            let len = buf.len() + data.len();
            if len > limit {
                return Err(too_large(limit));
            }
            let need = len.div_ceil(1024);
            if need > share.kib() {
                let step = (need - share.kib())
                    .max(BUDGET_STEP_KIB)
                    .min(limit.div_ceil(1024) - share.kib());
                share.grow(step).await?;
            }
            buf.extend_from_slice(&data);
        }
        Ok(Bytes::from(buf))
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(bytes)) => Ok((bytes, share.held)),
        Ok(Err(response)) => Err(response),
        Err(_) => Err(too_slow(timeout)),
    }
}

/// Any method at `/in/{source_id}[/...]`.
pub async fn receive(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match receive_inner(&app, method, uri, headers, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn receive_inner(
    app: &App,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let source_id = source_of(uri.path()).ok_or_else(|| ApiError::not_found("source"))?;
    let received_at = app.config.clock.now();
    let (body, budget) = match read_body(app, &headers, body).await {
        Ok(read) => read,
        Err(response) => return Ok(response),
    };

    let request = Incoming {
        source_id,
        received_at,
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body,
    };
    match app.writers.submit(request, budget).await? {
        Outcome::Stored { id, signature } => Ok((
            StatusCode::OK,
            Json(json!({ "id": id, "duplicate": false, "signature": signature })),
        )
            .into_response()),
        Outcome::Duplicate { id } => {
            Ok(Json(json!({ "id": id, "duplicate": true })).into_response())
        }
        Outcome::Rejected(problem) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            problem.to_string(),
        )),
        Outcome::UnknownSource => Err(ApiError::not_found("source")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_paths_name_their_source() {
        let id = Uuid::new_v4();
        assert_eq!(source_of(&format!("/in/{id}")), Some(id));
        assert_eq!(source_of(&format!("/in/{id}/github/push")), Some(id));
        assert_eq!(source_of("/in/not-a-uuid"), None);
        assert_eq!(source_of("/in/"), None);
    }

    #[test]
    fn an_unreachable_database_is_not_asked_again_per_request() {
        let unreachable = anyhow::Error::from(sqlx::Error::PoolTimedOut).context("reading sources");
        assert!(!refused_by_database(&unreachable));
        assert!(!refused_by_database(&anyhow::anyhow!("other")));
    }

    #[test]
    fn delivery_ids_with_control_characters_are_treated_as_absent() {
        assert_eq!(usable_key("evt_1".into()).as_deref(), Some("evt_1"));
        assert_eq!(usable_key("evt_\u{0}x".into()), None);
        assert_eq!(usable_key("evt\n".into()), None);
        assert_eq!(usable_key("evt\u{7f}".into()), None);
        assert_eq!(usable_key("évt_ü".into()).as_deref(), Some("évt_ü"));
    }

    #[test]
    fn long_delivery_ids_are_kept_as_their_digest() {
        assert_eq!(bounded_key("evt_1".into()), "evt_1");
        let long = bounded_key("x".repeat(500));
        assert!(
            long.starts_with("sha256:") && long.len() == 7 + 64,
            "{long}"
        );
    }
}
