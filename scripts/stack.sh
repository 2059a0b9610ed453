#!/usr/bin/env bash
# Runs the stack with Compose: `up`, `down`, `clean`, `ps`, `logs`, `audit`, `compose ARGS...`.
#
# One Compose project (COMPOSE_PROJECT_NAME, default refdeploy) made of the four products'
# files under compose/. The tests run their own projects under unique names, with
# empty *_PORT variables so the web tiers publish on free loopback ports.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
products=(documint cronping flagbit webhookvault)

export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-refdeploy}"
export SECRETS_DIR="${SECRETS_DIR:-$root/.secrets}"
wait_timeout="${WAIT_TIMEOUT:-180}"

say() { echo "==> $*"; }

compose_cmd() {
    if [ -n "${COMPOSE:-}" ]; then
        echo "$COMPOSE"
    elif docker compose version >/dev/null 2>&1; then
        echo "docker compose"
    else
        echo "docker-compose"
    fi
}

# RECEIPTS=1 adds the one cross-product call (compose/receipts.yml). Unset, it follows the
# running stack: on when the project has a documint-receipts container, so `make ps` and
# `make logs` show it without being told again.
receipts="${RECEIPTS:-}"
if [ -z "$receipts" ]; then
    receipts=0
    if [ -n "$(docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" \
        --filter label=com.docker.compose.service=documint-receipts 2>/dev/null)" ]; then
        receipts=1
    fi
fi

compose() {
    local files=()
    for product in "${products[@]}"; do files+=(-f "$root/compose/$product.yml"); done
    if [ "$receipts" = 1 ]; then files+=(-f "$root/compose/receipts.yml"); fi
    # shellcheck disable=SC2046 # the command is one or two words on purpose
    $(compose_cmd) -p "$COMPOSE_PROJECT_NAME" "${files[@]}" "$@"
}

# Container id → "name health" for every container of the project.
health_table() {
    local ids
    ids=$(docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" \
        --filter "label=com.docker.compose.oneoff=False")
    [ -n "$ids" ] || return 0
    # shellcheck disable=SC2086
    docker inspect --format \
        '{{ index .Config.Labels "com.docker.compose.service" }} {{ if .State.Health }}{{ .State.Health.Status }}{{ else }}{{ .State.Status }}{{ end }} {{ .State.Status }} {{ .State.ExitCode }}' \
        $ids
}

# The last log lines of each named service ("name(status)" words, as wait_healthy keeps them).
show_logs() {
    for service in "$@"; do
        service=${service%%(*}
        echo "---- last log lines of $service ----" >&2
        compose logs --no-color --tail 30 "$service" >&2 || true
    done
}

# Waits until every named service's container is healthy; on timeout shows the last log
# lines of those that are not, and fails.
wait_healthy() {
    local deadline=$((SECONDS + wait_timeout)) last="" pending
    while :; do
        pending="" dead=""
        table=$(health_table)
        for service in "$@"; do
            read -r status state code < <(awk -v s="$service" '$1 == s { print $2, $3, $4 }' <<<"$table") || true
            [ "$status" = healthy ] || pending="$pending $service(${status:-missing})"
            # A container that exited will not turn healthy by waiting (the restart policy
            # brings back only what crashed after starting).
            if [ "$state" = exited ] || [ "$state" = dead ]; then
                dead="$dead $service(exited:$code)"
            fi
        done
        [ -z "$pending" ] && return 0

        if [ -n "$dead" ]; then
            echo "error: stopped:$dead" >&2
            show_logs $dead
            return 1
        fi

        if [ "$pending" != "$last" ]; then
            say "waiting for:$pending"
            last="$pending"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "error: not healthy within ${wait_timeout}s:$pending" >&2
            show_logs $pending
            return 1
        fi
        sleep 1
    done
}

web_url() {
    local mapping
    mapping=$(compose port "$1-web" 8080 2>/dev/null | head -n1)
    [ -n "$mapping" ] && echo "http://$mapping"
}

up() {
    # The tests build the images once, before any of them starts a stack.
    if [ "${STACK_SKIP_BUILD:-}" != 1 ]; then
        say "checking host tools"
        "$here/ensure-tools.sh"

        say "base images"
        "$here/build-base-images.sh"

        say "service images"
        "$here/build-service-images.sh"
    fi

    "$here/secrets.sh"

    local dbs=() all=()
    for product in "${products[@]}"; do
        dbs+=("$product-db")
        all+=("$product-db" "$product-web" "$product-worker")
    done
    if [ "$receipts" = 1 ]; then all+=(documint-receipts); fi

    say "starting the databases"
    compose up -d --no-build "${dbs[@]}"
    wait_healthy "${dbs[@]}"

    for product in "${products[@]}"; do
        say "migrating $product"
        if ! output=$(compose --profile migrate run --rm --no-deps "$product-migrate" 2>&1); then
            echo "$output" >&2
            echo "error: migrating $product failed (a database initialised with other" \
                "passwords than $SECRETS_DIR/$product holds fails this way)" >&2
            return 1
        fi
    done

    say "starting web tiers and workers"
    compose up -d --no-build "${all[@]}"
    wait_healthy "${all[@]}"

    for product in "${products[@]}"; do
        url=$(web_url "$product")
        if ! curl -fsS --max-time 5 "$url/readyz" >/dev/null; then
            echo "error: $product is healthy but $url/readyz does not answer 200" >&2
            return 1
        fi
    done

    # The tests audit their stacks themselves.
    if [ "${STACK_SKIP_BUILD:-}" != 1 ]; then
        say "auditing the containers against the isolation policy"
        audit
    fi

    say "ready"
    for product in "${products[@]}"; do
        printf '  %-13s %s\n' "$product" "$(web_url "$product")"
    done
}

audit() {
    "${CARGO_TARGET_DIR:-$root/target}/release/audit" "$COMPOSE_PROJECT_NAME"
}

command="${1:-}"
shift || true

# One `up` or `down` at a time per project: two at once race to create the same networks,
# and Compose then finds each name twice and refuses to go on.
case "$command" in
    up | down | clean | rotate-receipts-key)
        lock="${TMPDIR:-/tmp}/refdeploy-stack-$COMPOSE_PROJECT_NAME.lock"
        exec 9>"$lock"
        if ! flock -n 9; then
            echo "error: another $0 is working on project $COMPOSE_PROJECT_NAME; wait for it" >&2
            exit 1
        fi
        ;;
esac
# Replaces the receipts key in the safe order: the verifier learns the new key, then the
# signer switches to it, then, once every token signed with the old key has expired, the
# verifier forgets the old key. OVERLAP is that wait in seconds: a token's lifetime plus
# the leeway (600 + 30) unless FlagBit is configured with a shorter lifetime.
rotate_receipts_key() {
    local overlap="${1:-630}" dir="$SECRETS_DIR/receipts" kid line
    case "$overlap" in '' | *[!0-9]*) echo "error: overlap must be seconds" >&2; return 2 ;; esac
    [ -s "$dir/signing_key" ] || { echo "error: no $dir/signing_key: run make up RECEIPTS=1" >&2; return 1; }

    kid="r$(date -u +%Y%m%d%H%M%S)"
    line="$kid=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    replace() { # file, content: a new file in place of the old, same owner and mode
        printf '%s\n' "$2" >"$1.tmp"
        chmod --reference="$1" "$1.tmp"
        chown --reference="$1" "$1.tmp" 2>/dev/null || true
        mv "$1.tmp" "$1"
    }
    restart() { # Compose mounts a secret file when it creates the container.
        local output
        if ! output=$(compose up -d --no-deps --force-recreate "$1" 2>&1); then
            echo "$output" >&2
            return 1
        fi
        wait_healthy "$1"
    }

    say "1/3 documint-receipts accepts the new key $kid beside the old ones"
    replace "$dir/verify_keys" "$(grep -v '^[[:space:]]*$' "$dir/verify_keys")
$line"
    restart documint-receipts

    say "2/3 flagbit-worker signs with $kid"
    replace "$dir/signing_key" "$line"
    restart flagbit-worker

    say "3/3 waiting ${overlap}s for tokens signed with the old key to expire"
    sleep "$overlap"
    replace "$dir/verify_keys" "$line"
    restart documint-receipts
    say "rotated: $kid is the only receipts key"
}

# Stopping takes the receipts overlay's container and network too, whichever way it was
# started.
case "$command" in down | clean) receipts=1 ;; esac

case "$command" in
    up) up ;;
    rotate-receipts-key)
        receipts=1
        rotate_receipts_key "$@"
        ;;
    down) compose down --remove-orphans "$@" ;;
    clean)
        compose down --remove-orphans --volumes
        # Children before parents: service images (also superseded, untagged ones), then
        # the base images, then the root filesystems they were built from.
        images=$(docker images -aq --filter label=refdeploy.inputs | sort -u)
        # shellcheck disable=SC2086
        [ -z "$images" ] || docker rmi -f $images >/dev/null
        tags=$(docker images --format '{{ .Repository }}:{{ .Tag }}' 'refdeploy/*')
        for tag in $(grep -v -- '-rootfs:' <<<"$tags") $(grep -- '-rootfs:' <<<"$tags"); do
            docker rmi "$tag" >/dev/null
        done
        say "removed containers, networks, data volumes and the refdeploy/ images"
        ;;
    ps) compose ps "$@" ;;
    audit) audit ;;
    logs) compose logs "$@" ;;
    compose) compose "$@" ;;
    *)
        echo "usage: $0 up|down|clean|ps|logs|audit|compose ARGS..." >&2
        exit 2
        ;;
esac
