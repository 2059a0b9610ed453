#!/usr/bin/env bash
# Entrypoint of refdeploy/postgres:15 (scripts/images/postgres).
#
# Follows the conventions of the official `postgres` image, so the same
# compose file works with either image:
#   POSTGRES_PASSWORD, POSTGRES_USER (default postgres), POSTGRES_DB (default
#   $POSTGRES_USER), POSTGRES_INITDB_ARGS, POSTGRES_INITDB_WALDIR,
#   POSTGRES_HOST_AUTH_METHOD (default scram-sha-256); each of the first four
#   may instead be read from a file named by <VAR>_FILE (not both at once).
#   On an empty $PGDATA: initdb, a temporary socket-only server, creation of
#   $POSTGRES_DB, then /docker-entrypoint-initdb.d/* in byte order (*.sh run
#   if executable, sourced otherwise; *.sql, *.sql.gz, *.sql.xz, *.sql.zst fed
#   to psql with ON_ERROR_STOP=1).
#   Arguments: none or leading "-flags" -> postgres with those flags; anything
#   else is executed as given.
#
# Meant to run as uid 999 with a read-only root filesystem: it writes only to
# $PGDATA, /var/run/postgresql and /tmp. Started as root it prepares those
# and re-executes itself as postgres (setpriv, from util-linux).
set -Eeuo pipefail

readonly INITDB_DIR=/docker-entrypoint-initdb.d
readonly INCOMPLETE_MARK=.refdeploy-init-incomplete

log() { printf '%s [entrypoint] %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# read_setting NAME [DEFAULT]
# NAME comes from the environment, or from the file named by NAME_FILE
# (Docker/compose secrets); setting both is an error. Empty means DEFAULT.
read_setting() {
  local name="$1" fallback="${2:-}"
  local file_name="${name}_FILE"
  local direct="${!name:-}" from_file="${!file_name:-}" value
  if [[ -n "$direct" && -n "$from_file" ]]; then
    die "both $name and $file_name are set; use only one of them"
  fi
  if [[ -n "$from_file" ]]; then
    [[ -r "$from_file" ]] || die "$file_name names '$from_file', which uid $(id -u) cannot read"
    value="$(<"$from_file")"
  else
    value="$direct"
  fi
  [[ -n "$value" ]] || value="$fallback"
  export "$name=$value"
  unset "$file_name"
}

# Quote one word for /bin/sh (pg_ctl passes -o through a shell).
sh_quote() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }

wants_help_only() {
  local arg
  for arg in "$@"; do
    case "$arg" in -'?'|--help|--describe-config|-V|--version) return 0 ;; esac
  done
  return 1
}

# Started as root: own the writable paths, then continue as postgres.
drop_root() {
  mkdir -p "$PGDATA" || die "cannot create PGDATA=$PGDATA"
  if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    chown postgres:postgres "$PGDATA"
    chmod 0700 "$PGDATA"
  fi
  mkdir -p /var/run/postgresql 2>/dev/null || :
  chown postgres:postgres /var/run/postgresql 2>/dev/null || :
  chmod 3777 /var/run/postgresql 2>/dev/null || :
  exec setpriv --reuid=postgres --regid=postgres --init-groups -- "${BASH_SOURCE[0]}" "$@"
}

check_pgdata_writable() {
  if [[ ! -d "$PGDATA" ]]; then
    mkdir -p "$PGDATA" 2>/dev/null ||
      die "PGDATA=$PGDATA does not exist and cannot be created (mount a volume there)"
  fi
  if [[ ! -w "$PGDATA" || ! -x "$PGDATA" ]]; then
    die "PGDATA=$PGDATA is not writable by uid $(id -u) (owner $(stat -c %u:%g "$PGDATA")):" \
        "a fresh named volume takes the image's 999:999; for a bind mount, chown it to 999:999"
  fi
  # initdb insists on 0700/0750; fix it when we own the directory.
  chmod 0700 "$PGDATA" 2>/dev/null || :
}

run_initdb() {
  local -a opts=(--username="$POSTGRES_USER" --auth-local=trust --auth-host=trust)
  local -a extra=()
  if [[ -n "${POSTGRES_INITDB_WALDIR:-}" ]]; then
    opts+=(--waldir="$POSTGRES_INITDB_WALDIR")
  fi
  if [[ -n "$POSTGRES_INITDB_ARGS" ]]; then
    # Shell words, as with the official image (e.g. "--data-checksums -E UTF8").
    eval "extra=($POSTGRES_INITDB_ARGS)"
  fi
  log "initialising a new cluster in $PGDATA (superuser '$POSTGRES_USER')"
  if [[ -n "$POSTGRES_PASSWORD" ]]; then
    # The password goes through a pipe (/dev/fd), never argv or the log.
    initdb "${opts[@]}" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") "${extra[@]}"
  else
    initdb "${opts[@]}" "${extra[@]}"
  fi
}

write_hba() {
  # initdb wrote trust for the socket, 127.0.0.1/32 and ::1/128; everything
  # else has to authenticate.
  {
    printf '\n# Added by docker-entrypoint.sh: all other hosts.\n'
    printf 'host all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD"
  } >>"$PGDATA/pg_hba.conf"
}

temp_server_start() {
  local server_opts arg
  server_opts="-c listen_addresses='' -p $(sh_quote "${PGPORT:-5432}")"
  for arg in "$@"; do server_opts+=" $(sh_quote "$arg")"; done
  log "starting a temporary server (unix socket only) for initialisation"
  pg_ctl -D "$PGDATA" -o "$server_opts" -w -t 120 start
}

temp_server_stop() {
  log "stopping the temporary server"
  pg_ctl -D "$PGDATA" -m fast -w -t 120 stop
}

# psql against the temporary server, over the socket (trusted).
init_psql() {
  psql -X -v ON_ERROR_STOP=1 --no-password --username "$POSTGRES_USER" "$@"
}

create_database() {
  [[ "$POSTGRES_DB" != postgres ]] || return 0
  local found
  found="$(init_psql --dbname postgres -qtA -v db="$POSTGRES_DB" <<'SQL'
SELECT 1 FROM pg_database WHERE datname = :'db';
SQL
)"
  if [[ -z "$found" ]]; then
    log "creating database '$POSTGRES_DB'"
    init_psql --dbname postgres -q -v db="$POSTGRES_DB" <<'SQL'
CREATE DATABASE :"db";
SQL
  fi
}

run_init_files() {
  local -a files=()
  local f
  [[ -d "$INITDB_DIR" ]] || return 0
  mapfile -d '' -t files < <(
    shopt -s nullglob
    found=("$INITDB_DIR"/*)
    if ((${#found[@]})); then printf '%s\0' "${found[@]}" | LC_ALL=C sort -z; fi
  )
  for f in "${files[@]}"; do
    case "$f" in
      *.sh)
        if [[ -x "$f" ]]; then
          log "running $f"
          "$f"
        else
          log "sourcing $f"
          set +u
          # shellcheck disable=SC1090
          . "$f"
          set -u
        fi ;;
      *.sql)     log "running $f"; init_psql --dbname "$POSTGRES_DB" -f "$f" ;;
      *.sql.gz)  log "running $f"; gzip -dc -- "$f" | init_psql --dbname "$POSTGRES_DB" ;;
      *.sql.xz)  log "running $f"; command -v xz >/dev/null || die "$f: xz is not installed in this image"
                 xz -dc -- "$f" | init_psql --dbname "$POSTGRES_DB" ;;
      *.sql.zst) log "running $f"; command -v zstd >/dev/null || die "$f: zstd is not installed in this image"
                 zstd -dc -- "$f" | init_psql --dbname "$POSTGRES_DB" ;;
      *)         log "ignoring $f" ;;
    esac
  done
}

initialise() {
  if [[ -z "$POSTGRES_PASSWORD" ]]; then
    if [[ "$POSTGRES_HOST_AUTH_METHOD" != trust ]]; then
      die "no superuser password: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE" \
          "(or POSTGRES_HOST_AUTH_METHOD=trust to allow every connection without one, never in production)"
    fi
    log "WARNING: POSTGRES_HOST_AUTH_METHOD=trust and no password: anyone who can reach port 5432 can log in as any user"
  elif [[ "$POSTGRES_HOST_AUTH_METHOD" == trust ]]; then
    log "WARNING: POSTGRES_HOST_AUTH_METHOD=trust: the password is not checked for TCP connections"
  fi

  run_initdb
  # Marks a cluster whose initialisation has not finished (see main).
  : >"$PGDATA/$INCOMPLETE_MARK"
  write_hba

  temp_server_start "$@"
  create_database
  run_init_files
  temp_server_stop

  rm -f "$PGDATA/$INCOMPLETE_MARK"
  log "PostgreSQL init process complete; ready for start up."
}

main() {
  if (($# == 0)) || [[ "$1" == -* ]]; then
    set -- postgres "$@"
  fi
  if [[ "$1" != postgres ]] || wants_help_only "${@:2}"; then
    exec "$@"
  fi

  : "${PGDATA:=/var/lib/postgresql/data}"
  export PGDATA

  if [[ "$(id -u)" == 0 ]]; then
    drop_root "$@"
  fi

  read_setting POSTGRES_PASSWORD
  read_setting POSTGRES_USER postgres
  read_setting POSTGRES_DB "$POSTGRES_USER"
  read_setting POSTGRES_INITDB_ARGS
  export POSTGRES_HOST_AUTH_METHOD="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"

  check_pgdata_writable
  if [[ -e "$PGDATA/$INCOMPLETE_MARK" ]]; then
    die "a previous initialisation of $PGDATA did not finish (an init script failed?);" \
        "remove the volume to start over"
  fi
  if [[ -s "$PGDATA/PG_VERSION" ]]; then
    log "PGDATA already holds a cluster (PostgreSQL $(<"$PGDATA/PG_VERSION")); skipping initialisation"
  else
    initialise "${@:2}"
  fi

  # The server does not need it; keep it out of the postmaster's environment.
  unset POSTGRES_PASSWORD
  exec "$@"
}

main "$@"
