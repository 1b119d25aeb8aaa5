#!/usr/bin/env bash
# Set up and report the analysis environment. Source it (`source set_env.sh`) to get
# the exports in your shell, or run it (`bash set_env.sh`) to see what is available.
# Detects SAS (sasversion, SAS_DIR, SAS_CCFPATH), HEASoft (HEADAS, PyXspec) and the
# native engine (sherpa + XSPEC model library, AtomDB). Exit/return 0 when at least the
# native path works, 3 when nothing usable.
(return 0 2>/dev/null) && _xmmext_sourced=1 || _xmmext_sourced=0
_xmmext_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

_xmmext_set_env() {
    # the venv install runs in a subshell so a failure cannot close a sourcing shell
    ( source "$_xmmext_here/tools/ensure_venv.sh" ) || return 3
    export XMMEXT_ROOT="$_xmmext_here"
    export XMMEXT_PY="$_xmmext_here/.venv/bin/python"
    case ":${PYTHONPATH:-}:" in *":$_xmmext_here:"*) ;; *) export PYTHONPATH="$_xmmext_here${PYTHONPATH:+:$PYTHONPATH}";; esac
    local exports rc
    exports="$("$XMMEXT_PY" -m xmmext.pipeline.environment --shell)"; rc=$?
    [ $rc -eq 0 ] || return $rc
    eval "$exports"
    echo "set_env: backend=$XMMEXT_BACKEND engine=$XMMEXT_ENGINE (python: $XMMEXT_PY)" >&2
}

_xmmext_set_env
_xmmext_rc=$?
if [ "$_xmmext_sourced" = 1 ]; then return $_xmmext_rc; else exit $_xmmext_rc; fi
