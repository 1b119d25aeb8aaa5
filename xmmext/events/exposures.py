"""Several exposures of one camera made one cleaned event list (step 1).

Exposures of one observation in the same readout mode, filter and sky frame
(:func:`xmmext.events.reader.exposures_to_use`) share the CCD footprint and the responses; what
differs is their time. Each is screened on its own (its own light curve and flare cut),
then the cleaned lists are joined: the events in time order, each CCD's good-time table
the union of the exposures' (they do not overlap), and the exposure keywords
(ONTIMEnn, LIVETInn, EXPOSUnn, LIVETIME...) the sums, so that every later step (exposure
maps weighted by CCD live time, spectra with EXPOSURE = live time) reads one list as it
reads one exposure.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from astropy.io import fits

from xmmext.core.fileio import atomic_path

__all__ = ["merge_cleaned_lists"]

_SUMMED = re.compile(r"^(ONTIME|LIVETI|EXPOSU)\d\d$")


def merge_cleaned_lists(paths: list[Path], dest: Path) -> dict:
    """Join the cleaned lists ``paths`` (one camera, time-ordered exposures) into ``dest``;
    returns the merged live time and event count."""
    hduls = [fits.open(p, memmap=True) for p in paths]
    try:
        first = hduls[0]["EVENTS"]
        rows = np.concatenate([np.asarray(h["EVENTS"].data) for h in hduls])
        rows = rows[np.argsort(rows["TIME"], kind="stable")]
        header = first.header.copy()
        for key in list(header.keys()):
            if _SUMMED.match(key) or key in ("ONTIME", "LIVETIME", "EXPOSURE"):
                header[key] = float(sum(float(h["EVENTS"].header.get(key, 0.0)) for h in hduls))
        header["TSTART"] = min(float(h["EVENTS"].header["TSTART"]) for h in hduls)
        header["TSTOP"] = max(float(h["EVENTS"].header["TSTOP"]) for h in hduls)
        header["HISTORY"] = f"xmmext: {len(paths)} exposures merged: " + ", ".join(Path(p).name for p in paths)
        for k in ("NAXIS2", "CHECKSUM", "DATASUM"):
            header.remove(k, ignore_missing=True)
        events = fits.BinTableHDU(data=rows, header=header, name="EVENTS")
        extra = _joined_tables(hduls)
        with atomic_path(dest) as tmp:
            fits.HDUList([fits.PrimaryHDU(header=hduls[0][0].header.copy()), events] + extra).writeto(tmp)
        return {"livetime": float(header["LIVETIME"]), "events": int(len(rows))}
    finally:
        for h in hduls:
            h.close()


def _joined_tables(hduls) -> list:
    """Every other table (STDGTInn, BADPIXnn) with its rows from all exposures: good times
    add up (the exposures do not overlap), bad pixels of any exposure stay bad."""
    names = list(dict.fromkeys(h.name for hdul in hduls for h in hdul[2:] if isinstance(h, fits.BinTableHDU)))
    out = []
    for name in names:
        parts = [hdul[name] for hdul in hduls if name in hdul]
        data = np.concatenate([np.asarray(p.data) for p in parts if p.data is not None])
        if name.startswith("STDGTI") and len(data):
            data = data[np.argsort(data["START"])]
        header = parts[0].header.copy()
        for k in ("NAXIS2", "CHECKSUM", "DATASUM"):
            header.remove(k, ignore_missing=True)
        out.append(fits.BinTableHDU(data=data, header=header, name=name))
    return out
