#!/usr/bin/env bash
# Build the two local base images from Debian bookworm packages, without any
# container registry:
#   RUNTIME_BASE_IMAGE (default refdeploy/base:bookworm): minbase + ca-certificates
#   POSTGRES_IMAGE     (default refdeploy/postgres:15):   PostgreSQL 15 following
#                      the official postgres image's conventions
# Each is built as  mmdebstrap | docker import  -> <repo>-rootfs:<tag>
# (intermediate, kept) and then a small Dockerfile under scripts/images/<name>/
# adds metadata (and, for postgres, the entrypoint).
#
# An image that already exists is skipped entirely (no mmdebstrap run); pass
# --force (or FORCE_BASE_IMAGES=1) to rebuild. An intermediate rootfs image
# whose recipe is unchanged is reused. A variable naming an image outside
# refdeploy/ (e.g. debian:bookworm-slim, postgres:15-bookworm where a registry
# is reachable) is not built: docker pulls it when it is first used.
#
# Env: RUNTIME_BASE_IMAGE, POSTGRES_IMAGE, FORCE_BASE_IMAGES=1,
#      MMDEBSTRAP_SOURCES=<apt sources file> (default: the host's
#      /etc/apt/sources.list.d/debian.sources when it is for bookworm,
#      otherwise mmdebstrap's default mirror).
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
images_dir="$script_dir/images"

RUNTIME_BASE_IMAGE="${RUNTIME_BASE_IMAGE:-refdeploy/base:bookworm}"
POSTGRES_IMAGE="${POSTGRES_IMAGE:-refdeploy/postgres:15}"
SUITE=bookworm
force="${FORCE_BASE_IMAGES:-0}"

for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-base-images: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

# This machine's docker CLI has no buildx: use the classic builder.
export DOCKER_BUILDKIT=0

say() { echo "$*" >&2; }
image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
image_label() { docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true; }
image_size() { docker image inspect --format '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1/1000/1000}'; }

# refdeploy/x:tag -> refdeploy/x-rootfs:tag
rootfs_name() {
  local img="$1" repo tag
  if [[ "${img##*/}" == *:* ]]; then repo="${img%:*}"; tag="${img##*:}"; else repo="$img"; tag=latest; fi
  echo "${repo}-rootfs:${tag}"
}

# apt sources for mmdebstrap: an explicit file, the host's bookworm sources,
# or (no argument) mmdebstrap's default mirror plus updates and security.
sources_args=()
if [[ -n "${MMDEBSTRAP_SOURCES:-}" ]]; then
  [[ -r "$MMDEBSTRAP_SOURCES" ]] || { say "MMDEBSTRAP_SOURCES=$MMDEBSTRAP_SOURCES is not readable"; exit 1; }
  sources_args=("$MMDEBSTRAP_SOURCES")
elif [[ -r /etc/apt/sources.list.d/debian.sources ]] &&
     grep -Eq '^Suites:.*\bbookworm\b' /etc/apt/sources.list.d/debian.sources; then
  sources_args=(/etc/apt/sources.list.d/debian.sources)
fi

# Options shared by both images: merged /usr set up the debootstrap way
# (usr-is-merged instead of the usrmerge package, which pulls in ~50 MB of
# perl), no docs, man pages or translations.
common_opts=(
  --mode=root --format=tar --variant=minbase
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --aptopt='Acquire::Languages "none"'
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-include=/usr/share/locale/locale.alias'
  --dpkgopt='path-exclude=/usr/share/lintian/*'
)

# hash_files FILE...: content hash of the given files (paths relative to images/).
hash_files() {
  (cd "$images_dir" && sha256sum -- "$@")
}

# rootfs_recipe MMDEBSTRAP-ARGS...: identifies what a rootfs is built from
# (suite, options, hook scripts, apt sources), independent of the checkout's path.
rootfs_recipe() {
  local -a hooks=()
  local a
  for a in "$@"; do
    [[ "$a" != --customize-hook="$images_dir"/* ]] || hooks+=("${a#--customize-hook="$images_dir"/}")
  done
  {
    printf '%s\n' "$SUITE" "${common_opts[@]}" "${@//"$images_dir"/@images@}"
    hash_files "${hooks[@]}"
    [[ ${#sources_args[@]} -eq 0 ]] || cat "${sources_args[0]}"
  } | sha256sum | cut -c1-16
}

# image_recipe ROOTFS-RECIPE NAME: the rootfs recipe plus the Dockerfile's context.
image_recipe() {
  local -a files=()
  mapfile -d '' -t files < <(cd "$images_dir" && find "$2" -type f -print0 | LC_ALL=C sort -z)
  { echo "$1"; hash_files "${files[@]}"; } | sha256sum | cut -c1-16
}

# build IMAGE NAME MMDEBSTRAP-ARGS...
build() {
  local image="$1" name="$2"; shift 2
  local rootfs rootfs_hash recipe
  if [[ "$image" != refdeploy/* ]]; then
    say "$name image: using $image as is (not a refdeploy/ image; docker pulls it when first used)"
    return 0
  fi
  rootfs="$(rootfs_name "$image")"
  rootfs_hash="$(rootfs_recipe "$@")"
  recipe="$(image_recipe "$rootfs_hash" "$name")"

  if [[ "$force" != 1 ]] && image_exists "$image"; then
    local built_from
    built_from="$(image_label "$image" refdeploy.recipe)"
    if [[ "$built_from" != "$recipe" ]]; then
      say "$name image: $image exists (built from an older recipe; FORCE_BASE_IMAGES=1 $0 rebuilds it)"
    else
      say "$name image: $image exists, skipped"
    fi
    return 0
  fi

  # IDs of what a rebuild replaces, dropped afterwards if nothing uses them.
  local old_ids
  old_ids="$(docker image inspect --format '{{.Id}}' "$image" "$rootfs" 2>/dev/null || true)"

  if [[ "$force" == 1 ]] || [[ "$(image_label "$rootfs" refdeploy.recipe)" != "$rootfs_hash" ]]; then
    if [[ "$(id -u)" -ne 0 ]]; then
      say "$name image: building $image needs root (mmdebstrap --mode=root, chroot hooks); run: sudo $0"
      return 1
    fi
    "$script_dir/ensure-tools.sh" --mmdebstrap=yes --no-cargo
    say "$name image: running mmdebstrap for $image (takes a few minutes the first time)"
    local started=$SECONDS
    # mmdebstrap writes the tarball only once the tree is complete; on any
    # failure drop whatever docker import made of it.
    if ! mmdebstrap "${common_opts[@]}" "$@" "$SUITE" - "${sources_args[@]}" |
         docker import --change "LABEL refdeploy.recipe=$rootfs_hash" \
           --message "mmdebstrap $SUITE for $image" - "$rootfs" >/dev/null; then
      docker image rm "$rootfs" >/dev/null 2>&1 || true
      say "$name image: mmdebstrap | docker import failed"
      return 1
    fi
    say "$name image: imported $rootfs ($(image_size "$rootfs")) in $((SECONDS - started))s"
  else
    say "$name image: reusing $rootfs (same recipe)"
  fi

  say "$name image: docker build $image FROM $rootfs"
  docker build --quiet --pull=false \
    --build-arg "ROOTFS_IMAGE=$rootfs" \
    --label "refdeploy.recipe=$recipe" \
    -t "$image" "$images_dir/$name" >/dev/null
  say "$name image: built $image ($(image_size "$image"))"

  local id
  for id in $old_ids; do
    # Only replaced images that lost their tag; fails, harmlessly, while
    # images built from them (the services) still exist.
    if [[ "$(docker image inspect --format '{{len .RepoTags}}' "$id" 2>/dev/null)" == 0 ]]; then
      docker image rm "$id" >/dev/null 2>&1 || true
    fi
  done
}

build "$RUNTIME_BASE_IMAGE" base \
  --include=ca-certificates \
  --customize-hook="$images_dir/base/mmdebstrap-customize.sh"

build "$POSTGRES_IMAGE" postgres \
  --skip=cleanup/run \
  --customize-hook="$images_dir/postgres/mmdebstrap-customize.sh"
