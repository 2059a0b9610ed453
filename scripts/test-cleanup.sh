#!/usr/bin/env bash
# Removes what an interrupted test run left behind: containers carrying the test label,
# Compose projects the stack tests started (named refdeploy-test-*) that are older than an
# hour, so a run going on at the same time is left alone, and test networks no container
# uses any more.
set -euo pipefail

ids=$(docker ps -aq --filter label=refdeploy.test)
# shellcheck disable=SC2086
[ -z "$ids" ] || docker rm -f -v $ids >/dev/null

cutoff=$(($(date +%s) - 3600))
for project in $(docker ps -a --format '{{ .Label "com.docker.compose.project" }}' | sort -u); do
    case "$project" in refdeploy-test-*) ;; *) continue ;; esac
    started=$(docker ps -a --filter "label=com.docker.compose.project=$project" \
        --format '{{ .CreatedAt }}' | head -n1)
    created=$(date -d "${started% [A-Z]*}" +%s 2>/dev/null || echo 0)
    [ "$created" -lt "$cutoff" ] || continue
    ids=$(docker ps -aq --filter "label=com.docker.compose.project=$project")
    # shellcheck disable=SC2086
    docker rm -f -v $ids >/dev/null
    for net in $(docker network ls -q --filter "label=com.docker.compose.project=$project"); do
        docker network rm "$net" >/dev/null || true
    done
    for vol in $(docker volume ls -q --filter "label=com.docker.compose.project=$project"); do
        docker volume rm "$vol" >/dev/null || true
    done
done

for net in $(docker network ls --format '{{ .Name }}' | grep '^refdeploy-test-' || true); do
    # A run starting now has networks with no containers yet: only old ones are leftovers.
    read -r in_use created < <(docker network inspect \
        --format '{{ len .Containers }} {{ .Created.Unix }}' "$net" 2>/dev/null || echo "1 0")
    if [ "$in_use" = 0 ] && [ "$created" -lt "$cutoff" ]; then
        docker network rm "$net" >/dev/null 2>&1 || true
    fi
done
