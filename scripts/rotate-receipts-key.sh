#!/usr/bin/env bash
# Rotates the FlagBit → DocuMint receipts key on the running stack, in the safe order:
# DocuMint accepts old and new, FlagBit signs with new, wait out the old tokens, DocuMint
# forgets old. Usage: scripts/rotate-receipts-key.sh [OVERLAP_SECONDS]   (default 630:
# the 10-minute token lifetime plus 30 s leeway; shorter only for a demonstration).
set -euo pipefail
exec "$(cd "$(dirname "$0")" && pwd)/stack.sh" rotate-receipts-key "$@"
