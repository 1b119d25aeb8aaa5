"""Step 2's view of each camera: its cleaned events, footprint and coverage, particle
levels, and the images and exposure maps of every band (per camera and EPIC-combined,
written as multi-extension FITS with a celestial WCS)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from astropy.io import fits

import xmmext.instrument as ins
from xmmext.core.errors import DataError, UsageError
from xmmext.core.fileio import read_json, write_fits
from xmmext.core.paths import ObsPaths
from xmmext.events.footprint import Geometry, camera_livetime, ccd_livetimes, geometry_from_events
from xmmext.events.out_of_time import oot_fraction
from xmmext.events.particles import particle_rates
from xmmext.events.reader import read_events
from xmmext.sky.images import (BANDS_KEV, CENTRE_BAND, DETECT_BAND, DETECT_BANDS, PIX_ARCSEC, ImageGrid, band_mask,
                               counts_image, coverage_map, exposure_map, image_hdu)

__all__ = ["CameraData", "load_cameras", "camera_weight", "native_band_maps", "write_band_products", "make_images"]

log = logging.getLogger("xmmext.sky.camera_maps")


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


def load_cameras(paths: ObsPaths, cameras) -> tuple[list[CameraData], dict]:
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
                "pa_pnt": float(ev.key("PA_PNT")), "date_obs": str(ev.key("DATE-OBS", "")),
                "date_end": str(ev.key("DATE-END", "")), "obsid": str(ev.key("OBS_ID", paths.obsid)),
                "object": str(ev.key("OBJECT", "")), "mjdref": _mjdref(ev.header)}
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


def _mjdref(header) -> float:
    """MJDREF of an event list (MJDREFI + MJDREFF, or MJDREF; the XMM origin when absent)."""
    if "MJDREFI" in header:
        return float(header["MJDREFI"]) + float(header.get("MJDREFF", 0.0))
    return float(header.get("MJDREF", ins.MJDREF))


def standard_keywords(meta: dict, instrume: str, bunit: str, exposure: float | None) -> dict:
    """The keywords a FITS image of an observation carries (as SAS's evselect/eexpmap write
    them), so that ds9, fv and astropy users see what it is."""
    cards = {"TELESCOP": ("XMM", "mission"), "INSTRUME": (instrume, "camera(s)"),
             "OBS_ID": (meta.get("obsid", ""), "observation"), "OBJECT": (meta.get("object", ""), "target"),
             "DATE-OBS": (meta.get("date_obs", ""), "start (UTC)"), "DATE-END": (meta.get("date_end", ""), "end (UTC)"),
             "MJDREF": (meta.get("mjdref", ins.MJDREF), "[d] time origin (TT)"), "TIMESYS": ("TT", ""),
             "BUNIT": (bunit, "unit of the pixel values")}
    if exposure is not None:
        cards["EXPOSURE"] = (float(exposure), "[s] live time")
    return cards


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
            extra = {"BAND": band}
            hi = image_hdu(img, grid, meta["ra_pnt"], meta["dec_pnt"],
                           {**standard_keywords(meta, cam.instrume, "count", c.exposure_s), **extra})
            he = image_hdu(expo, grid, meta["ra_pnt"], meta["dec_pnt"],
                           {**standard_keywords(meta, cam.instrume, "s", c.exposure_s), **extra})
            img_hdus.append(fits.ImageHDU(hi.data, header=hi.header, name=f"IMG_{band}"))
            exp_hdus.append(fits.ImageHDU(he.data, header=he.header, name=f"EXP_{band}"))
        write_fits(outdir / f"{c.name}_images.fits", fits.HDUList(img_hdus))
        write_fits(outdir / f"{c.name}_expmaps.fits", fits.HDUList(exp_hdus))
    hdus_i, hdus_e = [fits.PrimaryHDU()], [fits.PrimaryHDU()]
    for band in BANDS_KEV:
        cams_names = "+".join(ins.camera(c.name).instrume for c in cams)
        extra = {"BAND": band, "EXPWEIGH": "pn-equivalent seconds"}
        hi = image_hdu(epic_counts[band], grid, meta["ra_pnt"], meta["dec_pnt"],
                       {**standard_keywords(meta, cams_names, "count", None), **extra})
        he = image_hdu(epic_expo[band], grid, meta["ra_pnt"], meta["dec_pnt"],
                       {**standard_keywords(meta, cams_names, "s", None), **extra})
        hdus_i.append(fits.ImageHDU(hi.data, header=hi.header, name=f"IMG_{band}"))
        hdus_e.append(fits.ImageHDU(he.data, header=he.header, name=f"EXP_{band}"))
    write_fits(outdir / "epic_images.fits", fits.HDUList(hdus_i))
    write_fits(outdir / "epic_expmaps.fits", fits.HDUList(hdus_e))
    return {"counts": epic_counts, "exposure": epic_expo}


def make_images(cams: list[CameraData], grid: ImageGrid, meta: dict, outdir) -> dict:
    """Native images and exposure maps, written; EPIC sums returned."""
    return write_band_products(native_band_maps(cams, grid), cams, grid, meta, outdir)
