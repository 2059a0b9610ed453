#!/bin/sh
# mmdebstrap --customize-hook for the runtime base image (refdeploy/base).
# Runs on the host as root with $1 = the new root filesystem, after all
# packages are installed and before mmdebstrap's own cleanup (which removes
# apt lists/caches, /run/* and /tmp/*).
set -eu
root="$1"

# mmdebstrap copies the host's resolv.conf and hostname in; docker
# bind-mounts its own over both at run time, so ship them empty.
: > "$root/etc/resolv.conf"
: > "$root/etc/hostname"
chmod 0644 "$root/etc/resolv.conf" "$root/etc/hostname"

# Leftovers that only grow the image (apt lists/caches and logs are removed
# by mmdebstrap's cleanup).
rm -f "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
