"""Responses of the native engine: RMF (Gaussian redistribution over the camera's
channels) and ARF (on-axis area x filter x vignetting), written as OGIP files, and the
fraction of X-ray events an event selection keeps."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from astropy.io import fits
from scipy.special import erf

from xmmext.events.selection import compile_expression
from xmmext.events.grades import draw_patterns, draw_random_flags
from xmmext.instrument import (CAMERAS, CHANNEL_EV, RESP_EHI, RESP_ELO, Camera,
                         vignetting)

__all__ = ["selection_efficiency", "channel_edges_kev", "redistribution", "dense_rmf", "rmf_hdulist",
           "arf_hdulist", "point_source_arf", "extended_arf"]


def selection_efficiency(cam: Camera, expression: str, n: int = 200_000, seed: int = 0) -> float:
    """Fraction of X-ray events that pass an event selection (PATTERN/FLAG terms).

    Evaluated on a synthetic population with this model's grade and flag statistics, so
    the response describes the events the selection keeps (as SAS responses are made for
    a pattern range); PI, CCDNR and TIME are set to values any standard selection keeps.
    CCD-border events are not part of it: the footprint (geometry) leaves out the edge
    lines a selection emptied, so the ARF's exposed fraction already loses them (counting
    them here too made the pn ARF 4% and MOS 0.7% low).
    """
    rng = np.random.default_rng(seed)
    flag = draw_random_flags(rng, n)
    cols = {"PATTERN": draw_patterns(rng, cam, n), "FLAG": flag, "PI": np.full(n, 2000),
            "CCDNR": np.ones(n, np.uint8), "TIME": np.zeros(n)}
    return float(compile_expression(expression).evaluate(cols).mean())


# --- responses ---------------------------------------------------------------------
def channel_edges_kev(cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    """EBOUNDS of the camera's spectral channels (5 eV of PI each)."""
    ch = np.arange(cam.n_channels)
    return ch * CHANNEL_EV / 1000.0, (ch + 1) * CHANNEL_EV / 1000.0


@lru_cache(maxsize=8)
def redistribution(cam_name: str) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Gaussian redistribution rows: (F_CHAN, N_CHAN, [row values]) per energy row.

    Each row is the probability of a photon of that energy landing in each channel,
    truncated at +-6 sigma and at the channel range; the part outside the channel
    range is lost (as for a real detector's thresholds).
    """
    cam = CAMERAS[cam_name]
    emid = 0.5 * (RESP_ELO + RESP_EHI)
    sig = cam.sigma_kev(emid)
    cw = CHANNEL_EV / 1000.0
    nchan = cam.n_channels
    f_chan = np.zeros(len(emid), np.int32)
    n_chan = np.zeros(len(emid), np.int32)
    rows = []
    for i, (e, s) in enumerate(zip(emid, sig)):
        lo = max(int(np.floor((e - 6 * s) / cw)), 0)
        hi = min(int(np.ceil((e + 6 * s) / cw)), nchan - 1)
        if hi < lo:                       # energy beyond the channel range: no group
            rows.append(np.zeros(0, np.float32))
            continue
        edges = np.arange(lo, hi + 2) * cw
        cdf = 0.5 * (1 + erf((edges - e) / (np.sqrt(2) * s)))
        p = np.diff(cdf)
        f_chan[i], n_chan[i] = lo, len(p)
        rows.append(p.astype(np.float32))
    return f_chan, n_chan, rows


def dense_rmf(cam: Camera) -> np.ndarray:
    """The redistribution matrix as a dense (n_energy, n_channel) array."""
    f_chan, n_chan, rows = redistribution(cam.name)
    m = np.zeros((len(RESP_ELO), cam.n_channels), np.float64)
    for i, r in enumerate(rows):
        m[i, f_chan[i]:f_chan[i] + n_chan[i]] = r
    return m


def _response_header(hdr: fits.Header, cam: Camera, filt: str) -> None:
    hdr["TELESCOP"] = ("XMM", "mission/satellite name")
    hdr["INSTRUME"] = (cam.instrume, "instrument/detector name")
    hdr["FILTER"] = (filt, "filter in use")
    hdr["HDUCLASS"] = ("OGIP", "format conforms to OGIP standard")
    hdr["ORIGIN"] = ("xmmext", "native instrument model (not SAS calibration)")


def rmf_hdulist(cam: Camera, filt: str = "Medium") -> fits.HDUList:
    """OGIP RMF (MATRIX + EBOUNDS, HDUCLAS3 REDIST: the area is in the ARF)."""
    f_chan, n_chan, rows = redistribution(cam.name)
    cols = [
        fits.Column("ENERG_LO", "E", unit="keV", array=RESP_ELO),
        fits.Column("ENERG_HI", "E", unit="keV", array=RESP_EHI),
        fits.Column("N_GRP", "I", array=(n_chan > 0).astype(np.int16)),
        fits.Column("F_CHAN", "J", array=f_chan),
        fits.Column("N_CHAN", "J", array=n_chan),
        fits.Column("MATRIX", "PE()", array=np.array(rows, dtype=object)),
    ]
    matrix = fits.BinTableHDU.from_columns(cols, name="MATRIX")
    h = matrix.header
    _response_header(h, cam, filt)
    h["HDUCLAS1"], h["HDUCLAS2"], h["HDUCLAS3"] = "RESPONSE", "RSP_MATRIX", "REDIST"
    h["HDUVERS"] = "1.3.0"
    h["CHANTYPE"] = ("PI", "channel type")
    h["DETCHANS"] = (cam.n_channels, "total number of detector channels")
    h["TLMIN4"], h["TLMAX4"] = 0, cam.n_channels - 1
    h["LO_THRES"] = (1e-6, "lower threshold of stored matrix values")
    emin, emax = channel_edges_kev(cam)
    eb = fits.BinTableHDU.from_columns([
        fits.Column("CHANNEL", "I", array=np.arange(cam.n_channels, dtype=np.int16)),
        fits.Column("E_MIN", "E", unit="keV", array=emin),
        fits.Column("E_MAX", "E", unit="keV", array=emax),
    ], name="EBOUNDS")
    _response_header(eb.header, cam, filt)
    eb.header["HDUCLAS1"], eb.header["HDUCLAS2"] = "RESPONSE", "EBOUNDS"
    eb.header["HDUVERS"] = "1.2.0"
    eb.header["CHANTYPE"], eb.header["DETCHANS"] = "PI", cam.n_channels
    return fits.HDUList([fits.PrimaryHDU(), matrix, eb])


def arf_hdulist(cam: Camera, specresp: np.ndarray, filt: str = "Medium",
                extra: dict | None = None) -> fits.HDUList:
    """OGIP ARF (SPECRESP) on the RMF energy grid."""
    specresp = np.asarray(specresp, float)
    if specresp.shape != RESP_ELO.shape:
        raise ValueError("SPECRESP must be on the response energy grid")
    hdu = fits.BinTableHDU.from_columns([
        fits.Column("ENERG_LO", "E", unit="keV", array=RESP_ELO),
        fits.Column("ENERG_HI", "E", unit="keV", array=RESP_EHI),
        fits.Column("SPECRESP", "E", unit="cm**2", array=specresp),
    ], name="SPECRESP")
    h = hdu.header
    _response_header(h, cam, filt)
    h["HDUCLAS1"], h["HDUCLAS2"], h["HDUVERS"] = "RESPONSE", "SPECRESP", "1.1.0"
    h["ARFVERSN"] = "1992a"
    for k, v in (extra or {}).items():
        h[k] = v
    return fits.HDUList([fits.PrimaryHDU(), hdu])


def point_source_arf(cam: Camera, theta_arcmin: float = 0.0, radius_arcsec: float | None = None,
                     filt: str = "Medium") -> np.ndarray:
    """SPECRESP for a point source at ``theta`` (optionally x encircled energy in a circle)."""
    emid = 0.5 * (RESP_ELO + RESP_EHI)
    area = cam.on_axis_area(emid, filt) * vignetting(cam.name, theta_arcmin, emid)
    if radius_arcsec is not None:
        area = area * cam.encircled_energy(radius_arcsec)
    return area


# --- extended sources -------------------------------------------------------------------
def extended_arf(cam: Camera, region, grid, brightness: np.ndarray,
                 coverage: np.ndarray, geo, filt: str = "Medium") -> tuple[np.ndarray, float]:
    """SPECRESP of an extended source: area x vignetting averaged over its brightness in
    the region, times the exposed fraction of that brightness. Returns (specresp, fraction).
    ``geo`` is the camera's :class:`~xmmext.events.footprint.Geometry` (off-axis angles)."""
    from xmmext.sky.extraction_region import area_fraction_map
    frac = area_fraction_map(region, grid)
    w = brightness * frac
    if w.sum() <= 0:          # no measurable source emission: weight by area
        w = frac.copy()
    X, Y = grid.centres()
    theta = geo.off_axis_arcmin(X, Y)
    emid = 0.5 * (RESP_ELO + RESP_EHI)
    sel = w > 0
    ww, th, cov = w[sel], theta[sel], coverage[sel]
    # the vignetting changes smoothly with energy: 120 energies, interpolated (not all 1495)
    e_eval = np.unique(np.concatenate([np.linspace(emid.min(), min(10.0, emid.max()), 120), [emid.max()]]))
    vig_eval = np.array([np.sum(ww * cov * vignetting(cam.name, th, e)) for e in e_eval]) / np.sum(ww)
    vig = np.interp(emid, e_eval, vig_eval)
    exposed_fraction = float(np.sum(ww * cov) / np.sum(ww))
    return cam.on_axis_area(emid, filt) * vig, exposed_fraction
