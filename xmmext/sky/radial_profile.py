"""The extended source's radial profile and what step 2 reads from it: the centre (image
peak, then centroid), the surface-brightness profile in 15" annuli, the S/N 3 radius,
the share of the source in a background annulus, the room left in the field of view."""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

import xmmext.instrument as ins
from xmmext.core.fileio import save_figure
from xmmext.sky.camera_maps import CameraData
from xmmext.sky.detect import Source
from xmmext.sky.images import CENTRE_BAND, PIX_ARCSEC, ImageGrid, band_mask

__all__ = ["PROFILE_STEP_ARCSEC", "find_centre", "radial_profile", "auto_radius", "self_subtraction",
           "fov_room_arcmin", "profile_psf", "plot_profile"]

PROFILE_STEP_ARCSEC = 15.0


def _mask_sources(counts, bkg, sources: list[Source], grid: ImageGrid):
    out = counts.copy()
    X, Y = grid.centres()
    for s in sources:
        m = (X - s.x) ** 2 + (Y - s.y) ** 2 <= (s.radius_arcsec / ins.SKY_PIX_ARCSEC) ** 2
        out[m] = bkg[m]
    return out


def find_centre(counts, expo, sources, grid: ImageGrid, search_arcmin: float = 12.0):
    """Peak of the smoothed exposure-corrected image (point sources removed), then centroid."""
    bkg = ndimage.gaussian_filter(counts, 8.0)
    clean = _mask_sources(counts, bkg, sources, grid)
    valid = expo > 0.2 * expo.max()
    sm_c = ndimage.gaussian_filter(np.where(valid, clean, 0), 30 / PIX_ARCSEC)
    sm_e = ndimage.gaussian_filter(np.where(valid, expo, 0), 30 / PIX_ARCSEC)
    rate = np.where(sm_e > 0.2 * expo.max(), sm_c / np.maximum(sm_e, 1e-9), 0)
    X, Y = grid.centres()
    rate[ins.off_axis_arcmin(X, Y) > search_arcmin] = 0
    r, c = np.unravel_index(np.argmax(rate), rate.shape)
    x, y = grid.pix_to_sky(c, r)
    # iterate an exposure-corrected centroid within 1' (converges on the core)
    for rad in (90.0, 60.0, 60.0, 45.0):
        m = valid & ((X - x) ** 2 + (Y - y) ** 2 <= (rad / ins.SKY_PIX_ARCSEC) ** 2)
        w = np.where(m, clean / np.maximum(expo, 1e-9), 0.0)
        if w.sum() <= 0:
            break
        x, y = (w * X).sum() / w.sum(), (w * Y).sum() / w.sum()
    return float(x), float(y)


def radial_profile(counts, expo, sources, grid: ImageGrid, x, y, rmax_arcmin: float, particle=None):
    """Counts, exposure, pixels and expected particle counts in annuli of 15"."""
    X, Y = grid.centres()
    d = np.hypot(X - x, Y - y) * ins.SKY_PIX_ARCSEC
    keep = expo > 0.05 * expo.max()
    for s in sources:
        keep &= (X - s.x) ** 2 + (Y - s.y) ** 2 > (s.radius_arcsec / ins.SKY_PIX_ARCSEC) ** 2
    edges = np.arange(0, rmax_arcmin * 60 + PROFILE_STEP_ARCSEC, PROFILE_STEP_ARCSEC)
    idx = np.digitize(d[keep], edges) - 1
    ok = (idx >= 0) & (idx < len(edges) - 1)
    nb = len(edges) - 1
    n = np.bincount(idx[ok], weights=counts[keep][ok], minlength=nb)
    e = np.bincount(idx[ok], weights=expo[keep][ok], minlength=nb)
    npix = np.bincount(idx[ok], minlength=nb)
    p = np.zeros(nb) if particle is None else np.bincount(idx[ok], weights=particle[keep][ok], minlength=nb)
    return edges, n, e, npix, p


def auto_radius(edges, n, e, npix, p=None, min_pixels: int = 20) -> tuple[float, float, np.ndarray]:
    """Radius (arcmin) where the background-subtracted profile falls below S/N 3.

    The particle background ``p`` (expected counts per annulus; it is not vignetted) is
    taken off before dividing by the vignetted exposure, so the profile of the sky
    background is flat and does not climb outwards. The sky level (per exposure) is the
    median of the outer 20% of that profile.
    """
    p = np.zeros(len(n)) if p is None else p
    good = npix >= min_pixels
    rate = np.where(good, (n - p) / np.maximum(e, 1e-9), np.nan)
    r_mid = 0.5 * (edges[:-1] + edges[1:])
    outer = good & (r_mid >= 0.8 * r_mid[good].max())
    b_rate = float(np.nanmedian(rate[outer])) if outer.any() else 0.0
    b = b_rate * e + p
    snr = np.where(good, (n - b) / np.sqrt(np.maximum(n, 1) + b * (1.0 / max(outer.sum(), 1))), np.nan)
    radius = edges[1]
    for i in range(len(n)):
        if not good[i]:
            continue
        if snr[i] < 3:
            break
        radius = edges[i + 1]
    return radius / 60.0, b_rate, snr


def self_subtraction(edges, net, e, b_rate, radius, bkg_in, bkg_out) -> float:
    """Estimated share of the source region's cluster counts that local-background
    subtraction removes: the cluster's own counts in the annulus (from the background-
    subtracted profile, per exposure) scaled to the source region by exposure. A lower
    limit: the sky level is measured in the outer profile, which may hold cluster too."""
    r_mid = 0.5 * (edges[:-1] + edges[1:]) / 60.0
    cl = np.clip(net - b_rate * e, 0.0, None)
    src = r_mid < radius
    ann = (r_mid >= bkg_in) & (r_mid < bkg_out)
    if not src.any() or not ann.any() or cl[src].sum() <= 0 or e[ann].sum() <= 0:
        return 0.0
    scale = e[src].sum() / e[ann].sum()
    return float(cl[ann].sum() * scale / cl[src].sum())


def fov_room_arcmin(x: float, y: float, cams: list[CameraData]) -> float:
    """Distance from (x, y) to the edge of the widest camera FOV (arcmin; < 0 outside)."""
    return max((c.geometry.fov_radius - math.hypot(x - c.geometry.fov_centre[0], y - c.geometry.fov_centre[1]))
               * ins.SKY_PIX_ARCSEC / 60.0 for c in cams)


def profile_psf(cams: list[CameraData]):
    """Encircled energy (radius in arcsec) of the summed image: the cameras' PSFs weighted
    by their share of the soft-band events."""
    n = {c.name: float(np.count_nonzero(band_mask(c.pi, CENTRE_BAND))) for c in cams}
    total = sum(n.values()) or 1.0
    return lambda r: sum(n[c.name] / total * ins.camera(c.name).encircled_energy(r) for c in cams)


def plot_profile(edges, n, e, b_rate, snr, radius, bkg_in, bkg_out, dest):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    r = 0.5 * (edges[:-1] + edges[1:]) / 60.0
    area = np.pi * (edges[1:] ** 2 - edges[:-1] ** 2) / 3600.0
    ok = e > 0
    sb = np.where(ok, n / np.maximum(e, 1e-9), np.nan)
    err = np.where(ok, np.sqrt(np.maximum(n, 1)) / np.maximum(e, 1e-9), np.nan)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.errorbar(r[ok], sb[ok] / (area[ok] / np.maximum(area[ok], 1e-9)), yerr=err[ok], fmt=".", ms=3, color="k",
                label="EPIC 0.5-2 keV (per exposure-weighted pixel)")
    ax.axhline(b_rate, color="C0", ls=":", label="background level")
    ax.axvline(radius, color="lime", lw=1.5, label=f"R = {radius:.2f}'")
    ax.axvspan(bkg_in, bkg_out, color="cyan", alpha=0.2, label="background annulus")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("radius (arcmin)")
    ax.set_ylabel("counts / (pn-eq. s) per pixel")
    ax.set_title("Radial surface-brightness profile")
    ax.legend(fontsize=8)
    save_figure(dest, fig)
    plt.close(fig)
