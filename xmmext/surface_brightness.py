"""The source's surface-brightness model: a beta model fitted to the background-subtracted,
exposure-corrected radial profile of step 2, and what the modelled background needs of it
(the share of the source's flux in a region, the brightness on an image grid)."""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import curve_fit

from . import instrument as ins


def beta_profile(r_arcmin, s0: float, rc_arcmin: float, beta: float) -> np.ndarray:
    """Projected beta model, per unit area."""
    return s0 * (1.0 + (np.asarray(r_arcmin, float) / rc_arcmin) ** 2) ** (0.5 - 3.0 * beta)


def fit_beta(edges_arcsec, counts, exposure, particle, min_counts: float = 20.0) -> dict | None:
    """Fit beta model + flat sky to a radial profile (counts, exposure and expected particle
    counts per annulus of ``edges_arcsec``); returns {"model", "s0", "rc_arcmin", "beta",
    "sky"} (s0 and sky in counts per exposure per annulus-area unit) or None when the
    profile does not constrain it. Annuli with too few counts or no exposure are left out."""
    r = 0.5 * (edges_arcsec[:-1] + edges_arcsec[1:]) / 60.0
    ok = (exposure > 0) & (counts >= min_counts)
    if ok.sum() < 6:
        return None
    # brightness per exposure-weighted area (exposure per annulus = sum over its pixels)
    y = (counts[ok] - particle[ok]) / exposure[ok]
    sig = np.sqrt(counts[ok]) / exposure[ok]
    rr = r[ok]

    def model(x, s0, rc, beta, sky):
        return beta_profile(x, s0, rc, beta) + sky
    p0 = (max(y[0] - y[-1], 1e-12), max(0.2, rr[np.argmax(y < 0.5 * y[0])] if (y < 0.5 * y[0]).any() else 1.0),
          0.67, max(float(np.median(y[-5:])), 0.0))
    try:
        p, _ = curve_fit(model, rr, y, p0=p0, sigma=sig, bounds=([0, 0.02, 0.35, 0], [np.inf, 30.0, 3.0, np.inf]),
                         maxfev=20000)
    except (RuntimeError, ValueError):
        return None
    s0, rc, beta, sky = (float(v) for v in p)
    return {"model": "beta", "s0": s0, "rc_arcmin": rc, "beta": beta, "sky": sky,
            "fitted_to_arcmin": float(rr.max())}


def brightness_image(sb: dict, centre: tuple[float, float], grid) -> np.ndarray:
    """The beta model (without sky) on an image grid (relative units)."""
    X, Y = grid.centres()
    r = np.hypot(X - centre[0], Y - centre[1]) * ins.SKY_PIX_ARCSEC / 60.0
    return beta_profile(r, 1.0, sb["rc_arcmin"], sb["beta"])


def flux_in_region(sb: dict, centre: tuple[float, float], region, n: int = 600) -> float:
    """The beta model's flux (relative units) in ``region`` (exclusions removed), sampled on
    an n x n grid over the region's bounding square."""
    xs = np.linspace(region.x - region.r_out, region.x + region.r_out, n)
    X, Y = np.meshgrid(xs, xs + (region.y - region.x))
    cell = (xs[1] - xs[0]) ** 2
    r = np.hypot(X - centre[0], Y - centre[1]) * ins.SKY_PIX_ARCSEC / 60.0
    return float(np.sum(beta_profile(r, 1.0, sb["rc_arcmin"], sb["beta"]) * region.contains(X, Y)) * cell)


def is_usable(sb: dict | None) -> bool:
    return bool(sb) and all(math.isfinite(sb.get(k, float("nan"))) for k in ("rc_arcmin", "beta"))


def psf_spill_factor(sb: dict, centre: tuple[float, float], region, cam, grid, rmax_arcsec: float = 600.0) -> float:
    """(beta model blurred by the camera's PSF in ``region``) / (beta model in ``region``):
    the share of the region's own emission that the telescope records inside it, plus what
    it scatters in from outside. XMM's PSF wings (King profile) move a few per cent of a
    cluster's flux across a 2' boundary; an ARF multiplied by this makes the fitted norm the
    emission of the region itself (arfgen's extended-source mode leaves it out)."""
    from scipy.signal import fftconvolve
    from .shapes import area_fraction_map
    image = brightness_image(sb, centre, grid)
    pix = grid.binsize * ins.SKY_PIX_ARCSEC                    # arcsec per image pixel
    half = int(np.ceil(rmax_arcsec / pix))
    off = np.arange(-half, half + 1) * pix
    r = np.hypot(*np.meshgrid(off, off))
    # pixel-integrated King profile: encircled energy between the pixel's equal-area radii
    r_lo = np.clip(r - pix / 2, 0, None)
    r_hi = r + pix / 2
    ring = np.pi * (r_hi ** 2 - r_lo ** 2)
    kernel = (cam.encircled_energy(r_hi) - cam.encircled_energy(r_lo)) * pix ** 2 / ring
    kernel[half, half] = cam.encircled_energy(pix / np.sqrt(np.pi))
    kernel[r > rmax_arcsec] = 0.0
    kernel /= kernel.sum()
    blurred = fftconvolve(image, kernel, mode="same")
    frac = area_fraction_map(region, grid)
    inside = float(np.sum(image * frac))
    return float(np.sum(blurred * frac)) / inside if inside > 0 else 1.0
