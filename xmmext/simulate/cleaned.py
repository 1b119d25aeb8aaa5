"""SAS-style cleaned event lists from a raw one (the simulator's ``--sas-cleaned`` variant).

What SAS users (and XGA/DAXA) hand to the pipeline is not a PPS list but the output of
``evselect ... expression='#XMMEA_EM && (PATTERN<=12) && (FLAG==0) && GTI(gti,TIME)'
updateexposure=yes``: events already screened (no corner events, FLAG==0 only), the flare
GTI written per CCD as ``GTI00n06``-style tables referenced by the data-subspace (DSS)
keywords of EVENTS, STDGTInn still spanning the whole exposure, ONTIMEnn/LIVETInn for the
good time, and a name such as ``mos1_exp1_clean_evts.fits``. This module writes that
layout, so simulated observations exercise the same code paths as real cleaned lists
(tests/test_real_data.py checks the real ones).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

import xmmext.events.gti as G
from xmmext.events.selection import compile_expression
from xmmext.core.fileio import write_fits

__all__ = ["LIVE_FRACTION", "cleaned_name", "write_sas_cleaned"]

LIVE_FRACTION = {"mos1": 0.9825, "mos2": 0.9845, "pn": 0.9930}   # LIVETIME/ONTIME as in real lists


def cleaned_name(camera: str) -> str:
    return f"{camera}_exp1_clean_evts.fits"


def write_sas_cleaned(raw_path: Path, dest: Path, camera: str, expression: str, bad_time) -> np.ndarray:
    """Write the SAS-style cleaned version of ``raw_path`` to ``dest``; return the row mask
    kept (for the truth labels). ``bad_time``: intervals removed (flares), mission time."""
    with fits.open(raw_path) as hdul:
        ev = hdul["EVENTS"]
        cols = {c: np.asarray(ev.data[c]) for c in ev.columns.names}
        tstart, tstop = float(ev.header["TSTART"]), float(ev.header["TSTOP"])
        good = G.intersect([[tstart, tstop]], _complement(bad_time, tstart, tstop))
        keep = compile_expression(expression).evaluate(cols) & G.in_gti(cols["TIME"], good)
        header = ev.header.copy()
        ccds = sorted(int(h.header["CCDID"]) for h in hdul[1:] if (h.name or "").startswith("STDGTI"))
        std = [h.copy() for h in hdul[1:] if (h.name or "").startswith("STDGTI")]
        events = fits.BinTableHDU(data=ev.data[keep], header=header, name="EVENTS")
        primary = hdul[0].copy()
    h = events.header
    on = G.total(good)
    live = on * LIVE_FRACTION[camera]
    for c in ccds:
        h[f"ONTIME{c:02d}"], h[f"LIVETI{c:02d}"], h[f"EXPOSU{c:02d}"] = on, live, live
    h["ONTIME"], h["LIVETIME"], h["EXPOSURE"] = on, live, live
    # data-subspace keywords as evselect writes them: block k is CCD k, its TIME subspace
    # the table GTI00{k-1}06
    h["DSTYP1"], h["DSVAL1"] = "CCDNR", str(ccds[0])
    h["DSTYP2"], h["DSUNI2"], h["DSVAL2"], h["DSREF2"] = "TIME", "s", "TABLE", f":GTI{ccds[0] - 1:03d}06"
    for c in ccds[1:]:
        h[f"{c}DSVAL1"], h[f"{c}DSREF2"] = str(c), f":GTI{c - 1:03d}06"
    gtis = []
    for c in ccds:
        g = fits.BinTableHDU.from_columns([fits.Column("START", "D", unit="s", array=good[:, 0]),
                                           fits.Column("STOP", "D", unit="s", array=good[:, 1])],
                                          name=f"GTI{c - 1:03d}06")
        g.header["CCDID"] = c
        g.header["HDUCLASS"], g.header["HDUCLAS1"], g.header["HDUCLAS2"] = "OGIP", "GTI", "STANDARD"
        gtis.append(g)
    write_fits(dest, fits.HDUList([primary, events] + std + gtis), checksum=False)
    return keep


def _complement(intervals, t0: float, t1: float) -> np.ndarray:
    g = G.normalise(np.asarray(intervals, float).reshape(-1, 2)) if len(intervals) else np.zeros((0, 2))
    edges = [t0] + g.ravel().tolist() + [t1]
    pairs = np.array(edges).reshape(-1, 2)
    return pairs[pairs[:, 1] > pairs[:, 0]]
