-- FlagBit's schema: environments, their SDK keys, their flags (flagd JSON), and the audit
-- log of every flag change.
--
-- The web tier evaluates from an in-memory copy of all of this; the triggers at the end
-- tell it (LISTEN flagbit_changes) when to reload, so evaluation never queries here.

CREATE TABLE environments (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Appears in URLs and in the audit log, so it is short and plain.
    name        text        NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    -- flagd's flag-set level `$evaluators` and `metadata`, shared by the environment's flags.
    evaluators  jsonb       NOT NULL DEFAULT '{}',
    metadata    jsonb       NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL
);

-- Only a SHA-256 of a key is kept: a leaked table does not leak working keys. Keys carry 244
-- random bits, so a plain hash (no salt, no slow KDF) is enough, and it lets the web tier
-- find a key by its hash.
CREATE TABLE sdk_keys (
    id              uuid        PRIMARY KEY,
    environment_id  bigint      NOT NULL REFERENCES environments (id),
    name            text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    key_hash        bytea       NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    -- The first characters of the key, so a person can tell keys apart in a list.
    key_prefix      text        NOT NULL,
    created_at      timestamptz NOT NULL,
    revoked_at      timestamptz
);

CREATE INDEX sdk_keys_environment ON sdk_keys (environment_id, created_at);

-- One flagd flag definition per row, stored as written (validated by the application,
-- which knows flagd's rules; jsonb keeps numbers' written scale, so 1.0 stays a float).
CREATE TABLE flags (
    environment_id  bigint      NOT NULL REFERENCES environments (id),
    key             text        NOT NULL CHECK (length(key) BETWEEN 1 AND 800),
    definition      jsonb       NOT NULL CHECK (jsonb_typeof(definition) = 'object'),
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (environment_id, key)
);

-- Append-only: written in the same transaction as the change it records. `before` is
-- NULL for a creation, `after` for a deletion. Set-level changes (evaluators, metadata)
-- are recorded under the key '$flagset'.
CREATE TABLE audit_log (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    environment_id  bigint      NOT NULL REFERENCES environments (id),
    flag_key        text        NOT NULL,
    action          text        NOT NULL CHECK (action IN ('create', 'update', 'delete')),
    actor           text        NOT NULL,
    before          jsonb,
    after           jsonb,
    at              timestamptz NOT NULL
);

CREATE INDEX audit_log_flag ON audit_log (flag_key, id DESC);

-- The web and worker roles may add audit rows but never change or remove them. (The roles
-- exist in the deployed database; a bare test database has none, hence the check.)
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'flagbit_web') THEN
        REVOKE UPDATE, DELETE ON audit_log FROM flagbit_web;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'flagbit_worker') THEN
        REVOKE UPDATE, DELETE ON audit_log FROM flagbit_worker;
    END IF;
END
$$;

-- Any change to what evaluation reads wakes the web tiers. A notification is sent at
-- commit, and identical ones in a transaction are folded into one.
CREATE FUNCTION flagbit_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('flagbit_changes', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER flags_changed AFTER INSERT OR UPDATE OR DELETE ON flags
    FOR EACH STATEMENT EXECUTE FUNCTION flagbit_notify_change();
CREATE TRIGGER environments_changed AFTER INSERT OR UPDATE OR DELETE ON environments
    FOR EACH STATEMENT EXECUTE FUNCTION flagbit_notify_change();
CREATE TRIGGER sdk_keys_changed AFTER INSERT OR UPDATE OR DELETE ON sdk_keys
    FOR EACH STATEMENT EXECUTE FUNCTION flagbit_notify_change();
