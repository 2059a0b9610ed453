//! The web tier's in-memory copy of every environment's flags and SDK keys, which is all
//! evaluation reads. It is reloaded whole when PostgreSQL announces a change
//! (`LISTEN flagbit_changes`, sent by triggers at commit) and on a timer in case a
//! notification was lost while the listening connection was down.
//!
//! Reloading everything rather than one environment keeps the code obviously right; the
//! data is small (thousands of flags at most). Readers take the current `Arc` under a
//! read lock held for a pointer copy, so a reload never blocks evaluation.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::model::{FlagFile, FlagSet};

pub const CHANNEL: &str = "flagbit_changes";

/// One environment, compiled.
#[derive(Debug, Default)]
pub struct Environment {
    pub id: i64,
    pub name: String,
    pub flags: FlagSet,
}

#[derive(Debug, Default)]
pub struct Snapshot {
    /// SHA-256 of an unrevoked SDK key → its environment's id.
    pub keys: HashMap<[u8; 32], i64>,
    pub environments: HashMap<i64, Arc<Environment>>,
    /// Counts reloads, so a test can wait for the one after its change.
    pub generation: u64,
}

impl Snapshot {
    pub fn environment_for_key(&self, key: &str) -> Option<&Arc<Environment>> {
        let id = self.keys.get(&hash_key(key))?;
        self.environments.get(id)
    }
}

pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The current snapshot, shared by handlers; `None` until the first load.
#[derive(Clone, Debug)]
pub struct Snapshots {
    current: Arc<RwLock<Option<Arc<Snapshot>>>>,
    loaded: watch::Sender<u64>,
}

impl Default for Snapshots {
    fn default() -> Self {
        Self {
            current: Arc::default(),
            loaded: watch::channel(0).0,
        }
    }
}

impl Snapshots {
    pub fn get(&self) -> Option<Arc<Snapshot>> {
        // A poisoned lock only means a panic elsewhere mid-swap of an Arc: the value is whole.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set(&self, mut snapshot: Snapshot) {
        let generation = *self.loaded.borrow() + 1;
        snapshot.generation = generation;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(snapshot));
        self.loaded.send_replace(generation);
    }

    /// Waits until a snapshot newer than `generation` is in place (tests and readiness).
    pub async fn wait_past(&self, generation: u64) {
        let mut rx = self.loaded.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we wait.
        let _ = rx.wait_for(|g| *g > generation).await;
    }

    /// Reads everything evaluation needs, in one repeatable-read transaction so flags and
    /// keys come from the same moment.
    pub async fn reload(&self, pool: &PgPool) -> anyhow::Result<()> {
        let mut tx = pool.begin().await.context("starting the snapshot read")?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;

        let envs: Vec<(i64, String, Value, Value)> =
            sqlx::query_as("SELECT id, name, evaluators, metadata FROM environments")
                .fetch_all(&mut *tx)
                .await
                .context("reading environments")?;
        let flags: Vec<(i64, String, Value)> =
            sqlx::query_as("SELECT environment_id, key, definition FROM flags")
                .fetch_all(&mut *tx)
                .await
                .context("reading flags")?;
        let keys: Vec<(Vec<u8>, i64)> = sqlx::query_as(
            "SELECT key_hash, environment_id FROM sdk_keys WHERE revoked_at IS NULL",
        )
        .fetch_all(&mut *tx)
        .await
        .context("reading SDK keys")?;
        tx.commit().await?;

        let mut files: HashMap<i64, (String, FlagFile)> = envs
            .into_iter()
            .map(|(id, name, evaluators, metadata)| {
                let file = FlagFile {
                    flags: Map::new(),
                    evaluators: into_map(evaluators),
                    metadata: into_map(metadata),
                };
                (id, (name, file))
            })
            .collect();
        for (env, key, def) in flags {
            if let Some((_, file)) = files.get_mut(&env) {
                file.flags.insert(key, def);
            }
        }

        let mut snapshot = Snapshot::default();
        for (id, (name, file)) in files {
            let (flags, problems) = FlagSet::load(&file);
            for p in problems {
                // Every write is validated, so this means a rule changed under stored data.
                tracing::error!(environment = %name, problem = %p, "stored flag does not load");
            }
            snapshot
                .environments
                .insert(id, Arc::new(Environment { id, name, flags }));
        }
        for (hash, env) in keys {
            if let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) {
                snapshot.keys.insert(hash, env);
            }
        }
        self.set(snapshot);
        Ok(())
    }

    /// Keeps the snapshot current until `shutdown`: listens for changes, reloads on each
    /// and every `every` regardless; reconnects after losing the listening connection.
    pub async fn follow(self, pool: PgPool, every: Duration, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        while !shutdown.is_cancelled() {
            match self.listen(&pool, every, &shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "flag snapshot: listening failed");
                    if !platform::worker::sleep_or_stop(backoff, &shutdown).await {
                        return;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn listen(
        &self,
        pool: &PgPool,
        every: Duration,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let mut listener = PgListener::connect_with(pool)
            .await
            .context("connecting the listener")?;
        listener.listen(CHANNEL).await.context("LISTEN")?;
        // Listen first, then load: a change committed in between is not missed.
        self.reload(pool).await?;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                n = listener.recv() => {
                    n.context("waiting for a notification")?;
                    // One reload covers every notification already queued.
                    while listener.next_buffered().is_some() {}
                    self.reload(pool).await?;
                }
                () = tokio::time::sleep(every) => self.reload(pool).await?,
            }
        }
    }
}

fn into_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
