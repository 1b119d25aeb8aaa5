#!/usr/bin/env bash
# All steps for one observation: bash run_extended_source_analysis.sh <OBSID> <name>
# The embedded simulated observation:  bash run_extended_source_analysis.sh --demo
# Sets up .venv on first use. Work directory: --workdir, $XMMEXT_WORKDIR or the current directory.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tools/ensure_venv.sh"
exec "$XMMEXT_PY" -m xmmext run "$@"
