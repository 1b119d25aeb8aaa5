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
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from scipy import ndimage

import xmmext.instrument as ins
from xmmext.spectra.model_inputs import oot_fraction
from xmmext.sky.detect import Source
from xmmext.sky.point_sources import find_point_sources, known_background_map
from xmmext.sky.source_lists import merge_lists, source_list_text
from xmmext.core.errors import DataError, UsageError
from xmmext.events.reader import read_events
from xmmext.events.footprint import Geometry, camera_livetime, ccd_livetimes, geometry_from_events
from xmmext.events.particles import particle_rates
from xmmext.core.fileio import read_json, save_figure, write_fits, write_text
from xmmext.sky.images import BANDS_KEV, CENTRE_BAND, DETECT_BAND, DETECT_BANDS, PIX_ARCSEC, ImageGrid, band_mask, counts_image, coverage_map, \
    exposure_map, image_hdu
from xmmext.core.paths import ObsPaths
from xmmext.sky.surface_brightness import fit_beta
from xmmext.sky.extraction_region import ExtractionRegion, area_fraction_map

log = logging.getLogger("xmmext.sky.regions")
PIX_ARCMIN2 = (PIX_ARCSEC / 60.0) ** 2
PROFILE_STEP_ARCSEC = 15.0


@dataclass
class CameraData:
    name: str
    x: np.ndarray
    y: np.ndarray
    pi: np.ndarray
    exposure_s: float              # live time of the camera
    geometry: Geometry
    coverage: np.ndarray           # live-time-weighted CCD coverage of each image pixel
    particle_rate: dict | None = None   # {band: particle counts / s / image pixel}
    particle_from: str = ""
    rawx: np.ndarray | None = None      # pn: for the out-of-time events' streaks
    ccdnr: np.ndarray | None = None
    oot_fraction: float = 0.0           # pn: out-of-time events per in-time event (mode), MOS: 0


def _load_cameras(paths: ObsPaths, cameras) -> tuple[list[CameraData], dict]:
    summary_path = paths.events / "filtering.json"
    if not summary_path.exists():
        raise UsageError("no filtering results: run step 1 (run_filtering.sh) first", summary_path)
    filt = read_json(summary_path, "filtering.json of step 1")
    grid = ImageGrid.around_pointing()
    data, meta = [], {}
    for cam in cameras:
        if filt.get(cam, {}).get("status") != "ok" or not paths.clean_events(cam).exists():
            log.warning("%s: no cleaned events; camera skipped", cam)
            continue
        ev = read_events(paths.clean_events(cam), columns=["X", "Y", "PI", "CCDNR", "RAWX"])
        meta = {"ra_pnt": float(ev.key("RA_PNT")), "dec_pnt": float(ev.key("DEC_PNT")),
                "pa_pnt": float(ev.key("PA_PNT")), "date_obs": str(ev.key("DATE-OBS", ""))}
        geo = geometry_from_events(paths.clean_events(cam), cam, sorted(ev.gtis) or None)
        live = camera_livetime(ev.header)
        cov = coverage_map(geo, grid, {c: t / live for c, t in ccd_livetimes(ev.header).items()})
        cd = CameraData(cam, ev.columns["X"], ev.columns["Y"], ev.columns["PI"], live, geo, cov,
                        rawx=ev.columns["RAWX"], ccdnr=ev.columns["CCDNR"], oot_fraction=oot_fraction(cam, ev))
        cd.particle_rate, cd.particle_from = particle_rates(
            cd, paths, filt[cam], {b: BANDS_KEV[b] for b in (CENTRE_BAND, DETECT_BAND) + DETECT_BANDS}, PIX_ARCSEC)
        data.append(cd)
    if not data:
        raise DataError("no camera has cleaned events", summary_path)
    return data, meta


def camera_weight(cam: str) -> float:
    """Relative soft-band count rate of a camera (pn = 1), for combining exposure maps."""
    e = np.linspace(0.5, 2.0, 31)
    return float(np.mean(ins.camera(cam).on_axis_area(e)) / np.mean(ins.camera("pn").on_axis_area(e)))


def native_band_maps(cams: list[CameraData], grid: ImageGrid) -> dict:
    """{camera: {band: (counts image, exposure map)}} from the events and the instrument model."""
    out = {}
    for c in cams:
        out[c.name] = {}
        for band in BANDS_KEV:
            sel = band_mask(c.pi, band)
            out[c.name][band] = (counts_image(c.x[sel], c.y[sel], grid),
                                 exposure_map(c.geometry, grid, c.exposure_s, band, c.coverage))
    return out


def write_band_products(maps: dict, cams: list[CameraData], grid: ImageGrid, meta: dict, outdir) -> dict:
    """Per-camera and EPIC images/exposure maps as multi-extension FITS; EPIC sums returned
    (exposure maps weighted to pn-equivalent seconds)."""
    epic_counts = {b: np.zeros((grid.n, grid.n)) for b in BANDS_KEV}
    epic_expo = {b: np.zeros((grid.n, grid.n)) for b in BANDS_KEV}
    for c in cams:
        cam = ins.camera(c.name)
        img_hdus, exp_hdus = [fits.PrimaryHDU()], [fits.PrimaryHDU()]
        for band in BANDS_KEV:
            img, expo = maps[c.name][band]
            epic_counts[band] += img
            epic_expo[band] += expo * camera_weight(c.name)
            extra = {"INSTRUME": cam.instrume, "BAND": band, "EXPOSURE": c.exposure_s}
            hi = image_hdu(img, grid, meta["ra_pnt"], meta["dec_pnt"], extra)
            he = image_hdu(expo, grid, meta["ra_pnt"], meta["dec_pnt"], extra)
            img_hdus.append(fits.ImageHDU(hi.data, header=hi.header, name=f"IMG_{band}"))
            exp_hdus.append(fits.ImageHDU(he.data, header=he.header, name=f"EXP_{band}"))
        write_fits(outdir / f"{c.name}_images.fits", fits.HDUList(img_hdus))
        write_fits(outdir / f"{c.name}_expmaps.fits", fits.HDUList(exp_hdus))
    hdus_i, hdus_e = [fits.PrimaryHDU()], [fits.PrimaryHDU()]
    for band in BANDS_KEV:
        extra = {"INSTRUME": "EPIC", "BAND": band, "EXPWEIGH": "pn-equivalent seconds"}
        hi = image_hdu(epic_counts[band], grid, meta["ra_pnt"], meta["dec_pnt"], extra)
        he = image_hdu(epic_expo[band], grid, meta["ra_pnt"], meta["dec_pnt"], extra)
        hdus_i.append(fits.ImageHDU(hi.data, header=hi.header, name=f"IMG_{band}"))
        hdus_e.append(fits.ImageHDU(he.data, header=he.header, name=f"EXP_{band}"))
    write_fits(outdir / "epic_images.fits", fits.HDUList(hdus_i))
    write_fits(outdir / "epic_expmaps.fits", fits.HDUList(hdus_e))
    return {"counts": epic_counts, "exposure": epic_expo}


def make_images(cams: list[CameraData], grid: ImageGrid, meta: dict, outdir) -> dict:
    """Native images and exposure maps, written; EPIC sums returned."""
    return write_band_products(native_band_maps(cams, grid), cams, grid, meta, outdir)


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


def make_regions(paths: ObsPaths, opts, backend: str = "native") -> tuple[dict, list]:
    """Step 2: write the images, regions and plots; return the regions.json content and
    the files written (the step and its record: :mod:`xmmext.steps.regions`).

    ``backend='sas'``: images with evselect on the same grid, exposure maps with eexpmap
    and point sources from edetect_chain; centre, radius and regions as for native."""
    outdir = paths.regions
    cams, meta = _load_cameras(paths, opts.cameras)
    grid = ImageGrid.around_pointing()
    if backend == "sas":
        from xmmext.sas.images import run_sas_images
        maps, sas_sources = run_sas_images(paths, [c.name for c in cams], grid, opts.timeout)
        imgs = write_band_products(maps, cams, grid, meta, outdir)
    else:
        imgs, sas_sources = make_images(cams, grid, meta, outdir), None
    counts, expo = imgs["counts"][CENTRE_BAND], imgs["exposure"][CENTRE_BAND]
    if opts.ra is not None:
        first_centre = _user_centre(opts, meta, cams, paths)
    else:
        first_centre = find_centre(counts, expo, [], grid)
    sources, kept_extended, listed = find_point_sources(
        cams, imgs, grid, meta, opts, first_centre, sas_sources if backend == "sas" else None)
    warnings: list[str] = []
    # centre
    if opts.ra is not None:
        x, y = first_centre
        centre_from = "user"
    else:
        x, y = find_centre(counts, expo, sources, grid)
        centre_from = "image peak + centroid"
    # the centre is never excluded as a detected point source (a list's are the user's choice)
    sources = [s for s in sources if math.hypot(s.x - x, s.y - y) * ins.SKY_PIX_ARCSEC > 30.0]
    detected = list(sources)
    if listed:           # the list's sources as they are, and the detections it does not hold
        sources = merge_lists([listed, sources], meta["ra_pnt"], meta["dec_pnt"])
    room = fov_room_arcmin(x, y, cams)
    edges, n, e, npix, p = radial_profile(counts, expo, sources, grid, x, y, max(room, 1.0) + 2.0,
                                          known_background_map(cams, grid))
    r_sn, b_rate, snr = auto_radius(edges, n, e, npix, p)
    if opts.radius is not None:
        radius, radius_from = opts.radius, "user"
    else:
        radius, radius_from = r_sn, "S/N 3 per 15\" bin"
    # The background annulus is used where it is exposed (BACKSCAL counts only that part).
    # An automatic radius is capped so that the whole annulus lies on the detector (inside
    # the FOV circle fitted to the events); a user radius needs at least 1' of it inside.
    fallback = False
    if radius > room - 1.0:
        warnings.append(f"radius {radius:.2f}' reaches the edge of the FOV; reduced to {room - 1.0:.2f}'")
        radius, radius_from = room - 1.0, "capped by the FOV"
    bkg_in, bkg_out = radius * opts.bkg_inner, radius * opts.bkg_outer
    if opts.radius is None and bkg_out > room and room / opts.bkg_outer >= 2.0:
        cap = room / opts.bkg_outer
        warnings.append(f"S/N radius {radius:.2f}' reduced to {cap:.2f}' so that the background "
                        f"annulus ({opts.bkg_inner:g}-{opts.bkg_outer:g} R) lies on the detector")
        radius, radius_from = cap, "capped by the FOV"
        bkg_in, bkg_out = radius * opts.bkg_inner, radius * opts.bkg_outer
    self_sub = self_subtraction(edges, n - p, e, b_rate, radius, bkg_in, bkg_out)
    surface_brightness = fit_beta(edges, n, e, p, npix, psf=profile_psf(cams))
    if self_sub > 0.05:
        warnings.append(f"the background annulus holds about {100 * self_sub:.0f}% of the source's own counts "
                        "(step 3 predicts them from the beta model and leaves them unsubtracted, so the "
                        "result leans on that model): choose a larger --radius or --bkg-inner")
    if bkg_in > room - 1.0:
        fallback = True
        bkg_in, bkg_out = max(radius + 0.5, room - 3.0), room + 2 * (ins.FOV_RADIUS_ARCMIN - room)
        warnings.append("the source fills the field of view: background from the outer CCDs "
                        f"({bkg_in:.1f}' from the centre to the FOV edge); it contains source "
                        "emission - consider a blank-sky background")
    to_px = 60.0 / ins.SKY_PIX_ARCSEC
    excl = [(s.x, s.y, s.radius_arcsec / ins.SKY_PIX_ARCSEC) for s in sources]
    src = ExtractionRegion(x, y, 0.0, radius * to_px, excl)
    bkg = ExtractionRegion(x, y, bkg_in * to_px, bkg_out * to_px, excl)
    ra_c, dec_c = ins.sky_to_radec(x, y, meta["ra_pnt"], meta["dec_pnt"])
    areas = {}
    src_frac, bkg_frac = area_fraction_map(src, grid), area_fraction_map(bkg, grid)
    for c in cams:
        a_src = float((src_frac * c.coverage).sum() * PIX_ARCMIN2)
        a_bkg = float((bkg_frac * c.coverage).sum() * PIX_ARCMIN2)
        areas[c.name] = {"src": a_src, "bkg": a_bkg}
        if a_src <= 0:
            warnings.append(f"{c.name}: the source region has no exposed area")
    if all(a["bkg"] <= 0 for a in areas.values()):
        raise DataError("the background region has no exposed area in any camera", paths.regions)
    result = {
        "center": {"ra": float(ra_c[0]), "dec": float(dec_c[0]), "x": x, "y": y, "from": centre_from},
        "radius_arcmin": float(radius), "radius_from": radius_from, "radius_sn3_arcmin": float(r_sn),
        "bkg_inner_arcmin": float(bkg_in), "bkg_outer_arcmin": float(bkg_out), "bkg_fallback_outer_ccds": fallback,
        "self_subtraction_estimate": self_sub,
        "surface_brightness": surface_brightness,
        "excluded": [s.record() for s in sources],
        "detected": [s.record() for s in detected],           # this observation's own (before any list)
        "kept_extended": [s.record() for s in kept_extended],
        "area_arcmin2": {c: a["src"] for c, a in areas.items()},
        "bkg_area_arcmin2": {c: a["bkg"] for c, a in areas.items()},
        "background_rate_per_pn_s_per_pix": b_rate,
        "particle_background": {c.name: {"rate_per_s_per_pix": c.particle_rate, "from": c.particle_from}
                                for c in cams},
        "geometry": {c.name: c.geometry.to_json() for c in cams},
        "cameras": [c.name for c in cams], "warnings": warnings,
        "evselect": {"src": src.evselect_expression(), "bkg": bkg.evselect_expression()},
    }
    write_text(outdir / "src.reg", src.ds9_physical())
    write_text(outdir / "bkg.reg", bkg.ds9_physical())
    write_text(outdir / "src_sky.reg", src.ds9_fk5(meta["ra_pnt"], meta["dec_pnt"]))
    write_text(outdir / "bkg_sky.reg", bkg.ds9_fk5(meta["ra_pnt"], meta["dec_pnt"]))
    write_text(outdir / "ptsrc.reg", source_list_text(sources, "point sources excluded by xmmext"))
    _plot_regions(imgs["counts"]["0.5-2"], grid, src, bkg, sources, outdir / "regions.png", kept_extended)
    _plot_profile(edges, n - p, e, b_rate, snr, radius, bkg_in, bkg_out, outdir / "profile.png")
    for w in warnings:
        log.warning("regions: %s", w)
    log.info("regions: centre (%.5f, %.5f) [%s], R = %.2f' (%s), background %.2f'-%.2f', %d point sources",
             result["center"]["ra"], result["center"]["dec"], centre_from, radius, radius_from, bkg_in, bkg_out,
             len(sources))
    written = [outdir / n for n in ("src.reg", "bkg.reg", "src_sky.reg", "bkg_sky.reg", "ptsrc.reg",
                                    "regions.png", "profile.png")]
    written += [outdir / f"{c}_{kind}.fits" for c in [c.name for c in cams] + ["epic"] for kind in ("images", "expmaps")]
    return result, written


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


def _plot_regions(img, grid, src, bkg, sources, dest, kept=()):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Circle
    fig, ax = plt.subplots(figsize=(7, 7))
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
    ax.set_xlabel("image x (4\" pixels)")
    ax.set_ylabel("image y")
    ax.legend(loc="upper right", fontsize=8)
    save_figure(dest, fig)
    plt.close(fig)


def _plot_profile(edges, n, e, b_rate, snr, radius, bkg_in, bkg_out, dest):
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
