"""Choosing the processing backend (native or SAS) for a step."""
from __future__ import annotations

from xmmext.core.errors import DependencyError, UsageError
from xmmext.core.paths import ObsPaths


def choose_backend(requested: str, paths: ObsPaths) -> str:
    """'auto' -> 'sas' when SAS is initialised and the ODF exists, else 'native'.

    ``--backend sas`` without a usable SAS is a missing dependency (exit 3).
    """
    if requested not in ("auto", "native", "sas"):
        raise UsageError(f"unknown backend {requested!r}; use auto, native or sas")
    if requested == "native":
        return "native"
    from xmmext.pipeline.environment import detect_sas
    sas = detect_sas()
    if requested == "sas":
        if not sas.usable:
            raise DependencyError(f"--backend sas but SAS is not usable: {sas.detail}")
        return "sas"
    return "sas" if sas.usable and paths.odf.is_dir() and any(paths.odf.iterdir()) else "native"
