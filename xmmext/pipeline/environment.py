"""What this machine offers: SAS, HEASoft/PyXspec, and the native engine.

``python -m xmmext.pipeline.environment`` prints a table of backends (with the reason for each
missing one) on stderr and, with ``--shell``, ``export`` lines on stdout that
``set_env.sh`` evaluates. Exit 0 when at least the native path works, 3 otherwise.
"""
from __future__ import annotations

import importlib.util
import os
import shlex
import sys


from xmmext.core.cli import Parser
from xmmext.sas.backend import Backend, detect_sas

__all__ = ["detect_pyxspec", "detect_native", "detect_all", "table", "main"]


def detect_pyxspec() -> Backend:
    headas = os.environ.get("HEADAS")
    if not headas:
        return Backend("pyxspec", False, "HEADAS not set (HEASoft not initialised)")
    if importlib.util.find_spec("xspec") is None:
        return Backend("pyxspec", False, f"HEADAS={headas} but PyXspec (import xspec) not importable")
    return Backend("pyxspec", True, f"HEADAS={headas}")


def detect_native() -> Backend:
    missing = [m for m in ("numpy", "astropy", "scipy", "regions", "sherpa", "xspectrampoline")
               if importlib.util.find_spec(m) is None]
    if missing:
        return Backend("native", False, f"missing Python packages: {', '.join(missing)} "
                       "(run: bash run_tests.sh or pip install -r requirements.txt)")
    from xmmext.xspec.atomdb import find_apec_files
    import xmmext.xspec.library as xspec_models
    try:
        xspec_models.library()
    except Exception as exc:  # DependencyError with the reason
        return Backend("native", False, f"XSPEC model library not loadable: {exc}")
    found = find_apec_files()
    atom = f"AtomDB {found['version']} found" if found else "AtomDB absent: apec unavailable, the default model falls back to zbremss"
    import sherpa
    return Backend("native", True, f"sherpa {sherpa.__version__} + XSPEC models; {atom}",
                   {"XMMEXT_ATOMDB": found["dir"]} if found else {})


def detect_all() -> list[Backend]:
    return [detect_sas(), detect_pyxspec(), detect_native()]


def table(backends: list[Backend]) -> str:
    rows = ["backend   status   detail", "-------   ------   ------"]
    for b in backends:
        rows.append(f"{b.name:<9} {'ok' if b.usable else 'missing':<8} {b.detail}")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = Parser(prog="python -m xmmext.pipeline.environment", description=__doc__.splitlines()[0])
    p.add_argument("--shell", action="store_true", help="print export lines for set_env.sh")
    args = p.parse_args(argv)
    backends = detect_all()
    print(table(backends), file=sys.stderr)
    by = {b.name: b for b in backends}
    if args.shell:
        exports = {}
        for b in backends:
            if b.usable:
                exports.update(b.exports)
        exports["XMMEXT_BACKEND"] = "sas" if by["sas"].usable else "native"
        exports["XMMEXT_ENGINE"] = "pyxspec" if by["pyxspec"].usable else "sherpa"
        for k, v in exports.items():
            print(f"export {k}={shlex.quote(v)}")
    if not by["native"].usable:
        print("error: the native engine is not usable; nothing can run", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
