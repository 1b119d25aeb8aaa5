"""Point-source detection on the combined EPIC images (native path; SAS: edetect_chain's list).

1. Background: a radial model of the count rate about the extended source's centre
   times the exposure map, plus what is not sky (particles, pn out-of-time streaks), with
   detected sources masked (:func:`background_map`).
2. Candidates: local maxima (photutils ``find_peaks``) of the Poisson significance of
   the counts in a 10"-radius cell (or a PSF-matched filter) against the background
   expected there, in each band (0.5-2, 2-10 keV) and in their sum (:func:`detect_candidates`).
3. A candidate goes on when it is significant (default 5 sigma) and stands out of its
   own surroundings: the flux estimated from its counts within 8" against the 8"-24"
   annulus around it (a model-free local contrast) is at least 2 sigma.
4. Position: background-subtracted centroid in the 10" cell; counts = net counts in
   24" divided by the encircled energy there; exclusion radius where the source's PSF
   wings fall to half the local background, between 15" and 90".
5. Point source or extended structure: a likelihood fit of PSF against PSF-convolved
   extended emission on all bands at once, and the source's contrast against the local
   emission (:func:`classify_sources`, :mod:`xmmext.sky.extent`); only point sources
   are excluded.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from photutils.detection import find_peaks
from scipy import ndimage, stats

import xmmext.instrument as ins
from xmmext.sky.images import PIX_ARCSEC, ImageGrid
from xmmext.sky.extent import Extent, classify_candidate

__all__ = ["Source", "BKG_SYSTEMATIC", "background_map", "poisson_sigma", "MIN_CONTRAST_SIGMA", "significance_map",
           "detect_candidates", "find_candidates", "classify_sources", "exclusion_radius", "merge_close"]


@dataclass
class Source:
    x: float            # sky pixels
    y: float
    ra: float
    dec: float
    counts: float       # net counts, all cameras, PSF-corrected
    significance: float
    radius_arcsec: float
    extent: Extent | None = None      # the point/extended test (None: from a list, not tested)
    origin: str = "detected"          # detected | file: <name> | observations: ...

    def record(self) -> dict:
        """The entry of regions.json's "excluded" (or "kept_extended")."""
        def number(v):            # a list's sources have no counts or significance: null, not NaN
            return float(v) if v is not None and np.isfinite(v) else None
        out = {"ra": self.ra, "dec": self.dec, "x": self.x, "y": self.y, "radius_arcsec": self.radius_arcsec,
               "counts": number(self.counts), "significance": number(self.significance), "origin": self.origin}
        if self.extent is not None:
            e = self.extent
            out.update({"extent_dcstat": e.dcstat_extent, "extent_sigma_arcsec": e.sigma_arcsec,
                        "contrast": e.contrast, "classification": e.reason})
        return out


BKG_SYSTEMATIC = 0.03     # fractional error of the local background model


def _disk_kernel(r_pix: float) -> np.ndarray:
    n = int(np.ceil(r_pix))
    yy, xx = np.mgrid[-n:n + 1, -n:n + 1]
    return (np.hypot(xx, yy) <= r_pix).astype(float)


def background_map(counts: np.ndarray, exposure: np.ndarray, centre_pix: tuple | None = None,
                   iters: int = 3, mask_sigma: float = 3.0, mask_radius_arcsec: float = 24.0,
                   particle: np.ndarray | None = None) -> np.ndarray:
    """Background in counts/pixel for point-source detection in a cluster field.

    A radial model of the count rate about ``centre_pix`` (image col, row; default the
    exposure-weighted centre of the image) - the clipped mean of counts/exposure in
    annuli 8" wide in the core, widening outwards - times the exposure map. It follows
    the extended source and the vignetted/chip-gap structure without being biased by
    the curvature of the profile or by the sources themselves: pixels near cells more
    than ``mask_sigma`` above the current model are left out, iterated. ``particle``
    (expected particle counts per pixel, not vignetted) is added to the model as it is,
    and taken off the counts before the radial rate is measured.
    """
    part = np.zeros_like(counts, dtype=float) if particle is None else np.asarray(particle, float)
    valid = exposure > 0.05 * exposure.max()
    rows, cols = np.indices(counts.shape)
    if centre_pix is None:
        w = np.where(valid, counts, 0.0)
        centre_pix = ((w * cols).sum() / max(w.sum(), 1), (w * rows).sum() / max(w.sum(), 1))
    d = np.hypot(cols - centre_pix[0], rows - centre_pix[1]) * PIX_ARCSEC     # arcsec
    # annulus edges: 8" steps to 2', then growing by 10% (>= 8")
    edges = [0.0]
    while edges[-1] < d.max() + 1:
        edges.append(edges[-1] + max(8.0, 0.1 * edges[-1] if edges[-1] > 120 else 8.0))
    edges = np.array(edges)
    ring = np.digitize(d, edges) - 1
    expo = np.where(valid, exposure, 0.0)
    cell = _disk_kernel(10.0 / PIX_ARCSEC)
    grow = _disk_kernel(mask_radius_arcsec / PIX_ARCSEC) > 0
    use = valid.copy()
    for _ in range(iters):
        c_sum = np.bincount(ring[use], weights=counts[use] - part[use], minlength=len(edges))
        e_sum = np.bincount(ring[use], weights=expo[use], minlength=len(edges))
        rate = c_sum / np.maximum(e_sum, 1e-9)
        filled = e_sum > 0
        mids = 0.5 * (edges[:-1] + edges[1:])
        rate = np.interp(np.arange(len(edges)), np.flatnonzero(filled), rate[filled]) if filled.any() else rate
        # interpolate in radius between annulus centres for a smooth model
        model_rate = np.interp(d, mids[: len(rate) - 1], rate[: len(mids)][: len(rate) - 1])
        bkg = np.maximum(model_rate, 0.0) * expo + np.where(valid, part, 0.0)
        n = ndimage.convolve(counts, cell, mode="constant")
        mu = ndimage.convolve(bkg, cell, mode="constant")
        # a systematic floor, as in the detection itself: in a bright core a few-% azimuthal
        # mismatch is many Poisson sigma, and masking it makes the next model lower there
        # (a ring of false sources ~1.5' from a bright simulated core before this floor)
        sig = np.minimum(poisson_sigma(n, mu), (n - mu) / np.sqrt(mu + (BKG_SYSTEMATIC * mu) ** 2 + 1e-9))
        hot = valid & (sig > mask_sigma)
        use = valid & ~ndimage.binary_dilation(hot, structure=grow)
    return np.where(valid, bkg, 0.0)


def poisson_sigma(n: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Gaussian-equivalent significance of >= n counts when mu are expected."""
    p = stats.poisson.sf(np.asarray(n) - 1, np.maximum(mu, 1e-6))
    return stats.norm.isf(np.clip(p, 1e-300, 0.5))


MIN_CONTRAST_SIGMA = 2.0  # point-like test: local core excess over its 8"-24" surroundings


def significance_map(counts: np.ndarray, bkg: np.ndarray, cam: ins.Camera) -> np.ndarray:
    """Per-pixel detection significance: the larger of a 10" top-hat cell (Poisson) and a
    PSF-matched filter, both with the background model's own noise and a systematic
    error included, so bright extended emission does not produce false detections."""
    cell = _disk_kernel(10.0 / PIX_ARCSEC)
    n = ndimage.convolve(counts, cell, mode="constant")
    mu = ndimage.convolve(bkg, cell, mode="constant")
    a_cell = cell.sum()
    a_eff = 2 * np.pi * 60.0 * 8.0 / PIX_ARCSEC ** 2   # pixels behind one annulus value near 1' (min)
    extra = mu * a_cell / a_eff + (BKG_SYSTEMATIC * mu) ** 2
    sig_cell = np.minimum(poisson_sigma(n, mu), (n - mu) / np.sqrt(mu + extra + 1e-9))
    # matched filter: weights = PSF profile on the image grid
    half = int(np.ceil(30.0 / PIX_ARCSEC))
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1] * PIX_ARCSEC
    psf = (1 + (xx ** 2 + yy ** 2) / cam.king_rc_arcsec ** 2) ** (-cam.king_alpha)
    psf /= psf.max()
    t = ndimage.convolve(counts - bkg, psf, mode="constant")
    var = ndimage.convolve(bkg, psf ** 2, mode="constant")
    var_b = var * (psf.sum() ** 2 / (psf ** 2).sum()) / a_eff
    mu_w = ndimage.convolve(bkg, psf, mode="constant")
    sig_mf = t / np.sqrt(var + var_b + (BKG_SYSTEMATIC * mu_w) ** 2 + 1.0)
    return np.maximum(sig_cell, sig_mf)


def detect_candidates(band_images: list[tuple[np.ndarray, np.ndarray, np.ndarray]], grid: ImageGrid, ra_pnt: float,
                      dec_pnt: float, min_sigma: float = 5.0, camera_for_psf: str = "pn") -> list[Source]:
    """Candidate point sources (steps 2-4 of the module docstring) in each band's counts image
    against its background map (:func:`background_map`), where usable, and in the sum of the
    bands (a faint source with a few counts in each band stands out only there); one per
    position. ``band_images``: [(counts, background map, usable mask)]; :func:`classify_sources`
    then tells point sources from extended structure."""
    cam = ins.camera(camera_for_psf)
    found = []
    for counts, bkg, usable in band_images:
        found += find_candidates(counts, bkg, usable, grid, ra_pnt, dec_pnt, min_sigma, cam)
    if len(band_images) > 1:
        total_counts = sum(c for c, _, _ in band_images)
        total_bkg = sum(b for _, b, _ in band_images)
        usable = np.all([u for _, _, u in band_images], axis=0)
        found += find_candidates(total_counts, total_bkg, usable, grid, ra_pnt, dec_pnt, min_sigma, cam)
    return merge_close(found)


def find_candidates(counts: np.ndarray, bkg: np.ndarray, usable: np.ndarray, grid: ImageGrid, ra_pnt: float,
                    dec_pnt: float, min_sigma: float, cam: ins.Camera) -> list[Source]:
    """Peaks of the significance map above ``min_sigma`` where ``usable`` that pass the local
    contrast test (steps 2-4 of the module docstring)."""
    r_cell = 10.0 / PIX_ARCSEC
    sig = np.where(usable, significance_map(counts, bkg, cam), 0.0)
    peaks = find_peaks(sig, threshold=min_sigma, box_size=5)
    if peaks is None:
        return []
    k_in, k_out = _disk_kernel(8.0 / PIX_ARCSEC), _disk_kernel(24.0 / PIX_ARCSEC)
    n_in = ndimage.convolve(counts, k_in, mode="constant")
    n_out = ndimage.convolve(counts, k_out, mode="constant")
    b_out = ndimage.convolve(bkg, k_out, mode="constant")
    ee_in, ee_out = cam.encircled_energy(8.0), cam.encircled_energy(24.0)
    a_ratio = k_in.sum() / (k_out.sum() - k_in.sum())
    sources: list[Source] = []
    for row in peaks:
        c, r = int(row["x_peak"]), int(row["y_peak"])
        # Local contrast, independent of the background model: flux from the counts
        # within 8" against the 8"-24" annulus (flat or linearly varying emission cancels).
        n_ann = n_out[r, c] - n_in[r, c]
        flux = (n_in[r, c] - n_ann * a_ratio) / (ee_in - (ee_out - ee_in) * a_ratio)
        flux_err = np.sqrt(n_in[r, c] + n_ann * a_ratio ** 2 + 1.0) / (ee_in - (ee_out - ee_in) * a_ratio)
        if flux < MIN_CONTRAST_SIGMA * flux_err:
            continue                                  # not point-like: extended emission
        net_out = n_out[r, c] - b_out[r, c]
        x, y = _centroid(counts - bkg, c, r, grid, r_cell)
        ra, dec = ins.sky_to_radec(x, y, ra_pnt, dec_pnt)
        total = max(net_out, 0.0) / ee_out if net_out > 0 else flux
        sources.append(Source(float(x), float(y), float(ra[0]), float(dec[0]), float(total),
                              float(row["peak_value"]), exclusion_radius(total, bkg[r, c], cam)))
    return merge_close(sources, 12.0)


def classify_sources(candidates: list[Source], images: list[tuple[np.ndarray, np.ndarray]], grid: ImageGrid,
                     camera_for_psf: str = "pn") -> tuple[list[Source], list[Source]]:
    """(point sources, the rest): each candidate tested as PSF against PSF-convolved
    extended emission on every band's (counts, background map) together
    (:func:`xmmext.sky.extent.classify_candidate`)."""
    cam = ins.camera(camera_for_psf)
    points, rest = [], []
    for s in candidates:
        col, row = grid.sky_to_pix(s.x, s.y)
        s.extent = classify_candidate(images, float(col), float(row), cam, PIX_ARCSEC)
        (points if s.extent.point_like else rest).append(s)
    return points, rest


def _centroid(net: np.ndarray, c: int, r: int, grid: ImageGrid, rad: float):
    n = int(np.ceil(rad))
    r0, r1, c0, c1 = max(r - n, 0), min(r + n + 1, net.shape[0]), max(c - n, 0), min(c + n + 1, net.shape[1])
    cut = np.clip(net[r0:r1, c0:c1], 0, None)
    yy, xx = np.mgrid[r0:r1, c0:c1]
    w = cut * (np.hypot(xx - c, yy - r) <= rad)
    if w.sum() <= 0:
        return grid.pix_to_sky(c, r)
    return grid.pix_to_sky((w * xx).sum() / w.sum(), (w * yy).sum() / w.sum())


def exclusion_radius(total_counts: float, bkg_per_pix: float, cam: ins.Camera,
                     rmin: float = 15.0, rmax: float = 90.0) -> float:
    """Radius (arcsec) where the King PSF wings fall to half the local background."""
    b = max(bkg_per_pix, 1e-3) / PIX_ARCSEC ** 2            # counts per arcsec^2
    rc, a = cam.king_rc_arcsec, cam.king_alpha
    s0 = total_counts * (a - 1) / (np.pi * rc ** 2)          # central surface brightness
    target = 0.5 * b
    if s0 <= target:
        return float(rmin)
    r = rc * np.sqrt((s0 / target) ** (1 / a) - 1)
    # to 0.01" as the region files write it, so a list read back excludes the same circles
    return round(float(np.clip(r, rmin, rmax)), 2)


def merge_close(sources: list[Source], arcsec: float = 12.0) -> list[Source]:
    """One source per position: of detections closer than ``arcsec``, the most significant."""
    out: list[Source] = []
    for s in sorted(sources, key=lambda s: -s.significance):
        if all(np.hypot(s.x - o.x, s.y - o.y) * ins.SKY_PIX_ARCSEC > arcsec for o in out):
            out.append(s)
    return out
