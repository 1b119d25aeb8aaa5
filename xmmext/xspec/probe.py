"""Which XSPEC components evaluate safely here, found by trying each one once in a
child process.

Some components of XSPEC's compiled library kill the process that calls them when
their data files are missing or their code is not meant for this use (segfaults,
aborts, or ``Fatal error`` followed by exit on a muted stdout): a fit must not find out
by dying. Before a fit, every component of the model is evaluated once at its default
parameters in a child Python; the verdict (ok, or why not) is cached per library
build in ``$XMMEXT_CACHE`` (default ``~/.cache/xmmext``). Missing model data (AtomDB for
apec) is reported, never cached: it changes when the files are installed.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from xmmext.core.errors import DependencyError

__all__ = ["OK_MARK", "DATA_MARK", "PROBE_TIMEOUT_S", "cache_file", "library_key", "check_components", "probe"]

OK_MARK = "XMMEXT-PROBE-OK"
DATA_MARK = "XMMEXT-PROBE-DATA:"
PROBE_TIMEOUT_S = 120.0


def cache_file() -> Path:
    root = os.environ.get("XMMEXT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "xmmext")
    return Path(root) / "xspec_components.json"


def library_key() -> str:
    """Identifies the XSPEC library build (package version, its model.dat file)."""
    from xmmext.xspec.library import library
    lib = library()
    model_dat = lib.headas / "spectral" / "manager" / "model.dat"
    st = model_dat.stat()
    text = f"{getattr(lib.pkg, '__version__', '?')}:{model_dat}:{st.st_size}:{st.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_components(names: list[str]) -> None:
    """Raise DependencyError (exit 3) naming the first component of ``names`` that does
    not evaluate safely here, with why (signal, exit, XSPEC's fatal message, no data)."""
    key = library_key()
    path = cache_file()
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    known = cache.setdefault(key, {})
    changed = False
    for name in dict.fromkeys(n.lower() for n in names):
        verdict = known.get(name)
        if verdict is None:
            verdict, cacheable = probe(name)
            if cacheable:
                known[name], changed = verdict, True
        if verdict != "ok":
            raise DependencyError(f"XSPEC component {name} cannot be evaluated here: {verdict}")
    if changed:
        _save(path, cache)


def probe(name: str) -> tuple[str, bool]:
    """Evaluate one component in a child process: ('ok' or why not, whether to cache)."""
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        res = subprocess.run([sys.executable, "-m", "xmmext.xspec.probe", name], capture_output=True, text=True,
                             timeout=PROBE_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        return f"it did not finish in {PROBE_TIMEOUT_S:.0f} s", True
    out = res.stdout + "\n" + res.stderr
    if OK_MARK in res.stdout:
        return "ok", True
    for line in out.splitlines():
        if line.startswith(DATA_MARK):
            return line[len(DATA_MARK):].strip(), False
    fatal = next((ln.strip() for ln in out.splitlines() if "fatal" in ln.lower() or "error" in ln.lower()), "")
    if res.returncode < 0:
        sig = signal.Signals(-res.returncode).name
        return f"the XSPEC library crashed ({sig})" + (f": {fatal}" if fatal else ""), True
    return (f"the XSPEC library stopped the process (exit {res.returncode})" + (f": {fatal}" if fatal else "")
            + "; its data files may be missing"), True


def _save(path: Path, cache: dict) -> None:
    from xmmext.core.fileio import write_json
    try:
        write_json(path, cache)
    except Exception:        # a cache that cannot be written only costs time
        pass


def _child(name: str) -> None:
    """Run in the child: evaluate ``name`` at its defaults on 0.1-10 keV."""
    import numpy as np
    import xmmext.xspec.library as xm
    from xmmext.core.errors import DependencyError as Missing
    xm.set_abundances("aspl")
    xm.set_cross_sections("vern")
    xm.configure_xspec()
    md = xm.model_def(name)
    xm.library().function(md)          # loaded first, so that evaluate does not mute its messages
    try:
        out = xm.evaluate(md.name, [p.default for p in md.params], np.linspace(0.1, 10.0, 200))
    except Missing as exc:
        print(DATA_MARK, exc.message, flush=True)
        return
    if not np.all(np.isfinite(out)):
        print("error: it gives values that are not finite at its default parameters", flush=True)
        return
    print(OK_MARK, flush=True)


if __name__ == "__main__":
    _child(sys.argv[1])
