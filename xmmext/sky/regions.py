"""Step 2's work: images, point sources, source and background regions (the step: :mod:`xmmext.steps.regions`).

From the cleaned event lists of step 1:
  * per camera and combined (EPIC) images in the classic bands, 4" pixels, and exposure
    maps (vignetting x CCD/FOV coverage x exposure);
  * point sources detected on the combined 0.5-2 keV image (:mod:`xmmext.sky.detect`);
  * the extended source centre: ``--ra/--dec``, else the peak of the smoothed,
    exposure-corrected, point-source-free image refined by centroiding;
  * the extraction radius: ``--radius`` or ``auto`` = where the background-subtracted
    surface-brightness profile falls below S/N 3 per bin, capped so the background
    annulus (``--bkg-inner``..``--bkg-outer`` x R, default 1.5-2.0) stays in the FOV;
    if even the smallest useful radius leaves no room, the background falls back to an
    annulus on the outer CCDs and regions.json says so;
  * src.reg / bkg.reg (physical X/Y), src_sky.reg / bkg_sky.reg (fk5), ptsrc.reg,
    regions.json, regions.png (image with regions) and profile.png (radial profile).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

import xmmext.instrument as ins
from xmmext.core.errors import DataError
from xmmext.core.fileio import save_figure, write_text
from xmmext.core.paths import ObsPaths
from xmmext.sky.camera_maps import CameraData, load_cameras, native_band_maps, write_band_products
from xmmext.sky.detect import Source
from xmmext.sky.extraction_region import ExtractionRegion, area_fraction_map
from xmmext.sky.images import CENTRE_BAND, PIX_ARCSEC, ImageGrid
from xmmext.sky.point_sources import find_point_sources, known_background_map
from xmmext.sky.radial_profile import (auto_radius, find_centre, fov_room_arcmin, plot_profile, profile_psf,
                                       radial_profile, self_subtraction)
from xmmext.sky.source_lists import merge_lists, source_list_text
from xmmext.sky.surface_brightness import fit_beta

__all__ = ["PIX_ARCMIN2", "CENTRE_KEEP_ARCSEC", "Choice", "make_regions", "choose_radius", "background_fallback",
           "extraction_regions", "exposed_areas"]

log = logging.getLogger("xmmext.sky.regions")
PIX_ARCMIN2 = (PIX_ARCSEC / 60.0) ** 2
CENTRE_KEEP_ARCSEC = 30.0        # a detection this close to the centre is the source itself


@dataclass
class Choice:
    """The regions step 2 settles on (radii in arcmin, sky X/Y in pixels)."""
    x: float
    y: float
    centre_from: str
    radius: float = 0.0
    radius_from: str = ""
    radius_sn: float = 0.0
    bkg_in: float = 0.0
    bkg_out: float = 0.0
    fallback: bool = False
    warnings: list = field(default_factory=list)


def make_regions(paths: ObsPaths, opts, sas_maps=None) -> tuple[dict, list]:
    """Step 2: write the images, regions and plots; return the regions.json content and
    the files written (the step and its record: :mod:`xmmext.steps.regions`).

    ``sas_maps(cameras, grid)``: on the SAS backend, the images (evselect on the same grid),
    exposure maps (eexpmap) and edetect_chain's source list instead of the native ones;
    centre, radius and regions are then found as for native."""
    outdir = paths.regions
    cams, meta = load_cameras(paths, opts.cameras)
    grid = ImageGrid.around_pointing()
    maps, sas_sources = sas_maps(cams, grid) if sas_maps is not None else (native_band_maps(cams, grid), None)
    imgs = write_band_products(maps, cams, grid, meta, outdir)
    counts, expo = imgs["counts"][CENTRE_BAND], imgs["exposure"][CENTRE_BAND]
    first = _user_centre(opts, meta, cams, paths) if opts.ra is not None else find_centre(counts, expo, [], grid)
    sources, kept, listed = find_point_sources(cams, imgs, grid, meta, opts, first, sas_sources)
    if opts.ra is not None:
        choice = Choice(*first, "user")
    else:
        choice = Choice(*find_centre(counts, expo, sources, grid), "image peak + centroid")
    # the centre is never excluded as a detected point source (a list's are the user's choice)
    detected = [s for s in sources if math.hypot(s.x - choice.x, s.y - choice.y) * ins.SKY_PIX_ARCSEC
                > CENTRE_KEEP_ARCSEC]
    # the list's sources as they are, and the detections it does not hold
    sources = merge_lists([listed, detected], meta["ra_pnt"], meta["dec_pnt"]) if listed else detected
    room = fov_room_arcmin(choice.x, choice.y, cams)
    profile = radial_profile(counts, expo, sources, grid, choice.x, choice.y, max(room, 1.0) + 2.0,
                             known_background_map(cams, grid))
    edges, n, e, npix, p = profile
    choice.radius_sn, b_rate, snr = auto_radius(edges, n, e, npix, p)
    choose_radius(choice, opts, room)
    self_sub = self_subtraction(edges, n - p, e, b_rate, choice.radius, choice.bkg_in, choice.bkg_out)
    if self_sub > 0.05:
        choice.warnings.append(f"the background annulus holds about {100 * self_sub:.0f}% of the source's own "
                               "counts (step 3 predicts them from the beta model and leaves them unsubtracted, so "
                               "the result leans on that model): choose a larger --radius or --bkg-inner")
    background_fallback(choice, room)
    src, bkg = extraction_regions(choice, sources)
    areas = exposed_areas(src, bkg, cams, grid, choice.warnings, paths)
    result = {**_record(choice, meta, areas, cams, src, bkg), "self_subtraction_estimate": self_sub,
              "surface_brightness": fit_beta(edges, n, e, p, npix, psf=profile_psf(cams)),
              "excluded": [s.record() for s in sources], "detected": [s.record() for s in detected],
              "kept_extended": [s.record() for s in kept], "background_rate_per_pn_s_per_pix": b_rate}
    written = _write_products(outdir, meta, src, bkg, sources, kept, imgs, grid, profile, b_rate, snr, choice)
    written += [outdir / f"{c}_{kind}.fits" for c in [c.name for c in cams] + ["epic"] for kind in ("images", "expmaps")]
    _log(choice, result, len(sources))
    return result, written


def choose_radius(choice: Choice, opts, room: float) -> None:
    """The extraction radius (--radius, or the S/N 3 radius) and the background annulus
    (--bkg-inner..--bkg-outer x R). The annulus is used where it is exposed (BACKSCAL counts
    only that part): an automatic radius is capped so that the whole annulus lies on the
    detector (inside the FOV circle fitted to the events); a user radius needs at least 1'
    of it inside."""
    if opts.radius is not None:
        choice.radius, choice.radius_from = opts.radius, "user"
    else:
        choice.radius, choice.radius_from = choice.radius_sn, "S/N 3 per 15\" bin"
    if choice.radius > room - 1.0:
        choice.warnings.append(f"radius {choice.radius:.2f}' reaches the edge of the FOV; reduced to "
                               f"{room - 1.0:.2f}'")
        choice.radius, choice.radius_from = room - 1.0, "capped by the FOV"
    choice.bkg_in, choice.bkg_out = choice.radius * opts.bkg_inner, choice.radius * opts.bkg_outer
    if opts.radius is None and choice.bkg_out > room and room / opts.bkg_outer >= 2.0:
        cap = room / opts.bkg_outer
        choice.warnings.append(f"S/N radius {choice.radius:.2f}' reduced to {cap:.2f}' so that the background "
                               f"annulus ({opts.bkg_inner:g}-{opts.bkg_outer:g} R) lies on the detector")
        choice.radius, choice.radius_from = cap, "capped by the FOV"
        choice.bkg_in, choice.bkg_out = choice.radius * opts.bkg_inner, choice.radius * opts.bkg_outer


def background_fallback(choice: Choice, room: float) -> None:
    """When even the chosen radius leaves no room for the annulus: the outer CCDs."""
    if choice.bkg_in > room - 1.0:
        choice.fallback = True
        choice.bkg_in = max(choice.radius + 0.5, room - 3.0)
        choice.bkg_out = room + 2 * (ins.FOV_RADIUS_ARCMIN - room)
        choice.warnings.append("the source fills the field of view: background from the outer CCDs "
                               f"({choice.bkg_in:.1f}' from the centre to the FOV edge); it contains source "
                               "emission - consider a blank-sky background")


def extraction_regions(choice: Choice, sources: list[Source]) -> tuple[ExtractionRegion, ExtractionRegion]:
    """The source circle and the background annulus, every excluded source cut out of both."""
    to_px = 60.0 / ins.SKY_PIX_ARCSEC
    excl = [(s.x, s.y, s.radius_arcsec / ins.SKY_PIX_ARCSEC) for s in sources]
    return (ExtractionRegion(choice.x, choice.y, 0.0, choice.radius * to_px, excl),
            ExtractionRegion(choice.x, choice.y, choice.bkg_in * to_px, choice.bkg_out * to_px, excl))


def exposed_areas(src, bkg, cams: list[CameraData], grid: ImageGrid, warnings: list, paths: ObsPaths) -> dict:
    """{camera: {"src", "bkg"}} exposed areas (arcmin^2); exit 4 when no camera sees the annulus."""
    areas = {}
    src_frac, bkg_frac = area_fraction_map(src, grid), area_fraction_map(bkg, grid)
    for c in cams:
        areas[c.name] = {"src": float((src_frac * c.coverage).sum() * PIX_ARCMIN2),
                         "bkg": float((bkg_frac * c.coverage).sum() * PIX_ARCMIN2)}
        if areas[c.name]["src"] <= 0:
            warnings.append(f"{c.name}: the source region has no exposed area")
    if all(a["bkg"] <= 0 for a in areas.values()):
        raise DataError("the background region has no exposed area in any camera", paths.regions)
    return areas


def _record(choice: Choice, meta: dict, areas: dict, cams: list[CameraData], src, bkg) -> dict:
    ra_c, dec_c = ins.sky_to_radec(choice.x, choice.y, meta["ra_pnt"], meta["dec_pnt"])
    return {
        "center": {"ra": float(ra_c[0]), "dec": float(dec_c[0]), "x": choice.x, "y": choice.y,
                   "from": choice.centre_from},
        "radius_arcmin": float(choice.radius), "radius_from": choice.radius_from,
        "radius_sn3_arcmin": float(choice.radius_sn), "bkg_inner_arcmin": float(choice.bkg_in),
        "bkg_outer_arcmin": float(choice.bkg_out), "bkg_fallback_outer_ccds": choice.fallback,
        "area_arcmin2": {c: a["src"] for c, a in areas.items()},
        "bkg_area_arcmin2": {c: a["bkg"] for c, a in areas.items()},
        "particle_background": {c.name: {"rate_per_s_per_pix": c.particle_rate, "from": c.particle_from}
                                for c in cams},
        "geometry": {c.name: c.geometry.to_json() for c in cams},
        "cameras": [c.name for c in cams], "warnings": choice.warnings,
        "evselect": {"src": src.evselect_expression(), "bkg": bkg.evselect_expression()},
    }


def _write_products(outdir, meta, src, bkg, sources, kept, imgs, grid, profile, b_rate, snr, choice) -> list:
    """The region files (physical and fk5), the list of excluded sources and the two plots."""
    write_text(outdir / "src.reg", src.ds9_physical())
    write_text(outdir / "bkg.reg", bkg.ds9_physical())
    write_text(outdir / "src_sky.reg", src.ds9_fk5(meta["ra_pnt"], meta["dec_pnt"]))
    write_text(outdir / "bkg_sky.reg", bkg.ds9_fk5(meta["ra_pnt"], meta["dec_pnt"]))
    write_text(outdir / "ptsrc.reg", source_list_text(sources, "point sources excluded by xmmext"))
    _plot_regions(imgs["counts"]["0.5-2"], grid, src, bkg, sources, outdir / "regions.png", kept,
                  grid.wcs(meta["ra_pnt"], meta["dec_pnt"]))
    edges, n, e, _, p = profile
    plot_profile(edges, n - p, e, b_rate, snr, choice.radius, choice.bkg_in, choice.bkg_out, outdir / "profile.png")
    return [outdir / n for n in ("src.reg", "bkg.reg", "src_sky.reg", "bkg_sky.reg", "ptsrc.reg",
                                 "regions.png", "profile.png")]


def _log(choice: Choice, result: dict, n_sources: int) -> None:
    for w in choice.warnings:
        log.warning("regions: %s", w)
    log.info("regions: centre (%.5f, %.5f) [%s], R = %.2f' (%s), background %.2f'-%.2f', %d point sources",
             result["center"]["ra"], result["center"]["dec"], choice.centre_from, choice.radius,
             choice.radius_from, choice.bkg_in, choice.bkg_out, n_sources)


def _user_centre(opts, meta, cams, paths: ObsPaths) -> tuple[float, float]:
    """Sky X/Y of --ra/--dec; exit 4 when it lies outside the field of view."""
    x, y = ins.radec_to_sky(opts.ra, opts.dec, meta["ra_pnt"], meta["dec_pnt"])
    x, y = float(x[0]), float(y[0])
    if not (np.isfinite(x) and np.isfinite(y)) or fov_room_arcmin(x, y, cams) < 0:
        from astropy.coordinates import SkyCoord
        theta = SkyCoord(opts.ra, opts.dec, unit="deg").separation(
            SkyCoord(meta["ra_pnt"], meta["dec_pnt"], unit="deg")).arcmin
        raise DataError(f"--ra {opts.ra} --dec {opts.dec} is {theta:.1f}' from the pointing "
                        f"({meta['ra_pnt']:.4f}, {meta['dec_pnt']:.4f}), outside the "
                        f"{ins.FOV_RADIUS_ARCMIN:.0f}' field of view (RA/Dec must be FK5/ICRS degrees)",
                        paths.regions)
    return x, y


def _plot_regions(img, grid, src, bkg, sources, dest, kept=(), wcs=None):
    """The EPIC image with the regions, on RA/Dec axes (``wcs``: the image's)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Circle
    fig = plt.figure(figsize=(7.4, 7))
    ax = fig.add_subplot(projection=wcs) if wcs is not None else fig.add_subplot()
    sm = ndimage.gaussian_filter(img, 1.0)
    pos = sm[sm > 0]
    vmin = max(np.percentile(pos, 5), 1e-2) if pos.size else 1e-2
    ax.imshow(np.maximum(sm, vmin), origin="lower", cmap="magma", norm=LogNorm(vmin=vmin, vmax=max(sm.max(), vmin * 10)))

    def circ(xs, ys, r, **kw):
        c, rr = grid.sky_to_pix(xs, ys)
        ax.add_patch(Circle((c, rr), r / grid.binsize, fill=False, **kw))
    circ(src.x, src.y, src.r_out, color="lime", lw=1.5, label=f"source R={src.r_out * ins.SKY_PIX_ARCSEC / 60:.2f}'")
    circ(bkg.x, bkg.y, bkg.r_in, color="cyan", lw=1.2, ls="--", label="background annulus")
    circ(bkg.x, bkg.y, bkg.r_out, color="cyan", lw=1.2, ls="--")
    for i, s in enumerate(sources):
        circ(s.x, s.y, s.radius_arcsec / ins.SKY_PIX_ARCSEC, color="red", lw=0.9,
             label="excluded point sources" if i == 0 else None)
    for i, s in enumerate(kept):
        circ(s.x, s.y, 20.0 / ins.SKY_PIX_ARCSEC, color="white", lw=0.8, ls=":",
             label="candidates kept: extended structure" if i == 0 else None)
    ax.set_title("EPIC 0.5-2 keV counts (log), 4\" pixels")
    ax.set_xlabel("RA (J2000)" if wcs is not None else "image x (4\" pixels)")
    ax.set_ylabel("Dec (J2000)" if wcs is not None else "image y")
    ax.legend(loc="upper right", fontsize=8)
    save_figure(dest, fig)
    plt.close(fig)
