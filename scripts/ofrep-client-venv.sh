#!/usr/bin/env bash
# Prepares a Python virtual environment with a real OpenFeature client (the OpenFeature SDK
# and its OFREP provider, from PyPI, pinned) for FlagBit's client suite, and prints its
# python's path. Kept outside the checkout, next to the cargo target directory; a second
# run reuses it.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
venv="${OFREP_VENV:-${CARGO_TARGET_DIR:-$root/target}/ofrep-client-venv}"

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import openfeature.contrib.provider.ofrep' 2>/dev/null; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        openfeature-sdk==0.10.0 openfeature-provider-ofrep==0.3.0 >&2
fi
echo "$venv/bin/python"
