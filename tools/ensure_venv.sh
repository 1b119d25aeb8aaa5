# Sourced by the top-level scripts: make sure ./.venv exists with requirements.txt
# installed and the package itself installed in editable mode (`pip install -e .`: the
# `xmmext` command, `import xmmext` from any folder), then export XMMEXT_PY (the
# interpreter to use). A stamp file holding the hash of requirements.txt and
# pyproject.toml makes second runs skip the install entirely.
# Exit code 3 (missing dependency) when the set-up cannot be completed.

XMMEXT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_venv="$XMMEXT_ROOT/.venv"
_stamp="$_venv/.xmmext-installed"
_want="$(cat "$XMMEXT_ROOT/requirements.txt" "$XMMEXT_ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"

_xmmext_build_deps() {
    # sherpa is built from source: it needs a parser generator and FFTW headers.
    local missing=()
    for p in bison flex libfftw3-dev pkg-config; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
        echo "setup: installing Debian packages for the sherpa build: ${missing[*]}" >&2
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq "${missing[@]}" >/dev/null || return 1
    else
        echo "error: sherpa needs Debian packages ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2
        return 1
    fi
}

if [ ! -x "$_venv/bin/python" ] || [ "$(cat "$_stamp" 2>/dev/null)" != "$_want" ]; then
    echo "setup: creating $_venv and installing requirements (first run only)" >&2
    if command -v dpkg >/dev/null; then _xmmext_build_deps || exit 3; fi
    python3 -m venv "$_venv" || { echo "error: cannot create virtualenv ($_venv)" >&2; exit 3; }
    "$_venv/bin/python" -m pip install -q --upgrade pip >&2 || exit 3
    "$_venv/bin/python" -m pip install -q -r "$XMMEXT_ROOT/requirements.txt" >&2 \
        || { echo "error: pip install failed (requirements.txt)" >&2; exit 3; }
    "$_venv/bin/python" -m pip install -q --no-deps -e "$XMMEXT_ROOT" >&2 \
        || { echo "error: pip install -e . failed (pyproject.toml)" >&2; exit 3; }
    echo "$_want" > "$_stamp"
fi
export XMMEXT_PY="$_venv/bin/python"
export PYTHONPATH="$XMMEXT_ROOT${PYTHONPATH:+:$PYTHONPATH}"
