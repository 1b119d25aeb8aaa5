"""XSPEC's compiled model library (from the PyPI package ``xspectrampoline``) via ctypes.

The parameter definitions (names, units, defaults, limits, frozen-by-default) are read
from the library's own ``model.dat``, so every XSPEC model the library exports can be
evaluated by its XSPEC name. C models (``C_*`` symbols) are called in double
precision; the older Fortran single-precision models (e.g. ``bbodyrad`` = ``xsbbrd_``)
through their Fortran interface. Abundance table and photo-ionisation cross sections
are set through XSPEC's own FPSOLR/FPXSCT, and the AtomDB folder through FPMSTR.
"""
from __future__ import annotations

import ctypes
import os
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from xmmext.core.errors import DependencyError, UsageError

__all__ = ["ABUNDANCE_TABLES", "ParamDef", "ModelDef", "library", "available", "model_def", "set_abundances",
           "set_cross_sections", "set_xset", "evaluate", "configure_xspec"]

ABUNDANCE_TABLES = ("angr", "aspl", "wilm", "lodd", "feld", "aneb", "grsa", "lpgp", "lpgs")


@dataclass(frozen=True)
class ParamDef:
    name: str
    unit: str
    default: float
    hard_min: float
    soft_min: float
    soft_max: float
    hard_max: float
    delta: float

    @property
    def frozen(self) -> bool:
        return self.delta < 0


@dataclass(frozen=True)
class ModelDef:
    name: str
    symbol: str
    kind: str                 # 'add', 'mul', 'con', ...
    params: tuple[ParamDef, ...]

    @property
    def interface(self) -> str:
        if self.symbol.startswith("C_"):
            return "C"
        if self.symbol.startswith(("F_", "c_")):
            return "unsupported"
        return "F77"


class _Library:
    """The loaded XSPEC libraries (one per process)."""

    def __init__(self):
        saved = _mute_stdout()
        try:
            import xspectrampoline
        except Exception as exc:  # ImportError or its NoLibXSPEC
            raise DependencyError(f"the XSPEC model library is not importable: {exc}; "
                                  "pip install xspectrampoline") from None
        finally:
            _restore_stdout(saved)
        self.pkg = xspectrampoline
        libs = xspectrampoline.get_libraries()
        self.functions = libs.lib_xs_functions
        self.headas = Path(xspectrampoline.get_HEADAS())
        self.models = _parse_model_dat(self.headas / "spectral" / "manager" / "model.dat")
        self.abund = None
        self.xsect = None
        self._fn = {}

    def function(self, md: ModelDef):
        if md.symbol in self._fn:
            return self._fn[md.symbol]
        if md.interface == "C":
            f = getattr(self.functions, md.symbol)
            f.argtypes = [ctypes.POINTER(ctypes.c_double), ctypes.c_int,
                          ctypes.POINTER(ctypes.c_double), ctypes.c_int,
                          ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_double),
                          ctypes.c_char_p]
        elif md.interface == "F77":
            f = getattr(self.functions, md.symbol + "_")
            f.argtypes = [ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_int),
                          ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_int),
                          ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float)]
        else:
            raise UsageError(f"XSPEC model {md.name!r} uses an interface this engine does not call")
        f.restype = None
        self._fn[md.symbol] = f
        return f


def _mute_stdout():
    # The C library prints its start-up banner on file descriptor 1; keep our stdout clean.
    try:
        sys.stdout.flush()
        saved = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
        return saved
    except OSError:
        return None


def _restore_stdout(saved):
    if saved is not None:
        os.dup2(saved, 1)
        os.close(saved)


@lru_cache(maxsize=1)
def library() -> _Library:
    """Load the XSPEC model library once (raises DependencyError if unavailable)."""
    return _Library()


def available() -> bool:
    try:
        library()
        return True
    except DependencyError:
        return False


def _parse_model_dat(path: Path) -> dict[str, ModelDef]:
    """Parse XSPEC's model.dat (component header line, then one line per parameter)."""
    models: dict[str, ModelDef] = {}
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        head = lines[i].split()
        i += 1
        if len(head) < 6 or not head[1].lstrip("-").isdigit():
            continue
        name, npar, symbol, kind = head[0], int(head[1]), head[4], head[5]
        params = []
        for _ in range(npar):
            raw = lines[i]
            i += 1
            params.append(_parse_param_line(raw))
        models[name.lower()] = ModelDef(name, symbol, kind, tuple(params))
    return models


def _parse_param_line(raw: str) -> ParamDef:
    """One parameter line: ``name unit default hardmin softmin softmax hardmax delta``.

    ``$`` marks a switch and ``*`` a scale parameter (both always frozen); the unit
    may be a quoted string such as ``" "``.
    """
    text = raw.strip()
    fixed = text[:1] in ("$", "*")
    tokens = re.findall(r'"[^"]*"|\S+', text.lstrip("$*"))
    name = tokens[0]
    rest = tokens[1:]
    unit = ""
    if rest and not _is_number(rest[0]):
        unit = rest[0].strip('"').strip()
        rest = rest[1:]
    vals = [float(x) for x in rest if _is_number(x)] or [0.0]
    if fixed:
        v = vals[0]
        return ParamDef(name, unit, v, v, v, v, v, -1.0)
    while len(vals) < 6:
        vals.append(vals[-1])
    return ParamDef(name, unit, *vals[:6])


def _is_number(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def model_def(name: str) -> ModelDef:
    """The definition of XSPEC model ``name`` (case-insensitive, as XSPEC)."""
    lib = library()
    key = name.lower()
    if key not in lib.models:
        raise UsageError(f"unknown XSPEC model component {name!r}")
    return lib.models[key]


def _set_table(symbol: str, table: str, what: str) -> None:
    """Call XSPEC's FPSOLR/FPXSCT-style setter (``table``, ``&ierr``) quietly."""
    f = getattr(library().functions, symbol)
    f.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
    ierr = ctypes.c_int(0)
    saved = _mute_stdout()
    try:
        f(table.encode(), ctypes.byref(ierr))
    finally:
        _restore_stdout(saved)
    if ierr.value != 0:
        raise UsageError(f"XSPEC refused {what} {table!r}")


def set_abundances(table: str) -> None:
    """Set XSPEC's solar abundance table (FPSOLR), e.g. 'aspl', 'angr', 'wilm'."""
    lib = library()
    if table == lib.abund:
        return
    if table not in ABUNDANCE_TABLES:
        raise UsageError(f"unknown abundance table {table!r}; choose from {', '.join(ABUNDANCE_TABLES)}")
    _set_table("FPSOLR", table, "abundance table")
    lib.abund = table


def set_cross_sections(table: str = "vern") -> None:
    """Set the photo-ionisation cross sections (FPXSCT): 'vern', 'bcmc' or 'obcm'."""
    lib = library()
    if table == lib.xsect:
        return
    _set_table("FPXSCT", table, "cross-section table")
    lib.xsect = table


def set_xset(name: str, value: str) -> None:
    """XSPEC's ``xset NAME VALUE`` (FPMSTR), e.g. APECROOT."""
    f = library().functions.FPMSTR
    f.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    f(name.encode(), value.encode())


def evaluate(name: str, pars, energies_kev, spectrum: int = 1) -> np.ndarray:
    """Evaluate XSPEC model ``name`` on the energy-bin edges ``energies_kev``.

    Additive models return photons/cm^2/s per bin for norm = 1; multiplicative ones a
    factor per bin. ``pars`` excludes the norm. Raises DependencyError when an
    additive model gives all zeros because its data files are missing.
    """
    lib = library()
    md = model_def(name)
    pars = np.ascontiguousarray(pars, dtype=np.float64)
    if len(pars) != len(md.params):
        raise UsageError(f"{md.name} takes {len(md.params)} parameters, got {len(pars)}")
    e = np.ascontiguousarray(energies_kev, dtype=np.float64)
    nbin = len(e) - 1
    first_call = md.symbol not in lib._fn
    f = lib.function(md)
    saved = _mute_stdout() if first_call else None   # some models print a banner once
    try:
        out = _call(md, f, e, pars, nbin, spectrum)
    finally:
        _restore_stdout(saved)
    if md.kind == "add" and not np.any(out):
        from xmmext.xspec.atomdb import THERMAL_MODELS, missing_data_message
        if md.name.lower() in THERMAL_MODELS:      # these return zeros when AtomDB is missing
            raise DependencyError(missing_data_message(md.name))
    return out


def _call(md: ModelDef, f, e, pars, nbin: int, spectrum: int) -> np.ndarray:
    if md.interface == "C":
        out = np.zeros(nbin)
        err = np.zeros(nbin)
        f(e.ctypes.data_as(ctypes.POINTER(ctypes.c_double)), nbin,
          pars.ctypes.data_as(ctypes.POINTER(ctypes.c_double)), spectrum,
          out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
          err.ctypes.data_as(ctypes.POINTER(ctypes.c_double)), b"")
    else:
        e32 = e.astype(np.float32)
        p32 = pars.astype(np.float32)
        out32 = np.zeros(nbin, np.float32)
        err32 = np.zeros(nbin, np.float32)
        f(e32.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), ctypes.byref(ctypes.c_int(nbin)),
          p32.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), ctypes.byref(ctypes.c_int(spectrum)),
          out32.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
          err32.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        out = out32.astype(np.float64)
    return out


def configure_xspec() -> dict | None:
    """Point XSPEC at the AtomDB files if found (xset APECROOT); return what was found."""
    from xmmext.xspec.atomdb import find_apec_files
    found = find_apec_files()
    if found:
        set_xset("APECROOT", str(Path(found["dir"]) / f"apec_v{found['version']}"))
    return found
