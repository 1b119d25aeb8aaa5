#!/usr/bin/env bash
# The project's test command (README, CI): set up .venv if needed, then run pytest.
# Extra arguments go to pytest, e.g. `bash run_tests.sh -k filtering -x`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tools/ensure_venv.sh"
cd "$XMMEXT_ROOT"
exec "$XMMEXT_PY" -m pytest -q -p no:cacheprovider "$@"
