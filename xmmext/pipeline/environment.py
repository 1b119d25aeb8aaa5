"""What this machine offers: SAS, HEASoft/PyXspec, and the native engine.

``python -m xmmext.pipeline.environment`` prints a table of backends (with the reason for each
missing one) on stderr and, with ``--shell``, ``export`` lines on stdout that
``set_env.sh`` evaluates. Exit 0 when at least the native path works, 3 otherwise.
"""
from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field

import xmmext.core.runner as runner
from xmmext.core.cli import Parser


@dataclass
class Backend:
    name: str
    usable: bool
    detail: str
    exports: dict = field(default_factory=dict)


def detect_sas() -> Backend:
    sas_dir = os.environ.get("SAS_DIR")
    ccfpath = os.environ.get("SAS_CCFPATH")
    exe = shutil.which("sasversion")
    if not sas_dir or not exe:
        why = "SAS_DIR not set" if not sas_dir else "sasversion not on PATH"
        return Backend("sas", False, f"not initialised ({why}); source $SAS_DIR/setsas.sh first")
    res = runner.run([exe], timeout=60)
    version = (res.stdout.strip().splitlines() or ["?"])[-1] if res.ok else None
    if version is None:
        return Backend("sas", False, f"sasversion failed: {res.stderr.strip()[:120]}")
    if not ccfpath:
        return Backend("sas", False, f"{version}; SAS_CCFPATH not set (no calibration files)")
    if not os.path.isdir(ccfpath):
        return Backend("sas", False, f"{version}; SAS_CCFPATH={ccfpath} does not exist")
    # emchain's flare light curves call HEASoft's lcurve (DAXA checks for it too; issue 13)
    lc = "" if shutil.which("lcurve") else "; lcurve (HEASoft) not on PATH: emchain may fail"
    return Backend("sas", True, f"{version}; CCF {ccfpath}{lc}",
                   {"SAS_VERBOSITY": os.environ.get("SAS_VERBOSITY", "3"), "HEADASNOQUERY": "1"})


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
