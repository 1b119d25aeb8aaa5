"""Step 2's point sources: what is excluded from the spectra, and what is kept.

Candidates from the combined images of every band (:func:`xmmext.sky.detect.detect_candidates`,
or edetect_chain's list on the SAS backend) are tested as PSF against extended emission
(:mod:`xmmext.sky.extent`); extended structure where the target dominates the sky is
kept (a sloshing core is the target), elsewhere excluded over its extent (a background
group). A user's list (``--ptsrc-reg``) joins or replaces the detections.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

import xmmext.instrument as ins
from xmmext.events.out_of_time import out_of_time_image
from xmmext.sky.detect import Source, background_map, classify_sources, detect_candidates
from xmmext.sky.images import CENTRE_BAND, DETECT_BAND, DETECT_BANDS, PIX_ARCSEC, ImageGrid, band_mask, exposure_map
from xmmext.sky.source_lists import read_source_list

__all__ = ["EDGE_MARGIN_ARCSEC", "particle_map", "known_background_map", "find_point_sources", "target_dominance",
           "detection_exposure"]

EDGE_MARGIN_ARCSEC = 20.0


def particle_map(cams: list, band: str = CENTRE_BAND) -> np.ndarray:
    """Expected particle counts per image pixel in a band, all cameras."""
    return sum(c.particle_rate[band] * c.exposure_s * c.coverage for c in cams)


def known_background_map(cams: list, grid: ImageGrid, band: str = CENTRE_BAND) -> np.ndarray:
    """Expected counts per image pixel that are not sky: the particles of every camera and
    pn's out-of-time events (their streaks along the readout columns)."""
    total = particle_map(cams, band)
    for c in cams:
        if c.oot_fraction > 0:
            sel = band_mask(c.pi, band)
            total = total + out_of_time_image(c.geometry, c.rawx[sel], c.ccdnr[sel], c.oot_fraction, grid)
    return total


def find_point_sources(cams: list, imgs: dict, grid: ImageGrid, meta: dict, opts, centre: tuple,
                       sas_sources: list[dict] | None) -> tuple[list[Source], list[Source], list[Source]]:
    """(point sources, candidates kept as extended structure, sources of --ptsrc-reg).

    Detection (``--ptsrc detect|both``, or auto without a list): candidates in each band and
    in their sum against the background map (radial model about ``centre`` + particles + pn
    out-of-time streaks), or edetect_chain's list (SAS backend); each then tested as PSF
    against extended emission on all bands together (:func:`classify_sources`)."""
    listed = (read_source_list(opts.ptsrc_reg, meta["ra_pnt"], meta["dec_pnt"])
              if opts.ptsrc_reg and opts.ptsrc in ("auto", "file", "both") else [])
    if opts.ptsrc == "file":
        return [], [], listed
    band_images = []
    for band in DETECT_BANDS:
        expo = detection_exposure(cams, grid, band)
        bkg_map = background_map(imgs["counts"][band], expo, grid.sky_to_pix(*centre),
                                 particle=known_background_map(cams, grid, band))
        # no detection within 20" of the field edge: a cell cut by it, where the exposure map's
        # edge and the events' differ by a pixel, stands out of a model that has nothing there
        usable = ndimage.binary_erosion(expo > 0.1 * expo.max(), iterations=int(round(EDGE_MARGIN_ARCSEC / PIX_ARCSEC)))
        band_images.append((imgs["counts"][band], bkg_map, usable))
    if sas_sources is not None:
        found = _sources_from_list(sas_sources, imgs, grid, meta)
    else:
        found = detect_candidates(band_images, grid, meta["ra_pnt"], meta["dec_pnt"], opts.min_sigma)
    points, extended = classify_sources(found, [(c, b) for c, b, _ in band_images], grid)
    # extended structure is kept only where the target dominates the sky: elsewhere an
    # extended source (a background group) is excluded like a point source, over its extent
    dominance = target_dominance(band_images[0][1], detection_exposure(cams, grid, DETECT_BANDS[0]), grid, centre)
    for e in [e for e in extended if e.extent.extended and not _dominated(dominance, grid, e)]:
        extended.remove(e)
        e.radius_arcsec = round(float(np.clip(2.5 * e.extent.sigma_arcsec, e.radius_arcsec, 120.0)), 2)
        e.origin = "detected (extended, not the target)"
        points.append(e)
    return points, extended, listed


def target_dominance(bkg_map: np.ndarray, exposure: np.ndarray, grid: ImageGrid, centre: tuple) -> np.ndarray:
    """The detection background's rate over the sky's (the median rate of the outer fifth of
    the field about ``centre``): the radial model is the target plus the sky, so where this
    is above 2 the target's own emission dominates."""
    X, Y = grid.centres()
    d = np.hypot(X - centre[0], Y - centre[1])
    seen = exposure > 0.2 * exposure.max()
    rate = np.where(seen, bkg_map / np.maximum(exposure, 1e-9), np.nan)
    outer = seen & (d >= 0.8 * d[seen].max())
    sky = float(np.nanmedian(rate[outer])) if outer.any() else np.nan
    return rate / sky if np.isfinite(sky) and sky > 0 else np.full(rate.shape, np.inf)


def _dominated(dominance: np.ndarray, grid: ImageGrid, s: Source, level: float = 2.0) -> bool:
    col, row = grid.sky_to_pix(s.x, s.y)
    r, c = int(np.clip(round(float(row)), 0, grid.n - 1)), int(np.clip(round(float(col)), 0, grid.n - 1))
    value = dominance[r, c]
    return bool(np.isnan(value) or value >= level)


def detection_exposure(cams: list, grid: ImageGrid, band: str = DETECT_BAND) -> np.ndarray:
    """EPIC exposure (pn-equivalent s) for point-source detection in a broad band, with the
    vignetting at the mean energy of each camera's counts in the band: at the band's mid
    energy (5.25 keV for 0.5-10) it is far steeper than what the mostly soft counts see,
    and with the optical axis off the source centre that leaves an azimuthal pattern in a
    bright core that the radial background model turns into false detections. For the
    same reason each camera is weighted by its own measured counts per exposure (the
    three optical axes differ by up to ~1', so a weight that is off shows as a pattern)."""
    total = np.zeros((grid.n, grid.n))
    for c in cams:
        sel = band_mask(c.pi, band)
        e_mean = float(np.mean(c.pi[sel])) / 1000.0 if sel.any() else None
        expo = exposure_map(c.geometry, grid, c.exposure_s, band, c.coverage, e_mean)
        total += expo * (np.count_nonzero(sel) / max(float(expo.sum()), 1e-9))
    return total / max(float(total.max()), 1e-30) * max(c.exposure_s for c in cams)


def _sources_from_list(rows: list[dict], imgs: dict, grid: ImageGrid, meta: dict) -> list[Source]:
    """Point sources of an edetect_chain list, with the native exclusion radius."""
    from xmmext.sky.detect import exclusion_radius
    cam = ins.camera("pn")
    bkg = ndimage.gaussian_filter(imgs["counts"][DETECT_BAND], 8.0)
    out = []
    for r in rows:
        x, y = ins.radec_to_sky(r["ra"], r["dec"], meta["ra_pnt"], meta["dec_pnt"])
        c, rr = grid.sky_to_pix(x[0], y[0])
        c, rr = int(np.clip(round(float(c)), 0, grid.n - 1)), int(np.clip(round(float(rr)), 0, grid.n - 1))
        out.append(Source(float(x[0]), float(y[0]), r["ra"], r["dec"], r["counts"], r["det_ml"],
                          exclusion_radius(r["counts"], bkg[rr, c], cam)))
    return out
