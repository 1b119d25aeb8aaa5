"""Where XSPEC's thermal-plasma models (apec, vapec, ...) find their AtomDB files.

With HEASoft the files are in $HEADAS/../spectral/modelData. Without it, the pipeline
looks in $XMMEXT_ATOMDB, then in the model-data folder of xspectrampoline. Without them
a run with no explicit model falls back to ``zbremss`` (:mod:`xmmext.fitting.model_choice`).

``python -m xmmext.xspec.atomdb --status`` prints what is present and where files go.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

__all__ = ["THERMAL_MODELS", "candidate_dirs", "find_apec_files", "target_dir", "missing_data_message",
           "needs_atomdb", "status_text", "main"]

THERMAL_MODELS = {"apec", "vapec", "vvapec", "bapec", "bvapec", "vvbapec", "nei", "vnei",
                  "pshock", "vpshock", "sedov", "vsedov", "gnei", "npshock", "mekal", "vmekal",
                  "cemekl", "cevmkl", "mkcflow", "vmcflow", "c6mekl", "c6vmekl"}
_APEC_RE = re.compile(r"apec_v(\d+\.\d+\.\d+)_(coco|line)\.fits$")


def candidate_dirs() -> list[Path]:
    """Folders searched for apec_v*_coco.fits / apec_v*_line.fits, in order."""
    dirs = []
    if os.environ.get("XMMEXT_ATOMDB"):
        dirs.append(Path(os.environ["XMMEXT_ATOMDB"]).expanduser())
    if os.environ.get("ATOMDB"):
        dirs.append(Path(os.environ["ATOMDB"]).expanduser())
    headas = _headas()
    if headas is not None:
        dirs.append(headas / "spectral" / "modelData")
    return dirs


def _headas() -> Path | None:
    if os.environ.get("HEADAS"):
        return Path(os.environ["HEADAS"])
    try:
        import importlib.util
        spec = importlib.util.find_spec("xspectrampoline_helpers")
        if spec and spec.submodule_search_locations:
            base = Path(list(spec.submodule_search_locations)[0]).parent / "xspectrampoline"
            found = sorted(base.glob("LibXSPEC_v*"))
            return found[-1].resolve() if found else None
    except Exception:
        return None
    return None


def find_apec_files() -> dict | None:
    """{'dir', 'version', 'coco', 'line'} for the first complete AtomDB set found, else None."""
    for d in candidate_dirs():
        if not d.is_dir():
            continue
        versions: dict[str, dict[str, Path]] = {}
        for p in d.iterdir():
            m = _APEC_RE.search(p.name)
            if m:
                versions.setdefault(m.group(1), {})[m.group(2)] = p
        full = [v for v, f in versions.items() if {"coco", "line"} <= set(f)]
        if full:
            v = sorted(full, key=lambda s: tuple(int(x) for x in s.split(".")))[-1]
            return {"dir": str(d), "version": v, "coco": str(versions[v]["coco"]),
                    "line": str(versions[v]["line"])}
    return None


def target_dir() -> Path:
    """Where a user should put the AtomDB files."""
    if os.environ.get("XMMEXT_ATOMDB"):
        return Path(os.environ["XMMEXT_ATOMDB"]).expanduser()
    h = _headas()
    return (h / "spectral" / "modelData") if h else Path("~/atomdb").expanduser()


def missing_data_message(model: str) -> str:
    return (f"XSPEC model {model} returned zeros: its data files are missing "
            f"(AtomDB apec_v3.x_coco.fits and apec_v3.x_line.fits); put them in {target_dir()} "
            "or set XMMEXT_ATOMDB to their folder (python -m xmmext.xspec.atomdb --status)")


def needs_atomdb(components) -> list[str]:
    return [c for c in components if c.lower() in THERMAL_MODELS]


def status_text() -> str:
    found = find_apec_files()
    lines = ["AtomDB (thermal plasma data for apec/vapec/...):"]
    for d in candidate_dirs():
        lines.append(f"  searched: {d}{'' if d.is_dir() else ' (absent)'}")
    if found:
        lines.append(f"  found:    version {found['version']} in {found['dir']}")
    else:
        lines.append("  found:    none -> an explicit apec model stops with exit 3; the default model "
                     "falls back to tbabs*(zbremss+powerlaw)")
        lines.append(f"  put apec_v3.x_coco.fits and apec_v3.x_line.fits in {target_dir()}")
        lines.append("  (or set XMMEXT_ATOMDB=/folder/with/them)")
    return "\n".join(lines)


def main(argv=None) -> int:
    from xmmext.core.cli import Parser
    p = Parser(prog="python -m xmmext.xspec.atomdb", description=__doc__.splitlines()[0])
    p.add_argument("--status", action="store_true", help="print what is present and where files go")
    args = p.parse_args(argv)
    print(status_text())
    return 0 if find_apec_files() else (0 if args.status else 3)


if __name__ == "__main__":
    sys.exit(main())
