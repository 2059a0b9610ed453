#!/usr/bin/env bash
# DocuMint's benchmark, in release mode (typst is about 16 times slower in a debug build):
# the built-in invoice's median and p95 render time in-process and through the sandbox
# (one child process per render, with its limits), the 1000-line usage receipt, receipts
# per second through the worker against a throwaway PostgreSQL (refdeploy/postgres:15,
# `make images`), and peak memory per receipt job. RUNS and JOBS change the counts, SLOTS
# the worker's render slots (default: the cores), ONLY_WORKER=1 runs the worker part alone.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
target_dir="${CARGO_TARGET_DIR:-$root/target}"

cd "$root"
cargo build --release --locked -p documint-render -p documint --example bench
DOCUMINT_RENDER_BIN="$target_dir/release/documint-render" "$target_dir/release/examples/bench"
