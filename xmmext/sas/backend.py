"""Whether SAS is here and usable, and choosing the processing backend (native or SAS) for a step."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field

import xmmext.core.runner as runner
from xmmext.core.errors import DependencyError, UsageError
from xmmext.core.paths import ObsPaths

__all__ = ["Backend", "detect_sas", "choose_backend"]


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


def choose_backend(requested: str, paths: ObsPaths) -> str:
    """'auto' -> 'sas' when SAS is initialised and the ODF exists, else 'native'.

    ``--backend sas`` without a usable SAS is a missing dependency (exit 3).
    """
    if requested not in ("auto", "native", "sas"):
        raise UsageError(f"unknown backend {requested!r}; use auto, native or sas")
    if requested == "native":
        return "native"
    sas = detect_sas()
    if requested == "sas":
        if not sas.usable:
            raise DependencyError(f"--backend sas but SAS is not usable: {sas.detail}")
        return "sas"
    return "sas" if sas.usable and paths.odf.is_dir() and any(paths.odf.iterdir()) else "native"
