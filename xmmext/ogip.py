"""Reading OGIP type-I spectra the way XSPEC and sherpa interpret them.

:func:`read_pha` resolves what a fitting program needs from a PHA file: counts (or
rate x exposure), EXPOSURE, BACKSCAL/AREASCAL as keyword or per-channel column,
GROUPING/QUALITY, and the RESPFILE/ANCRFILE/BACKFILE names resolved relative to the
spectrum's folder. Works on SAS products and on this pipeline's. :func:`pi_spectrum`
bins event PI into the channels such a file holds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from .errors import UsageError
from .instrument import CHANNEL_EV


@dataclass
class Spectrum:
    path: Path
    channel: np.ndarray
    counts: np.ndarray
    exposure: float
    backscal: float | np.ndarray
    areascal: float | np.ndarray
    grouping: np.ndarray | None
    quality: np.ndarray | None
    header: fits.Header
    files: dict = field(default_factory=dict)     # RESPFILE/ANCRFILE/BACKFILE -> Path or None

    @property
    def instrument(self) -> str:
        return str(self.header.get("INSTRUME", "")).strip()


def _scalar_or_column(hdu, name: str, default: float):
    if name in hdu.columns.names:
        return np.asarray(hdu.data[name], float)
    return float(hdu.header.get(name, default))


def read_pha(path: str | Path) -> Spectrum:
    """Read an OGIP type-I PHA file (exit 2 with a one-line reason when it is not one)."""
    path = Path(path)
    try:
        hdul = fits.open(path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"spectrum does not open as FITS: {exc}", path) from None
    with hdul:
        if "SPECTRUM" in hdul:
            hdu = hdul["SPECTRUM"]
        else:
            cand = [h for h in hdul[1:] if str(h.header.get("HDUCLAS1", "")).upper() == "SPECTRUM"]
            if not cand:
                raise UsageError("no SPECTRUM extension (not an OGIP PHA file)", path)
            hdu = cand[0]
        names = hdu.columns.names
        if "CHANNEL" not in names or not ({"COUNTS", "RATE"} & set(names)):
            raise UsageError("SPECTRUM has no CHANNEL and COUNTS/RATE columns", path)
        exposure = float(hdu.header.get("EXPOSURE", 0.0))
        if "COUNTS" in names:
            counts = np.asarray(hdu.data["COUNTS"], float)
        else:
            counts = np.asarray(hdu.data["RATE"], float) * exposure
        files = {}
        for key in ("RESPFILE", "ANCRFILE", "BACKFILE"):
            v = str(hdu.header.get(key, "none")).strip()
            files[key] = None if v.lower() in ("", "none") else (path.parent / v)
        return Spectrum(path=path, channel=np.asarray(hdu.data["CHANNEL"], int), counts=counts,
                        exposure=exposure, backscal=_scalar_or_column(hdu, "BACKSCAL", 1.0),
                        areascal=_scalar_or_column(hdu, "AREASCAL", 1.0),
                        grouping=np.asarray(hdu.data["GROUPING"], int) if "GROUPING" in names else None,
                        quality=np.asarray(hdu.data["QUALITY"], int) if "QUALITY" in names else None,
                        header=hdu.header.copy(), files=files)


@dataclass
class Response:
    """An RMF as a dense (energy x channel) matrix, with its energy grid and EBOUNDS."""
    energ_lo: np.ndarray
    energ_hi: np.ndarray
    matrix: np.ndarray
    e_min: np.ndarray
    e_max: np.ndarray
    first_channel: int


def read_rmf(path: str | Path) -> Response:
    """Read an OGIP RMF (MATRIX or SPECRESP MATRIX + EBOUNDS) into a dense matrix."""
    path = Path(path)
    try:
        with fits.open(path) as h:
            mext = "MATRIX" if "MATRIX" in h else "SPECRESP MATRIX"
            m, eb = h[mext], h["EBOUNDS"]
            nchan = len(eb.data)
            fmin = int(m.header.get("TLMIN4", eb.data["CHANNEL"][0]))
            lo, hi = np.asarray(m.data["ENERG_LO"], float), np.asarray(m.data["ENERG_HI"], float)
            dense = np.zeros((len(lo), nchan))
            for i, row in enumerate(m.data):
                fch, nch, vals = np.atleast_1d(row["F_CHAN"]), np.atleast_1d(row["N_CHAN"]), np.asarray(row["MATRIX"], float)
                k = 0
                for f0, n0 in zip(fch, nch):
                    dense[i, int(f0) - fmin:int(f0) - fmin + int(n0)] = vals[k:k + int(n0)]
                    k += int(n0)
            return Response(lo, hi, dense, np.asarray(eb.data["E_MIN"], float), np.asarray(eb.data["E_MAX"], float), fmin)
    except (OSError, KeyError, ValueError) as exc:
        raise UsageError(f"not a readable OGIP RMF: {exc}", path) from None


def read_arf(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ENERG_LO, ENERG_HI, SPECRESP) of an OGIP ARF."""
    path = Path(path)
    try:
        with fits.open(path) as h:
            d = h["SPECRESP"].data
            return (np.asarray(d["ENERG_LO"], float), np.asarray(d["ENERG_HI"], float),
                    np.asarray(d["SPECRESP"], float))
    except (OSError, KeyError, ValueError) as exc:
        raise UsageError(f"not a readable OGIP ARF: {exc}", path) from None


def pi_spectrum(pi: np.ndarray, cam) -> np.ndarray:
    """Counts per spectral channel (5 eV of PI each) of a camera (instrument.Camera)."""
    ch = np.asarray(pi, np.int64) // int(CHANNEL_EV)
    ch = ch[(ch >= 0) & (ch < cam.n_channels)]
    return np.bincount(ch, minlength=cam.n_channels).astype(np.int32)
