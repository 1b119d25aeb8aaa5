"""Good-time intervals, binned light curves and soft-proton flare detection.

GTIs are (n, 2) float arrays of [START, STOP) in mission time (s), sorted and
non-overlapping after :func:`normalise`.

Flare screening methods (DESIGN.md / issue 3):
  histogram  espfilt-like: fit a Gaussian to the histogram of the binned rates around
             its peak and keep bins within ``sigma`` standard deviations of the mean
  fixed      keep bins with rate <= threshold (classic 0.35 MOS / 0.4 pn ct/s)
  ratio      keep bins whose FOV/corner rate ratio is within ``sigma`` of its
             quiescent distribution (flares are in the FOV only)
  input      no screening: the list's own good time (for lists SAS already cleaned)
  auto       ``input`` for an already-filtered list, else ``histogram``
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from scipy.optimize import curve_fit

from xmmext.core.errors import DataError, UsageError
from xmmext.instrument import MJDREF

__all__ = ["METHODS", "normalise", "intersect", "total", "drop_short", "in_gti", "overlap_per_bin", "LightCurve",
           "light_curve", "Screening", "histogram_screen", "reject_flare_edges", "fixed_screen", "ratio_screen",
           "bins_to_gti", "validate_method", "gti_hdu"]

METHODS = ("auto", "histogram", "fixed", "ratio", "input")


def normalise(gti) -> np.ndarray:
    """Sort, drop empty intervals and merge overlapping/touching ones."""
    g = np.asarray(gti, float).reshape(-1, 2)
    g = g[g[:, 1] > g[:, 0]]
    if len(g) == 0:
        return np.zeros((0, 2))
    g = g[np.argsort(g[:, 0])]
    out = [g[0].copy()]
    for s, e in g[1:]:
        if s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append(np.array([s, e]))
    return np.array(out)


def intersect(a, b) -> np.ndarray:
    """Intersection of two GTI sets."""
    a, b = normalise(a), normalise(b)
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        s, e = max(a[i, 0], b[j, 0]), min(a[i, 1], b[j, 1])
        if e > s:
            out.append((s, e))
        if a[i, 1] < b[j, 1]:
            i += 1
        else:
            j += 1
    return np.array(out).reshape(-1, 2)


def total(gti) -> float:
    g = np.asarray(gti, float).reshape(-1, 2)
    return float(np.sum(g[:, 1] - g[:, 0])) if len(g) else 0.0


def drop_short(gti, min_length: float) -> np.ndarray:
    g = normalise(gti)
    return g[(g[:, 1] - g[:, 0]) >= min_length]


def in_gti(times, gti) -> np.ndarray:
    """Boolean mask: which times fall inside [START, STOP) of any interval.

    Event lists are time-ordered; then each interval is two binary searches and a slice
    fill. Unsorted input takes the general per-event search.
    """
    g = normalise(gti)
    t = np.asarray(times)
    if t.dtype.kind != "f" or not t.dtype.isnative:
        t = t.astype(np.float64)
    out = np.zeros(t.shape, bool)
    if len(g) == 0 or t.size == 0:
        return out
    if t.ndim == 1 and np.all(t[1:] >= t[:-1]):
        lo = np.searchsorted(t, g[:, 0], side="left")
        hi = np.searchsorted(t, g[:, 1], side="left")
        for a, b in zip(lo, hi):
            out[a:b] = True
        return out
    idx = np.searchsorted(g[:, 0], t, side="right")          # 0 = before the first interval
    stops = np.concatenate([[-np.inf], g[:, 1]])
    return t < stops[idx]


def overlap_per_bin(edges, gti) -> np.ndarray:
    """Seconds of GTI inside each bin [edges[i], edges[i+1])."""
    g = normalise(gti)
    edges = np.asarray(edges, float)
    # cumulative good time as a function of t, evaluated at the edges
    if len(g) == 0:
        return np.zeros(len(edges) - 1)
    starts, stops = g[:, 0], g[:, 1]
    cum_at_stops = np.cumsum(stops - starts)

    def good_before(t):
        k = np.searchsorted(starts, t, side="right")      # intervals started before t
        done = np.where(k > 0, cum_at_stops[np.maximum(k - 1, 0)], 0.0)
        # part of interval k-1 not yet over at t
        last = np.maximum(k - 1, 0)
        over = np.where(k > 0, np.maximum(stops[last] - t, 0.0), 0.0)
        return done - over
    return np.diff(good_before(edges))


@dataclass
class LightCurve:
    """A binned light curve with the good time of each bin (rates corrected for it)."""
    edges: np.ndarray
    counts: np.ndarray
    exposure: np.ndarray       # seconds of GTI inside each bin

    @property
    def centres(self):
        return 0.5 * (self.edges[:-1] + self.edges[1:])

    @property
    def rate(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.exposure > 0, self.counts / np.maximum(self.exposure, 1e-9), np.nan)

    @property
    def rate_error(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.exposure > 0, np.sqrt(np.maximum(self.counts, 1)) / np.maximum(self.exposure, 1e-9), np.nan)


def light_curve(times, tstart: float, tstop: float, gti, binsize: float = 100.0,
                min_fraction: float = 0.0) -> LightCurve:
    """Bin event times; each bin's exposure is its overlap with the GTI.

    Bins covered less than ``min_fraction`` are given zero exposure (rates NaN).
    """
    nbin = max(1, int(np.ceil((tstop - tstart) / binsize)))
    edges = tstart + binsize * np.arange(nbin + 1)
    counts = np.histogram(times, bins=edges)[0].astype(float)
    expo = overlap_per_bin(edges, gti)
    expo = np.where(expo >= min_fraction * binsize, expo, 0.0)
    return LightCurve(edges, counts, expo)


@dataclass
class Screening:
    """Result of flare screening: which bins are good and why."""
    method: str
    threshold: float               # upper rate (or ratio) limit applied
    lower: float                   # lower limit (histogram/ratio), -inf for fixed
    good_bins: np.ndarray
    mean: float | None = None
    sigma: float | None = None


def _gauss(x, a, mu, s):
    return a * np.exp(-0.5 * ((x - mu) / s) ** 2)


def histogram_screen(lc: LightCurve, nsigma: float = 3.0, edge_sigma: float = 2.0) -> Screening:
    """espfilt-like: Gaussian fit to the rate histogram around its peak."""
    valid = lc.exposure > 0.5 * np.median(lc.exposure[lc.exposure > 0]) if np.any(lc.exposure > 0) else lc.exposure > 0
    rates = lc.rate[valid]
    if len(rates) < 5:
        raise DataError("too few light-curve bins to screen for flares")
    med = np.median(rates)
    # robust start: MAD of the lower half is insensitive to the flare tail
    lower = rates[rates <= med]
    mad = 1.4826 * np.median(np.abs(lower - med)) if len(lower) > 2 else np.std(rates)
    typical_err = np.median(lc.rate_error[valid])
    s0 = max(mad, typical_err, 1e-6)
    lo, hi = med - 5 * s0, med + 3 * s0
    core = rates[(rates >= lo) & (rates <= hi)]
    nb = max(8, min(60, int(np.sqrt(len(core)) * 2)))
    hist, be = np.histogram(core, bins=nb, range=(lo, hi))
    x = 0.5 * (be[:-1] + be[1:])
    mu, sig = med, s0
    try:
        popt, _ = curve_fit(_gauss, x, hist, p0=[hist.max(), med, s0], maxfev=5000)
        if popt[2] != 0 and lo <= popt[1] <= hi and abs(popt[2]) < 5 * s0:
            mu, sig = float(popt[1]), float(abs(popt[2]))
    except (RuntimeError, ValueError):
        pass
    # The quiescent spread cannot be narrower than Poisson noise; with a few counts per
    # bin the histogram of discrete rates makes the Gaussian fit too narrow otherwise.
    t_bin = float(np.median(lc.exposure[valid]))
    sig = max(sig, np.sqrt(max(mu, 0.0) * t_bin) / t_bin)
    upper_lim, lower_lim = mu + nsigma * sig, mu - nsigma * sig
    good = (lc.exposure > 0) & (lc.rate <= upper_lim) & (lc.rate >= lower_lim)
    good = reject_flare_edges(lc.rate, good, mu + edge_sigma * sig)
    return Screening("histogram", float(upper_lim), float(lower_lim), good, mu, sig)


def reject_flare_edges(rate: np.ndarray, good: np.ndarray, edge_limit: float) -> np.ndarray:
    """Also reject bins next to a rejected bin whose rate is above ``edge_limit``.

    A flare rarely starts on a bin boundary: the bins holding its rise and decay are
    only partly flared and can sit just under the cut. They are recognised by being
    next to a flare bin and elevated above the quiescent mean; the rule is applied until
    nothing changes, so a slow rise is followed bin by bin.
    """
    good = good.copy()
    r = np.nan_to_num(rate, nan=-np.inf)
    while True:
        bad = ~good
        neighbour = np.zeros_like(bad)
        neighbour[1:] |= bad[:-1]
        neighbour[:-1] |= bad[1:]
        extra = good & neighbour & (r > edge_limit)
        if not extra.any():
            return good
        good &= ~extra


def fixed_screen(lc: LightCurve, threshold: float) -> Screening:
    good = (lc.exposure > 0) & (lc.rate <= threshold)
    return Screening("fixed", float(threshold), float("-inf"), good)


def ratio_screen(lc: LightCurve, corner: LightCurve, nsigma: float = 3.0) -> Screening:
    """FOV/corner ratio: flares raise the FOV rate but not the corner rate."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = lc.counts / np.maximum(corner.counts, 1.0)
    pseudo = LightCurve(lc.edges, ratio * lc.exposure, lc.exposure)
    scr = histogram_screen(pseudo, nsigma)
    good = (lc.exposure > 0) & (ratio <= scr.threshold)
    return Screening("ratio", scr.threshold, scr.lower, good, scr.mean, scr.sigma)


def bins_to_gti(edges, good_bins, within) -> np.ndarray:
    """GTI made of the good bins, clipped to the ``within`` GTI."""
    edges = np.asarray(edges)
    g = np.column_stack([edges[:-1][good_bins], edges[1:][good_bins]])
    return intersect(normalise(g), within)


def validate_method(method: str) -> str:
    if method not in METHODS:
        raise UsageError(f"unknown flare-screening method {method!r}; choose from {', '.join(METHODS)}")
    return method


def gti_hdu(g: np.ndarray, name: str = "STDGTI", ccd: int | None = None) -> fits.BinTableHDU:
    """A GTI table in the SAS/OGIP layout (START/STOP in s)."""
    g = np.asarray(g, float).reshape(-1, 2)
    hdu = fits.BinTableHDU.from_columns([
        fits.Column("START", "D", unit="s", array=g[:, 0]),
        fits.Column("STOP", "D", unit="s", array=g[:, 1]),
    ], name=name)
    h = hdu.header
    h["HDUCLASS"], h["HDUCLAS1"], h["HDUCLAS2"] = "OGIP", "GTI", "STANDARD"
    if ccd is not None:
        h["CCDID"] = (ccd, "CCD ID")
    h["ONTIME"] = (total(g), "[s] sum of all Good Time Intervals")
    if len(g):
        h["TSTART"], h["TSTOP"] = float(g[0, 0]), float(g[-1, 1])
    h["TIMESYS"], h["MJDREF"], h["TIMEUNIT"] = "TT", MJDREF, "s"
    return hdu
