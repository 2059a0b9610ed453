//! WebhookVault's own settings, read once at start, the clock every time comes from, and the
//! resolver deliveries look names up with.

use std::time::Duration;

use ipnet::IpNet;
use platform::{BaseConfig, ConfigError, Env};
use secrecy::{ExposeSecret as _, SecretString};

pub use platform::clock::Clock;

/// Shortest admin key accepted: anything shorter is guessable.
const MIN_KEY_LEN: usize = 16;

/// Largest `BODY_LIMIT` accepted. The worker holds up to `WORKER_CONCURRENCY` bodies at
/// once, each twice while it is sent (32 x 2 x 4 MiB = 256 MiB at the defaults), which is
/// what its 512 MiB container is sized for; the web tier's bodies are bounded by the ingest
/// budget instead.
pub const MAX_BODY_LIMIT: usize = 4 << 20;

/// Default ingest budget: bodies being read or waiting to be recorded, in KiB, across the web
/// process. 64 MiB keeps the web tier well inside its 256 MiB container.
pub const DEFAULT_INGEST_BUDGET_KIB: usize = 64 << 10;

/// The delivery retry schedule when none is configured: the delays before the 2nd, 3rd, ...
/// attempt (5 s, 5 min, 30 min, 2 h, 5 h, 10 h), so 7 attempts in all.
pub const DEFAULT_SCHEDULE: [u64; 6] = [5, 300, 1800, 7200, 18_000, 36_000];

#[derive(Clone, Debug)]
pub struct Config {
    /// The admin API key. Without one the API refuses every request (ingest, the worker and
    /// `migrate` need none).
    pub admin_key: Option<SecretString>,
    /// Base of the ingest URLs shown to clients, without a trailing slash.
    pub public_url: String,
    /// Largest request body ingest stores; larger ones get 413 and nothing is stored.
    pub body_limit: usize,
    /// Body bytes ingest may hold at once across the process (read, or waiting to be
    /// recorded), in KiB. A request that cannot get its share within `ingest_budget_wait` gets
    /// 503 with `Retry-After`; never smaller than `body_limit`.
    pub ingest_budget_kib: usize,
    /// How long a request waits for its share of the ingest budget before 503.
    pub ingest_budget_wait: Duration,
    /// Time limit for reading one ingest request's body; a slower sender gets 408.
    pub body_timeout: Duration,
    /// Tasks recording ingested events, each one transaction at a time (see `ingest`).
    pub ingest_writers: usize,
    /// Time limit of one delivery attempt, from connecting to the end of the response.
    pub delivery_timeout: Duration,
    /// How long a claimed delivery is the claimer's; always longer than `delivery_timeout`.
    pub lease: Duration,
    /// Delays before each retry; attempts in all are its length plus one.
    pub retry_schedule: Vec<Duration>,
    /// Jitter applied to each retry delay, as a fraction (0.2: ±20 %).
    pub jitter: f64,
    /// Deliveries in flight at once per worker.
    pub worker_concurrency: usize,
    /// Deliveries in flight at once to one destination, per worker.
    pub destination_concurrency: usize,
    /// How often an idle worker looks for due deliveries.
    pub poll_interval: Duration,
    /// Address ranges deliveries may go to although they are private, loopback or
    /// link-local.
    pub allow: Vec<IpNet>,
    pub clock: Clock,
    pub resolver: Resolver,
}

impl Config {
    /// Defaults for everything; what tests start from.
    pub fn new(public_url: impl Into<String>) -> Self {
        Self {
            admin_key: None,
            public_url: public_url.into(),
            body_limit: 1 << 20,
            ingest_budget_kib: DEFAULT_INGEST_BUDGET_KIB,
            ingest_budget_wait: Duration::from_secs(1),
            body_timeout: Duration::from_secs(30),
            ingest_writers: 2,
            delivery_timeout: Duration::from_secs(15),
            lease: Duration::from_secs(60),
            retry_schedule: DEFAULT_SCHEDULE.map(Duration::from_secs).to_vec(),
            jitter: 0.2,
            worker_concurrency: 32,
            destination_concurrency: 4,
            poll_interval: Duration::from_millis(500),
            allow: Vec::new(),
            clock: Clock::system(),
            resolver: Resolver::system(),
        }
    }

    /// Attempts a delivery gets before it is dead-lettered.
    pub fn max_attempts(&self) -> i32 {
        i32::try_from(self.retry_schedule.len() + 1).unwrap_or(i32::MAX)
    }

    pub fn from_env(env: &Env, _base: &BaseConfig) -> Result<Self, ConfigError> {
        let error = |name: &str, problem: String| ConfigError {
            var: env.var_name(name),
            problem,
        };

        let admin_key = env.optional_secret("ADMIN_KEY")?;
        if admin_key
            .as_ref()
            .is_some_and(|k| k.expose_secret().trim().len() < MIN_KEY_LEN)
        {
            return Err(error(
                "ADMIN_KEY",
                format!("shorter than {MIN_KEY_LEN} characters"),
            ));
        }

        let public_url: String = env.parse_or("PUBLIC_URL", "http://127.0.0.1:8084".to_owned())?;
        let body_limit: usize = env.parse_or("BODY_LIMIT", 1usize << 20)?;
        if !(1..=MAX_BODY_LIMIT).contains(&body_limit) {
            return Err(error(
                "BODY_LIMIT",
                format!("must be 1 to {MAX_BODY_LIMIT} bytes"),
            ));
        }
        let ingest_budget_kib: usize =
            env.parse_or("INGEST_BUDGET_KIB", DEFAULT_INGEST_BUDGET_KIB)?;
        // The semaphore counts KiB in u32 permits; 1 TiB is far past any sane budget.
        if ingest_budget_kib < body_limit.div_ceil(1024) || ingest_budget_kib > 1 << 30 {
            return Err(error(
                "INGEST_BUDGET_KIB",
                "must hold at least one body of BODY_LIMIT bytes, and at most 1 TiB".into(),
            ));
        }
        let body_timeout = env.seconds_or("BODY_TIMEOUT_SECS", 30, 1..=600)?;

        let delivery_timeout = env.seconds_or("DELIVERY_TIMEOUT_SECS", 15, 1..=120)?;
        let lease = env.seconds_or("LEASE_SECS", 60, 2..=3600)?;
        // A lease that ran out while its request is still running would let a second worker
        // send the same delivery at the same time.
        if lease <= delivery_timeout + Duration::from_secs(5) {
            return Err(error(
                "LEASE_SECS",
                "must exceed the delivery timeout by more than 5 seconds".into(),
            ));
        }

        let schedule = env.get("RETRY_SCHEDULE")?;
        let retry_schedule = match schedule {
            None => DEFAULT_SCHEDULE.map(Duration::from_secs).to_vec(),
            Some(raw) => parse_schedule(&raw).map_err(|p| error("RETRY_SCHEDULE", p))?,
        };

        let jitter: f64 = env.parse_or("RETRY_JITTER", 0.2)?;
        if !(0.0..=0.5).contains(&jitter) {
            return Err(error("RETRY_JITTER", "must be between 0 and 0.5".into()));
        }

        let allow = env.cidrs("DELIVERY_ALLOW_CIDRS")?;

        Ok(Self {
            admin_key,
            public_url: public_url.trim_end_matches('/').to_owned(),
            body_limit,
            ingest_budget_kib,
            ingest_budget_wait: Duration::from_millis(
                env.parse_or("INGEST_BUDGET_WAIT_MS", 1000u64)?.min(30_000),
            ),
            body_timeout,
            ingest_writers: env.parse_or("INGEST_WRITERS", 2usize)?.clamp(1, 16),
            delivery_timeout,
            lease,
            retry_schedule,
            jitter,
            worker_concurrency: env.parse_or("WORKER_CONCURRENCY", 32usize)?.clamp(1, 512),
            destination_concurrency: env
                .parse_or("DESTINATION_CONCURRENCY", 4usize)?
                .clamp(1, 64),
            poll_interval: Duration::from_millis(
                env.parse_or("POLL_INTERVAL_MS", 500u64)?.clamp(10, 60_000),
            ),
            allow,
            clock: Clock::system(),
            resolver: Resolver::system(),
        })
    }
}

/// A comma-separated list of delays, each seconds (`300`) or milliseconds (`250ms`).
pub fn parse_schedule(raw: &str) -> Result<Vec<Duration>, String> {
    let delays: Vec<Duration> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let parsed = match s.strip_suffix("ms") {
                Some(ms) => ms.trim().parse().map(Duration::from_millis),
                None => s
                    .strip_suffix('s')
                    .unwrap_or(s)
                    .trim()
                    .parse()
                    .map(Duration::from_secs),
            };
            parsed.map_err(|_| format!("{s:?} is not a number of seconds or of milliseconds (ms)"))
        })
        .collect::<Result<_, _>>()?;
    if delays.len() > 50 {
        return Err("at most 50 retries".into());
    }
    if delays.iter().any(|d| *d > Duration::from_secs(7 * 86_400)) {
        return Err("each delay is at most 7 days".into());
    }
    Ok(delays)
}

pub use platform::egress::Resolver;

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &'static [(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let env = Env::with_lookup("webhookvault", move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        });
        let base = BaseConfig::from_env(&Env::with_lookup("webhookvault", |name| {
            (name == "WEBHOOKVAULT_DATABASE_URL").then(|| "postgres://u@h/db".to_owned())
        }))?;
        Config::from_env(&env, &base)
    }

    #[test]
    fn defaults_need_no_variables() {
        let c = config(&[]).unwrap();
        assert!(c.admin_key.is_none());
        assert_eq!(c.body_limit, 1 << 20);
        assert_eq!(c.ingest_budget_kib, 64 << 10);
        assert_eq!(c.body_timeout, Duration::from_secs(30));
        assert_eq!(c.max_attempts(), 7);
        assert_eq!(c.retry_schedule[1], Duration::from_secs(300));
        assert_eq!(c.delivery_timeout, Duration::from_secs(15));
        assert!(c.lease > c.delivery_timeout);
        assert!(c.allow.is_empty());
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        let err = config(&[("WEBHOOKVAULT_ADMIN_KEY", "short")]).unwrap_err();
        assert_eq!(err.var, "WEBHOOKVAULT_ADMIN_KEY");
        let err = config(&[("WEBHOOKVAULT_LEASE_SECS", "15")]).unwrap_err();
        assert_eq!(err.var, "WEBHOOKVAULT_LEASE_SECS");
        let err = config(&[("WEBHOOKVAULT_RETRY_SCHEDULE", "5, soon")]).unwrap_err();
        assert!(err.problem.contains("soon"), "{}", err.problem);
        let err = config(&[("WEBHOOKVAULT_DELIVERY_ALLOW_CIDRS", "10.0.0.0/8, x")]).unwrap_err();
        assert_eq!(err.var, "WEBHOOKVAULT_DELIVERY_ALLOW_CIDRS");
        let err = config(&[("WEBHOOKVAULT_BODY_LIMIT", "0")]).unwrap_err();
        assert_eq!(err.var, "WEBHOOKVAULT_BODY_LIMIT");
        let err = config(&[("WEBHOOKVAULT_BODY_LIMIT", "67108864")]).unwrap_err();
        assert_eq!(err.var, "WEBHOOKVAULT_BODY_LIMIT");
        let err = config(&[
            ("WEBHOOKVAULT_BODY_LIMIT", "1048576"),
            ("WEBHOOKVAULT_INGEST_BUDGET_KIB", "512"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "WEBHOOKVAULT_INGEST_BUDGET_KIB");
    }

    #[test]
    fn schedules_take_seconds_and_milliseconds() {
        assert_eq!(
            parse_schedule("5, 250ms,2s").unwrap(),
            [
                Duration::from_secs(5),
                Duration::from_millis(250),
                Duration::from_secs(2)
            ]
        );
        let c = config(&[
            ("WEBHOOKVAULT_RETRY_SCHEDULE", "1,2,3"),
            ("WEBHOOKVAULT_ADMIN_KEY", "an-admin-key-long-enough"),
        ])
        .unwrap();
        assert_eq!(c.max_attempts(), 4);
        assert!(!format!("{c:?}").contains("an-admin-key-long-enough"));
    }
}
