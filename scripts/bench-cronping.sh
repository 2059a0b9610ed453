#!/usr/bin/env bash
# Benchmarks CronPing's success-ping endpoint against pgbench running the equivalent
# one-transaction-per-ping SQL on the same database, same concurrency, same spread:
#   spread: pings spread uniformly over 1,000 checks;
#   hot:    every ping to one check (a hot row: each transaction waits for the last commit).
# Prints each figure, the ratios, and the commands, as Markdown for docs/cronping.md.
#
# Needs the running stack (`make up`) or any CronPing web tier and its database container:
#   CRONPING_URL           web tier (default http://127.0.0.1:8082)
#   CRONPING_API_KEY_FILE  read-write key (default .secrets/cronping/api_key)
#   CRONPING_DB_CONTAINER  database container (default: the one Compose labels cronping-db)
#   CRONPING_DB_NAME       database name (default cronping)
#   BENCH_SECONDS          length of each run (default 15), BENCH_CLIENTS (default 64)
# Traffic goes only to CRONPING_URL and the database container. The checks it creates are
# deleted at the end, with the helper table pgbench uses.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
url="${CRONPING_URL:-http://127.0.0.1:8082}"
key_file="${CRONPING_API_KEY_FILE:-$root/.secrets/cronping/api_key}"
db_name="${CRONPING_DB_NAME:-cronping}"
seconds="${BENCH_SECONDS:-15}"
clients="${BENCH_CLIENTS:-64}"
checks=1000
db="${CRONPING_DB_CONTAINER:-$(docker ps -q --filter label=com.docker.compose.service=cronping-db | head -n 1)}"
[ -n "$db" ] || { echo "no cronping-db container: run make up, or set CRONPING_DB_CONTAINER" >&2; exit 1; }
key="$(cat "$key_file")"
tag="bench$(date +%s)"
work="$(mktemp -d)"

psql() { docker exec -i "$db" psql -v ON_ERROR_STOP=1 -qAt -U postgres -d "$db_name" "$@"; }

cleanup() {
    # Deleting the checks deletes their pings and flips too.
    psql -c "DELETE FROM checks WHERE '$tag' = ANY (tags); DROP TABLE IF EXISTS bench_ids;" \
        >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "creating $checks checks tagged $tag..." >&2
for i in $(seq 1 "$checks"); do
    curl -fsS -H "X-Api-Key: $key" \
        -d "{\"name\": \"bench $i\", \"tags\": [\"$tag\"], \"timeout\": 86400}" \
        "$url/api/v1/checks"
    echo
done | sed -n 's/.*"ping_url":"\([^"]*\)".*/\1/p' >"$work/spread.txt"
[ "$(wc -l <"$work/spread.txt")" -eq "$checks" ] || { echo "check creation failed" >&2; exit 1; }
head -n 1 "$work/spread.txt" >"$work/hot.txt"

# pgbench addresses checks by number; this maps 1..1000 to the same checks, the hot one
# being number 1, in the same order as the URL files.
psql -c "CREATE TABLE bench_ids (k integer PRIMARY KEY, ping_uuid uuid NOT NULL, id uuid)"
awk -F/ '{print NR "," $NF}' "$work/spread.txt" |
    psql -c "COPY bench_ids (k, ping_uuid) FROM STDIN WITH (FORMAT csv)"
psql -c "UPDATE bench_ids b SET id = c.id FROM checks c WHERE c.ping_uuid = b.ping_uuid"

# What a success ping does, one transaction per ping: lock and update the check, insert
# the ping, prune the check's pings beyond the last 100.
pgbench_script() {
    cat <<SQL
\\set k $1
BEGIN;
UPDATE checks SET n_pings = n_pings + 1, last_ping = now(), status = 'up',
    deadline = now() + interval '1 day', updated_at = now()
    WHERE id = (SELECT id FROM bench_ids WHERE k = :k) RETURNING n_pings \\gset
INSERT INTO pings (check_id, n, created_at, kind, method, body_size)
    SELECT id, :n_pings, now(), 'success', 'GET', 0 FROM bench_ids WHERE k = :k;
DELETE FROM pings WHERE check_id = (SELECT id FROM bench_ids WHERE k = :k)
    AND n <= :n_pings - 100;
END;
SQL
}
pgbench_script "random(1, $checks)" | docker exec -i "$db" sh -c 'cat >/tmp/bench-spread.sql'
pgbench_script 1 | docker exec -i "$db" sh -c 'cat >/tmp/bench-hot.sql'

echo "building the load generator..." >&2
(cd "$root" && cargo build --release --locked --quiet -p cronping --example ping_load)
load="${CARGO_TARGET_DIR:-$root/target}/release/examples/ping_load"

run_cronping() {
    "$load" "$work/$1.txt" "$clients" "$seconds" | sed -n 's/.*rate=\([0-9]*\).*/\1/p'
}
run_pgbench() {
    docker exec "$db" pgbench -n -U postgres -d "$db_name" -c "$clients" -j 2 -T "$seconds" \
        -f "/tmp/bench-$1.sql" 2>/dev/null |
        sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | cut -d. -f1
}

results=()
for shape in spread hot; do
    echo "$shape: CronPing..." >&2
    cp=$(run_cronping "$shape")
    echo "$shape: pgbench..." >&2
    pg=$(run_pgbench "$shape")
    ratio=$(awk -v a="$cp" -v b="$pg" 'BEGIN { printf "%.2f", a / b }')
    results+=("| $shape | $cp | $pg | $ratio |")
done

cat <<EOF

Run $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $clients clients, $seconds s per run:
\`BENCH_SECONDS=$seconds BENCH_CLIENTS=$clients scripts/bench-cronping.sh\`

| shape | CronPing pings/s | pgbench tps | ratio |
|---|---|---|---|
$(printf '%s\n' "${results[@]}")

CronPing: \`ping_load URLS $clients $seconds\` (services/cronping/examples/ping_load.rs);
pgbench: \`pgbench -n -c $clients -j 2 -T $seconds -f bench-<shape>.sql\` in the database
container. Targets: spread ≥ 0.80, hot ≥ 8.
EOF
