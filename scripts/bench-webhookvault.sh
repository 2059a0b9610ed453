#!/usr/bin/env bash
# Benchmarks WebhookVault's ingest (POST /in/{source}, 1 KiB bodies, answered only after
# the event's commit) against pgbench running the equivalent insert, one event per
# transaction, on the same database at the same concurrency, in the same run.
# Prints each figure, the ratio, and the commands, as Markdown for docs/webhookvault.md.
#
# Needs the running stack (`make up`) or any WebhookVault web tier and its database
# container:
#   WEBHOOKVAULT_URL             web tier (default http://127.0.0.1:8084)
#   WEBHOOKVAULT_ADMIN_KEY_FILE  admin key (default .secrets/webhookvault/admin_key)
#   WEBHOOKVAULT_DB_CONTAINER    database container (default: the one Compose labels
#                                webhookvault-db)
#   WEBHOOKVAULT_DB_NAME         database name (default webhookvault)
#   BENCH_SECONDS                length of each run (default 15), BENCH_CLIENTS (default 64),
#   BENCH_BODY_BYTES             body size (default 1024)
# Traffic goes only to WEBHOOKVAULT_URL and the database container. The source it creates
# has no destinations (ingest alone is measured) and is deleted at the end with its events,
# as are the rows pgbench inserted.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
url="${WEBHOOKVAULT_URL:-http://127.0.0.1:8084}"
key_file="${WEBHOOKVAULT_ADMIN_KEY_FILE:-$root/.secrets/webhookvault/admin_key}"
db_name="${WEBHOOKVAULT_DB_NAME:-webhookvault}"
seconds="${BENCH_SECONDS:-15}"
clients="${BENCH_CLIENTS:-64}"
body_bytes="${BENCH_BODY_BYTES:-1024}"
db="${WEBHOOKVAULT_DB_CONTAINER:-$(docker ps -q --filter label=com.docker.compose.service=webhookvault-db | head -n 1)}"
[ -n "$db" ] || { echo "no webhookvault-db container: run make up, or set WEBHOOKVAULT_DB_CONTAINER" >&2; exit 1; }
key="$(cat "$key_file")"
source_id=""
pg_source=""

psql() { docker exec -i "$db" psql -v ON_ERROR_STOP=1 -qAt -U postgres -d "$db_name" "$@"; }

cleanup() {
    # Deleting a source deletes its events.
    if [ -n "$source_id" ]; then
        curl -fsS -o /dev/null -X DELETE -H "X-Api-Key: $key" \
            "$url/api/v1/sources/$source_id" || true
    fi
    if [ -n "$pg_source" ]; then
        psql -c "DELETE FROM sources WHERE id = '$pg_source'" >/dev/null 2>&1 || true
    fi
    docker exec "$db" rm -f /tmp/bench-ingest.sql >/dev/null 2>&1 || true
}
trap cleanup EXIT

create_source() {
    curl -fsS -H "X-Api-Key: $key" -H 'Content-Type: application/json' \
        -d "{\"name\": \"$1\", \"scheme\": \"none\"}" "$url/api/v1/sources" |
        sed -n 's/.*"id":"\([0-9a-f-]*\)".*/\1/p'
}
source_id="$(create_source "bench ingest")"
pg_source="$(create_source "bench pgbench")"
[ -n "$source_id" ] && [ -n "$pg_source" ] || { echo "creating the sources failed" >&2; exit 1; }

# What ingest stores for one request of the load generator: the same columns, the same
# body size, a comparable header list; one INSERT, one transaction, one commit.
body_hex="$(head -c "$body_bytes" /dev/zero | tr '\0' 'x' | od -An -v -tx1 | tr -d ' \n')"
cat <<SQL | docker exec -i "$db" sh -c 'cat >/tmp/bench-ingest.sql'
INSERT INTO events (id, source_id, received_at, method, path, query, headers, content_type,
    body, signature)
VALUES (gen_random_uuid(), '$pg_source', now(), 'POST', '/in/$pg_source', NULL,
    '[["content-type","application/json"],["accept","*/*"],["host","127.0.0.1:8084"],["content-length","$body_bytes"]]'::jsonb,
    'application/json', decode('$body_hex', 'hex'), 'none');
SQL

echo "building the load generator..." >&2
(cd "$root" && cargo build --release --locked --quiet -p webhookvault --example ingest_load)
load="${CARGO_TARGET_DIR:-$root/target}/release/examples/ingest_load"

echo "WebhookVault ingest, $clients clients, $seconds s..." >&2
wv=$("$load" "$url/in/$source_id" "$clients" "$seconds" "$body_bytes" |
    tee /dev/stderr | sed -n 's/.*rate=\([0-9]*\).*/\1/p')
stored=$(psql -c "SELECT count(*) FROM events WHERE source_id = '$source_id'")

echo "pgbench, $clients clients, $seconds s..." >&2
pg=$(docker exec "$db" pgbench -n -U postgres -d "$db_name" -c "$clients" -j 2 -T "$seconds" \
    -f /tmp/bench-ingest.sql 2>/dev/null |
    sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | cut -d. -f1)
ratio=$(awk -v a="$wv" -v b="$pg" 'BEGIN { printf "%.2f", a / b }')

cat <<EOF

Run $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $clients clients, $seconds s per run,
$body_bytes-byte bodies:
\`BENCH_SECONDS=$seconds BENCH_CLIENTS=$clients scripts/bench-webhookvault.sh\`

| | events/s | |
|---|---|---|
| WebhookVault ingest (acknowledged after commit) | $wv | $stored events stored |
| pgbench, one INSERT per transaction | $pg | |
| ratio | $ratio | target ≥ 0.80 |

WebhookVault: \`ingest_load URL $clients $seconds $body_bytes\`
(services/webhookvault/examples/ingest_load.rs); pgbench: \`pgbench -n -c $clients -j 2
-T $seconds -f bench-ingest.sql\` in the database container.
EOF
