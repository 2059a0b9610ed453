#!/usr/bin/env bash
# Check (and where possible install) the host tools the build needs:
#   docker (with a reachable daemon), a compose tool (docker-compose or
#   `docker compose`), cargo, and mmdebstrap (only needed to build the base
#   images, see scripts/build-base-images.sh).
#
# Usage: scripts/ensure-tools.sh [options]
#   --mmdebstrap=auto|yes|no  auto (default): check mmdebstrap only when one of
#                             the refdeploy/ base images is missing.
#                             Env: ENSURE_MMDEBSTRAP.
#   --no-cargo                do not check cargo.   Env: ENSURE_CARGO=no
#   --print-compose           on success print the compose command to use
#                             ("docker-compose" or "docker compose") on stdout.
#
# Missing Debian-packaged tools (mmdebstrap; docker-compose when no compose
# tool exists) are installed with apt-get when running as root; otherwise the
# script exits 1 naming the command that installs them. It prints nothing when
# everything is present (apart from --print-compose's answer).
set -euo pipefail

RUNTIME_BASE_IMAGE="${RUNTIME_BASE_IMAGE:-refdeploy/base:bookworm}"
POSTGRES_IMAGE="${POSTGRES_IMAGE:-refdeploy/postgres:15}"
mmdebstrap_mode="${ENSURE_MMDEBSTRAP:-auto}"
check_cargo="${ENSURE_CARGO:-yes}"
print_compose=no

for arg in "$@"; do
  case "$arg" in
    --mmdebstrap=*) mmdebstrap_mode="${arg#*=}" ;;
    --mmdebstrap) mmdebstrap_mode=yes ;;
    --no-mmdebstrap) mmdebstrap_mode=no ;;
    --no-cargo) check_cargo=no ;;
    --print-compose) print_compose=yes ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "ensure-tools: unknown argument: $arg" >&2; exit 2 ;;
  esac
done
case "$mmdebstrap_mode" in auto|yes|no) ;; *)
  echo "ensure-tools: --mmdebstrap must be auto, yes or no (got '$mmdebstrap_mode')" >&2; exit 2 ;;
esac

log() { echo "ensure-tools: $*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

fatal=()   # problems no package install here can fix
pkgs=()    # Debian packages to install

# --- docker -----------------------------------------------------------------
if ! have docker; then
  fatal+=("docker is not installed (Debian: 'apt-get install docker.io', or Docker's own packages)")
elif ! docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
  fatal+=("docker is installed but its daemon is not reachable (is dockerd running, and may this user use it?)")
fi

# --- compose ----------------------------------------------------------------
compose_cmd=""
if have docker-compose; then
  compose_cmd="docker-compose"
elif have docker && docker compose version >/dev/null 2>&1; then
  compose_cmd="docker compose"
else
  pkgs+=(docker-compose)
fi

# --- cargo ------------------------------------------------------------------
if [[ "$check_cargo" != no ]] && ! have cargo; then
  fatal+=("cargo is not installed (install a Rust toolchain, e.g. with rustup; add ~/.cargo/bin to PATH)")
fi

# --- mmdebstrap -------------------------------------------------------------
need_mmdebstrap=no
case "$mmdebstrap_mode" in
  yes) need_mmdebstrap=yes ;;
  auto)
    for img in "$RUNTIME_BASE_IMAGE" "$POSTGRES_IMAGE"; do
      # Only refdeploy/ images are built locally; others are pulled by docker.
      [[ "$img" == refdeploy/* ]] || continue
      if ! have docker || ! docker image inspect "$img" >/dev/null 2>&1; then
        need_mmdebstrap=yes
      fi
    done ;;
esac
if [[ "$need_mmdebstrap" == yes ]] && ! have mmdebstrap; then
  pkgs+=(mmdebstrap)
fi

if ((${#fatal[@]})); then
  for f in "${fatal[@]}"; do log "$f"; done
  if ((${#pkgs[@]})); then
    log "also missing: ${pkgs[*]} (apt-get install ${pkgs[*]})"
  fi
  exit 1
fi

# --- install missing Debian packages ----------------------------------------
if ((${#pkgs[@]})); then
  if [[ "$(id -u)" -eq 0 ]] && have apt-get; then
    log "installing missing Debian packages: ${pkgs[*]}"
    log "running: apt-get update"
    apt-get update -qq
    log "running: apt-get install -y --no-install-recommends ${pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
    for p in "${pkgs[@]}"; do
      if [[ "$p" == docker-compose ]]; then
        have docker-compose || { log "docker-compose still missing after install"; exit 1; }
        compose_cmd="docker-compose"
      elif ! have "$p"; then
        log "$p still missing after install"; exit 1
      fi
    done
    log "installed: ${pkgs[*]}"
  else
    sudo=""; [[ "$(id -u)" -eq 0 ]] || sudo="sudo "
    echo "ensure-tools: missing ${pkgs[*]}; install with: ${sudo}apt-get install ${pkgs[*]}" >&2
    exit 1
  fi
fi

if [[ "$print_compose" == yes ]]; then
  echo "$compose_cmd"
fi
