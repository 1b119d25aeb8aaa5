"""Point source or extended structure? A likelihood test for each detection candidate.

In a cluster's core the background model of the detection (radial, about the centre)
does not follow the real emission: sloshing arcs, cold fronts and an elliptical core leave
lumps that stand above it at 5 sigma. Cut out as point sources, they take pieces of the
brightest emission out of the spectrum, differently in every observation. So each
candidate is fitted, on the counts image around it with the background map, twice
(Cash 1979 statistic, as emldetect does):

  point     mu = s * background + A * PSF(x - x0)
  extended  mu = s * background + A * (PSF (x) Gaussian(sigma))(x - x0),  sigma free

with the local background scale ``s``, the amplitude ``A`` and the position free. It is
kept as a point source when the extended model is not significantly better
(``dC = C_point - C_extended < EXTENT_MIN_DCSTAT``) or its extent is small
(``sigma < EXTENT_MIN_SIGMA_ARCSEC``: the PSF broadens off-axis, and a bright point source
would look slightly extended), and when its flux stands out of the local emission (within
``CONTRAST_RADIUS_ARCSEC``, source counts >= ``MIN_CONTRAST`` x background counts): a
faint source on a bright core changes the spectrum little, and cutting it out removes
the core itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

import xmmext.instrument as ins

__all__ = ["CUTOUT_ARCSEC", "SIGMAS_ARCSEC", "EXTENT_MIN_DCSTAT", "EXTENT_MIN_SIGMA_ARCSEC",
           "POINT_ON_STRUCTURE_DCSTAT", "CONTRAST_RADIUS_ARCSEC", "MIN_CONTRAST", "SUB", "Extent",
           "classify_candidate"]

CUTOUT_ARCSEC = 64.0              # radius of the fitted cut-out (~95% of a point source's flux)
SIGMAS_ARCSEC = (0.0, 2.0, 4.0, 6.0, 8.0, 11.0, 15.0, 20.0, 27.0, 36.0, 48.0)
EXTENT_MIN_DCSTAT = 9.0           # 3 sigma for one more parameter
EXTENT_MIN_SIGMA_ARCSEC = 6.0     # narrower "extent" is the PSF's own variation
POINT_ON_STRUCTURE_DCSTAT = 25.0  # a point source on extended structure: 5 sigma beyond the structure
CONTRAST_RADIUS_ARCSEC = 10.0
MIN_CONTRAST = 0.4
SUB = 4                           # sub-samples per image pixel and axis
_FINE_ARCSEC = 0.5


@dataclass
class Extent:
    """The outcome of the test for one candidate."""
    point_like: bool
    extended: bool                # the extended model is significantly better, with a real extent
    dcstat_extent: float          # C_point - C_extended (>= 0)
    sigma_arcsec: float           # best Gaussian extent
    contrast: float               # source / background counts within CONTRAST_RADIUS_ARCSEC
    detection_cstat: float        # C_background_only - C_point
    x_pix: float                  # fitted position (image pixels)
    y_pix: float
    counts: float                 # fitted source counts (point model)

    @property
    def reason(self) -> str:
        if self.point_like:
            return "point-like"
        if self.extended:
            return f"extended (sigma {self.sigma_arcsec:.0f}\", dC {self.dcstat_extent:.1f})"
        return f"contrast {self.contrast:.2f} < {MIN_CONTRAST} against the local emission"


@lru_cache(maxsize=8)
def _profiles(rc_arcsec: float, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Surface brightness (per arcsec^2, unit flux) of the King PSF convolved with a
    Gaussian of each of SIGMAS_ARCSEC, tabulated against radius (arcsec)."""
    from scipy.signal import fftconvolve
    half = int((CUTOUT_ARCSEC + 3 * max(SIGMAS_ARCSEC) + 20) / _FINE_ARCSEC)
    ax = np.arange(-half, half + 1) * _FINE_ARCSEC
    xx, yy = np.meshgrid(ax, ax)
    r2 = xx ** 2 + yy ** 2
    king = (alpha - 1) / (np.pi * rc_arcsec ** 2) * (1 + r2 / rc_arcsec ** 2) ** (-alpha)
    radii = np.arange(0.0, CUTOUT_ARCSEC * 1.5 + 2 * _FINE_ARCSEC, _FINE_ARCSEC)
    table = []
    for s in SIGMAS_ARCSEC:
        if s > 0:
            k = int(np.ceil(4 * s / _FINE_ARCSEC))
            g_ax = np.arange(-k, k + 1) * _FINE_ARCSEC
            g = np.exp(-0.5 * (g_ax / s) ** 2)
            g /= g.sum()
            img = fftconvolve(fftconvolve(king, g[None, :], mode="same"), g[:, None], mode="same")
        else:
            img = king
        ring = np.digitize(np.sqrt(r2).ravel(), radii) - 1
        ok = ring < len(radii) - 1
        prof = np.bincount(ring[ok], img.ravel()[ok], len(radii)) / np.maximum(np.bincount(ring[ok], minlength=len(radii)), 1)
        table.append(prof)
    return radii, np.array(table)


def _poisson_fit(n: np.ndarray, parts: list[np.ndarray], iters: int = 40) -> tuple[float, np.ndarray]:
    """Maximum-likelihood amplitudes a >= 0 of mu = sum_k a_k parts[k] (parts[0] is the
    background map: its amplitude is the local scale); returns (C, a) with C the Cash
    statistic 2 sum(mu - n ln mu). Newton steps, halved to stay non-negative (the
    likelihood is concave in the amplitudes)."""
    m = np.array(parts)
    a = np.zeros(len(parts))
    a[0] = max(float(n.sum()) / max(float(m[0].sum()), 1e-12), 1e-6)
    if len(parts) > 1:
        share = 0.1 * a[0] * m[0].sum() / len(parts)
        a[1:] = share / np.maximum(m[1:].sum(axis=1), 1e-12)
        a[0] *= 0.9
    for _ in range(iters):
        mu = np.maximum(a @ m, 1e-12)
        g = m @ (n / mu - 1.0)
        h = -(m * (n / mu ** 2)) @ m.T - 1e-9 * np.eye(len(a))
        step = np.linalg.solve(h, -g)
        t = 1.0
        while t > 1e-4 and np.any(a + t * step < 0):
            t *= 0.5
        a = np.maximum(a + t * step, 0.0)
        a[0] = max(a[0], 1e-9)
        if np.all(np.abs(t * step) <= 1e-6 * (np.abs(a) + 1e-3)):
            break
    mu = np.maximum(a @ m, 1e-12)
    return 2.0 * float(np.sum(mu - n * np.log(mu))), a


def classify_candidate(images: list[tuple[np.ndarray, np.ndarray]], col: float, row: float, cam: ins.Camera,
                       pix_arcsec: float) -> Extent:
    """Fit one candidate at image pixel (col, row) on every band's (counts, background map)
    at once (see the module docstring): position and extent shared by the bands, the
    amplitudes and local background scales each band's own; statistics summed."""
    radii, table = _profiles(cam.king_rc_arcsec, cam.king_alpha)
    shape = images[0][0].shape
    rad = int(np.ceil(CUTOUT_ARCSEC / pix_arcsec))
    c0, r0 = int(round(col)), int(round(row))
    rows, cols = np.mgrid[r0 - rad:r0 + rad + 1, c0 - rad:c0 + rad + 1]
    inside = ((rows - r0) ** 2 + (cols - c0) ** 2 <= rad ** 2) & (rows >= 0) & (cols >= 0) \
        & (rows < shape[0]) & (cols < shape[1])
    rr, cc = rows[inside], cols[inside]
    keep = np.all([bkg[rr, cc] > 0 for _, bkg in images], axis=0)
    rr, cc = rr[keep], cc[keep]
    bands = [(counts[rr, cc].astype(float), bkg[rr, cc].astype(float)) for counts, bkg in images]
    offs = (np.arange(SUB) + 0.5) / SUB - 0.5
    sub_c = cc[:, None] + np.tile(offs, SUB)[None, :]
    sub_r = rr[:, None] + np.repeat(offs, SUB)[None, :]

    def profile(x0, y0, k):
        d = np.hypot(sub_c - x0, sub_r - y0) * pix_arcsec
        return np.interp(d, radii, table[k], right=0.0).mean(axis=1) * pix_arcsec ** 2

    def fit(*shapes):
        """Summed C over the bands and each band's amplitudes for mu = s b + sum A_k shape_k."""
        out = [_poisson_fit(n, [b, *shapes]) for n, b in bands]
        return sum(c for c, _ in out), [a for _, a in out]

    def best_position(k, x, y):
        """(C, amplitudes, x, y) of shape k on a pixel grid about (x, y), refined by half a pixel."""
        trials = [(*fit(profile(x + dx, y + dy, k)), x + dx, y + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
        c, a, bx, by = min(trials, key=lambda f: f[0])
        trials = [(*fit(profile(bx + dx, by + dy, k)), bx + dx, by + dy) for dx in (-0.5, 0, 0.5)
                  for dy in (-0.5, 0, 0.5) if dx or dy]
        return min(trials + [(c, a, bx, by)], key=lambda f: f[0])

    c_bkg = fit()[0]
    # the point model's position; every extent at it, the best one's position refined
    c_point, a_point, xp, yp = best_position(0, col, row)
    k_ext = min(range(1, len(SIGMAS_ARCSEC)), key=lambda k: fit(profile(xp, yp, k))[0])
    c_ext, _, xe, ye = best_position(k_ext, xp, yp)
    p_point, p_ext = profile(xp, yp, 0), profile(xe, ye, k_ext)
    c_both, a_both = fit(p_point, p_ext)
    sigma = SIGMAS_ARCSEC[k_ext]
    d_ext = max(c_point - c_ext, 0.0)
    is_extended = d_ext >= EXTENT_MIN_DCSTAT and sigma >= EXTENT_MIN_SIGMA_ARCSEC
    # on extended structure, a point source is what the structure alone does not explain
    on_structure = is_extended and c_ext - c_both >= POINT_ON_STRUCTURE_DCSTAT
    # contrast: the point source's counts within CONTRAST_RADIUS_ARCSEC over the rest there
    near = np.hypot(cc - xp, rr - yp) * pix_arcsec <= CONTRAST_RADIUS_ARCSEC
    amps = a_both if on_structure else a_point
    source = sum(a[1] for a in amps)
    rest = sum(a[0] * float(b[near].sum()) for a, (_, b) in zip(amps, bands))
    if on_structure:
        rest += sum(a[2] for a in amps) * float(p_ext[near].sum())
    contrast = source * float(cam.encircled_energy(CONTRAST_RADIUS_ARCSEC)) / max(rest, 1e-9)
    point_like = (not is_extended or on_structure) and contrast >= MIN_CONTRAST
    return Extent(point_like, is_extended and not on_structure, float(d_ext), float(sigma), float(contrast),
                  float(max(c_bkg - c_point, 0.0)), float(xp), float(yp), float(source))
