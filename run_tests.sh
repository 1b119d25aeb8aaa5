#!/usr/bin/env bash
# The project's test command (README, CI): set up .venv if needed, then run pytest.
# Tests run in parallel, one process per core (pytest-xdist), each test file in one
# process so that its fixtures are made once. Extra arguments go to pytest, e.g.
# `bash run_tests.sh -k filtering -x`; `bash run_tests.sh -n 0` runs in one process.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tools/ensure_venv.sh"
cd "$XMMEXT_ROOT"
exec "$XMMEXT_PY" -m pytest -q -p no:cacheprovider -n auto --dist loadfile "$@"
