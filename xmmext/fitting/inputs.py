"""The spectra a fit uses: which files, and the responses and background each one names
(header keywords resolved beside the file, overridable per camera)."""
from __future__ import annotations

import logging
from pathlib import Path

from xmmext.xspec.atomdb import find_apec_files, missing_data_message, needs_atomdb
from xmmext.core.errors import DataError, DependencyError, UsageError
from xmmext.core.fileio import read_record
from xmmext.xspec.expression import ModelExpression, parse_model
from xmmext.xspec.library import configure_xspec
from xmmext.spectra.ogip import check_response, read_pha

__all__ = ["find_spectra", "resolve_files", "check_spectrum", "model_for_fit", "soft_proton_measures",
           "choose_background"]

log = logging.getLogger("xmmext.fitting")


def find_spectra(input_dir: Path, cameras) -> list[tuple[str, Path]]:
    """Grouped source spectra <cam>_src_grp.pha (else <cam>_src.pha) in ``input_dir``;
    ``input_dir`` may also be one PHA file, or several separated by commas (any names,
    e.g. SAS's own), the camera then read from INSTRUME."""
    from xmmext.instrument import INSTRUME_TO_CAMERA
    parts = [Path(p) for p in str(input_dir).split(",") if p]
    if parts and all(p.is_file() for p in parts):
        found = []
        for p in parts:
            cam = INSTRUME_TO_CAMERA.get(read_pha(p).instrument.upper())
            if cam is None:
                raise UsageError("INSTRUME of the spectrum is not EMOS1, EMOS2 or EPN", p)
            found.append((cam, p))
        return found
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise UsageError("spectra folder not found (run step 3, spectral_analysis.py)", input_dir)
    found = []
    record = read_record(input_dir / "spectra.json").get("cameras")
    if isinstance(record, dict):         # step 3's own folder: only the cameras it made spectra of now
        cameras = [c for c in cameras if isinstance(record.get(c), dict) and record[c].get("status") == "ok"]
    for cam in cameras:
        for name in (f"{cam}_src_grp.pha", f"{cam}_src.pha"):
            if (input_dir / name).exists():
                found.append((cam, input_dir / name))
                break
    if not found:
        raise UsageError("no <cam>_src_grp.pha or <cam>_src.pha in the spectra folder", input_dir)
    return found


def resolve_files(cam: str, path: Path, opts) -> dict:
    """RESPFILE/ANCRFILE/BACKFILE of a spectrum as files that exist, or None.

    Order: the user's ``--rmf/--arf/--bkg cam=FILE``; the header's path (relative to the
    spectrum); a file of that name next to the spectrum (SAS writes the paths of the
    folder it ran in). ``BACKFILE = 'none'`` (OGIP: no background) gives None; a
    response or background named but found nowhere is an error (exit 2) saying so."""
    out = _resolve(cam, path, opts)
    for key, kind in (("RESPFILE", "RMF"), ("ANCRFILE", "ARF")):
        if out[key] is not None:
            check_response(out[key], kind)
    if out["BACKFILE"] is not None:
        read_pha(out["BACKFILE"])               # exit 2 when it is not a spectrum
    return out


def _resolve(cam: str, path: Path, opts) -> dict:
    s = read_pha(path)
    user = {"RESPFILE": opts.rmf, "ANCRFILE": opts.arf, "BACKFILE": opts.bkg}
    flag = {"RESPFILE": "--rmf", "ANCRFILE": "--arf", "BACKFILE": "--bkg"}
    out = {}
    for key in ("RESPFILE", "ANCRFILE", "BACKFILE"):
        given = (user[key] or {}).get(cam)
        if given:
            if not Path(given).is_file():
                raise UsageError(f"{cam}: {flag[key]} file not found", Path(given))
            out[key] = Path(given)
            continue
        named = s.files.get(key)
        if named is None:
            out[key] = None
            continue
        beside = path.parent / named.name
        if named.exists():
            out[key] = named
        elif beside.exists():
            out[key] = beside
        elif key == "BACKFILE" and opts.no_background:
            out[key] = None
        else:
            raise UsageError(f"{cam}: {key} {named.name} does not exist next to the spectrum; "
                             f"give {flag[key]} {cam}=FILE" + (" or --background none" if key == "BACKFILE" else ""),
                             path)
    return out


def check_spectrum(cam: str, path: Path, opts) -> dict:
    """Fail early, with the file named, on what would make a fit meaningless; return
    the resolved response and background files."""
    s = read_pha(path)
    files = resolve_files(cam, path, opts)
    if files["RESPFILE"] is None:
        raise UsageError(f"{cam}: the spectrum names no RMF (RESPFILE); give --rmf {cam}=FILE", path)
    if s.counts.sum() <= 0:
        raise DataError(f"{cam}: the spectrum has zero counts", path)
    return files


def model_for_fit(text: str) -> ModelExpression:
    """Parse an XSPEC model expression and make sure what it needs is there (AtomDB for
    apec: exit 3 with where to put the files) and that each component evaluates safely
    here (:mod:`xmmext.xspec.probe`: exit 3 naming a component that would crash)."""
    from xmmext.xspec.probe import check_components
    expr = parse_model(text)
    names = [c.xspec_name for c in expr.components]
    thermal = needs_atomdb(names)
    if thermal:
        if find_apec_files() is None:
            raise DependencyError(missing_data_message(thermal[0]))
        configure_xspec()
    check_components(names)
    return expr


def soft_proton_measures(spectra: list[tuple[str, Path]]) -> dict:
    """{camera: the residual soft-proton measure of step 1 (spectrum header SPRATIO...), or None}."""
    from astropy.io import fits
    from xmmext.events.soft_protons import from_header
    out = {}
    for cam, path in spectra:
        with fits.open(path) as h:
            out[cam] = from_header(h["SPECTRUM"].header) if "SPECTRUM" in h else None
    return out


def choose_background(opts, spectra: list[tuple[str, Path]], engine: str, measures: dict) -> tuple[str, str]:
    """(local or model, why) for ``--background auto``: the modelled background (soft protons
    fitted as a power law with their own vignetting, with the source) when step 1 found
    significant residual soft protons in a camera and the spectra have what it needs; else
    the local background."""
    if opts.background in ("local", "annulus"):        # annulus: step 3's plain subtraction, fitted as local
        return "local", "as asked"
    if opts.background != "auto":
        return opts.background, "as asked"
    flagged = [c for c, m in measures.items() if m and m.get("significant")]
    if not flagged:
        return "local", "no significant residual soft protons"
    why = f"residual soft protons in {', '.join(flagged)}"
    if engine != "sherpa" or opts.stat != "cstat":
        return "local", why + ", but the modelled background needs the sherpa engine and cstat with a background"
    missing = [c for c, p in spectra if not (Path(p).parent / f"{c}_bkgmodel.json").exists()]
    if missing:
        return "local", why + f", but the modelled background needs step 3's native files ({', '.join(missing)})"
    return "model", why + ": fitted with the source (modelled background)"
