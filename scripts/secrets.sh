#!/usr/bin/env bash
# Generates the secrets on first use: the database passwords, one file per product and role,
# and the products' API keys, under $SECRETS_DIR (default .secrets/, never committed).
# Existing files are kept, so running it again changes nothing.
#
# Ownership matters because Compose mounts secret files as they are on the host (v1 ignores
# the mode/uid/gid options): the admin password is read only by PostgreSQL (uid 999); a role
# password by its service (uid 10001) and, once, by the database's init script (group 999),
# hence 0640 with that owner and group. Without root the files stay the caller's with mode
# 0644 inside a 0700 directory, which is what keeps them private on the host then.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
dir="${SECRETS_DIR:-$root/.secrets}"
products=(documint cronping flagbit webhookvault)
roles=(migrate web worker)

umask 077
mkdir -p "$dir"
chmod 0700 "$dir"

new_password() {
    # 32 random bytes, URL-safe so it survives being put in a connection string.
    head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'
}

write_secret() {
    local file=$1 owner=$2 mode=$3
    [ -s "$file" ] && return 0
    new_password >"$file.tmp"
    if [ "$(id -u)" = 0 ]; then
        chown "$owner" "$file.tmp"
        chmod "$mode" "$file.tmp"
    else
        chmod 0644 "$file.tmp"
    fi
    mv "$file.tmp" "$file"
    created=$((created + 1))
}

created=0
for product in "${products[@]}"; do
    mkdir -p "$dir/$product"
    chmod 0700 "$dir/$product"
    write_secret "$dir/$product/db_admin_password" 999:999 0600
    for role in "${roles[@]}"; do
        write_secret "$dir/$product/db_${role}_password" 10001:999 0640
    done
done

# CronPing's API keys (read-write and read-only), read by its web tier (uid 10001).
write_secret "$dir/cronping/api_key" 10001:999 0640
write_secret "$dir/cronping/api_key_readonly" 10001:999 0640

# DocuMint's API key, read by its web tier (uid 10001).
write_secret "$dir/documint/api_key" 10001:999 0640

# FlagBit's management API key, read by its web tier (uid 10001).
write_secret "$dir/flagbit/admin_key" 10001:999 0640

# WebhookVault's admin API key, read by its web tier (uid 10001).
write_secret "$dir/webhookvault/admin_key" 10001:999 0640

# The receipts key (FlagBit signs, DocuMint verifies; used with `make up RECEIPTS=1`): one
# `kid=secret` line in both files at first. scripts/rotate-receipts-key.sh changes them.
if [ ! -s "$dir/receipts/signing_key" ] || [ ! -s "$dir/receipts/verify_keys" ]; then
    mkdir -p "$dir/receipts"
    chmod 0700 "$dir/receipts"
    line="r$(date -u +%Y%m%d%H%M%S)=$(new_password)"
    for file in signing_key verify_keys; do
        printf '%s\n' "$line" >"$dir/receipts/$file.tmp"
        if [ "$(id -u)" = 0 ]; then
            chown 10001:999 "$dir/receipts/$file.tmp"
            chmod 0640 "$dir/receipts/$file.tmp"
        else
            chmod 0644 "$dir/receipts/$file.tmp"
        fi
        mv "$dir/receipts/$file.tmp" "$dir/receipts/$file"
    done
    created=$((created + 2))
fi

if [ "$created" -gt 0 ]; then
    echo "secrets: generated $created secret files under $dir"
fi
