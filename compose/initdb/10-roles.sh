#!/bin/sh
# Creates the three roles of a product's database, once, when the cluster is initialised:
#   <prefix>_migrate  owns the database and its schema; only `migrate` logs in as it.
#   <prefix>_web      reads and writes rows; cannot create, alter or drop anything.
#   <prefix>_worker   the same rights as web, under its own name and password.
# Tables created later by the migrate role are granted to web and worker through default
# privileges; a migration narrows them where one role needs less.
#
# Passwords are read from the secret files with psql's backtick \set, so they never appear
# on a command line.
set -eu

prefix="${APP_ROLE_PREFIX:?APP_ROLE_PREFIX names the product}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v db="$POSTGRES_DB" \
    -v migrate="${prefix}_migrate" -v web="${prefix}_web" -v worker="${prefix}_worker" <<'SQL'
\set migrate_pw `cat /run/secrets/db_migrate_password`
\set web_pw `cat /run/secrets/db_web_password`
\set worker_pw `cat /run/secrets/db_worker_password`

CREATE ROLE :"migrate" LOGIN PASSWORD :'migrate_pw';
CREATE ROLE :"web" LOGIN PASSWORD :'web_pw';
CREATE ROLE :"worker" LOGIN PASSWORD :'worker_pw';

-- Only the three roles may connect, and only to the product's database.
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;
REVOKE CONNECT ON DATABASE template1 FROM PUBLIC;
ALTER DATABASE :"db" OWNER TO :"migrate";
GRANT CONNECT ON DATABASE :"db" TO :"migrate", :"web", :"worker";

ALTER SCHEMA public OWNER TO :"migrate";
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"web", :"worker";

ALTER DEFAULT PRIVILEGES FOR ROLE :"migrate" IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"web", :"worker";
ALTER DEFAULT PRIVILEGES FOR ROLE :"migrate" IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO :"web", :"worker";
SQL
