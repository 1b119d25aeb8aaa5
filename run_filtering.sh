#!/usr/bin/env bash
# Step 1: events -> flare-cleaned events, GTIs, light curves (results/<OBSID>/events/).
# Usage: bash run_filtering.sh <OBSID> [--backend auto|native|sas] [--method histogram|fixed|ratio]
#        [--threshold-mos 0.35 --threshold-pn 0.4] [--sigma 3] [--cameras ...] [--force]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tools/ensure_venv.sh"
exec "$XMMEXT_PY" -m xmmext filter "$@"
