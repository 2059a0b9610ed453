-- Service tokens already used on the receipt route, so that a replayed token is refused by
-- every replica and after a restart. A row is needed only until the token would be refused
-- as expired anyway (`remember_until`); the route deletes older rows as it goes.

CREATE TABLE service_token_uses (
    issuer         text        NOT NULL,
    jti            text        NOT NULL,
    remember_until timestamptz NOT NULL,
    PRIMARY KEY (issuer, jti)
);

CREATE INDEX service_token_uses_remember_until ON service_token_uses (remember_until);
