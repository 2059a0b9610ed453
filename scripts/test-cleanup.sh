#!/usr/bin/env bash
# Removes what an interrupted test run left behind, once it is more than an hour old, so
# a run going on at the same time is left alone: containers carrying the test label,
# Compose projects the stack tests started (named refdeploy-test-*) with their volumes,
# test networks no container uses, and the projects' secrets directories.
set -euo pipefail

cutoff=$(($(date +%s) - 3600))

# Labelled test containers (test databases, probes) older than the cutoff: a run going on
# at the same time has younger ones.
for id in $(docker ps -aq --filter label=refdeploy.test); do
    created=$(docker inspect --format '{{ .Created }}' "$id" 2>/dev/null || true)
    created=$(date -d "$created" +%s 2>/dev/null || echo "$cutoff")
    [ "$created" -lt "$cutoff" ] && docker rm -f -v "$id" >/dev/null 2>&1 || true
done
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

# Volumes of test projects whose containers are gone, and their secrets directories.
for vol in $(docker volume ls -q | grep '^refdeploy-test-' || true); do
    project=${vol%%_*}
    created=$(docker volume inspect --format '{{ .CreatedAt }}' "$vol" 2>/dev/null || true)
    created=$(date -d "$created" +%s 2>/dev/null || echo "$cutoff")
    [ "$created" -lt "$cutoff" ] || continue
    if [ -z "$(docker ps -aq --filter "label=com.docker.compose.project=$project")" ]; then
        docker volume rm "$vol" >/dev/null 2>&1 || true
    fi
done
find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'refdeploy-test-*' -type d -mmin +60 \
    -exec rm -rf {} + 2>/dev/null || true
