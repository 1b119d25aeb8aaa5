"""The source's surface-brightness model: a beta model fitted to the background-subtracted,
exposure-corrected radial profile of step 2, and what the modelled background needs of it
(the share of the source's flux in a region, the brightness on an image grid)."""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import curve_fit

import xmmext.instrument as ins

__all__ = ["beta_profile", "beta_ring_flux", "psf_ring_matrix", "fit_beta", "brightness_image", "flux_in_region",
           "flux_ratio_rel_error", "is_usable", "psf_spill_factor", "psf_spill_factors"]


def beta_profile(r_arcmin, s0: float, rc_arcmin: float, beta: float) -> np.ndarray:
    """Projected beta model, per unit area."""
    return s0 * (1.0 + (np.asarray(r_arcmin, float) / rc_arcmin) ** 2) ** (0.5 - 3.0 * beta)


def beta_ring_flux(edges_arcmin, rc_arcmin: float, beta: float) -> np.ndarray:
    """Flux of a unit-s0 projected beta model in each ring of ``edges_arcmin`` (arcmin^2)."""
    q = 1.5 - 3.0 * beta
    cum = np.pi * rc_arcmin ** 2 * (1.0 + (np.asarray(edges_arcmin, float) / rc_arcmin) ** 2) ** q / q
    return np.diff(cum)


def psf_ring_matrix(edges_arcsec, encircled_energy, brightness=None, rmax_arcsec: float = 600.0,
                    n_s: int = 160, n_phi: int = 48, n_sub: int = 8) -> np.ndarray:
    """T[i, j]: share of the flux emitted in ring j of ``edges_arcsec`` that the telescope
    records in ring i, for a circularly symmetric source and a PSF given by its encircled
    energy (truncated at ``rmax_arcsec``). ``brightness(r_arcsec)``: the source's profile
    within each ring (default flat; a steep profile sends more of a ring inwards).
    Deterministic quadrature: PSF offsets at equal-weight quantiles of the radial
    distribution x ``n_phi`` angles, ``n_sub`` radii a ring."""
    edges = np.asarray(edges_arcsec, float)
    grid = np.concatenate([[0.0], np.geomspace(1e-2, rmax_arcsec, 4000)])
    ee = np.asarray(encircled_energy(grid), float)
    ee = ee / ee[-1]
    s = np.interp((np.arange(n_s) + 0.5) / n_s, ee, grid)           # radial quantiles
    phi = (np.arange(n_phi) + 0.5) * 2 * np.pi / n_phi
    S, C = np.meshgrid(s, np.cos(phi))
    S, C = S.ravel(), C.ravel()
    nr = len(edges) - 1
    T = np.zeros((nr, nr))
    for j in range(nr):
        rho = edges[j] + (np.arange(n_sub) + 0.5) / n_sub * (edges[j + 1] - edges[j])
        w = rho * (1.0 if brightness is None else np.asarray(brightness(rho), float))
        w = w / w.sum()
        for r, wk in zip(rho, w):
            d = np.sqrt(np.maximum(r * r + S * S + 2 * r * S * C, 0.0))
            T[:, j] += wk * np.histogram(d, edges)[0] / len(d)
    return T


def fit_beta(edges_arcsec, counts, exposure, particle, pixels=None, psf=None,
             min_counts: float = 20.0) -> dict | None:
    """Fit beta model + flat sky to a radial profile (counts, exposure and expected particle
    counts per annulus of ``edges_arcsec``); returns {"model", "s0", "rc_arcmin", "beta",
    "sky"} (s0 and sky in counts per exposure per annulus-area unit) or None when the
    profile does not constrain it. Annuli with too few counts or no exposure are left out.

    ``psf`` (encircled energy as a function of radius, arcsec): the beta model is blurred
    by it before it is compared with the profile, so that rc and beta describe the sky
    and not the image (the King wings of XMM's PSF carry a few per cent of a core's flux
    to 2-4', and a beta model fitted to the image as it is comes out too flat, which puts
    too much of the source into a background annulus). ``pixels`` (exposed pixels per
    annulus): the background also gets a part that is not vignetted (``unvignetted``,
    counts per pixel), for soft protons (vignetted less than X-rays) and any error of the
    particle estimate, which climb outwards once divided by the vignetted exposure."""
    edges_arcmin = np.asarray(edges_arcsec, float) / 60.0
    r = 0.5 * (edges_arcmin[:-1] + edges_arcmin[1:])
    ok = (exposure > 0) & (counts >= min_counts)
    if ok.sum() < 6:
        return None
    # brightness per exposure-weighted area (exposure per annulus = sum over its pixels)
    y = (counts[ok] - particle[ok]) / exposure[ok]
    sig = np.sqrt(counts[ok]) / exposure[ok]
    rr = r[ok]
    flat = None if pixels is None else np.asarray(pixels, float)[ok] / exposure[ok]
    if psf is None:
        def source(s0, rc, beta):
            return beta_profile(rr, s0, rc, beta)
    else:
        T = psf_ring_matrix(edges_arcsec, psf)[ok]
        ring_area = np.pi * np.diff(edges_arcmin ** 2)[ok]

        def source(s0, rc, beta):
            return s0 * (T @ beta_ring_flux(edges_arcmin, rc, beta)) / ring_area
    p0 = [max(y[0] - y[-1], 1e-12), max(0.2, rr[np.argmax(y < 0.5 * y[0])] if (y < 0.5 * y[0]).any() else 1.0),
          0.67, max(float(np.median(y[-5:])), 0.0)]
    lower, upper = [0, 0.02, 0.35, 0], [np.inf, 30.0, 3.0, np.inf]
    if flat is None:
        def model(x, s0, rc, beta, sky):
            return source(s0, rc, beta) + sky
    else:
        def model(x, s0, rc, beta, sky, unvig):
            return source(s0, rc, beta) + sky + unvig * flat
        p0, lower, upper = p0 + [0.0], lower + [-np.inf], upper + [np.inf]
    try:
        p, cov = curve_fit(model, rr, y, p0=p0, sigma=sig, bounds=(lower, upper), maxfev=20000)
    except (RuntimeError, ValueError):
        return None
    s0, rc, beta, sky = (float(v) for v in p[:4])
    out = {"model": "beta", "s0": s0, "rc_arcmin": rc, "beta": beta, "sky": sky,
           "fitted_to_arcmin": float(rr.max()), "psf_blurred": psf is not None}
    cov_shape = np.asarray(cov, float)[1:3, 1:3]
    if np.all(np.isfinite(cov_shape)):
        out["cov_rc_beta"] = cov_shape.tolist()        # 1-sigma covariance of (rc_arcmin, beta)
    if flat is not None:
        out["unvignetted"] = float(p[4])
    return out


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


def flux_ratio_rel_error(sb: dict, centre: tuple[float, float], num, den) -> float:
    """1-sigma relative error of flux_in_region(num) / flux_in_region(den) from the fitted
    (rc, beta) covariance (linear propagation along its two principal directions); 0 when
    the fit gave no covariance."""
    cov = sb.get("cov_rc_beta")
    if not cov:
        return 0.0
    w, v = np.linalg.eigh(np.asarray(cov, float))
    base = flux_in_region(sb, centre, num) / max(flux_in_region(sb, centre, den), 1e-300)
    var = 0.0
    for k in range(2):
        step = np.sqrt(max(w[k], 0.0)) * v[:, k]
        moved = {**sb, "rc_arcmin": sb["rc_arcmin"] + step[0], "beta": sb["beta"] + step[1]}
        if moved["rc_arcmin"] <= 0 or moved["beta"] <= 0.5:
            continue
        ratio = flux_in_region(moved, centre, num) / max(flux_in_region(moved, centre, den), 1e-300)
        var += (ratio / base - 1.0) ** 2
    return float(np.sqrt(var))


def is_usable(sb: dict | None) -> bool:
    return bool(sb) and all(math.isfinite(sb.get(k, float("nan"))) for k in ("rc_arcmin", "beta"))


def psf_spill_factor(sb: dict, centre: tuple[float, float], region, cam, grid, rmax_arcsec: float = 600.0) -> float:
    """(beta model blurred by the camera's PSF in ``region``) / (beta model in ``region``):
    the share of the region's own emission that the telescope records inside it, plus what
    it scatters in from outside. XMM's PSF wings (King profile) move a few per cent of a
    cluster's flux across a 2' boundary; an ARF multiplied by this makes the fitted norm the
    emission of the region itself (arfgen's extended-source mode leaves it out)."""
    return psf_spill_factors(sb, centre, [region], cam, grid, rmax_arcsec)[0]


def psf_spill_factors(sb: dict, centre: tuple[float, float], regions: list, cam, grid,
                      rmax_arcsec: float = 600.0) -> list[float]:
    """:func:`psf_spill_factor` of several regions from one convolution of the model."""
    from scipy.signal import fftconvolve
    from xmmext.sky.extraction_region import area_fraction_map
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
    factors = []
    for region in regions:
        frac = area_fraction_map(region, grid)
        inside = float(np.sum(image * frac))
        factors.append(float(np.sum(blurred * frac)) / inside if inside > 0 else 1.0)
    return factors
