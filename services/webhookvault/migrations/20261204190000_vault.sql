-- WebhookVault's schema: sources (where webhooks arrive), their destinations (where the
-- worker forwards them), the events as received, and one delivery per (event, destination)
-- with every attempt.
--
-- Secrets (a source's verification secret, a destination's signing secret) are stored in
-- plain text: the database is reachable only from this product's own network, by its own
-- roles. The API never returns them after creation.

CREATE TABLE sources (
    id               uuid        PRIMARY KEY,
    name             text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    scheme           text        NOT NULL CHECK (scheme IN
                                     ('none', 'standard_webhooks', 'github', 'stripe')),
    -- NULL only for scheme 'none'.
    secret           text        CHECK (length(secret) <= 1000),
    on_bad_signature text        NOT NULL CHECK (on_bad_signature IN ('reject', 'mark')),
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    CHECK ((scheme = 'none') = (secret IS NULL))
);

CREATE TABLE destinations (
    id          uuid        PRIMARY KEY,
    source_id   uuid        NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    url         text        NOT NULL CHECK (length(url) <= 2000),
    -- Extra request headers, a JSON object of strings, validated by the API.
    headers     jsonb       NOT NULL DEFAULT '{}',
    -- Standard Webhooks symmetric secret (`whsec_` + base64) the worker signs with.
    secret      text        NOT NULL,
    enabled     boolean     NOT NULL DEFAULT true,
    -- Requests per second at most; NULL: no limit beyond the concurrency limit.
    rate_limit  integer     CHECK (rate_limit BETWEEN 1 AND 10000),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE INDEX destinations_source ON destinations (source_id);

-- One row per request received at /in/{source_id}, as received: the body is the exact
-- bytes (bytea: never parsed, never re-encoded), so a signature checked now or later is
-- checked over what the sender signed.
CREATE TABLE events (
    id              uuid        PRIMARY KEY,
    source_id       uuid        NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    received_at     timestamptz NOT NULL,
    method          text        NOT NULL,
    path            text        NOT NULL,
    query           text,
    -- [[name, value], ...] in arrival order, repeated names kept.
    headers         jsonb       NOT NULL,
    content_type    text,
    body            bytea       NOT NULL,
    -- 'none': the source checks nothing; 'valid'/'invalid': the outcome of its scheme.
    signature       text        NOT NULL CHECK (signature IN ('none', 'valid', 'invalid')),
    signature_error text,
    -- The sender's delivery id (webhook-id, X-GitHub-Delivery, Stripe's event id), taken
    -- only from requests whose signature held (or whose source checks none): a forged
    -- request must not claim a genuine delivery's id first. NULLs never collide.
    delivery_key    text        CHECK (length(delivery_key) <= 300),
    UNIQUE (source_id, delivery_key)
);

-- Listing is per source, newest first, with a (received_at, id) cursor.
CREATE INDEX events_source_received ON events (source_id, received_at DESC, id DESC);

-- The forwarding queue itself. The shared `jobs` queue is not used: a claim must skip
-- destinations that are at their concurrency or rate limit, which needs the destination
-- in the row. The claim pattern is the same (FOR UPDATE SKIP LOCKED and a lease that
-- expires, so a worker that dies mid-delivery delays it by one lease and loses nothing).
CREATE TABLE deliveries (
    id              uuid        PRIMARY KEY,
    event_id        uuid        NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    destination_id  uuid        NOT NULL REFERENCES destinations (id) ON DELETE CASCADE,
    state           text        NOT NULL DEFAULT 'pending'
                                CHECK (state IN ('pending', 'delivered', 'failed')),
    -- Created by a replay rather than by ingest.
    manual          boolean     NOT NULL DEFAULT false,
    attempts        integer     NOT NULL DEFAULT 0,
    -- Due time while pending; NULL once delivered or failed (dead-lettered).
    next_attempt_at timestamptz,
    locked_until    timestamptz,
    -- Which claim holds the lease: an attempt is recorded only by the claim that made it,
    -- so a worker whose lease ran out cannot record over the one that took over.
    lock_token      uuid,
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL,
    finished_at     timestamptz,
    CHECK ((state = 'pending') = (next_attempt_at IS NOT NULL))
);

CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_event ON deliveries (event_id);
-- The dead-letter list.
CREATE INDEX deliveries_failed ON deliveries (finished_at DESC, id DESC) WHERE state = 'failed';

CREATE TABLE attempts (
    delivery_id  uuid        NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    n            integer     NOT NULL,
    at           timestamptz NOT NULL,
    duration_ms  bigint      NOT NULL,
    -- NULL when no response came (refused, timeout, connection error).
    status_code  integer,
    error        text,
    -- The first 4 KiB of the response body.
    response     bytea,
    PRIMARY KEY (delivery_id, n)
);
