#!/usr/bin/env bash
# Step 2: images, point sources, source + background regions (results/<OBSID>/regions/).
# Usage: bash generate_regions.sh <OBSID> [--ra DEG --dec DEG] [--radius ARCMIN|auto]
#        [--bkg-inner 1.5 --bkg-outer 2.0] [--cameras ...] [--force]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tools/ensure_venv.sh"
exec "$XMMEXT_PY" -m xmmext regions "$@"
