-- The job queue every product's worker draws from.
--
-- One table for all kinds of jobs: a worker claims the oldest due row with
-- FOR UPDATE SKIP LOCKED, so several workers never take the same job and never wait on
-- each other; the claim sets a lease (locked_until) instead of holding a transaction open,
-- so a worker that dies mid-job only delays that job until the lease expires.
CREATE TABLE jobs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue         text        NOT NULL CHECK (length(queue) BETWEEN 1 AND 64),
    payload       jsonb       NOT NULL,
    -- Due time; a failed attempt pushes it into the future (backoff).
    run_at        timestamptz NOT NULL,
    attempts      integer     NOT NULL DEFAULT 0,
    max_attempts  integer     NOT NULL CHECK (max_attempts > 0),
    locked_until  timestamptz,
    last_error    text,
    -- Set when attempts are exhausted: the job stays for inspection instead of vanishing.
    failed_at     timestamptz,
    created_at    timestamptz NOT NULL
);

-- Claims scan only live jobs, in due order.
CREATE INDEX jobs_due ON jobs (queue, run_at) WHERE failed_at IS NULL;
