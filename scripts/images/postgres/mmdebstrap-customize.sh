#!/bin/sh
# mmdebstrap --customize-hook for the PostgreSQL 15 image (refdeploy/postgres).
# Runs on the host as root with $1 = the new minbase root filesystem, before
# mmdebstrap's own cleanup. Installs the server in a fixed order so that the
# result follows the official postgres image's conventions:
#   1. user/group postgres with uid/gid 999 BEFORE any package creates them,
#      so every file the packages own gets 999 (as in the official image);
#   2. postgresql-common alone, then create_main_cluster = false, so that
#      installing postgresql-15 does not initdb Debian's "main" cluster;
#   3. postgresql-15 (server, client, contrib), no recommends.
set -eu
root="$1"
in_root() { chroot "$root" env DEBIAN_FRONTEND=noninteractive "$@"; }

echo "postgres hook: creating user/group postgres (999:999)" >&2
in_root groupadd --system --gid 999 postgres
in_root useradd --system --uid 999 --gid 999 --no-create-home \
  --home-dir /var/lib/postgresql --shell /bin/bash \
  --comment 'PostgreSQL administrator' postgres

echo "postgres hook: installing postgresql-common" >&2
in_root apt-get install -y -q --no-install-recommends postgresql-common

conf="$root/etc/postgresql-common/createcluster.conf"
sed -i -E 's/^[#[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' "$conf"
grep -qx 'create_main_cluster = false' "$conf" || {
  echo "postgres hook: could not set create_main_cluster = false in $conf" >&2; exit 1; }

echo "postgres hook: installing postgresql-15" >&2
in_root apt-get install -y -q --no-install-recommends postgresql-15

# Debian's cluster must not exist; the entrypoint initialises PGDATA itself.
if [ -n "$(ls -A "$root/etc/postgresql" 2>/dev/null)" ]; then
  echo "postgres hook: unexpected cluster under /etc/postgresql" >&2; exit 1
fi
if [ "$(stat -c %u:%g "$root/usr/lib/postgresql/15/bin/postgres")" != 0:0 ] ||
   [ "$(stat -c %u:%g "$root/var/lib/postgresql")" != 999:999 ]; then
  echo "postgres hook: unexpected ownership in the installed tree" >&2; exit 1
fi

# New clusters listen on all addresses (the official image does the same).
sample="$root/usr/share/postgresql/15/postgresql.conf.sample"
sed -i -E "s/^#?listen_addresses[[:space:]]*=[[:space:]]*'[^']*'/listen_addresses = '*'/" "$sample"
grep -q "^listen_addresses = '\*'" "$sample" || {
  echo "postgres hook: could not set listen_addresses in $sample" >&2; exit 1; }

# PGDATA owned by postgres and 0700: a fresh named volume mounted there
# copies this ownership and mode. /var/run/postgresql (-> /run/postgresql)
# for the socket, as in the official image (compose puts a tmpfs over it).
install -d -o 999 -g 999 -m 0755 "$root/var/lib/postgresql"
install -d -o 999 -g 999 -m 0700 "$root/var/lib/postgresql/data"
install -d -o 999 -g 999 -m 3777 "$root/run/postgresql"
install -d -o 0 -g 0 -m 0755 "$root/docker-entrypoint-initdb.d"

# ssl-cert generated a snakeoil key pair at install time: never ship a
# private key in an image.
rm -f "$root/etc/ssl/private/ssl-cert-snakeoil.key" "$root/etc/ssl/certs/ssl-cert-snakeoil.pem"
find "$root/etc/ssl/certs" -maxdepth 1 -type l -lname ssl-cert-snakeoil.pem -delete

# mmdebstrap copies the host's resolv.conf and hostname in; docker
# bind-mounts its own over both at run time, so ship them empty.
: > "$root/etc/resolv.conf"
: > "$root/etc/hostname"
chmod 0644 "$root/etc/resolv.conf" "$root/etc/hostname"

# This image skips mmdebstrap's /run cleanup (to keep /run/postgresql):
# empty the rest of /run here, plus leftovers that only grow the image (apt
# lists/caches and logs are removed by mmdebstrap's cleanup).
find "$root/run" -mindepth 1 -maxdepth 1 ! -name postgresql ! -name lock -exec rm -rf --one-file-system {} +
rm -f "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
