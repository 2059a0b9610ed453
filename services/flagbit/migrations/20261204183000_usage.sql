-- Evaluation counts. The web tier counts in memory and appends one row per flag and
-- variant per flush (usage_counts); the worker folds finished hours into usage_hourly and
-- deletes what it folded, in one statement, so a count is in exactly one of the two.

CREATE TABLE usage_counts (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    environment_id  bigint      NOT NULL REFERENCES environments (id),
    flag_key        text        NOT NULL,
    -- '' when no variant was served (disabled flag, caller's default, error).
    variant         text        NOT NULL,
    at              timestamptz NOT NULL,
    count           bigint      NOT NULL CHECK (count > 0)
);

CREATE INDEX usage_counts_at ON usage_counts (at);

CREATE TABLE usage_hourly (
    environment_id  bigint      NOT NULL REFERENCES environments (id),
    flag_key        text        NOT NULL,
    variant         text        NOT NULL,
    -- The start of the hour, in UTC.
    hour            timestamptz NOT NULL,
    count           bigint      NOT NULL,
    PRIMARY KEY (hour, environment_id, flag_key, variant)
);
