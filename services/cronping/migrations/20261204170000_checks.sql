-- CronPing's schema: checks, their pings, their status flips, and alert deliveries.
--
-- Every time is timestamptz and computed in UTC by the application; a check's zone only
-- matters when its cron schedule is evaluated.

CREATE TABLE checks (
    id             uuid        PRIMARY KEY,
    -- The ping URL's secret; separate from `id` so that a read-only API key, which sees
    -- ids, cannot send pings.
    ping_uuid      uuid        NOT NULL UNIQUE,
    name           text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    slug           text        CHECK (slug ~ '^[a-z0-9_-]{1,100}$'),
    tags           text[]      NOT NULL DEFAULT '{}',
    -- Exactly one of timeout (period checks) and cron_expr (cron checks) is set.
    timeout_secs   integer     CHECK (timeout_secs BETWEEN 60 AND 31536000),
    cron_expr      text        CHECK (length(cron_expr) <= 100),
    tz             text        NOT NULL DEFAULT 'UTC',
    grace_secs     integer     NOT NULL CHECK (grace_secs BETWEEN 60 AND 31536000),
    webhook_url    text        CHECK (length(webhook_url) <= 2000),
    status         text        NOT NULL DEFAULT 'new'
                               CHECK (status IN ('new', 'up', 'down', 'paused')),
    last_ping      timestamptz,
    last_start     timestamptz,
    last_start_rid uuid,
    last_duration_ms bigint,
    n_pings        bigint      NOT NULL DEFAULT 0,
    -- When the check goes down unless a ping comes first (NULL: no timer runs). Written
    -- with every state change by the same code that computes it, so the worker finds
    -- overdue checks through the index below instead of evaluating every schedule.
    deadline       timestamptz,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    CHECK ((timeout_secs IS NULL) <> (cron_expr IS NULL))
);

CREATE INDEX checks_deadline ON checks (deadline) WHERE deadline IS NOT NULL;

-- One row per ping, numbered per check. Only the last N per check are kept: each ping
-- deletes the numbers that fell out of the window, a range on the primary key, so
-- pruning never scans the table.
CREATE TABLE pings (
    check_id       uuid        NOT NULL REFERENCES checks (id) ON DELETE CASCADE,
    n              bigint      NOT NULL,
    created_at     timestamptz NOT NULL,
    kind           text        NOT NULL CHECK (kind IN ('success', 'start', 'fail', 'log')),
    exit_status    smallint,
    rid            uuid,
    method         text        NOT NULL,
    user_agent     text,
    remote_addr    text,
    body           bytea,
    -- The body's size as received (up to the read cap) and whether it was cut to the limit.
    body_size      integer     NOT NULL DEFAULT 0,
    body_truncated boolean     NOT NULL DEFAULT false,
    -- Start-to-finish time when this ping finished a run.
    duration_ms    bigint,
    PRIMARY KEY (check_id, n)
);

-- Every status change, stamped with when it logically happened (for a timeout, the
-- computed deadline, not the moment the worker noticed).
CREATE TABLE flips (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    check_id    uuid        NOT NULL REFERENCES checks (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    old_status  text        NOT NULL,
    new_status  text        NOT NULL,
    reason      text        NOT NULL,
    alert       boolean     NOT NULL
);

CREATE INDEX flips_check ON flips (check_id, at DESC);

-- One alert per alerting flip that had a webhook to go to. Delivery runs through the
-- shared job queue (queue 'cronping.alert'), enqueued in the same transaction as the flip,
-- so an alert survives a worker dying before or during delivery (at least once; the id
-- lets a receiver drop duplicates).
CREATE TABLE alerts (
    id            uuid        PRIMARY KEY,
    flip_id       bigint      NOT NULL REFERENCES flips (id) ON DELETE CASCADE,
    check_id      uuid        NOT NULL REFERENCES checks (id) ON DELETE CASCADE,
    url           text        NOT NULL,
    payload       jsonb       NOT NULL,
    state         text        NOT NULL DEFAULT 'pending'
                              CHECK (state IN ('pending', 'delivered', 'failed')),
    created_at    timestamptz NOT NULL,
    delivered_at  timestamptz
);

CREATE INDEX alerts_check ON alerts (check_id, created_at DESC);

-- Every delivery attempt, kept for the API to list.
CREATE TABLE alert_attempts (
    alert_id    uuid        NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    attempt     integer     NOT NULL,
    at          timestamptz NOT NULL,
    duration_ms bigint      NOT NULL,
    status_code integer,
    error       text,
    PRIMARY KEY (alert_id, attempt)
);
